/* model.c - saving and loading networks as safetensors files (see model.h). */
#include "modelio/model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/file_kind.h"
#include "core/status.h"
#include "core/utf8.h"

/* ------------------------------------------------------------------ meta */

wk_preprocess wk_preprocess_default(int crop_px) {
  wk_preprocess p = {.resize_px = (crop_px * 256 + 112) / 224, .crop_px = crop_px,
                     .mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f}};
  return p;
}

static char *wk_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

wk_status wk_model_meta_init(wk_model_meta *m, const char *arch, int n_classes, int crop_px) {
  memset(m, 0, sizeof *m);
  if (n_classes < 1 || n_classes > WK_MODEL_MAX_CLASSES)
    return wk_fail(WK_ERR_INVALID_ARG, "%d classes (need 1 to %d)", n_classes,
                   WK_MODEL_MAX_CLASSES);
  snprintf(m->arch, sizeof m->arch, "%s", arch);
  m->width = 1.0f;
  m->pre = wk_preprocess_default(crop_px);
  m->class_names = calloc((size_t)n_classes, sizeof *m->class_names);
  if (!m->class_names) return wk_fail(WK_ERR_NOMEM, "out of memory");
  m->n_classes = n_classes;
  for (int i = 0; i < n_classes; i++) {
    char buf[16];
    snprintf(buf, sizeof buf, "%d", i);
    if (!(m->class_names[i] = wk_strdup(buf))) {
      wk_model_meta_free(m);
      return wk_fail(WK_ERR_NOMEM, "out of memory");
    }
  }
  return WK_OK;
}

wk_status wk_model_meta_set_class(wk_model_meta *m, int i, const char *name) {
  if (i < 0 || i >= m->n_classes) return wk_fail(WK_ERR_INVALID_ARG, "class %d out of range", i);
  char *d = wk_strdup(name);
  if (!d) return wk_fail(WK_ERR_NOMEM, "out of memory");
  free(m->class_names[i]);
  m->class_names[i] = d;
  return WK_OK;
}

wk_status wk_model_check_class_name(const char *where, int i, const char *name) {
  const size_t n = strlen(name);
  size_t bad = 0;
  if (n == 0) return wk_fail(WK_ERR_FORMAT, "%s: class name %d is empty", where, i);
  if (n > WK_MODEL_CLASS_NAME_MAX)
    return wk_fail(WK_ERR_FORMAT, "%s: class name %d is longer than %d bytes", where, i,
                   WK_MODEL_CLASS_NAME_MAX);
  if (!wk_utf8_valid(name, n, &bad))
    return wk_fail(WK_ERR_FORMAT, "%s: class name %d is not valid UTF-8 (byte %zu)", where, i,
                   bad);
  return WK_OK;
}

wk_status wk_model_meta_check_classes(const wk_model_meta *m, const char *where) {
  for (int i = 0; i < m->n_classes; i++)
    WK_TRY(wk_model_check_class_name(where, i, m->class_names[i]));
  return WK_OK;
}

/* The bytes of a labels file's line kept (a longer one is too long): a name,
 * a byte order mark before it, and one byte over. */
#define WK_LABEL_KEEP (WK_MODEL_CLASS_NAME_MAX + 4)

/* Takes line `line` of a labels file, of len bytes whose first
 * min(len, WK_LABEL_KEEP) are in name[WK_LABEL_KEEP + 1], as label *n (a
 * blank line is none). */
static wk_status wk_label_line(wk_model_meta *m, const char *path, long long line, char *name,
                               size_t len, long long *n) {
  size_t kept = len < WK_LABEL_KEEP ? len : WK_LABEL_KEEP;
  if (line == 1 && kept >= 3 && !memcmp(name, "\xef\xbb\xbf", 3)) { /* UTF-8's byte order mark */
    memmove(name, name + 3, kept - 3);
    kept -= 3, len -= 3;
  }
  if (len == 0) return WK_OK;
  name[kept] = '\0';
  const int i = *n < INT_MAX ? (int)*n : INT_MAX;
  char where[300];
  snprintf(where, sizeof where, "%s: line %lld", path, line);
  if (memchr(name, '\0', kept))
    return wk_fail(WK_ERR_FORMAT, "%s: class name %d holds a NUL byte", where, i);
  WK_TRY(wk_model_check_class_name(where, i, name)); /* kept > the limit when len is */
  if (*n < m->n_classes) WK_TRY(wk_model_meta_set_class(m, i, name));
  ++*n; /* the count is checked at the end */
  return WK_OK;
}

wk_status wk_model_meta_read_labels(wk_model_meta *m, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return wk_fail(WK_ERR_IO, "%s: %s", path, strerror(errno));
  char name[WK_LABEL_KEEP + 1];
  size_t len = 0;
  long long line = 1, n = 0;
  wk_status s = WK_OK;
  for (int c = getc(f); s == WK_OK; c = getc(f)) {
    if (c != EOF && c != '\n' && c != '\r') {
      if (len < WK_LABEL_KEEP) name[len] = (char)c;
      len++;
      continue;
    }
    s = wk_label_line(m, path, line, name, len, &n);
    if (c == EOF) break;
    if (c == '\r' && (c = getc(f)) != '\n' && c != EOF) ungetc(c, f); /* CRLF: one end */
    line++;
    len = 0;
  }
  if (s == WK_OK && ferror(f)) s = wk_fail(WK_ERR_IO, "%s: %s", path, strerror(errno));
  fclose(f);
  if (s == WK_OK && n != m->n_classes)
    s = wk_fail(WK_ERR_FORMAT, "%s: %lld labels for a model with %d classes", path, n,
                m->n_classes);
  return s;
}

wk_status wk_model_meta_set_provenance(wk_model_meta *m, const char *json) {
  cJSON *o = cJSON_Parse(json);
  bool ok = cJSON_IsObject(o);
  cJSON_Delete(o);
  if (!ok) return wk_fail(WK_ERR_INVALID_ARG, "provenance is not a JSON object");
  char *d = wk_strdup(json);
  if (!d) return wk_fail(WK_ERR_NOMEM, "out of memory");
  free(m->provenance);
  m->provenance = d;
  return WK_OK;
}

void wk_model_meta_free(wk_model_meta *m) {
  if (!m) return;
  for (int i = 0; m->class_names && i < m->n_classes; i++) free(m->class_names[i]);
  free(m->class_names);
  free(m->provenance);
  memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ layouts */

/* PyTorch's shape of a parameter: conv weights OHWI -> OIHW. */
static void wk_torch_shape(const wk_param *p, int64_t shape[WK_MAX_DIMS]) {
  memcpy(shape, p->shape, sizeof(int64_t) * (size_t)p->ndim);
  if (p->ndim == 4) {
    shape[1] = p->shape[3];
    shape[2] = p->shape[1];
    shape[3] = p->shape[2];
  }
}

void wk_conv_weight_transpose(const wk_param *p, const float *src, float *dst, bool to_torch) {
  const int64_t o = p->shape[0], kh = p->shape[1], kw = p->shape[2], ci = p->shape[3];
  for (int64_t a = 0; a < o; a++)
    for (int64_t y = 0; y < kh; y++)
      for (int64_t x = 0; x < kw; x++)
        for (int64_t c = 0; c < ci; c++) {
          const int64_t ohwi = ((a * kh + y) * kw + x) * ci + c;
          const int64_t oihw = ((a * ci + c) * kh + y) * kw + x;
          if (to_torch)
            dst[oihw] = src[ohwi];
          else
            dst[ohwi] = src[oihw];
        }
}

/* ------------------------------------------------------------------ save */

static char *wk_json_print(cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}

static char *wk_classes_json(const wk_model_meta *m) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < m->n_classes; i++) {
    cJSON *s = cJSON_CreateString(m->class_names[i]);
    if (!s || !cJSON_AddItemToArray(a, s)) {
      cJSON_Delete(a);
      return NULL;
    }
  }
  return wk_json_print(a);
}

static char *wk_preprocess_json(const wk_preprocess *p) {
  cJSON *o = cJSON_CreateObject();
  cJSON *mean = cJSON_CreateFloatArray(p->mean, 3), *std = cJSON_CreateFloatArray(p->std, 3);
  bool ok = o && mean && std && cJSON_AddNumberToObject(o, "resize", p->resize_px) &&
            cJSON_AddNumberToObject(o, "crop", p->crop_px) &&
            cJSON_AddItemToObject(o, "mean", mean) && cJSON_AddItemToObject(o, "std", std);
  if (!ok) {
    if (!o || !cJSON_GetObjectItem(o, "mean")) cJSON_Delete(mean);
    if (!o || !cJSON_GetObjectItem(o, "std")) cJSON_Delete(std);
    cJSON_Delete(o);
    return NULL;
  }
  return wk_json_print(o);
}

/* IEEE half precision, rounded to nearest even; overflow gives infinity. */
uint16_t wk_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, sizeof x);
  const uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu;
  uint32_t mant = x & 0x7fffffu;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u));
  const int e = (int)exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00u);
  if (e <= 0) { /* a subnormal half, or zero */
    if (e < -10) return (uint16_t)sign;
    mant |= 0x800000u;
    const int shift = 14 - e;
    uint32_t h = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* a carry moves the exponent on */
  return (uint16_t)(sign | h);
}

/* The float tensors of entries [0, n) converted to F16 in place of F32. */
/* The float32 entries e[0..n) as float16 in one buffer (*out, owned by the
 * caller), the entries pointing into it. A finite value beyond half
 * precision's range (65504) would become infinity: refused, naming it. */
static wk_status wk_entries_to_f16(const char *path, wk_st_entry *e, size_t n, uint16_t **out) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const size_t m = e[i].n_bytes / sizeof(float);
    const float *src = e[i].data;
    for (size_t j = 0; j < m; j++)
      if (isfinite(src[j]) && fabsf(src[j]) > 65504.0f)
        return wk_fail(WK_ERR_UNSUPPORTED, "%s: tensor '%s' holds %g (at %zu), beyond half "
                       "precision's range (65504): keep this model in float32", path, e[i].name,
                       (double)src[j], j);
    total += m;
  }
  uint16_t *h = malloc((total ? total : 1) * sizeof *h);
  if (!h) return wk_fail(WK_ERR_NOMEM, "out of memory for %zu half-precision values", total);
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    const size_t m = e[i].n_bytes / sizeof(float);
    const float *src = e[i].data;
    for (size_t j = 0; j < m; j++) h[off + j] = wk_f32_to_f16(src[j]);
    e[i].dtype = WK_ST_F16;
    e[i].data = h + off;
    e[i].n_bytes = m * sizeof *h;
    off += m;
  }
  *out = h;
  return WK_OK;
}

static wk_status wk_model_save_impl(const char *path, wk_net *net, const wk_model_meta *meta,
                                    bool f16, const wk_st_entry *extra, size_t n_extra,
                                    const wk_st_meta *extra_meta, size_t n_extra_meta) {
  WK_TRY(wk_net_sync_host(net)); /* a GPU may hold newer weights (nn/net.h) */
  size_t np, nb;
  const wk_param *params = wk_net_params(net, &np);
  const wk_param *bufs = wk_net_buffers(net, &nb);
  const float *w = wk_net_weights(net), *bd = wk_net_buffer_data(net);
  if (meta->n_classes != wk_net_output_features(net))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: %d class names for a network with %lld outputs",
                   path, meta->n_classes, (long long)wk_net_output_features(net));
  /* what the loader would refuse is not written (the names come from folders,
   * CSV files, ONNX metadata, labels files) */
  WK_TRY(wk_model_meta_check_classes(meta, path));
  /* one num_batches_tracked per batchnorm, as PyTorch's state_dict has */
  size_t n_bn = 0;
  for (int i = 0; i < wk_net_n_nodes(net); i++) n_bn += wk_net_node(net, i)->op == WK_NODE_BATCHNORM;
  size_t conv_elems = 0;
  for (size_t i = 0; i < np; i++)
    if (params[i].ndim == 4) conv_elems += params[i].numel;
  const size_t n_entries = np + nb + n_bn + n_extra, n_meta = 6 + n_extra_meta;
  wk_st_entry *e = calloc(n_entries, sizeof *e);
  wk_st_meta *m = calloc(n_meta, sizeof *m);
  float *tw = malloc((conv_elems ? conv_elems : 1) * sizeof *tw);
  int64_t *nbt = malloc((n_bn ? n_bn : 1) * sizeof *nbt);
  char (*nbt_names)[WK_PARAM_NAME_MAX + 24] = malloc((n_bn ? n_bn : 1) * sizeof *nbt_names);
  char *arch = NULL, *classes = wk_classes_json(meta), *pre = wk_preprocess_json(&meta->pre);
  wk_status st = WK_OK;
  if (!e || !m || !tw || !nbt || !nbt_names || !classes || !pre) {
    st = wk_fail(WK_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  if ((st = wk_arch_to_json(net, meta, &arch)) != WK_OK) goto done;
  size_t k = 0, tw_off = 0;
  for (size_t i = 0; i < np; i++, k++) {
    const wk_param *p = &params[i];
    e[k] = (wk_st_entry){.name = p->name, .dtype = WK_ST_F32, .ndim = p->ndim,
                         .data = w + p->offset, .n_bytes = p->numel * sizeof(float)};
    wk_torch_shape(p, e[k].shape);
    if (p->ndim == 4) {
      wk_conv_weight_transpose(p, w + p->offset, tw + tw_off, true);
      e[k].data = tw + tw_off;
      tw_off += p->numel;
    }
  }
  for (size_t i = 0; i < nb; i++, k++) {
    e[k] = (wk_st_entry){.name = bufs[i].name, .dtype = WK_ST_F32, .ndim = bufs[i].ndim,
                         .data = bd + bufs[i].offset, .n_bytes = bufs[i].numel * sizeof(float)};
    memcpy(e[k].shape, bufs[i].shape, sizeof bufs[i].shape);
  }
  for (int i = 0, b = 0; i < wk_net_n_nodes(net); i++) {
    const wk_node *nd = wk_net_node(net, i);
    if (nd->op != WK_NODE_BATCHNORM) continue;
    nbt[b] = wk_net_bn_batches(net);
    snprintf(nbt_names[b], sizeof nbt_names[b], "%s.num_batches_tracked", nd->name);
    e[k++] = (wk_st_entry){.name = nbt_names[b], .dtype = WK_ST_I64, .ndim = 0,
                           .data = &nbt[b], .n_bytes = sizeof(int64_t)};
    b++;
  }
  uint16_t *half = NULL;
  if (f16 && (st = wk_entries_to_f16(path, e, np + nb, &half)) != WK_OK) goto done;
  for (size_t i = 0; i < n_extra; i++) e[k++] = extra[i];
  m[0] = (wk_st_meta){"format", "whisker"};
  m[1] = (wk_st_meta){"whisker.version", WHISKER_VERSION_STRING};
  m[2] = (wk_st_meta){"whisker.arch", arch};
  m[3] = (wk_st_meta){"whisker.classes", classes};
  m[4] = (wk_st_meta){"whisker.preprocess", pre};
  m[5] = (wk_st_meta){"whisker.provenance", meta->provenance ? meta->provenance : "{}"};
  for (size_t i = 0; i < n_extra_meta; i++) m[6 + i] = extra_meta[i];
  st = wk_st_write(path, e, k, m, n_meta);
  free(half);
done:
  free(e);
  free(m);
  free(tw);
  free(nbt);
  free(nbt_names);
  cJSON_free(arch);
  cJSON_free(classes);
  cJSON_free(pre);
  return st;
}

wk_status wk_model_save(const char *path, wk_net *net, const wk_model_meta *meta,
                        const wk_st_entry *extra, size_t n_extra, const wk_st_meta *extra_meta,
                        size_t n_extra_meta) {
  return wk_model_save_impl(path, net, meta, false, extra, n_extra, extra_meta, n_extra_meta);
}

wk_status wk_model_save_f16(const char *path, wk_net *net, const wk_model_meta *meta) {
  return wk_model_save_impl(path, net, meta, true, NULL, 0, NULL, 0);
}

/* ------------------------------------------------------------------ load */

static wk_status wk_load_classes(const wk_st_file *f, wk_model_meta *meta) {
  const char *text = wk_st_meta_get(f, "whisker.classes");
  const int n = meta->n_classes;
  char arch[WK_MODEL_ARCH_MAX];
  const float width = meta->width;
  memcpy(arch, meta->arch, sizeof arch);
  WK_TRY(wk_model_meta_init(meta, arch, n, 224));
  meta->width = width;
  if (!text) return WK_OK; /* names "0".."K-1" */
  cJSON *a = cJSON_Parse(text);
  wk_status st = WK_OK;
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) {
    st = wk_fail(WK_ERR_FORMAT, "%s: whisker.classes is not an array of %d names",
                 wk_st_path(f), n);
  }
  /* along the list, not by cJSON_GetArrayItem (a walk from the head each
   * time: quadratic in the up to WK_MODEL_MAX_CLASSES names) */
  const cJSON *s = st == WK_OK ? a->child : NULL;
  for (int i = 0; st == WK_OK && i < n; i++, s = s->next) {
    if (!cJSON_IsString(s))
      st = wk_fail(WK_ERR_FORMAT, "%s: class name %d is not a string", wk_st_path(f), i);
    else if ((st = wk_model_check_class_name(wk_st_path(f), i, s->valuestring)) == WK_OK)
      st = wk_model_meta_set_class(meta, i, s->valuestring);
  }
  cJSON_Delete(a);
  return st;
}

static wk_status wk_load_preprocess(const wk_st_file *f, wk_preprocess *p, int crop_px) {
  *p = wk_preprocess_default(crop_px);
  const char *text = wk_st_meta_get(f, "whisker.preprocess");
  if (!text) return WK_OK;
  cJSON *o = cJSON_Parse(text);
  const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "resize");
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "crop");
  const cJSON *mean = cJSON_GetObjectItemCaseSensitive(o, "mean");
  const cJSON *std = cJSON_GetObjectItemCaseSensitive(o, "std");
  bool ok = cJSON_IsNumber(r) && cJSON_IsNumber(c) && r->valuedouble >= 1 &&
            r->valuedouble <= 8192 && c->valuedouble >= 1 && c->valuedouble <= r->valuedouble &&
            cJSON_GetArraySize(mean) == 3 && cJSON_GetArraySize(std) == 3;
  for (int i = 0; ok && i < 3; i++) {
    const cJSON *mv = cJSON_GetArrayItem(mean, i), *sv = cJSON_GetArrayItem(std, i);
    ok = cJSON_IsNumber(mv) && cJSON_IsNumber(sv) && sv->valuedouble > 1e-6 &&
         mv->valuedouble > -1e6 && mv->valuedouble < 1e6 && sv->valuedouble < 1e6;
    if (ok) {
      p->mean[i] = (float)mv->valuedouble;
      p->std[i] = (float)sv->valuedouble;
    }
  }
  if (ok) {
    p->resize_px = (int)r->valuedouble;
    p->crop_px = (int)c->valuedouble;
  }
  cJSON_Delete(o);
  if (!ok)
    return wk_fail(WK_ERR_FORMAT, "%s: whisker.preprocess must be {\"resize\", \"crop\" <= "
                   "resize, \"mean\": [3], \"std\": [3] > 0}", wk_st_path(f));
  /* the crop is what the network is fed: another size fails every forward,
   * with a message naming neither the file nor the cause */
  if (p->crop_px != crop_px)
    return wk_fail(WK_ERR_FORMAT, "%s: whisker.preprocess crops %d px, but the network takes "
                   "%d x %d", wk_st_path(f), p->crop_px, crop_px, crop_px);
  return WK_OK;
}

/* Every parameter and buffer must be in the file with PyTorch's shape; checked
 * before the arenas are allocated. */
static wk_status wk_check_tensors(const wk_st_file *f, const wk_param *a, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const wk_st_entry *e = wk_st_find(f, a[i].name);
    if (!e) return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s' is missing", wk_st_path(f), a[i].name);
    int64_t want[WK_MAX_DIMS];
    wk_torch_shape(&a[i], want);
    bool same = e->ndim == a[i].ndim;
    for (int d = 0; same && d < e->ndim; d++) same = e->shape[d] == want[d];
    if (!same)
      return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s' has a shape the architecture does not "
                     "expect", wk_st_path(f), a[i].name);
  }
  return WK_OK;
}

static wk_status wk_read_tensors(const wk_st_file *f, const wk_param *a, size_t n, float *arena,
                                 float *tmp) {
  for (size_t i = 0; i < n; i++) {
    int64_t shape[WK_MAX_DIMS];
    wk_torch_shape(&a[i], shape);
    float *dst = a[i].ndim == 4 ? tmp : arena + a[i].offset;
    WK_TRY(wk_st_read_f32(f, a[i].name, dst, a[i].ndim, shape));
    if (a[i].ndim == 4) wk_conv_weight_transpose(&a[i], tmp, arena + a[i].offset, false);
  }
  return WK_OK;
}

/* Values no trained model holds: NaN or infinity anywhere, a negative
 * running variance. Refused at load, naming the tensor, rather than giving
 * NaN probabilities (or a confident answer from a variance under zero). */
static wk_status wk_check_values(const wk_st_file *f, const wk_param *a, size_t n,
                                 const float *arena) {
  for (size_t i = 0; i < n; i++) {
    const float *v = arena + a[i].offset;
    const size_t len = strlen(a[i].name);
    const bool var = len >= 11 && !strcmp(a[i].name + len - 11, "running_var");
    for (size_t j = 0; j < a[i].numel; j++)
      if (!isfinite(v[j]) || (var && v[j] < 0.0f))
        return wk_fail(WK_ERR_FORMAT, "%s: tensor '%s' holds %g at %zu%s: the model is damaged",
                       wk_st_path(f), a[i].name, (double)v[j], j,
                       isfinite(v[j]) ? ", a negative variance" : "");
  }
  return WK_OK;
}

static wk_status wk_read_bn_batches(const wk_st_file *f, wk_net *net) {
  for (int i = 0; i < wk_net_n_nodes(net); i++) {
    const wk_node *nd = wk_net_node(net, i);
    if (nd->op != WK_NODE_BATCHNORM) continue;
    char name[WK_PARAM_NAME_MAX + 24];
    snprintf(name, sizeof name, "%s.num_batches_tracked", nd->name);
    const wk_st_entry *e = wk_st_find(f, name);
    if (!e) return WK_OK; /* optional */
    if (e->dtype != WK_ST_I64 || e->n_bytes != sizeof(int64_t))
      return wk_fail(WK_ERR_FORMAT, "%s: '%s' is not an I64 scalar", wk_st_path(f), name);
    int64_t v;
    memcpy(&v, e->data, sizeof v);
    wk_net_set_bn_batches(net, v < 0 ? 0 : v);
    return WK_OK;
  }
  return WK_OK;
}

wk_status wk_model_load_file(wk_ctx *ctx, const wk_st_file *f, wk_net **out,
                             wk_model_meta *meta) {
  *out = NULL;
  memset(meta, 0, sizeof *meta);
  const char *arch = wk_st_meta_get(f, "whisker.arch");
  if (!arch)
    return wk_fail(WK_ERR_FORMAT, "%s: not a whisker model (no whisker.arch metadata)",
                   wk_st_path(f));
  wk_net *net = NULL;
  float *tmp = NULL;
  wk_status st = wk_arch_from_json(ctx, arch, wk_st_path(f), &net, meta);
  size_t np = 0, nb = 0, max_conv = 1;
  const wk_param *params = NULL, *bufs = NULL;
  if (st == WK_OK) {
    params = wk_net_params(net, &np);
    bufs = wk_net_buffers(net, &nb);
    st = wk_check_tensors(f, params, np);
  }
  if (st == WK_OK) st = wk_check_tensors(f, bufs, nb);
  if (st == WK_OK) st = wk_net_finalize_empty(net);
  if (st == WK_OK) {
    params = wk_net_params(net, &np);
    bufs = wk_net_buffers(net, &nb);
    for (size_t i = 0; i < np; i++)
      if (params[i].ndim == 4 && params[i].numel > max_conv) max_conv = params[i].numel;
    if (!(tmp = malloc(max_conv * sizeof *tmp))) st = wk_fail(WK_ERR_NOMEM, "out of memory");
  }
  if (st == WK_OK) st = wk_read_tensors(f, params, np, wk_net_weights(net), tmp);
  if (st == WK_OK) st = wk_read_tensors(f, bufs, nb, wk_net_buffer_data(net), tmp);
  if (st == WK_OK) st = wk_check_values(f, params, np, wk_net_weights(net));
  if (st == WK_OK) st = wk_check_values(f, bufs, nb, wk_net_buffer_data(net));
  if (st == WK_OK) st = wk_read_bn_batches(f, net);
  if (st == WK_OK) st = wk_load_classes(f, meta);
  if (st == WK_OK) {
    int h, w, c;
    wk_net_input_shape(net, &h, &w, &c);
    st = wk_load_preprocess(f, &meta->pre, h);
  }
  if (st == WK_OK) {
    const char *prov = wk_st_meta_get(f, "whisker.provenance");
    if (prov && wk_model_meta_set_provenance(meta, prov) != WK_OK) wk_clear_error(); /* optional */
  }
  free(tmp);
  if (st != WK_OK) {
    wk_net_destroy(net);
    wk_model_meta_free(meta);
    return st;
  }
  wk_net_weights_changed(net);
  *out = net;
  return WK_OK;
}

/* An ONNX file: named *.onnx, or beginning as a ModelProto does, with field 1
 * (ir_version, a small varint) followed by another of its fields' tags
 * (producer_name, producer_version, domain, model_version, graph, opset_import). */
static bool wk_looks_onnx(const char *path) {
  const size_t n = strlen(path);
  if (n >= 5 && !strcasecmp(path + n - 5, ".onnx")) return true;
  unsigned char b[3];
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  const bool got = fread(b, 1, sizeof b, f) == sizeof b;
  fclose(f);
  return got && b[0] == 0x08 && b[1] > 0 && b[1] < 0x80 &&
         (b[2] == 0x12 || b[2] == 0x1a || b[2] == 0x22 || b[2] == 0x28 || b[2] == 0x3a ||
          b[2] == 0x42);
}

wk_status wk_model_open(const char *path, wk_st_file **out) {
  const wk_status s = wk_st_open(path, out);
  if (s != WK_ERR_FORMAT && s != WK_ERR_LIMIT) return s;
  if (wk_looks_onnx(path))
    return wk_fail(WK_ERR_FORMAT, "%s: an ONNX model, not a whisker model file; convert it "
                   "first: 'whisker import %s MODEL.safetensors'", path, path);
  /* another format, named (a damaged safetensors file keeps the reader's detail) */
  const wk_file_kind_id k = wk_file_kind_at(path);
  if (k != WK_FILE_UNKNOWN && k != WK_FILE_SAFETENSORS) {
    const char *advice = wk_file_kind_advice(k);
    return wk_fail(WK_ERR_FORMAT, "%s: %s, not a whisker model file (%s)", path,
                   wk_file_kind_name(k),
                   advice ? advice : "a .safetensors file that whisker train, finetune or "
                                     "import wrote");
  }
  return s;
}

wk_status wk_model_load(wk_ctx *ctx, const char *path, wk_net **net, wk_model_meta *meta) {
  wk_st_file *f;
  *net = NULL;
  WK_TRY(wk_model_open(path, &f));
  wk_status st = wk_model_load_file(ctx, f, net, meta);
  wk_st_close(f);
  return st;
}
