/* predict.h - running a trained network over images: a whole dataset (eval)
 * or a list of files (classify), with the model's evaluation preprocessing. */
#ifndef WK_TRAIN_PREDICT_H
#define WK_TRAIN_PREDICT_H

#include "data/augment.h"
#include "data/dataset.h"
#include "modelio/model.h"
#include "nn/net.h"

/* Softmax of each of the n rows of k logits, in place. */
void wk_softmax_rows(float *x, int64_t n, int k);

/* The evaluation transform of `pre` (resize shorter side, centre crop, mean/std). */
wk_augment_cfg wk_augment_cfg_from_preprocess(const wk_preprocess *pre);

/* Probabilities (size(ds) x K, malloc'ed, dataset order) and the dataset's
 * labels (malloc'ed) for every sample of ds. */
wk_status wk_predict_dataset(wk_net *net, const wk_preprocess *pre, const wk_dataset *ds,
                             int batch, int workers, float **probs, int32_t **labels);

/* Part `part` of `parts` of the same (data-parallel validation): the rows of
 * the dataset's batch-sized chunks part, part + parts, ... are written into
 * probs (size(ds) x K) and labels (size(ds)); the other rows are untouched. */
wk_status wk_predict_dataset_part(wk_net *net, const wk_preprocess *pre, const wk_dataset *ds,
                                  int batch, int workers, int part, int parts, float *probs,
                                  int32_t *labels);

/* Probabilities (n x K, caller-allocated) for n image files. A file that
 * cannot be read, or whose logits are not all finite, gets a row of NAN and
 * *bad counts it; its error is logged with the path. With why (n entries,
 * NULL on entry) such a file's reason, without the path, is left in why[i]
 * (malloc'ed; the caller frees every entry); a reason that cannot be copied
 * for want of memory stays NULL. */
wk_status wk_predict_files(wk_net *net, const wk_preprocess *pre, const char *const *paths,
                           int64_t n, int batch, float *probs, int64_t *bad, char **why);

#endif
