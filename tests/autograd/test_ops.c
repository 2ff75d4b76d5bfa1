/* Forward values of the elementwise / reduction / shape ops (float build) against closed forms
 * and independently computed constants, the broadcasting engine against a naive index loop,
 * and the gradients whose exact value is known (clamp outside its range, logsumexp at -inf).
 *
 * Reference constants were computed with mpmath 1.2.1 at 40 digits
 * (/usr/bin/python3 -c 'import mpmath; mpmath.mp.dps = 40; ...'), e.g.
 * log(ncdf(-30)), erf(0.5), log1p(exp(-30)); torch.special.log_ndtr in float64 agrees. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "lib/rng.h"
#include "tests/bl_check.h"

static bl_ctx *ctx;

static void setup(void)
{
    ctx = bl_ctx_alloc(0);
}
static void teardown(void)
{
    bl_ctx_free(ctx);
}

/* |got - want| <= rel * |want| + abs_tol */
#define ck_close(got, want, rel, abs_tol)                                                          \
    do {                                                                                           \
        double g_ = (double)(got), w_ = (double)(want);                                            \
        ck_assert_msg(fabs(g_ - w_) <= (rel)*fabs(w_) + (abs_tol), "%s = %.10g, expected %.10g",   \
                      #got, g_, w_);                                                               \
    } while (0)

static bl_tensor *vec(int ndim, const int64_t *shape, const double *v)
{
    bl_tensor *t = bl_new(ctx, ndim, shape);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (bl_real)v[i];
    return t;
}

static bl_tensor *param(int ndim, const int64_t *shape, const double *v)
{
    bl_tensor *t = vec(ndim, shape, v);
    t->requires_grad = 1;
    return t;
}

static void assert_shape(const bl_tensor *t, int ndim, const int64_t *shape)
{
    ck_assert_int_eq(t->ndim, ndim);
    for (int d = 0; d < ndim; d++) ck_assert_int_eq(t->shape[d], shape[d]);
}

/* ---------------------------------------------------------------------------------------- */

START_TEST(test_unary_constants)
{
    /* mpmath references (see the file comment) */
    static const double x[] = {0.5, -1.25, 2};
    static const double erf_ref[] = {0.52049987781304653768, -0.92290012825645823014,
                                     0.99532226501895273416};
    bl_tensor *e = bl_erf(ctx, vec(1, BL_SHAPE(3), x));
    for (int i = 0; i < 3; i++) ck_close(e->data[i], erf_ref[i], 4e-7, 0);

    static const double xl[] = {-40, -30, -20.5, -20, -19.5, -5, -1, 0, 1, 3, 10};
    static const double ln_ref[] = {
        -804.60844201375378817,    -454.32124395634319711,    -214.06672896326380017,
        -203.91715537109726394,    -194.01696577749749941,    -15.064998393988725736,
        -1.8410216450092635058,    -0.69314718055994530942,   -0.17275377902344988953,
        -0.0013508099647481937988, -7.6198530241605260704e-24};
    bl_tensor *l = bl_log_ndtr(ctx, vec(1, BL_SHAPE(11), xl));
    for (int i = 0; i < 11; i++) ck_close(l->data[i], ln_ref[i], 4e-7, 0);

    /* sigmoid: stable in both tails; softplus follows torch (identity above 20) */
    static const double xs[] = {-1000, -30, 0, 30, 1000};
    bl_tensor *s = bl_sigmoid(ctx, vec(1, BL_SHAPE(5), xs));
    ck_assert(s->data[0] == 0);
    ck_close(s->data[1], 9.3576229688392989538e-14, 4e-7, 0);
    ck_assert(s->data[2] == 0.5f);
    ck_assert(s->data[3] == 1 && s->data[4] == 1);
    static const double xp[] = {-30, 0, 3, 20.5, 1000, -1000};
    bl_tensor *sp = bl_softplus(ctx, vec(1, BL_SHAPE(6), xp));
    ck_close(sp->data[0], 9.3576229688397367794e-14, 4e-7, 0);
    ck_close(sp->data[1], 0.69314718055994530942, 4e-7, 0);
    ck_close(sp->data[2], 3.0485873515737420588, 4e-7, 0);
    ck_assert(sp->data[3] == 20.5f && sp->data[4] == 1000.0f && sp->data[5] == 0);

    static const double xu[] = {1, -2};
    bl_tensor *si = bl_silu(ctx, vec(1, BL_SHAPE(2), xu));
    ck_close(si->data[0], 0.73105857863000487925, 4e-7, 0);
    ck_close(si->data[1], -0.23840584404423511188, 4e-7, 0);

    static const double xe[] = {1e-7, 0, 2, 0.25};
    bl_tensor *t = vec(1, BL_SHAPE(4), xe);
    ck_close(bl_log1p(ctx, t)->data[0], 9.9999995000000333333e-8, 4e-7, 0);
    ck_close(bl_exp(ctx, t)->data[2], M_E * M_E, 4e-7, 0);
    ck_close(bl_log(ctx, t)->data[2], M_LN2, 4e-7, 0);
    ck_assert(bl_log(ctx, t)->data[1] == -INFINITY);
    ck_close(bl_sqrt(ctx, t)->data[3], 0.5, 0, 0);
    ck_close(bl_square(ctx, t)->data[2], 4, 0, 0);
    ck_close(bl_neg(ctx, t)->data[2], -2, 0, 0);
    ck_close(bl_add_scalar(ctx, t, 1.5)->data[2], 3.5, 0, 0);
    ck_close(bl_mul_scalar(ctx, t, -3)->data[3], -0.75, 0, 0);
    ck_close(bl_rsub_scalar(ctx, 1, t)->data[3], 0.75, 0, 0);
}
END_TEST

START_TEST(test_clamp)
{
    static const double x[] = {-2, -1, -0.5, 0, 1, 2, NAN};
    bl_tensor *a = param(1, BL_SHAPE(7), x);
    bl_tensor *y = bl_clamp(ctx, a, -1, 1);
    static const double want[] = {-1, -1, -0.5, 0, 1, 1};
    for (int i = 0; i < 6; i++) ck_assert(y->data[i] == (bl_real)want[i]);
    ck_assert(isnan(y->data[6])); /* NaN passes through, as torch.clamp */
    bl_backward(ctx, bl_sum(ctx, bl_slice(ctx, y, 0, 0, 6)));
    /* gradient 1 inside [lo, hi] including both ends (torch), 0 outside */
    static const double g[] = {0, 1, 1, 1, 1, 0, 0};
    for (int i = 0; i < 7; i++)
        ck_assert_msg(a->grad[i] == (bl_real)g[i], "grad[%d] = %g", i, (double)a->grad[i]);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* broadcasting */

START_TEST(test_broadcast_values)
{
    static const double a23[] = {1, 2, 3, 4, 5, 6}, b3[] = {10, 20, 30}, c21[] = {2, 3};
    bl_tensor *a = vec(2, BL_SHAPE(2, 3), a23), *b = vec(1, BL_SHAPE(3), b3);
    bl_tensor *s = bl_add(ctx, a, b);
    assert_shape(s, 2, BL_SHAPE(2, 3));
    static const double s_ref[] = {11, 22, 33, 14, 25, 36};
    for (int i = 0; i < 6; i++) ck_assert(s->data[i] == (bl_real)s_ref[i]);

    bl_tensor *d = bl_sub(ctx, b, a); /* broadcast on the left operand */
    static const double d_ref[] = {9, 18, 27, 6, 15, 24};
    for (int i = 0; i < 6; i++) ck_assert(d->data[i] == (bl_real)d_ref[i]);

    /* (2, 1) * (3) -> (2, 3) outer product */
    bl_tensor *o = bl_mul(ctx, vec(2, BL_SHAPE(2, 1), c21), b);
    assert_shape(o, 2, BL_SHAPE(2, 3));
    static const double o_ref[] = {20, 40, 60, 30, 60, 90};
    for (int i = 0; i < 6; i++) ck_assert(o->data[i] == (bl_real)o_ref[i]);

    /* 0-dim divides everything; result keeps the larger shape */
    bl_tensor *two = bl_full(ctx, 0, NULL, 2);
    bl_tensor *q = bl_div(ctx, a, two);
    assert_shape(q, 2, BL_SHAPE(2, 3));
    for (int i = 0; i < 6; i++) ck_assert(q->data[i] == (bl_real)(a23[i] / 2));
    bl_tensor *q0 = bl_div(ctx, two, two);
    ck_assert_int_eq(q0->ndim, 0);
    ck_assert(q0->data[0] == 1);

    /* (3, 1, 2) + (2, 1) -> (3, 2, 2) */
    static const double e312[] = {0, 1, 2, 3, 4, 5}, f21[] = {100, 200};
    bl_tensor *e = bl_add(ctx, vec(3, BL_SHAPE(3, 1, 2), e312), vec(2, BL_SHAPE(2, 1), f21));
    assert_shape(e, 3, BL_SHAPE(3, 2, 2));
    static const double e_ref[] = {100, 101, 200, 201, 102, 103, 202, 203, 104, 105, 204, 205};
    for (int i = 0; i < 12; i++) ck_assert(e->data[i] == (bl_real)e_ref[i]);
}
END_TEST

/* naive reference: index arithmetic per element */
static int64_t naive_offset(const bl_tensor *t, int ndim, const int64_t *shape, int64_t i)
{
    int64_t off = 0, stride = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        int64_t idx = i % shape[d];
        i /= shape[d];
        int td = d - (ndim - t->ndim);
        if (td >= 0) {
            if (t->shape[td] != 1) off += idx * stride;
            stride *= t->shape[td];
        }
    }
    return off;
}

static bl_tensor *rand_tensor(int ndim, const int64_t *shape, uint64_t stream)
{
    bl_tensor *t = bl_new(ctx, ndim, shape);
    bl_rng *r = bl_rng_alloc(5, stream);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (bl_real)(bl_rng_uniform(r) * 4 - 2);
    bl_rng_free(r);
    t->requires_grad = 1;
    return t;
}

START_TEST(test_broadcast_vs_naive)
{
    /* pairs of shapes, including outputs past the parallel threshold (32768) and rows longer
     * than one chunk (4096) */
    struct {
        int na, nb;
        int64_t sa[5], sb[5];
    } cases[] = {
        {2, 1, {7, 5}, {5}},
        {3, 2, {4, 1, 6}, {5, 1}},
        {5, 3, {2, 3, 1, 4, 1}, {3, 1, 5}},
        {4, 4, {2, 16, 40, 40}, {1, 16, 1, 1}}, /* bias-like (C, 1, 1) over NCHW */
        {2, 2, {3, 20000}, {3, 1}}, /* long rows, per-row scalar */
        {1, 1, {50001}, {1}}, /* flat + scalar, several chunks */
        {3, 2, {20, 1, 700}, {30, 700}}, /* both broadcast, large */
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        bl_ctx_reset(ctx);
        bl_tensor *a = rand_tensor(cases[c].na, cases[c].sa, 2 * c);
        bl_tensor *b = rand_tensor(cases[c].nb, cases[c].sb, 2 * c + 1);
        bl_tensor *m = bl_mul(ctx, a, b);
        bl_tensor *s = bl_sub(ctx, a, b);
        int64_t bad = 0; /* counted, not asserted per element: keeps Check's bookkeeping cheap */
        for (int64_t i = 0; i < m->numel; i++) {
            bl_real x = a->data[naive_offset(a, m->ndim, m->shape, i)];
            bl_real y = b->data[naive_offset(b, m->ndim, m->shape, i)];
            bad += m->data[i] != x * y || s->data[i] != x - y;
        }
        ck_assert_msg(bad == 0, "case %zu: %lld elements differ from the naive loop", c,
                      (long long)bad);
        /* backward: d sum(w * a * b) / d b = sum over broadcast dims of w * a, done naively in
         * double */
        bl_tensor *w = rand_tensor(m->ndim, m->shape, 99);
        w->requires_grad = 0;
        bl_backward(ctx, bl_sum(ctx, bl_mul(ctx, m, w)));
        double *gb = calloc((size_t)b->numel, sizeof(double)),
               *ga = calloc((size_t)a->numel, sizeof(double));
        for (int64_t i = 0; i < m->numel; i++) {
            int64_t ia = naive_offset(a, m->ndim, m->shape, i),
                    ib = naive_offset(b, m->ndim, m->shape, i);
            gb[ib] += (double)w->data[i] * a->data[ia];
            ga[ia] += (double)w->data[i] * b->data[ib];
        }
        for (int64_t i = 0; i < b->numel; i++)
            bad += fabs(b->grad[i] - gb[i]) > 1e-4 * (1 + fabs(gb[i]));
        for (int64_t i = 0; i < a->numel; i++)
            bad += fabs(a->grad[i] - ga[i]) > 1e-4 * (1 + fabs(ga[i]));
        ck_assert_msg(bad == 0, "case %zu: %lld gradient elements differ from the naive sums", c,
                      (long long)bad);
        free(ga);
        free(gb);
    }
}
END_TEST

START_TEST(test_where_masked_select)
{
    static const double c[] = {1, 0, 1}, a[] = {1, 2, 3, 4, 5, 6}, b1[] = {-1, -2};
    bl_tensor *cond = vec(1, BL_SHAPE(3), c);
    bl_tensor *w = bl_where(ctx, cond, vec(2, BL_SHAPE(2, 3), a), vec(2, BL_SHAPE(2, 1), b1));
    assert_shape(w, 2, BL_SHAPE(2, 3));
    static const double w_ref[] = {1, -1, 3, 4, -2, 6};
    for (int i = 0; i < 6; i++) ck_assert(w->data[i] == (bl_real)w_ref[i]);

    /* row-major order of the kept elements, mask broadcast over rows */
    bl_tensor *x = param(2, BL_SHAPE(2, 3), a);
    bl_tensor *m = bl_masked_select(ctx, x, cond);
    assert_shape(m, 1, BL_SHAPE(4));
    static const double m_ref[] = {1, 3, 4, 6};
    for (int i = 0; i < 4; i++) ck_assert(m->data[i] == (bl_real)m_ref[i]);
    static const double wt[] = {10, 20, 30, 40};
    bl_backward(ctx, bl_sum(ctx, bl_mul(ctx, m, vec(1, BL_SHAPE(4), wt))));
    static const double g_ref[] = {10, 0, 20, 30, 0, 40};
    for (int i = 0; i < 6; i++) ck_assert(x->grad[i] == (bl_real)g_ref[i]);

    /* empty selection */
    static const double z[] = {0, 0, 0};
    bl_tensor *e = bl_masked_select(ctx, x, vec(1, BL_SHAPE(3), z));
    assert_shape(e, 1, BL_SHAPE(0));
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* reductions */

START_TEST(test_reductions)
{
    double v[100];
    for (int i = 0; i < 100; i++) v[i] = i + 1;
    bl_tensor *a = vec(2, BL_SHAPE(10, 10), v);
    bl_tensor *s = bl_sum(ctx, a);
    ck_assert_int_eq(s->ndim, 0);
    ck_assert(s->data[0] == 5050);
    ck_assert(bl_mean(ctx, a)->data[0] == 50.5f);

    /* rows of 1..10 + 10 r: sum over dim 1 = 55 + 100 r, over dim 0 = 460 + 10 c */
    bl_tensor *r = bl_sum_dim(ctx, a, 1, 0), *rk = bl_sum_dim(ctx, a, -1, 1);
    bl_tensor *cs = bl_sum_dim(ctx, a, 0, 0), *cm = bl_mean_dim(ctx, a, 0, 1);
    assert_shape(r, 1, BL_SHAPE(10));
    assert_shape(rk, 2, BL_SHAPE(10, 1));
    assert_shape(cm, 2, BL_SHAPE(1, 10));
    for (int i = 0; i < 10; i++) {
        ck_assert(r->data[i] == 55 + 100 * i && rk->data[i] == r->data[i]);
        ck_assert(cs->data[i] == 460 + 10 * i);
        ck_close(cm->data[i], 46 + i, 1e-7, 0);
    }

    /* middle dim of a 3-D tensor */
    static const double t[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    bl_tensor *m = bl_sum_dim(ctx, vec(3, BL_SHAPE(2, 3, 2), t), 1, 0);
    assert_shape(m, 2, BL_SHAPE(2, 2));
    static const double m_ref[] = {9, 12, 27, 30};
    for (int i = 0; i < 4; i++) ck_assert(m->data[i] == (bl_real)m_ref[i]);

    /* a million 0.1f: the double accumulation keeps float's rounding out of the sum
     * (exact: 1e6 * 0.100000001490116... = 100000.0015) */
    bl_tensor *big = bl_full(ctx, 1, BL_SHAPE(1000000), 0.1f);
    ck_close(bl_sum(ctx, big)->data[0], 100000.00149011611938, 1e-7, 0);
}
END_TEST

START_TEST(test_logsumexp)
{
    static const double v[] = {-INFINITY, -INFINITY, 0, -INFINITY, 1, 2, 3, 1000, 1000, INFINITY};
    bl_tensor *a = param(2, BL_SHAPE(5, 2), v);
    /* rows: (-inf, -inf), (0, -inf), (1, 2), (3, 1000), (1000, inf) */
    bl_tensor *y = bl_logsumexp_dim(ctx, a, 1, 0);
    assert_shape(y, 1, BL_SHAPE(5));
    ck_assert(y->data[0] == -INFINITY);
    ck_assert(y->data[1] == 0);
    ck_close(y->data[2], 2.3132616875182228340, 1e-7, 0); /* log(e + e^2), mpmath */
    ck_close(y->data[3], 1000, 1e-7, 0);
    ck_assert(y->data[4] == INFINITY);
    static const double w3[] = {1, 2, 3, 1000, 1000, 1000};
    bl_tensor *k = bl_logsumexp_dim(ctx, vec(2, BL_SHAPE(2, 3), w3), 1, 1);
    assert_shape(k, 2, BL_SHAPE(2, 1));
    ck_close(k->data[0], 3.4076059644443803045, 1e-7, 0); /* log(e + e^2 + e^3) */
    ck_close(k->data[1], 1001.0986122886681098, 1e-7, 0); /* 1000 + log 3 */

    /* gradient = softmax of the row; 0 at -inf entries, including an all -inf row */
    bl_tensor *first = bl_slice(ctx, y, 0, 0, 4);
    bl_backward(ctx, bl_sum(ctx, first));
    ck_assert(a->grad[0] == 0 && a->grad[1] == 0);
    ck_assert(a->grad[2] == 1 && a->grad[3] == 0);
    ck_close(a->grad[4], 1 / (1 + M_E), 1e-6, 0);
    ck_close(a->grad[5], M_E / (1 + M_E), 1e-6, 0);
    ck_assert(a->grad[6] == 0 && a->grad[7] == 1);
}
END_TEST

START_TEST(test_reduce_deterministic)
{
    /* bit-identical results for 1 and 2 threads: fixed blocks, combined in order */
    bl_tensor *a = rand_tensor(2, BL_SHAPE(300, 301), 7);
    bl_real s[2], col[2][301], row[2][300];
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        s[t] = bl_sum(ctx, a)->data[0];
        memcpy(col[t], bl_sum_dim(ctx, a, 0, 0)->data, sizeof col[t]);
        memcpy(row[t], bl_logsumexp_dim(ctx, a, 1, 0)->data, sizeof row[t]);
    }
    omp_set_num_threads(2);
    ck_assert(s[0] == s[1]);
    ck_assert(memcmp(col[0], col[1], sizeof col[0]) == 0);
    ck_assert(memcmp(row[0], row[1], sizeof row[0]) == 0);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* shape ops */

START_TEST(test_shape_ops)
{
    double v[24];
    for (int i = 0; i < 24; i++) v[i] = i;
    bl_tensor *a = vec(3, BL_SHAPE(2, 3, 4), v);

    bl_tensor *r = bl_reshape(ctx, a, 2, BL_SHAPE(-1, 6));
    assert_shape(r, 2, BL_SHAPE(4, 6));
    ck_assert_ptr_eq(r->data, a->data);

    /* out[i][j][k] = a[k][i][j] for perm (1, 2, 0) */
    bl_tensor *p = bl_permute(ctx, a, (const int[]){1, 2, 0});
    assert_shape(p, 3, BL_SHAPE(3, 4, 2));
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 2; k++)
                ck_assert(p->data[(i * 4 + j) * 2 + k] == k * 12 + i * 4 + j);

    bl_tensor *s = bl_slice(ctx, a, 1, 1, 3);
    assert_shape(s, 3, BL_SHAPE(2, 2, 4));
    ck_assert(s->data[0] == 4 && s->data[7] == 11 && s->data[8] == 16 && s->data[15] == 23);

    bl_tensor *parts[3];
    bl_split(ctx, a, 2, 3, BL_SHAPE(1, 0, 3), parts);
    assert_shape(parts[0], 3, BL_SHAPE(2, 3, 1));
    assert_shape(parts[1], 3, BL_SHAPE(2, 3, 0));
    assert_shape(parts[2], 3, BL_SHAPE(2, 3, 3));
    ck_assert(parts[0]->data[5] == 20 && parts[2]->data[0] == 1 && parts[2]->data[17] == 23);

    /* concat undoes split */
    bl_tensor *c = bl_concat(ctx, 3, parts, -1);
    assert_shape(c, 3, BL_SHAPE(2, 3, 4));
    ck_assert(memcmp(c->data, a->data, 24 * sizeof(bl_real)) == 0);
    bl_tensor *c0 = bl_concat(ctx, 2, (bl_tensor *[]){a, s}, 1);
    assert_shape(c0, 3, BL_SHAPE(2, 5, 4));
    ck_assert(c0->data[12] == 4 && c0->data[19] == 11 && c0->data[20] == 12);

    /* pad (top 1, bottom 0, left 2, right 1) then crop back */
    bl_tensor *pd = bl_pad2d(ctx, a, 1, 0, 2, 1);
    assert_shape(pd, 3, BL_SHAPE(2, 4, 7));
    for (int j = 0; j < 7; j++) ck_assert(pd->data[j] == 0);
    ck_assert(pd->data[7] == 0 && pd->data[8] == 0 && pd->data[9] == 0 && pd->data[12] == 3 &&
              pd->data[13] == 0);
    ck_assert(pd->data[28 + 7 + 2] == 12);
    bl_tensor *cr = bl_crop2d(ctx, pd, 1, 0, 2, 1);
    assert_shape(cr, 3, BL_SHAPE(2, 3, 4));
    ck_assert(memcmp(cr->data, a->data, 24 * sizeof(bl_real)) == 0);
    bl_tensor *cr2 = bl_crop2d(ctx, a, 1, 1, 1, 2);
    assert_shape(cr2, 3, BL_SHAPE(2, 1, 1));
    ck_assert(cr2->data[0] == 5 && cr2->data[1] == 17);
}
END_TEST

static Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("forward");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_unary_constants);
    tcase_add_test(tc, test_clamp);
    tcase_add_test(tc, test_broadcast_values);
    tcase_add_test(tc, test_broadcast_vs_naive);
    tcase_add_test(tc, test_where_masked_select);
    tcase_add_test(tc, test_reductions);
    tcase_add_test(tc, test_logsumexp);
    tcase_add_test(tc, test_reduce_deterministic);
    tcase_add_test(tc, test_shape_ops);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(ops_suite()); }
