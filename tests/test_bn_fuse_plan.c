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
 * and a batchnorm on the input itself. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/bn_fuse_plan.h"
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

/* The groups of a zoo network, and how many have an add. */
static void wkt_zoo_groups(const char *arch, int want, int want_add) {
  wk_ctx *ctx = wkt_ctx(WK_IMPL_CPU, 1);
  wk_arch_opts o = wk_arch_opts_default(5);
  o.in_h = o.in_w = 64;
  wk_net *net = NULL;
  ck_assert_msg(wk_zoo_build(ctx, arch, &o, 1, &net) == WK_OK, "%s: %s", arch, wk_last_error());
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
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  const int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
