/* softmax_xent.c - softmax cross-entropy with label smoothing. Rows are
 * independent; the batch loss is summed in row order afterwards, so the result
 * does not depend on the thread count. */
#include <math.h>
#include <stdlib.h>

#include "ops/parallel.h"
#include "ops/ref.h"

typedef struct {
  int64_t k;
  double smoothing;
  const float *logits;
  const int32_t *labels;
  float *probs;
  double *row_loss;
} wk_xent_job;

static void wk_xent_slice(const void *arg, int64_t b, int64_t e) {
  const wk_xent_job *j = arg;
  for (int64_t i = b; i < e; i++)
    wk_softmax_xent_forward_ref_f32(1, j->k, j->smoothing, j->logits + i * j->k, j->labels + i,
                                    j->probs ? j->probs + i * j->k : NULL, &j->row_loss[i]);
}

static wk_status wk_xent_check(const wk_xent_params *p, const wk_tensor *scores,
                               const char *scores_name, const wk_tensor *labels) {
  if (!p || !(p->label_smoothing >= 0.0f && p->label_smoothing <= 1.0f))
    return wk_fail(WK_ERR_INVALID_ARG, "cross-entropy: label smoothing must be in [0, 1]");
  if (!scores || !labels || scores->ndim != 2)
    return wk_fail(WK_ERR_SHAPE, "cross-entropy: %s must be (N,K) with labels (N)", scores_name);
  const int64_t n = scores->shape[0], k = scores->shape[1];
  if (n < 1 || k < 1) return wk_fail(WK_ERR_SHAPE, "cross-entropy: empty %s", scores_name);
  WK_TRY(wk_tensor_expect(scores, scores_name, WK_F32, 2, scores->shape));
  WK_TRY(wk_tensor_expect(labels, "cross-entropy labels", WK_I32, 1, &n));
  const int32_t *l = labels->data;
  for (int64_t i = 0; i < n; i++)
    if (l[i] < 0 || l[i] >= k)
      return wk_fail(WK_ERR_INVALID_ARG, "cross-entropy: label %d of sample %lld is not in [0, %lld)",
                     l[i], (long long)i, (long long)k);
  return WK_OK;
}

wk_status wk_softmax_xent_forward(wk_ctx *ctx, const wk_xent_params *p, const wk_tensor *logits,
                                  const wk_tensor *labels, wk_tensor *probs, float *loss) {
  WK_TRY(wk_xent_check(p, logits, "logits", labels));
  if (probs) WK_TRY(wk_tensor_expect(probs, "softmax output", WK_F32, 2, logits->shape));
  if (!loss) return wk_fail(WK_ERR_INVALID_ARG, "cross-entropy: missing loss output");
  const int64_t n = logits->shape[0];
  wk_xent_job j = {logits->shape[1], p->label_smoothing, logits->data, labels->data,
                   probs ? probs->data : NULL, malloc((size_t)n * sizeof(double))};
  if (!j.row_loss) return wk_fail(WK_ERR_NOMEM, "cross-entropy: out of memory");
  wk_parallel_slices(ctx, n, 4 * j.k, wk_xent_slice, &j);
  double total = 0.0;
  for (int64_t i = 0; i < n; i++) total += j.row_loss[i];
  free(j.row_loss);
  *loss = (float)(total / (double)n);
  return WK_OK;
}

typedef struct {
  int64_t n, k;
  double smoothing, dloss;
  const float *probs;
  const int32_t *labels;
  float *dlogits;
} wk_xent_bwd_job;

static void wk_xent_bwd_slice(const void *arg, int64_t b, int64_t e) {
  const wk_xent_bwd_job *j = arg;
  wk_softmax_xent_backward_ref_f32(e - b, j->k, j->smoothing, j->n, j->probs + b * j->k,
                                   j->labels + b, j->dloss, j->dlogits + b * j->k);
}

wk_status wk_softmax_xent_backward(wk_ctx *ctx, const wk_xent_params *p, const wk_tensor *probs,
                                   const wk_tensor *labels, float dloss, wk_tensor *dlogits) {
  WK_TRY(wk_xent_check(p, probs, "softmax output", labels));
  if (!dlogits) return wk_fail(WK_ERR_INVALID_ARG, "cross-entropy backward: missing gradient");
  WK_TRY(wk_tensor_expect(dlogits, "logits gradient", WK_F32, 2, probs->shape));
  wk_xent_bwd_job j = {probs->shape[0], probs->shape[1], p->label_smoothing, dloss, probs->data,
                       labels->data, dlogits->data};
  wk_parallel_slices(ctx, j.n, 2 * j.k, wk_xent_bwd_slice, &j);
  return WK_OK;
}
