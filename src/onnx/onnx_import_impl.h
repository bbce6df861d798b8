/* onnx_import_impl.h - the importer's state, shared by the graph walk
 * (onnx_import.c), the float op mappings (onnx_ops.c), the constant folding of
 * shape arithmetic (onnx_const.c) and the quantized op mappings (onnx_quant.c).
 *
 * Every ONNX tensor name the walk has met is an entry: either an activation
 * (a whisker value, computed from the graph input; a quantized activation
 * stands for its dequantized float value) or a constant (an initializer, a
 * Constant node or folded shape arithmetic, held as doubles). Weights of each
 * whisker node are kept in PyTorch's layouts until the network is finalized.
 *
 * Memory. An alias of a constant (Identity, Dropout, Unsqueeze) shares its
 * source's values. Constants materialized or computed and weights kept are
 * charged against a budget of WK_IMP_BYTES_PER_FILE_BYTE times the file's size
 * plus WK_IMP_BYTES_FLOOR, so that a small file cannot make the import hold
 * gigabytes (each DequantizeLinear of one big constant computes a new one). A
 * real graph needs about 20 bytes per file byte at most: an int8 weight of a
 * QDQ graph is 8 bytes as a constant, 8 dequantized and 4 as a weight. */
#ifndef WK_ONNX_IMPORT_IMPL_H
#define WK_ONNX_IMPORT_IMPL_H

#include "core/strmap.h"
#include "nn/net.h"
#include "onnx/onnx.h"
#include "onnx/onnx_impl.h"

typedef struct wk_iv {
  const char *name;   /* borrowed from the model */
  bool is_const;
  /* activation */
  int value;          /* whisker value id */
  int onnx_rank;      /* 4: (N,C,H,W) as the graph sees it, 2: (N,F) */
  int flat_h, flat_w, flat_c; /* flattened (NHWC order) from (H,W,C) with H*W > 1, else 0 */
  /* constant */
  double *c;          /* n values, owned when owns_c, else another entry's */
  bool owns_c;
  int64_t n;
  int ndim;
  int64_t dims[WK_ONNX_MAX_DIMS];
  int32_t dtype;      /* ONNX data type (the zero point's type gives a quantized range) */
} wk_iv;

/* Weights of one whisker node in PyTorch layouts: conv (O,I,KH,KW) and bias;
 * linear (O,I) and bias; batchnorm gamma, beta and running mean, var. */
typedef struct wk_imp_w {
  float *p[2];
  float *buf[2];
} wk_imp_w;

/* The readers of a tensor name: how many nodes, the first of them. */
typedef struct wk_imp_use {
  size_t first, last; /* node indices */
  size_t n_readers;
  bool is_output;     /* a graph output */
} wk_imp_use;

typedef struct wk_imp {
  const char *path;
  const Onnx__GraphProto *g;
  wk_net *net;
  wk_iv *v;            /* entries, capacity fixed up front (pointers stay valid) */
  size_t n_v, cap_v;
  /* indices, so that the walk is linear in the graph's size */
  wk_strmap entries;   /* tensor name -> index in v of its (latest) entry */
  wk_strmap inits;     /* initializer name -> index in g->initializer (the first) */
  wk_strmap uses;      /* tensor name -> index in use */
  wk_imp_use *use;
  wk_strmap taken;     /* whisker node names given */
  wk_strmap next_suffix; /* base name -> the suffix to try first (wk_imp_unique_name) */
  wk_imp_w *w;         /* per whisker node */
  int cap_w;
  bool *done;          /* per ONNX node: consumed already (by a fusion) */
  size_t cur;          /* the ONNX node being mapped */
  bool quantized;      /* some QLinear/Quantize op was seen */
  size_t budget_bytes, used_bytes; /* see "Memory" above */
  wk_status failed;    /* the last wk_imp_fail's code (for the helpers that return -1) */
} wk_imp;

#define WK_IMP_BYTES_PER_FILE_BYTE 32
#define WK_IMP_BYTES_FLOOR ((size_t)64 << 20)

/* "PATH: node 'NAME' (OP): message" (node NULL: the current node, if any);
 * returns code, also kept in imp->failed. */
wk_status wk_imp_fail(wk_imp *imp, const Onnx__NodeProto *node, wk_status code,
                      const char *fmt, ...) WK_PRINTF(4, 5);
#ifdef __clang_analyzer__ /* the analyzer does not inline variadic calls */
#define wk_imp_fail(imp, node, code, ...) \
  ((void)(wk_imp_fail)((imp), (node), (code), __VA_ARGS__), (code))
#endif

/* Attribute `name` of node, or dflt when absent. One of another type (a
 * FLOAT transB) fails naming the node and the attribute. */
wk_status wk_imp_attr_int(wk_imp *imp, const Onnx__NodeProto *node, const char *name,
                          int64_t dflt, int64_t *out);
wk_status wk_imp_attr_float(wk_imp *imp, const Onnx__NodeProto *node, const char *name,
                            float dflt, float *out);

/* The entry of a name (an initializer is materialized on first use), or NULL
 * after a message naming the file and the current node (its status in
 * imp->failed). */
wk_iv *wk_imp_find(wk_imp *imp, const char *name);
/* Input k of node as an activation / a constant; fails naming the node. */
wk_status wk_imp_act_in(wk_imp *imp, const Onnx__NodeProto *node, size_t k, wk_iv **out);
wk_status wk_imp_const_in(wk_imp *imp, const Onnx__NodeProto *node, size_t k, wk_iv **out);
/* True when node has a non-empty input k. */
bool wk_imp_has_in(const Onnx__NodeProto *node, size_t k);
/* Registers output k of node as an activation of whisker value `value`. */
wk_status wk_imp_set_act(wk_imp *imp, const Onnx__NodeProto *node, size_t k, int value,
                         int onnx_rank);
/* The same for the output of an element-wise op on `like`: the ONNX rank and
 * the flatten order (flat_h/w/c) are like's. */
wk_status wk_imp_set_act_as(wk_imp *imp, const Onnx__NodeProto *node, size_t k, int value,
                            const wk_iv *like);
/* Charges n_bytes of constants or weights made for node (NULL: the current
 * one) to the budget; WK_ERR_LIMIT naming the node when it is spent. */
wk_status wk_imp_charge(wk_imp *imp, const Onnx__NodeProto *node, double n_bytes);
/* Registers output k of node as a constant (takes ownership of c, whose
 * bytes the caller charged). */
wk_status wk_imp_set_const(wk_imp *imp, const Onnx__NodeProto *node, size_t k, double *c,
                           int64_t n, int ndim, const int64_t *dims, int32_t dtype);
/* Registers output k of node as src's values under other dims (the same
 * count), shared with src. */
wk_status wk_imp_set_const_view(wk_imp *imp, const Onnx__NodeProto *node, size_t k,
                                const wk_iv *src, int ndim, const int64_t *dims);
/* Makes output k of node another name for the entry src (a constant's values
 * shared). */
wk_status wk_imp_alias(wk_imp *imp, const Onnx__NodeProto *node, size_t k, const wk_iv *src);

/* A name for a whisker node from its weight ("layer1.0.conv1.weight" ->
 * "layer1.0.conv1"), else from the ONNX node name, else from the op; names of
 * nodes with parameters are made unique. */
void wk_imp_node_name(wk_imp *imp, const Onnx__NodeProto *node, const char *weight, char *out);
/* base if no node has that name yet, else base_2, base_3 ... (out holds
 * WK_NODE_NAME_MAX bytes). */
void wk_imp_unique_name(wk_imp *imp, const char *base, char *out);
/* Adds a whisker node; its weights (malloc'ed, PyTorch layout) are owned by
 * the importer from then on, also when adding fails. Returns the value id or -1
 * after a message naming the ONNX node (its status in imp->failed, as for the
 * other helpers that return a value or -1). */
int wk_imp_add(wk_imp *imp, const Onnx__NodeProto *node, const wk_node *nd, float *p0, float *p1,
               float *b0, float *b1);
/* Adds an activation node after value x. */
int wk_imp_add_act(wk_imp *imp, const Onnx__NodeProto *node, int x, wk_act act, const char *name);
/* The one node that reads output `name` (after the current one), when there is
 * exactly one and the name is not a graph output; else NULL. */
const Onnx__NodeProto *wk_imp_sole_consumer(const wk_imp *imp, const char *name, size_t *index);

/* Shape of an activation as the ONNX graph sees it, batch as 1. */
int wk_imp_onnx_shape(const wk_imp *imp, const wk_iv *x, int64_t dims[4]);
/* Features per sample of an activation. */
int64_t wk_imp_features(const wk_imp *imp, const wk_iv *x);
/* Copies a constant as floats (malloc'ed). */
float *wk_imp_floats(const wk_iv *c);

/* Op mappings: each maps one ONNX node (or returns WK_ERR_UNSUPPORTED with the
 * node named). *handled false when the op is not its family's. */
wk_status wk_imp_float_op(wk_imp *imp, const Onnx__NodeProto *node, bool *handled);
wk_status wk_imp_const_op(wk_imp *imp, const Onnx__NodeProto *node, bool *handled);
wk_status wk_imp_quant_op(wk_imp *imp, const Onnx__NodeProto *node, bool *handled);

/* Shared by float and quantized mappings. */
wk_status wk_imp_conv_attrs(wk_imp *imp, const Onnx__NodeProto *node, const wk_iv *w,
                            wk_node *nd);
/* Adds a linear node of weight w (O, I) in ONNX column order (owned) for
 * input x, permuting columns when x was flattened from a spatial map. */
int wk_imp_linear(wk_imp *imp, const Onnx__NodeProto *node, const wk_iv *x, const char *name,
                  int out_f, float *w, float *bias);
/* Adds the sum of node's computed inputs ka and kb (*like: an input, whose
 * layout the sum has); a constant operand fails naming bias_op, the op it
 * could be the bias of, and inputs of different ONNX ranks (a broadcast) or
 * flattened in different orders fail. Returns the value or -1. */
int wk_imp_sum(wk_imp *imp, const Onnx__NodeProto *node, size_t ka, size_t kb,
               const char *bias_op, const wk_iv **like);
/* Adds a global average pool of node's input 0; returns the value or -1. */
int wk_imp_global_pool(wk_imp *imp, const Onnx__NodeProto *node);
/* Turns x into a flat value (adds a flatten node when x is spatial). */
wk_status wk_imp_flatten(wk_imp *imp, const Onnx__NodeProto *node, wk_iv *x, size_t out_k);

#endif
