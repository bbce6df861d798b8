/* onnx_graph.h - small ONNX files written byte by byte for the import tests:
 * a protobuf wire-format writer (independent of the protobuf-c code the
 * importer reads with) and a graph builder over it, so that a test states its
 * graph in C and CI needs no Python.
 *
 * Every helper fails the test (ck_assert) when memory runs out. */
#ifndef WK_TEST_ONNX_GRAPH_H
#define WK_TEST_ONNX_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ONNX TensorProto data types the builder writes. */
enum { WKT_F32 = 1, WKT_U8 = 2, WKT_I8 = 3, WKT_I32 = 6, WKT_I64 = 7 };

/* Bytes of a protobuf message being written. */
typedef struct wkt_pb {
  uint8_t *data;
  size_t n, cap;
} wkt_pb;

void wkt_pb_raw(wkt_pb *b, const void *p, size_t n);
void wkt_pb_varint(wkt_pb *b, uint64_t v);
void wkt_pb_int(wkt_pb *b, int field, int64_t v);               /* a varint field */
void wkt_pb_float(wkt_pb *b, int field, float v);               /* a fixed32 field */
void wkt_pb_bytes(wkt_pb *b, int field, const void *p, size_t n); /* length-delimited */
void wkt_pb_str(wkt_pb *b, int field, const char *s);
void wkt_pb_msg(wkt_pb *b, int field, const wkt_pb *m);          /* m as a submessage */
void wkt_pb_free(wkt_pb *b);

/* A ModelProto being built: one graph with input "x" float [1, C, H, W] and
 * output "y" float [1, classes]. */
typedef struct wkt_og {
  wkt_pb graph;     /* GraphProto fields so far */
  wkt_pb node;      /* the node being built, added to graph by the next node or the end */
  bool has_node;
  int c, h, w, classes;
  const char *producer; /* ModelProto producer_name (not copied), NULL: none */
  const char *classes_json; /* metadata_props "whisker.classes" (not copied), NULL: none */
  int opset;            /* the default domain's version (13) */
} wkt_og;

void wkt_og_init(wkt_og *g, int c, int h, int w, int classes);
/* Starts a node: inputs and outputs are comma-separated names ("a,,b": the
 * second input empty); name may be NULL (no name). */
void wkt_og_node(wkt_og *g, const char *op, const char *name, const char *inputs,
                 const char *outputs);
/* Attributes of the node last started, typed as onnx.helper types them. */
void wkt_og_attr_int(wkt_og *g, const char *name, int64_t v);
void wkt_og_attr_float(wkt_og *g, const char *name, float v);
void wkt_og_attr_ints(wkt_og *g, const char *name, int n, const int64_t *v);
/* An initializer of data type dtype (WKT_F32 ...) holding v (numel values,
 * converted), as raw_data. ndim 0: a scalar. */
void wkt_og_tensor(wkt_og *g, const char *name, int dtype, int ndim, const int64_t *dims,
                   const double *v);
/* A float initializer of shape dims. */
void wkt_og_floats(wkt_og *g, const char *name, int ndim, const int64_t *dims, const float *v);
/* A scalar initializer of data type dtype. */
void wkt_og_scalar(wkt_og *g, const char *name, int dtype, double v);
/* The model's bytes (malloc'ed in *out); frees g. */
void wkt_og_finish(wkt_og *g, wkt_pb *out);
/* Writes the model to path; frees g. */
void wkt_og_write(wkt_og *g, const char *path);

/* Reading back: the names of the initializers in an ONNX file's bytes
 * (ModelProto.graph.initializer[].name), at most max of up to 127 bytes;
 * returns how many there are. */
int wkt_onnx_initializer_names(const uint8_t *data, size_t n_bytes, char (*names)[128], int max);

#endif
