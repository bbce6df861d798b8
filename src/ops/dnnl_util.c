/* dnnl_util.c - engine and stream lifetime, error text, reorders. */
#include "ops/dnnl_util.h"

#include <oneapi/dnnl/dnnl_debug.h>
#include <stdlib.h>
#include <string.h>

wk_status wk_dnnl_error(dnnl_status_t st, const char *call, const char *file, int line) {
  return wk_fail(WK_ERR_BACKEND, "oneDNN: %s failed (%s) at %s:%d", call, dnnl_status2str(st), file,
                 line);
}

wk_status wk_dnnl_create(wk_dnnl **out) {
  wk_status st = WK_OK;
  *out = NULL;
  wk_dnnl *d = calloc(1, sizeof *d);
  if (!d) return wk_fail(WK_ERR_NOMEM, "oneDNN context: out of memory");
  WK_DNNL_CHECK(dnnl_engine_create(&d->engine, dnnl_cpu, 0));
  WK_DNNL_CHECK(dnnl_stream_create(&d->stream, d->engine, dnnl_stream_default_flags));
  *out = d;
  return WK_OK;
done:
  wk_dnnl_destroy(d);
  return st;
}

void wk_dnnl_destroy(wk_dnnl *d) {
  if (!d) return;
  if (d->stream) dnnl_stream_destroy(d->stream);
  if (d->engine) dnnl_engine_destroy(d->engine);
  free(d);
}

dnnl_status_t wk_dnnl_memory(dnnl_memory_t *mem, const dnnl_memory_desc_t *md, dnnl_engine_t eng,
                             const void *data) {
  /* oneDNN takes a non-const handle; inputs are only read. */
  return dnnl_memory_create(mem, md, eng, data ? (void *)(uintptr_t)data : DNNL_MEMORY_NONE);
}

dnnl_status_t wk_dnnl_reorder_prim(wk_dnnl *d, const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to, dnnl_primitive_t *out) {
  dnnl_primitive_desc_t pd;
  dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, d->engine, to, d->engine, NULL);
  if (s != dnnl_success) return s;
  s = dnnl_primitive_create(out, pd);
  dnnl_primitive_desc_destroy(pd);
  return s;
}

wk_status wk_dnnl_reorder(wk_dnnl *d, const dnnl_memory_desc_t *src_md, const void *src,
                          const dnnl_memory_desc_t *dst_md, void *dst) {
  wk_status st = WK_OK;
  dnnl_primitive_t prim = NULL;
  WK_DNNL_CHECK(wk_dnnl_reorder_prim(d, src_md, dst_md, &prim));
  st = wk_dnnl_reorder_run(d, prim, src_md, src, dst_md, dst);
done:
  if (prim) dnnl_primitive_destroy(prim);
  return st;
}

wk_status wk_dnnl_exec(wk_dnnl *d, dnnl_primitive_t prim, int n_args, const int *arg_kinds,
                       const dnnl_memory_desc_t *const *mds, const void *const *ptrs) {
  wk_status st = WK_OK;
  dnnl_memory_t mem[12] = {0};
  dnnl_exec_arg_t args[12];
  WK_ASSERT(n_args <= 12);
  for (int i = 0; i < n_args; i++) {
    WK_DNNL_CHECK(wk_dnnl_memory(&mem[i], mds[i], d->engine, ptrs[i]));
    args[i].arg = arg_kinds[i];
    args[i].memory = mem[i];
  }
  WK_DNNL_CHECK(dnnl_primitive_execute(prim, d->stream, n_args, args));
  WK_DNNL_CHECK(dnnl_stream_wait(d->stream));
done:
  for (int i = 0; i < n_args; i++)
    if (mem[i]) dnnl_memory_destroy(mem[i]);
  return st;
}

wk_status wk_dnnl_reorder_run(wk_dnnl *d, dnnl_primitive_t reorder, const dnnl_memory_desc_t *from,
                              const void *src, const dnnl_memory_desc_t *to, void *dst) {
  const int kinds[2] = {DNNL_ARG_FROM, DNNL_ARG_TO};
  const dnnl_memory_desc_t *mds[2] = {from, to};
  const void *ptrs[2] = {src, dst};
  return wk_dnnl_exec(d, reorder, 2, kinds, mds, ptrs);
}

wk_status wk_dnnl_run(wk_dnnl *d, const_dnnl_primitive_desc_t pd, int n_args, const int *arg_kinds,
                      const dnnl_memory_desc_t *const *mds, const void *const *ptrs) {
  wk_status st = WK_OK;
  dnnl_primitive_t prim = NULL;
  WK_DNNL_CHECK(dnnl_primitive_create(&prim, pd));
  st = wk_dnnl_exec(d, prim, n_args, arg_kinds, mds, ptrs);
done:
  if (prim) dnnl_primitive_destroy(prim);
  return st;
}

const char *wk_dnnl_impl_name(const_dnnl_primitive_desc_t pd) {
  const char *name = NULL;
  if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success || !name)
    return "?";
  return name;
}

bool wk_dnnl_is_ref(const_dnnl_primitive_desc_t pd) {
  return strncmp(wk_dnnl_impl_name(pd), "ref", 3) == 0;
}

bool wk_dnnl_avx512(void) {
  const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
  return (isa & dnnl_cpu_isa_avx512_core) == dnnl_cpu_isa_avx512_core;
}

wk_status wk_dnnl_buffer(size_t bytes, void **out) {
  size_t rounded = (bytes + 63) & ~(size_t)63;
  *out = aligned_alloc(64, rounded ? rounded : 64);
  if (!*out) return wk_fail(WK_ERR_NOMEM, "oneDNN: cannot allocate %zu bytes", bytes);
  return WK_OK;
}
