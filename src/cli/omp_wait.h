/* omp_wait.h - OpenMP's idle threads spin briefly, then sleep (omp_wait.c). */
#ifndef WK_OMP_WAIT_H
#define WK_OMP_WAIT_H

/* libgomp's spin count whisker's programs set when the user set neither
 * OMP_WAIT_POLICY nor GOMP_SPINCOUNT (libgomp's own default: 300000). */
#define WK_GOMP_SPINCOUNT "3000"

/* "GOMP_SPINCOUNT=..." when this process set it before libgomp started, NULL
 * when the user's environment decided (or setting it failed). */
__attribute__((visibility("default"))) const char *wk_omp_wait_policy(void);

#endif
