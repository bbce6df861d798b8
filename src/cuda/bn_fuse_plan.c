/* bn_fuse_plan.c - see bn_fuse_plan.h. */
#include "cuda/bn_fuse_plan.h"

int wk_value_readers(const wk_node *nodes, int n_nodes, int *alias, int *readers) {
  for (int v = 0; v <= n_nodes; v++) {
    alias[v] = v;
    readers[v] = 0;
  }
  for (int i = 0; i < n_nodes; i++) {
    const wk_node *n = &nodes[i];
    const int v = i + 1;
    for (int k = 0; k < n->n_in; k++) {
      if (n->in[k] < 0 || n->in[k] >= v) return i;
      readers[alias[n->in[k]]]++;
    }
    if (n->op == WK_NODE_FLATTEN) alias[v] = alias[n->in[0]];
  }
  return -1;
}

/* Whether value u is made by a node of kind op (a batchnorm or an add: never
 * an alias) and read once. */
static bool wk_lone(const wk_node *nodes, const int *readers, int u, wk_node_op op) {
  return u >= 1 && nodes[u - 1].op == op && readers[u] == 1;
}

int wk_bn_fuse_plan(const wk_node *nodes, int n_nodes, const int *readers,
                    wk_bn_fuse_group *groups) {
  int n = 0;
  for (int j = 0; j < n_nodes; j++) {
    const wk_node *r = &nodes[j];
    if (r->op != WK_NODE_ACT || r->act != WK_ACT_RELU) continue;
    const int u = r->in[0];
    wk_bn_fuse_group g = {.relu = j, .bn = -1, .add = -1, .z = -1};
    if (wk_lone(nodes, readers, u, WK_NODE_BATCHNORM)) {
      g.bn = u - 1;
    } else if (wk_lone(nodes, readers, u, WK_NODE_ADD)) {
      const wk_node *a = &nodes[u - 1];
      for (int k = 0; k < 2 && g.bn < 0; k++)
        if (wk_lone(nodes, readers, a->in[k], WK_NODE_BATCHNORM)) {
          g.bn = a->in[k] - 1;
          g.add = u - 1;
          g.z = a->in[1 - k];
        }
    }
    if (g.bn >= 0) groups[n++] = g;
  }
  return n;
}
