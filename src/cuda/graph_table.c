/* graph_table.c - the captured steps of a network and when to capture (see
 * graph_table.h). */
#include "cuda/graph_table.h"

#include <string.h>

void wk_graph_table_init(wk_graph_table *t, void (*destroy)(void *exec)) {
  memset(t, 0, sizeof *t);
  t->destroy = destroy;
}

static void wk_slot_drop_graph(wk_graph_table *t, wk_graph_slot *s) {
  if (s->exec) t->destroy(s->exec);
  s->exec = NULL;
}

void wk_graph_table_free(wk_graph_table *t) {
  for (int i = 0; i < WK_GRAPH_SLOTS; i++) {
    wk_slot_drop_graph(t, &t->slots[i]);
    t->slots[i] = (wk_graph_slot){0};
  }
}

bool wk_graph_key_equal(const wk_graph_key *a, const wk_graph_key *b) {
  return a->batch == b->batch && a->drop_first == b->drop_first &&
         a->smoothing == b->smoothing && a->n_segments == b->n_segments &&
         a->n_state == b->n_state && a->adamw == b->adamw && a->nesterov == b->nesterov &&
         a->unscale == b->unscale && a->predicted == b->predicted;
}

wk_graph_action wk_graph_table_lookup(wk_graph_table *t, const wk_graph_key *k,
                                      wk_graph_slot **slot) {
  wk_graph_slot *s = NULL, *victim = NULL;
  for (int i = 0; i < WK_GRAPH_SLOTS && !s; i++) {
    wk_graph_slot *c = &t->slots[i];
    if (c->used && wk_graph_key_equal(&c->key, k)) s = c;
    else if (!victim || (victim->used && (!c->used || c->last_use < victim->last_use))) victim = c;
  }
  if (!s) { /* a new key: a free slot, else the least recently used one */
    s = victim;
    wk_slot_drop_graph(t, s);
    *s = (wk_graph_slot){.used = true, .key = *k};
  }
  s->last_use = ++t->clock;
  *slot = s;
  if (t->off) return WK_GRAPH_PLAIN;
  if (s->exec) return WK_GRAPH_REPLAY;
  return s->warm >= WK_GRAPH_WARMUP ? WK_GRAPH_CAPTURE : WK_GRAPH_PLAIN;
}

void wk_graph_table_ran_plain(wk_graph_table *t, wk_graph_slot *s) {
  (void)t;
  if (s->warm < WK_GRAPH_WARMUP) s->warm++;
}

void wk_graph_table_captured(wk_graph_table *t, wk_graph_slot *s, void *exec) {
  wk_slot_drop_graph(t, s);
  s->exec = exec;
  t->captured++;
}

void wk_graph_table_replayed(wk_graph_table *t, wk_graph_slot *s) {
  (void)s;
  t->replayed++;
}

void wk_graph_table_invalidate(wk_graph_table *t) {
  bool any = false;
  for (int i = 0; i < WK_GRAPH_SLOTS; i++) {
    wk_graph_slot *s = &t->slots[i];
    any |= s->exec != NULL || s->warm > 0;
    wk_slot_drop_graph(t, s);
    s->warm = 0;
  }
  if (any) t->invalidations++;
}

void wk_graph_table_disable(wk_graph_table *t) {
  wk_graph_table_free(t);
  t->off = true;
}
