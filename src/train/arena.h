/* arena.h - walking the parameter arena: layout validation and fixed-size chunks.
 *
 * The optimizers and the gradient utilities visit the elements of a parameter
 * arena (see nn/param.h) in chunks of at most WK_ARENA_CHUNK elements, each
 * inside one parameter. The chunking depends on the layout only, never on the
 * thread count, so per-chunk partial sums combined in chunk order give the same
 * result however the chunks are spread over threads. Internal to train/. */
#ifndef WK_TRAIN_ARENA_H
#define WK_TRAIN_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "nn/param.h"

#define WK_ARENA_CHUNK ((size_t)8192)

typedef struct wk_arena_chunk {
  size_t param; /* index into the wk_param array */
  size_t begin; /* first element, absolute arena offset */
  size_t end;   /* one past the last element */
} wk_arena_chunk;

/* Checks that every parameter lies inside an arena of n_elems elements, that no
 * two overlap and that every lr_scale is finite and >= 0. `what` prefixes the
 * message ("optim", "grad clip"). n_elems = SIZE_MAX skips the bound. */
wk_status wk_arena_check(const wk_param *params, size_t n_params, size_t n_elems,
                         const char *what);

/* Splits every parameter (frozen ones too, unless skip_frozen) into chunks, in
 * parameter order. *out is malloc'd (NULL when there are no chunks); the caller
 * frees it. */
wk_status wk_arena_chunks(const wk_param *params, size_t n_params, bool skip_frozen,
                          wk_arena_chunk **out, size_t *n_out);

static inline bool wk_param_frozen(const wk_param *p) {
  return (p->flags & WK_PARAM_FROZEN) != 0;
}

#endif
