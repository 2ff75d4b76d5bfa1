/* Finite-difference gradient checks of every non-convolution op (double build).
 *
 * Inputs are drawn uniformly from a range chosen away from each op's domain edges and kinks
 * (log of positive values, clamp boundaries avoided by random draws, ...). Shapes cover
 * broadcasting in both directions, 0-dim scalars, dims of size 1, odd sizes, every dim of the
 * reductions / slices / concatenations and several permutations. The last cases prove that the
 * checker itself fails on a wrong backward. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "lib/rng.h"
#include "tests/bl_check.h"

#ifndef BL_REAL_DOUBLE
#error "gradient checks need the double build (link bliss_f64_dep)"
#endif

/* one input: shape, uniform range, optional explicit values, whether it needs a gradient */
typedef struct spec {
    int ndim;
    int64_t shape[BL_MAX_DIMS];
    double lo, hi;
    const double *values;
    int no_grad;
} spec;

static bl_tensor *make_input(const spec *s, uint64_t stream)
{
    bl_tensor *t = bl_tensor_alloc(NULL, s->ndim, s->shape, !s->no_grad);
    bl_rng *rng = bl_rng_alloc(77, stream);
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = s->values ? s->values[i] : s->lo + (s->hi - s->lo) * bl_rng_uniform(rng);
    bl_rng_free(rng);
    return t;
}

/* fn applied twice to the same inputs and the results added: every input then receives two
 * contributions, which catches a backward that assigns instead of accumulating */
typedef struct {
    bl_gradcheck_fn *fn;
    void *user;
} twice_user;

static bl_tensor *f_twice(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const twice_user *t = u;
    bl_tensor *first = t->fn(c, in, t->user);
    return bl_add(c, first, t->fn(c, in, t->user));
}

static int run_opts(const char *name, bl_gradcheck_fn *fn, void *user, int n, const spec *s,
                    const bl_gradcheck_opts *opts)
{
    bl_tensor *in[8];
    ck_assert_int_le(n, 8);
    for (int k = 0; k < n; k++) in[k] = make_input(&s[k], (uint64_t)k);
    bl_gradcheck_result res;
    /* random inputs never land within h of a kink: any skipped element is suspicious */
    int ok = bl_gradcheck(name, fn, n, in, user, opts, &res) && res.skipped == 0;
    if (ok) {
        twice_user t = {fn, user};
        ok = bl_gradcheck(name, f_twice, n, in, &t, opts, &res) && res.skipped == 0;
    }
    if (!ok)
        fprintf(stderr, "%s: checked %d failed %d skipped %d max abs err %g\n", name, res.checked,
                res.failed, res.skipped, res.max_abs_err);
    for (int k = 0; k < n; k++) bl_tensor_free(in[k]);
    return ok;
}

static int run(const char *name, bl_gradcheck_fn *fn, void *user, int n, const spec *s)
{
    return run_opts(name, fn, user, n, s, NULL);
}

/* uniform on [lo, hi), shape (dims...) with ndim dims (a 0-dim scalar: UNIF(lo, hi, 0, 0)) */
#define UNIF(lo_, hi_, ndim_, ...) \
    {.ndim = (ndim_), .shape = {__VA_ARGS__}, .lo = (lo_), .hi = (hi_)}
#define SPECS(...) ((const spec[]){__VA_ARGS__})
#define NSPECS(...) ((int)(sizeof((const spec[]){__VA_ARGS__}) / sizeof(spec)))
/* RUN(name, fn, user, spec, spec, ...) */
#define RUN(name, fn, user, ...) run(name, fn, user, NSPECS(__VA_ARGS__), SPECS(__VA_ARGS__))

/* ---------------------------------------------------------------------------------------- */
/* binary ops */

static bl_tensor *f_add(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_add(c, in[0], in[1]);
}
static bl_tensor *f_sub(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_sub(c, in[0], in[1]);
}
static bl_tensor *f_mul(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_mul(c, in[0], in[1]);
}
static bl_tensor *f_div(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_div(c, in[0], in[1]);
}

/* pairs of shapes: same, broadcast right, broadcast left, both ways, scalar, 0-dim, 5-D */
static const spec bin_shapes[][2] = {
    {{.ndim = 2, .shape = {2, 3}}, {.ndim = 2, .shape = {2, 3}}},
    {{.ndim = 2, .shape = {2, 3}}, {.ndim = 1, .shape = {3}}},
    {{.ndim = 1, .shape = {3}}, {.ndim = 2, .shape = {2, 3}}},
    {{.ndim = 3, .shape = {2, 1, 4}}, {.ndim = 2, .shape = {3, 1}}},
    {{.ndim = 2, .shape = {3, 1}}, {.ndim = 3, .shape = {2, 1, 4}}},
    {{.ndim = 1, .shape = {1}}, {.ndim = 2, .shape = {2, 3}}},
    {{.ndim = 2, .shape = {2, 5}}, {.ndim = 0, .shape = {0}}},
    {{.ndim = 0, .shape = {0}}, {.ndim = 0, .shape = {0}}},
    {{.ndim = 3, .shape = {1, 1, 5}}, {.ndim = 3, .shape = {3, 1, 1}}},
    {{.ndim = 5, .shape = {2, 3, 1, 2, 1}}, {.ndim = 4, .shape = {3, 4, 1, 3}}},
    {{.ndim = 4, .shape = {2, 3, 5, 1}}, {.ndim = 4, .shape = {2, 1, 5, 3}}},
    {{.ndim = 1, .shape = {7}}, {.ndim = 1, .shape = {7}}},
    /* b reduced over two separated dims with a kept innermost dim >= 16 (column path) */
    {{.ndim = 4, .shape = {2, 3, 4, 17}}, {.ndim = 3, .shape = {3, 1, 17}}},
};

START_TEST(test_binary)
{
    struct {
        const char *name;
        bl_gradcheck_fn *fn;
        double blo, bhi;
    } ops[] = {{"add", f_add, -2, 2},
               {"sub", f_sub, -2, 2},
               {"mul", f_mul, -2, 2},
               {"div", f_div, 0.5, 2}};
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
        for (size_t k = 0; k < sizeof bin_shapes / sizeof *bin_shapes; k++) {
            spec s[2] = {bin_shapes[k][0], bin_shapes[k][1]};
            s[0].lo = -2, s[0].hi = 2;
            s[1].lo = ops[o].blo, s[1].hi = ops[o].bhi;
            char name[64];
            snprintf(name, sizeof name, "%s shapes #%zu", ops[o].name, k);
            ck_assert_msg(run(name, ops[o].fn, NULL, 2, s), "%s", name);
            /* only one side requiring a gradient */
            s[0].no_grad = 1;
            ck_assert_msg(run(name, ops[o].fn, NULL, 2, s), "%s (b only)", name);
            s[0].no_grad = 0, s[1].no_grad = 1;
            ck_assert_msg(run(name, ops[o].fn, NULL, 2, s), "%s (a only)", name);
        }
    }
}
END_TEST

static bl_tensor *f_mul_self(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_mul(c, in[0], in[0]);
}

static bl_tensor *f_div_self_b(bl_ctx *c, bl_tensor *const *in, void *u)
{
    /* a / (a + b): a reaches the output twice, once broadcast */
    return bl_div(c, in[0], bl_add(c, in[0], in[1]));
}

START_TEST(test_binary_shared_input)
{
    ck_assert(RUN("mul x*x", f_mul_self, NULL, UNIF(-2, 2, 2, 3, 4)));
    ck_assert(RUN("a/(a+b)", f_div_self_b, NULL, UNIF(1, 2, 2, 3, 1), UNIF(1, 2, 3, 2, 1, 4)));
}
END_TEST

/* the broadcasting engine's parallel and chunked paths need > 32768 outputs; check a sample of
 * elements (max_elements) to stay fast */
START_TEST(test_binary_large)
{
    bl_gradcheck_opts o = bl_gradcheck_defaults();
    o.max_elements = 3;
    spec s1[2] = {UNIF(-2, 2, 2, 110, 301), UNIF(0.5, 2, 1, 301)};
    ck_assert(run_opts("mul large trailing", f_mul, NULL, 2, s1, &o));
    ck_assert(run_opts("div large trailing", f_div, NULL, 2, s1, &o));
    spec s2[2] = {UNIF(-2, 2, 3, 3, 1, 4501), UNIF(0.5, 2, 2, 5, 1)};
    ck_assert(run_opts("add large both", f_add, NULL, 2, s2, &o));
    ck_assert(run_opts("div large both", f_div, NULL, 2, s2, &o));
    spec s3[2] = {UNIF(-2, 2, 1, 33000), UNIF(0.5, 2, 0, 0)};
    ck_assert(run_opts("sub large scalar", f_sub, NULL, 2, s3, &o));
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* unary ops */

static bl_tensor *f_neg(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_neg(c, in[0]);
}
static bl_tensor *f_exp(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_exp(c, in[0]);
}
static bl_tensor *f_log(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_log(c, in[0]);
}
static bl_tensor *f_log1p(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_log1p(c, in[0]);
}
static bl_tensor *f_sqrt(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_sqrt(c, in[0]);
}
static bl_tensor *f_square(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_square(c, in[0]);
}
static bl_tensor *f_sigmoid(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_sigmoid(c, in[0]);
}
static bl_tensor *f_softplus(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_softplus(c, in[0]);
}
static bl_tensor *f_silu(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_silu(c, in[0]);
}
static bl_tensor *f_erf(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_erf(c, in[0]);
}
static bl_tensor *f_log_ndtr(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_log_ndtr(c, in[0]);
}
static bl_tensor *f_add_scalar(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_add_scalar(c, in[0], *(double *)u);
}
static bl_tensor *f_mul_scalar(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_mul_scalar(c, in[0], *(double *)u);
}
static bl_tensor *f_rsub_scalar(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_rsub_scalar(c, *(double *)u, in[0]);
}
static bl_tensor *f_clamp(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const double *lh = u;
    return bl_clamp(c, in[0], lh[0], lh[1]);
}

static const spec unary_shapes[] = {
    {.ndim = 1, .shape = {7}},
    {.ndim = 2, .shape = {2, 3}},
    {.ndim = 0, .shape = {0}},
    {.ndim = 3, .shape = {1, 1, 5}},
    {.ndim = 5, .shape = {2, 1, 3, 1, 2}},
};

START_TEST(test_unary)
{
    double s = -1.75, lh[2] = {-0.6, 0.8};
    struct {
        const char *name;
        bl_gradcheck_fn *fn;
        void *user;
        double lo, hi;
    } ops[] = {
        {"neg", f_neg, NULL, -3, 3},
        {"add_scalar", f_add_scalar, &s, -3, 3},
        {"mul_scalar", f_mul_scalar, &s, -3, 3},
        {"rsub_scalar", f_rsub_scalar, &s, -3, 3},
        {"exp", f_exp, NULL, -3, 3},
        {"log", f_log, NULL, 0.05, 5},
        {"log1p", f_log1p, NULL, -0.9, 5},
        {"sqrt", f_sqrt, NULL, 0.05, 5},
        {"square", f_square, NULL, -3, 3},
        {"sigmoid", f_sigmoid, NULL, -8, 8},
        {"softplus", f_softplus, NULL, -8, 8},
        {"silu", f_silu, NULL, -6, 6},
        {"clamp", f_clamp, lh, -2, 2},
        {"erf", f_erf, NULL, -3, 3},
        {"log_ndtr", f_log_ndtr, NULL, -8, 6},
    };
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
        for (size_t k = 0; k < sizeof unary_shapes / sizeof *unary_shapes; k++) {
            spec sp = unary_shapes[k];
            sp.lo = ops[o].lo, sp.hi = ops[o].hi;
            char name[64];
            snprintf(name, sizeof name, "%s shape #%zu", ops[o].name, k);
            ck_assert_msg(run(name, ops[o].fn, ops[o].user, 1, &sp), "%s", name);
        }
    }
}
END_TEST

/* the numerically delicate regions: softplus around its threshold 20 and far below 0,
 * sigmoid/silu in the tails, log_ndtr across the erfc / asymptotic-series switch at -20 and
 * far into the tail, erf where its derivative is tiny */
START_TEST(test_unary_tails)
{
    static const double sp[] = {-40, -25.5, -3, 19.5, 20.5, 33};
    ck_assert(RUN("softplus tails", f_softplus, NULL, {.ndim = 1, .shape = {6}, .values = sp}));
    static const double sg[] = {-30, -12.5, 12.5, 30};
    ck_assert(RUN("sigmoid tails", f_sigmoid, NULL, {.ndim = 1, .shape = {4}, .values = sg}));
    ck_assert(RUN("silu tails", f_silu, NULL, {.ndim = 1, .shape = {4}, .values = sg}));
    static const double ln[] = {-60, -40, -30, -20.5, -20.0001, -19.9999, -19.5, -12, 9, 12};
    ck_assert(RUN("log_ndtr tails", f_log_ndtr, NULL, {.ndim = 1, .shape = {10}, .values = ln}));
    static const double ef[] = {-4.5, -0.01, 0.01, 4.5};
    ck_assert(RUN("erf tails", f_erf, NULL, {.ndim = 1, .shape = {4}, .values = ef}));
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* where, masked_select */

typedef struct {
    bl_tensor *cond;
} cond_user;

static bl_tensor *f_where(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_where(c, ((cond_user *)u)->cond, in[0], in[1]);
}

static bl_tensor *f_masked_select(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_masked_select(c, in[0], ((cond_user *)u)->cond);
}

static bl_tensor *make_mask(int ndim, const int64_t *shape, int period)
{
    bl_tensor *m = bl_tensor_alloc(NULL, ndim, shape, 0);
    for (int64_t i = 0; i < m->numel; i++) m->data[i] = (i % period == 1 || i % 5 == 0) ? 1 : 0;
    return m;
}

START_TEST(test_where)
{
    cond_user u;
    u.cond = make_mask(2, BL_SHAPE(3, 4), 3);
    ck_assert(RUN("where same", f_where, &u, UNIF(-2, 2, 2, 3, 4), UNIF(-2, 2, 2, 3, 4)));
    ck_assert(RUN("where bcast a,b", f_where, &u, UNIF(-2, 2, 1, 4), UNIF(-2, 2, 2, 3, 1)));
    ck_assert(RUN("where scalar b", f_where, &u, UNIF(-2, 2, 2, 3, 4), UNIF(-2, 2, 0, 0)));
    bl_tensor_free(u.cond);
    /* cond broadcast against a and b, output larger than every input */
    u.cond = make_mask(2, BL_SHAPE(3, 1), 2);
    ck_assert(RUN("where bcast cond", f_where, &u, UNIF(-2, 2, 3, 2, 1, 4), UNIF(-2, 2, 1, 4)));
    bl_tensor_free(u.cond);
    u.cond = make_mask(3, BL_SHAPE(2, 3, 4), 3);
    ck_assert(RUN("where cond largest", f_where, &u, UNIF(-2, 2, 2, 3, 1), UNIF(-2, 2, 1, 1)));
    bl_tensor_free(u.cond);
}
END_TEST

START_TEST(test_masked_select)
{
    cond_user u;
    u.cond = make_mask(2, BL_SHAPE(3, 5), 3);
    ck_assert(RUN("masked_select same", f_masked_select, &u, UNIF(-2, 2, 2, 3, 5)));
    bl_tensor_free(u.cond);
    u.cond = make_mask(1, BL_SHAPE(5), 2);
    ck_assert(RUN("masked_select bcast", f_masked_select, &u, UNIF(-2, 2, 3, 2, 3, 5)));
    bl_tensor_free(u.cond);
    u.cond = make_mask(2, BL_SHAPE(3, 1), 2);
    ck_assert(RUN("masked_select bcast col", f_masked_select, &u, UNIF(-2, 2, 2, 3, 4)));
    bl_tensor_free(u.cond);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* reductions */

static bl_tensor *f_sum(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_sum(c, in[0]);
}
static bl_tensor *f_mean(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_mean(c, in[0]);
}

typedef struct {
    int dim, keepdim;
} dim_user;

static bl_tensor *f_sum_dim(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const dim_user *d = u;
    return bl_sum_dim(c, in[0], d->dim, d->keepdim);
}
static bl_tensor *f_mean_dim(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const dim_user *d = u;
    return bl_mean_dim(c, in[0], d->dim, d->keepdim);
}
static bl_tensor *f_logsumexp_dim(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const dim_user *d = u;
    return bl_logsumexp_dim(c, in[0], d->dim, d->keepdim);
}

START_TEST(test_sum_mean)
{
    for (size_t k = 0; k < sizeof unary_shapes / sizeof *unary_shapes; k++) {
        spec sp = unary_shapes[k];
        sp.lo = -3, sp.hi = 3;
        ck_assert_msg(run("sum", f_sum, NULL, 1, &sp), "sum shape #%zu", k);
        ck_assert_msg(run("mean", f_mean, NULL, 1, &sp), "mean shape #%zu", k);
    }
    /* more than one block (8192) of reduced elements: partial sums combined in order */
    bl_gradcheck_opts o = bl_gradcheck_defaults();
    o.max_elements = 12;
    spec big = UNIF(-3, 3, 2, 101, 203);
    ck_assert(run_opts("sum large", f_sum, NULL, 1, &big, &o));
    ck_assert(run_opts("mean large", f_mean, NULL, 1, &big, &o));
}
END_TEST

START_TEST(test_dim_reductions)
{
    /* the last shape has an innermost dim >= 16: kept, it takes the column-reduction path */
    static const spec shapes[] = {{.ndim = 1, .shape = {5}},
                                  {.ndim = 2, .shape = {3, 4}},
                                  {.ndim = 3, .shape = {2, 1, 3}},
                                  {.ndim = 4, .shape = {2, 3, 1, 4}},
                                  {.ndim = 5, .shape = {2, 1, 3, 2, 3}},
                                  {.ndim = 3, .shape = {3, 2, 17}}};
    struct {
        const char *name;
        bl_gradcheck_fn *fn;
    } ops[] = {
        {"sum_dim", f_sum_dim}, {"mean_dim", f_mean_dim}, {"logsumexp_dim", f_logsumexp_dim}};
    for (size_t o = 0; o < 3; o++) {
        for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
            spec sp = shapes[k];
            sp.lo = -3, sp.hi = 3;
            for (int dim = -1; dim < sp.ndim; dim++) {
                for (int keep = 0; keep < 2; keep++) {
                    dim_user u = {dim, keep};
                    char name[96];
                    snprintf(name, sizeof name, "%s shape #%zu dim %d keepdim %d", ops[o].name, k,
                             dim, keep);
                    ck_assert_msg(run(name, ops[o].fn, &u, 1, &sp), "%s", name);
                }
            }
        }
    }
    /* many reduced elements along dim 0 of a tall tensor: several blocks per output */
    bl_gradcheck_opts opt = bl_gradcheck_defaults();
    opt.max_elements = 10;
    spec tall = UNIF(-3, 3, 2, 9000, 3);
    dim_user u0 = {0, 0};
    ck_assert(run_opts("sum_dim tall", f_sum_dim, &u0, 1, &tall, &opt));
    spec tall_wide = UNIF(-3, 3, 2, 8500, 17);
    ck_assert(run_opts("sum_dim tall, columns", f_sum_dim, &u0, 1, &tall_wide, &opt));
    ck_assert(run_opts("mean_dim tall, columns", f_mean_dim, &u0, 1, &tall_wide, &opt));
    ck_assert(run_opts("logsumexp_dim tall", f_logsumexp_dim, &u0, 1, &tall, &opt));
}
END_TEST

START_TEST(test_logsumexp_special)
{
    /* rows: large values (needs the max shift), one -inf entry, all -inf (gradient 0) */
    static const double v[] = {800, 801,       799.5,     0.5,      -INFINITY,
                               1.5, -INFINITY, -INFINITY, -INFINITY};
    dim_user u = {1, 0};
    spec sp = {.ndim = 2, .shape = {3, 3}, .values = v};
    bl_tensor *x = make_input(&sp, 0);
    bl_gradcheck_result res;
    ck_assert(bl_gradcheck("logsumexp special", f_logsumexp_dim, 1, &x, &u, NULL, &res));
    /* -inf +- h is -inf: those 4 elements have no finite difference (their analytic gradient,
     * 0, is asserted in test_ops) */
    ck_assert_int_eq(res.checked, 5);
    ck_assert_int_eq(res.skipped, 4);
    bl_tensor_free(x);
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* shape ops */

typedef struct {
    int ndim;
    int64_t shape[BL_MAX_DIMS];
} shape_user;

static bl_tensor *f_reshape(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const shape_user *s = u;
    /* a reshape alone passes any gradient through unchanged; squaring afterwards makes the
     * check see that the view's gradient reaches the right elements */
    return bl_square(c, bl_reshape(c, in[0], s->ndim, s->shape));
}

static bl_tensor *f_permute(bl_ctx *c, bl_tensor *const *in, void *u)
{
    return bl_permute(c, in[0], (const int *)u);
}

typedef struct {
    int dim;
    int64_t start, end;
} slice_user;

static bl_tensor *f_slice(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const slice_user *s = u;
    return bl_slice(c, in[0], s->dim, s->start, s->end);
}

typedef struct {
    int dim, n, pick;
    int64_t sizes[4];
} split_user;

static bl_tensor *f_split(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const split_user *s = u;
    bl_tensor *out[4];
    bl_split(c, in[0], s->dim, s->n, s->sizes, out);
    return out[s->pick];
}

static bl_tensor *f_concat(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const int *nd = u; /* {n, dim} */
    return bl_concat(c, nd[0], in, nd[1]);
}

static bl_tensor *f_pad2d(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const int *p = u;
    return bl_pad2d(c, in[0], p[0], p[1], p[2], p[3]);
}

static bl_tensor *f_crop2d(bl_ctx *c, bl_tensor *const *in, void *u)
{
    const int *p = u;
    return bl_crop2d(c, in[0], p[0], p[1], p[2], p[3]);
}

START_TEST(test_reshape)
{
    shape_user a = {.ndim = 2, .shape = {3, 4}}, b = {.ndim = 3, .shape = {2, -1, 3}},
               c = {.ndim = 1, .shape = {-1}}, d = {.ndim = 5, .shape = {1, 2, 1, 6, 1}},
               e = {.ndim = 0, .shape = {0}};
    ck_assert(RUN("reshape (12)->(3,4)", f_reshape, &a, UNIF(-2, 2, 1, 12)));
    ck_assert(RUN("reshape (3,4)->(2,-1,3)", f_reshape, &b, UNIF(-2, 2, 2, 3, 4)));
    ck_assert(RUN("reshape (2,3,2)->(-1)", f_reshape, &c, UNIF(-2, 2, 3, 2, 3, 2)));
    ck_assert(RUN("reshape 5-D", f_reshape, &d, UNIF(-2, 2, 2, 4, 3)));
    ck_assert(RUN("reshape (1,1)->()", f_reshape, &e, UNIF(-2, 2, 2, 1, 1)));
}
END_TEST

START_TEST(test_permute)
{
    int p2[] = {1, 0}, p3a[] = {2, 0, 1}, p3b[] = {0, 2, 1}, p4[] = {0, 2, 3, 1},
        p5[] = {4, 2, 0, 3, 1}, p5b[] = {0, 1, 2, 3, 4};
    ck_assert(RUN("permute 2", f_permute, p2, UNIF(-2, 2, 2, 3, 5)));
    ck_assert(RUN("permute 3a", f_permute, p3a, UNIF(-2, 2, 3, 2, 3, 4)));
    ck_assert(RUN("permute 3b", f_permute, p3b, UNIF(-2, 2, 3, 2, 1, 4)));
    ck_assert(RUN("permute 4 (NCHW->NHWC)", f_permute, p4, UNIF(-2, 2, 4, 2, 3, 2, 3)));
    ck_assert(RUN("permute 5", f_permute, p5, UNIF(-2, 2, 5, 2, 3, 1, 2, 3)));
    ck_assert(RUN("permute identity", f_permute, p5b, UNIF(-2, 2, 5, 2, 1, 2, 1, 3)));
}
END_TEST

START_TEST(test_slice_split)
{
    static const spec shapes[] = {{.ndim = 1, .shape = {7}},
                                  {.ndim = 2, .shape = {4, 5}},
                                  {.ndim = 3, .shape = {3, 4, 5}},
                                  {.ndim = 4, .shape = {3, 3, 4, 3}}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        spec sp = shapes[k];
        sp.lo = -2, sp.hi = 2;
        for (int dim = 0; dim < sp.ndim; dim++) {
            int64_t n = sp.shape[dim];
            slice_user ranges[] = {{dim, 1, n - 1}, {dim, 0, 1}, {dim, n - 1, n}, {dim, 0, n}};
            for (int r = 0; r < 4; r++) {
                char name[80];
                snprintf(name, sizeof name, "slice shape #%zu dim %d [%lld, %lld)", k, dim,
                         (long long)ranges[r].start, (long long)ranges[r].end);
                ck_assert_msg(run(name, f_slice, &ranges[r], 1, &sp), "%s", name);
            }
            slice_user neg = {dim - sp.ndim, 1, n};
            ck_assert_msg(run("slice negative dim", f_slice, &neg, 1, &sp), "negative dim %d",
                          neg.dim);
            split_user su = {dim, 3, 0, {1, n - 3, 2}};
            for (su.pick = 0; su.pick < 3; su.pick++) {
                char name[80];
                snprintf(name, sizeof name, "split shape #%zu dim %d piece %d", k, dim, su.pick);
                ck_assert_msg(run(name, f_split, &su, 1, &sp), "%s", name);
            }
        }
    }
}
END_TEST

START_TEST(test_concat)
{
    int nd[2];
    /* each dim of a 3-D tensor, 3 inputs of different sizes along it, middle one constant */
    for (int dim = 0; dim < 3; dim++) {
        spec s[3];
        for (int k = 0; k < 3; k++) {
            s[k] = (spec)UNIF(-2, 2, 3, 2, 3, 4);
            s[k].shape[dim] = k + 1;
        }
        s[1].no_grad = 1;
        nd[0] = 3, nd[1] = dim;
        char name[64];
        snprintf(name, sizeof name, "concat dim %d", dim);
        ck_assert_msg(run(name, f_concat, nd, 3, s), "%s", name);
        nd[1] = dim - 3;
        ck_assert_msg(run(name, f_concat, nd, 3, s), "%s (negative dim)", name);
    }
    nd[0] = 1, nd[1] = 0;
    ck_assert(RUN("concat single", f_concat, nd, UNIF(-2, 2, 2, 2, 3)));
    nd[0] = 2, nd[1] = 1;
    ck_assert(RUN("concat 5-D", f_concat, nd, UNIF(-2, 2, 5, 2, 1, 2, 1, 2),
                  UNIF(-2, 2, 5, 2, 3, 2, 1, 2)));
}
END_TEST

START_TEST(test_pad_crop)
{
    int pads[][4] = {{1, 2, 3, 0}, {0, 0, 0, 0}, {2, 2, 1, 1}, {0, 1, 0, 2}};
    static const spec shapes[] = {{.ndim = 2, .shape = {3, 4}},
                                  {.ndim = 4, .shape = {2, 1, 3, 5}},
                                  {.ndim = 3, .shape = {2, 5, 3}}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        for (int p = 0; p < 4; p++) {
            spec sp = shapes[k];
            sp.lo = -2, sp.hi = 2;
            char name[64];
            snprintf(name, sizeof name, "pad2d shape #%zu pads #%d", k, p);
            ck_assert_msg(run(name, f_pad2d, pads[p], 1, &sp), "%s", name);
            /* crop needs room: grow the last two dims by the border */
            sp.shape[sp.ndim - 2] += pads[p][0] + pads[p][1];
            sp.shape[sp.ndim - 1] += pads[p][2] + pads[p][3];
            snprintf(name, sizeof name, "crop2d shape #%zu crops #%d", k, p);
            ck_assert_msg(run(name, f_crop2d, pads[p], 1, &sp), "%s", name);
        }
    }
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* a composite: a small negative log-likelihood using several ops at once */

static bl_tensor *f_composite(bl_ctx *c, bl_tensor *const *in, void *u)
{
    /* in[0] (4, 3) raw outputs, in[1] (3) scale; nll = -logsumexp(log_ndtr(x * s) - x^2, 1) */
    bl_tensor *z = bl_mul(c, in[0], in[1]);
    bl_tensor *l = bl_sub(c, bl_log_ndtr(c, z), bl_square(c, in[0]));
    bl_tensor *p = bl_permute(c, bl_pad2d(c, l, 1, 0, 0, 1), (const int[]){1, 0});
    return bl_neg(c, bl_mean(c, bl_logsumexp_dim(c, bl_crop2d(c, p, 0, 1, 1, 0), 0, 0)));
}

START_TEST(test_composite)
{
    ck_assert(RUN("composite", f_composite, NULL, UNIF(-2, 2, 2, 4, 3), UNIF(0.5, 3, 1, 3)));
}
END_TEST

/* ---------------------------------------------------------------------------------------- */
/* the checker must fail on wrong backwards */

/* x^2 with a backward missing the factor 2 */
static void bad_square_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *a = node->in[0];
    bl_real *ga = bl_grad(ctx, a);
    for (int64_t i = 0; i < a->numel; i++) ga[i] += node->out->grad[i] * a->data[i];
}

static bl_tensor *f_bad_square(bl_ctx *c, bl_tensor *const *in, void *u)
{
    bl_tensor *a = in[0], *out = bl_new_like(c, a);
    for (int64_t i = 0; i < a->numel; i++) out->data[i] = a->data[i] * a->data[i];
    bl_tape_push(c, "bad_square", bad_square_backward, out, 1, &a, 0);
    return out;
}

/* identity whose backward ASSIGNS instead of accumulating: wrong when the input is used twice */
static void bad_assign_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *a = node->in[0];
    bl_real *ga = bl_grad(ctx, a);
    for (int64_t i = 0; i < a->numel; i++) ga[i] = node->out->grad[i];
}

static bl_tensor *f_bad_assign_twice(bl_ctx *c, bl_tensor *const *in, void *u)
{
    bl_tensor *a = in[0], *out = bl_new_like(c, a);
    memcpy(out->data, a->data, (size_t)a->numel * sizeof(bl_real));
    bl_tape_push(c, "bad_assign", bad_assign_backward, out, 1, &a, 0);
    return bl_mul(c, out, bl_exp(c, a)); /* a reaches the output through both factors */
}

START_TEST(test_gradcheck_catches_wrong_backward)
{
    spec sp = UNIF(0.5, 2, 2, 2, 3);
    bl_tensor *x = make_input(&sp, 5);
    bl_gradcheck_result res;
    ck_assert_int_eq(
        bl_gradcheck("bad_square (expected to fail)", f_bad_square, 1, &x, NULL, NULL, &res), 0);
    ck_assert_int_eq(res.failed, 6);
    ck_assert_int_eq(res.checked, 6);
    ck_assert_int_eq(
        bl_gradcheck("bad_assign (expected to fail)", f_bad_assign_twice, 1, &x, NULL, NULL, &res),
        0);
    ck_assert_int_gt(res.failed, 0);
    /* the correct op on the same input passes */
    ck_assert_int_eq(bl_gradcheck("square", f_square, 1, &x, NULL, NULL, &res), 1);
    ck_assert_int_eq(res.failed, 0);
    bl_tensor_free(x);
}
END_TEST

START_TEST(test_gradcheck_bookkeeping)
{
    spec sp = UNIF(-1, 1, 1, 5);
    bl_tensor *x = make_input(&sp, 9);
    double before[5];
    for (int i = 0; i < 5; i++) {
        before[i] = x->data[i];
        x->grad[i] = 7; /* an accumulated gradient the check must not disturb */
    }
    bl_gradcheck_opts o = bl_gradcheck_defaults();
    o.max_elements = 2;
    bl_gradcheck_result res;
    ck_assert(bl_gradcheck("exp", f_exp, 1, &x, NULL, &o, &res));
    ck_assert_int_eq(res.checked, 2);
    for (int i = 0; i < 5; i++) {
        ck_assert(x->grad[i] == 7);
        ck_assert(x->data[i] == before[i]); /* restored bit for bit */
    }
    /* nothing requires a gradient: nothing checked is a failure, not a vacuous pass */
    x->requires_grad = 0;
    ck_assert_int_eq(bl_gradcheck("no grad (expected to fail)", f_exp, 1, &x, NULL, NULL, &res), 0);
    ck_assert_int_eq(res.checked, 0);
    x->requires_grad = 1;

    /* an element within h of a clamp boundary is skipped as a kink, not reported as failure */
    double lh[2] = {-0.5, 0.5};
    x->data[0] = -0.5 + 0.7e-6;
    x->data[1] = 0.1;
    x->data[2] = 0.9;
    x->data[3] = 0.5 - 0.6e-6;
    x->data[4] = -0.2;
    ck_assert(bl_gradcheck("clamp near kink", f_clamp, 1, &x, lh, NULL, &res));
    ck_assert_int_eq(res.skipped, 2);
    ck_assert_int_eq(res.checked, 3);
    bl_tensor_free(x);
}
END_TEST

static Suite *gradcheck_ops_suite(void)
{
    Suite *s = suite_create("gradcheck_ops");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_binary);
    tcase_add_test(tc, test_binary_shared_input);
    tcase_add_test(tc, test_binary_large);
    tcase_add_test(tc, test_unary);
    tcase_add_test(tc, test_unary_tails);
    tcase_add_test(tc, test_where);
    tcase_add_test(tc, test_masked_select);
    tcase_add_test(tc, test_sum_mean);
    tcase_add_test(tc, test_dim_reductions);
    tcase_add_test(tc, test_logsumexp_special);
    tcase_add_test(tc, test_reshape);
    tcase_add_test(tc, test_permute);
    tcase_add_test(tc, test_slice_split);
    tcase_add_test(tc, test_concat);
    tcase_add_test(tc, test_pad_crop);
    tcase_add_test(tc, test_composite);
    tcase_add_test(tc, test_gradcheck_catches_wrong_backward);
    tcase_add_test(tc, test_gradcheck_bookkeeping);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(gradcheck_ops_suite()); }
