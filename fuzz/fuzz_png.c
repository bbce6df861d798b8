/* fuzz_png.c - PNG decoding (libpng, every colour type and depth, tRNS, eXIf). */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wk_fuzz_decode_image(data, size);
  return 0;
}
