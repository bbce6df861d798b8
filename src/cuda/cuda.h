/* cuda.h - what the rest of whisker may ask about the GPU backend, whether or not
 * it was built. No CUDA types: any C file can include this.
 *
 * Built with the toolkit, cuDNN and NCCL, these are implemented by
 * cuda_backend.c; otherwise by cuda_none.c, which reports no backend and no
 * devices. None of these functions aborts or exits when there is no driver or no
 * device: that is an answer (0 devices), not an error. */
#ifndef WK_CUDA_H
#define WK_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

/* True when this build contains the CUDA backend. */
bool wk_cuda_compiled(void);

/* Number of usable CUDA devices; 0 when the backend is not built, when there is
 * no driver (or one too old for the runtime), or when there is no device. */
int wk_cuda_device_count(void);

/* Writes a human-readable, multi-line description of the backend into buf (n
 * bytes, always NUL-terminated when n > 0): whether it is built, the CUDA runtime
 * and driver versions, the cuDNN, cuBLAS and NCCL versions, and one line per
 * device (name, compute capability, memory) or a "no CUDA device" line. A failing
 * version or device query is described in the text, not returned.
 * Returns WK_ERR_INVALID_ARG for a NULL or empty buffer and WK_ERR_LIMIT when the
 * text did not fit (buf then holds as much as fitted). */
wk_status wk_cuda_describe(char *buf, size_t n);

#endif
