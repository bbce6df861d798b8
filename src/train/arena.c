/* arena.c - parameter arena validation and chunking (see arena.h). */
#include "train/arena.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
  size_t offset, numel, index;
} wk_span;

static int wk_span_cmp(const void *a, const void *b) {
  const wk_span *x = a, *y = b;
  return (x->offset > y->offset) - (x->offset < y->offset);
}

wk_status wk_arena_check(const wk_param *params, size_t n_params, size_t n_elems,
                         const char *what) {
  if (n_params && !params) return wk_fail(WK_ERR_INVALID_ARG, "%s: NULL parameter list", what);
  for (size_t i = 0; i < n_params; i++) {
    const wk_param *p = &params[i];
    if (p->offset > n_elems || p->numel > n_elems - p->offset)
      return wk_fail(WK_ERR_INVALID_ARG,
                     "%s: parameter %zu (%.*s) covers [%zu, %zu + %zu), outside the arena of "
                     "%zu elements",
                     what, i, WK_PARAM_NAME_MAX, p->name, p->offset, p->offset, p->numel, n_elems);
    if (!(isfinite(p->lr_scale) && p->lr_scale >= 0.0f))
      return wk_fail(WK_ERR_INVALID_ARG, "%s: parameter %zu (%.*s): lr_scale %g must be >= 0",
                     what, i, WK_PARAM_NAME_MAX, p->name, (double)p->lr_scale);
  }
  if (n_params < 2) return WK_OK;
  wk_span *s = malloc(n_params * sizeof *s);
  if (!s) return wk_fail(WK_ERR_NOMEM, "%s: out of memory", what);
  for (size_t i = 0; i < n_params; i++) s[i] = (wk_span){params[i].offset, params[i].numel, i};
  qsort(s, n_params, sizeof *s, wk_span_cmp);
  wk_status st = WK_OK;
  for (size_t i = 1; i < n_params && st == WK_OK; i++) {
    /* Empty parameters overlap nothing. */
    if (s[i - 1].numel && s[i].numel && s[i - 1].offset + s[i - 1].numel > s[i].offset)
      st = wk_fail(WK_ERR_INVALID_ARG, "%s: parameters %zu (%.*s) and %zu (%.*s) overlap", what,
                   s[i - 1].index, WK_PARAM_NAME_MAX, params[s[i - 1].index].name, s[i].index,
                   WK_PARAM_NAME_MAX, params[s[i].index].name);
  }
  free(s);
  return st;
}

wk_status wk_arena_chunks(const wk_param *params, size_t n_params, bool skip_frozen,
                          wk_arena_chunk **out, size_t *n_out) {
  *out = NULL;
  *n_out = 0;
  size_t n = 0;
  for (size_t i = 0; i < n_params; i++)
    if (!(skip_frozen && wk_param_frozen(&params[i])))
      n += (params[i].numel + WK_ARENA_CHUNK - 1) / WK_ARENA_CHUNK;
  if (n == 0) return WK_OK;
  wk_arena_chunk *c = malloc(n * sizeof *c);
  if (!c) return wk_fail(WK_ERR_NOMEM, "out of memory for %zu arena chunks", n);
  size_t k = 0;
  for (size_t i = 0; i < n_params; i++) {
    if (skip_frozen && wk_param_frozen(&params[i])) continue;
    const size_t end = params[i].offset + params[i].numel;
    for (size_t b = params[i].offset; b < end; b += WK_ARENA_CHUNK)
      c[k++] = (wk_arena_chunk){i, b, end - b < WK_ARENA_CHUNK ? end : b + WK_ARENA_CHUNK};
  }
  WK_ASSERT(k == n);
  *out = c;
  *n_out = n;
  return WK_OK;
}
