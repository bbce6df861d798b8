/* onnx_impl.h - what the ONNX importer and exporter share: reading and
 * unpacking files, tensor data of any storage as numbers, node attributes.
 * Not a public header (it exposes the protobuf-c types generated from
 * src/onnx/onnx.proto). */
#ifndef WK_ONNX_IMPL_H
#define WK_ONNX_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "onnx.pb-c.h"

/* Files larger than this are refused before reading (ONNX's protobuf limit). */
#define WK_ONNX_MAX_FILE_BYTES ((size_t)2 << 30)
/* Elements of one tensor, so a hostile dims list cannot size a huge buffer. */
#define WK_ONNX_MAX_TENSOR_ELEMS ((int64_t)1 << 28)

/* Submessages nested deeper than this are refused before unpacking: protobuf-c
 * recurses once per level with no limit of its own, so a small file of deep
 * nesting (a graph in an attribute of a node of a graph ...) would overflow
 * the stack. Real models nest a few levels (If/Loop bodies a few more). */
#define WK_ONNX_MAX_NESTING 64

/* The whole file, malloc'ed (*n_bytes may be 0). */
wk_status wk_onnx_read_file(const char *path, uint8_t **data, size_t *n_bytes);
/* Walks the protobuf wire data of a message of type d (for which descriptor
 * d says which fields are submessages) and fails, naming path, when it nests
 * deeper than WK_ONNX_MAX_NESTING. Malformed data passes: unpacking reports it. */
wk_status wk_onnx_check_nesting(const char *path, const uint8_t *data, size_t n_bytes,
                                const ProtobufCMessageDescriptor *d);
/* Reads, checks the nesting of and unpacks a ModelProto; free with
 * onnx__model_proto__free_unpacked(m, NULL). sha256 (may be NULL) receives the
 * file's SHA-256 in hex, n_bytes (may be NULL) its size. */
wk_status wk_onnx_load_model(const char *path, Onnx__ModelProto **model, char sha256[65],
                             size_t *n_bytes);

/* Elements of t, or -1 (and a message naming `what`) when a dim is negative or
 * the count exceeds WK_ONNX_MAX_TENSOR_ELEMS. */
int64_t wk_onnx_tensor_numel(const Onnx__TensorProto *t, const char *what);
/* All n elements of t (n must be its element count) converted to double:
 * float, double, the integer types and bool, from raw_data or the typed
 * fields. Fails naming `what` when the storage does not hold n elements, the
 * type is not numeric or the data is external. */
wk_status wk_onnx_tensor_values(const Onnx__TensorProto *t, const char *what, double *out,
                                int64_t n);
/* The same into a malloc'ed float array of *n elements. */
wk_status wk_onnx_tensor_floats(const Onnx__TensorProto *t, const char *what, float **out,
                                int64_t *n);

/* Attributes of a node: the one called name, or NULL. */
const Onnx__AttributeProto *wk_onnx_attr(const Onnx__NodeProto *node, const char *name);
/* Copies up to max ints; returns how many the attribute has, or -1 when absent. */
int wk_onnx_attr_ints(const Onnx__NodeProto *node, const char *name, int64_t *out, int max);

#endif
