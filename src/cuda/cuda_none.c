/* cuda_none.c - the cuda.h API of a build without the CUDA backend: nothing is
 * compiled, there are no devices, and the description says so. */
#include "cuda/cuda.h"

#include <stdio.h>
#include <string.h>

bool wk_cuda_compiled(void) { return false; }

int wk_cuda_device_count(void) { return 0; }

wk_status wk_cuda_describe(char *buf, size_t n) {
  if (!buf || n == 0) return wk_fail(WK_ERR_INVALID_ARG, "wk_cuda_describe: empty buffer");
  const int len = snprintf(buf, n,
                           "CUDA backend not built (configure with the CUDA toolkit, cuDNN "
                           "and NCCL installed and -DWHISKER_CUDA=ON)\n");
  if (len < 0 || (size_t)len >= n)
    return wk_fail(WK_ERR_LIMIT, "wk_cuda_describe: description truncated to %zu bytes", n);
  return WK_OK;
}

static wk_status wk_not_built(void) {
  return wk_fail(WK_ERR_UNSUPPORTED, "this whisker was built without the CUDA backend "
                 "(configure with the CUDA toolkit, cuDNN and NCCL and -DWHISKER_CUDA=ON)");
}

wk_status wk_gpu_algos_create(wk_gpu_algos **out) {
  *out = NULL;
  return wk_not_built();
}

void wk_gpu_algos_destroy(wk_gpu_algos *a) { (void)a; }

wk_status wk_gpu_algos_stats(wk_gpu_algos *a, wk_gpu_algo_stats *out) {
  (void)a;
  (void)out;
  return wk_not_built();
}

wk_status wk_gpu_memory_stats(int device, wk_gpu_memory *out) {
  (void)device;
  memset(out, 0, sizeof *out);
  return wk_not_built();
}

wk_status wk_gpu_net_create(const wk_gpu_graph *g, int device, wk_gpu_net **out) {
  (void)g;
  (void)device;
  *out = NULL;
  return wk_not_built();
}

void wk_gpu_net_destroy(wk_gpu_net *net) { (void)net; }

wk_status wk_gpu_net_forward(wk_gpu_net *net, const wk_gpu_input *x, int64_t n, bool train,
                             const wk_gpu_dropout *drop, float *out) {
  (void)net;
  (void)x;
  (void)n;
  (void)train;
  (void)drop;
  (void)out;
  return wk_not_built();
}

wk_status wk_gpu_net_stage(wk_gpu_net *net, const wk_gpu_input *x, int64_t n) {
  (void)net;
  (void)x;
  (void)n;
  return wk_not_built();
}

wk_status wk_gpu_net_backward(wk_gpu_net *net, const float *dy) {
  (void)net;
  (void)dy;
  return wk_not_built();
}

wk_status wk_gpu_net_set_params(wk_gpu_net *net, const wk_param *params) {
  (void)net;
  (void)params;
  return wk_not_built();
}

wk_status wk_gpu_comm_unique_id(unsigned char id[WK_GPU_COMM_ID_BYTES]) {
  (void)id;
  return wk_not_built();
}

wk_status wk_gpu_net_attach_comm(wk_gpu_net *net, const unsigned char id[WK_GPU_COMM_ID_BYTES],
                                 int rank, int world, const wk_gpu_buckets *b, double timeout_s,
                                 bool sync_bn) {
  (void)net;
  (void)sync_bn;
  (void)id;
  (void)rank;
  (void)world;
  (void)b;
  (void)timeout_s;
  return wk_not_built();
}

wk_status wk_gpu_net_copy(wk_gpu_net *net, wk_gpu_arena which, float *host, bool to_device) {
  (void)net;
  (void)which;
  (void)host;
  (void)to_device;
  return wk_not_built();
}

wk_status wk_gpu_net_grads_finite(wk_gpu_net *net, bool *finite) {
  (void)net;
  *finite = false;
  return wk_not_built();
}

wk_status wk_gpu_net_optim_step(wk_gpu_net *net, const wk_gpu_optim *o) {
  (void)net;
  (void)o;
  return wk_not_built();
}

wk_status wk_gpu_net_scale_grads(wk_gpu_net *net, float s) {
  (void)net;
  (void)s;
  return wk_not_built();
}

wk_status wk_gpu_net_xent_forward(wk_gpu_net *net, const wk_gpu_xent *x, double *loss_sum) {
  (void)net;
  (void)x;
  (void)loss_sum;
  return wk_not_built();
}

wk_status wk_gpu_net_xent_backward(wk_gpu_net *net, float dloss) {
  (void)net;
  (void)dloss;
  return wk_not_built();
}

wk_status wk_gpu_net_train_step(wk_gpu_net *net, const wk_gpu_step *s, wk_gpu_step_result *r) {
  (void)net;
  (void)s;
  (void)r;
  return wk_not_built();
}

wk_status wk_gpu_net_graph_stats(wk_gpu_net *net, wk_gpu_graph_stats *out) {
  (void)net;
  (void)out;
  return wk_not_built();
}

wk_status wk_gpu_net_profile(wk_gpu_net *net) {
  (void)net;
  return wk_not_built();
}

wk_status wk_gpu_net_profile_read(wk_gpu_net *net, wk_gpu_node_time *out) {
  (void)net;
  (void)out;
  return wk_not_built();
}
