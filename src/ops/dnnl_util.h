/* dnnl_util.h - the oneDNN engine/stream owned by a context, checked calls, and
 * small helpers shared by the oneDNN fast paths (conv2d_dnnl.c, batchnorm_dnnl.c). */
#ifndef WK_OPS_DNNL_UTIL_H
#define WK_OPS_DNNL_UTIL_H

#include <stdbool.h>

#include <oneapi/dnnl/dnnl.h>

#include "core/context.h"
#include "core/status.h"

struct wk_dnnl {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
};

wk_status wk_dnnl_create(wk_dnnl **out);
void wk_dnnl_destroy(wk_dnnl *d);

/* Records a failed oneDNN call (statement, file, line, oneDNN's own message). */
wk_status wk_dnnl_error(dnnl_status_t st, const char *call, const char *file, int line);

/* In a function with a `wk_status st` and a `done:` cleanup label. */
#define WK_DNNL_CHECK(call)                                                   \
  do {                                                                        \
    dnnl_status_t wk_dnnl_st_ = (call);                                       \
    if (wk_dnnl_st_ != dnnl_success) {                                        \
      st = wk_dnnl_error(wk_dnnl_st_, #call, __FILE__, __LINE__);             \
      goto done;                                                              \
    }                                                                         \
  } while (0)

/* A memory object over caller-owned data (NULL data: none attached). */
dnnl_status_t wk_dnnl_memory(dnnl_memory_t *mem, const dnnl_memory_desc_t *md, dnnl_engine_t eng,
                             const void *data);

/* Copies between two layouts of the same logical tensor and waits. */
wk_status wk_dnnl_reorder(wk_dnnl *d, const dnnl_memory_desc_t *src_md, const void *src,
                          const dnnl_memory_desc_t *dst_md, void *dst);

/* Runs a primitive on (arg kind, memory descriptor, data) triples and waits.
 * At most 12 arguments. */
wk_status wk_dnnl_exec(wk_dnnl *d, dnnl_primitive_t prim, int n_args, const int *arg_kinds,
                       const dnnl_memory_desc_t *const *mds, const void *const *ptrs);

/* A reorder primitive from layout `from` to layout `to` (kept by the caller). */
dnnl_status_t wk_dnnl_reorder_prim(wk_dnnl *d, const dnnl_memory_desc_t *from,
                                   const dnnl_memory_desc_t *to, dnnl_primitive_t *out);

/* Runs a reorder primitive from (from, src) into (to, dst) and waits. */
wk_status wk_dnnl_reorder_run(wk_dnnl *d, dnnl_primitive_t reorder, const dnnl_memory_desc_t *from,
                              const void *src, const dnnl_memory_desc_t *to, void *dst);

/* The same for a one-off primitive created from `pd`. */
wk_status wk_dnnl_run(wk_dnnl *d, const_dnnl_primitive_desc_t pd, int n_args, const int *arg_kinds,
                      const dnnl_memory_desc_t *const *mds, const void *const *ptrs);

/* The implementation oneDNN picked for a primitive descriptor, e.g. "brg:avx512_core". */
const char *wk_dnnl_impl_name(const_dnnl_primitive_desc_t pd);
/* Whether pd runs on oneDNN's reference kernels (plain loops, often hundreds
 * of times slower than its jit ones): an optional layout or fusion that only
 * has those is not worth taking. */
bool wk_dnnl_is_ref(const_dnnl_primitive_desc_t pd);

/* Whether oneDNN runs AVX-512 (avx512_core) kernels here: the CPU's ISA,
 * capped by ONEDNN_MAX_CPU_ISA (the valgrind run sets AVX2), so whisker's own
 * AVX-512 kernels and oneDNN's agree on what may run. */
bool wk_dnnl_avx512(void);

/* A 64-byte aligned buffer of `bytes` (never NULL on success). */
wk_status wk_dnnl_buffer(size_t bytes, void **out);

#endif
