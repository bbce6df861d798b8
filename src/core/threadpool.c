/* threadpool.c - workers sleep on a condition variable and wake for each job
 * generation; the caller runs chunk 0 itself and then waits for the rest. */
#include "core/threadpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct wk_pool {
  int n_threads;
  pthread_t *workers;
  pthread_mutex_t call_mu; /* one parallel_for at a time per pool */
  pthread_mutex_t mu;
  pthread_cond_t wake;
  pthread_cond_t done;
  /* the current job, valid while pending > 0 */
  wk_range_fn body;
  void *arg;
  int64_t n, chunk;
  int n_chunks;
  int next_chunk;
  int pending;
  uint64_t generation;
  bool stop;
};

static _Thread_local bool wk_in_pool_worker;

static void wk_pool_run_chunk(wk_pool *p, int c) {
  int64_t begin = (int64_t)c * p->chunk;
  int64_t end = begin + p->chunk;
  if (end > p->n) end = p->n;
  if (begin < end) p->body(p->arg, begin, end);
}

static void *wk_pool_worker(void *arg) {
  wk_pool *p = arg;
  wk_in_pool_worker = true;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && (p->generation == seen || p->next_chunk >= p->n_chunks))
      pthread_cond_wait(&p->wake, &p->mu);
    if (p->stop) break;
    seen = p->generation;
    while (p->next_chunk < p->n_chunks) {
      int c = p->next_chunk++;
      pthread_mutex_unlock(&p->mu);
      wk_pool_run_chunk(p, c);
      pthread_mutex_lock(&p->mu);
      if (--p->pending == 0) pthread_cond_broadcast(&p->done);
    }
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

wk_status wk_pool_create(wk_pool **out, int n_threads) {
  *out = NULL;
  if (n_threads < 1 || n_threads > 1024)
    return wk_fail(WK_ERR_INVALID_ARG, "thread pool: %d threads (1..1024)", n_threads);
  wk_pool *p = calloc(1, sizeof *p);
  if (!p) return wk_fail(WK_ERR_NOMEM, "thread pool: out of memory");
  p->n_threads = n_threads;
  pthread_mutex_init(&p->call_mu, NULL);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  if (n_threads > 1) {
    p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
    if (!p->workers) {
      wk_pool_destroy(p);
      return wk_fail(WK_ERR_NOMEM, "thread pool: out of memory");
    }
    for (int i = 0; i < n_threads - 1; i++) {
      if (pthread_create(&p->workers[i], NULL, wk_pool_worker, p) != 0) {
        p->n_threads = i + 1; /* only i workers exist: join those */
        wk_pool_destroy(p);
        return wk_fail(WK_ERR_BACKEND, "thread pool: cannot start thread %d", i + 1);
      }
    }
  }
  *out = p;
  return WK_OK;
}

void wk_pool_destroy(wk_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  if (p->workers)
    for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->workers[i], NULL);
  free(p->workers);
  pthread_mutex_destroy(&p->call_mu);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  free(p);
}

int wk_pool_size(const wk_pool *p) { return p ? p->n_threads : 1; }

void wk_pool_parallel_for(wk_pool *p, int64_t n, int64_t grain, wk_range_fn body, void *arg) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t max_chunks = (n + grain - 1) / grain;
  int n_chunks = p ? p->n_threads : 1;
  if (max_chunks < n_chunks) n_chunks = (int)max_chunks;
  if (!p || n_chunks <= 1 || wk_in_pool_worker) {
    body(arg, 0, n);
    return;
  }
  pthread_mutex_lock(&p->call_mu);
  pthread_mutex_lock(&p->mu);
  p->body = body;
  p->arg = arg;
  p->n = n;
  p->chunk = (n + n_chunks - 1) / n_chunks;
  p->n_chunks = n_chunks;
  p->next_chunk = 1; /* chunk 0 is the caller's */
  p->pending = n_chunks - 1;
  p->generation++;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);

  wk_in_pool_worker = true;
  wk_pool_run_chunk(p, 0);
  wk_in_pool_worker = false;

  pthread_mutex_lock(&p->mu);
  while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
  pthread_mutex_unlock(&p->call_mu);
}
