/* report_demo.c - writes a demonstration training report (synthetic curves
 * over 40 epochs with a gap, 5 classes whose names need escaping, a confusion
 * matrix, worst examples taken from the image fixtures plus one missing file),
 * for looking at the page and for tests/report_chromium.sh.
 *
 *   wk_report_demo OUT.html [FIXTURE_DIR]
 *
 * FIXTURE_DIR defaults to tests/fixtures/images (relative to the current
 * folder). Exit status 0 on success, 1 with the reason on stderr, 2 for a
 * usage error. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/report.h"

enum { N_EPOCHS = 40, N_CLASSES = 5, N_WORST = 5 };

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: wk_report_demo OUT.html [FIXTURE_DIR]\n");
    return 2;
  }
  const char *dir = argc == 3 ? argv[2] : "tests/fixtures/images";
  wk_report_epoch ep[N_EPOCHS];
  for (int i = 0; i < N_EPOCHS; i++) {
    double t = i / (double)N_EPOCHS;
    ep[i] = (wk_report_epoch){.epoch = i + 1,
                              .train_loss = 0.2 + 1.4 * exp(-4 * t) + 0.02 * sin(i),
                              .val_loss = 0.35 + 1.2 * exp(-3.5 * t) + 0.1 * t * t,
                              .train_acc = 0.95 - 0.7 * exp(-4 * t),
                              .val_acc = 0.88 - 0.6 * exp(-3.5 * t),
                              .lr = 0.1 * 0.5 * (1 + cos(3.14159265358979 * t)),
                              .seconds = 30 + (i % 3),
                              .images_per_s = 1200 - 5 * (i % 4)};
  }
  ep[7].val_loss = ep[7].val_acc = NAN; /* a validation run that did not happen */
  wk_report_setting set[] = {{"arch", "resnet18"},       {"data", "data/pets <demo>"},
                             {"batch", "64"},            {"optimizer", "sgd momentum=0.9"},
                             {"lr schedule", "cosine"}, {"augment", "crop & flip"}};
  static const char *const names[N_CLASSES] = {"cat", "dog", "<bird>", "fish & chips",
                                               "\"hamster\""};
  static const int64_t confusion[N_CLASSES * N_CLASSES] = {
      90, 6, 2, 1, 1,   8, 85, 3, 2, 2,  3, 4, 80, 10, 3,
      1,  2, 12, 83, 2, 0, 1, 2, 3, 94};
  static const char *const files[N_WORST] = {"jpeg_large.jpg", "png_rgb8.png",
                                             "jpeg_exif6.jpg", "resize_src.png",
                                             "missing_on_purpose.jpg"};
  char paths[N_WORST][4096];
  wk_report_example worst[N_WORST];
  for (int i = 0; i < N_WORST; i++) {
    snprintf(paths[i], sizeof paths[i], "%s/%s", dir, files[i]);
    worst[i] = (wk_report_example){paths[i], i, (i + 1) % N_CLASSES, 0.02f + 0.05f * i};
  }
  wk_report r = {.title = "resnet18 on data/pets (demo)", .settings = set,
                 .n_settings = (int)(sizeof set / sizeof set[0]), .epochs = ep,
                 .n_epochs = N_EPOCHS, .n_classes = N_CLASSES, .class_names = names,
                 .confusion = confusion, .worst = worst, .n_worst = N_WORST};
  if (wk_report_write_html(argv[1], &r) != WK_OK) {
    fprintf(stderr, "wk_report_demo: %s\n", wk_last_error());
    return 1;
  }
  return 0;
}
