/* graph_table.h - which captured CUDA graph replays a training step, and when
 * to capture one (cuda_net_step.c's fused step, cuda.h: $WHISKER_CUDA_GRAPH).
 *
 * A captured step bakes in the addresses of the network's device buffers and
 * every kernel argument and launch shape of its work. The addresses are the
 * net's business: whenever one of them moves (a buffer freed and made again,
 * grown for a larger batch, the convolution workspace resized) or the work's
 * structure changes (parameters frozen or unfrozen), the net calls
 * wk_graph_table_invalidate and every graph goes. The rest is the key below:
 * one graph per key, a few keys at once (a run's full batch and its last,
 * smaller one alternate every epoch), the least recently used one evicted.
 *
 * A key is captured only after WK_GRAPH_WARMUP steps of it ran uncaptured
 * with no invalidation in between: those steps choose the convolution
 * algorithms, grow the buffers and load the kernels (lazily loaded modules,
 * cuDNN's and cuBLAS's first-use set-up), none of which may happen inside a
 * capture. A capture (or a launch) that fails turns the table off for good
 * (wk_graph_table_disable): the net runs uncaptured from then on.
 *
 * No CUDA types (an executable graph is an opaque pointer freed through a
 * callback), so the policy is tested on the CPU (tests/test_graph_table.c). */
#ifndef WK_GRAPH_TABLE_H
#define WK_GRAPH_TABLE_H

#include <stdbool.h>
#include <stdint.h>

#define WK_GRAPH_SLOTS 4  /* keys held at once */
#define WK_GRAPH_WARMUP 2 /* uncaptured steps of a key before it is captured */

/* What a captured step bakes in besides the buffers' addresses (compared
 * field by field, never with memcmp: padding). */
typedef struct wk_graph_key {
  int64_t batch;
  int64_t drop_first;      /* dropout's first sample in the global batch */
  double smoothing;        /* label smoothing (a kernel argument) */
  int n_segments, n_state; /* the update's parameters and state arrays */
  bool adamw, nesterov;
  bool unscale;            /* fp16: the gradients unscaled before the update */
  bool predicted;          /* the predicted classes computed */
} wk_graph_key;

typedef struct wk_graph_slot {
  bool used;         /* holds a key */
  wk_graph_key key;
  void *exec;        /* the executable graph, or NULL while the key warms up */
  int warm;          /* uncaptured steps of the key since the last invalidation */
  uint64_t last_use; /* the table's clock at the last lookup */
} wk_graph_slot;

typedef struct wk_graph_table {
  wk_graph_slot slots[WK_GRAPH_SLOTS];
  uint64_t clock;
  bool off;                    /* a capture or launch failed: nothing is captured any more */
  void (*destroy)(void *exec); /* frees an executable graph (never given NULL) */
  int64_t captured, replayed, invalidations; /* what the table has done, for tests and logs */
} wk_graph_table;

typedef enum { WK_GRAPH_PLAIN, WK_GRAPH_CAPTURE, WK_GRAPH_REPLAY } wk_graph_action;

/* An empty table whose graphs `destroy` frees. */
void wk_graph_table_init(wk_graph_table *t, void (*destroy)(void *exec));
/* Frees every graph; the table stays usable (empty). */
void wk_graph_table_free(wk_graph_table *t);

bool wk_graph_key_equal(const wk_graph_key *a, const wk_graph_key *b);

/* The step of key k: *slot is its slot (made when new, evicting the least
 * recently used key and its graph when all are taken), and the answer says
 * what to do: replay (*slot)->exec, capture (the key has warmed up and the
 * table is on; then wk_graph_table_captured, or wk_graph_table_disable when
 * it failed), or run the step uncaptured (then wk_graph_table_ran_plain once
 * it ran to the end). */
wk_graph_action wk_graph_table_lookup(wk_graph_table *t, const wk_graph_key *k,
                                      wk_graph_slot **slot);
void wk_graph_table_ran_plain(wk_graph_table *t, wk_graph_slot *s);
/* exec is s's graph from now on (the table frees it). */
void wk_graph_table_captured(wk_graph_table *t, wk_graph_slot *s, void *exec);
/* A replay of s's graph was launched. */
void wk_graph_table_replayed(wk_graph_table *t, wk_graph_slot *s);
/* Device memory a graph may reference moved, or the work's structure
 * changed: every graph freed, every key back to no warm steps. */
void wk_graph_table_invalidate(wk_graph_table *t);
/* A capture or a launch failed: every graph freed, and lookups answer PLAIN from now on. */
void wk_graph_table_disable(wk_graph_table *t);

#endif
