/* mem_plan.h - where a GPU network's value gradients live (cuda_net.c):
 * which steps of backward each must hold its contents in, and where in one
 * arena each goes, so that gradients whose steps do not overlap share memory.
 *
 * Steps: backward writes the loss's gradient into the output value's at step
 * 0 and runs node i at step n_nodes - i. A gradient buffer (one per alias
 * root, bn_fuse_plan.h; only where a value needs a gradient) holds from the
 * first step that touches it to the last one: a node's backward reads its
 * output's gradient and writes (or adds into) its inputs'. A fused group
 * (bn_fuse_plan.h) runs either fused at its relu or, should cuDNN refuse it
 * (even part-way through a step), node by node: a gradient's steps are those
 * of both walks together, so either, and any mix, stays inside them.
 *
 * Placing: the buffers are taken in the order of their first step and handed
 * the best-fitting free stretch of the arena (the arena grows where none
 * fits); a buffer goes back to the free stretches after its last step. The
 * work is linear in the buffers times the free stretches, which stay few on
 * the networks' chains.
 *
 * The values themselves, for a forward-only network, are placed the same
 * way by the forward's steps (wk_value_steps); training keeps every value
 * for backward.
 *
 * No CUDA in it: tested on the CPU (tests/test_bn_fuse_plan.c). */
#ifndef WK_MEM_PLAN_H
#define WK_MEM_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "cuda/bn_fuse_plan.h"

/* first[v] and last[v] (n_nodes + 1 long): the steps of value v's gradient
 * buffer, at alias roots that need a gradient; -1 for both elsewhere. alias as
 * wk_value_readers makes it; needs_grad per value (something trainable
 * upstream); groups as wk_bn_fuse_plan gives them (batchnorms fused alone
 * need none here: they touch what the plain batchnorm does). */
void wk_grad_steps(const wk_node *nodes, int n_nodes, const int *alias, const bool *needs_grad,
                   const wk_bn_fuse_group *groups, int n_groups, int *first, int *last);

/* The forward's steps, for a network that only runs inference: node i runs
 * at step i (n_nodes steps, at least 1), reading its inputs and writing its
 * output. first[r] and last[r] (n_nodes + 1 long) at each buffer root r (a
 * value v's is root[v]: its alias's, or a fused group's relu's, whose buffer
 * the group's batchnorm and add write in place): from the first step that
 * writes a value in it (the input's: 0) to the last that reads one; the
 * output's root holds to the last step (its caller reads it after). The
 * groups given (groups, n_groups: as wk_grad_steps takes them; none: the
 * nodes one by one) run whole at their relu, reading the batchnorm's input
 * and the addend there and writing the relu's value, their batchnorm and add
 * doing nothing. -1 for both at values that are no root. WK_ERR_NOMEM. */
wk_status wk_value_steps(const wk_node *nodes, int n_nodes, const int *root,
                         const wk_bn_fuse_group *groups, int n_groups, int *first, int *last);

/* Places n buffers of bytes[k] (0: none; rounded up to a multiple of align, a
 * power of two) with steps [first[k], last[k]] (0 <= first <= last < n_steps
 * where bytes[k] > 0) in one arena: offset[k] a multiple of align, and two
 * buffers whose steps overlap never overlap in memory. *total: the arena's
 * bytes. *peak_live (may be NULL): the most bytes held at one step, which no
 * placing can go under. WK_ERR_NOMEM, or WK_ERR_INVALID_ARG for steps out of
 * range or sizes whose sum overflows. */
wk_status wk_place_buffers(int n, const size_t *bytes, const int *first, const int *last,
                           int n_steps, size_t align, size_t *offset, size_t *total,
                           size_t *peak_live);

#endif
