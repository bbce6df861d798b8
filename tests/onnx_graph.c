/* onnx_graph.c - see onnx_graph.h. Field numbers are onnx.proto's (onnx 1.12). */
#include "onnx_graph.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void wkt_pb_raw(wkt_pb *b, const void *p, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + n) cap *= 2;
    b->data = realloc(b->data, cap);
    ck_assert_ptr_nonnull(b->data);
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->n, p, n);
  b->n += n;
}

void wkt_pb_varint(wkt_pb *b, uint64_t v) {
  uint8_t buf[10];
  size_t n = 0;
  do {
    buf[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  wkt_pb_raw(b, buf, n);
}

static void wkt_pb_tag(wkt_pb *b, int field, int wire_type) {
  wkt_pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire_type);
}

void wkt_pb_int(wkt_pb *b, int field, int64_t v) {
  wkt_pb_tag(b, field, 0);
  wkt_pb_varint(b, (uint64_t)v);
}

void wkt_pb_float(wkt_pb *b, int field, float v) {
  wkt_pb_tag(b, field, 5);
  wkt_pb_raw(b, &v, 4); /* little-endian hosts only, as whisker */
}

void wkt_pb_bytes(wkt_pb *b, int field, const void *p, size_t n) {
  wkt_pb_tag(b, field, 2);
  wkt_pb_varint(b, n);
  wkt_pb_raw(b, p, n);
}

void wkt_pb_str(wkt_pb *b, int field, const char *s) { wkt_pb_bytes(b, field, s, strlen(s)); }

void wkt_pb_msg(wkt_pb *b, int field, const wkt_pb *m) { wkt_pb_bytes(b, field, m->data, m->n); }

void wkt_pb_free(wkt_pb *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------ graphs */

void wkt_og_init(wkt_og *g, int c, int h, int w, int classes) {
  memset(g, 0, sizeof *g);
  g->c = c, g->h = h, g->w = w, g->classes = classes;
  g->opset = 13;
}

static void wkt_og_flush(wkt_og *g) {
  if (!g->has_node) return;
  wkt_pb_msg(&g->graph, 1, &g->node); /* GraphProto.node */
  wkt_pb_free(&g->node);
  g->has_node = false;
}

/* Each comma-separated name of list as repeated string `field`. */
static void wkt_og_names(wkt_pb *b, int field, const char *list) {
  if (!list) return;
  const char *p = list;
  for (;;) {
    const char *e = strchr(p, ',');
    const size_t n = e ? (size_t)(e - p) : strlen(p);
    wkt_pb_bytes(b, field, p, n);
    if (!e) break;
    p = e + 1;
  }
}

void wkt_og_node(wkt_og *g, const char *op, const char *name, const char *inputs,
                 const char *outputs) {
  wkt_og_flush(g);
  g->has_node = true;
  wkt_og_names(&g->node, 1, inputs);
  wkt_og_names(&g->node, 2, outputs);
  if (name) wkt_pb_str(&g->node, 3, name);
  wkt_pb_str(&g->node, 4, op);
}

static void wkt_og_attr(wkt_og *g, const wkt_pb *a) {
  ck_assert(g->has_node);
  wkt_pb_msg(&g->node, 5, a); /* NodeProto.attribute */
}

void wkt_og_attr_int(wkt_og *g, const char *name, int64_t v) {
  wkt_pb a = {0};
  wkt_pb_str(&a, 1, name);
  wkt_pb_int(&a, 3, v);
  wkt_pb_int(&a, 20, 2); /* INT */
  wkt_og_attr(g, &a);
  wkt_pb_free(&a);
}

void wkt_og_attr_float(wkt_og *g, const char *name, float v) {
  wkt_pb a = {0};
  wkt_pb_str(&a, 1, name);
  wkt_pb_float(&a, 2, v);
  wkt_pb_int(&a, 20, 1); /* FLOAT */
  wkt_og_attr(g, &a);
  wkt_pb_free(&a);
}

void wkt_og_attr_ints(wkt_og *g, const char *name, int n, const int64_t *v) {
  wkt_pb a = {0};
  wkt_pb_str(&a, 1, name);
  for (int i = 0; i < n; i++) wkt_pb_int(&a, 8, v[i]);
  wkt_pb_int(&a, 20, 7); /* INTS */
  wkt_og_attr(g, &a);
  wkt_pb_free(&a);
}

void wkt_og_tensor(wkt_og *g, const char *name, int dtype, int ndim, const int64_t *dims,
                   const double *v) {
  wkt_pb t = {0}, raw = {0};
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    wkt_pb_int(&t, 1, dims[i]);
    n *= dims[i];
  }
  wkt_pb_int(&t, 2, dtype);
  wkt_pb_str(&t, 8, name);
  for (int64_t i = 0; i < n; i++) {
    switch (dtype) {
    case WKT_F32: { float f = (float)v[i]; wkt_pb_raw(&raw, &f, 4); break; }
    case WKT_U8: { uint8_t q = (uint8_t)v[i]; wkt_pb_raw(&raw, &q, 1); break; }
    case WKT_I8: { int8_t q = (int8_t)v[i]; wkt_pb_raw(&raw, &q, 1); break; }
    case WKT_I32: { int32_t q = (int32_t)v[i]; wkt_pb_raw(&raw, &q, 4); break; }
    case WKT_I64: { int64_t q = (int64_t)v[i]; wkt_pb_raw(&raw, &q, 8); break; }
    default: ck_abort_msg("data type %d", dtype);
    }
  }
  wkt_pb_bytes(&t, 9, raw.data, raw.n);
  wkt_pb_msg(&g->graph, 5, &t); /* GraphProto.initializer */
  wkt_pb_free(&t);
  wkt_pb_free(&raw);
}

void wkt_og_floats(wkt_og *g, const char *name, int ndim, const int64_t *dims, const float *v) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= dims[i];
  double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
  ck_assert_ptr_nonnull(d);
  for (int64_t i = 0; i < n; i++) d[i] = v[i];
  wkt_og_tensor(g, name, WKT_F32, ndim, dims, d);
  free(d);
}

void wkt_og_scalar(wkt_og *g, const char *name, int dtype, double v) {
  wkt_og_tensor(g, name, dtype, 0, NULL, &v);
}

/* ValueInfoProto `name`: float tensor of the given dims. */
static void wkt_og_value_info(wkt_pb *out, int field, const char *name, int ndim,
                              const int64_t *dims) {
  wkt_pb shape = {0}, tensor = {0}, type = {0}, vi = {0};
  for (int i = 0; i < ndim; i++) {
    wkt_pb d = {0};
    wkt_pb_int(&d, 1, dims[i]); /* dim_value */
    wkt_pb_msg(&shape, 1, &d);
    wkt_pb_free(&d);
  }
  wkt_pb_int(&tensor, 1, WKT_F32); /* elem_type */
  wkt_pb_msg(&tensor, 2, &shape);
  wkt_pb_msg(&type, 1, &tensor);   /* tensor_type */
  wkt_pb_str(&vi, 1, name);
  wkt_pb_msg(&vi, 2, &type);
  wkt_pb_msg(out, field, &vi);
  wkt_pb_free(&shape), wkt_pb_free(&tensor), wkt_pb_free(&type), wkt_pb_free(&vi);
}

void wkt_og_finish(wkt_og *g, wkt_pb *out) {
  wkt_og_flush(g);
  const int64_t in[4] = {1, g->c, g->h, g->w}, o[2] = {1, g->classes};
  wkt_pb_str(&g->graph, 2, "g");
  wkt_og_value_info(&g->graph, 11, "x", 4, in);
  wkt_og_value_info(&g->graph, 12, "y", 2, o);
  wkt_pb opset = {0};
  wkt_pb_str(&opset, 1, "");
  wkt_pb_int(&opset, 2, g->opset);
  memset(out, 0, sizeof *out);
  wkt_pb_int(out, 1, 7); /* ir_version */
  if (g->producer) wkt_pb_str(out, 2, g->producer);
  wkt_pb_msg(out, 7, &g->graph);
  wkt_pb_msg(out, 8, &opset);
  wkt_pb_free(&opset);
  if (g->classes_json) {
    wkt_pb kv = {0};
    wkt_pb_str(&kv, 1, "whisker.classes");
    wkt_pb_str(&kv, 2, g->classes_json);
    wkt_pb_msg(out, 14, &kv); /* ModelProto.metadata_props */
    wkt_pb_free(&kv);
  }
  wkt_pb_free(&g->graph);
}

void wkt_og_write(wkt_og *g, const char *path) {
  wkt_pb m;
  wkt_og_finish(g, &m);
  FILE *f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "%s", path);
  ck_assert_uint_eq(fwrite(m.data, 1, m.n, f), m.n);
  ck_assert_int_eq(fclose(f), 0);
  wkt_pb_free(&m);
}

/* ------------------------------------------------------------------ reading */

static uint64_t wkt_pb_read_varint(const uint8_t **p, const uint8_t *end) {
  uint64_t v = 0;
  for (int shift = 0; *p < end && shift < 64; shift += 7) {
    const uint8_t b = *(*p)++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  ck_abort_msg("malformed varint");
  return 0;
}

/* The next field of a message in [*p, end): its number, and for a
 * length-delimited one its bytes; false at the end. */
static bool wkt_pb_next(const uint8_t **p, const uint8_t *end, int *field, const uint8_t **val,
                        size_t *len) {
  if (*p >= end) return false;
  const uint64_t tag = wkt_pb_read_varint(p, end);
  *field = (int)(tag >> 3);
  *val = NULL;
  *len = 0;
  switch (tag & 7) {
  case 0: wkt_pb_read_varint(p, end); break;
  case 1: *p += 8; break;
  case 5: *p += 4; break;
  case 2:
    *len = (size_t)wkt_pb_read_varint(p, end);
    ck_assert_uint_le(*len, (size_t)(end - *p));
    *val = *p;
    *p += *len;
    break;
  default: ck_abort_msg("wire type %d", (int)(tag & 7));
  }
  ck_assert(*p <= end);
  return true;
}

/* The next length-delimited field number `want` in [*p, end), its bytes in
 * *val and *len; false when there is none left. */
static bool wkt_pb_field(const uint8_t **p, const uint8_t *end, int want, const uint8_t **val,
                         size_t *len) {
  int f;
  while (wkt_pb_next(p, end, &f, val, len))
    if (f == want && *val) return true;
  return false;
}

int wkt_onnx_initializer_names(const uint8_t *data, size_t n_bytes, char (*names)[128], int max) {
  int count = 0;
  const uint8_t *p = data, *g, *t, *name;
  size_t glen, tlen, nlen;
  while (wkt_pb_field(&p, data + n_bytes, 7, &g, &glen))                  /* ModelProto.graph */
    for (const uint8_t *gp = g; wkt_pb_field(&gp, g + glen, 5, &t, &tlen);) /* .initializer */
      for (const uint8_t *tp = t; wkt_pb_field(&tp, t + tlen, 8, &name, &nlen);) { /* .name */
        if (count < max) snprintf(names[count], 128, "%.*s", (int)nlen, (const char *)name);
        count++;
      }
  return count;
}
