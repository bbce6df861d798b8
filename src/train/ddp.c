/* ddp.c - see ddp.h.
 *
 * Buckets are contiguous ranges of the gradient arena, made from the
 * parameters in reverse arena order (the order backward finishes them in),
 * each closed once it holds bucket_bytes. A bucket counts the parameters still
 * to come; the backward hook counts down the parameters of the node that just
 * finished, and a bucket reaching zero is launched. Launch order is a function
 * of the graph alone, so it is the same on every rank, as MPI requires. */
#include "train/ddp.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "cuda/cuda.h"

typedef struct wk_bucket {
  size_t lo, hi;    /* arena elements [lo, hi) */
  int n_params;     /* parameters in the bucket */
  int pending;      /* of those, still without their gradient this step */
  int req;          /* in flight: the request; -1 otherwise */
} wk_bucket;

struct wk_ddp {
  wk_dist *d;
  wk_net *net;
  bool sync_bn;
  bool nccl;         /* the network's GPU backend reduces the gradients */
  wk_bucket *buckets;
  int n_buckets;
  int *param_bucket; /* per parameter */
  int next_launch;   /* buckets before it are launched, in index order */
  int next_test;     /* the oldest bucket that may still be in flight */
};

static wk_status wk_ddp_node_done(void *user, int node);
static wk_status wk_ddp_sync_bn(void *user, double *buf, size_t n);

wk_dist *wk_ddp_dist(const wk_ddp *p) { return p->d; }
int wk_ddp_n_buckets(const wk_ddp *p) { return p->n_buckets; }

static wk_status wk_ddp_make_buckets(wk_ddp *p, size_t bucket_bytes) {
  size_t np;
  const wk_param *params = wk_net_params(p->net, &np);
  p->param_bucket = malloc((np ? np : 1) * sizeof *p->param_bucket);
  p->buckets = calloc(np ? np : 1, sizeof *p->buckets);
  if (!p->param_bucket || !p->buckets) return wk_fail(WK_ERR_NOMEM, "ddp: out of memory");
  /* params are laid out in arena order; walk them from the end. At most
   * WK_DDP_MAX_BUCKETS buckets, each of at least n / WK_DDP_MAX_BUCKETS
   * elements: a tiny --bucket-mb on a net of many parameters would otherwise
   * put more requests in flight at the step's end than dist.h allows, on
   * some ranks and not others (it depends on timing). The same on every
   * rank: a function of the net alone. */
  size_t end = wk_net_n_elems(p->net);
  size_t limit = bucket_bytes / sizeof(float) ? bucket_bytes / sizeof(float) : 1;
  const size_t floor_elems = (end + WK_DDP_MAX_BUCKETS - 1) / WK_DDP_MAX_BUCKETS;
  if (limit < floor_elems) limit = floor_elems;
  wk_bucket *b = NULL;
  for (size_t k = np; k-- > 0;) {
    if (k + 1 < np && params[k].offset >= params[k + 1].offset)
      return wk_fail(WK_ERR_INVALID_ARG, "ddp: parameters not in arena order");
    if (!b) {
      b = &p->buckets[p->n_buckets++];
      *b = (wk_bucket){.hi = end, .req = -1};
    }
    b->lo = params[k].offset;
    b->n_params++;
    p->param_bucket[k] = (int)(b - p->buckets);
    if (b->hi - b->lo >= limit) {
      end = b->lo;
      b = NULL;
    }
  }
  if (b) b->lo = 0; /* the first bucket also covers any gap before the first parameter */
  return WK_OK;
}

bool wk_ddp_synced_bn(const wk_ddp *p) { return p && p->sync_bn; }

bool wk_ddp_nccl(const wk_ddp *p) { return p && p->nccl; }

const char *wk_ddp_backend(const wk_ddp *p) {
  if (p && p->nccl) return wk_dist_size(p->d) > 1 ? "mpi, gradients over nccl" : "nccl";
  return p && wk_dist_size(p->d) > 1 ? "mpi" : "none";
}

/* Rank 0's NCCL id to every rank, then the communicator on each, with the
 * buckets made here. */
static wk_status wk_ddp_attach_nccl(wk_ddp *p) {
  unsigned char id[WK_GPU_COMM_ID_BYTES] = {0};
  if (wk_dist_rank(p->d) == 0) WK_TRY(wk_gpu_comm_unique_id(id));
  WK_TRY(wk_dist_bcast(p->d, id, sizeof id, 0, "the NCCL id"));
  const size_t n = (size_t)p->n_buckets;
  size_t *lo = malloc((n ? n : 1) * 2 * sizeof *lo);
  if (!lo) return wk_fail(WK_ERR_NOMEM, "ddp: out of memory");
  for (size_t i = 0; i < n; i++) lo[i] = p->buckets[i].lo, lo[n + i] = p->buckets[i].hi;
  const wk_gpu_buckets b = {.n = p->n_buckets, .lo = lo, .hi = lo + n,
                            .param_bucket = p->param_bucket};
  const wk_status s = wk_net_gpu_attach_comm(p->net, id, wk_dist_rank(p->d), wk_dist_size(p->d),
                                             &b, wk_dist_timeout_s(p->d), p->sync_bn);
  free(lo);
  p->nccl = s == WK_OK;
  return s;
}

wk_status wk_ddp_create(wk_dist *d, wk_net *net, const wk_ddp_opts *o, wk_ddp **out) {
  *out = NULL;
  const size_t bucket_bytes = o->bucket_bytes ? o->bucket_bytes : WK_DDP_BUCKET_BYTES_DEFAULT;
  const bool gpu = wk_net_on_gpu(net), many = wk_dist_size(d) > 1;
  wk_ddp *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "ddp: out of memory");
  p->d = d;
  p->net = net;
  /* a communicator of one GPU (nccl_single) runs the synchronised path too,
   * to measure and test it */
  p->sync_bn = o->sync_bn && (many || (gpu && o->nccl_single));
  wk_status s = wk_ddp_make_buckets(p, bucket_bytes);
  if (s == WK_OK && gpu && (many || o->nccl_single)) s = wk_ddp_attach_nccl(p);
  if (s != WK_OK) {
    wk_ddp_destroy(p);
    return s;
  }
  if (many && !p->nccl) {
    wk_net_set_backward_hook(net, wk_ddp_node_done, p);
    if (p->sync_bn) wk_net_set_sync_bn(net, wk_ddp_sync_bn, p, wk_dist_size(d));
  }
  *out = p;
  return WK_OK;
}

void wk_ddp_destroy(wk_ddp *p) {
  if (!p) return;
  wk_net_set_backward_hook(p->net, NULL, NULL);
  wk_net_set_sync_bn(p->net, NULL, NULL, 1);
  wk_net_set_dropout_first(p->net, 0);
  free(p->buckets);
  free(p->param_bucket);
  free(p);
}

static wk_status wk_ddp_sync_bn(void *user, double *buf, size_t n) {
  wk_ddp *p = user;
  return wk_dist_allreduce_sum(p->d, WK_DIST_MAIN, WK_DIST_F64, buf, n,
                               "synchronised batchnorm statistics");
}

wk_status wk_ddp_begin_step(wk_ddp *p, int64_t n) {
  wk_net_set_dropout_first(p->net, (int64_t)wk_dist_rank(p->d) * n);
  if (p->nccl) return WK_OK; /* the GPU backend keeps its own buckets */
  for (int i = 0; i < p->n_buckets; i++) {
    wk_bucket *b = &p->buckets[i];
    if (b->req >= 0)
      return wk_fail(WK_ERR_INVALID_ARG, "ddp: a step began with bucket %d still in flight", i);
    b->pending = b->n_params;
  }
  p->next_launch = p->next_test = 0;
  return WK_OK;
}

/* Launches buckets in index order while the next one is complete (every rank
 * then sends the same sequence); `all` launches the rest regardless. */
static wk_status wk_ddp_launch_ready(wk_ddp *p, bool all) {
  for (; p->next_launch < p->n_buckets; p->next_launch++) {
    wk_bucket *b = &p->buckets[p->next_launch];
    if (!all && b->pending > 0) break;
    float *g = wk_net_grads(p->net) + b->lo;
    WK_TRY(wk_dist_iallreduce_f32(p->d, WK_DIST_GRADS, g, b->hi - b->lo, &b->req));
  }
  return WK_OK;
}

/* Lets MPI move the buckets in flight (it progresses only inside its calls). */
static wk_status wk_ddp_progress(wk_ddp *p) {
  for (int i = p->next_test; i < p->next_launch; i++) {
    wk_bucket *b = &p->buckets[i];
    if (b->req < 0) continue;
    bool done = false;
    WK_TRY(wk_dist_test(p->d, b->req, &done));
    if (!done) break;
    b->req = -1;
    p->next_test = i + 1;
  }
  return WK_OK;
}

static wk_status wk_ddp_node_done(void *user, int node) {
  wk_ddp *p = user;
  const wk_node *nd = wk_net_node(p->net, node);
  for (int k = 0; k < 2; k++)
    if (nd->param[k] >= 0) p->buckets[p->param_bucket[nd->param[k]]].pending--;
  WK_TRY(wk_ddp_launch_ready(p, false));
  return wk_ddp_progress(p);
}

wk_status wk_ddp_finish_step(wk_ddp *p) {
  const int world = wk_dist_size(p->d);
  if (world <= 1 || p->nccl) return WK_OK; /* NCCL averaged them during backward */
  WK_TRY(wk_ddp_launch_ready(p, true));
  for (int i = 0; i < p->n_buckets; i++) {
    wk_bucket *b = &p->buckets[i];
    if (b->req >= 0) WK_TRY(wk_dist_wait(p->d, b->req, "the gradient all-reduce"));
    b->req = -1;
  }
  float *g = wk_net_grads(p->net);
  const float scale = 1.0f / (float)world;
  const size_t n = wk_net_n_elems(p->net);
  for (size_t i = 0; i < n; i++) g[i] *= scale;
  return WK_OK;
}

wk_status wk_ddp_broadcast_model(wk_ddp *p) {
  if (!p || wk_dist_size(p->d) <= 1) return WK_OK;
  int64_t bn = wk_net_bn_batches(p->net);
  WK_TRY(wk_dist_bcast(p->d, wk_net_weights(p->net), wk_net_n_elems(p->net) * sizeof(float), 0,
                       "the initial weights"));
  WK_TRY(wk_dist_bcast(p->d, wk_net_buffer_data(p->net),
                       wk_net_n_buffer_elems(p->net) * sizeof(float), 0, "the initial buffers"));
  WK_TRY(wk_dist_bcast(p->d, &bn, sizeof bn, 0, "the batchnorm batch count"));
  wk_net_set_bn_batches(p->net, bn);
  wk_net_weights_changed(p->net);
  return WK_OK;
}

wk_status wk_ddp_average_buffers(wk_ddp *p) {
  if (!p) return WK_OK;
  const int world = wk_dist_size(p->d);
  const size_t n = wk_net_n_buffer_elems(p->net);
  if (world <= 1 || p->sync_bn || n == 0) return WK_OK;
  float *buf = wk_net_buffer_data(p->net);
  WK_TRY(wk_dist_allreduce_sum(p->d, WK_DIST_MAIN, WK_DIST_F32, buf, n,
                               "the batchnorm running statistics"));
  for (size_t i = 0; i < n; i++) buf[i] /= (float)world;
  wk_net_weights_changed(p->net);
  return WK_OK;
}
