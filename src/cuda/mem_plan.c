/* mem_plan.c - see mem_plan.h. */
#include "cuda/mem_plan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Value v's buffer (its root's: alias[v]) is touched at step. */
static void wk_touch(const int *alias, int v, int step, int *first, int *last) {
  const int r = alias[v];
  if (first[r] < 0 || step < first[r]) first[r] = step;
  if (step > last[r]) last[r] = step;
}

void wk_grad_steps(const wk_node *nodes, int n_nodes, const int *alias, const bool *needs_grad,
                   const wk_bn_fuse_group *groups, int n_groups, int *first, int *last) {
  for (int v = 0; v <= n_nodes; v++) first[v] = last[v] = -1;
  if (n_nodes >= 1 && needs_grad[n_nodes]) wk_touch(alias, n_nodes, 0, first, last);
  /* node by node (a fused group's nodes too, as they run when cuDNN refuses
   * the group): node i reads its output's gradient and writes its inputs' */
  for (int i = 0; i < n_nodes; i++) {
    if (!needs_grad[i + 1]) continue; /* backward skips the node */
    const int step = n_nodes - i;
    wk_touch(alias, i + 1, step, first, last);
    for (int k = 0; k < nodes[i].n_in; k++) {
      const int in = nodes[i].in[k];
      if (in != 0 && needs_grad[in]) wk_touch(alias, in, step, first, last);
    }
  }
  /* fused: the group's relu writes the batchnorm input's and the addend's */
  for (int k = 0; k < n_groups; k++) {
    const wk_bn_fuse_group *g = &groups[k];
    if (!needs_grad[g->relu + 1]) continue;
    const int step = n_nodes - g->relu, x = nodes[g->bn].in[0];
    if (x != 0 && needs_grad[x]) wk_touch(alias, x, step, first, last);
    if (g->add >= 0 && g->z != 0 && needs_grad[g->z]) wk_touch(alias, g->z, step, first, last);
  }
}

wk_status wk_value_steps(const wk_node *nodes, int n_nodes, const int *root,
                         const wk_bn_fuse_group *groups, int n_groups, int *first, int *last) {
  /* per node: 0 runs as itself, 1 a group's batchnorm or add (does nothing),
   * 2 a group's relu (reads x and z, below) */
  unsigned char *role = calloc((size_t)(n_nodes > 0 ? n_nodes : 1), 1);
  if (!role) return wk_fail(WK_ERR_NOMEM, "GPU memory plan: out of memory");
  for (int v = 0; v <= n_nodes; v++) first[v] = last[v] = -1;
  wk_touch(root, 0, 0, first, last);
  for (int k = 0; k < n_groups; k++) { /* whole at the relu: x and z read there */
    const wk_bn_fuse_group *g = &groups[k];
    role[g->bn] = 1;
    if (g->add >= 0) role[g->add] = 1;
    role[g->relu] = 2;
    wk_touch(root, nodes[g->bn].in[0], g->relu, first, last);
    if (g->add >= 0) wk_touch(root, g->z, g->relu, first, last);
  }
  for (int i = 0; i < n_nodes; i++) {
    if (role[i] == 1) continue;
    for (int k = 0; k < nodes[i].n_in && role[i] == 0; k++)
      wk_touch(root, nodes[i].in[k], i, first, last);
    wk_touch(root, i + 1, i, first, last);
  }
  wk_touch(root, n_nodes, n_nodes > 0 ? n_nodes - 1 : 0, first, last);
  free(role);
  return WK_OK;
}

/* A free stretch of the arena. */
typedef struct wk_span {
  size_t off, len;
} wk_span;

typedef struct wk_spans {
  wk_span *s;
  size_t n, cap;
} wk_spans;

static wk_status wk_spans_insert(wk_spans *f, size_t at, wk_span sp) {
  if (f->n == f->cap) {
    const size_t cap = f->cap ? 2 * f->cap : 16;
    wk_span *s = realloc(f->s, cap * sizeof *s);
    if (!s) return wk_fail(WK_ERR_NOMEM, "GPU memory plan: out of memory");
    f->s = s;
    f->cap = cap;
  }
  memmove(&f->s[at + 1], &f->s[at], (f->n - at) * sizeof *f->s);
  f->s[at] = sp;
  f->n++;
  return WK_OK;
}

static void wk_spans_remove(wk_spans *f, size_t at) {
  memmove(&f->s[at], &f->s[at + 1], (f->n - at - 1) * sizeof *f->s);
  f->n--;
}

/* The stretch [off, off + len) back, joined with its neighbours. */
static wk_status wk_spans_free(wk_spans *f, size_t off, size_t len) {
  size_t lo = 0, hi = f->n; /* the first stretch after off */
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (f->s[mid].off < off) lo = mid + 1;
    else hi = mid;
  }
  const bool join_prev = lo > 0 && f->s[lo - 1].off + f->s[lo - 1].len == off;
  const bool join_next = lo < f->n && off + len == f->s[lo].off;
  if (join_prev && join_next) {
    f->s[lo - 1].len += len + f->s[lo].len;
    wk_spans_remove(f, lo);
  } else if (join_prev) {
    f->s[lo - 1].len += len;
  } else if (join_next) {
    f->s[lo].off = off;
    f->s[lo].len += len;
  } else {
    WK_TRY(wk_spans_insert(f, lo, (wk_span){off, len}));
  }
  return WK_OK;
}

/* An offset for len bytes: the smallest free stretch that holds them, else
 * the last stretch if it ends at the top (the arena grows from there), else
 * the top. */
static wk_status wk_spans_take(wk_spans *f, size_t *top, size_t len, size_t *off) {
  size_t best = f->n;
  for (size_t k = 0; k < f->n; k++)
    if (f->s[k].len >= len && (best == f->n || f->s[k].len < f->s[best].len)) best = k;
  if (best < f->n) {
    *off = f->s[best].off;
    f->s[best].off += len;
    f->s[best].len -= len;
    if (f->s[best].len == 0) wk_spans_remove(f, best);
    return WK_OK;
  }
  size_t at = *top;
  if (f->n && f->s[f->n - 1].off + f->s[f->n - 1].len == *top) {
    at = f->s[f->n - 1].off;
    wk_spans_remove(f, f->n - 1);
  }
  if (len > SIZE_MAX - at) return wk_fail(WK_ERR_INVALID_ARG, "GPU memory plan: size overflow");
  *off = at;
  *top = at + len;
  return WK_OK;
}

/* A buffer in a sort: by step (its first one, or its last), then larger
 * first (they pack better), then index. */
typedef struct wk_place_key {
  int step, k;
  size_t len;
} wk_place_key;

static int wk_by_step(const void *pa, const void *pb) {
  const wk_place_key *a = pa, *b = pb;
  if (a->step != b->step) return a->step < b->step ? -1 : 1;
  if (a->len != b->len) return a->len > b->len ? -1 : 1;
  return (a->k > b->k) - (a->k < b->k);
}

wk_status wk_place_buffers(int n, const size_t *bytes, const int *first, const int *last,
                           int n_steps, size_t align, size_t *offset, size_t *total,
                           size_t *peak_live) {
  if (align == 0 || (align & (align - 1)) != 0)
    return wk_fail(WK_ERR_INVALID_ARG, "GPU memory plan: alignment %zu", align);
  *total = 0;
  if (peak_live) *peak_live = 0;
  int m = 0;
  for (int k = 0; k < n; k++) {
    offset[k] = 0;
    if (!bytes[k]) continue;
    if (first[k] < 0 || first[k] > last[k] || last[k] >= n_steps)
      return wk_fail(WK_ERR_INVALID_ARG, "GPU memory plan: buffer %d: steps %d to %d of %d", k,
                     first[k], last[k], n_steps);
    if (bytes[k] > SIZE_MAX - (align - 1))
      return wk_fail(WK_ERR_INVALID_ARG, "GPU memory plan: buffer %d: %zu bytes", k, bytes[k]);
    m++;
  }
  wk_place_key *by_first = malloc((size_t)(m ? m : 1) * sizeof *by_first);
  wk_place_key *by_last = malloc((size_t)(m ? m : 1) * sizeof *by_last);
  size_t *len = malloc((size_t)(n ? n : 1) * sizeof *len);
  wk_spans free_spans = {0};
  wk_status st = WK_OK;
  if (!by_first || !by_last || !len) {
    st = wk_fail(WK_ERR_NOMEM, "GPU memory plan: out of memory");
    goto done;
  }
  m = 0;
  for (int k = 0; k < n; k++) {
    len[k] = (bytes[k] + align - 1) & ~(align - 1);
    if (!bytes[k]) continue;
    by_first[m] = (wk_place_key){.step = first[k], .k = k, .len = len[k]};
    by_last[m++] = (wk_place_key){.step = last[k], .k = k, .len = len[k]};
  }
  qsort(by_first, (size_t)m, sizeof *by_first, wk_by_step);
  qsort(by_last, (size_t)m, sizeof *by_last, wk_by_step);
  size_t top = 0, live = 0, peak = 0;
  /* at each buffer's first step, those whose last step is before it go back first */
  for (int a = 0, f = 0; a < m; a++) {
    const int k = by_first[a].k;
    for (; f < m && by_last[f].step < first[k]; f++) {
      const int d = by_last[f].k;
      if ((st = wk_spans_free(&free_spans, offset[d], len[d])) != WK_OK) goto done;
      live -= len[d];
    }
    if ((st = wk_spans_take(&free_spans, &top, len[k], &offset[k])) != WK_OK) goto done;
    live += len[k];
    peak = live > peak ? live : peak;
  }
  *total = top;
  if (peak_live) *peak_live = peak;
done:
  free(by_first);
  free(by_last);
  free(len);
  free(free_spans.s);
  return st;
}
