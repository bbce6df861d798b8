/* hostres.c - see hostres.h. */
#include "core/hostres.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WK_HR_PATH 4096

/* A limit at or above this is "none" (cgroup v1 writes about 2^63 for
 * unlimited; no machine has 2^60 bytes). */
#define WK_HR_NO_LIMIT ((uint64_t)1 << 60)

typedef enum { WK_CG_NONE, WK_CG_V1, WK_CG_V2 } wk_cg_kind;

/* A cgroup hierarchy's folder for this process and the mount point above
 * which it cannot be walked. */
typedef struct {
  wk_cg_kind kind;
  char dir[WK_HR_PATH];   /* root + mount point + the cgroup's path below the mount's root */
  size_t mount_len;       /* strlen(root + mount point): the walk stops there */
} wk_cg_dir;

/* An unsigned decimal that is the whole of s (a trailing newline allowed). */
static bool wk_hr_u64(const char *s, uint64_t *out) {
  if (*s < '0' || *s > '9') return false;
  char *end;
  errno = 0;
  const unsigned long long v = strtoull(s, &end, 10);
  if (errno || (*end && *end != '\n')) return false;
  *out = v;
  return true;
}

/* The first line of a small file, without its newline. */
static bool wk_hr_line(const char *path, char *buf, size_t n) {
  FILE *f = fopen(path, "r");
  if (!f) return false;
  const bool ok = fgets(buf, (int)n, f) != NULL;
  fclose(f);
  if (!ok) return false;
  buf[strcspn(buf, "\n")] = '\0';
  return true;
}

static bool wk_hr_file_u64(const char *dir, const char *name, uint64_t *out) {
  char path[WK_HR_PATH + 64], line[64];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return false;
  return wk_hr_line(path, line, sizeof line) && wk_hr_u64(line, out);
}

/* The value of "KEY N" in a memory.stat-like file. */
static bool wk_hr_stat_u64(const char *dir, const char *name, const char *key, uint64_t *out) {
  char path[WK_HR_PATH + 64], line[256];
  if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return false;
  FILE *f = fopen(path, "r");
  if (!f) return false;
  const size_t k = strlen(key);
  bool found = false;
  while (!found && fgets(line, sizeof line, f))
    found = !strncmp(line, key, k) && line[k] == ' ' && wk_hr_u64(line + k + 1, out);
  fclose(f);
  return found;
}

/* Whether `list` (comma-separated) holds `word`. */
static bool wk_hr_has_word(const char *list, const char *word) {
  const size_t n = strlen(word);
  for (const char *p = list; *p;) {
    const size_t len = strcspn(p, ",");
    if (len == n && !strncmp(p, word, n)) return true;
    p += len + (p[len] == ',');
  }
  return false;
}

/* mountinfo writes space, tab, newline and backslash as \ooo: decode in place. */
static void wk_hr_unescape(char *s) {
  char *w = s;
  for (const char *r = s; *r;) {
    if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' &&
        r[3] <= '7') {
      *w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
      r += 4;
    } else {
      *w++ = *r++;
    }
  }
  *w = '\0';
}

/* The process's cgroup path in the hierarchy that has `controller` (v1) or in
 * the unified one (v2, controller NULL), from /proc/self/cgroup. */
static bool wk_hr_cgroup_path(const char *root, const char *controller, char *out, size_t n) {
  char path[WK_HR_PATH], line[WK_HR_PATH];
  snprintf(path, sizeof path, "%s/proc/self/cgroup", root);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    /* ID:CONTROLLERS:PATH; v2's line is "0::PATH" */
    line[strcspn(line, "\n")] = '\0';
    char *c1 = strchr(line, ':');
    char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2 || c2[1] != '/') continue;
    *c1 = *c2 = '\0';
    const char *ctrls = c1 + 1;
    found = controller ? wk_hr_has_word(ctrls, controller) : !strcmp(line, "0") && !*ctrls;
    if (found) found = snprintf(out, n, "%s", c2 + 1) < (int)n;
  }
  fclose(f);
  return found;
}

/* The mount of the hierarchy with `controller` (v1: fstype cgroup, the
 * controller among its super options) or of cgroup2 (controller NULL): its
 * root within the hierarchy and its mount point. */
static bool wk_hr_mount(const char *root, const char *controller, char *mroot, char *mpoint,
                        size_t n) {
  char path[WK_HR_PATH];
  snprintf(path, sizeof path, "%s/proc/self/mountinfo", root);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  char line[2 * WK_HR_PATH];
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    /* ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER */
    char *sep = strstr(line, " - ");
    if (!sep) continue;
    *sep = '\0';
    char fstype[64] = "", super[1024] = "";
    if (sscanf(sep + 3, "%63s %*s %1023s", fstype, super) < 1) continue;
    if (controller ? strcmp(fstype, "cgroup") || !wk_hr_has_word(super, controller)
                   : strcmp(fstype, "cgroup2") != 0)
      continue;
    char *save = NULL, *field = strtok_r(line, " ", &save);
    for (int i = 0; field && i < 3; i++) field = strtok_r(NULL, " ", &save);
    char *point = field ? strtok_r(NULL, " ", &save) : NULL;
    if (!field || !point || strlen(field) >= n || strlen(point) >= n) continue;
    strcpy(mroot, field);
    strcpy(mpoint, point);
    wk_hr_unescape(mroot);
    wk_hr_unescape(mpoint);
    found = true;
  }
  fclose(f);
  return found;
}

/* This process's folder in the v1 hierarchy with `controller`, else in the
 * v2 one. The cgroup's path is taken relative to the mount's root: a
 * container without its own cgroup namespace shows its host path
 * (/docker/ID) in /proc/self/cgroup and has that folder mounted as the
 * mount point itself. A path that does not lie below the mount's root (or
 * climbs with "..") gives the mount point. */
static bool wk_hr_cg_dir(const char *root, const char *controller, wk_cg_dir *out) {
  char cg[WK_HR_PATH], mroot[WK_HR_PATH], mpoint[WK_HR_PATH];
  out->kind = WK_CG_NONE;
  wk_cg_kind kind = WK_CG_V1;
  if (!wk_hr_cgroup_path(root, controller, cg, sizeof cg) ||
      !wk_hr_mount(root, controller, mroot, mpoint, sizeof mroot)) {
    kind = WK_CG_V2;
    if (!wk_hr_cgroup_path(root, NULL, cg, sizeof cg) ||
        !wk_hr_mount(root, NULL, mroot, mpoint, sizeof mroot))
      return false;
  }
  const char *rel = cg;
  const size_t rl = strlen(mroot);
  if (strcmp(mroot, "/") != 0) {
    if (!strncmp(cg, mroot, rl) && (cg[rl] == '/' || cg[rl] == '\0')) rel = cg + rl;
    else rel = "";
  }
  if (strstr(rel, "/..")) rel = "";
  while (*rel == '/') rel++;
  /* root + mount point, no trailing '/', then "/" + rel when rel is not empty */
  const int m = snprintf(out->dir, sizeof out->dir, "%s%s", root, mpoint);
  if (m < 0 || (size_t)m >= sizeof out->dir) return false;
  size_t len = (size_t)m;
  while (len > 1 && out->dir[len - 1] == '/') out->dir[--len] = '\0';
  out->mount_len = len;
  if (*rel) {
    const int k = snprintf(out->dir + len, sizeof out->dir - len, "/%s", rel);
    if (k < 0 || (size_t)k >= sizeof out->dir - len) return false;
    len += (size_t)k;
    while (out->dir[len - 1] == '/') out->dir[--len] = '\0';
  }
  out->kind = kind;
  return true;
}

/* The parent of d->dir, not above the mount point; false at the mount point. */
static bool wk_hr_up(wk_cg_dir *d) {
  const size_t len = strlen(d->dir);
  if (len <= d->mount_len) return false;
  char *slash = strrchr(d->dir, '/');
  if (!slash || (size_t)(slash - d->dir) < d->mount_len) return false;
  *slash = '\0';
  return true;
}

/* What one cgroup's memory limit leaves, and the limit; false when it has none. */
static bool wk_hr_mem_level(const wk_cg_dir *d, uint64_t *room, uint64_t *limit) {
  const bool v2 = d->kind == WK_CG_V2;
  uint64_t lim, usage, inactive = 0;
  if (!wk_hr_file_u64(d->dir, v2 ? "memory.max" : "memory.limit_in_bytes", &lim) ||
      lim >= WK_HR_NO_LIMIT)
    return false; /* "max", missing or unlimited */
  if (!wk_hr_file_u64(d->dir, v2 ? "memory.current" : "memory.usage_in_bytes", &usage))
    usage = 0;
  wk_hr_stat_u64(d->dir, "memory.stat", v2 ? "inactive_file" : "total_inactive_file", &inactive);
  const uint64_t used = usage > inactive ? usage - inactive : 0;
  *room = lim > used ? lim - used : 0;
  *limit = lim;
  return true;
}

static bool wk_hr_meminfo(const char *root, size_t *out) {
  char path[WK_HR_PATH], line[128];
  snprintf(path, sizeof path, "%s/proc/meminfo", root);
  FILE *f = fopen(path, "r");
  if (!f) return false;
  bool found = false;
  unsigned long long kb = 0;
  while (!found && fgets(line, sizeof line, f))
    found = sscanf(line, "MemAvailable: %llu kB", &kb) == 1;
  fclose(f);
  if (found) *out = kb > SIZE_MAX / 1024 ? SIZE_MAX : (size_t)kb * 1024;
  return found;
}

bool wk_host_mem_read(const char *root, wk_host_mem *out) {
  *out = (wk_host_mem){.avail = SIZE_MAX, .sys_avail = SIZE_MAX, .cg_room = SIZE_MAX};
  const bool sys = wk_hr_meminfo(root, &out->sys_avail);
  bool cg = false;
  wk_cg_dir d;
  if (wk_hr_cg_dir(root, "memory", &d)) {
    do {
      uint64_t room, limit;
      if (wk_hr_mem_level(&d, &room, &limit) && room < out->cg_room) {
        out->cg_room = room > SIZE_MAX ? SIZE_MAX : (size_t)room;
        out->cg_limit = limit > SIZE_MAX ? SIZE_MAX : (size_t)limit;
        cg = true;
      }
    } while (wk_hr_up(&d));
  }
  out->by_cgroup = cg && out->cg_room < out->sys_avail;
  out->avail = out->by_cgroup ? out->cg_room : out->sys_avail;
  return sys || cg;
}

wk_status wk_host_half_room(const char *root, double bytes, const char *what, const char *hint) {
  wk_host_mem m;
  if (!wk_host_mem_read(root, &m) || bytes <= 0.5 * (double)m.avail) return WK_OK;
  const double mb = 1048576.0;
  return wk_fail(WK_ERR_NOMEM, "%s need %.0f MB, more than half of what %s (%.0f MB available); "
                 "%s", what, bytes / mb,
                 m.by_cgroup ? "the process's control group (a container's or job's memory "
                               "limit) leaves"
                             : "the system has",
                 (double)m.avail / mb, hint);
}

/* One cgroup's CPU quota in CPUs (rounded up); 0 when none. */
static int wk_hr_cpu_level(const wk_cg_dir *d) {
  uint64_t quota, period;
  if (d->kind == WK_CG_V2) {
    char path[WK_HR_PATH + 16], line[96], q[32];
    snprintf(path, sizeof path, "%s/cpu.max", d->dir);
    unsigned long long per;
    if (!wk_hr_line(path, line, sizeof line) || sscanf(line, "%31s %llu", q, &per) != 2 ||
        !wk_hr_u64(q, &quota))
      return 0; /* "max PERIOD", missing or malformed */
    period = per;
  } else {
    char buf[32];
    char path[WK_HR_PATH + 32];
    snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", d->dir);
    if (!wk_hr_line(path, buf, sizeof buf) || !wk_hr_u64(buf, &quota)) return 0; /* -1: none */
    if (!wk_hr_file_u64(d->dir, "cpu.cfs_period_us", &period)) return 0;
  }
  if (period == 0 || quota == 0) return 0;
  const uint64_t cpus = quota / period + (quota % period != 0);
  return cpus > 4096 ? 4096 : (int)cpus;
}

int wk_cgroup_cpu_quota(const char *root) {
  wk_cg_dir d;
  if (!wk_hr_cg_dir(root, "cpu", &d)) return 0;
  int best = 0;
  do {
    const int n = wk_hr_cpu_level(&d);
    if (n > 0 && (best == 0 || n < best)) best = n;
  } while (wk_hr_up(&d));
  return best;
}
