/* bn_fuse_plan.h - who reads each value of a network's graph, and which
 * batchnorms the GPU runs fused with their relu (cuda_net.c; cuda.h's
 * $WHISKER_BN_FUSE).
 *
 * Values: 0 is the input, i + 1 node i's output. A flatten shares its input's
 * buffer (its value is an alias of it); everything is counted at the alias's
 * root. A group is relu(bn(x)), where the batchnorm's output has no other
 * reader, or relu(bn(x) + z), where neither the batchnorm's output nor the
 * add's has another reader (z may be anything else, x itself included): the
 * fused kernel never writes those outputs, so nothing may want them.
 *
 * No CUDA in it: tested on the CPU (tests/test_bn_fuse_plan.c). */
#ifndef WK_BN_FUSE_PLAN_H
#define WK_BN_FUSE_PLAN_H

#include "nn/net.h"

/* alias[v]: the value whose buffer v uses; readers[v] (alias roots; 0
 * elsewhere): the node inputs reading it. Both n_nodes + 1 long. Returns -1,
 * or the first node reading a value not made before it (then the arrays are
 * partial). */
int wk_value_readers(const wk_node *nodes, int n_nodes, int *alias, int *readers);

typedef struct wk_bn_fuse_group {
  int relu, bn; /* nodes */
  int add;      /* the add node, or -1 for relu(bn(x)) */
  int z;        /* the add's other input (a value), or -1 */
} wk_bn_fuse_group;

/* The groups, in the relus' order, into groups (n_nodes long at most);
 * returns how many. readers as wk_value_readers counts them. */
int wk_bn_fuse_plan(const wk_node *nodes, int n_nodes, const int *readers,
                    wk_bn_fuse_group *groups);

#endif
