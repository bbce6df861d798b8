/* optim_impl.h - the inside of wk_optim, shared by optim.c (configuration and
 * state) and optim_step.c (the update). Not part of the public interface. */
#ifndef WK_TRAIN_OPTIM_IMPL_H
#define WK_TRAIN_OPTIM_IMPL_H

#include "train/arena.h"
#include "train/optim.h"

#define WK_OPTIM_MAX_STATE 2

/* The float factors of one parameter's update at one step, derived in double
 * from the configuration, lr and lr_scale before the element loop. */
typedef struct wk_optim_coef {
  bool active; /* not frozen this step */
  bool first;  /* SGD: first update, the momentum buffer starts as d */
  float neg_lr, wd, momentum;                   /* SGD */
  float decay, b1, c1, b2, c2, bc2_sqrt, eps, neg_step; /* AdamW */
} wk_optim_coef;

struct wk_optim {
  wk_optim_config cfg;
  const wk_param *params; /* borrowed, see wk_optim_create */
  size_t n_params, n_elems;
  size_t *layout;         /* (n_params, 2): offset and numel at creation, to catch changes */
  int64_t *steps;         /* (n_params) updates received */
  size_t n_state;
  const char *state_names[WK_OPTIM_MAX_STATE];
  float *state[WK_OPTIM_MAX_STATE]; /* (n_elems) each */
  wk_arena_chunk *chunks; /* every parameter, frozen ones too; frozen-ness is read per step */
  size_t n_chunks;
  wk_optim_coef *coef;    /* (n_params) scratch for one step */
};

#endif
