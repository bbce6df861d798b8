/* test_bn_fuse_plan.c - which batchnorms the GPU fuses with their relu
 * (src/cuda/bn_fuse_plan.c, the planning half of cuda_net.c's fused
 * batchnorm; no CUDA in it), on the CPU.
 *
 * Checked: every value's readers and aliases (a flatten shares its input's
 * buffer, an add of a value with itself reads it twice, an input out of order
 * is named); the zoo's groups counted from its structure (resnet18: the stem
 * and 2 per basic block, 17; resnet34: 33; resnet50: the stem and 3 per
 * bottleneck, 49; mobilenetv2: none, its activations are relu6; smallcnn's
 * conv-batchnorm-relu stages), each group's nodes what it says (a relu whose
 * input is the batchnorm, or the add of the batchnorm and z); and the
 * corners: a batchnorm or an add with a second reader, through a flatten too,
 * an add of a batchnorm with itself, relu6, an add of two batchnorms (one
 * fused, the other the addend), a batchnorm whose input is also the addend,
 * and a batchnorm on the input itself.
 *
 * And the memory plans (mem_plan.h): the gradients' steps of backward and
 * their placing (by hand, at random, the zoo's arenas); the values' steps of
 * an inference forward, by hand, and a forward run over the placed values
 * (random graphs and the zoo, fused groups writing their relu's buffer) that
 * catches any value overwritten before its last reader. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/bn_fuse_plan.h"
#include "cuda/mem_plan.h"
#include "nn/net_impl.h"
#include "nn/zoo.h"
#include "test_util.h"

typedef struct wkt_plan {
  int n_nodes, n_groups;
  wk_node *nodes;
  int *alias, *readers;
  wk_bn_fuse_group *groups;
} wkt_plan;

static wkt_plan wkt_plan_net(const wk_net *net) {
  wkt_plan p = {.n_nodes = wk_net_n_nodes(net)};
  ck_assert_int_gt(p.n_nodes, 0); /* every net here is a finalized one, with nodes */
  p.nodes = malloc((size_t)p.n_nodes * sizeof *p.nodes);
  p.alias = malloc((size_t)(p.n_nodes + 1) * sizeof *p.alias);
  p.readers = malloc((size_t)(p.n_nodes + 1) * sizeof *p.readers);
  p.groups = malloc((size_t)p.n_nodes * sizeof *p.groups);
  ck_assert(p.nodes && p.alias && p.readers && p.groups);
  for (int i = 0; i < p.n_nodes; i++) p.nodes[i] = *wk_net_node(net, i);
  ck_assert_int_eq(wk_value_readers(p.nodes, p.n_nodes, p.alias, p.readers), -1);
  p.n_groups = wk_bn_fuse_plan(p.nodes, p.n_nodes, p.readers, p.groups);
  /* every group is what it says */
  for (int k = 0; k < p.n_groups; k++) {
    const wk_bn_fuse_group *g = &p.groups[k];
    const wk_node *r = &p.nodes[g->relu];
    ck_assert(r->op == WK_NODE_ACT && r->act == WK_ACT_RELU);
    ck_assert(p.nodes[g->bn].op == WK_NODE_BATCHNORM);
    ck_assert_int_eq(p.readers[g->bn + 1], 1);
    if (g->add < 0) {
      ck_assert_int_eq(r->in[0], g->bn + 1);
      ck_assert_int_eq(g->z, -1);
    } else {
      const wk_node *a = &p.nodes[g->add];
      ck_assert(a->op == WK_NODE_ADD);
      ck_assert_int_eq(r->in[0], g->add + 1);
      ck_assert_int_eq(p.readers[g->add + 1], 1);
      ck_assert((a->in[0] == g->bn + 1 && a->in[1] == g->z) ||
                (a->in[1] == g->bn + 1 && a->in[0] == g->z));
      ck_assert(g->bn < g->add && g->add < g->relu && g->z < g->relu + 1);
    }
    if (k > 0) ck_assert_int_gt(g->relu, p.groups[k - 1].relu); /* the relus' order */
  }
  return p;
}

static void wkt_plan_free(wkt_plan *p) {
  free(p->nodes);
  free(p->alias);
  free(p->readers);
  free(p->groups);
}

/* A zoo network at 64x64, 5 classes. */
static wk_net *wkt_zoo64(wk_ctx *ctx, const char *arch) {
  wk_arch_opts o = wk_arch_opts_default(5);
  o.in_h = o.in_w = 64;
  wk_net *net = NULL;
  ck_assert_msg(wk_zoo_build(ctx, arch, &o, 1, &net) == WK_OK, "%s: %s", arch, wk_last_error());
  return net;
}

/* The groups of a zoo network, and how many have an add. */
static void wkt_zoo_groups(const char *arch, int want, int want_add) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_zoo64(ctx, arch);
  wkt_plan p = wkt_plan_net(net);
  int adds = 0;
  for (int k = 0; k < p.n_groups; k++) adds += p.groups[k].add >= 0;
  ck_assert_msg(p.n_groups == want && adds == want_add, "%s: %d groups (%d with an add), "
                "expected %d (%d)", arch, p.n_groups, adds, want, want_add);
  wkt_plan_free(&p);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}

START_TEST(test_zoo) {
  wkt_zoo_groups("resnet18", 17, 8);
  wkt_zoo_groups("resnet34", 33, 16);
  wkt_zoo_groups("resnet50", 49, 16);
  wkt_zoo_groups("mobilenetv2", 0, 0);
}
END_TEST

/* smallcnn: its batchnorm + relu stages, counted from its nodes here */
START_TEST(test_smallcnn) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_arch_opts o = wk_arch_opts_default(5);
  o.in_h = o.in_w = 32;
  wk_net *net = NULL;
  ck_assert_int_eq(wk_zoo_build(ctx, "smallcnn", &o, 1, &net), WK_OK);
  int stages = 0;
  for (int i = 1; i < wk_net_n_nodes(net); i++) {
    const wk_node *r = wk_net_node(net, i);
    stages += r->op == WK_NODE_ACT && r->act == WK_ACT_RELU &&
              wk_net_node(net, r->in[0] - 1)->op == WK_NODE_BATCHNORM;
  }
  ck_assert_int_gt(stages, 0);
  wkt_plan p = wkt_plan_net(net);
  ck_assert_int_eq(p.n_groups, stages);
  wkt_plan_free(&p);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

static wk_net *wkt_net(wk_ctx *ctx) {
  wk_net *net = NULL;
  ck_assert_int_eq(wk_net_create(ctx, 8, 8, 4, &net), WK_OK);
  return net;
}

static int wkt_conv(wk_net *net, const char *name, int in) {
  const wk_conv2d_params same = wk_conv2d_params_make(1, 1, 1);
  return wk_net_conv(net, name, in, 4, 3, 3, &same, false);
}

static int wkt_bn(wk_net *net, const char *name, int in) {
  return wk_net_batchnorm(net, name, in, 1e-5f, 0.1f);
}

static wkt_plan wkt_finish(wk_net *net, int out) {
  ck_assert_int_ge(out, 0);
  const int f = wk_net_linear(net, "fc", wk_net_flatten(net, "flat_out",
                                                       wk_net_global_avgpool(net, "gap", out)),
                              3, true);
  ck_assert_int_ge(f, 0);
  ck_assert_msg(wk_net_finalize(net, 1) == WK_OK, "%s", wk_last_error());
  return wkt_plan_net(net);
}

/* Readers and aliases: a flatten's value is its input's buffer, its readers
 * count there; an add of a value with itself reads it twice. */
START_TEST(test_readers) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_net(ctx);
  const int c = wkt_conv(net, "conv", 0);                        /* value 1 */
  const int s = wk_net_add(net, "twice", c, c);                  /* value 2 */
  const int f = wk_net_flatten(net, "flat", s);                  /* value 3: 2's buffer */
  const int y = wk_net_linear(net, "fc", f, 3, true);            /* value 4 */
  ck_assert_int_eq(wk_net_linear(net, "fc2", f, 3, true), y + 1); /* value 5 */
  ck_assert_int_eq(wk_net_finalize(net, 1), WK_OK);
  wkt_plan p = wkt_plan_net(net);
  ck_assert_int_eq(p.readers[0], 1);
  ck_assert_int_eq(p.readers[c], 2);
  ck_assert_int_eq(p.alias[f], s);
  ck_assert_int_eq(p.readers[s], 3); /* the flatten and its two readers */
  ck_assert_int_eq(p.readers[f], 0);
  ck_assert_int_eq(p.n_groups, 0);
  /* an input not made before its reader */
  p.nodes[1].in[1] = 4;
  ck_assert_int_eq(wk_value_readers(p.nodes, p.n_nodes, p.alias, p.readers), 1);
  wkt_plan_free(&p);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* What must not fuse: a relu on the input, a batchnorm read twice
 * (directly, or through a flatten), an add read twice, an add of a batchnorm
 * with itself, relu6. */
START_TEST(test_not_fused) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_net(ctx);
  int b = wkt_bn(net, "bn1", wkt_conv(net, "c1", wk_net_act(net, "relu0", 0, WK_ACT_RELU)));
  int x = wk_net_add(net, "add1", wk_net_act(net, "relu1", b, WK_ACT_RELU), b);
  b = wkt_bn(net, "bn2", wkt_conv(net, "c2", x));
  const int f = wk_net_flatten(net, "flat2", b);
  x = wk_net_act(net, "relu2", b, WK_ACT_RELU);
  (void)wk_net_linear(net, "side", f, 3, false);
  b = wkt_bn(net, "bn3", wkt_conv(net, "c3", x));
  const int a = wk_net_add(net, "add3", b, x);
  x = wk_net_add(net, "add3b", wk_net_act(net, "relu3", a, WK_ACT_RELU), a);
  b = wkt_bn(net, "bn4", wkt_conv(net, "c4", x));
  x = wk_net_act(net, "relu4", wk_net_add(net, "add4", b, b), WK_ACT_RELU);
  x = wk_net_act(net, "relu6", wkt_bn(net, "bn5", wkt_conv(net, "c5", x)), WK_ACT_RELU6);
  wkt_plan p = wkt_finish(net, x);
  ck_assert_int_eq(p.n_groups, 0);
  wkt_plan_free(&p);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

static int wkt_node(const wkt_plan *p, const char *name) {
  for (int i = 0; i < p->n_nodes; i++)
    if (!strcmp(p->nodes[i].name, name)) return i;
  ck_abort_msg("no node %s", name);
  return -1;
}

/* What must: a batchnorm on the input itself; an add of two batchnorms (the
 * first fused, the second the addend); a batchnorm whose input is also the
 * addend (made before the batchnorm); the input itself as the addend, first
 * in the add. */
START_TEST(test_fused) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_net(ctx);
  int x = wk_net_act(net, "relu_in", wkt_bn(net, "bn_in", 0), WK_ACT_RELU);
  const int c = wkt_conv(net, "c1", x);
  const int b1 = wkt_bn(net, "bn1", c), b2 = wkt_bn(net, "bn2", wkt_conv(net, "c2", x));
  x = wk_net_act(net, "relu12", wk_net_add(net, "add12", b1, b2), WK_ACT_RELU);
  const int c3 = wkt_conv(net, "c3", x);
  x = wk_net_act(net, "relu3", wk_net_add(net, "add3", c3, wkt_bn(net, "bn3", c3)), WK_ACT_RELU);
  const int b4 = wkt_bn(net, "bn4", wkt_conv(net, "c4", x));
  x = wk_net_act(net, "relu4", wk_net_add(net, "add4", 0, b4), WK_ACT_RELU);
  wkt_plan p = wkt_finish(net, x);
  ck_assert_int_eq(p.n_groups, 4);
  const wk_bn_fuse_group *g = p.groups;
  ck_assert_int_eq(g[0].bn, wkt_node(&p, "bn_in"));
  ck_assert_int_eq(p.nodes[g[0].bn].in[0], 0);
  ck_assert_int_eq(g[0].add, -1);
  ck_assert_int_eq(g[1].bn, wkt_node(&p, "bn1"));
  ck_assert_int_eq(g[1].add, wkt_node(&p, "add12"));
  ck_assert_int_eq(g[1].z, b2);
  ck_assert_int_eq(g[2].bn, wkt_node(&p, "bn3"));
  ck_assert_int_eq(g[2].z, c3);
  ck_assert_int_eq(p.nodes[g[2].bn].in[0], c3); /* the addend is the batchnorm's input */
  ck_assert_int_eq(g[2].relu, wkt_node(&p, "relu3"));
  ck_assert_int_eq(g[3].bn, wkt_node(&p, "bn4"));
  ck_assert_int_eq(g[3].z, 0);
  wkt_plan_free(&p);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST


/* ---------------------------------------------------------------- gradient buffers (mem_plan.h) */

/* needs_grad as cuda_net.c derives it with everything trainable: every value
 * but the input. */
static bool *wkt_all_need(int n_nodes) {
  bool *need = calloc((size_t)n_nodes + 1, sizeof *need);
  ck_assert_ptr_nonnull(need);
  for (int v = 1; v <= n_nodes; v++) need[v] = true;
  return need;
}

/* The residual stage of test_grad_steps and test_value_steps:
 *   v1 c1(0)  v2 b1(v1)  v3 relu(v2)  v4 c2(v3)  v5 b2(v4)  v6 add(v5, v3)
 *   v7 relu(v6)  v8 gap(v7)  v9 flatten(v8), v8's buffer  v10 fc(v9)
 * with its two groups: relu(b1) at node 2, relu(b2 + v3) at node 6. */
static wkt_plan wkt_residual_stage(wk_ctx *ctx, wk_net **out) {
  wk_net *net = wkt_net(ctx);
  const int r1 = wk_net_act(net, "r1", wkt_bn(net, "b1", wkt_conv(net, "c1", 0)), WK_ACT_RELU);
  const int b2 = wkt_bn(net, "b2", wkt_conv(net, "c2", r1));
  const int r2 = wk_net_act(net, "r2", wk_net_add(net, "add", b2, r1), WK_ACT_RELU);
  ck_assert_int_eq(r2, 7);
  wkt_plan p = wkt_finish(net, r2);
  ck_assert_int_eq(p.n_nodes, 10);
  ck_assert_int_eq(p.n_groups, 2);
  *out = net;
  return p;
}

/* The steps of the residual stage worked out by hand (node i runs at step
 * 10 - i; the output's gradient is written at step 0). Fused, node 6 writes
 * v4's and v3's gradients at step 4, node 2 v1's at step 8; one by one the
 * relus write v6's and v2's, the add v5's and v3's (step 5), b2 v4's (step
 * 6), c2 v3's (step 7), b1 v1's (step 9). */
START_TEST(test_grad_steps) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = NULL;
  wkt_plan p = wkt_residual_stage(ctx, &net);
  bool *need = wkt_all_need(p.n_nodes);
  int first[11], last[11];
  wk_grad_steps(p.nodes, p.n_nodes, p.alias, need, p.groups, p.n_groups, first, last);
  static const int want_first[11] = {-1, 8, 8, 4, 4, 5, 4, 3, 1, -1, 0};
  static const int want_last[11] = {-1, 10, 9, 8, 7, 6, 5, 4, 3, -1, 1};
  for (int v = 0; v <= 10; v++)
    ck_assert_msg(first[v] == want_first[v] && last[v] == want_last[v],
                  "value %d: steps %d to %d, expected %d to %d", v, first[v], last[v],
                  want_first[v], want_last[v]);
  /* without the groups: the relus' batchnorm inputs start at the batchnorms */
  wk_grad_steps(p.nodes, p.n_nodes, p.alias, need, p.groups, 0, first, last);
  ck_assert_int_eq(first[1], 9);
  ck_assert_int_eq(first[4], 6);
  ck_assert_int_eq(first[3], 5);
  /* c1 frozen with nothing upstream trainable: v1..v3 need no buffer */
  need[1] = need[2] = need[3] = false;
  wk_grad_steps(p.nodes, p.n_nodes, p.alias, need, p.groups, p.n_groups, first, last);
  for (int v = 0; v <= 3; v++) ck_assert_int_eq(first[v], -1);
  ck_assert_int_eq(first[4], 4);
  ck_assert_int_eq(last[4], 7);
  free(need);
  wkt_plan_free(&p);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* No two buffers whose steps overlap overlap in memory; every offset aligned
 * and inside the arena; the arena at least the most bytes held at once and at
 * most all of them. Returns the sum of the rounded sizes. */
static size_t wkt_check_placed(int n, const size_t *bytes, const int *first, const int *last,
                               size_t align, const size_t *offset, size_t total, size_t peak) {
  size_t sum = 0;
  for (int a = 0; a < n; a++) {
    if (!bytes[a]) continue;
    const size_t la = (bytes[a] + align - 1) & ~(align - 1);
    sum += la;
    ck_assert_uint_eq(offset[a] % align, 0);
    ck_assert_uint_le(offset[a] + la, total);
    for (int b = a + 1; b < n; b++) {
      if (!bytes[b] || last[a] < first[b] || last[b] < first[a]) continue;
      const size_t lb = (bytes[b] + align - 1) & ~(align - 1);
      ck_assert_msg(offset[a] + la <= offset[b] || offset[b] + lb <= offset[a],
                    "buffers %d [%d, %d] and %d [%d, %d] overlap at %zu and %zu", a, first[a],
                    last[a], b, first[b], last[b], offset[a], offset[b]);
    }
  }
  ck_assert_uint_le(peak, total);
  ck_assert_uint_le(total, sum);
  return sum;
}

/* Random buffers (sizes, steps and gaps of every kind), and the corners. */
START_TEST(test_place_random) {
  uint64_t seed = 0x9e3779b97f4a7c15u;
  enum { N = 300 };
  size_t bytes[N], offset[N];
  int first[N], last[N];
  for (int round = 0; round < 200; round++) {
    const int n = 1 + round % N, steps = 1 + round % 37;
    for (int k = 0; k < n; k++) {
      seed = seed * 6364136223846793005u + 1442695040888963407u;
      const uint32_t r = (uint32_t)(seed >> 33);
      bytes[k] = r % 7 == 0 ? 0 : 1 + r % (round % 2 ? 4096 : 1000000);
      first[k] = (int)((r >> 8) % (uint32_t)steps);
      last[k] = first[k] + (int)((r >> 16) % (uint32_t)(steps - first[k]));
    }
    size_t total, peak;
    const size_t align = (size_t)1 << (round % 9);
    ck_assert_int_eq(wk_place_buffers(n, bytes, first, last, steps, align, offset, &total, &peak),
                     WK_OK);
    (void)wkt_check_placed(n, bytes, first, last, align, offset, total, peak);
  }
  /* disjoint steps share one stretch; nothing is nothing */
  const size_t same[3] = {1000, 1000, 1000};
  const int f3[3] = {0, 2, 4}, l3[3] = {1, 3, 4};
  size_t total, peak;
  ck_assert_int_eq(wk_place_buffers(3, same, f3, l3, 5, 256, offset, &total, &peak), WK_OK);
  ck_assert_uint_eq(total, 1024);
  ck_assert_uint_eq(peak, 1024);
  ck_assert_int_eq(wk_place_buffers(0, same, f3, l3, 5, 256, offset, &total, NULL), WK_OK);
  ck_assert_uint_eq(total, 0);
  /* refused: steps out of range or backwards, an alignment not a power of two */
  const int bad_last[3] = {1, 3, 5};
  ck_assert_int_eq(wk_place_buffers(3, same, f3, bad_last, 5, 256, offset, &total, NULL),
                   WK_ERR_INVALID_ARG);
  const int backwards[3] = {2, 2, 4};
  ck_assert_int_eq(wk_place_buffers(3, same, backwards, l3, 5, 256, offset, &total, NULL),
                   WK_ERR_INVALID_ARG);
  ck_assert_int_eq(wk_place_buffers(3, same, f3, l3, 5, 3, offset, &total, NULL),
                   WK_ERR_INVALID_ARG);
  const size_t huge[2] = {SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 1};
  const int f2[2] = {0, 0}, l2[2] = {0, 0};
  ck_assert_int_eq(wk_place_buffers(2, huge, f2, l2, 1, 256, offset, &total, NULL),
                   WK_ERR_INVALID_ARG);
}
END_TEST

/* A zoo network's gradients at batch 1, 64x64, in float32: the arena the plan
 * makes against every gradient held for the whole step (what cuda_net.c held
 * before), at most `most` of it, and against the most held at one step. */
static void wkt_zoo_arena(const char *arch, double most) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_zoo64(ctx, arch);
  wkt_plan p = wkt_plan_net(net);
  bool *need = wkt_all_need(p.n_nodes);
  const int nv = p.n_nodes + 1;
  int *first = malloc((size_t)nv * sizeof *first), *last = malloc((size_t)nv * sizeof *last);
  size_t *bytes = calloc((size_t)nv, sizeof *bytes), *offset = malloc((size_t)nv * sizeof *offset);
  ck_assert(first && last && bytes && offset);
  wk_grad_steps(p.nodes, p.n_nodes, p.alias, need, p.groups, p.n_groups, first, last);
  size_t total, peak;
  for (int v = 1; v < nv; v++)
    if (first[v] >= 0) bytes[v] = (size_t)wk_net_value_numel(net, v) * sizeof(float);
  for (int v = 1; v < nv; v++) /* every root but the input's has a gradient */
    ck_assert_int_eq(first[v] >= 0, p.alias[v] == v);
  ck_assert_int_eq(wk_place_buffers(nv, bytes, first, last, nv, 256, offset, &total, &peak),
                   WK_OK);
  const size_t sum = wkt_check_placed(nv, bytes, first, last, 256, offset, total, peak);
  printf("%s: gradient arena %zu bytes, most held at once %zu, all %zu (%.1f%%)\n", arch, total,
         peak, sum, 100.0 * (double)total / (double)sum);
  ck_assert_msg((double)total <= most * (double)sum, "%s: the arena is %.1f%% of all", arch,
                100.0 * (double)total / (double)sum);
  ck_assert_msg((double)total <= 1.25 * (double)peak, "%s: the arena is %.2fx the most held",
                arch, (double)total / (double)peak);
  free(first);
  free(last);
  free(bytes);
  free(offset);
  free(need);
  wkt_plan_free(&p);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}

START_TEST(test_zoo_arena) {
  /* measured: 34.1%, 8.5%, 13.7% and 57.7% of all, within 17% of the most held at once */
  wkt_zoo_arena("resnet18", 0.40);
  wkt_zoo_arena("resnet50", 0.12);
  wkt_zoo_arena("mobilenetv2", 0.20);
  wkt_zoo_arena("smallcnn", 0.70);
}
END_TEST

/* ---------------------------------------------------------------- an inference network's values (mem_plan.h) */

/* Buffer roots as cuda_net.c makes them: the alias's, but a group's batchnorm
 * and add write their relu's buffer. */
static int *wkt_vroot(const wkt_plan *p, bool groups) {
  int *root = malloc((size_t)(p->n_nodes + 1) * sizeof *root);
  ck_assert_ptr_nonnull(root);
  memcpy(root, p->alias, (size_t)(p->n_nodes + 1) * sizeof *root);
  for (int k = 0; groups && k < p->n_groups; k++) {
    root[p->groups[k].bn + 1] = p->groups[k].relu + 1;
    if (p->groups[k].add >= 0) root[p->groups[k].add + 1] = p->groups[k].relu + 1;
  }
  return root;
}

/* The forward's steps of the residual stage, by hand (node i at step i), the
 * groups whole at their relus: v0 [0, 0]; v1 [0, 2] (the first group reads
 * it at its relu, 2); v2 and v3 in v3's buffer [2, 6] (the relu writes at 2,
 * the second group reads v3 at its relu, 6); v4 [3, 6]; v5, v6 and v7 in
 * v7's [6, 7]; v8 and the flatten's v9 in v8's [7, 9]; the output v10 [9, 9].
 * Node by node, below: each batchnorm, add and relu a buffer of its own. */
START_TEST(test_value_steps) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = NULL;
  wkt_plan p = wkt_residual_stage(ctx, &net);
  int first[11], last[11];
  int *root = wkt_vroot(&p, true);
  ck_assert_int_eq(wk_value_steps(p.nodes, p.n_nodes, root, p.groups, p.n_groups, first, last),
                   WK_OK);
  static const int want_first[11] = {0, 0, -1, 2, 3, -1, -1, 6, 7, -1, 9};
  static const int want_last[11] = {0, 2, -1, 6, 6, -1, -1, 7, 9, -1, 9};
  for (int v = 0; v <= 10; v++)
    ck_assert_msg(first[v] == want_first[v] && last[v] == want_last[v],
                  "value %d: steps %d to %d, expected %d to %d", v, first[v], last[v],
                  want_first[v], want_last[v]);
  free(root);
  root = wkt_vroot(&p, false);
  ck_assert_int_eq(wk_value_steps(p.nodes, p.n_nodes, root, NULL, 0, first, last), WK_OK);
  static const int plain_first[11] = {0, 0, 1, 2, 3, 4, 5, 6, 7, -1, 9};
  static const int plain_last[11] = {0, 1, 2, 5, 4, 5, 6, 7, 9, -1, 9};
  for (int v = 0; v <= 10; v++)
    ck_assert_msg(first[v] == plain_first[v] && last[v] == plain_last[v],
                  "value %d (no groups): steps %d to %d, expected %d to %d", v, first[v],
                  last[v], plain_first[v], plain_last[v]);
  free(root);
  wkt_plan_free(&p);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}
END_TEST

/* Runs a forward over the placed values in one arena of 32-bit cells: each
 * node checks that its inputs' cells hold their values' marks, then writes
 * its own value's mark over its cells (a flatten writes nothing: its value is
 * its input's), so any value clobbered before its last reader is caught; the
 * output's cells hold its mark at the end. cells[v]: value v's size. With
 * `whole`, each group runs at its relu (reading the batchnorm's input and the
 * addend, writing the relu's value), its batchnorm and add doing nothing.
 * Returns the arena's cells. */
static size_t wkt_run_forward(const wk_node *nodes, int n_nodes, const int *root,
                              const wk_bn_fuse_group *groups, int n_groups, bool whole,
                              const size_t *cells) {
  ck_assert_int_ge(n_nodes, 0);
  const int nv = n_nodes + 1;
  int *first = malloc((size_t)nv * sizeof *first), *last = malloc((size_t)nv * sizeof *last);
  int *mark = malloc((size_t)nv * sizeof *mark);
  size_t *bytes = calloc((size_t)nv, sizeof *bytes), *offset = malloc((size_t)nv * sizeof *offset);
  ck_assert(first && last && mark && bytes && offset);
  ck_assert_int_eq(wk_value_steps(nodes, n_nodes, root, groups, whole ? n_groups : 0, first,
                                  last), WK_OK);
  /* per node, with `whole`: -1 runs as itself, -2 does nothing, k >= 0 runs group k */
  int *as = malloc((size_t)(n_nodes ? n_nodes : 1) * sizeof *as);
  ck_assert_ptr_nonnull(as);
  for (int i = 0; i < n_nodes; i++) as[i] = -1;
  for (int k = 0; whole && k < n_groups; k++) {
    as[groups[k].bn] = -2;
    if (groups[k].add >= 0) as[groups[k].add] = -2;
    as[groups[k].relu] = k;
  }
  for (int v = 0; v < nv; v++) {
    ck_assert_int_eq(first[v] >= 0, root[v] == v); /* every root has steps */
    if (cells[v] * 4 > bytes[root[v]]) bytes[root[v]] = cells[v] * 4;
    mark[v] = v >= 1 && nodes[v - 1].op == WK_NODE_FLATTEN ? mark[nodes[v - 1].in[0]] : v;
  }
  size_t total, peak;
  const int n_steps = n_nodes > 0 ? n_nodes : 1;
  ck_assert_int_eq(wk_place_buffers(nv, bytes, first, last, n_steps, 256, offset, &total, &peak),
                   WK_OK);
  (void)wkt_check_placed(nv, bytes, first, last, 256, offset, total, peak);
  int32_t *arena = malloc(total ? total : 4);
  ck_assert_ptr_nonnull(arena);
  for (size_t c = 0; c < total / 4; c++) arena[c] = -1;
#define WKT_CELLS(v) (arena + offset[root[v]] / 4)
  for (size_t c = 0; c < cells[0]; c++) WKT_CELLS(0)[c] = mark[0];
  for (int i = 0; i < n_nodes; i++) {
    if (as[i] == -2) continue;
    int in[2] = {nodes[i].in[0], nodes[i].in[1]}, n_in = nodes[i].n_in;
    if (as[i] >= 0) { /* the group: x, and z */
      const wk_bn_fuse_group *g = &groups[as[i]];
      in[0] = nodes[g->bn].in[0];
      in[1] = g->z;
      n_in = g->add >= 0 ? 2 : 1;
    }
    if (n_in < 0 || n_in > 2) ck_abort_msg("node %d has %d inputs", i, n_in); /* in[] holds 2 */
    for (int k = 0; k < n_in; k++) {
      const int u = in[k];
      for (size_t c = 0; c < cells[u]; c++) /* (one check per cell costs Check a write) */
        if (WKT_CELLS(u)[c] != mark[u])
          ck_abort_msg("node %d reads value %d: cell %zu holds %d's", i, u, c, WKT_CELLS(u)[c]);
    }
    if (nodes[i].op != WK_NODE_FLATTEN)
      for (size_t c = 0; c < cells[i + 1]; c++) WKT_CELLS(i + 1)[c] = mark[i + 1];
  }
  for (size_t c = 0; c < cells[n_nodes]; c++)
    if (WKT_CELLS(n_nodes)[c] != mark[n_nodes])
      ck_abort_msg("the output's cell %zu holds %d's", c, WKT_CELLS(n_nodes)[c]);
#undef WKT_CELLS
  free(arena);
  free(as);
  free(first);
  free(last);
  free(mark);
  free(bytes);
  free(offset);
  return total / 4;
}

/* Random graphs: one or two inputs from anywhere before (mostly near), some
 * flattens (aliases), sizes of every kind. */
START_TEST(test_value_random) {
  uint64_t seed = 0x2545f4914f6cdd1du;
  enum { N = 120 };
  wk_node nodes[N];
  size_t cells[N + 1];
  int root[N + 1];
  for (int round = 0; round < 300; round++) {
    const int n = round % N;
    memset(nodes, 0, sizeof nodes);
    for (int v = 0; v <= n; v++) {
      seed = seed * 6364136223846793005u + 1442695040888963407u;
      const uint32_t r = (uint32_t)(seed >> 33);
      cells[v] = r % 5 == 0 ? 1 + r % 7 : 1 + r % 3000;
      root[v] = v;
      if (v == 0) continue;
      wk_node *nd = &nodes[v - 1];
      const uint32_t far = (r >> 12) % 4 == 0 ? (uint32_t)v : (uint32_t)(v < 3 ? v : 3);
      nd->n_in = (r >> 14) % 3 == 0 ? 2 : 1;
      nd->in[0] = v - 1 - (int)((r >> 16) % far);
      nd->in[1] = v - 1 - (int)((r >> 20) % (uint32_t)v);
      nd->op = nd->n_in == 2 ? WK_NODE_ADD : (r >> 24) % 6 == 0 ? WK_NODE_FLATTEN : WK_NODE_ACT;
      if (nd->op == WK_NODE_FLATTEN) {
        root[v] = root[nd->in[0]];
        cells[v] = cells[nd->in[0]];
      }
    }
    (void)wkt_run_forward(nodes, n, root, NULL, 0, false, cells);
  }
}
END_TEST

/* A zoo network's values at batch 1, 64x64: the forward over the plan, with
 * the fused groups' batchnorms and adds in their relus' buffers (the groups
 * run node by node, and whole at their relus), and the
 * arena against every value held (what cuda_net.c held before), at most
 * `most` of it. */
static void wkt_zoo_values(const char *arch, double most) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_net *net = wkt_zoo64(ctx, arch);
  wkt_plan p = wkt_plan_net(net);
  int *root = wkt_vroot(&p, true);
  const int nv = p.n_nodes + 1;
  size_t *cells = malloc((size_t)nv * sizeof *cells), all = 0;
  ck_assert_ptr_nonnull(cells);
  for (int v = 0; v < nv; v++) {
    cells[v] = (size_t)wk_net_value_numel(net, v);
    if (root[v] == v) all += (cells[v] * 4 + 255) / 256 * 64; /* in cells, rounded as placed */
  }
  for (int whole = 0; whole < 2; whole++) {
    const size_t total = wkt_run_forward(p.nodes, p.n_nodes, root, p.groups, p.n_groups, whole,
                                         cells);
    printf("%s: inference value arena (groups %s) %zu cells, every value held %zu (%.1f%%)\n",
           arch, whole ? "whole" : "node by node", total, all,
           100.0 * (double)total / (double)all);
    ck_assert_msg((double)total <= most * (double)all, "%s: the arena (groups %s) is %.1f%% of "
                  "all", arch, whole ? "whole" : "node by node",
                  100.0 * (double)total / (double)all);
  }
  free(cells);
  free(root);
  wkt_plan_free(&p);
  wk_net_destroy(net);
  wk_ctx_destroy(ctx);
}

START_TEST(test_zoo_values) {
  /* measured: 30.1%, 13.3%, 14.1% and 48.4% of every value held */
  wkt_zoo_values("resnet18", 0.35);
  wkt_zoo_values("resnet50", 0.16);
  wkt_zoo_values("mobilenetv2", 0.17);
  wkt_zoo_values("smallcnn", 0.55);
}
END_TEST

int main(void) {
  Suite *s = suite_create("bn_fuse_plan");
  TCase *tc = tcase_create("plan");
  /* test_zoo builds every zoo network: 2.2 s under ASan, near Check's 4 s default beside
   * another suite at ctest -j2 */
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_zoo);
  tcase_add_test(tc, test_smallcnn);
  tcase_add_test(tc, test_readers);
  tcase_add_test(tc, test_not_fused);
  tcase_add_test(tc, test_fused);
  tcase_add_test(tc, test_grad_steps);
  tcase_add_test(tc, test_place_random);
  tcase_add_test(tc, test_zoo_arena);
  tcase_add_test(tc, test_value_steps);
  tcase_add_test(tc, test_value_random);
  tcase_add_test(tc, test_zoo_values);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  const int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
