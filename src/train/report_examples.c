/* report_examples.c - the worst-classified images section of the training
 * report: each image decoded (wk_image_load, DCT-scaled where JPEG allows),
 * shrunk to WK_REPORT_THUMB_PX on its long side (never enlarged), encoded as
 * JPEG and inlined as a data: URI, with "true: X, predicted: Y (p=0.12)".
 * An image that cannot be read gets the reason in place of its thumbnail. */
#include <math.h>
#include <stdlib.h>

#include "image/image.h"
#include "image/resize.h"
#include "train/report.h"
#include "train/report_impl.h"

enum { WK_THUMB_QUALITY = 85 };

/* Loads `path` and makes a JPEG thumbnail of it: *jpeg (malloc'ed) of *n_bytes. */
static wk_status wk_thumbnail(const char *path, uint8_t **jpeg, size_t *n_bytes) {
  wk_decode_opts opts = wk_decode_opts_default();
  opts.min_width = WK_REPORT_THUMB_PX;
  opts.min_height = WK_REPORT_THUMB_PX;
  wk_image img = {0}, small = {0};
  wk_status s = wk_image_load(path, &opts, &img);
  if (s == WK_OK) {
    int w = img.width, h = img.height, longest = w > h ? w : h;
    const wk_image *src = &img;
    if (longest > WK_REPORT_THUMB_PX) {
      double f = (double)WK_REPORT_THUMB_PX / longest;
      int tw = (int)lround(w * f), th = (int)lround(h * f);
      s = wk_image_resize(&img, NULL, tw < 1 ? 1 : tw, th < 1 ? 1 : th, WK_RESAMPLE_BILINEAR,
                          &small);
      src = &small;
    }
    if (s == WK_OK) s = wk_image_encode_jpeg_mem(src, WK_THUMB_QUALITY, jpeg, n_bytes);
  }
  wk_image_free(&img);
  wk_image_free(&small);
  return s;
}

static void wk_example_html(wk_rbuf *b, const wk_report *r, const wk_report_example *e) {
  wk_rbuf_puts(b, "<figure class=\"example\">");
  uint8_t *jpeg = NULL;
  size_t n_bytes = 0;
  if (!e->path) {
    wk_rbuf_puts(b, "<div class=\"nothumb\">no image path</div>");
  } else if (wk_thumbnail(e->path, &jpeg, &n_bytes) == WK_OK) {
    wk_rbuf_puts(b, "<img alt=\"");
    wk_rbuf_put_html(b, e->path);
    wk_rbuf_puts(b, "\" src=\"data:image/jpeg;base64,");
    wk_rbuf_put_base64(b, jpeg, n_bytes);
    wk_rbuf_puts(b, "\">");
  } else {
    wk_rbuf_puts(b, "<div class=\"nothumb\">no thumbnail: ");
    wk_rbuf_put_html(b, wk_last_error());
    wk_rbuf_puts(b, "</div>");
    wk_clear_error(); /* an unreadable image is reported on the page, not to the caller */
  }
  free(jpeg);
  wk_rbuf_puts(b, "<figcaption>true: ");
  wk_report_put_class(b, r, e->label);
  wk_rbuf_puts(b, ", predicted: ");
  wk_report_put_class(b, r, e->predicted);
  if (isfinite(e->prob_true)) wk_rbuf_printf(b, " (p=%.2f)", (double)e->prob_true);
  wk_rbuf_puts(b, "<br><span class=\"path\">");
  wk_rbuf_put_html(b, e->path ? e->path : "(no path)");
  wk_rbuf_puts(b, "</span></figcaption></figure>\n");
}

void wk_report_examples_html(wk_rbuf *b, const wk_report *r) {
  wk_rbuf_puts(b, "<section id=\"worst\"><h2>Worst-classified validation images</h2>\n");
  if (r->n_worst <= 0) {
    wk_rbuf_puts(b, "<p class=\"empty\">No examples were recorded.</p></section>\n");
    return;
  }
  wk_rbuf_puts(b, "<div class=\"examples\">\n");
  for (int i = 0; i < r->n_worst; i++) wk_example_html(b, r, &r->worst[i]);
  wk_rbuf_puts(b, "</div></section>\n");
}
