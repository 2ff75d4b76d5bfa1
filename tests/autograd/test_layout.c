/* The channel-blocked layout (lib/tensor.h, docs/conv.md "Layouts"), float build:
 *  - each layout-aware op (batchnorm, batchnorm_silu, add, concat, upsample2x, reshape,
 *    to_plain) forward and backward on blocked inputs (block 8 and 16) against the same op on
 *    the plain inputs, the blocked results reordered to plain here by hand;
 *  - oneDNN convolutions taking and giving the blocked layout against plain ones, and a
 *    ConvBlock chain on the oneDNN engine (blocked between layers) against the im2col engine
 *    (plain throughout);
 *  - the eval ConvBlock (BatchNorm folded into a oneDNN convolution with a SiLU post-op)
 *    against the unfused eval ops, and after the parameters change;
 *  - the 5x5 Winograd kernel (autograd/conv_wino5.h), every instruction-set variant the CPU
 *    runs and both block sizes, forward and backward data against double-precision loops
 *    written from the definition, its results independent of the batch and the thread count,
 *    and a chain of 5x5 ConvBlocks through the ops with it against oneDNN's direct kernels.
 *  - synchronised BatchNorm (a reducer set) on one process against the unsynchronised op, bit
 *    for bit, plain and blocked.
 * The refusal of a blocked input by the other ops is tested by tests/autograd/shape_abort.c. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/conv_engine.h"
#include "autograd/conv_onednn.h"
#include "autograd/conv_wino5.h"
#include "autograd/ops.h"

#include "tests/bl_check.h"

/* ---- helpers ---- */

#include "rand_tensor.h"

/* index of element (b, c, s) of a (B, C, S) tensor in layout v (0 plain, else the block) */
static int64_t at(int64_t v, int64_t C, int64_t S, int64_t b, int64_t c, int64_t s)
{
    if (!v) return (b * C + c) * S + s;
    return ((b * (C / v) + c / v) * S + s) * v + c % v;
}

/* p (layout v, shape of t) into plain order, written here from the definition */
static void unblock(const bl_tensor *t, int64_t v, const bl_real *p, bl_real *out)
{
    const int64_t B = t->shape[0], C = t->shape[1], S = t->numel / (B * C);
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < S; s++) out[(b * C + c) * S + s] = p[at(v, C, S, b, c, s)];
}

/* a leaf copy of plain t in layout v */
static bl_tensor *as_layout(bl_ctx *ctx, const bl_tensor *t, int v)
{
    bl_tensor *o = bl_new_like(ctx, t);
    const int64_t B = t->shape[0], C = t->shape[1], S = t->numel / (B * C);
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t s = 0; s < S; s++) o->data[at(v, C, S, b, c, s)] = t->data[(b * C + c) * S + s];
    o->layout = v;
    o->requires_grad = t->requires_grad;
    return o;
}

/* L = sum(y * g) for plain y */
static void dot_loss_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *y = node->in[0];
    const bl_real *g = node->saved;
    bl_real *dy = bl_grad(ctx, y);
    for (int64_t i = 0; i < y->numel; i++) dy[i] += node->out->grad[0] * g[i];
}

static bl_tensor *dot_loss(bl_ctx *ctx, bl_tensor *y, const bl_real *g)
{
    double s = 0;
    for (int64_t i = 0; i < y->numel; i++) s += (double)y->data[i] * g[i];
    bl_tensor *l = bl_full(ctx, 0, NULL, (bl_real)s);
    bl_node *node = bl_tape_push(ctx, "dot_loss", dot_loss_backward, l, 1, &y,
                                 (size_t)y->numel * sizeof(bl_real));
    if (node) memcpy(node->saved, g, (size_t)y->numel * sizeof(bl_real));
    return l;
}

/* max |a - b| / (|b| + max |b|) <= rtol */
static void assert_close(const char *what, const bl_real *a, const bl_real *b, int64_t n, double rtol)
{
    double scale = 0, worst = 0;
    int64_t iw = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)b[i]));
    ck_assert_msg(scale > 0, "%s: reference is all zeros", what);
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + scale);
        if (!(e <= worst)) {
            worst = isnan(e) ? INFINITY : e;
            iw = i;
        }
    }
    ck_assert_msg(worst <= rtol, "%s: element %lld is %.9g, expected %.9g (rel err %.3g > %.3g)",
                  what, (long long)iw, (double)a[iw], (double)b[iw], worst, rtol);
}

/* ---- each layout-aware op, blocked against plain ---- */

enum { OP_BN_SILU_TRAIN, OP_BN_SILU_EVAL, OP_BN_TRAIN, OP_BN_EVAL, OP_ADD, OP_CONCAT,
       OP_UPSAMPLE, OP_RESHAPE, OP_CHAIN, OP_ADD_MIXED, OP_CONCAT_MIXED, N_OPS };
static const char *op_names[N_OPS] = {"bn_silu train", "bn_silu eval", "bn train", "bn eval",
                                      "add", "concat", "upsample2x", "reshape", "chain",
                                      "add blocked + plain", "concat blocked, plain"};

typedef struct op_result {
    bl_real *y, *dx1, *dx2, *dw, *db, *rm, *rv;
    int64_t ny, nx1, nx2, nc;
} op_result;

static bl_real *dup(const bl_real *p, int64_t n)
{
    bl_real *c = bl_malloc((size_t)n * sizeof *c);
    memcpy(c, p, (size_t)n * sizeof *c);
    return c;
}

static void op_result_free(op_result *r)
{
    free(r->y), free(r->dx1), free(r->dx2), free(r->dw), free(r->db), free(r->rm), free(r->rv);
}

/* op `op` on inputs in layout v (0 plain); the output is brought to plain with bl_to_plain
 * (its backward is part of what is tested), gradients of the inputs unblocked by hand */
static op_result run_op(int op, int v)
{
    bl_ctx *ctx = bl_ctx_alloc(0);
    lcg_state = 1234 + (uint64_t)op;
    const int64_t B = 2, C = 32, H = 5, W = 6;
    bl_tensor *p1 = rand_tensor(ctx, 4, BL_SHAPE(B, C, H, W), 2, 0.5, 1);
    bl_tensor *p2 = rand_tensor(ctx, 4, BL_SHAPE(B, C, H, W), 1, -0.3, 1);
    bl_tensor *bw = bl_tensor_alloc("w", 1, BL_SHAPE(2 * C), 1);
    bl_tensor *bb = bl_tensor_alloc("b", 1, BL_SHAPE(2 * C), 1);
    bl_tensor *rm = bl_tensor_alloc("rm", 1, BL_SHAPE(2 * C), 0);
    bl_tensor *rv = bl_tensor_alloc("rv", 1, BL_SHAPE(2 * C), 0);
    for (int64_t c = 0; c < 2 * C; c++) {
        bw->data[c] = (bl_real)(1 + 0.5 * urand());
        bb->data[c] = (bl_real)(0.3 * urand());
        rm->data[c] = (bl_real)(0.2 * urand());
        rv->data[c] = (bl_real)(1 + 0.5 * urand());
    }
    /* the mixed cases keep x2 plain: the result is plain */
    const int mixed = op == OP_ADD_MIXED || op == OP_CONCAT_MIXED;
    bl_tensor *x1 = v ? as_layout(ctx, p1, v) : p1, *x2 = v && !mixed ? as_layout(ctx, p2, v) : p2;
    bl_tensor *y = NULL;
    switch (op) {
    case OP_BN_SILU_TRAIN:
    case OP_BN_SILU_EVAL:
        y = bl_reshape(ctx, bl_concat(ctx, 2, (bl_tensor *[]){x1, x2}, 1), 5,
                       BL_SHAPE(B, 2 * C, 1, H, W));
        y = bl_batchnorm_silu(ctx, y, bw, bb, rm, rv, 0.1, 1e-3, op == OP_BN_SILU_TRAIN);
        break;
    case OP_BN_TRAIN:
    case OP_BN_EVAL:
        y = bl_batchnorm(ctx, bl_concat(ctx, 2, (bl_tensor *[]){x1, x2}, 1), bw, bb, rm, rv, 0.1,
                         1e-5, op == OP_BN_TRAIN);
        break;
    case OP_ADD: y = bl_add(ctx, x1, x2); break;
    case OP_CONCAT: y = bl_concat(ctx, 3, (bl_tensor *[]){x2, x1, x2}, 1); break;
    case OP_UPSAMPLE: y = bl_upsample2x(ctx, x1); break;
    case OP_RESHAPE: y = bl_reshape(ctx, x1, 3, BL_SHAPE(B, C, H * W)); break;
    case OP_ADD_MIXED: y = bl_add(ctx, x1, x2); break;
    case OP_CONCAT_MIXED: y = bl_concat(ctx, 3, (bl_tensor *[]){x2, x1, x2}, 1); break;
    default: /* the encoder's pattern: concat -> bn_silu -> add -> upsample -> bn */
        y = bl_batchnorm_silu(ctx, bl_concat(ctx, 2, (bl_tensor *[]){x1, x2}, 1), bw, bb, rm, rv,
                              0.1, 1e-3, 1);
        y = bl_add(ctx, y, bl_concat(ctx, 2, (bl_tensor *[]){x2, x1}, 1));
        y = bl_upsample2x(ctx, y);
        y = bl_batchnorm(ctx, y, bw, bb, NULL, NULL, 0.1, 1e-3, 1);
        break;
    }
    ck_assert_int_eq(y->layout, mixed ? BL_LAYOUT_PLAIN : v);
    bl_tensor *yp = bl_to_plain(ctx, y);
    ck_assert_int_eq(yp->layout, BL_LAYOUT_PLAIN);
    ck_assert(y->layout || yp == y); /* plain: no copy */
    bl_tensor *g = rand_tensor(ctx, yp->ndim, yp->shape, 1, 0, 0);
    bl_backward(ctx, dot_loss(ctx, yp, g->data));
    op_result r = {.ny = yp->numel, .nx1 = x1->numel, .nx2 = x2->numel, .nc = 2 * C};
    r.y = dup(yp->data, yp->numel);
    r.dx1 = bl_malloc((size_t)x1->numel * sizeof(bl_real));
    r.dx2 = bl_malloc((size_t)x2->numel * sizeof(bl_real));
    if (x1->grad) unblock(x1, v, x1->grad, r.dx1); else memset(r.dx1, 0, (size_t)x1->numel * sizeof(bl_real));
    if (x2->grad) unblock(x2, x2->layout, x2->grad, r.dx2); else memset(r.dx2, 0, (size_t)x2->numel * sizeof(bl_real));
    r.dw = dup(bw->grad, 2 * C);
    r.db = dup(bb->grad, 2 * C);
    r.rm = dup(rm->data, 2 * C);
    r.rv = dup(rv->data, 2 * C);
    bl_tensor_free(bw), bl_tensor_free(bb), bl_tensor_free(rm), bl_tensor_free(rv);
    bl_ctx_free(ctx);
    return r;
}

START_TEST(test_layout_op_blocked_vs_plain)
{
    const int op = _i % N_OPS, v = _i < N_OPS ? 8 : 16;
    op_result a = run_op(op, 0), b = run_op(op, v);
    char what[128];
#define CMP(field, n)                                                                          \
    do {                                                                                       \
        snprintf(what, sizeof what, "%s block %d: " #field, op_names[op], v);                  \
        assert_close(what, b.field, a.field, a.n, 2e-6);                                       \
    } while (0)
    CMP(y, ny);
    CMP(dx1, nx1);
    if (op != OP_UPSAMPLE && op != OP_RESHAPE) CMP(dx2, nx2);
    if (op <= OP_BN_EVAL || op == OP_CHAIN) {
        CMP(dw, nc);
        CMP(db, nc);
    }
    if (op == OP_BN_SILU_TRAIN || op == OP_BN_TRAIN) {
        CMP(rm, nc);
        CMP(rv, nc);
    }
#undef CMP
    op_result_free(&a);
    op_result_free(&b);
}
END_TEST

/* to_plain: the reorder written from the definition, and its backward */
START_TEST(test_layout_to_plain_by_hand)
{
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = bl_new(ctx, 4, BL_SHAPE(2, 16, 1, 3));
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = (bl_real)i; /* blocked order */
    x->layout = 8;
    x->requires_grad = 1;
    bl_tensor *y = bl_to_plain(ctx, x);
    /* element (b, c, 0, w) of a (2, 16, 1, 3) nChw8c tensor sits at ((b 2 + c / 8) 3 + w) 8 + c % 8 */
    for (int64_t b = 0; b < 2; b++)
        for (int64_t c = 0; c < 16; c++)
            for (int64_t w = 0; w < 3; w++)
                ck_assert_float_eq(y->data[(b * 16 + c) * 3 + w],
                                   (bl_real)(((b * 2 + c / 8) * 3 + w) * 8 + c % 8));
    bl_real *g = bl_malloc((size_t)y->numel * sizeof *g);
    for (int64_t i = 0; i < y->numel; i++) g[i] = (bl_real)(i % 7);
    bl_backward(ctx, dot_loss(ctx, y, g));
    for (int64_t b = 0; b < 2; b++)
        for (int64_t c = 0; c < 16; c++)
            for (int64_t w = 0; w < 3; w++)
                ck_assert_float_eq(x->grad[((b * 2 + c / 8) * 3 + w) * 8 + c % 8],
                                   g[(b * 16 + c) * 3 + w]);
    free(g);
    bl_ctx_free(ctx);
}
END_TEST

/* ---- synchronised BatchNorm on one process ---- */

static int reducer_calls;
static void reducer_one_process(void *user, double *buf, int64_t n)
{
    (void)user, (void)buf, (void)n; /* one process: the sum over the processes is buf itself */
    reducer_calls++;
}

/* with a reducer set (the path a data-parallel run takes) and a single process, training-mode
 * BatchNorm(+SiLU) and the chain give bit for bit what they give without one: outputs, input
 * and parameter gradients, running statistics, in the plain layout and in blocks 8 and 16 */
START_TEST(test_layout_bn_sync_one_process)
{
    static const int ops[3] = {OP_BN_SILU_TRAIN, OP_BN_TRAIN, OP_CHAIN};
    const int op = ops[_i % 3], v = (_i / 3) * 8; /* 0, 8, 16 */
    op_result a = run_op(op, v);
    reducer_calls = 0;
    bl_batchnorm_set_reducer(reducer_one_process, NULL, 1);
    op_result b = run_op(op, v);
    bl_batchnorm_set_reducer(NULL, NULL, 0);
    ck_assert_msg(reducer_calls > 0, "%s: the reducer was not called", op_names[op]);
#define SAME(field, n)                                                                         \
    ck_assert_msg(!memcmp(a.field, b.field, (size_t)(n) * sizeof(bl_real)),                   \
                  "%s, layout %d: " #field " differs with the reducer set", op_names[op], v)
    SAME(y, a.ny);
    SAME(dx1, a.nx1);
    SAME(dx2, a.nx2);
    SAME(dw, a.nc);
    SAME(db, a.nc);
    SAME(rm, a.nc);
    SAME(rv, a.nc);
#undef SAME
    op_result_free(&a);
    op_result_free(&b);
}
END_TEST

#ifdef BL_CONV_HAVE_ONEDNN
/* ---- convolutions on the oneDNN engine ---- */

typedef struct net_result {
    bl_real *y, *grads;
    int64_t ny, ng;
} net_result;

typedef struct tiny_net {
    bl_tensor *w[5], *bw[5], *bb[5], *rm[5], *rv[5], *wd, *bd;
} tiny_net;

static const int64_t net_c[5][2] = {{8, 32}, {32, 32}, {32, 64}, {64, 32}, {96, 32}};
static const int net_k[5] = {3, 3, 3, 1, 3}, net_s[5] = {1, 1, 2, 1, 1};

static void tiny_net_init(tiny_net *n)
{
    lcg_state = 99;
    for (int l = 0; l < 5; l++) {
        const int64_t ci = net_c[l][0], co = net_c[l][1], k = net_k[l];
        n->w[l] = bl_tensor_alloc("w", 4, BL_SHAPE(co, ci, k, k), 1);
        for (int64_t i = 0; i < n->w[l]->numel; i++) n->w[l]->data[i] = (bl_real)(urand() / sqrt((double)(ci * k * k)));
        n->bw[l] = bl_tensor_alloc("bw", 1, BL_SHAPE(co), 1);
        n->bb[l] = bl_tensor_alloc("bb", 1, BL_SHAPE(co), 1);
        n->rm[l] = bl_tensor_alloc("rm", 1, BL_SHAPE(co), 0);
        n->rv[l] = bl_tensor_alloc("rv", 1, BL_SHAPE(co), 0);
        for (int64_t c = 0; c < co; c++) {
            n->bw[l]->data[c] = (bl_real)(1 + 0.3 * urand());
            n->bb[l]->data[c] = (bl_real)(0.2 * urand());
            n->rm[l]->data[c] = (bl_real)(0.1 * urand());
            n->rv[l]->data[c] = (bl_real)(1 + 0.4 * urand());
        }
    }
    n->wd = bl_tensor_alloc("wd", 4, BL_SHAPE(7, 32, 1, 1), 1);
    n->bd = bl_tensor_alloc("bd", 1, BL_SHAPE(7), 1);
    for (int64_t i = 0; i < n->wd->numel; i++) n->wd->data[i] = (bl_real)(0.2 * urand());
    for (int64_t i = 0; i < 7; i++) n->bd->data[i] = (bl_real)(0.1 * urand());
}

static void tiny_net_free(tiny_net *n)
{
    for (int l = 0; l < 5; l++)
        bl_tensor_free(n->w[l]), bl_tensor_free(n->bw[l]), bl_tensor_free(n->bb[l]),
            bl_tensor_free(n->rm[l]), bl_tensor_free(n->rv[l]);
    bl_tensor_free(n->wd), bl_tensor_free(n->bd);
}

static bl_tensor *tiny_block(bl_ctx *ctx, tiny_net *n, int l, bl_tensor *x, int training, int fused)
{
    const int pad = net_k[l] / 2;
    if (fused)
        return bl_conv2d_bn_silu_eval(ctx, x, n->w[l], net_s[l], pad, n->bw[l], n->bb[l], n->rm[l],
                                      n->rv[l], 1e-3);
    bl_tensor *y = bl_conv2d_blocked(ctx, x, n->w[l], NULL, net_s[l], pad);
    return bl_batchnorm_silu(ctx, y, n->bw[l], n->bb[l], n->rm[l], n->rv[l], 0.03, 1e-3, training);
}

/* The encoder's pattern on small shapes: ConvBlocks (3x3, stride 2, 1x1), a residual add, an
 * upsample + concat, and a detection convolution (plain output, 7 channels) with bias. */
static net_result tiny_run(tiny_net *n, int training, int fused, int *blocked_seen)
{
    bl_ctx *ctx = bl_ctx_alloc(0);
    if (fused) bl_set_grad_enabled(ctx, 0);
    lcg_state = 7;
    bl_tensor *x = rand_tensor(ctx, 4, BL_SHAPE(3, 8, 12, 10), 1, 0, 0);
    bl_tensor *a = tiny_block(ctx, n, 0, x, training, fused);        /* (3, 32, 12, 10) */
    bl_tensor *b = bl_add(ctx, a, tiny_block(ctx, n, 1, a, training, fused));
    bl_tensor *c = tiny_block(ctx, n, 2, b, training, fused);        /* (3, 64, 6, 5) */
    bl_tensor *d = bl_upsample2x(ctx, tiny_block(ctx, n, 3, c, training, fused)); /* (3, 32, 12, 10) */
    bl_tensor *e = tiny_block(ctx, n, 4, bl_concat(ctx, 3, (bl_tensor *[]){b, d, a}, 1), training, fused);
    *blocked_seen = a->layout != BL_LAYOUT_PLAIN && e->layout != BL_LAYOUT_PLAIN;
    bl_tensor *y = bl_conv2d(ctx, e, n->wd, n->bd, 1, 0);           /* (3, 7, 12, 10), plain */
    ck_assert_int_eq(y->layout, BL_LAYOUT_PLAIN);
    net_result r = {.ny = y->numel};
    r.y = dup(y->data, y->numel);
    if (!fused) {
        bl_tensor *g = rand_tensor(ctx, 4, y->shape, 1, 0, 0);
        bl_backward(ctx, dot_loss(ctx, y, g->data));
        bl_tensor *ps[22];
        int np = 0;
        for (int l = 0; l < 5; l++) ps[np++] = n->w[l], ps[np++] = n->bw[l], ps[np++] = n->bb[l];
        ps[np++] = n->wd;
        ps[np++] = n->bd;
        for (int k = 0; k < np; k++) r.ng += ps[k]->numel;
        r.grads = bl_malloc((size_t)r.ng * sizeof(bl_real));
        int64_t o = 0;
        for (int k = 0; k < np; k++) {
            memcpy(r.grads + o, ps[k]->grad, (size_t)ps[k]->numel * sizeof(bl_real));
            o += ps[k]->numel;
            bl_tensor_zero_grad(ps[k]);
        }
    }
    bl_ctx_free(ctx);
    return r;
}

/* oneDNN with blocked activations between layers against im2col with plain ones: outputs and
 * every parameter gradient, training and eval */
START_TEST(test_layout_net_onednn_blocked_vs_im2col)
{
    const int training = _i;
    tiny_net n;
    tiny_net_init(&n);
    int seen;
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_IM2COL), BL_OK);
    net_result a = tiny_run(&n, training, 0, &seen);
    ck_assert_msg(!seen, "im2col produced a blocked tensor");
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_ONEDNN), BL_OK);
    tiny_net rn; /* the running statistics moved in training: restart from the same values */
    tiny_net_init(&rn);
    net_result b = tiny_run(&rn, training, 0, &seen);
    ck_assert_msg(seen, "the oneDNN engine kept no activation blocked");
    assert_close(training ? "train y" : "eval y", b.y, a.y, a.ny, 1e-5);
    assert_close(training ? "train grads" : "eval grads", b.grads, a.grads, a.ng, 1e-5);
    /* the running statistics were updated from blocked activations in the same way */
    for (int l = 0; l < 5 && training; l++) {
        assert_close("running_mean", rn.rm[l]->data, n.rm[l]->data, n.rm[l]->numel, 1e-5);
        assert_close("running_var", rn.rv[l]->data, n.rv[l]->data, n.rv[l]->numel, 1e-5);
    }
    free(a.y), free(a.grads), free(b.y), free(b.grads);
    tiny_net_free(&n);
    tiny_net_free(&rn);
}
END_TEST

/* the eval ConvBlock with BatchNorm folded into the convolution and SiLU as a post-op against
 * the unfused eval ops (oneDNN and im2col), and again after the parameters changed (no stale
 * folded weights) */
START_TEST(test_layout_eval_fused_vs_unfused)
{
    tiny_net n;
    tiny_net_init(&n);
    int seen;
    for (int round = 0; round < 2; round++) {
        ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_IM2COL), BL_OK);
        net_result ref = tiny_run(&n, 0, 0, &seen);
        ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_ONEDNN), BL_OK);
        net_result un = tiny_run(&n, 0, 0, &seen), fu = tiny_run(&n, 0, 1, &seen);
        ck_assert_msg(seen, "fused eval blocks gave no blocked output");
        assert_close("fused vs unfused (oneDNN)", fu.y, un.y, un.ny, 1e-5);
        assert_close("fused vs im2col", fu.y, ref.y, ref.ny, 1e-5);
        free(ref.y), free(ref.grads), free(un.y), free(un.grads), free(fu.y);
        /* an optimiser step's worth of change in every BatchNorm and convolution parameter */
        for (int l = 0; l < 5; l++) {
            for (int64_t c = 0; c < n.bw[l]->numel; c++) {
                n.bw[l]->data[c] *= 1.5f;
                n.bb[l]->data[c] += 0.25f;
                n.rm[l]->data[c] -= 0.1f;
                n.rv[l]->data[c] *= 2;
            }
            for (int64_t i = 0; i < n.w[l]->numel; i++) n.w[l]->data[i] *= -1;
        }
    }
    tiny_net_free(&n);
}
END_TEST

/* a convolution reads x in either block size and in plain; its blocked output equals the
 * plain output; backward gives dx in x's layout */
START_TEST(test_layout_conv_any_input_layout)
{
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_ONEDNN), BL_OK);
    bl_real *ref_y = NULL, *ref_dx = NULL, *ref_dw = NULL;
    int64_t ny = 0, nx = 0, nw = 0;
    const int layouts[3] = {0, 8, 16};
    for (int t = 0; t < 3; t++) {
        bl_ctx *ctx = bl_ctx_alloc(0);
        lcg_state = 3;
        bl_tensor *p = rand_tensor(ctx, 4, BL_SHAPE(2, 32, 9, 7), 1, 0, 1);
        bl_tensor *w = rand_tensor(ctx, 4, BL_SHAPE(48, 32, 3, 3), 0.2, 0, 1);
        bl_tensor *x = layouts[t] ? as_layout(ctx, p, layouts[t]) : p;
        bl_tensor *y = bl_conv2d_blocked(ctx, x, w, NULL, 1, 1);
        bl_tensor *yp = bl_to_plain(ctx, y);
        bl_tensor *g = rand_tensor(ctx, 4, yp->shape, 1, 0, 0);
        bl_backward(ctx, dot_loss(ctx, yp, g->data));
        bl_real *dx = bl_malloc((size_t)x->numel * sizeof *dx);
        unblock(x, layouts[t], x->grad, dx);
        if (!ref_y) {
            ny = yp->numel, nx = x->numel, nw = w->numel;
            ref_y = dup(yp->data, ny), ref_dx = dx, ref_dw = dup(w->grad, nw);
        } else {
            assert_close("y from a blocked x", yp->data, ref_y, ny, 1e-5);
            assert_close("dx in x's layout", dx, ref_dx, nx, 1e-5);
            assert_close("dw from a blocked x", w->grad, ref_dw, nw, 1e-5);
            free(dx);
        }
        bl_ctx_free(ctx);
    }
    free(ref_y), free(ref_dx), free(ref_dw);
    /* switched off (BL_CONV_LAYOUT=plain): plain outputs */
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = rand_tensor(ctx, 4, BL_SHAPE(1, 16, 4, 4), 1, 0, 0);
    bl_tensor *w = rand_tensor(ctx, 4, BL_SHAPE(32, 16, 1, 1), 1, 0, 0);
    ck_assert_int_ne(bl_conv2d_blocked(ctx, x, w, NULL, 1, 0)->layout, BL_LAYOUT_PLAIN);
    bl_conv_set_blocked(0);
    ck_assert_int_eq(bl_conv2d_blocked(ctx, x, w, NULL, 1, 0)->layout, BL_LAYOUT_PLAIN);
    bl_conv_set_blocked(1);
    bl_ctx_free(ctx);
}
END_TEST

/* ---- the 5x5 Winograd kernel ---- */

typedef struct wino5_case {
    int B, C, H, W, M, bias;
} wino5_case;

/* partial tiles in both directions (13 x 7, 9 x 9), images narrower than a tile row block and
 * wider (35 x 70: 18 tiles a row, more than one block), M != C (the backward data swaps them) */
static const wino5_case wino5_cases[] = {
    {2, 64, 13, 7, 64, 1},
    {1, 64, 9, 9, 128, 0},
    {3, 128, 8, 12, 64, 1},
    {1, 64, 35, 70, 64, 1},
};
#define N_WINO5_CASES (int)(sizeof wino5_cases / sizeof wino5_cases[0])

/* y[b][m][i][j] = bias[m] + sum_{c,a,e} w[m][c][a][e] x[b][c][i + a - 2][j + e - 2] (zero
 * outside), dx[b][c][i][j] = sum_{m,a,e} dy[b][m][i - a + 2][j - e + 2] w[m][c][a][e] and
 * dw[m][c][a][e] = sum_{b,i,j} dy[b][m][i][j] x[b][c][i + a - 2][j + e - 2], in double
 * precision from plain float inputs */
static void naive5(const wino5_case *k, const bl_real *x, const bl_real *w, const bl_real *bias,
                   const bl_real *dy, double *y, double *dx, double *dw)
{
    const int B = k->B, C = k->C, H = k->H, W = k->W, M = k->M;
    for (int b = 0; b < B; b++)
        for (int m = 0; m < M; m++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    double s = bias ? bias[m] : 0;
                    for (int c = 0; c < C; c++)
                        for (int a = 0; a < 5; a++)
                            for (int e = 0; e < 5; e++) {
                                const int ii = i + a - 2, jj = j + e - 2;
                                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                s += (double)w[((m * C + c) * 5 + a) * 5 + e] *
                                     x[((b * C + c) * H + ii) * W + jj];
                            }
                    y[((b * M + m) * H + i) * W + j] = s;
                }
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int i = 0; i < H; i++)
                for (int j = 0; j < W; j++) {
                    double s = 0;
                    for (int m = 0; m < M; m++)
                        for (int a = 0; a < 5; a++)
                            for (int e = 0; e < 5; e++) {
                                const int ii = i - a + 2, jj = j - e + 2;
                                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                s += (double)w[((m * C + c) * 5 + a) * 5 + e] *
                                     dy[((b * M + m) * H + ii) * W + jj];
                            }
                    dx[((b * C + c) * H + i) * W + j] = s;
                }
    for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++)
            for (int a = 0; a < 5; a++)
                for (int e = 0; e < 5; e++) {
                    double s = 0;
                    for (int b = 0; b < B; b++)
                        for (int i = 0; i < H; i++)
                            for (int j = 0; j < W; j++) {
                                const int ii = i + a - 2, jj = j + e - 2;
                                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                s += (double)dy[((b * M + m) * H + i) * W + j] *
                                     x[((b * C + c) * H + ii) * W + jj];
                            }
                    dw[((m * C + c) * 5 + a) * 5 + e] = s;
                }
}

static void assert_close_d(const char *what, const bl_real *a, const double *b, int64_t n,
                           double rtol)
{
    bl_real *bf = bl_malloc((size_t)n * sizeof *bf);
    double scale = 0, worst = 0;
    int64_t iw = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - b[i]) / (fabs(b[i]) + scale);
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e, iw = i;
        bf[i] = (bl_real)b[i];
    }
    ck_assert_msg(scale > 0 && worst <= rtol, "%s: element %lld is %.9g, expected %.9g (rel err %.3g > %.3g)",
                  what, (long long)iw, (double)a[iw], b[iw], worst, rtol);
    free(bf);
}

static const bl_wino5_isa wino5_isas[3] = {BL_WINO5_ISA_GENERIC, BL_WINO5_ISA_AVX2,
                                           BL_WINO5_ISA_AVX512};

/* the kernel alone, every variant this CPU runs, blocks 8 and 16 (where the variant takes
 * them): forward into fresh and accumulating outputs and with the fused SiLU, backward data,
 * backward weights, against the loops above. The tolerance: F(4x4, 5x5) rounds more than a
 * direct sum (its transforms reach 5.25 and 1/90); the worst errors measured on these cases
 * are 7.4e-6 of the tensor's scale for y and dx and 6e-6 for dw (direct sums: 2e-7). */
START_TEST(test_wino5_vs_naive)
{
    const wino5_case *k = &wino5_cases[_i];
    lcg_state = 50 + (uint64_t)_i;
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = rand_tensor(ctx, 4, BL_SHAPE(k->B, k->C, k->H, k->W), 1, 0, 0);
    bl_tensor *w = rand_tensor(ctx, 4, BL_SHAPE(k->M, k->C, 5, 5), 0.05, 0, 0);
    bl_tensor *bias = k->bias ? rand_tensor(ctx, 1, BL_SHAPE(k->M), 1, 0, 0) : NULL;
    bl_tensor *dy = rand_tensor(ctx, 4, BL_SHAPE(k->B, k->M, k->H, k->W), 1, 0, 0);
    double *ry = bl_malloc((size_t)dy->numel * sizeof *ry), *rdx = bl_malloc((size_t)x->numel * sizeof *rdx);
    double *rdw = bl_malloc((size_t)w->numel * sizeof *rdw), *rdw1 = bl_malloc((size_t)w->numel * sizeof *rdw1);
    bl_real *dwb = bl_malloc((size_t)w->numel * sizeof *dwb);
    naive5(k, x->data, w->data, bias ? bias->data : NULL, dy->data, ry, rdx, rdw);
    const bl_conv_geom g = {.B = k->B, .C = k->C, .H = k->H, .W = k->W, .M = k->M, .kh = 5,
                            .kw = 5, .stride = 1, .pad_h = 2, .pad_w = 2, .Ho = k->H, .Wo = k->W};
    int ran = 0;
    for (int v = 0; v < 3; v++) {
        if (!bl_wino5_set_isa(wino5_isas[v])) continue;
        for (int blk = 8; blk <= 16; blk += 8) {
            if (!bl_wino5_applies(&g, blk, blk)) continue;
            ran++;
            bl_tensor *xb = as_layout(ctx, x, blk), *dyb = as_layout(ctx, dy, blk);
            bl_real *yb = bl_scratch(ctx, (size_t)dy->numel * sizeof *yb);
            bl_real *dxb = bl_scratch(ctx, (size_t)x->numel * sizeof *dxb);
            bl_real *out = bl_malloc((size_t)(dy->numel > x->numel ? dy->numel : x->numel) * sizeof *out);
            double *ref1 = bl_malloc((size_t)(dy->numel > x->numel ? dy->numel : x->numel) * sizeof *ref1);
            char what[128];
            for (int acc = 0; acc < 2; acc++) {
                for (int64_t i = 0; i < dy->numel; i++) yb[i] = acc ? 1 : NAN;
                for (int64_t i = 0; i < x->numel; i++) dxb[i] = acc ? 1 : NAN;
                bl_wino5_forward(ctx, &g, xb->data, blk, w->data, bias ? bias->data : NULL, yb, blk,
                                 acc ? BL_WINO5_ACC : BL_WINO5_STORE);
                bl_wino5_backward_data(ctx, &g, dyb->data, blk, w->data, dxb, blk, acc);
                unblock(dy, blk, yb, out);
                for (int64_t i = 0; i < dy->numel; i++) ref1[i] = ry[i] + acc;
                snprintf(what, sizeof what, "case %d %s block %d acc %d: y", _i, bl_wino5_isa_name(), blk, acc);
                assert_close_d(what, out, ref1, dy->numel, 1e-5);
                unblock(x, blk, dxb, out);
                for (int64_t i = 0; i < x->numel; i++) ref1[i] = rdx[i] + acc;
                snprintf(what, sizeof what, "case %d %s block %d acc %d: dx", _i, bl_wino5_isa_name(), blk, acc);
                assert_close_d(what, out, ref1, x->numel, 1e-5);
                /* the weight gradient always accumulates: from 0 and from 1 */
                for (int64_t i = 0; i < w->numel; i++) dwb[i] = (bl_real)acc, rdw1[i] = rdw[i] + acc;
                bl_wino5_backward_weights(ctx, &g, xb->data, blk, dyb->data, blk, dwb);
                snprintf(what, sizeof what, "case %d %s block %d from %d: dw", _i, bl_wino5_isa_name(), blk, acc);
                assert_close_d(what, dwb, rdw1, w->numel, 1e-5);
            }
            /* the eval ConvBlock's fused SiLU: y = silu(r), against z / (1 + e^-z) in double */
            for (int64_t i = 0; i < dy->numel; i++) yb[i] = NAN;
            bl_wino5_forward(ctx, &g, xb->data, blk, w->data, bias ? bias->data : NULL, yb, blk,
                             BL_WINO5_SILU);
            unblock(dy, blk, yb, out);
            for (int64_t i = 0; i < dy->numel; i++) ref1[i] = ry[i] / (1 + exp(-ry[i]));
            snprintf(what, sizeof what, "case %d %s block %d: silu(y)", _i, bl_wino5_isa_name(), blk);
            assert_close_d(what, out, ref1, dy->numel, 1e-5);
            free(out), free(ref1);
        }
    }
    bl_wino5_set_isa(BL_WINO5_ISA_AUTO);
    ck_assert_msg(ran >= 1, "no variant ran");
    free(ry), free(rdx), free(rdw), free(rdw1), free(dwb);
    bl_ctx_free(ctx);
}
END_TEST

/* no reduction crosses a tile: image 1 of a batch of 3 equals the same image alone, bit for
 * bit, at 1 and at 2 threads */
START_TEST(test_wino5_batch_and_threads_independent)
{
    const wino5_case k = {3, 64, 12, 10, 64, 1};
    lcg_state = 9;
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = rand_tensor(ctx, 4, BL_SHAPE(k.B, k.C, k.H, k.W), 1, 0, 0);
    bl_tensor *w = rand_tensor(ctx, 4, BL_SHAPE(k.M, k.C, 5, 5), 0.05, 0, 0);
    bl_tensor *bias = rand_tensor(ctx, 1, BL_SHAPE(k.M), 1, 0, 0);
    bl_tensor *xb = as_layout(ctx, x, 16);
    const int64_t per_in = k.C * k.H * k.W, per_out = k.M * k.H * k.W;
    bl_conv_geom g = {.B = 3, .C = k.C, .H = k.H, .W = k.W, .M = k.M, .kh = 5, .kw = 5,
                      .stride = 1, .pad_h = 2, .pad_w = 2, .Ho = k.H, .Wo = k.W};
    bl_real *y3 = bl_scratch(ctx, (size_t)(3 * per_out) * sizeof *y3);
    bl_real *y1 = bl_scratch(ctx, (size_t)per_out * sizeof *y1);
    bl_wino5_forward(ctx, &g, xb->data, 16, w->data, bias->data, y3, 16, BL_WINO5_STORE);
    const int threads = omp_get_max_threads();
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        g.B = 1;
        bl_wino5_forward(ctx, &g, xb->data + per_in, 16, w->data, bias->data, y1, 16, BL_WINO5_STORE);
        ck_assert_msg(!memcmp(y1, y3 + per_out, (size_t)per_out * sizeof *y1),
                      "image 1 alone at %d threads differs from image 1 of the batch", t);
    }
    omp_set_num_threads(threads);
    bl_ctx_free(ctx);
}
END_TEST

/* 5x5 ConvBlocks through the ops (x -> 3x3 16 -> 64 -> two 5x5 64 -> 64 ConvBlocks -> plain):
 * outputs and every gradient with the Winograd kernel against oneDNN's direct kernels, and the
 * fused eval ConvBlock likewise */
static net_result wino5_chain(int policy, int fused, const char **impl)
{
    bl_conv_onednn_set_winograd(policy);
    bl_ctx *ctx = bl_ctx_alloc(0);
    if (fused) bl_set_grad_enabled(ctx, 0);
    lcg_state = 21;
    bl_tensor *x = rand_tensor(ctx, 4, BL_SHAPE(2, 16, 11, 9), 1, 0, 0);
    bl_tensor *w0 = rand_tensor(ctx, 4, BL_SHAPE(64, 16, 3, 3), 0.1, 0, 1);
    bl_tensor *ws[2], *bw[2], *bb[2], *rm[2], *rv[2];
    for (int l = 0; l < 2; l++) {
        ws[l] = rand_tensor(ctx, 4, BL_SHAPE(64, 64, 5, 5), 0.03, 0, 1);
        bw[l] = rand_tensor(ctx, 1, BL_SHAPE(64), 0.3, 1, 1);
        bb[l] = rand_tensor(ctx, 1, BL_SHAPE(64), 0.2, 0, 1);
        rm[l] = rand_tensor(ctx, 1, BL_SHAPE(64), 0.1, 0, 0);
        rv[l] = rand_tensor(ctx, 1, BL_SHAPE(64), 0.4, 1, 0);
    }
    bl_tensor *y = bl_conv2d_blocked(ctx, x, w0, NULL, 1, 1);
    ck_assert_int_eq(y->layout, 16);
    for (int l = 0; l < 2; l++)
        y = fused ? bl_conv2d_bn_silu_eval(ctx, y, ws[l], 1, 2, bw[l], bb[l], rm[l], rv[l], 1e-3)
                  : bl_batchnorm_silu(ctx, bl_conv2d_blocked(ctx, y, ws[l], NULL, 1, 2), bw[l],
                                      bb[l], rm[l], rv[l], 0.03, 1e-3, 1);
    const bl_conv_geom g = {.B = 2, .C = 64, .H = 11, .W = 9, .M = 64, .kh = 5, .kw = 5,
                            .stride = 1, .pad_h = 2, .pad_w = 2, .Ho = 11, .Wo = 9};
    *impl = bl_conv_onednn_describe(&g, 0, NULL);
    y = bl_to_plain(ctx, y);
    net_result r = {.ny = y->numel, .y = dup(y->data, y->numel)};
    if (!fused) {
        bl_tensor *gr = rand_tensor(ctx, 4, y->shape, 1, 0, 0);
        bl_backward(ctx, dot_loss(ctx, y, gr->data));
        bl_tensor *ps[7] = {w0, ws[0], bw[0], bb[0], ws[1], bw[1], bb[1]};
        for (int i = 0; i < 7; i++) r.ng += ps[i]->numel;
        r.grads = bl_malloc((size_t)r.ng * sizeof(bl_real));
        int64_t o = 0;
        for (int i = 0; i < 7; i++) {
            memcpy(r.grads + o, ps[i]->grad, (size_t)ps[i]->numel * sizeof(bl_real));
            o += ps[i]->numel;
        }
    }
    bl_ctx_free(ctx);
    bl_conv_onednn_set_winograd(BL_CONV_WINO_AUTO);
    return r;
}

START_TEST(test_wino5_chain_vs_direct)
{
    const int fused = _i;
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_ONEDNN), BL_OK);
    const char *impl;
    net_result a = wino5_chain(BL_CONV_WINO_OFF, fused, &impl);
    ck_assert_msg(!strstr(impl, "wino5"), "Winograd off ran %s", impl);
    net_result b = wino5_chain(BL_CONV_WINO_AUTO, fused, &impl);
    ck_assert_msg(strstr(impl, "wino5:"), "the default policy ran %s on the 5x5 layers", impl);
    assert_close(fused ? "eval y" : "train y", b.y, a.y, a.ny, 1e-5);
    if (!fused) assert_close("train grads", b.grads, a.grads, a.ng, 1e-5);
    free(a.y), free(a.grads), free(b.y), free(b.grads);
}
END_TEST
#endif

static Suite *layout_suite(void)
{
    Suite *s = suite_create("layout");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_layout_op_blocked_vs_plain, 0, 2 * N_OPS);
    tcase_add_loop_test(tc, test_layout_bn_sync_one_process, 0, 9);
    tcase_add_test(tc, test_layout_to_plain_by_hand);
#ifdef BL_CONV_HAVE_ONEDNN
    tcase_add_loop_test(tc, test_layout_net_onednn_blocked_vs_im2col, 0, 2);
    tcase_add_test(tc, test_layout_eval_fused_vs_unfused);
    tcase_add_test(tc, test_layout_conv_any_input_layout);
    tcase_add_loop_test(tc, test_wino5_vs_naive, 0, N_WINO5_CASES);
    tcase_add_test(tc, test_wino5_batch_and_threads_independent);
    tcase_add_loop_test(tc, test_wino5_chain_vs_direct, 0, 2);
#endif
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(layout_suite()); }
