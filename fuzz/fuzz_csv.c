/* fuzz_csv.c - a dataset CSV list (`path,label` rows, RFC 4180 quoting),
 * without the pre-scan: the images it names are not opened. */
#include "fuzz_util.h"

#include "data/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  (void)wk_fuzz_ctx();
  wk_fuzz_file file;
  if (wk_fuzz_file_open(&file, data, size) != 0) return 0;
  wk_dataset_opts o = wk_dataset_opts_default();
  o.prescan = false;
  wk_dataset *ds;
  if (wk_dataset_open_csv(file.path, &o, &ds) == WK_OK) {
    for (int64_t i = 0; i < wk_dataset_size(ds); i++)
      (void)wk_dataset_class_name(ds, wk_dataset_label(ds, i));
    wk_dataset_free(ds);
  }
  wk_fuzz_file_close(&file);
  return 0;
}
