/* fuzz_util.h - helpers shared by the fuzz targets (fuzz_*.c).
 *
 * Each target defines LLVMFuzzerTestOneInput (and may define
 * LLVMFuzzerInitialize). It is linked two ways: with libFuzzer in the
 * sanitizer build (WHISKER_FUZZ=ON, scripts/fuzz.sh) and with replay_main.c in
 * every build, where ctest replays the committed corpus and regressions
 * through it (fuzz/CMakeLists.txt). A target must never crash, leak or
 * allocate without bound on any input: a refusal is a status, never an abort. */
#ifndef WK_FUZZ_UTIL_H
#define WK_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "whisker.h"

/* Quietens logging (warnings per bad row or file would flood the fuzzer's
 * output) and returns a process-wide reference-free context with one thread.
 * Created on first use, never freed (libFuzzer's leak check ignores it: it is
 * still reachable). */
wk_ctx *wk_fuzz_ctx(void);

/* The input as a file that path-based loaders can open: an anonymous memory
 * file (memfd) reached through /proc/self/fd/N. *path is valid until
 * wk_fuzz_file_close. Returns 0, or -1 when the file cannot be made (the
 * target then returns without testing anything). */
typedef struct wk_fuzz_file {
  int fd;
  char path[64];
} wk_fuzz_file;

int wk_fuzz_file_open(wk_fuzz_file *f, const uint8_t *data, size_t size);
void wk_fuzz_file_close(wk_fuzz_file *f);

/* Decodes `data` as an image twice (full size, and with DCT scaling allowed),
 * under a 4 Mpx limit so that each execution stays fast. */
void wk_fuzz_decode_image(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
