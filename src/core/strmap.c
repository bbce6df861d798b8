/* strmap.c - see strmap.h. */
#include "core/strmap.h"

#include <stdlib.h>
#include <string.h>

void wk_strmap_init(wk_strmap *m, uint64_t seed) {
  memset(m, 0, sizeof *m);
  m->seed = seed;
}

void wk_strmap_free(wk_strmap *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->slots[i].key);
  free(m->slots);
  memset(m, 0, sizeof *m);
}

static uint64_t wk_strmap_hash(const wk_strmap *m, const char *key) {
  uint64_t h = 0xcbf29ce484222325u ^ m->seed;
  for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
    h ^= *p;
    h *= 0x100000001b3u;
  }
  h ^= h >> 33; /* MurmurHash3's finalizer: every bit reaches the slot index */
  h *= 0xff51afd7ed558ccdu;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53u;
  h ^= h >> 33;
  return h;
}

/* The slot holding key, or the empty slot where it would go (cap > 0). */
static wk_strmap_slot *wk_strmap_slot_of(const wk_strmap *m, const char *key, uint64_t h) {
  for (size_t i = (size_t)h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    wk_strmap_slot *s = &m->slots[i];
    if (!s->key || (s->hash == h && strcmp(s->key, key) == 0)) return s;
  }
}

bool wk_strmap_get(const wk_strmap *m, const char *key, int64_t *value) {
  if (m->cap == 0) return false;
  const wk_strmap_slot *s = wk_strmap_slot_of(m, key, wk_strmap_hash(m, key));
  if (!s->key) return false;
  if (value) *value = s->value;
  return true;
}

static bool wk_strmap_grow(wk_strmap *m) {
  const size_t cap = m->cap ? 2 * m->cap : 64;
  wk_strmap_slot *slots = calloc(cap, sizeof *slots);
  if (!slots) return false;
  wk_strmap old = *m;
  m->slots = slots;
  m->cap = cap;
  for (size_t i = 0; i < old.cap; i++)
    if (old.slots[i].key) *wk_strmap_slot_of(m, old.slots[i].key, old.slots[i].hash) = old.slots[i];
  free(old.slots);
  return true;
}

bool wk_strmap_put(wk_strmap *m, const char *key, int64_t value) {
  const uint64_t h = wk_strmap_hash(m, key);
  if (m->cap) {
    wk_strmap_slot *s = wk_strmap_slot_of(m, key, h);
    if (s->key) {
      s->value = value;
      return true;
    }
  }
  if (2 * (m->n + 1) > m->cap && !wk_strmap_grow(m)) return false;
  wk_strmap_slot *s = wk_strmap_slot_of(m, key, h);
  const size_t len = strlen(key) + 1;
  char *k = malloc(len);
  if (!k) return false;
  memcpy(k, key, len);
  *s = (wk_strmap_slot){.key = k, .hash = h, .value = value};
  m->n++;
  return true;
}
