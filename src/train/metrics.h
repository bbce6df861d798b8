/* metrics.h - classification metrics from predicted probabilities: accuracy,
 * top-k accuracy, the confusion matrix, per-class precision/recall/F1 and,
 * for two classes, ROC AUC. */
#ifndef WK_TRAIN_METRICS_H
#define WK_TRAIN_METRICS_H

#include <stdint.h>

#include "core/status.h"

typedef struct wk_metrics {
  int n_classes;
  int64_t n;              /* samples */
  double loss;            /* mean cross-entropy (no smoothing) */
  double accuracy;        /* top-1 */
  double top_k_accuracy;  /* with k = top_k */
  int top_k;
  int64_t *confusion;     /* n_classes x n_classes, row = true class, column = predicted */
  double *precision, *recall, *f1; /* per class; 0 where undefined (no predictions / samples) */
  double auc;             /* ROC AUC of class 1 vs 0 when n_classes == 2, else NAN */
} wk_metrics;

/* probs (n, k) rows summing to 1, labels (n) in [0, k). top_k in [1, k]. */
wk_status wk_metrics_compute(const float *probs, const int32_t *labels, int64_t n, int k,
                             int top_k, wk_metrics *out);
void wk_metrics_free(wk_metrics *m);

/* ROC AUC (Mann-Whitney U / (n_pos n_neg), ties counted half) of scores
 * where higher means label 1, and (eer may be NULL) the equal error rate.
 * NAN when a class is absent. */
void wk_roc_auc_eer(const double *score, const int32_t *labels, int64_t n, double *auc,
                    double *eer);

/* The predicted class of a probability row (first of ties). */
int wk_argmax(const float *row, int k);

#endif
