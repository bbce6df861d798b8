/* json_field.h - typed fields of a cJSON object, for the readers of whisker's
 * own JSON metadata (checkpoints, run settings, clickstream settings): a
 * field that is absent, of another type or out of range gives false, and the
 * caller names the file. cJSON reads 1e999 as infinity, so every number is
 * also checked to be finite. */
#ifndef WK_JSON_FIELD_H
#define WK_JSON_FIELD_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

/* Field key of o into *out when it is a number in [lo, hi], and a whole one
 * when `integer`. */
bool wk_json_number(const cJSON *o, const char *key, double lo, double hi, bool integer,
                    double *out);
/* Any finite number. */
bool wk_json_double(const cJSON *o, const char *key, double *out);
/* A whole number in [0, 9e15] (exact in a double). */
bool wk_json_count(const cJSON *o, const char *key, int64_t *out);
bool wk_json_bool(const cJSON *o, const char *key, bool *out);

#endif
