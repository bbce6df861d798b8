/* test_core.c - status messages, tensors, the counter-based RNG, the thread
 * pool and the context. */
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/file_kind.h"
#include "core/hostres.h"

#include "core/strmap.h"
#include "test_util.h"

START_TEST(test_status_messages) {
  wk_clear_error();
  ck_assert_str_eq(wk_last_error(), "");
  wk_status s = wk_fail(WK_ERR_IO, "%s: %s", "photo.jpg", "truncated");
  ck_assert_int_eq(s, WK_ERR_IO);
  ck_assert_str_eq(wk_last_error(), "photo.jpg: truncated");
  ck_assert_str_eq(wk_status_name(WK_ERR_FORMAT), "format error");
  ck_assert_str_eq(wk_status_name(WK_OK), "ok");
}
END_TEST

START_TEST(test_tensor_alloc_and_limits) {
  const int64_t shape[3] = {2, 3, 5};
  wk_tensor t;
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 3, shape), WK_OK);
  ck_assert_int_eq(wk_tensor_numel(&t), 30);
  ck_assert_uint_eq(wk_tensor_nbytes(&t), 120);
  ck_assert_uint_eq((uintptr_t)t.data % 64, 0);
  for (int i = 0; i < 30; i++) ck_assert_float_eq(((float *)t.data)[i], 0.0f);
  char buf[64];
  ck_assert_str_eq(wk_shape_str(&t, buf, sizeof buf), "(2, 3, 5)");
  wk_tensor_free(&t);
  ck_assert_ptr_null(t.data);
  wk_tensor_free(&t); /* safe twice */
  /* sizes from an untrusted header: overflow and the byte limit are errors */
  const int64_t huge[4] = {1 << 20, 1 << 20, 1 << 20, 1 << 20};
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 4, huge), WK_ERR_LIMIT);
  ck_assert_ptr_null(t.data);
  const int64_t neg[2] = {3, -1};
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 2, neg), WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 7, shape), WK_ERR_INVALID_ARG);
  /* expect() names the tensor and both shapes */
  ck_assert_int_eq(wk_tensor_alloc(&t, WK_F32, 3, shape), WK_OK);
  const int64_t other[3] = {2, 3, 4};
  ck_assert_int_eq(wk_tensor_expect(&t, "weights", WK_F32, 3, other), WK_ERR_SHAPE);
  ck_assert_str_eq(wk_last_error(), "weights: shape (2, 3, 5), expected (2, 3, 4)");
  ck_assert_int_eq(wk_tensor_expect(&t, "weights", WK_F32, 3, shape), WK_OK);
  wk_tensor_free(&t);
}
END_TEST

/* Known-answer vectors from Random123's kat_vectors (philox4x32_10). */
START_TEST(test_philox_known_answers) {
  const uint32_t c0[4] = {0, 0, 0, 0}, k0[2] = {0, 0};
  const uint32_t want0[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
  const uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
  const uint32_t k1[2] = {0xffffffffu, 0xffffffffu};
  const uint32_t want1[4] = {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu};
  const uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
  const uint32_t k2[2] = {0xa4093822u, 0x299f31d0u};
  const uint32_t want2[4] = {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
  uint32_t out[4];
  wk_philox4x32_10(c0, k0, out);
  for (int i = 0; i < 4; i++) ck_assert_uint_eq(out[i], want0[i]);
  wk_philox4x32_10(c1, k1, out);
  for (int i = 0; i < 4; i++) ck_assert_uint_eq(out[i], want1[i]);
  wk_philox4x32_10(c2, k2, out);
  for (int i = 0; i < 4; i++) ck_assert_uint_eq(out[i], want2[i]);
}
END_TEST

START_TEST(test_rng_streams) {
  /* the sequential reader and random access agree */
  wk_rng r = wk_rng_make(42, 9);
  for (uint64_t i = 0; i < 37; i++) ck_assert_uint_eq(wk_rng_u32(&r), wk_rng_at(42, 9, i));
  /* different streams and seeds differ */
  ck_assert_uint_ne(wk_rng_at(42, 9, 0), wk_rng_at(42, 10, 0));
  ck_assert_uint_ne(wk_rng_at(42, 9, 0), wk_rng_at(43, 9, 0));
  /* uniform in [0,1) with the right mean; normal with the right moments */
  r = wk_rng_make(1, 2);
  double s = 0, s2 = 0, smin = 1, smax = 0;
  const int n = 200000;
  for (int i = 0; i < n; i++) {
    double u = wk_rng_uniform(&r);
    ck_assert(u >= 0.0 && u < 1.0);
    s += u, smin = u < smin ? u : smin, smax = u > smax ? u : smax;
  }
  ck_assert_double_le(fabs(s / n - 0.5), 0.005);
  ck_assert(smin < 0.001 && smax > 0.999);
  s = 0;
  for (int i = 0; i < n; i++) {
    double z = wk_rng_normal(&r);
    s += z, s2 += z * z;
  }
  ck_assert_double_le(fabs(s / n), 0.01);
  ck_assert_double_le(fabs(s2 / n - 1.0), 0.02);
  /* below(): in range and covering every value */
  int seen[7] = {0};
  for (int i = 0; i < 7000; i++) {
    uint32_t v = wk_rng_below(&r, 7);
    ck_assert_uint_lt(v, 7);
    seen[v]++;
  }
  for (int i = 0; i < 7; i++) ck_assert_int_gt(seen[i], 800);
}
END_TEST

typedef struct {
  atomic_int *hits;
  atomic_int calls;
} pool_arg;

static void pool_body(void *arg, int64_t b, int64_t e) {
  pool_arg *a = arg;
  atomic_fetch_add(&a->calls, 1);
  for (int64_t i = b; i < e; i++) atomic_fetch_add(&a->hits[i], 1);
}

START_TEST(test_pool_covers_every_index_once) {
  for (int threads = 1; threads <= 4; threads++) {
    wk_pool *pool;
    ck_assert_int_eq(wk_pool_create(&pool, threads), WK_OK);
    ck_assert_int_eq(wk_pool_size(pool), threads);
    for (int64_t n = 0; n < 300; n += 37) {
      atomic_int *hits = calloc((size_t)n + 1, sizeof *hits);
      pool_arg a = {hits, 0};
      wk_pool_parallel_for(pool, n, 1, pool_body, &a);
      for (int64_t i = 0; i < n; i++) ck_assert_int_eq(atomic_load(&hits[i]), 1);
      ck_assert_int_le(atomic_load(&a.calls), threads);
      free(hits);
    }
    /* grain limits the number of chunks */
    atomic_int hits[10] = {0};
    pool_arg a = {hits, 0};
    wk_pool_parallel_for(pool, 10, 10, pool_body, &a);
    ck_assert_int_eq(atomic_load(&a.calls), 1);
    wk_pool_destroy(pool);
  }
  ck_assert_int_eq(wk_pool_create(&(wk_pool *){NULL}, 0), WK_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_ctx_from_environment) {
  wk_ctx *ctx;
  setenv("WHISKER_IMPL", "ref", 1);
  setenv("WHISKER_THREADS", "3", 1);
  ck_assert_int_eq(wk_ctx_create(&ctx, 0), WK_OK);
  ck_assert_int_eq(ctx->impl, WK_IMPL_REF);
  ck_assert_int_eq(ctx->n_threads, 3);
  wk_ctx_destroy(ctx);
  setenv("WHISKER_IMPL", "fast", 1);
  ck_assert_int_eq(wk_ctx_create(&ctx, 0), WK_ERR_INVALID_ARG);
  ck_assert_ptr_null(ctx);
  ck_assert_msg(strstr(wk_last_error(), "WHISKER_IMPL") != NULL, "%s", wk_last_error());
  setenv("WHISKER_IMPL", "cuda", 1);
  ck_assert_int_eq(wk_ctx_create(&ctx, 0), WK_ERR_UNSUPPORTED);
  unsetenv("WHISKER_IMPL");
  setenv("WHISKER_THREADS", "lots", 1);
  ck_assert_int_eq(wk_ctx_create(&ctx, 0), WK_ERR_INVALID_ARG);
  unsetenv("WHISKER_THREADS");
  ck_assert_int_eq(wk_ctx_create(&ctx, 2), WK_OK);
  ck_assert_int_eq(ctx->impl, WK_IMPL_CPU);
  wk_ctx_destroy(ctx);
}
END_TEST

/* An atomic write to a symbolic link replaces the file the link leads to
 * (a relative link, through a second link) and keeps the link; a dangling
 * link creates its target; a loop of links is refused naming the path. */
START_TEST(test_atomic_write_through_links) {
  char dir[] = "/tmp/wk_test_links_XXXXXX", a[128], b[128], real[128], sub[128], loop[128];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(sub, sizeof sub, "%s/real", dir);
  snprintf(real, sizeof real, "%s/real/model", dir);
  snprintf(a, sizeof a, "%s/a", dir);
  snprintf(b, sizeof b, "%s/b", dir);
  snprintf(loop, sizeof loop, "%s/loop", dir);
  ck_assert_int_eq(mkdir(sub, 0700), 0);
  WKT_OK(wk_atomic_write_file(real, "old", 3));
  ck_assert_int_eq(symlink("real/model", b), 0); /* relative to dir */
  ck_assert_int_eq(symlink(b, a), 0);
  WKT_OK(wk_atomic_write_file(a, "new!", 4));
  struct stat st;
  ck_assert_int_eq(lstat(a, &st), 0);
  ck_assert(S_ISLNK(st.st_mode));
  ck_assert_int_eq(lstat(b, &st), 0);
  ck_assert(S_ISLNK(st.st_mode));
  ck_assert_int_eq(stat(real, &st), 0);
  ck_assert_int_eq((int)st.st_size, 4);
  unlink(real);
  WKT_OK(wk_atomic_write_file(a, "x", 1)); /* dangling: the target is made */
  ck_assert_int_eq(stat(real, &st), 0);
  ck_assert_int_eq((int)st.st_size, 1);
  ck_assert_int_eq(symlink("loop", loop), 0);
  ck_assert_int_eq(wk_atomic_write_file(loop, "x", 1), WK_ERR_IO);
  ck_assert_msg(strstr(wk_last_error(), loop), "%s", wk_last_error());
  unlink(a), unlink(b), unlink(loop), unlink(real), rmdir(sub);
  ck_assert_int_eq(rmdir(dir), 0); /* no temporary file left behind */
}
END_TEST

/* An atomic write to a path that is not a regular file (a pipe, a folder,
 * a character device) is refused before anything is written, naming the path
 * and what it is: the rename would have replaced the pipe or the device with
 * a regular file. The pipe is still a pipe after; no temporary file is left. */
START_TEST(test_atomic_write_refuses_special_files) {
  char dir[] = "/tmp/wk_test_special_XXXXXX", fifo[128], sub[128], link[128];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(fifo, sizeof fifo, "%s/out.onnx", dir);
  snprintf(sub, sizeof sub, "%s/folder", dir);
  snprintf(link, sizeof link, "%s/to_null", dir);
  ck_assert_int_eq(mkfifo(fifo, 0600), 0);
  ck_assert_int_eq(mkdir(sub, 0700), 0);
  ck_assert_int_eq(symlink("/dev/null", link), 0);
  const char *paths[] = {fifo, sub, link, "/dev/null"};
  const char *kinds[] = {"a pipe", "a folder", "a device", "a device"};
  for (int i = 0; i < 4; i++) {
    ck_assert_int_eq(wk_atomic_write_file(paths[i], "x", 1), WK_ERR_INVALID_ARG);
    ck_assert_msg(strstr(wk_last_error(), "not a regular file") &&
                      strstr(wk_last_error(), kinds[i]),
                  "%s: %s", paths[i], wk_last_error());
  }
  ck_assert_msg(strstr(wk_last_error(), "/dev/null"), "%s", wk_last_error());
  struct stat st;
  ck_assert_int_eq(lstat(fifo, &st), 0);
  ck_assert(S_ISFIFO(st.st_mode));
  ck_assert_int_eq(stat("/dev/null", &st), 0);
  ck_assert(S_ISCHR(st.st_mode));
  unlink(fifo), unlink(link), rmdir(sub);
  ck_assert_int_eq(rmdir(dir), 0); /* no temporary file left behind */
}
END_TEST

/* A writer killed before its commit leaves no temporary file behind (the
 * file is unnamed until the commit, on systems with O_TMPFILE: Linux on
 * ext4, xfs, btrfs, tmpfs), and a committed write leaves only its target. */
START_TEST(test_atomic_write_killed_leaves_nothing) {
  char dir[] = "/tmp/wk_test_killed_XXXXXX", path[96];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
  const pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    wk_atomic_file af;
    if (wk_atomic_open(&af, path) != WK_OK || wk_atomic_write(&af, "partial", 7) != WK_OK)
      _exit(2);
    fflush(wk_atomic_stream(&af));
    _exit(0); /* killed: no commit, no abort */
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const int left = wkt_count_entries(dir);
  if (wkt_has_tmpfile(dir))
    ck_assert_msg(left == 0, "%d file(s) left in %s by a writer that never committed", left,
                  dir);
  else
    fprintf(stderr, "test_atomic_write_killed_leaves_nothing: %s has no O_TMPFILE: the named "
            "temporary file stays (%d)\n", dir, left);
  DIR *d;
  if (left && (d = opendir(dir))) { /* the named file of a system without it */
    for (struct dirent *e; (e = readdir(d));) {
      char p[512];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      if (e->d_name[0] != '.') unlink(p);
    }
    closedir(d);
  }
  WKT_OK(wk_atomic_write_file(path, "whole", 5));
  struct stat st;
  ck_assert_int_eq(stat(path, &st), 0);
  ck_assert_int_eq((int)st.st_size, 5);
  ck_assert_int_eq(unlink(path), 0);
  ck_assert_int_eq(rmdir(dir), 0); /* nothing else */
}
END_TEST

/* The importer's name index: get, replace, growth past many keys, a key that
 * is the prefix of another, the empty key; any seed. */
START_TEST(test_strmap) {
  for (uint64_t seed = 0; seed < 3; seed++) {
    wk_strmap m;
    wk_strmap_init(&m, seed * 0x9e3779b97f4a7c15u);
    ck_assert(!wk_strmap_get(&m, "a", NULL));
    char key[32];
    for (int i = 0; i < 5000; i++) {
      snprintf(key, sizeof key, "k%d", i);
      ck_assert(wk_strmap_put(&m, key, i));
    }
    ck_assert(wk_strmap_put(&m, "", -1));
    ck_assert(wk_strmap_put(&m, "k1", 77)); /* replaced, not added */
    ck_assert_uint_eq(m.n, 5001);
    for (int i = 0; i < 5000; i++) {
      snprintf(key, sizeof key, "k%d", i);
      int64_t v = -2;
      ck_assert(wk_strmap_get(&m, key, &v));
      ck_assert_int_eq(v, i == 1 ? 77 : i);
    }
    int64_t v;
    ck_assert(wk_strmap_get(&m, "", &v) && v == -1);
    ck_assert(!wk_strmap_get(&m, "k", NULL) && !wk_strmap_get(&m, "k50000", NULL));
    wk_strmap_free(&m);
    ck_assert(!wk_strmap_get(&m, "k1", NULL));
  }
}
END_TEST

/* ------------------------------------------------------------ host limits */

#define WKT_MIB(x) ((size_t)(x) << 20)

/* A host under cgroup v2 (systemd, a Slurm job, Docker with its own cgroup
 * namespace): /proc/self/cgroup names the cgroup, mountinfo the cgroup2
 * mount. A limit on a parent holds for the child; the tightest cgroup wins;
 * what a cgroup leaves is its limit less its usage less its inactive page
 * cache; a cgroup's limit above the system's MemAvailable leaves the system's
 * figure in charge. CPU quotas are rounded up, the tightest wins. */
START_TEST(test_host_limits_cgroup_v2) {
  char dir[] = "/tmp/wk_test_cg2_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  wkt_write_text(dir, "proc/meminfo", "MemTotal:  16777216 kB\nMemAvailable:    8388608 kB\n");
  wkt_write_text(dir, "proc/self/cgroup", "0::/job.slice/step.scope\n");
  wkt_write_text(dir, "proc/self/mountinfo",
                 "25 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
                 "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n");
  wkt_write_text(dir, "sys/fs/cgroup/memory.stat", "inactive_file 1\n"); /* the root: no .max */
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/memory.max", "2147483648\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/memory.current", "1073741824\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/memory.stat",
                 "anon 1\nfile 2\nactive_file 3\ninactive_file 268435456\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/cpu.max", "150000 100000\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/step.scope/memory.max", "max\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/step.scope/memory.current", "536870912\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/step.scope/cpu.max", "max 100000\n");

  wk_host_mem m;
  ck_assert(wk_host_mem_read(dir, &m));
  ck_assert_uint_eq(m.sys_avail, WKT_MIB(8192));
  ck_assert_uint_eq(m.cg_limit, WKT_MIB(2048)); /* the parent's */
  ck_assert_uint_eq(m.cg_room, WKT_MIB(2048 - (1024 - 256)));
  ck_assert(m.by_cgroup);
  ck_assert_uint_eq(m.avail, m.cg_room);
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 2); /* 1.5 CPUs, rounded up */

  /* a tighter limit on the process's own cgroup */
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/step.scope/memory.max", "1073741824\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/step.scope/memory.current", "943718400\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/step.scope/cpu.max", "50000 100000\n");
  ck_assert(wk_host_mem_read(dir, &m));
  ck_assert_uint_eq(m.cg_limit, WKT_MIB(1024));
  ck_assert_uint_eq(m.cg_room, WKT_MIB(1024 - 900));
  ck_assert_uint_eq(m.avail, WKT_MIB(124));
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 1);

  /* usage past the limit leaves nothing (not a wrapped-around size) */
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/step.scope/memory.current", "2147483648\n");
  ck_assert(wk_host_mem_read(dir, &m));
  ck_assert_uint_eq(m.avail, 0);

  /* limits looser than the system's MemAvailable: the system's figure */
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/memory.max", "34359738368\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/step.scope/memory.max", "max\n");
  ck_assert(wk_host_mem_read(dir, &m));
  ck_assert(!m.by_cgroup);
  ck_assert_uint_eq(m.cg_limit, (size_t)32 << 30);
  ck_assert_uint_eq(m.avail, WKT_MIB(8192));

  /* no limit anywhere */
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/memory.max", "max\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/cpu.max", "max 100000\n");
  wkt_write_text(dir, "sys/fs/cgroup/job.slice/step.scope/cpu.max", "max 100000\n");
  ck_assert(wk_host_mem_read(dir, &m));
  ck_assert(!m.by_cgroup);
  ck_assert_uint_eq(m.cg_room, SIZE_MAX);
  ck_assert_uint_eq(m.cg_limit, 0);
  ck_assert_uint_eq(m.avail, WKT_MIB(8192));
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 0);
  wkt_remove_tree(dir);
}
END_TEST

/* A container under cgroup v1 without a cgroup namespace (Docker on older
 * hosts): /proc/self/cgroup shows the host's path, /docker/ID, and the
 * container has that cgroup mounted as the hierarchy's mount point, so the
 * path is taken relative to the mount's root. cpu and cpuacct share a mount;
 * v1's "unlimited" (about 2^63) and a quota of -1 are no limit. */
START_TEST(test_host_limits_cgroup_v1_container) {
  char dir[] = "/tmp/wk_test_cg1_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  wkt_write_text(dir, "proc/meminfo", "MemAvailable:   20000000 kB\n");
  wkt_write_text(dir, "proc/self/cgroup",
                 "12:pids:/docker/abc\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n");
  wkt_write_text(dir, "proc/self/mountinfo",
                 "31 23 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n"
                 "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro master:10 - cgroup cgroup "
                 "rw,cpu,cpuacct\n"
                 "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro master:13 - cgroup cgroup "
                 "rw,memory\n");
  wkt_write_text(dir, "sys/fs/cgroup/memory/memory.limit_in_bytes", "536870912\n");
  wkt_write_text(dir, "sys/fs/cgroup/memory/memory.usage_in_bytes", "629145600\n");
  wkt_write_text(dir, "sys/fs/cgroup/memory/memory.stat",
                 "cache 1\ninactive_file 5\nhierarchical_memory_limit 536870912\n"
                 "total_inactive_file 209715200\n");
  wkt_write_text(dir, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000\n");
  wkt_write_text(dir, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  wk_host_mem m;
  ck_assert(wk_host_mem_read(dir, &m));
  ck_assert(m.by_cgroup);
  ck_assert_uint_eq(m.cg_limit, WKT_MIB(512));
  ck_assert_uint_eq(m.avail, WKT_MIB(512 - (600 - 200)));
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 3);

  /* a cgroup below the container's (systemd inside it, say): found below the mount point */
  wkt_write_text(dir, "proc/self/cgroup", "4:memory:/docker/abc/inner\n3:cpu,cpuacct:/docker/abc\n");
  wkt_write_text(dir, "sys/fs/cgroup/memory/inner/memory.limit_in_bytes", "67108864\n");
  ck_assert(wk_host_mem_read(dir, &m));
  ck_assert_uint_eq(m.cg_limit, WKT_MIB(64)); /* leaves 64 MB (no usage file: 0 used) */
  ck_assert_uint_eq(m.avail, WKT_MIB(64));    /* the container's leaves 112 */

  wkt_write_text(dir, "sys/fs/cgroup/memory/inner/memory.limit_in_bytes", "9223372036854771712\n");
  wkt_write_text(dir, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
  wkt_write_text(dir, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  ck_assert(wk_host_mem_read(dir, &m));
  ck_assert(!m.by_cgroup);
  ck_assert_uint_eq(m.avail, (size_t)20000000 * 1024);
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 0);
  wkt_remove_tree(dir);
}
END_TEST

/* Files that are missing, empty or malformed count as no limit and never
 * crash: no /proc at all, a cgroup file without paths, a mountinfo line cut
 * short, limits that are not numbers, a period of 0, a path that climbs out
 * of the mount. */
START_TEST(test_host_limits_malformed) {
  char dir[] = "/tmp/wk_test_cgbad_XXXXXX";
  ck_assert_ptr_nonnull(mkdtemp(dir));
  wk_host_mem m;
  ck_assert(!wk_host_mem_read(dir, &m)); /* nothing there */
  ck_assert_uint_eq(m.avail, SIZE_MAX);
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 0);

  wkt_write_text(dir, "proc/meminfo", "MemAvailable: lots\n");
  wkt_write_text(dir, "proc/self/cgroup", "garbage\n0:\n::\n0::relative\n");
  wkt_write_text(dir, "proc/self/mountinfo", "30 25 0:26 /\n - cgroup2\n");
  ck_assert(!wk_host_mem_read(dir, &m));
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 0);

  wkt_write_text(dir, "proc/self/cgroup", "0::/../../a\n");
  wkt_write_text(dir, "sys/a/memory.max", "1048576\n"); /* where "../../a" would lead */
  wkt_write_text(dir, "proc/self/mountinfo",
                 "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
  wkt_write_text(dir, "sys/fs/cgroup/memory.max", "-5\n");
  wkt_write_text(dir, "sys/fs/cgroup/cpu.max", "100000 0\n");
  ck_assert(!wk_host_mem_read(dir, &m));
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 0);
  wkt_write_text(dir, "sys/fs/cgroup/memory.max", "12abc\n");
  wkt_write_text(dir, "sys/fs/cgroup/cpu.max", "\n");
  ck_assert(!wk_host_mem_read(dir, &m));
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 0);
  /* the path climbs out of the mount: the mount point's own limits, nothing above */
  wkt_write_text(dir, "sys/fs/cgroup/memory.max", "104857600\n");
  wkt_write_text(dir, "sys/fs/cgroup/cpu.max", "100000 100000\n");
  ck_assert(wk_host_mem_read(dir, &m));
  ck_assert_uint_eq(m.avail, WKT_MIB(100)); /* no memory.current: usage 0 */
  ck_assert_int_eq(wk_cgroup_cpu_quota(dir), 1);
  wkt_remove_tree(dir);
}
END_TEST

/* The live system: whatever its limits, a figure that parses and holds
 * together (this machine's CI has MemAvailable; a quota is optional). */
START_TEST(test_host_limits_live) {
  wk_host_mem m;
  ck_assert(wk_host_mem_read("", &m));
  ck_assert_uint_gt(m.avail, 0);
  ck_assert_uint_le(m.avail, m.sys_avail);
  ck_assert_uint_le(m.avail, m.cg_room);
  const int q = wk_cgroup_cpu_quota("");
  ck_assert_int_ge(q, 0);
  ck_assert_int_ge(wk_cpu_count(), 1);
  if (q > 0) ck_assert_int_le(wk_cpu_count(), q);
}
END_TEST

/* File kinds by their first bytes: each known magic, a safetensors header
 * only with a plausible length before its '{"', and nothing for text, an
 * ONNX protobuf (model.c tells that one apart itself) or too few bytes. */
START_TEST(test_file_kind) {
  static const struct {
    const char *bytes;
    size_t n;
    wk_file_kind_id kind;
    const char *name;
    bool torch_advice;
  } cases[] = {
      {"\xff\xd8\xff\xe0\0\x10JFIF", 10, WK_FILE_JPEG, "a JPEG image", false},
      {"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16, WK_FILE_PNG, "a PNG image", false},
      {"\x89HDF\r\n\x1a\n", 8, WK_FILE_HDF5, "an HDF5 file", false},
      {"\x1f\x8b\x08\0", 4, WK_FILE_GZIP, "a gzip archive", false},
      {"PK\x03\x04\x14\0", 6, WK_FILE_ZIP, "a zip archive", true},
      {"\x80\x02}q\0", 5, WK_FILE_PICKLE, "a Python pickle", true},
      {"\x40\0\0\0\0\0\0\0{\"w\":", 13, WK_FILE_SAFETENSORS, "a whisker model (safetensors)",
       false},
      {"\0\0\0\0\0\0\0\x80{\"w\":", 13, WK_FILE_UNKNOWN, NULL, false}, /* a length of 2^63 */
      {"\x08\x07\x12\x07pytorch", 11, WK_FILE_UNKNOWN, NULL, false},      /* ONNX */
      {"time,x,y\n", 9, WK_FILE_UNKNOWN, NULL, false},
      {"\xff\xd8", 2, WK_FILE_UNKNOWN, NULL, false},
      {"", 0, WK_FILE_UNKNOWN, NULL, false},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const wk_file_kind_id id = wk_file_kind((const unsigned char *)cases[k].bytes, cases[k].n);
    ck_assert_msg(id == cases[k].kind, "case %zu: kind %d, expected %d", k, (int)id,
                  (int)cases[k].kind);
    const char *name = wk_file_kind_name(id), *advice = wk_file_kind_advice(id);
    if (cases[k].name) ck_assert_msg(name && !strcmp(name, cases[k].name), "case %zu: %s", k,
                                     name ? name : "NULL");
    else ck_assert_msg(!name, "case %zu: %s", k, name);
    ck_assert_msg(cases[k].torch_advice ? advice && strstr(advice, "'whisker import'") : !advice,
                  "case %zu: advice %s", k, advice ? advice : "NULL");
  }
  char dir[] = "/tmp/wk_file_kind_XXXXXX", path[64];
  ck_assert_ptr_nonnull(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/photo.model", dir);
  FILE *f = fopen(path, "wb");
  ck_assert_ptr_nonnull(f);
  fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
  fclose(f);
  ck_assert_int_eq(wk_file_kind_at(path), WK_FILE_PNG);
  ck_assert_int_eq(remove(path), 0);
  ck_assert_int_eq(wk_file_kind_at(path), WK_FILE_UNKNOWN);
  wkt_remove_tree(dir);
}
END_TEST

int main(void) {
  Suite *s = suite_create("core");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_status_messages);
  tcase_add_test(tc, test_atomic_write_through_links);
  tcase_add_test(tc, test_atomic_write_refuses_special_files);
  tcase_add_test(tc, test_atomic_write_killed_leaves_nothing);
  tcase_add_test(tc, test_tensor_alloc_and_limits);
  tcase_add_test(tc, test_philox_known_answers);
  tcase_add_test(tc, test_rng_streams);
  tcase_add_test(tc, test_pool_covers_every_index_once);
  tcase_add_test(tc, test_ctx_from_environment);
  tcase_add_test(tc, test_strmap);
  tcase_add_test(tc, test_file_kind);
  tcase_add_test(tc, test_host_limits_cgroup_v2);
  tcase_add_test(tc, test_host_limits_cgroup_v1_container);
  tcase_add_test(tc, test_host_limits_malformed);
  tcase_add_test(tc, test_host_limits_live);
  suite_add_tcase(s, tc);
  return wkt_run_suite(s);
}
