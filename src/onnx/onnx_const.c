/* onnx_const.c - nodes that compute constants at import time (Constant, and
 * the Shape -> Gather -> Unsqueeze -> Concat arithmetic exporters emit before a
 * Reshape), and the pass-through nodes Identity and Dropout (inference). The
 * batch dimension is 1 in folded shapes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx_import_impl.h"

/* n values for a constant node computes (charged to the budget). */
/* v as an integer in [lo, hi] (NaN, fractions and values beyond refused
 * before any cast). */
static wk_status wk_const_int(wk_imp *imp, const Onnx__NodeProto *node, const char *what,
                              double v, int64_t lo, int64_t hi, int64_t *out) {
  if (!(v >= (double)lo && v <= (double)hi) || v != floor(v))
    return wk_imp_fail(imp, node, WK_ERR_FORMAT, "%s %g is not an integer in [%lld, %lld]", what,
                       v, (long long)lo, (long long)hi);
  *out = (int64_t)v;
  return WK_OK;
}

static wk_status wk_const_new(wk_imp *imp, const Onnx__NodeProto *node, int64_t n, double **c) {
  *c = NULL;
  WK_TRY(wk_imp_charge(imp, node, (double)n * sizeof **c));
  *c = malloc((size_t)(n ? n : 1) * sizeof **c);
  return *c ? WK_OK : wk_imp_fail(imp, node, WK_ERR_NOMEM, "out of memory");
}

static wk_status wk_const_constant(wk_imp *imp, const Onnx__NodeProto *node) {
  const Onnx__AttributeProto *a = wk_onnx_attr(node, "value");
  if (a && a->t) {
    const Onnx__TensorProto *t = a->t;
    if (t->n_dims > WK_ONNX_MAX_DIMS)
      return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "%zu dims", t->n_dims);
    const int64_t n = wk_onnx_tensor_numel(t, node->output[0]);
    if (n < 0) return wk_imp_fail(imp, node, WK_ERR_LIMIT, "%s", wk_last_error());
    double *c;
    WK_TRY(wk_const_new(imp, node, n, &c));
    wk_status s = wk_onnx_tensor_values(t, "value", c, n);
    if (s != WK_OK) {
      free(c);
      return wk_imp_fail(imp, node, s, "%s", wk_last_error());
    }
    return wk_imp_set_const(imp, node, 0, c, n, (int)t->n_dims, t->dims, t->data_type);
  }
  double *c;
  if ((a = wk_onnx_attr(node, "value_float")) || (a = wk_onnx_attr(node, "value_int"))) {
    WK_TRY(wk_const_new(imp, node, 1, &c));
    c[0] = a->has_f ? a->f : (double)a->i;
    return wk_imp_set_const(imp, node, 0, c, 1, 0, NULL,
                            a->has_f ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
                                     : ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
  }
  if ((a = wk_onnx_attr(node, "value_ints")) || (a = wk_onnx_attr(node, "value_floats"))) {
    const int64_t n = (int64_t)(a->n_ints ? a->n_ints : a->n_floats);
    WK_TRY(wk_const_new(imp, node, n, &c));
    for (int64_t i = 0; i < n; i++) c[i] = a->n_ints ? (double)a->ints[i] : a->floats[i];
    return wk_imp_set_const(imp, node, 0, c, n, 1, &n,
                            a->n_ints ? ONNX__TENSOR_PROTO__DATA_TYPE__INT64
                                      : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
  }
  return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "only tensor and number constants");
}

static wk_status wk_const_shape(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x = wk_imp_find(imp, wk_imp_has_in(node, 0) ? node->input[0] : "");
  if (!x) return imp->failed;
  int64_t d[WK_ONNX_MAX_DIMS];
  int64_t r;
  if (x->is_const) {
    r = x->ndim;
    memcpy(d, x->dims, sizeof(int64_t) * (size_t)r);
  } else {
    r = wk_imp_onnx_shape(imp, x, d);
  }
  /* opset 15's start and end slice the shape: only the whole of it is mapped */
  int64_t start, end;
  WK_TRY(wk_imp_attr_int(imp, node, "start", 0, &start));
  WK_TRY(wk_imp_attr_int(imp, node, "end", INT64_MAX, &end));
  start = start < 0 ? start + r : start;
  end = end < 0 ? end + r : end;
  if (start > 0 || end < r)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED,
                       "start/end other than the whole shape (rank %lld) are not supported",
                       (long long)r);
  double *c;
  WK_TRY(wk_const_new(imp, node, r, &c));
  for (int64_t i = 0; i < r; i++) c[i] = (double)d[i];
  return wk_imp_set_const(imp, node, 0, c, r, 1, &r, ONNX__TENSOR_PROTO__DATA_TYPE__INT64);
}

static wk_status wk_const_gather(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *data, *idx;
  WK_TRY(wk_imp_const_in(imp, node, 0, &data));
  WK_TRY(wk_imp_const_in(imp, node, 1, &idx));
  int64_t axis;
  WK_TRY(wk_imp_attr_int(imp, node, "axis", 0, &axis));
  if (data->ndim != 1 || axis != 0 || idx->ndim > 1)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "only 1-D data gathered along axis 0");
  double *c;
  WK_TRY(wk_const_new(imp, node, idx->n, &c));
  for (int64_t i = 0; i < idx->n; i++) {
    int64_t k = 0;
    const wk_status s = wk_const_int(imp, node, "index", idx->c[i], -data->n, data->n - 1, &k);
    if (s != WK_OK) {
      free(c);
      return s;
    }
    c[i] = data->c[k < 0 ? k + data->n : k];
  }
  return wk_imp_set_const(imp, node, 0, c, idx->n, idx->ndim, idx->dims, data->dtype);
}

/* Unsqueeze/Concat of small 1-D (or scalar) integer constants. */
static wk_status wk_const_unsqueeze(wk_imp *imp, const Onnx__NodeProto *node) {
  wk_iv *x;
  WK_TRY(wk_imp_const_in(imp, node, 0, &x));
  int64_t axes[WK_ONNX_MAX_DIMS];
  int na = wk_onnx_attr_ints(node, "axes", axes, WK_ONNX_MAX_DIMS);
  if (na < 0 && wk_imp_has_in(node, 1)) {
    wk_iv *a;
    WK_TRY(wk_imp_const_in(imp, node, 1, &a));
    na = (int)(a->n <= WK_ONNX_MAX_DIMS ? a->n : WK_ONNX_MAX_DIMS + 1);
    for (int i = 0; i < na && i < WK_ONNX_MAX_DIMS; i++)
      WK_TRY(wk_const_int(imp, node, "axis", a->c[i], -2 * WK_ONNX_MAX_DIMS,
                          2 * WK_ONNX_MAX_DIMS, &axes[i]));
  }
  const int r = x->ndim + na;
  if (na < 1 || r > WK_ONNX_MAX_DIMS)
    return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "axes missing or too many");
  int64_t dims[WK_ONNX_MAX_DIMS];
  bool is_new[WK_ONNX_MAX_DIMS] = {false};
  for (int i = 0; i < na; i++) {
    int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
    if (a < 0 || a >= r || is_new[a])
      return wk_imp_fail(imp, node, WK_ERR_FORMAT, "axis %lld invalid", (long long)axes[i]);
    is_new[a] = true;
  }
  for (int i = 0, k = 0; i < r; i++) dims[i] = is_new[i] ? 1 : x->dims[k++];
  return wk_imp_set_const_view(imp, node, 0, x, r, dims);
}

static wk_status wk_const_concat(wk_imp *imp, const Onnx__NodeProto *node) {
  int64_t n = 0;
  for (size_t k = 0; k < node->n_input; k++) {
    wk_iv *x;
    WK_TRY(wk_imp_const_in(imp, node, k, &x));
    if (x->ndim != 1)
      return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "only 1-D constants are concatenated");
    n += x->n;
  }
  if (n > 64) return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "only short shape vectors");
  double *c;
  WK_TRY(wk_const_new(imp, node, n, &c));
  int32_t dtype = 0;
  for (size_t k = 0, o = 0; k < node->n_input; k++) {
    const wk_iv *x = wk_imp_find(imp, node->input[k]);
    memcpy(c + o, x->c, (size_t)x->n * sizeof *c);
    o += (size_t)x->n;
    dtype = x->dtype;
  }
  return wk_imp_set_const(imp, node, 0, c, n, 1, &n, dtype);
}

wk_status wk_imp_const_op(wk_imp *imp, const Onnx__NodeProto *node, bool *handled) {
  const char *op = node->op_type;
  *handled = true;
  if (!strcmp(op, "Constant")) return wk_const_constant(imp, node);
  if (!strcmp(op, "Shape")) return wk_const_shape(imp, node);
  if (!strcmp(op, "Gather")) return wk_const_gather(imp, node);
  if (!strcmp(op, "Unsqueeze")) return wk_const_unsqueeze(imp, node);
  if (!strcmp(op, "Concat") && node->n_input > 0) {
    wk_iv *x = wk_imp_find(imp, wk_imp_has_in(node, 0) ? node->input[0] : "");
    if (x && x->is_const) return wk_const_concat(imp, node);
    wk_clear_error();
  }
  if (!strcmp(op, "Identity") || !strcmp(op, "Dropout")) {
    wk_iv *x = wk_imp_find(imp, wk_imp_has_in(node, 0) ? node->input[0] : "");
    if (!x) return imp->failed;
    if (node->n_output > 1 && node->output[1] && node->output[1][0] &&
        wk_imp_sole_consumer(imp, node->output[1], &(size_t){0}))
      return wk_imp_fail(imp, node, WK_ERR_UNSUPPORTED, "the dropout mask is used");
    return wk_imp_alias(imp, node, 0, x);
  }
  *handled = false;
  return WK_OK;
}
