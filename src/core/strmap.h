/* strmap.h - a map from strings to int64 values: open addressing with linear
 * probing, keys copied, at most half full.
 *
 * The hash (FNV-1a with a final mix) starts from a caller's seed, so that
 * names chosen to collide under one seed do not under another: a parser of
 * hostile files seeds it from the file's digest. */
#ifndef WK_STRMAP_H
#define WK_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wk_strmap_slot {
  char *key; /* owned; NULL: empty slot */
  uint64_t hash;
  int64_t value;
} wk_strmap_slot;

typedef struct wk_strmap {
  wk_strmap_slot *slots;
  size_t cap, n; /* cap: 0 or a power of two */
  uint64_t seed;
} wk_strmap;

void wk_strmap_init(wk_strmap *m, uint64_t seed);
void wk_strmap_free(wk_strmap *m);
/* Key's value in *value (may be NULL); false when key is absent. */
bool wk_strmap_get(const wk_strmap *m, const char *key, int64_t *value);
/* Sets key's value, adding the key when new; false when out of memory (the
 * map is unchanged). */
bool wk_strmap_put(wk_strmap *m, const char *key, int64_t value);

#endif
