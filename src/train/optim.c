/* optim.c - optimizer configuration, creation and checkpoint state (see optim.h;
 * the update itself is in optim_step.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/optim_impl.h"

wk_optim_config wk_optim_config_default(wk_optim_kind kind) {
  wk_optim_config c = {
      .kind = kind,
      .weight_decay = kind == WK_OPTIM_ADAMW ? 1e-2 : 0.0,
      .decay_norm_and_bias = false,
      .momentum = 0.9,
      .nesterov = false,
      .beta1 = 0.9,
      .beta2 = 0.999,
      .eps = 1e-8,
  };
  return c;
}

static bool wk_unit_interval(double x) { return x >= 0.0 && x < 1.0; } /* false for NaN */

wk_status wk_optim_config_check(const wk_optim_config *c) {
  if (!c) return wk_fail(WK_ERR_INVALID_ARG, "optim: NULL configuration");
  if (c->kind != WK_OPTIM_SGD && c->kind != WK_OPTIM_ADAMW)
    return wk_fail(WK_ERR_INVALID_ARG, "optim: unknown kind %d", (int)c->kind);
  const char *k = wk_optim_kind_name(c->kind);
  if (!(isfinite(c->weight_decay) && c->weight_decay >= 0.0))
    return wk_fail(WK_ERR_INVALID_ARG, "%s: weight_decay %g must be finite and >= 0", k,
                   c->weight_decay);
  if (c->kind == WK_OPTIM_SGD) {
    if (!wk_unit_interval(c->momentum))
      return wk_fail(WK_ERR_INVALID_ARG, "sgd: momentum %g must be in [0, 1)", c->momentum);
    if (c->nesterov && c->momentum == 0.0)
      return wk_fail(WK_ERR_INVALID_ARG, "sgd: Nesterov momentum needs momentum > 0");
    return WK_OK;
  }
  if (!wk_unit_interval(c->beta1))
    return wk_fail(WK_ERR_INVALID_ARG, "adamw: beta1 %g must be in [0, 1)", c->beta1);
  if (!wk_unit_interval(c->beta2))
    return wk_fail(WK_ERR_INVALID_ARG, "adamw: beta2 %g must be in [0, 1)", c->beta2);
  if (!(isfinite(c->eps) && c->eps > 0.0))
    return wk_fail(WK_ERR_INVALID_ARG, "adamw: eps %g must be finite and > 0", c->eps);
  return WK_OK;
}

wk_status wk_optim_kind_parse(const char *name, wk_optim_kind *out) {
  if (name && strcmp(name, "sgd") == 0) {
    *out = WK_OPTIM_SGD;
    return WK_OK;
  }
  if (name && strcmp(name, "adamw") == 0) {
    *out = WK_OPTIM_ADAMW;
    return WK_OK;
  }
  return wk_fail(WK_ERR_INVALID_ARG, "unknown optimizer '%s' (sgd or adamw)",
                 name ? name : "(null)");
}

const char *wk_optim_kind_name(wk_optim_kind kind) {
  switch (kind) {
    case WK_OPTIM_SGD: return "sgd";
    case WK_OPTIM_ADAMW: return "adamw";
  }
  return "unknown";
}

static wk_status wk_optim_alloc(wk_optim *o) {
  o->layout = malloc((o->n_params ? o->n_params : 1) * 2 * sizeof *o->layout);
  o->steps = calloc(o->n_params ? o->n_params : 1, sizeof *o->steps);
  o->coef = calloc(o->n_params ? o->n_params : 1, sizeof *o->coef);
  if (!o->layout || !o->steps || !o->coef)
    return wk_fail(WK_ERR_NOMEM, "optim: out of memory");
  for (size_t i = 0; i < o->n_params; i++) {
    o->layout[2 * i] = o->params[i].offset;
    o->layout[2 * i + 1] = o->params[i].numel;
  }
  if (o->cfg.kind == WK_OPTIM_ADAMW) {
    o->n_state = 2;
    o->state_names[0] = "exp_avg";
    o->state_names[1] = "exp_avg_sq";
  } else if (o->cfg.momentum != 0.0) {
    o->n_state = 1;
    o->state_names[0] = "momentum_buffer";
  }
  for (size_t s = 0; s < o->n_state; s++) {
    o->state[s] = calloc(o->n_elems ? o->n_elems : 1, sizeof(float));
    if (!o->state[s])
      return wk_fail(WK_ERR_NOMEM, "optim: out of memory for %zu elements of %s", o->n_elems,
                     o->state_names[s]);
  }
  return wk_arena_chunks(o->params, o->n_params, false, &o->chunks, &o->n_chunks);
}

wk_status wk_optim_create(const wk_optim_config *cfg, const wk_param *params, size_t n_params,
                          size_t n_elems, wk_optim **out) {
  if (!out) return wk_fail(WK_ERR_INVALID_ARG, "optim: NULL output");
  *out = NULL;
  WK_TRY(wk_optim_config_check(cfg));
  WK_TRY(wk_arena_check(params, n_params, n_elems, wk_optim_kind_name(cfg->kind)));
  wk_optim *o = calloc(1, sizeof *o);
  if (!o) return wk_fail(WK_ERR_NOMEM, "optim: out of memory");
  o->cfg = *cfg;
  o->params = params;
  o->n_params = n_params;
  o->n_elems = n_elems;
  wk_status s = wk_optim_alloc(o);
  if (s != WK_OK) {
    wk_optim_destroy(o);
    return s;
  }
  *out = o;
  return WK_OK;
}

void wk_optim_destroy(wk_optim *o) {
  if (!o) return;
  for (size_t s = 0; s < WK_OPTIM_MAX_STATE; s++) free(o->state[s]);
  free(o->layout);
  free(o->steps);
  free(o->coef);
  free(o->chunks);
  free(o);
}

wk_status wk_optim_set_momentum(wk_optim *o, double m) {
  if (o->cfg.kind == WK_OPTIM_SGD) {
    if (o->n_state == 0)
      return wk_fail(WK_ERR_INVALID_ARG,
                     "sgd: created without momentum (no buffer), cannot set momentum %g", m);
    if (!(m > 0.0 && m < 1.0))
      return wk_fail(WK_ERR_INVALID_ARG, "sgd: momentum %g must be in (0, 1)", m);
    o->cfg.momentum = m;
    return WK_OK;
  }
  if (!wk_unit_interval(m))
    return wk_fail(WK_ERR_INVALID_ARG, "adamw: beta1 %g must be in [0, 1)", m);
  o->cfg.beta1 = m;
  return WK_OK;
}

const wk_optim_config *wk_optim_get_config(const wk_optim *o) { return &o->cfg; }

size_t wk_optim_state_count(const wk_optim *o) { return o->n_state; }

const char *wk_optim_state_name(const wk_optim *o, size_t i) {
  return i < o->n_state ? o->state_names[i] : NULL;
}

/* The state array called `name` with n_elems checked, or an error. */
static wk_status wk_optim_find_state(const wk_optim *o, const char *name, size_t n_elems,
                                     size_t *index) {
  const char *k = wk_optim_kind_name(o->cfg.kind);
  for (size_t s = 0; name && s < o->n_state; s++)
    if (strcmp(name, o->state_names[s]) == 0) {
      if (n_elems != o->n_elems)
        return wk_fail(WK_ERR_INVALID_ARG, "%s: state %s has %zu elements, not %zu", k, name,
                       o->n_elems, n_elems);
      *index = s;
      return WK_OK;
    }
  return wk_fail(WK_ERR_INVALID_ARG, "%s: no state called %s", k, name ? name : "(null)");
}

wk_status wk_optim_state_get(const wk_optim *o, const char *name, float *dst, size_t n_elems) {
  size_t s = 0;
  WK_TRY(wk_optim_find_state(o, name, n_elems, &s));
  if (n_elems) memcpy(dst, o->state[s], n_elems * sizeof *dst);
  return WK_OK;
}

wk_status wk_optim_state_set(wk_optim *o, const char *name, const float *src, size_t n_elems) {
  size_t s = 0;
  WK_TRY(wk_optim_find_state(o, name, n_elems, &s));
  const bool non_negative = strcmp(name, "exp_avg_sq") == 0;
  for (size_t i = 0; i < n_elems; i++)
    if (!isfinite(src[i]) || (non_negative && src[i] < 0.0f))
      return wk_fail(WK_ERR_INVALID_ARG, "%s: state %s element %zu is %g (must be finite%s)",
                     wk_optim_kind_name(o->cfg.kind), name, i, (double)src[i],
                     non_negative ? " and >= 0" : "");
  if (n_elems) memcpy(o->state[s], src, n_elems * sizeof *src);
  return WK_OK;
}

wk_status wk_optim_steps_get(const wk_optim *o, int64_t *dst, size_t n_params) {
  if (n_params != o->n_params)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: %zu step counts asked for %zu parameters",
                   wk_optim_kind_name(o->cfg.kind), n_params, o->n_params);
  if (n_params) memcpy(dst, o->steps, n_params * sizeof *dst);
  return WK_OK;
}

wk_status wk_optim_steps_set(wk_optim *o, const int64_t *src, size_t n_params) {
  const char *k = wk_optim_kind_name(o->cfg.kind);
  if (n_params != o->n_params)
    return wk_fail(WK_ERR_INVALID_ARG, "%s: %zu step counts given for %zu parameters", k,
                   n_params, o->n_params);
  for (size_t i = 0; i < n_params; i++)
    if (src[i] < 0)
      return wk_fail(WK_ERR_INVALID_ARG, "%s: step count %lld of parameter %zu is negative", k,
                     (long long)src[i], i);
  if (n_params) memcpy(o->steps, src, n_params * sizeof *src);
  return WK_OK;
}
