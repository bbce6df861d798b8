/* test_safetensors.c - the model file layer: safetensors round trips, interop
 * with PyTorch both ways, the reader's refusals (status and message), a
 * mutation loop that must never crash, the atomic writer's failure modes and
 * the wk_st_dump tool.
 *
 * TABLE, the value pattern and METADATA are shared with
 * scripts/safetensors_torch.py; change them together. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "modelio/safetensors.h"
#include "test_util.h"

#define PY "/usr/bin/python3"

/* ---------------------------------------------------------------- helpers */

typedef struct spec {
  const char *name;
  wk_st_dtype dtype;
  int ndim;
  int64_t shape[WK_MAX_DIMS];
} spec;

static const spec TABLE[] = {
  {"conv1.weight", WK_ST_F32, 4, {4, 3, 3, 3}},
  {"bn1.running_var", WK_ST_F64, 1, {4}},
  {"bn1.num_batches_tracked", WK_ST_I64, 0, {0}},
  {"fc.weight", WK_ST_F16, 2, {5, 4}},
  {"fc.bias", WK_ST_BF16, 1, {5}},
  {"mask", WK_ST_BOOL, 1, {6}},
  {"lut", WK_ST_U8, 1, {10}},
  {"idx", WK_ST_I32, 2, {3, 2}},
  {"empty", WK_ST_F32, 2, {0, 4}},
  {"scale", WK_ST_F32, 0, {0}},
};
enum { N_TABLE = sizeof TABLE / sizeof TABLE[0] };

static const wk_st_meta METADATA[] = {
  {"whisker.architecture", "[{\"op\":\"conv2d\",\"params\":{\"out\":4,\"k\":3},\"inputs\":[\"x\"]}]"},
  {"quotes", "say \"hi\" \\ back\\slash"},
  {"lines", "line1\nline2\ttab\r\x01" "end"},
  {"unicode", "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 \xe7\x8c\xab \xf0\x9f\x90\x88"},
};
enum { N_METADATA = sizeof METADATA / sizeof METADATA[0] };

static int64_t numel(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

/* (7 i + 3 seed) mod 23: the pattern's raw value; float dtypes hold
 * (raw - 11) / 2, exactly representable in F16 and BF16. */
static int64_t pattern_raw(int seed, int64_t i) { return (i * 7 + seed * 3) % 23; }
static float pattern_f32(int seed, int64_t i) { return (float)(pattern_raw(seed, i) - 11) * 0.5f; }

/* Bits of an F16 that holds v exactly (|v| a small multiple of 1/2). */
static uint16_t f16_bits(float v) {
  if (v == 0) return 0;
  uint16_t sign = v < 0 ? 0x8000 : 0;
  float a = fabsf(v);
  int e = (int)floorf(log2f(a));
  uint16_t mant = (uint16_t)((a / ldexpf(1.0f, e) - 1.0f) * 1024.0f);
  return (uint16_t)(sign | (uint16_t)((e + 15) << 10) | mant);
}

static uint16_t bf16_bits(float v) {
  uint32_t bits;
  memcpy(&bits, &v, 4);
  return (uint16_t)(bits >> 16);
}

/* Writes element i of tensor `seed` of dtype dt at p. */
static void put_pattern(wk_st_dtype dt, int seed, int64_t i, unsigned char *p) {
  int64_t raw = pattern_raw(seed, i), base = raw - 11;
  float f = pattern_f32(seed, i);
  double d = f;
  int64_t i64 = base * 4294967311LL;
  int32_t i32 = (int32_t)(base * 65537);
  uint16_t h;
  switch (dt) {
    case WK_ST_F32: memcpy(p, &f, 4); break;
    case WK_ST_F64: memcpy(p, &d, 8); break;
    case WK_ST_F16: h = f16_bits(f); memcpy(p, &h, 2); break;
    case WK_ST_BF16: h = bf16_bits(f); memcpy(p, &h, 2); break;
    case WK_ST_I64: memcpy(p, &i64, 8); break;
    case WK_ST_I32: memcpy(p, &i32, 4); break;
    case WK_ST_U8: *p = (unsigned char)(raw * 11); break;
    case WK_ST_BOOL: *p = (unsigned char)(raw % 2); break;
    default: ck_abort_msg("no pattern for %s", wk_st_dtype_name(dt));
  }
}

/* TABLE's tensors with their pattern data; free each entries[i].data. */
static void make_table(wk_st_entry *entries) {
  for (int k = 0; k < N_TABLE; k++) {
    const spec *s = &TABLE[k];
    int64_t n = numel(s->ndim, s->shape);
    size_t esz = wk_st_dtype_size(s->dtype);
    unsigned char *buf = malloc(n ? (size_t)n * esz : 1);
    ck_assert_ptr_nonnull(buf);
    for (int64_t i = 0; i < n; i++) put_pattern(s->dtype, k, i, buf + (size_t)i * esz);
    entries[k] = (wk_st_entry){.name = s->name, .dtype = s->dtype, .ndim = s->ndim,
                               .data = buf, .n_bytes = (size_t)n * esz};
    memcpy(entries[k].shape, s->shape, sizeof s->shape);
  }
}

static void free_table(wk_st_entry *entries, int n) {
  for (int k = 0; k < n; k++) free((void *)entries[k].data);
}

/* Same name, dtype, shape and bytes. */
static void expect_same_entry(const wk_st_entry *got, const wk_st_entry *want) {
  ck_assert_str_eq(got->name, want->name);
  ck_assert_int_eq(got->dtype, want->dtype);
  ck_assert_int_eq(got->ndim, want->ndim);
  for (int d = 0; d < got->ndim; d++) ck_assert_int_eq(got->shape[d], want->shape[d]);
  ck_assert_uint_eq(got->n_bytes, want->n_bytes);
  if (got->n_bytes) ck_assert_mem_eq(got->data, want->data, got->n_bytes);
}

/* Checks that f holds TABLE's tensors with the pattern, read back both raw and
 * through wk_st_read_f32. */
static void verify_table(const wk_st_file *f) {
  wk_st_entry want[N_TABLE];
  make_table(want);
  for (int k = 0; k < N_TABLE; k++) {
    const wk_st_entry *e = wk_st_find(f, TABLE[k].name);
    ck_assert_msg(e != NULL, "no tensor %s", TABLE[k].name);
    expect_same_entry(e, &want[k]);
    wk_st_dtype dt = e->dtype;
    if (dt == WK_ST_F32 || dt == WK_ST_F64 || dt == WK_ST_F16 || dt == WK_ST_BF16) {
      int64_t n = numel(e->ndim, e->shape);
      float *got = malloc((size_t)(n ? n : 1) * sizeof *got);
      ck_assert_int_eq(wk_st_read_f32(f, e->name, got, e->ndim, e->shape), WK_OK);
      for (int64_t i = 0; i < n; i++) ck_assert_float_eq(got[i], pattern_f32(k, i));
      free(got);
    }
  }
  free_table(want, N_TABLE);
}

/* A fresh directory in dir[64] and the path of `file` in it in path[160]. */
static void make_tmpdir(char *dir, char *path, const char *file) {
  snprintf(dir, 64, "/tmp/wk_st_test_XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, 160, "%s/%s", dir, file);
}

/* Removes dir and the files in it (one level: the tests make no subfolders
 * that survive them). */
static void remove_tmpdir(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  struct dirent *ent;
  char p[512];
  while ((ent = readdir(d)) != NULL) {
    if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
    snprintf(p, sizeof p, "%s/%s", dir, ent->d_name);
    if (remove(p) != 0) ck_abort_msg("cannot remove %s: %s", p, strerror(errno));
  }
  closedir(d);
  ck_assert_int_eq(rmdir(dir), 0);
}

/* Number of entries in dir whose name contains ".tmp.". */
static int count_temps(const char *dir) {
  DIR *d = opendir(dir);
  ck_assert_ptr_nonnull(d);
  int n = 0;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL) n += strstr(ent->d_name, ".tmp.") != NULL;
  closedir(d);
  return n;
}

static void write_bytes(const char *path, const void *data, size_t n) {
  FILE *fp = fopen(path, "wb");
  ck_assert_msg(fp != NULL, "cannot create %s", path);
  ck_assert_uint_eq(fwrite(data, 1, n, fp), n);
  ck_assert_int_eq(fclose(fp), 0);
}

/* A file of: the 8-byte length of `header`, header, n_data zero bytes. */
static void write_st_raw(const char *path, const char *header, size_t n_header, size_t n_data) {
  size_t n = 8 + n_header + n_data;
  unsigned char *buf = calloc(1, n);
  for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n_header >> (8 * i));
  memcpy(buf + 8, header, n_header);
  write_bytes(path, buf, n);
  free(buf);
}

/* Opening path must fail with `want`, and the message must name the file and
 * contain `phrase`. */
static void expect_refusal(const char *path, wk_status want, const char *phrase) {
  wk_st_file *f = (wk_st_file *)&f; /* must be reset to NULL */
  wk_clear_error();
  wk_status s = wk_st_open(path, &f);
  const char *msg = wk_last_error();
  ck_assert_msg(s == want, "%s: status %s, expected %s (message: %s)", phrase,
                wk_status_name(s), wk_status_name(want), msg);
  ck_assert_ptr_null(f);
  ck_assert_msg(strstr(msg, path) != NULL, "message does not name the file: %s", msg);
  ck_assert_msg(strstr(msg, phrase) != NULL, "message '%s' lacks '%s'", msg, phrase);
}

static bool have_torch(void) {
  if (access(PY, X_OK) != 0) return false;
  /* find_spec looks for torch without importing it (which takes a second) */
  return system(PY " -c 'import importlib.util as u, sys; "
                   "sys.exit(u.find_spec(\"torch\") is None)' >/dev/null 2>&1") == 0;
}

/* Runs scripts/safetensors_torch.py MODE PATH; returns its exit status. */
static int run_torch_script(const char *mode, const char *path) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, PY " '%s/scripts/safetensors_torch.py' %s '%s' </dev/null",
           wkt_source_dir(), mode, path);
  int st = system(cmd);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---------------------------------------------------------------- round trip */

START_TEST(test_round_trip) {
  char dir[64], path[160];
  make_tmpdir(dir, path, "model.safetensors");
  wk_st_entry entries[N_TABLE + 1];
  make_table(entries);
  /* a name that needs escaping, and one non-ASCII */
  static const float odd_data[2] = {1.5f, -2.0f};
  entries[N_TABLE] = (wk_st_entry){.name = "we\"ird\\na\nme \xc3\xbc\t", .dtype = WK_ST_F32,
                                   .ndim = 1, .shape = {2}, .data = odd_data, .n_bytes = 8};
  wk_st_meta meta[N_METADATA + 1];
  memcpy(meta, METADATA, sizeof METADATA);
  meta[N_METADATA] = (wk_st_meta){"", "an empty key and \x7f and \xe2\x80\xa8"};
  ck_assert_int_eq(wk_st_write(path, entries, N_TABLE + 1, meta, N_METADATA + 1), WK_OK);

  wk_st_file *f = NULL;
  wk_status s = wk_st_open(path, &f);
  ck_assert_msg(s == WK_OK, "%s", wk_last_error());
  ck_assert_str_eq(wk_st_path(f), path);
  ck_assert_uint_eq(wk_st_data_start(f) % WK_ST_DATA_ALIGN, 0);
  ck_assert_uint_eq(wk_st_count(f), N_TABLE + 1);
  /* entries come back in the given order (= data order), bytes identical */
  uint64_t offset = 0;
  for (size_t i = 0; i < wk_st_count(f); i++) {
    const wk_st_entry *e = wk_st_entry_at(f, i);
    expect_same_entry(e, &entries[i]);
    ck_assert_uint_eq(wk_st_data_offset(f, i), offset);
    offset += e->n_bytes;
    ck_assert_ptr_eq(wk_st_find(f, e->name), e);
  }
  verify_table(f);
  ck_assert_ptr_null(wk_st_find(f, "conv1"));
  ck_assert_ptr_null(wk_st_find(f, ""));
  /* metadata, in header order, byte for byte */
  ck_assert_uint_eq(wk_st_meta_count(f), N_METADATA + 1);
  for (size_t i = 0; i < N_METADATA + 1; i++) {
    ck_assert_str_eq(wk_st_meta_at(f, i)->key, meta[i].key);
    ck_assert_str_eq(wk_st_meta_at(f, i)->value, meta[i].value);
    ck_assert_str_eq(wk_st_meta_get(f, meta[i].key), meta[i].value);
  }
  ck_assert_ptr_null(wk_st_meta_get(f, "absent"));

  /* read_f32: shape and dtype mismatches name the tensor and both shapes */
  float buf[60];
  const int64_t wrong[2] = {4, 5};
  ck_assert_int_eq(wk_st_read_f32(f, "fc.weight", buf, 2, wrong), WK_ERR_SHAPE);
  ck_assert_msg(strstr(wk_last_error(), "tensor 'fc.weight': shape (5, 4) in the file, "
                                        "expected (4, 5)") != NULL, "%s", wk_last_error());
  const int64_t scalar[1] = {0};
  ck_assert_int_eq(wk_st_read_f32(f, "bn1.num_batches_tracked", buf, 0, scalar), WK_ERR_SHAPE);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "dtype I64 cannot be read as F32"));
  ck_assert_int_eq(wk_st_read_f32(f, "nope", buf, 0, scalar), WK_ERR_FORMAT);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "no tensor 'nope'"));
  const int64_t empty_shape[2] = {0, 4};
  ck_assert_int_eq(wk_st_read_f32(f, "empty", NULL, 2, empty_shape), WK_OK);
  wk_st_close(f);
  wk_st_close(NULL);

  /* no tensors and no metadata: the smallest valid file */
  ck_assert_int_eq(wk_st_write(path, NULL, 0, NULL, 0), WK_OK);
  ck_assert_int_eq(wk_st_open(path, &f), WK_OK);
  ck_assert_uint_eq(wk_st_count(f), 0);
  ck_assert_uint_eq(wk_st_meta_count(f), 0);
  wk_st_close(f);
  free_table(entries, N_TABLE);
  ck_assert_int_eq(count_temps(dir), 0);
  remove_tmpdir(dir);
}
END_TEST

/* F16 / BF16 / F64 conversion at the edges: subnormals, infinities, NaN,
 * signed zero, values beyond float range; from an unaligned position. */
START_TEST(test_conversions) {
  char dir[64], path[160];
  make_tmpdir(dir, path, "conv.safetensors");
  static const uint16_t f16[9] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff,
                                  0x7c00, 0xfc00, 0x7e00, 0x8000};
  const float f16_want[9] = {1.0f, -2.0f, 65504.0f, ldexpf(1, -24), ldexpf(1023, -24),
                             INFINITY, -INFINITY, NAN, -0.0f};
  static const uint16_t bf16[3] = {0x3f80, 0xc049, 0x0001};
  const float bf16_want[3] = {1.0f, -3.140625f, ldexpf(1, -133)};
  static const double f64[4] = {0.1, -1e300, 1e300, 1e-50};
  const float f64_want[4] = {0.1f, -INFINITY, INFINITY, 0.0f};
  static const uint8_t one = 7;
  /* the U8 first puts the others at odd offsets in the data section */
  wk_st_entry e[4] = {
    {.name = "u8", .dtype = WK_ST_U8, .ndim = 0, .data = &one, .n_bytes = 1},
    {.name = "h", .dtype = WK_ST_F16, .ndim = 1, .shape = {9}, .data = f16, .n_bytes = 18},
    {.name = "b", .dtype = WK_ST_BF16, .ndim = 1, .shape = {3}, .data = bf16, .n_bytes = 6},
    {.name = "d", .dtype = WK_ST_F64, .ndim = 1, .shape = {4}, .data = f64, .n_bytes = 32},
  };
  ck_assert_int_eq(wk_st_write(path, e, 4, NULL, 0), WK_OK);
  wk_st_file *f = NULL;
  ck_assert_int_eq(wk_st_open(path, &f), WK_OK);
  ck_assert_uint_eq(wk_st_data_offset(f, 3), 25); /* F64 at an odd offset */
  float got[9];
  const int64_t s9[1] = {9}, s3[1] = {3}, s4[1] = {4};
  ck_assert_int_eq(wk_st_read_f32(f, "h", got, 1, s9), WK_OK);
  for (int i = 0; i < 9; i++) {
    if (isnan(f16_want[i])) ck_assert(isnan(got[i]));
    else ck_assert_float_eq(got[i], f16_want[i]);
  }
  ck_assert(signbit(got[8]));
  ck_assert_int_eq(wk_st_read_f32(f, "b", got, 1, s3), WK_OK);
  for (int i = 0; i < 3; i++) ck_assert_float_eq(got[i], bf16_want[i]);
  ck_assert_int_eq(wk_st_read_f32(f, "d", got, 1, s4), WK_OK);
  for (int i = 0; i < 4; i++) ck_assert_float_eq(got[i], f64_want[i]);
  wk_st_close(f);
  remove_tmpdir(dir);
}
END_TEST

/* ---------------------------------------------------------------- writer refusals */

static void expect_write_refusal(const char *dir, const char *path, const wk_st_entry *e,
                                 size_t n, const wk_st_meta *m, size_t n_meta,
                                 const char *phrase) {
  wk_status s = wk_st_write(path, e, n, m, n_meta);
  ck_assert_msg(s == WK_ERR_INVALID_ARG, "%s: status %s (%s)", phrase, wk_status_name(s),
                wk_last_error());
  ck_assert_msg(strstr(wk_last_error(), phrase) != NULL, "message '%s' lacks '%s'",
                wk_last_error(), phrase);
  ck_assert_msg(strstr(wk_last_error(), path) != NULL, "no path in '%s'", wk_last_error());
  ck_assert_int_ne(access(path, F_OK), 0);
  ck_assert_int_eq(count_temps(dir), 0);
}

START_TEST(test_writer_refusals) {
  char dir[64], path[160];
  make_tmpdir(dir, path, "refused.safetensors");
  static const float v[4] = {1, 2, 3, 4};
  wk_st_entry e[2] = {
    {.name = "a", .dtype = WK_ST_F32, .ndim = 1, .shape = {2}, .data = v, .n_bytes = 8},
    {.name = "a", .dtype = WK_ST_F32, .ndim = 1, .shape = {2}, .data = v + 2, .n_bytes = 8},
  };
  expect_write_refusal(dir, path, e, 2, NULL, 0, "two tensors are named 'a'");
  e[1].name = "";
  expect_write_refusal(dir, path, e, 2, NULL, 0, "tensor 1 has an empty name");
  e[1].name = "__metadata__";
  expect_write_refusal(dir, path, e, 2, NULL, 0, "the name __metadata__ is reserved");
  e[1].name = "bad\xff";
  expect_write_refusal(dir, path, e, 2, NULL, 0, "the name of tensor 1 is not valid UTF-8 (byte 3)");
  e[1].name = "overlong \xc0\xaf";
  expect_write_refusal(dir, path, e, 2, NULL, 0, "not valid UTF-8");
  e[1].name = "surrogate \xed\xa0\x80";
  expect_write_refusal(dir, path, e, 2, NULL, 0, "not valid UTF-8");
  e[1].name = "b";
  e[1].n_bytes = 12;
  expect_write_refusal(dir, path, e, 2, NULL, 0, "tensor 'b': n_bytes 12 but shape (2) of F32 needs 8");
  e[1].n_bytes = 8;
  e[1].shape[0] = -2;
  expect_write_refusal(dir, path, e, 2, NULL, 0, "tensor 'b': negative dimension -2");
  e[1].shape[0] = 2;
  e[1].ndim = WK_MAX_DIMS + 1;
  expect_write_refusal(dir, path, e, 2, NULL, 0, "tensor 'b': 7 dimensions (at most 6)");
  e[1].ndim = 1;
  e[1].data = NULL;
  expect_write_refusal(dir, path, e, 2, NULL, 0, "tensor 'b': no data");
  e[1].data = v;
  e[1].dtype = WK_ST_N_DTYPES;
  expect_write_refusal(dir, path, e, 2, NULL, 0, "tensor 'b': unknown dtype");
  e[1].dtype = WK_ST_F32;
  const wk_st_meta dup[2] = {{"k", "1"}, {"k", "2"}};
  expect_write_refusal(dir, path, e, 2, dup, 2, "metadata key 'k' appears twice");
  const wk_st_meta bad[1] = {{"k", "\xe2\x82"}};
  expect_write_refusal(dir, path, e, 2, bad, 1, "metadata value 0 is not valid UTF-8");
  remove_tmpdir(dir);
}
END_TEST

/* ---------------------------------------------------------------- PyTorch interop */

static void write_table_file(const char *path) {
  wk_st_entry entries[N_TABLE];
  make_table(entries);
  ck_assert_int_eq(wk_st_write(path, entries, N_TABLE, METADATA, N_METADATA), WK_OK);
  free_table(entries, N_TABLE);
}

START_TEST(test_torch_reads_whisker) {
  if (!have_torch()) {
    fprintf(stderr, "test_torch_reads_whisker: skipped, no torch for " PY "\n");
    return;
  }
  char dir[64], path[160];
  make_tmpdir(dir, path, "whisker.safetensors");
  write_table_file(path);
  ck_assert_int_eq(run_torch_script("check", path), 0);
  /* the checker does check: one changed value makes it fail */
  wk_st_entry entries[N_TABLE];
  make_table(entries);
  ((unsigned char *)entries[3].data)[1] ^= 0x04;
  ck_assert_int_eq(wk_st_write(path, entries, N_TABLE, METADATA, N_METADATA), WK_OK);
  free_table(entries, N_TABLE);
  ck_assert_int_eq(run_torch_script("check", path), 1);
  remove_tmpdir(dir);
}
END_TEST

static void verify_torch_file(const char *path) {
  wk_st_file *f = NULL;
  wk_status s = wk_st_open(path, &f);
  ck_assert_msg(s == WK_OK, "%s", wk_last_error());
  ck_assert_uint_eq(wk_st_count(f), N_TABLE);
  verify_table(f);
  ck_assert_uint_eq(wk_st_meta_count(f), 0);
  ck_assert_uint_eq(wk_st_data_start(f) % 8, 0);
  /* the official order: widest dtype first, then by name */
  ck_assert_str_eq(wk_st_entry_at(f, 0)->name, "bn1.num_batches_tracked");
  ck_assert_str_eq(wk_st_entry_at(f, N_TABLE - 1)->name, "mask");
  wk_st_close(f);
}

START_TEST(test_whisker_reads_torch_fixture) {
  char path[512];
  snprintf(path, sizeof path, "%s/tests/fixtures/torch_written.safetensors", wkt_source_dir());
  verify_torch_file(path);
}
END_TEST

START_TEST(test_whisker_reads_torch_live) {
  if (!have_torch()) {
    fprintf(stderr, "test_whisker_reads_torch_live: skipped, no torch for " PY "\n");
    return;
  }
  char dir[64], path[160], fixture[512];
  make_tmpdir(dir, path, "torch.safetensors");
  ck_assert_int_eq(run_torch_script("write", path), 0);
  verify_torch_file(path);
  /* the committed fixture is what the script writes today */
  snprintf(fixture, sizeof fixture, "%s/tests/fixtures/torch_written.safetensors",
           wkt_source_dir());
  size_t n_live = 0, n_fix = 0;
  uint8_t *live = wkt_read_file(path, &n_live), *fix = wkt_read_file(fixture, &n_fix);
  ck_assert_uint_eq(n_live, n_fix);
  ck_assert_mem_eq(live, fix, n_live);
  free(live), free(fix);
  remove_tmpdir(dir);
}
END_TEST

/* ---------------------------------------------------------------- reader refusals */

typedef struct refusal {
  const char *header;
  size_t n_data;
  wk_status status;
  const char *phrase;
} refusal;

#define F32_2 "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":"

static const refusal REFUSALS[] = {
  {"", 0, WK_ERR_FORMAT, "header is not valid JSON"},
  {"{\"a\":", 0, WK_ERR_FORMAT, "header is not valid JSON"},
  {"[1,2]", 0, WK_ERR_FORMAT, "header is JSON but not an object"},
  {"{} x", 0, WK_ERR_FORMAT, "junk after the JSON object (byte 3)"},
  {"\xef\xbb\xbf{}", 0, WK_ERR_FORMAT, "byte order mark"},
  {"{\"a\":5}", 0, WK_ERR_FORMAT, "tensor 'a': not a JSON object"},
  {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, WK_ERR_FORMAT, "tensor 'a': no dtype"},
  {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, WK_ERR_FORMAT, "tensor 'a': no shape"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, WK_ERR_FORMAT, "tensor 'a': no data_offsets"},
  {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
   WK_ERR_FORMAT, "tensor 'a': key 'dtype' appears twice"},
  {"{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, WK_ERR_FORMAT,
   "tensor 'a': unknown dtype 'F33'"},
  {"{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, WK_ERR_FORMAT,
   "tensor 'a': dtype is not a string"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, WK_ERR_FORMAT,
   "tensor 'a': dimension 0 of the shape (-1) is negative"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,4]}}", 4, WK_ERR_FORMAT,
   "dimension 1 of the shape (1.5) is not an integer"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,4]}}", 4, WK_ERR_FORMAT,
   "dimension 0 of the shape is not a number"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1152921504606846976],\"data_offsets\":[0,4]}}", 4,
   WK_ERR_FORMAT, "is too large (above 2^53)"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4, WK_ERR_FORMAT,
   "tensor 'a': shape is not a list"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
   WK_ERR_LIMIT, "tensor 'a': more than 6 dimensions"},
  {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
   "\"data_offsets\":[0,4]}}", 4, WK_ERR_FORMAT,
   "tensor 'a': the byte size of shape (4294967296, 4294967296, 4294967296) of F32 overflows"},
  {"{\"a\":" F32_2 "[8,0]}}", 8, WK_ERR_FORMAT, "tensor 'a': data_offsets [8, 0) are reversed"},
  {"{\"a\":" F32_2 "[0,8,16]}}", 8, WK_ERR_FORMAT, "data_offsets is not a list of two numbers"},
  {"{\"a\":" F32_2 "[0,-8]}}", 8, WK_ERR_FORMAT, "an offset in data_offsets is negative"},
  {"{\"a\":" F32_2 "[0,400]}}", 8, WK_ERR_FORMAT,
   "tensor 'a': data_offsets [0, 400) run past the end of the data section (8 bytes)"},
  {"{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,40]}}", 40,
   WK_ERR_FORMAT, "tensor 'fc.weight': data_offsets [0, 40) hold 40 bytes but shape (3, 4) of "
                  "F32 needs 48"},
  {"{\"a\":" F32_2 "[0,8]},\"b\":" F32_2 "[4,12]}}", 12, WK_ERR_FORMAT,
   "tensor 'b' at [4, 12) overlaps tensor 'a' at [0, 8)"},
  {"{\"a\":" F32_2 "[0,8]},\"b\":" F32_2 "[12,20]}}", 20, WK_ERR_FORMAT,
   "hole in the data section: bytes [8, 12) before tensor 'b' belong to no tensor"},
  {"{\"a\":" F32_2 "[0,8]}}", 12, WK_ERR_FORMAT,
   "4 trailing bytes: [8, 12) of the data section belong to no tensor"},
  {"{}", 3, WK_ERR_FORMAT, "3 trailing bytes"},
  {"{\"a\":" F32_2 "[0,8]},\"a\":" F32_2 "[8,16]}}", 16, WK_ERR_FORMAT,
   "two tensors are named 'a'"},
  {"{\"__metadata__\":{\"k\":1}}", 0, WK_ERR_FORMAT,
   "metadata 'k' is not a string (the format allows strings only)"},
  {"{\"__metadata__\":{\"k\":{\"nested\":\"x\"}}}", 0, WK_ERR_FORMAT, "metadata 'k' is not a string"},
  {"{\"__metadata__\":\"k\"}", 0, WK_ERR_FORMAT, "__metadata__ is not a JSON object"},
  {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, WK_ERR_FORMAT, "__metadata__ appears twice"},
  {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, WK_ERR_FORMAT,
   "metadata key 'k' appears twice"},
  {"{\"__metadata__\":{\"k\":\"\xff\"}}", 0, WK_ERR_FORMAT, "header is not valid UTF-8 (byte 22)"},
  {"{\"__metadata__\":{\"k\":\"\xed\xa0\x80\"}}", 0, WK_ERR_FORMAT, "not valid UTF-8"},
  {"{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, WK_ERR_FORMAT, "a string holds \\u0000"},
  {"{\"__metadata__\":{\"k\":\"a\\ud800\"}}", 0, WK_ERR_FORMAT, "header is not valid JSON"},
  {"{\"__metadata__\":{\"k\":\"two\nlines\"}}", 0, WK_ERR_FORMAT,
   "control character 0x0a inside a string (byte 25)"},
  {"{\x01}", 0, WK_ERR_FORMAT, "control character 0x01 (byte 1)"},
};

START_TEST(test_reader_refusals) {
  char dir[64], path[160];
  make_tmpdir(dir, path, "bad.safetensors");
  for (size_t i = 0; i < sizeof REFUSALS / sizeof REFUSALS[0]; i++) {
    const refusal *r = &REFUSALS[i];
    write_st_raw(path, r->header, strlen(r->header), r->n_data);
    expect_refusal(path, r->status, r->phrase);
  }
  remove_tmpdir(dir);
}
END_TEST

/* Refusals that need a file made by hand: sizes, lengths, depth, counts. */
START_TEST(test_reader_refusals_sizes) {
  char dir[64], path[160];
  make_tmpdir(dir, path, "bad.safetensors");
  write_bytes(path, "", 0);
  expect_refusal(path, WK_ERR_FORMAT, "file holds 0 bytes, too short for the 8-byte header");
  write_bytes(path, "\x02\0\0\0\0\0\0", 7);
  expect_refusal(path, WK_ERR_FORMAT, "file holds 7 bytes, too short");
  /* header length larger than the file */
  write_bytes(path, "\xe8\x03\0\0\0\0\0\0{}", 10);
  expect_refusal(path, WK_ERR_FORMAT,
                 "header length 1000 runs past the end of the file (2 bytes after the length)");
  /* 2^63 */
  write_bytes(path, "\0\0\0\0\0\0\0\x80{}", 10);
  expect_refusal(path, WK_ERR_FORMAT, "header length 9223372036854775808 runs past the end");
  write_bytes(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
  expect_refusal(path, WK_ERR_FORMAT, "header length 18446744073709551615 runs past");
  /* a header above the limit in a file that really is that long (sparse) */
  uint64_t n = WK_ST_MAX_HEADER_BYTES + 1;
  unsigned char len_le[8];
  for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)(n >> (8 * i));
  write_bytes(path, len_le, 8);
  ck_assert_int_eq(truncate(path, (off_t)(8 + n)), 0);
  expect_refusal(path, WK_ERR_LIMIT, "header length 100000001 exceeds the limit of 100000000");
  /* deep nesting: cJSON stops at its limit, no stack overflow */
  size_t depth = 100000;
  char *deep = malloc(2 * depth + 64);
  size_t k = 0;
  k += (size_t)sprintf(deep, "{\"__metadata__\":{\"k\":");
  for (size_t i = 0; i < depth; i++) deep[k++] = '[';
  for (size_t i = 0; i < depth; i++) deep[k++] = ']';
  k += (size_t)sprintf(deep + k, "}}");
  write_st_raw(path, deep, k, 0);
  expect_refusal(path, WK_ERR_FORMAT, "header is not valid JSON or nests deeper than 1000");
  /* nesting within cJSON's limit parses, and is refused as a non-string */
  k = (size_t)sprintf(deep, "{\"__metadata__\":{\"k\":");
  for (size_t i = 0; i < 900; i++) deep[k++] = '[';
  for (size_t i = 0; i < 900; i++) deep[k++] = ']';
  k += (size_t)sprintf(deep + k, "}}");
  write_st_raw(path, deep, k, 0);
  expect_refusal(path, WK_ERR_FORMAT, "metadata 'k' is not a string");
  free(deep);
  /* more JSON values than the bound: refused before cJSON allocates them */
  size_t n_values = WK_ST_MAX_JSON_VALUES + 1;
  char *many = malloc(2 * n_values + 64);
  k = (size_t)sprintf(many, "{\"__metadata__\":{\"k\":[");
  for (size_t i = 0; i < n_values; i++) many[k++] = '0', many[k++] = ',';
  k += (size_t)sprintf(many + k - 1, "]}}") - 1;
  write_st_raw(path, many, k, 0);
  expect_refusal(path, WK_ERR_LIMIT, "header holds more than 2097152 JSON values");
  free(many);
  /* not a file, no file */
  expect_refusal(dir, WK_ERR_IO, "not a regular file");
  snprintf(path, sizeof path, "%s/missing.safetensors", dir);
  expect_refusal(path, WK_ERR_IO, "cannot open: No such file or directory");
  remove_tmpdir(dir);
}
END_TEST

/* 100 000 tiny tensors: written, read and looked up without trouble. */
START_TEST(test_many_entries) {
  enum { N = 100000 };
  char dir[64], path[160];
  make_tmpdir(dir, path, "many.safetensors");
  wk_st_entry *e = malloc(N * sizeof *e);
  char *names = malloc(N * 16);
  unsigned char *data = malloc(N);
  for (int i = 0; i < N; i++) {
    snprintf(names + 16 * i, 16, "t%d", i);
    data[i] = (unsigned char)i;
    e[i] = (wk_st_entry){.name = names + 16 * i, .dtype = WK_ST_U8, .ndim = 1, .shape = {1},
                         .data = data + i, .n_bytes = 1};
  }
  ck_assert_int_eq(wk_st_write(path, e, N, NULL, 0), WK_OK);
  wk_st_file *f = NULL;
  wk_status s = wk_st_open(path, &f);
  ck_assert_msg(s == WK_OK, "%s", wk_last_error());
  ck_assert_uint_eq(wk_st_count(f), N);
  for (int i = 0; i < N; i += 997) {
    const wk_st_entry *x = wk_st_find(f, names + 16 * i);
    ck_assert_ptr_nonnull(x);
    ck_assert_uint_eq(*(const unsigned char *)x->data, (unsigned char)i);
  }
  wk_st_close(f);
  free(e), free(names), free(data);
  remove_tmpdir(dir);
}
END_TEST

/* ---------------------------------------------------------------- mutations */

/* One random change to buf (length *n, capacity cap). */
static void mutate(wk_rng *r, unsigned char *buf, size_t *n, size_t cap, size_t header_end) {
  size_t len = *n;
  switch (wk_rng_below(r, 8)) {
    case 0: /* a random byte */
      if (len) buf[wk_rng_below(r, (uint32_t)len)] = (unsigned char)wk_rng_u32(r);
      break;
    case 1: /* one bit */
      if (len) buf[wk_rng_below(r, (uint32_t)len)] ^= (unsigned char)(1u << wk_rng_below(r, 8));
      break;
    case 2: /* truncation */
      *n = wk_rng_below(r, (uint32_t)len + 1);
      break;
    case 3: { /* insertion of 1..8 random bytes */
      size_t k = 1 + wk_rng_below(r, 8), at = wk_rng_below(r, (uint32_t)len + 1);
      if (len + k > cap) break;
      memmove(buf + at + k, buf + at, len - at);
      for (size_t i = 0; i < k; i++) buf[at + i] = (unsigned char)wk_rng_u32(r);
      *n = len + k;
      break;
    }
    case 4: { /* deletion of 1..8 bytes */
      if (!len) break;
      size_t at = wk_rng_below(r, (uint32_t)len), k = 1 + wk_rng_below(r, 8);
      if (k > len - at) k = len - at;
      memmove(buf + at, buf + at + k, len - at - k);
      *n = len - k;
      break;
    }
    case 5: /* a digit of the header becomes another digit: keeps the JSON valid */
    case 6: {
      size_t end = header_end < len ? header_end : len;
      for (int tries = 0; tries < 64 && end > 8; tries++) {
        size_t at = 8 + wk_rng_below(r, (uint32_t)(end - 8));
        if (buf[at] >= '0' && buf[at] <= '9') {
          buf[at] = (unsigned char)('0' + wk_rng_below(r, 10));
          break;
        }
      }
      break;
    }
    case 7: /* the header length, nudged */
      if (len >= 8) buf[0] = (unsigned char)(buf[0] + (int)wk_rng_below(r, 17) - 8);
      break;
  }
}

/* Check records every passing ck_assert through a file, which costs about a
 * millisecond; the mutation loop checks with this instead. */
#define REQUIRE(cond, ...) \
  do {                      \
    if (!(cond)) ck_abort_msg(__VA_ARGS__); \
  } while (0)

/* A file that opened must be consistent: contiguous entries within the data
 * section, every name found, every byte readable (ASan checks the reads). */
static void check_consistent(const wk_st_file *f, size_t file_bytes) {
  uint64_t pos = 0, data_bytes = file_bytes - wk_st_data_start(f);
  unsigned sum = 0;
  for (size_t i = 0; i < wk_st_count(f); i++) {
    const wk_st_entry *e = wk_st_entry_at(f, i);
    REQUIRE(wk_st_data_offset(f, i) == pos, "entry %zu not contiguous", i);
    pos += e->n_bytes;
    REQUIRE(pos <= data_bytes, "entry %zu past the data section", i);
    REQUIRE(wk_st_find(f, e->name) == e, "entry %zu not found by name", i);
    REQUIRE(e->ndim >= 0 && e->ndim <= WK_MAX_DIMS, "entry %zu: ndim %d", i, e->ndim);
    for (size_t b = 0; b < e->n_bytes; b++) sum += ((const unsigned char *)e->data)[b];
    wk_st_dtype dt = e->dtype;
    if ((dt == WK_ST_F32 || dt == WK_ST_F16 || dt == WK_ST_BF16 || dt == WK_ST_F64) &&
        e->n_bytes / wk_st_dtype_size(dt) <= 1024) {
      float out[1024];
      REQUIRE(wk_st_read_f32(f, e->name, out, e->ndim, e->shape) == WK_OK, "%s",
              wk_last_error());
    }
  }
  REQUIRE(pos == data_bytes, "entries cover %llu of %llu bytes", (unsigned long long)pos,
          (unsigned long long)data_bytes);
  for (size_t i = 0; i < wk_st_meta_count(f); i++)
    REQUIRE(wk_st_meta_get(f, wk_st_meta_at(f, i)->key) == wk_st_meta_at(f, i)->value,
            "metadata %zu not found by key", i);
  (void)sum;
}

START_TEST(test_mutations_never_crash) {
  char dir[64], path[160], bad[160];
  make_tmpdir(dir, path, "good.safetensors");
  snprintf(bad, sizeof bad, "%s/mutant.safetensors", dir);
  write_table_file(path);
  size_t n_good = 0;
  uint8_t *good = wkt_read_file(path, &n_good);
  size_t header_end = 8 + (size_t)(good[0] | good[1] << 8);
  size_t cap = n_good + 64;
  unsigned char *buf = malloc(cap);
  int fd = open(bad, O_RDWR | O_CREAT | O_TRUNC, 0644);
  ck_assert_int_ge(fd, 0);
  wk_rng r = wk_rng_make(20240611, 1);
  int n_ok = 0, n_refused = 0;
  for (int iter = 0; iter < 3000; iter++) {
    memcpy(buf, good, n_good);
    size_t n = n_good;
    int k = 1 + (int)wk_rng_below(&r, 3);
    for (int m = 0; m < k; m++) mutate(&r, buf, &n, cap, header_end);
    /* rewritten in place: truncating to 0 and rewriting 3000 times makes ext4
     * flush each time (auto_da_alloc), which takes seconds */
    REQUIRE(pwrite(fd, buf, n, 0) == (ssize_t)n && ftruncate(fd, (off_t)n) == 0,
            "cannot write %s", bad);
    wk_st_file *f = NULL;
    wk_status s = wk_st_open(bad, &f);
    if (s == WK_OK) {
      check_consistent(f, n);
      wk_st_close(f);
      n_ok++;
    } else {
      REQUIRE(s == WK_ERR_FORMAT || s == WK_ERR_LIMIT, "iteration %d: %s: %s", iter,
              wk_status_name(s), wk_last_error());
      REQUIRE(f == NULL, "iteration %d: a handle despite the failure", iter);
      REQUIRE(!strncmp(wk_last_error(), bad, strlen(bad)), "%s", wk_last_error());
      n_refused++;
    }
  }
  fprintf(stderr, "test_mutations_never_crash: %d mutants opened, %d refused\n", n_ok,
          n_refused);
  /* both paths were exercised */
  ck_assert_int_gt(n_ok, 50);
  ck_assert_int_gt(n_refused, 1000);
  close(fd);
  free(buf), free(good);
  remove_tmpdir(dir);
}
END_TEST

/* ---------------------------------------------------------------- atomic writes */

static void write_small_model(const char *path, float value) {
  const wk_st_entry e = {.name = "w", .dtype = WK_ST_F32, .ndim = 1, .shape = {1},
                         .data = &value, .n_bytes = 4};
  ck_assert_int_eq(wk_st_write(path, &e, 1, NULL, 0), WK_OK);
}

static void expect_unchanged(const char *path, const unsigned char *old, size_t n_old) {
  size_t n = 0;
  uint8_t *now = wkt_read_file(path, &n);
  ck_assert_uint_eq(n, n_old);
  ck_assert_mem_eq(now, old, n);
  free(now);
}

START_TEST(test_atomic_write_failures) {
  char dir[64], path[160], sub[160];
  make_tmpdir(dir, path, "model.safetensors");
  write_small_model(path, 1.0f);
  size_t n_old = 0;
  uint8_t *old = wkt_read_file(path, &n_old);

  /* a directory that does not exist */
  snprintf(sub, sizeof sub, "%s/missing/model.safetensors", dir);
  const float v = 2.0f;
  const wk_st_entry e = {.name = "w", .dtype = WK_ST_F32, .ndim = 1, .shape = {1},
                         .data = &v, .n_bytes = 4};
  ck_assert_int_eq(wk_st_write(sub, &e, 1, NULL, 0), WK_ERR_IO);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), sub));
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "cannot create the temporary file"));
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "No such file or directory"));
  /* a "directory" that is a regular file (fails for root too) */
  snprintf(sub, sizeof sub, "%s/model.safetensors/x.safetensors", dir);
  ck_assert_int_eq(wk_st_write(sub, &e, 1, NULL, 0), WK_ERR_IO);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "Not a directory"));
  /* the target is a directory: refused before anything is written */
  snprintf(sub, sizeof sub, "%s/adir", dir);
  ck_assert_int_eq(mkdir(sub, 0755), 0);
  ck_assert_int_eq(wk_st_write(sub, &e, 1, NULL, 0), WK_ERR_INVALID_ARG);
  ck_assert_ptr_nonnull(strstr(wk_last_error(), "adir: not a regular file (a folder)"));
  struct stat st;
  ck_assert_int_eq(stat(sub, &st), 0);
  ck_assert(S_ISDIR(st.st_mode));
  ck_assert_int_eq(rmdir(sub), 0);
  ck_assert_int_eq(count_temps(dir), 0);

  /* a write that fails half-way (the file size limit; root is bound by it too):
   * the old model stays, no temporary file remains */
  enum { BIG = 1 << 16 };
  float *big = calloc(BIG, sizeof *big);
  const wk_st_entry eb = {.name = "w", .dtype = WK_ST_F32, .ndim = 1, .shape = {BIG},
                          .data = big, .n_bytes = BIG * sizeof *big};
  struct rlimit saved, small;
  ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
  small = saved;
  small.rlim_cur = 4096;
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
  wk_status s = wk_st_write(path, &eb, 1, NULL, 0);
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
  signal(SIGXFSZ, old_handler);
  ck_assert_int_eq(s, WK_ERR_IO);
  ck_assert_msg(strstr(wk_last_error(), "File too large") != NULL, "%s", wk_last_error());
  ck_assert_ptr_nonnull(strstr(wk_last_error(), path));
  expect_unchanged(path, old, n_old);
  ck_assert_int_eq(count_temps(dir), 0);
  free(big);

  /* a directory without write permission; root ignores permissions */
  if (geteuid() != 0) {
    ck_assert_int_eq(chmod(dir, 0555), 0);
    s = wk_st_write(path, &e, 1, NULL, 0);
    ck_assert_int_eq(chmod(dir, 0755), 0);
    ck_assert_int_eq(s, WK_ERR_IO);
    ck_assert_ptr_nonnull(strstr(wk_last_error(), "Permission denied"));
    expect_unchanged(path, old, n_old);
  } else {
    fprintf(stderr, "test_atomic_write_failures: read-only directory case skipped as root\n");
  }
  ck_assert_int_eq(count_temps(dir), 0);
  free(old);
  remove_tmpdir(dir);
}
END_TEST

START_TEST(test_atomic_write_success) {
  char dir[64], path[160];
  make_tmpdir(dir, path, "report.txt");
  mode_t old_mask = umask(022);
  /* streamed text, then replaced by a whole buffer */
  wk_atomic_file af;
  ck_assert_int_eq(wk_atomic_open(&af, path), WK_OK);
  /* the temporary file is unnamed (O_TMPFILE) until the commit where the
   * filesystem allows, else PATH.tmp.XXXXXX */
  ck_assert_int_eq(count_temps(dir), wkt_has_tmpfile(dir) ? 0 : 1);
  ck_assert_int_ne(access(path, F_OK), 0); /* nothing at the target until commit */
  fprintf(wk_atomic_stream(&af), "accuracy %.2f\n", 0.5);
  ck_assert_int_eq(wk_atomic_write(&af, "done\n", 5), WK_OK);
  ck_assert_int_eq(wk_atomic_commit(&af), WK_OK);
  size_t n = 0;
  uint8_t *got = wkt_read_file(path, &n);
  ck_assert_uint_eq(n, 19);
  ck_assert_mem_eq(got, "accuracy 0.50\ndone\n", 19);
  free(got);
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_uint_eq(st.st_mode & 0777, 0644); /* 0666 less the umask, not mkstemp's 0600 */
  ck_assert_int_eq(wk_atomic_write_file(path, "new", 3), WK_OK);
  got = wkt_read_file(path, &n);
  ck_assert_uint_eq(n, 3);
  ck_assert_mem_eq(got, "new", 3);
  free(got);
  /* abort leaves the old content and no temporary file */
  ck_assert_int_eq(wk_atomic_open(&af, path), WK_OK);
  ck_assert_int_eq(wk_atomic_write(&af, "partial", 7), WK_OK);
  wk_atomic_abort(&af);
  wk_atomic_abort(&af); /* a no-op on a closed one */
  expect_unchanged(path, (const unsigned char *)"new", 3);
  ck_assert_int_eq(count_temps(dir), 0);
  umask(old_mask);
  remove_tmpdir(dir);
}
END_TEST

/* ---------------------------------------------------------------- wk_st_dump */

static int run_dump(const char *file, char *out, size_t n_out) {
  const char *bin = getenv("WK_ST_DUMP");
  ck_assert_msg(bin && *bin, "WK_ST_DUMP is not set (run through ctest)");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' '%s' 2>&1", bin, file);
  FILE *p = popen(cmd, "r");
  ck_assert_ptr_nonnull(p);
  size_t got = fread(out, 1, n_out - 1, p);
  out[got] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(test_st_dump) {
  char dir[64], path[160], out[8192];
  make_tmpdir(dir, path, "model.safetensors");
  write_table_file(path);
  ck_assert_int_eq(run_dump(path, out, sizeof out), 0);
  ck_assert_msg(strstr(out, ": 10 tensors, 4 metadata, data at byte ") != NULL, "%s", out);
  ck_assert_msg(strstr(out, "\ntensor conv1.weight F32 (4, 3, 3, 3) [0, 432)\n") != NULL, "%s",
                out);
  ck_assert_msg(strstr(out, "\ntensor bn1.num_batches_tracked I64 () [464, 472)\n") != NULL,
                "%s", out);
  ck_assert_msg(strstr(out, "\nmeta lines = line1\\nline2\\ttab\\x0d\\x01end\n") != NULL, "%s",
                out);
  write_st_raw(path, "{\"a\":5}", 7, 0);
  ck_assert_int_eq(run_dump(path, out, sizeof out), 1);
  ck_assert_msg(strstr(out, "wk_st_dump: ") == out && strstr(out, "tensor 'a': not a JSON object"),
                "%s", out);
  remove_tmpdir(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("safetensors");
  TCase *tc = tcase_create("safetensors");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, test_round_trip);
  tcase_add_test(tc, test_conversions);
  tcase_add_test(tc, test_writer_refusals);
  tcase_add_test(tc, test_torch_reads_whisker);
  tcase_add_test(tc, test_whisker_reads_torch_fixture);
  tcase_add_test(tc, test_whisker_reads_torch_live);
  tcase_add_test(tc, test_reader_refusals);
  tcase_add_test(tc, test_reader_refusals_sizes);
  tcase_add_test(tc, test_many_entries);
  tcase_add_test(tc, test_mutations_never_crash);
  tcase_add_test(tc, test_atomic_write_failures);
  tcase_add_test(tc, test_atomic_write_success);
  tcase_add_test(tc, test_st_dump);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
