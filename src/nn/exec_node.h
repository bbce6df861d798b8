/* exec_node.h - per-node execution, shared by exec.c (the walk over the graph),
 * exec_node.c (each op) and exec_plan.c (the fast-path plans and fusions). */
#ifndef WK_EXEC_NODE_H
#define WK_EXEC_NODE_H

#include "nn/net_impl.h"
#include "ops/plan.h"

wk_status wk_node_forward(wk_net *net, int i, bool train);
/* *kept: the node handed its output gradient buffer on to an input. */
wk_status wk_node_backward(wk_net *net, int i, bool *kept);
void wk_node_state_free(wk_net *net, int i);
void wk_node_plan_free(wk_node_state *st);

/* Conv and batchnorm through plans when the fast path has them, else the
 * stateless ops. */
wk_status wk_node_conv_forward(wk_net *net, int i, bool train, const wk_tensor *x,
                               const wk_tensor *w, const wk_tensor *b, wk_tensor *y);
wk_status wk_node_conv_backward(wk_net *net, int i, const wk_tensor *x, const wk_tensor *w,
                                const wk_tensor *dy, wk_tensor *dx, wk_tensor *dw,
                                wk_tensor *db);
wk_status wk_node_bn_forward_train(wk_net *net, int i, const wk_tensor *x, wk_tensor *y);
wk_status wk_node_bn_backward(wk_net *net, int i, const wk_tensor *x, const wk_tensor *dy,
                              float *dx);
/* Activation node k as a fused post-activation; NONE for k < 0 (no node). */
static inline wk_post_act wk_act_post(const wk_net *net, int k) {
  if (k < 0) return WK_POST_NONE;
  return net->nodes[k].act == WK_ACT_RELU ? WK_POST_RELU : WK_POST_RELU6;
}
/* The activation fused into batchnorm i in training (net->bn_relu). */
static inline wk_post_act wk_bn_post(const wk_net *net, int i) {
  return wk_act_post(net, net->bn_relu[i]);
}
/* Synchronised batchnorm (exec_syncbn.c). */
wk_status wk_node_bn_forward_sync(wk_net *net, int i, const wk_tensor *x, wk_tensor *y);
wk_status wk_node_bn_backward_sync(wk_net *net, int i, const wk_tensor *x, const wk_tensor *dy,
                                   float *dx);
/* Max/avg pooling through plans on the fast path (*done false: the caller
 * runs the stateless op). */
wk_status wk_node_pool_forward(wk_net *net, int i, bool train, const wk_tensor *x, wk_tensor *y,
                               bool *done);
wk_status wk_node_pool_backward(wk_net *net, int i, const wk_tensor *dy, wk_tensor *dx,
                                bool *done);
/* Finds the fusions of the fast path (called once at finalize). */
wk_status wk_net_plan_fusions(wk_net *net);

/* Gradient plumbing (exec.c). */
wk_status wk_grad_dest(wk_net *net, int in, float **dst);
void wk_grad_commit(wk_net *net, int in, float *dst);
bool wk_grad_pass(wk_net *net, int in, float *g);

#endif
