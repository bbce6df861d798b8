/* init.c - initial parameter values, following the schemes torchvision uses so
 * a whisker network starts where the PyTorch one would (in distribution; the
 * random streams differ). Each parameter draws from its own stream of the
 * counter-based RNG, (seed, parameter index), so values do not depend on the
 * order or the thread count. */
#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "nn/net_impl.h"

static void wk_fill_normal(float *p, size_t n, wk_rng *r, float std) {
  for (size_t i = 0; i < n; i++) p[i] = std * wk_rng_normal(r);
}

static void wk_fill_uniform(float *p, size_t n, wk_rng *r, float bound) {
  for (size_t i = 0; i < n; i++) p[i] = bound * (2.0f * wk_rng_uniform(r) - 1.0f);
}

static void wk_fill_const(float *p, size_t n, float v) {
  for (size_t i = 0; i < n; i++) p[i] = v;
}

wk_status wk_net_init_params(wk_net *net, uint64_t seed) {
  for (int i = 0; i < net->n_nodes; i++) {
    const wk_node *nd = &net->nodes[i];
    const int pw = nd->param[0], pb = nd->param[1];
    if (nd->op == WK_NODE_BATCHNORM) {
      const wk_param *g = &net->params[pw], *b = &net->params[pb];
      wk_fill_const(net->weights + g->offset, g->numel, 1.0f);
      wk_fill_const(net->weights + b->offset, b->numel, 0.0f);
      const wk_param *rv = &net->buffers[nd->buffer[1]];
      wk_fill_const(net->buffer_data + rv->offset, rv->numel, 1.0f);
      continue;
    }
    if (nd->op != WK_NODE_CONV && nd->op != WK_NODE_LINEAR) continue;
    const wk_param *w = &net->params[pw];
    /* fan_in = elements per output row; fan_out = rows x receptive field, as
     * torch.nn.init computes them (for grouped convs too). */
    const double fan_in = (double)w->numel / (double)w->shape[0];
    const double receptive = w->ndim == 4 ? (double)(w->shape[1] * w->shape[2]) : 1.0;
    const double fan_out = (double)w->shape[0] * receptive;
    wk_rng r = wk_rng_make(seed, 0x10000u + (uint64_t)pw);
    float bias_bound = 0.0f;
    switch (nd->init) {
    case WK_INIT_KAIMING_FAN_OUT:
      wk_fill_normal(net->weights + w->offset, w->numel, &r, (float)sqrt(2.0 / fan_out));
      break;
    case WK_INIT_TORCH_DEFAULT:
      bias_bound = (float)(1.0 / sqrt(fan_in));
      wk_fill_uniform(net->weights + w->offset, w->numel, &r, bias_bound);
      break;
    case WK_INIT_NORMAL_001:
      wk_fill_normal(net->weights + w->offset, w->numel, &r, 0.01f);
      break;
    default:
      return wk_fail(WK_ERR_INVALID_ARG, "%s: unknown init scheme %d", nd->name, nd->init);
    }
    if (pb >= 0) {
      const wk_param *b = &net->params[pb];
      wk_rng rb = wk_rng_make(seed, 0x10000u + (uint64_t)pb);
      wk_fill_uniform(net->weights + b->offset, b->numel, &rb, bias_bound);
    }
  }
  net->weights_version++;
  return WK_OK;
}
