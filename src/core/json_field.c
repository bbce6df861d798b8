/* json_field.c - see json_field.h. */
#include "core/json_field.h"

#include <float.h>
#include <math.h>

bool wk_json_number(const cJSON *o, const char *key, double lo, double hi, bool integer,
                    double *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v)) return false;
  const double d = v->valuedouble;
  if (!isfinite(d) || d < lo || d > hi || (integer && d != floor(d))) return false;
  *out = d;
  return true;
}

bool wk_json_double(const cJSON *o, const char *key, double *out) {
  return wk_json_number(o, key, -DBL_MAX, DBL_MAX, false, out);
}

bool wk_json_count(const cJSON *o, const char *key, int64_t *out) {
  double d;
  if (!wk_json_number(o, key, 0, 9e15, true, &d)) return false;
  *out = (int64_t)d;
  return true;
}

bool wk_json_bool(const cJSON *o, const char *key, bool *out) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsBool(v)) return false;
  *out = cJSON_IsTrue(v);
  return true;
}
