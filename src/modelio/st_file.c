/* st_file.c - accessors of an open safetensors file, conversion to float32,
 * and wk_st_close. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "modelio/st_impl.h"

const char *wk_st_path(const wk_st_file *f) { return f->path; }

uint64_t wk_st_data_start(const wk_st_file *f) { return f->data_start; }

size_t wk_st_count(const wk_st_file *f) { return f->n_entries; }

const wk_st_entry *wk_st_entry_at(const wk_st_file *f, size_t i) {
  WK_ASSERT(i < f->n_entries);
  return &f->entries[i];
}

uint64_t wk_st_data_offset(const wk_st_file *f, size_t i) {
  WK_ASSERT(i < f->n_entries);
  return f->offsets[i];
}

const wk_st_entry *wk_st_find(const wk_st_file *f, const char *name) {
  wk_st_entry key = {.name = name};
  const wk_st_entry *pkey = &key;
  const wk_st_entry *const *hit =
      bsearch(&pkey, f->by_name, f->n_entries, sizeof *f->by_name, wk_st_cmp_entry_name);
  return hit ? *hit : NULL;
}

size_t wk_st_meta_count(const wk_st_file *f) { return f->n_meta; }

const wk_st_meta *wk_st_meta_at(const wk_st_file *f, size_t i) {
  WK_ASSERT(i < f->n_meta);
  return &f->meta[i];
}

const char *wk_st_meta_get(const wk_st_file *f, const char *key) {
  wk_st_meta k = {.key = key};
  const wk_st_meta *pk = &k;
  const wk_st_meta *const *hit =
      bsearch(&pk, f->meta_by_key, f->n_meta, sizeof *f->meta_by_key, wk_st_cmp_meta_key);
  return hit ? (*hit)->value : NULL;
}

/* IEEE binary16 bits to float: normals, subnormals, zeros, infinities, NaN. */
static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, mant = h & 1023;
  float mag;
  if (exp == 31) mag = mant ? NAN : INFINITY;
  else if (exp == 0) mag = ldexpf((float)mant, -24);
  else mag = ldexpf((float)(mant | 1024), (int)exp - 25);
  return sign ? -mag : mag;
}

static float bf16_to_f32(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

static float f64_to_f32(double d) {
  if (d > FLT_MAX) return INFINITY; /* out-of-range conversion is undefined in C */
  if (d < -FLT_MAX) return -INFINITY;
  return (float)d;
}

/* src may be unaligned: every element is loaded with memcpy. */
static void convert_to_f32(wk_st_dtype dtype, const unsigned char *src, float *dst, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint16_t h;
    double d;
    switch (dtype) {
      case WK_ST_F16: memcpy(&h, src + 2 * i, 2); dst[i] = f16_to_f32(h); break;
      case WK_ST_BF16: memcpy(&h, src + 2 * i, 2); dst[i] = bf16_to_f32(h); break;
      case WK_ST_F64: memcpy(&d, src + 8 * i, 8); dst[i] = f64_to_f32(d); break;
      default: WK_ASSERT(!"not a float dtype");
    }
  }
}

wk_status wk_st_read_f32(const wk_st_file *f, const char *name, float *dst, int ndim,
                         const int64_t *shape) {
  WK_ASSERT(ndim >= 0 && ndim <= WK_MAX_DIMS);
  const wk_st_entry *e = wk_st_find(f, name);
  if (!e) return wk_fail(WK_ERR_FORMAT, "%s: no tensor '%s'", f->path, name);
  bool same = e->ndim == ndim;
  for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
  if (!same) {
    char have[160], want[160];
    return wk_fail(WK_ERR_SHAPE, "%s: tensor '%s': shape %s in the file, expected %s", f->path,
                   name, wk_st_shape_str(e->ndim, e->shape, have, sizeof have),
                   wk_st_shape_str(ndim, shape, want, sizeof want));
  }
  size_t n_elems = e->n_bytes / wk_st_dtype_size(e->dtype);
  WK_ASSERT(dst || n_elems == 0);
  if (e->dtype == WK_ST_F32) {
    if (n_elems) memcpy(dst, e->data, e->n_bytes);
    return WK_OK;
  }
  if (e->dtype != WK_ST_F16 && e->dtype != WK_ST_BF16 && e->dtype != WK_ST_F64)
    return wk_fail(WK_ERR_SHAPE, "%s: tensor '%s': dtype %s cannot be read as F32", f->path,
                   name, wk_st_dtype_name(e->dtype));
  convert_to_f32(e->dtype, e->data, dst, n_elems);
  return WK_OK;
}

void wk_st_close(wk_st_file *f) {
  if (!f) return;
  free(f->path);
  free(f->entries);
  free(f->offsets);
  free(f->by_name);
  free(f->meta);
  free(f->meta_by_key);
  free(f->strings);
  free(f->data);
  free(f);
}
