/* hostres.h - the host memory and CPUs this process may use, as the kernel
 * will enforce them: the system's, and its control group's (cgroup v2 or v1)
 * limits, which is how Docker (--memory, --cpus), Kubernetes, Slurm and
 * systemd hold a job in.
 *
 * A container sees the whole machine in /proc/meminfo and sysconf(), so a
 * program that trusts those starts more threads than it has CPUs (and is
 * throttled every scheduling period) and takes memory the kernel then takes
 * back by killing it. These functions read the limits where the kernel keeps
 * them:
 *
 *   - the process's cgroup, from /proc/self/cgroup, located through
 *     /proc/self/mountinfo (the mount's root may be the cgroup itself, as in a
 *     container without a cgroup namespace);
 *   - memory: v2 memory.max, memory.current and memory.stat's inactive_file;
 *     v1 memory.limit_in_bytes, memory.usage_in_bytes and memory.stat's
 *     total_inactive_file. What a cgroup leaves is its limit less its usage
 *     less its inactive page cache (which the kernel reclaims before it kills
 *     anything), as Docker's and the kubelet's "working set" counts it;
 *   - CPUs: v2 cpu.max ("QUOTA PERIOD" or "max PERIOD"), v1 cpu.cfs_quota_us
 *     and cpu.cfs_period_us; QUOTA / PERIOD rounded up;
 *   - every cgroup from the process's up to the mount's root: a limit set on
 *     a parent (a Slurm job's, a systemd slice's) holds as well, and the
 *     tightest one wins.
 *
 * A file that is missing or does not parse counts as no limit there: these
 * only ever lower what the system reports. `root` prefixes every path read
 * ("" on a live system; tests build a tree under a temporary folder). */
#ifndef WK_HOSTRES_H
#define WK_HOSTRES_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

typedef struct wk_host_mem {
  size_t avail;        /* bytes this process may still take: the smaller of the two below */
  size_t sys_avail;    /* /proc/meminfo's MemAvailable; SIZE_MAX when unreadable */
  size_t cg_room;      /* what the tightest cgroup limit leaves; SIZE_MAX when none */
  size_t cg_limit;     /* that cgroup's limit; 0 when none */
  bool by_cgroup;      /* avail is the cgroup's room, not the system's */
} wk_host_mem;

/* Fills *out; false when neither the system nor a cgroup says anything
 * (no /proc: avail is then SIZE_MAX). */
bool wk_host_mem_read(const char *root, wk_host_mem *out);

/* For memory made up front beside more to come (a loader's batches, a
 * rendered image set), whose pages are touched as it is filled: WK_OK when
 * `bytes` take at most half of what the host leaves this process (the rest
 * is the network's; unknown counts as room), else WK_ERR_NOMEM, "WHAT need N
 * MB, more than half of what the system has (M MB available); HINT", naming
 * the control group where its limit is the tighter. */
wk_status wk_host_half_room(const char *root, double bytes, const char *what, const char *hint);

/* The CPUs the process's cgroups allow it (their CPU quota, rounded up, at
 * least 1); 0 when no quota is set. Affinity (taskset, cpusets) is
 * wk_cpu_count's side. */
int wk_cgroup_cpu_quota(const char *root);

#endif
