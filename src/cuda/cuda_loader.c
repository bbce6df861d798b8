/* cuda_loader.c - the cuda.h API of a build with the GPU backend: the backend is
 * libwhisker-cuda.so (cuda_plugin.h), loaded on first use from, in order,
 * $WHISKER_CUDA_PLUGIN, the program's own folder, ../lib beside it, and the
 * dynamic linker's search path. A plugin that cannot be loaded means no GPU,
 * and `whisker system` says why. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "cuda/cuda.h"
#include "cuda/cuda_plugin.h"

static pthread_once_t wk_plugin_once = PTHREAD_ONCE_INIT;
static const wk_cuda_plugin *wk_plugin;
static char wk_plugin_error[1024];

/* Opens one candidate; on failure appends why to wk_plugin_error. */
static bool wk_plugin_try(const char *path) {
  const size_t len = strlen(wk_plugin_error);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(wk_plugin_error + len, sizeof wk_plugin_error - len, "%s%s", len ? "; " : "",
             e ? e : path);
    return false;
  }
  wk_cuda_plugin_get_fn get;
  *(void **)&get = dlsym(h, "wk_cuda_plugin_get"); /* POSIX's sanctioned cast */
  const wk_cuda_plugin *p = get ? get() : NULL;
  if (!p || p->abi != WK_CUDA_PLUGIN_ABI) {
    snprintf(wk_plugin_error + len, sizeof wk_plugin_error - len,
             "%s%s: not a whisker GPU plugin of ABI %d", len ? "; " : "", path,
             WK_CUDA_PLUGIN_ABI);
    dlclose(h);
    return false;
  }
  wk_plugin = p; /* never closed: CUDA state lives as long as the process */
  return true;
}

static void wk_plugin_load(void) {
  const char *env = getenv("WHISKER_CUDA_PLUGIN");
  if (env && *env) {
    wk_plugin_try(env);
    return;
  }
  char exe[2048], path[2200];
  if (wk_exe_dir(exe, sizeof exe)) {
    snprintf(path, sizeof path, "%s/%s", exe, WK_CUDA_PLUGIN_FILE);
    if (access(path, R_OK) == 0 && wk_plugin_try(path)) return;
    snprintf(path, sizeof path, "%s/../lib/%s", exe, WK_CUDA_PLUGIN_FILE);
    if (access(path, R_OK) == 0 && wk_plugin_try(path)) return;
  }
  wk_plugin_try(WK_CUDA_PLUGIN_FILE);
}

static const wk_cuda_plugin *wk_plugin_get(void) {
  pthread_once(&wk_plugin_once, wk_plugin_load);
  return wk_plugin;
}

bool wk_cuda_compiled(void) { return true; }

int wk_cuda_device_count(void) {
  const wk_cuda_plugin *p = wk_plugin_get();
  return p ? p->device_count() : 0;
}

wk_status wk_cuda_describe(char *buf, size_t n) {
  if (!buf || n == 0) return wk_fail(WK_ERR_INVALID_ARG, "wk_cuda_describe: empty buffer");
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) {
    const int len = snprintf(buf, n, "CUDA backend: built, but %s could not be loaded (%s)\n",
                             WK_CUDA_PLUGIN_FILE, wk_plugin_error);
    if (len < 0 || (size_t)len >= n)
      return wk_fail(WK_ERR_LIMIT, "wk_cuda_describe: description truncated to %zu bytes", n);
    return WK_OK;
  }
  const wk_status s = p->describe(buf, n);
  return s == WK_OK ? WK_OK : wk_fail(s, "%s", p->last_error());
}

/* ------------------------------------------------------------------ networks */

static wk_status wk_no_plugin(void) {
  return wk_fail(WK_ERR_UNSUPPORTED, "no GPU: %s could not be loaded (%s)", WK_CUDA_PLUGIN_FILE,
                 wk_plugin_error);
}

/* A failed plugin call left its message in the plugin's own store: bring it here. */
static wk_status wk_relay(const wk_cuda_plugin *p, wk_status s) {
  return s == WK_OK ? WK_OK : wk_fail(s, "%s", p->last_error());
}

wk_status wk_gpu_algos_create(wk_gpu_algos **out) {
  *out = NULL;
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->algos_create(out));
}

void wk_gpu_algos_destroy(wk_gpu_algos *a) {
  const wk_cuda_plugin *p = a ? wk_plugin_get() : NULL;
  if (p) p->algos_destroy(a);
}

wk_status wk_gpu_algos_stats(wk_gpu_algos *a, wk_gpu_algo_stats *out) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->algos_stats(a, out));
}

wk_status wk_gpu_memory_stats(int device, wk_gpu_memory *out) {
  memset(out, 0, sizeof *out);
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->memory_stats(device, out));
}

wk_status wk_gpu_net_create(const wk_gpu_graph *g, int device, wk_gpu_net **out) {
  *out = NULL;
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_create(g, device, out));
}

void wk_gpu_net_destroy(wk_gpu_net *net) {
  const wk_cuda_plugin *p = net ? wk_plugin_get() : NULL;
  if (p) p->net_destroy(net);
}

wk_status wk_gpu_net_forward(wk_gpu_net *net, const wk_gpu_input *x, int64_t n, bool train,
                             const wk_gpu_dropout *drop, float *out) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_forward(net, x, n, train, drop, out));
}

wk_status wk_gpu_net_stage(wk_gpu_net *net, const wk_gpu_input *x, int64_t n) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_stage(net, x, n));
}

wk_status wk_gpu_net_backward(wk_gpu_net *net, const float *dy) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_backward(net, dy));
}

wk_status wk_gpu_net_set_params(wk_gpu_net *net, const wk_param *params) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_set_params(net, params));
}

wk_status wk_gpu_comm_unique_id(unsigned char id[WK_GPU_COMM_ID_BYTES]) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->comm_unique_id(id));
}

wk_status wk_gpu_net_attach_comm(wk_gpu_net *net, const unsigned char id[WK_GPU_COMM_ID_BYTES],
                                 int rank, int world, const wk_gpu_buckets *b, double timeout_s,
                                 bool sync_bn) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_attach_comm(net, id, rank, world, b, timeout_s, sync_bn));
}

wk_status wk_gpu_net_copy(wk_gpu_net *net, wk_gpu_arena which, float *host, bool to_device) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_copy(net, which, host, to_device));
}

wk_status wk_gpu_net_grads_finite(wk_gpu_net *net, bool *finite) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_grads_finite(net, finite));
}

wk_status wk_gpu_net_optim_step(wk_gpu_net *net, const wk_gpu_optim *o) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_optim_step(net, o));
}

wk_status wk_gpu_net_scale_grads(wk_gpu_net *net, float s) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_scale_grads(net, s));
}

wk_status wk_gpu_net_xent_forward(wk_gpu_net *net, const wk_gpu_xent *x, double *loss_sum) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_xent_forward(net, x, loss_sum));
}

wk_status wk_gpu_net_xent_backward(wk_gpu_net *net, float dloss) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_xent_backward(net, dloss));
}

wk_status wk_gpu_net_train_step(wk_gpu_net *net, const wk_gpu_step *s, wk_gpu_step_result *r) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_train_step(net, s, r));
}

wk_status wk_gpu_net_graph_stats(wk_gpu_net *net, wk_gpu_graph_stats *out) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_graph_stats(net, out));
}

wk_status wk_gpu_net_profile(wk_gpu_net *net) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_profile(net));
}

wk_status wk_gpu_net_profile_read(wk_gpu_net *net, wk_gpu_node_time *out) {
  const wk_cuda_plugin *p = wk_plugin_get();
  if (!p) return wk_no_plugin();
  return wk_relay(p, p->net_profile_read(net, out));
}
