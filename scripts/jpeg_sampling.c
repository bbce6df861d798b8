/* jpeg_sampling.c - writes a JPEG with any sampling factors, which neither
 * PIL nor TurboJPEG 2 can write (4:1:0, 3x1, chroma planes sampled unlike
 * each other), for scripts/gen_image_fixtures.py, which compiles and runs it.
 *
 *   jpeg_sampling W H QUALITY HY VY HCB VCB HCR VCR [progressive] < rgb > out.jpg
 *
 * stdin: W x H x 3 bytes of RGB. libjpeg's own encoder, every call checked
 * (libjpeg's default error handler exits with a message). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

int main(int argc, char **argv) {
  if (argc < 10) {
    fprintf(stderr, "usage: jpeg_sampling W H QUALITY HY VY HCB VCB HCR VCR [progressive]\n");
    return 2;
  }
  int v[9];
  for (int i = 0; i < 9; i++) v[i] = atoi(argv[i + 1]);
  const int w = v[0], h = v[1];
  if (w < 1 || h < 1 || w > 4096 || h > 4096) return fprintf(stderr, "bad size\n"), 2;
  unsigned char *rgb = malloc((size_t)w * h * 3);
  if (!rgb || fread(rgb, 3, (size_t)w * h, stdin) != (size_t)w * h)
    return fprintf(stderr, "jpeg_sampling: stdin holds fewer than %d x %d pixels\n", w, h), 1;
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char *out = NULL;
  unsigned long n = 0;
  jpeg_mem_dest(&c, &out, &n);
  c.image_width = (JDIMENSION)w;
  c.image_height = (JDIMENSION)h;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, v[2], TRUE);
  for (int k = 0; k < 3; k++) {
    c.comp_info[k].h_samp_factor = v[3 + 2 * k];
    c.comp_info[k].v_samp_factor = v[4 + 2 * k];
  }
  if (argc > 10 && !strcmp(argv[10], "progressive")) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = rgb + (size_t)c.next_scanline * w * 3;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  const int ok = fwrite(out, 1, n, stdout) == n && fflush(stdout) == 0;
  jpeg_destroy_compress(&c);
  free(out);
  free(rgb);
  return ok ? 0 : 1;
}
