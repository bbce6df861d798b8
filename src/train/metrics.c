/* metrics.c - see metrics.h. */
#include "train/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int wk_argmax(const float *row, int k) {
  int best = 0;
  for (int j = 1; j < k; j++)
    if (row[j] > row[best]) best = j;
  return best;
}

typedef struct wk_scored {
  double score;
  int positive;
} wk_scored;

static int wk_cmp_scored(const void *a, const void *b) {
  double x = ((const wk_scored *)a)->score, y = ((const wk_scored *)b)->score;
  return (x > y) - (x < y);
}

void wk_roc_auc_eer(const double *score, const int32_t *labels, int64_t n, double *auc,
                    double *eer) {
  *auc = NAN;
  if (eer) *eer = NAN;
  wk_scored *s = malloc((size_t)(n > 0 ? n : 1) * sizeof *s);
  if (!s) return;
  int64_t n_pos = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(score[i])) { /* no order (qsort's comparison would not be one): no AUC */
      free(s);
      return;
    }
    s[i].score = score[i];
    s[i].positive = labels[i] == 1;
    n_pos += s[i].positive;
  }
  const int64_t n_neg = n - n_pos;
  if (n_pos == 0 || n_neg == 0) {
    free(s);
    return;
  }
  qsort(s, (size_t)n, sizeof *s, wk_cmp_scored);
  double rank_sum = 0.0;
  for (int64_t i = 0; i < n;) {
    int64_t j = i + 1;
    while (j < n && s[j].score == s[i].score) j++;
    const double mid_rank = (double)(i + j + 1) / 2.0; /* ranks i+1 .. j */
    for (int64_t t = i; t < j; t++)
      if (s[t].positive) rank_sum += mid_rank;
    i = j;
  }
  *auc = (rank_sum - (double)n_pos * (double)(n_pos + 1) / 2.0) / ((double)n_pos * (double)n_neg);
  /* EER: thresholds between distinct scores, from below all (everything
   * flagged positive) upwards; false negatives are positives below the
   * threshold, false positives negatives at or above it. At the threshold
   * where the two rates are closest, their mean. */
  if (eer) {
    int64_t fn = 0, fp = n_neg;
    double best = 2.0;
    for (int64_t i = 0;;) {
      const double fnr = (double)fn / (double)n_pos, fpr = (double)fp / (double)n_neg;
      if (fabs(fnr - fpr) < best) best = fabs(fnr - fpr), *eer = 0.5 * (fnr + fpr);
      if (i == n) break;
      int64_t j = i;
      for (; j < n && (j == i || s[j].score == s[i].score); j++) {
        if (s[j].positive) fn++;
        else fp--;
      }
      i = j;
    }
  }
  free(s);
}

/* Mann-Whitney U / (n_pos n_neg), ties counted half: the probability that a
 * random positive scores above a random negative. */
static double wk_auc(const float *probs, const int32_t *labels, int64_t n) {
  double *score = malloc((size_t)n * sizeof *score), auc;
  if (!score) return NAN;
  for (int64_t i = 0; i < n; i++) score[i] = probs[i * 2 + 1];
  wk_roc_auc_eer(score, labels, n, &auc, NULL);
  free(score);
  return auc;
}

wk_status wk_metrics_compute(const float *probs, const int32_t *labels, int64_t n, int k,
                             int top_k, wk_metrics *m) {
  memset(m, 0, sizeof *m);
  if (k < 1 || n < 1) return wk_fail(WK_ERR_INVALID_ARG, "metrics: %lld samples of %d classes",
                                     (long long)n, k);
  if (top_k < 1) top_k = 1;
  if (top_k > k) top_k = k;
  m->n_classes = k;
  m->n = n;
  m->top_k = top_k;
  m->confusion = calloc((size_t)k * (size_t)k, sizeof *m->confusion);
  m->precision = calloc((size_t)k, sizeof(double));
  m->recall = calloc((size_t)k, sizeof(double));
  m->f1 = calloc((size_t)k, sizeof(double));
  if (!m->confusion || !m->precision || !m->recall || !m->f1) {
    wk_metrics_free(m);
    return wk_fail(WK_ERR_NOMEM, "metrics: out of memory for %d classes", k);
  }
  int64_t correct = 0, correct_k = 0;
  double loss = 0.0;
  for (int64_t i = 0; i < n; i++) {
    const float *row = probs + i * k;
    const int y = labels[i];
    for (int j = 0; j < k; j++)
      if (!isfinite(row[j])) {
        wk_metrics_free(m);
        return wk_fail(WK_ERR_INVALID_ARG, "metrics: sample %lld has a non-finite "
                       "probability (%g): the model computes NaN or infinity", (long long)i,
                       (double)row[j]);
      }
    if (y < 0 || y >= k) {
      wk_metrics_free(m);
      return wk_fail(WK_ERR_INVALID_ARG, "metrics: label %d of sample %lld not in [0, %d)", y,
                     (long long)i, k);
    }
    const int p = wk_argmax(row, k);
    m->confusion[(int64_t)y * k + p]++;
    correct += p == y;
    int above = 0; /* classes scoring strictly higher than the true one */
    for (int j = 0; j < k; j++) above += row[j] > row[y];
    correct_k += above < top_k;
    loss -= log(fmax((double)row[y], 1e-30));
  }
  m->accuracy = (double)correct / (double)n;
  m->top_k_accuracy = (double)correct_k / (double)n;
  m->loss = loss / (double)n;
  for (int c = 0; c < k; c++) {
    int64_t tp = m->confusion[(int64_t)c * k + c], pred = 0, actual = 0;
    for (int j = 0; j < k; j++) {
      pred += m->confusion[(int64_t)j * k + c];
      actual += m->confusion[(int64_t)c * k + j];
    }
    m->precision[c] = pred ? (double)tp / (double)pred : 0.0;
    m->recall[c] = actual ? (double)tp / (double)actual : 0.0;
    const double pr = m->precision[c] + m->recall[c];
    m->f1[c] = pr > 0 ? 2.0 * m->precision[c] * m->recall[c] / pr : 0.0;
  }
  m->auc = k == 2 ? wk_auc(probs, labels, n) : NAN;
  return WK_OK;
}

void wk_metrics_free(wk_metrics *m) {
  free(m->confusion);
  free(m->precision);
  free(m->recall);
  free(m->f1);
  memset(m, 0, sizeof *m);
}
