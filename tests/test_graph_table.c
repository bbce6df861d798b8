/* test_graph_table.c - when the fused training step is captured, replayed or
 * run plainly (src/cuda/graph_table.c, the policy of cuda_net_step.c's CUDA
 * graphs), on the CPU: the graphs are stand-in pointers and the free callback
 * records what it frees.
 *
 * Checked: a key warms up for WK_GRAPH_WARMUP plain steps, is captured once
 * and replayed after; keys differ in every field; keys live side by side and
 * the least recently used is evicted with its graph; an invalidation frees
 * every graph and restarts every warm-up; a failed capture turns the table
 * off for good; nothing is freed twice or leaked. */
#include <check.h>
#include <stdlib.h>

#include "cuda/graph_table.h"
#include "test_util.h"

/* the stand-in graphs, and what the table freed */
static int wkt_graphs[16];
static int wkt_freed[16];

static void wkt_free(void *exec) {
  const int i = (int)((int *)exec - wkt_graphs);
  ck_assert_int_ge(i, 0);
  ck_assert_int_lt(i, 16);
  ck_assert_int_eq(wkt_freed[i], 0); /* never twice */
  wkt_freed[i] = 1;
}

static void wkt_reset(wk_graph_table *t) {
  for (int i = 0; i < 16; i++) wkt_freed[i] = 0;
  wk_graph_table_init(t, wkt_free);
}

static wk_graph_key wkt_key(int64_t batch) {
  return (wk_graph_key){.batch = batch, .smoothing = 0.1, .n_segments = 62, .n_state = 1,
                        .nesterov = true, .predicted = true};
}

/* Warms key k up and captures it as wkt_graphs[g]. */
static wk_graph_slot *wkt_capture(wk_graph_table *t, wk_graph_key k, int g) {
  wk_graph_slot *s = NULL;
  for (int i = 0; i < WK_GRAPH_WARMUP; i++) {
    ck_assert_int_eq(wk_graph_table_lookup(t, &k, &s), WK_GRAPH_PLAIN);
    wk_graph_table_ran_plain(t, s);
  }
  ck_assert_int_eq(wk_graph_table_lookup(t, &k, &s), WK_GRAPH_CAPTURE);
  wk_graph_table_captured(t, s, &wkt_graphs[g]);
  return s;
}

START_TEST(test_warm_capture_replay) {
  wk_graph_table t;
  wkt_reset(&t);
  const wk_graph_key k = wkt_key(32);
  wk_graph_slot *s = NULL;
  /* a plain step that did not run to the end does not count */
  ck_assert_int_eq(wk_graph_table_lookup(&t, &k, &s), WK_GRAPH_PLAIN);
  wk_graph_slot *s0 = wkt_capture(&t, k, 0);
  ck_assert_int_eq(t.captured, 1);
  for (int i = 0; i < 3; i++) {
    ck_assert_int_eq(wk_graph_table_lookup(&t, &k, &s), WK_GRAPH_REPLAY);
    ck_assert_ptr_eq(s, s0);
    ck_assert_ptr_eq(s->exec, &wkt_graphs[0]);
    wk_graph_table_replayed(&t, s);
  }
  ck_assert_int_eq(t.replayed, 3);
  ck_assert_int_eq(wkt_freed[0], 0);
  wk_graph_table_free(&t);
  ck_assert_int_eq(wkt_freed[0], 1);
}
END_TEST

START_TEST(test_keys_differ_in_every_field) {
  const wk_graph_key a = wkt_key(8);
  wk_graph_key b = a;
  ck_assert(wk_graph_key_equal(&a, &b));
  for (int f = 0; f < 10; f++) {
    b = a;
    switch (f) {
    case 0: b.batch = 7; break;
    case 1: b.drop_first = 8; break;
    case 2: b.smoothing = 0.0; break;
    case 3: b.n_segments = 61; break;
    case 4: b.n_state = 0; break;
    case 5: b.adamw = true; break;
    case 6: b.nesterov = false; break;
    case 7: b.unscale = true; break;
    case 8: b.predicted = false; break;
    default: continue;
    }
    ck_assert_msg(!wk_graph_key_equal(&a, &b), "field %d ignored", f);
  }
}
END_TEST

/* Two batch sizes (an epoch's full and last batches) keep their graphs side
 * by side; a fifth key evicts the least recently used one. */
START_TEST(test_side_by_side_and_eviction) {
  wk_graph_table t;
  wkt_reset(&t);
  wk_graph_slot *s = NULL;
  for (int g = 0; g < WK_GRAPH_SLOTS; g++) wkt_capture(&t, wkt_key(10 + g), g);
  /* use every key but the second again, so that the second is the oldest */
  for (int g = 0; g < WK_GRAPH_SLOTS; g++) {
    if (g == 1) continue;
    const wk_graph_key k = wkt_key(10 + g);
    ck_assert_int_eq(wk_graph_table_lookup(&t, &k, &s), WK_GRAPH_REPLAY);
    ck_assert_ptr_eq(s->exec, &wkt_graphs[g]);
  }
  const wk_graph_key k = wkt_key(99);
  ck_assert_int_eq(wk_graph_table_lookup(&t, &k, &s), WK_GRAPH_PLAIN);
  ck_assert_int_eq(s->warm, 0);
  for (int g = 0; g < WK_GRAPH_SLOTS; g++) ck_assert_int_eq(wkt_freed[g], g == 1);
  const wk_graph_key k1 = wkt_key(11); /* the evicted key starts again */
  ck_assert_int_eq(wk_graph_table_lookup(&t, &k1, &s), WK_GRAPH_PLAIN);
  wk_graph_table_free(&t);
  for (int g = 0; g < WK_GRAPH_SLOTS; g++) ck_assert_int_eq(wkt_freed[g], 1);
}
END_TEST

/* Memory moved: every graph freed, every key warms up again, and the table
 * captures again afterwards. */
START_TEST(test_invalidate) {
  wk_graph_table t;
  wkt_reset(&t);
  wk_graph_slot *s = NULL;
  wkt_capture(&t, wkt_key(4), 0);
  const wk_graph_key k3 = wkt_key(3);
  ck_assert_int_eq(wk_graph_table_lookup(&t, &k3, &s), WK_GRAPH_PLAIN);
  wk_graph_table_ran_plain(&t, s); /* one warm step of batch 3 */
  wk_graph_table_invalidate(&t);
  ck_assert_int_eq(wkt_freed[0], 1);
  ck_assert_int_eq(t.invalidations, 1);
  wk_graph_table_invalidate(&t); /* nothing held: not counted */
  ck_assert_int_eq(t.invalidations, 1);
  ck_assert_int_eq(wk_graph_table_lookup(&t, &k3, &s), WK_GRAPH_PLAIN);
  ck_assert_int_eq(s->warm, 0);
  wkt_capture(&t, wkt_key(4), 1);
  ck_assert_int_eq(t.captured, 2);
  wk_graph_table_free(&t);
  ck_assert_int_eq(wkt_freed[1], 1);
}
END_TEST

/* A failed capture: the graphs go, and every step runs plainly from then on. */
START_TEST(test_disable) {
  wk_graph_table t;
  wkt_reset(&t);
  wk_graph_slot *s = NULL;
  wkt_capture(&t, wkt_key(4), 0);
  const wk_graph_key k = wkt_key(5);
  for (int i = 0; i < WK_GRAPH_WARMUP; i++) {
    ck_assert_int_eq(wk_graph_table_lookup(&t, &k, &s), WK_GRAPH_PLAIN);
    wk_graph_table_ran_plain(&t, s);
  }
  ck_assert_int_eq(wk_graph_table_lookup(&t, &k, &s), WK_GRAPH_CAPTURE);
  wk_graph_table_disable(&t);
  ck_assert(t.off);
  ck_assert_int_eq(wkt_freed[0], 1);
  for (int i = 0; i < 2 * WK_GRAPH_WARMUP; i++) {
    const wk_graph_key k4 = wkt_key(4);
    ck_assert_int_eq(wk_graph_table_lookup(&t, &k4, &s), WK_GRAPH_PLAIN);
    wk_graph_table_ran_plain(&t, s);
    ck_assert_int_eq(wk_graph_table_lookup(&t, &k, &s), WK_GRAPH_PLAIN);
    wk_graph_table_ran_plain(&t, s);
  }
  wk_graph_table_free(&t);
}
END_TEST

int main(void) {
  Suite *s = suite_create("graph_table");
  TCase *tc = tcase_create("graph_table");
  tcase_add_test(tc, test_warm_capture_replay);
  tcase_add_test(tc, test_keys_differ_in_every_field);
  tcase_add_test(tc, test_side_by_side_and_eviction);
  tcase_add_test(tc, test_invalidate);
  tcase_add_test(tc, test_disable);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
