/* cuda_net_prof.c - a GPU network's time per node (whisker bench --profile):
 * CUDA events around every node's forward and backward, summed over the runs,
 * and a note per node naming what ran (cuDNN's algorithm or engine, the fused
 * group, whisker's kernels). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_net_impl.h"

/* ------------------------------------------------------------------ per-node times */

/* Adds the forward's (or backward's) run that the events hold, if any, to the
 * nodes' times: waits for its last event. */
static wk_status wk_prof_add(wk_gpu_net *net, bool fwd) {
  bool *pending = fwd ? &net->prof_fwd_pending : &net->prof_bwd_pending;
  if (!net->prof || !*pending) return WK_OK;
  *pending = false;
  cudaEvent_t *ev = fwd ? net->prof_fwd : net->prof_bwd;
  const int n = net->g.n_nodes;
  WK_CUDA_TRY(cudaEventSynchronize(ev[fwd ? n : 0]));
  for (int i = 0; i < n; i++) {
    float ms = 0.0f;
    WK_CUDA_TRY(cudaEventElapsedTime(&ms, fwd ? ev[i] : ev[i + 1], fwd ? ev[i + 1] : ev[i]));
    *(fwd ? &net->prof[i].fwd_s : &net->prof[i].bwd_s) += 1e-3 * (double)ms;
  }
  return WK_OK;
}

/* Both sets, after a wait for the stream (then the events are complete). */
wk_status wk_prof_collect(wk_gpu_net *net) {
  WK_TRY(wk_prof_add(net, true));
  return wk_prof_add(net, false);
}

/* Records event k of the forward's (fwd) or backward's set. The first of a
 * run (forward 0, backward n_nodes) adds a run still pending there first;
 * the last (forward n_nodes, backward 0) ends it. */
wk_status wk_prof_mark(wk_gpu_net *net, bool fwd, int k) {
  if (!net->prof) return WK_OK;
  const int n = net->g.n_nodes;
  const bool first = k == (fwd ? 0 : n), last = k == (fwd ? n : 0);
  if (first) WK_TRY(wk_prof_add(net, fwd));
  WK_CUDA_TRY(cudaEventRecord((fwd ? net->prof_fwd : net->prof_bwd)[k], net->stream));
  if (last) *(fwd ? &net->prof_fwd_pending : &net->prof_bwd_pending) = true;
  return WK_OK;
}

wk_status wk_cudanet_profile(wk_gpu_net *net) {
  if (net->prof) return WK_OK;
  WK_CUDA_TRY(cudaSetDevice(net->device));
  const size_t n = (size_t)net->g.n_nodes + 1;
  cudaEvent_t *f = calloc(n, sizeof *f), *b = calloc(n, sizeof *b);
  wk_gpu_node_time *t = calloc(n, sizeof *t);
  wk_status s = f && b && t ? WK_OK : wk_fail(WK_ERR_NOMEM, "GPU profile: out of memory");
  for (size_t i = 0; s == WK_OK && i < n; i++) {
    cudaError_t e = cudaEventCreateWithFlags(&f[i], cudaEventDefault);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&b[i], cudaEventDefault);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      s = wk_fail(WK_ERR_BACKEND, "GPU profile: cudaEventCreateWithFlags failed: %s",
                  cudaGetErrorString(e));
    }
  }
  if (s != WK_OK) {
    for (size_t i = 0; i < n; i++) {
      if (f && f[i]) (void)cudaEventDestroy(f[i]);
      if (b && b[i]) (void)cudaEventDestroy(b[i]);
    }
    free(f);
    free(b);
    free(t);
    return s;
  }
  net->prof_fwd = f;
  net->prof_bwd = b;
  net->prof = t;
  net->prof_fwd_pending = net->prof_bwd_pending = false;
  return WK_OK;
}

static const char *wk_math_tag(cudnnMathType_t m) {
  switch (m) {
  case CUDNN_TENSOR_OP_MATH: return " (tensor op)";
  case CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION: return " (tensor op, converting)";
  case CUDNN_FMA_MATH: return " (fma)";
  default: return "";
  }
}

/* How the group headed by relu node j ran in the last profiled forward: on
 * whisker's kernel in one pass, fused by cuDNN, or node by node (NULL). */
static const char *wk_group_ran(const wk_gpu_net *net, int j) {
  if (wk_infer_group(net, j, net->prof_train)) return "whisker's kernel, one pass";
  if (net->prof_train && net->gn[j].fused) return "cuDNN fused";
  return NULL;
}

/* What ran node i in the last forward (and backward), for the profile. */
static void wk_node_note(const wk_gpu_net *net, int i, char *buf, size_t n) {
  static const char *const fwd[] = {"implicit_gemm", "implicit_precomp_gemm", "gemm", "direct",
                                    "fft", "fft_tiling", "winograd", "winograd_nonfused"};
  static const char *const bwd_data[] = {"algo_0", "algo_1", "fft", "fft_tiling", "winograd",
                                         "winograd_nonfused"};
  static const char *const bwd_filter[] = {"algo_0", "algo_1", "fft", "algo_3", "winograd",
                                           "winograd_nonfused", "fft_tiling"};
  const wk_gnode *s = &net->gn[i];
  const wk_node *nd = &net->nodes[i];
  buf[0] = '\0';
  if (nd->op == WK_NODE_CONV && net->cap > 0 && net->conv_graph) {
    int k = 0;
    static const char *const dir[4] = {"fwd", "dgrad", "wgrad", "dgrad adding"};
    for (int j = 0; j < 4 && k >= 0 && (size_t)k < n; j++)
      if (s->plan[j])
        k += snprintf(buf + k, n - (size_t)k, "%s%s engine %lld", k ? "; " : "", dir[j],
                      (long long)wk_cplan_engine(s->plan[j]));
  } else if (nd->op == WK_NODE_CONV && net->cap > 0) {
    const unsigned f = (unsigned)s->fwd_algo, d = (unsigned)s->bwd_data_algo,
                   w = (unsigned)s->bwd_filter_algo;
    int k = snprintf(buf, n, "fwd %s%s", f < 8 ? fwd[f] : "?", wk_math_tag(s->fwd_math));
    if (net->algos_backward && k > 0 && (size_t)k < n)
      snprintf(buf + k, n - (size_t)k, "; dgrad %s%s; wgrad %s%s", d < 6 ? bwd_data[d] : "?",
               wk_math_tag(s->bwd_data_math), w < 7 ? bwd_filter[w] : "?",
               wk_math_tag(s->bwd_filter_math));
  } else if ((nd->op == WK_NODE_BATCHNORM || nd->op == WK_NODE_ADD) && s->fused_into >= 0 &&
             s->fused_into != i && wk_group_ran(net, s->fused_into)) {
    snprintf(buf, n, "fused: its time is %s's", net->nodes[s->fused_into].name);
  } else if (nd->op == WK_NODE_BATCHNORM) {
    snprintf(buf, n, "%s", !net->prof_train  ? "on the running statistics"
                           : s->bn_ran_own   ? "whisker's kernels"
                           : s->fuse_solo && s->fused ? "cuDNN Ex call, NHWC"
                                                      : "cuDNN");
  } else if (nd->op == WK_NODE_MAXPOOL) {
    snprintf(buf, n, "%s", net->pool_own ? "whisker's kernels" : "cuDNN");
  } else if (nd->op == WK_NODE_ACT && s->fuse_bn >= 0 && !s->fuse_solo) {
    const char *ran = wk_group_ran(net, i);
    snprintf(buf, n, "%s%s%s", s->fuse_add >= 0 ? "batchnorm + add + relu" : "batchnorm + relu",
             ran ? ", " : ": node by node", ran ? ran : "");
  }
}

wk_status wk_cudanet_profile_read(wk_gpu_net *net, wk_gpu_node_time *out) {
  if (!out) return wk_fail(WK_ERR_INVALID_ARG, "GPU profile: no output");
  if (!net->prof) return wk_fail(WK_ERR_INVALID_ARG, "GPU profile: not turned on");
  WK_CUDA_TRY(cudaSetDevice(net->device));
  WK_TRY(wk_collectives_wait(net)); /* with peers, the deadline first */
  WK_TRY(wk_prof_collect(net));
  for (int i = 0; i < net->g.n_nodes; i++) {
    out[i] = net->prof[i];
    wk_node_note(net, i, out[i].note, sizeof out[i].note);
  }
  return WK_OK;
}
