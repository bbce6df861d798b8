/* onnx_nets.h - networks with random weights for the ONNX export tests: the
 * zoo's architectures and "custom", a net with every node kind whisker has
 * (conv with groups/asymmetric kernel, stride and padding, batchnorm on maps
 * and on features, relu/relu6, max/avg pooling, add, flatten of a 5x3 map,
 * dropout, linear). Batchnorm statistics are random too, so that the folding
 * in evaluation is exercised. */
#ifndef WK_TEST_ONNX_NETS_H
#define WK_TEST_ONNX_NETS_H

#include "nn/net.h"

#define WKT_ONNX_N_ARCHS 4
extern const char *const wkt_onnx_archs[WKT_ONNX_N_ARCHS];

/* Builds arch for px x px inputs and `classes` outputs, weights from seed. */
wk_net *wkt_onnx_net(wk_ctx *ctx, const char *arch, int px, int classes, uint64_t seed);
/* The input size each arch is tested at. */
int wkt_onnx_px(const char *arch);
/* A random batch: x (n, px, px, 3) NHWC and the same values NCHW (malloc'ed). */
wk_tensor wkt_onnx_batch(int64_t n, int px, uint64_t seed, float **nchw);

#endif
