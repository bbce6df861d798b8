/* onnx_file.c - reading ONNX protobuf files with protobuf-c, tensor data as
 * numbers, node attributes (see onnx_impl.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file_kind.h"
#include "core/sha256.h"
#include "onnx/onnx.h"
#include "onnx/onnx_impl.h"

wk_status wk_onnx_read_file(const char *path, uint8_t **data, size_t *n_bytes) {
  *data = NULL;
  *n_bytes = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return wk_fail(WK_ERR_IO, "%s: %s", path, strerror(errno));
  long size = -1;
  if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
  if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return wk_fail(WK_ERR_IO, "%s: cannot find the file size", path);
  }
  if ((size_t)size > WK_ONNX_MAX_FILE_BYTES) {
    fclose(f);
    return wk_fail(WK_ERR_LIMIT, "%s: %ld bytes, more than the 2 GiB protobuf limit", path, size);
  }
  uint8_t *buf = malloc(size ? (size_t)size : 1);
  if (!buf) {
    fclose(f);
    return wk_fail(WK_ERR_NOMEM, "%s: out of memory for %ld bytes", path, size);
  }
  size_t got = fread(buf, 1, (size_t)size, f);
  int err = ferror(f);
  fclose(f);
  if (got != (size_t)size || err) {
    free(buf);
    return wk_fail(WK_ERR_IO, "%s: read %zu of %ld bytes", path, got, size);
  }
  *data = buf;
  *n_bytes = (size_t)size;
  return WK_OK;
}

/* One varint at *p (at most 10 bytes, before end); false when malformed. */
static bool wk_pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 70 && *p < end; shift += 7) {
    const uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
}

/* Walks the wire data of one message of type d at nesting level depth:
 * false when a submessage lies deeper than WK_ONNX_MAX_NESTING. Each byte is
 * visited by one level only (a submessage is skipped over by its parent), so
 * the walk is linear in the size; the recursion is at most the cap deep.
 * Malformed data ends the walk (true): protobuf-c's unpack reports it. */
static bool wk_pb_nesting_ok(const uint8_t *p, const uint8_t *end,
                             const ProtobufCMessageDescriptor *d, int depth) {
  while (p < end) {
    uint64_t tag, len;
    if (!wk_pb_varint(&p, end, &tag)) return true;
    switch (tag & 7) {
    case 0:
      if (!wk_pb_varint(&p, end, &len)) return true;
      break;
    case 1:
      if (end - p < 8) return true;
      p += 8;
      break;
    case 5:
      if (end - p < 4) return true;
      p += 4;
      break;
    case 2: {
      if (!wk_pb_varint(&p, end, &len) || len > (uint64_t)(end - p)) return true;
      const ProtobufCFieldDescriptor *f =
          tag >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(tag >> 3))
                                 : NULL;
      if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
        if (depth + 1 > WK_ONNX_MAX_NESTING) return false;
        if (!wk_pb_nesting_ok(p, p + len, f->descriptor, depth + 1)) return false;
      }
      p += len;
      break;
    }
    default: /* groups (protobuf-c refuses them) or no wire type at all */
      return true;
    }
  }
  return true;
}

wk_status wk_onnx_check_nesting(const char *path, const uint8_t *data, size_t n_bytes,
                                const ProtobufCMessageDescriptor *d) {
  if (!wk_pb_nesting_ok(data, data + n_bytes, d, 0))
    return wk_fail(WK_ERR_FORMAT, "%s: protobuf messages nested more than %d deep (a graph in an "
                   "attribute of a graph ...): refused", path, WK_ONNX_MAX_NESTING);
  return WK_OK;
}

wk_status wk_onnx_load_model(const char *path, Onnx__ModelProto **model, char sha256[65],
                             size_t *n_bytes) {
  *model = NULL;
  uint8_t *buf;
  size_t n;
  WK_TRY(wk_onnx_read_file(path, &buf, &n));
  if (n_bytes) *n_bytes = n;
  if (sha256) wk_sha256_hex(buf, n, sha256);
  wk_status s = wk_onnx_check_nesting(path, buf, n, &onnx__model_proto__descriptor);
  if (s != WK_OK) {
    free(buf);
    return s;
  }
  Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, n, buf);
  const wk_file_kind_id kind = m ? WK_FILE_UNKNOWN : wk_file_kind(buf, n);
  free(buf);
  const char *advice = wk_file_kind_advice(kind);
  if (kind != WK_FILE_UNKNOWN)
    return wk_fail(WK_ERR_FORMAT, "%s: %s, not an ONNX model%s%s%s", path,
                   wk_file_kind_name(kind), advice ? " (" : "", advice ? advice : "",
                   advice ? ")" : "");
  if (!m)
    return wk_fail(WK_ERR_FORMAT, "%s: not an ONNX model (the protobuf ModelProto does not parse; "
                   "truncated or another format?)", path);
  if (!m->graph) {
    onnx__model_proto__free_unpacked(m, NULL);
    return wk_fail(WK_ERR_FORMAT, "%s: ONNX model without a graph", path);
  }
  *model = m;
  return WK_OK;
}

int64_t wk_onnx_tensor_numel(const Onnx__TensorProto *t, const char *what) {
  int64_t n = 1;
  for (size_t i = 0; i < t->n_dims; i++) {
    if (t->dims[i] < 0 || (t->dims[i] > 0 && n > WK_ONNX_MAX_TENSOR_ELEMS / t->dims[i])) {
      wk_fail(WK_ERR_LIMIT, "%s: tensor dims negative or over %lld elements", what,
              (long long)WK_ONNX_MAX_TENSOR_ELEMS);
      return -1;
    }
    n *= t->dims[i];
  }
  return n;
}

/* Bytes per element in raw_data, 0 for types that are not numbers here. */
static size_t wk_onnx_elem_bytes(int32_t type) {
  switch (type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: return 4;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: return 8;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: return 2;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: return 1;
  default: return 0;
  }
}

/* Element i of little-endian raw data of `type` (the host is little-endian:
 * x86-64 and arm64, which is all whisker builds for). */
static double wk_onnx_raw_value(const uint8_t *p, int32_t type) {
  switch (type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: { float v; memcpy(&v, p, 4); return v; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: { double v; memcpy(&v, p, 8); return v; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32: { int32_t v; memcpy(&v, p, 4); return v; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32: { uint32_t v; memcpy(&v, p, 4); return v; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT16: { int16_t v; memcpy(&v, p, 2); return v; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT16: { uint16_t v; memcpy(&v, p, 2); return v; }
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: return (int8_t)p[0];
  default: return p[0]; /* uint8, bool */
  }
}

wk_status wk_onnx_tensor_values(const Onnx__TensorProto *t, const char *what, double *out,
                                int64_t n) {
  const int32_t type = t->data_type;
  const size_t eb = wk_onnx_elem_bytes(type);
  if (!eb) return wk_fail(WK_ERR_UNSUPPORTED, "%s: tensor data type %d is not numeric", what, type);
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return wk_fail(WK_ERR_UNSUPPORTED, "%s: tensor data in an external file is not supported",
                   what);
  if (t->has_raw_data) {
    if (t->raw_data.len != (size_t)n * eb)
      return wk_fail(WK_ERR_FORMAT, "%s: raw_data holds %zu bytes, %lld elements need %zu", what,
                     t->raw_data.len, (long long)n, (size_t)n * eb);
    for (int64_t i = 0; i < n; i++) out[i] = wk_onnx_raw_value(t->raw_data.data + i * eb, type);
    return WK_OK;
  }
  size_t have;
  switch (type) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: have = t->n_float_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: have = t->n_double_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: have = t->n_int64_data; break;
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32:
  case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: have = t->n_uint64_data; break;
  default: have = t->n_int32_data; break;
  }
  if (have != (size_t)n)
    return wk_fail(WK_ERR_FORMAT, "%s: tensor holds %zu values, its dims say %lld", what, have,
                   (long long)n);
  for (int64_t i = 0; i < n; i++) {
    switch (type) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT: out[i] = t->float_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE: out[i] = t->double_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64: out[i] = (double)t->int64_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT64: out[i] = (double)t->uint64_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8: out[i] = (int8_t)t->int32_data[i]; break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8: out[i] = (uint8_t)t->int32_data[i]; break;
    default: out[i] = t->int32_data[i]; break;
    }
  }
  return WK_OK;
}

wk_status wk_onnx_tensor_floats(const Onnx__TensorProto *t, const char *what, float **out,
                                int64_t *n_out) {
  *out = NULL;
  const int64_t n = wk_onnx_tensor_numel(t, what);
  if (n < 0) return WK_ERR_LIMIT;
  double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
  float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
  wk_status s = d && f ? wk_onnx_tensor_values(t, what, d, n)
                       : wk_fail(WK_ERR_NOMEM, "%s: out of memory", what);
  for (int64_t i = 0; s == WK_OK && i < n; i++) f[i] = (float)d[i];
  free(d);
  if (s != WK_OK) {
    free(f);
    return s;
  }
  *out = f;
  *n_out = n;
  return WK_OK;
}

wk_status wk_onnx_read_tensor_file(const char *path, float **data, int64_t dims[WK_ONNX_MAX_DIMS],
                                   int *ndim) {
  *data = NULL;
  *ndim = 0;
  uint8_t *buf;
  size_t n;
  WK_TRY(wk_onnx_read_file(path, &buf, &n));
  wk_status s = wk_onnx_check_nesting(path, buf, n, &onnx__tensor_proto__descriptor);
  if (s != WK_OK) {
    free(buf);
    return s;
  }
  Onnx__TensorProto *t = onnx__tensor_proto__unpack(NULL, n, buf);
  free(buf);
  if (!t) return wk_fail(WK_ERR_FORMAT, "%s: not a serialized onnx.TensorProto", path);
  int64_t numel;
  if (t->n_dims > WK_ONNX_MAX_DIMS)
    s = wk_fail(WK_ERR_UNSUPPORTED, "%s: %zu dims (at most %d)", path, t->n_dims,
                WK_ONNX_MAX_DIMS);
  if (s == WK_OK) s = wk_onnx_tensor_floats(t, path, data, &numel);
  if (s == WK_OK) {
    *ndim = (int)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) dims[i] = t->dims[i];
  }
  onnx__tensor_proto__free_unpacked(t, NULL);
  return s;
}

const Onnx__AttributeProto *wk_onnx_attr(const Onnx__NodeProto *node, const char *name) {
  for (size_t i = 0; i < node->n_attribute; i++)
    if (node->attribute[i]->name && strcmp(node->attribute[i]->name, name) == 0)
      return node->attribute[i];
  return NULL;
}

int wk_onnx_attr_ints(const Onnx__NodeProto *node, const char *name, int64_t *out, int max) {
  const Onnx__AttributeProto *a = wk_onnx_attr(node, name);
  if (!a) return -1;
  for (size_t i = 0; i < a->n_ints && (int)i < max; i++) out[i] = a->ints[i];
  return a->n_ints > (size_t)max ? max + 1 : (int)a->n_ints;
}
