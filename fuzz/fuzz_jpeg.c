/* fuzz_jpeg.c - JPEG decoding (TurboJPEG, EXIF APP1, CMYK/YCCK, DCT scaling). */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  wk_fuzz_decode_image(data, size);
  return 0;
}
