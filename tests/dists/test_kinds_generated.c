/* Tests generated from the kind table: every registered distribution kind (the built-ins and
 * any kind registered before the suite is built, like the toy kind of this file) gets the same
 * checks, with no test code of its own (double build):
 *   gradcheck        finite differences of log_prob w.r.t. raw, at values the kind samples
 *   sampler_density  1-D: Kolmogorov-Smirnov of the samples against the CDF integrated from
 *                    the density; discrete: frequencies against the mass; 2-D: a 4 x 4
 *                    histogram against the density integrated over each bin
 *   normalisation    1-D: adaptive quadrature of exp(log_prob) over the samples' range;
 *                    discrete: the masses sum to 1; 2-D: Simpson on a grid
 *   mode             no grid point (samples, midpoints, or a 2-D grid) has a higher density,
 *                    and a golden-section search lands on the mode
 *   median           the CDF is 1/2 there (per dimension for 2-D; both tails >= 1/2 if discrete)
 *   cdf              (kinds with one) 1-D: equals the CDF integrated from the density; every
 *                    kind: the draws' CDF values (PIT) fall in the central 68% / 95% intervals
 *                    68% / 95% of the time (4 standard errors), and the median's CDF is 1/2
 *   options          example_opts pass; each option NaN or inf, or missing from a factor entry,
 *                    is refused naming it; an option a kind lacks is refused
 * Raw parameters are drawn uniformly in [-1.2, 1.2] (inside every built-in clamp) from a
 * stream of the kind's index, so each case is reproducible. */
#include <check.h>
#include <gsl/gsl_integration.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "dists/vardist.h"
#include "tests/bl_check.h"

#ifndef BL_REAL_DOUBLE
#error "the generated kind tests need the double build (link bliss_f64_dep)"
#endif

/* ---- a toy kind, registered in main: it gets every generated test ---- */

/* shifted exponential: v = shift + Exp(rate), rate = e^raw */
static bl_tensor *toy_log_prob(bl_ctx *c, const double *o, bl_tensor *raw, bl_tensor *value)
{
    bl_tensor *d = bl_add_scalar(c, value, -o[0]);
    return bl_sum_dim(c, bl_sub(c, raw, bl_mul(c, bl_exp(c, raw), d)), -1, 0);
}
static void toy_sample(const double *o, const bl_real *raw, bl_rng *rng, bl_real *v)
{
    v[0] = o[0] - log(bl_rng_uniform_pos(rng)) / exp(raw[0]);
}
static void toy_mode(const double *o, const bl_real *raw, bl_real *v)
{
    (void)raw;
    v[0] = o[0];
}
static void toy_median(const double *o, const bl_real *raw, bl_real *v) { v[0] = o[0] + M_LN2 / exp(raw[0]); }
static double toy_cdf(const double *o, const bl_real *raw, int d, double v)
{
    (void)d;
    return v <= o[0] ? 0 : -expm1(-exp(raw[0]) * (v - o[0]));
}

static const bl_dist_kind toy_kind = {
    .name = "toy_shifted_exponential", .dim = 1, .value_dim = 1, .n_opts = 1,
    .opt_names = {"shift"}, .example_opts = {0.5},
    .log_prob = toy_log_prob, .sample = toy_sample, .mode = toy_mode, .median = toy_median,
    .cdf = toy_cdf,
};

/* ---- helpers ---- */

enum { N_SAMPLES = 20000 };

static bl_ctx *ctx;

/* log_prob of n values (n, value_dim) at one raw row, into out[n] */
static void lp_many(const bl_dist_kind *k, const double *opts, const bl_real *raw, const double *values,
                    int64_t n, double *out)
{
    bl_tensor *r = bl_new(ctx, 2, BL_SHAPE(n, k->dim));
    bl_tensor *v = bl_new(ctx, 2, BL_SHAPE(n, k->value_dim));
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < k->dim; j++) r->data[i * k->dim + j] = raw[j];
        for (int j = 0; j < k->value_dim; j++) v->data[i * k->value_dim + j] = values[i * k->value_dim + j];
    }
    bl_tensor *lp = k->log_prob(ctx, opts, r, v);
    ck_assert_int_eq(lp->numel, n);
    for (int64_t i = 0; i < n; i++) out[i] = lp->data[i];
    bl_ctx_reset(ctx);
}

static double lp_one(const bl_dist_kind *k, const double *opts, const bl_real *raw, const double *value)
{
    double out;
    lp_many(k, opts, raw, value, 1, &out);
    return out;
}

typedef struct {
    const bl_dist_kind *kind;
    const double *opts;
    bl_real raw[16];
    double *x;         /* N_SAMPLES * value_dim draws; 1-D: sorted */
    double lo[2], hi[2]; /* per dimension range of the draws */
} kind_case;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void case_init(kind_case *c, const bl_dist_kind *k, int index)
{
    ck_assert_int_le(k->dim, 16);
    c->kind = k;
    c->opts = k->example_opts;
    bl_rng *rng = bl_rng_alloc(20261201, (uint64_t)index);
    for (int j = 0; j < k->dim; j++) c->raw[j] = -1.2 + 2.4 * bl_rng_uniform(rng);
    c->x = malloc((size_t)N_SAMPLES * (size_t)k->value_dim * sizeof *c->x);
    ck_assert_ptr_nonnull(c->x);
    bl_real v[8];
    ck_assert_int_le(k->value_dim, 8);
    for (int i = 0; i < N_SAMPLES; i++) {
        k->sample(c->opts, c->raw, rng, v);
        for (int d = 0; d < k->value_dim; d++) c->x[i * k->value_dim + d] = v[d];
    }
    if (k->value_dim == 1) qsort(c->x, N_SAMPLES, sizeof *c->x, cmp_double);
    for (int d = 0; d < k->value_dim && d < 2; d++) {
        c->lo[d] = INFINITY;
        c->hi[d] = -INFINITY;
        for (int i = 0; i < N_SAMPLES; i++) {
            c->lo[d] = fmin(c->lo[d], c->x[i * k->value_dim + d]);
            c->hi[d] = fmax(c->hi[d], c->x[i * k->value_dim + d]);
        }
    }
    bl_rng_free(rng);
}

/* distinct values of a discrete 1-D kind (at most 64) */
static int distinct(const kind_case *c, double *vals, int *count)
{
    int n = 0;
    for (int i = 0; i < N_SAMPLES; i++) {
        if (n == 0 || c->x[i] != vals[n - 1]) {
            ck_assert_msg(n < 64, "%s: more than 64 distinct values", c->kind->name);
            vals[n] = c->x[i];
            count[n++] = 0;
        }
        count[n - 1]++;
    }
    return n;
}

/* 1-D CDF at the sorted draws by Simpson on [x_i, x_{i+1}]: F[0] = 0 */
static void cdf_at_draws(const kind_case *c, double *F)
{
    int64_t m = 2 * N_SAMPLES - 1;
    double *pts = malloc((size_t)m * sizeof *pts), *lp = malloc((size_t)m * sizeof *lp);
    for (int i = 0; i < N_SAMPLES; i++) {
        pts[2 * i] = c->x[i];
        if (i + 1 < N_SAMPLES) pts[2 * i + 1] = 0.5 * (c->x[i] + c->x[i + 1]);
    }
    lp_many(c->kind, c->opts, c->raw, pts, m, lp);
    F[0] = 0;
    for (int i = 0; i + 1 < N_SAMPLES; i++) {
        double h = c->x[i + 1] - c->x[i];
        F[i + 1] = F[i] + h / 6 * (exp(lp[2 * i]) + 4 * exp(lp[2 * i + 1]) + exp(lp[2 * i + 2]));
    }
    free(pts);
    free(lp);
}

typedef struct {
    const kind_case *c;
} quad_user;

static double density_1d(double x, void *user)
{
    const kind_case *c = ((quad_user *)user)->c;
    return exp(lp_one(c->kind, c->opts, c->raw, &x));
}

/* integral of the 1-D density over [a, b] (adaptive, GSL qags) */
static double integrate_1d(const kind_case *c, double a, double b)
{
    gsl_integration_workspace *w = gsl_integration_workspace_alloc(1000);
    quad_user u = {c};
    gsl_function f = {density_1d, &u};
    double r, err;
    int st = gsl_integration_qags(&f, a, b, 1e-10, 1e-8, 1000, w, &r, &err);
    gsl_integration_workspace_free(w);
    ck_assert_msg(st == 0, "%s: quadrature on [%g, %g] failed (%d)", c->kind->name, a, b, st);
    return r;
}

/* 2-D: density on a (G+1)^2 grid over [x0, x1] x [y0, y1] with Simpson weights (G even) */
enum { G = 128 };
static double *grid_2d(const kind_case *c, const double x[2], const double y[2])
{
    double *pts = malloc(sizeof(double) * 2 * (G + 1) * (G + 1)), *lp = malloc(sizeof(double) * (G + 1) * (G + 1));
    for (int i = 0; i <= G; i++)
        for (int j = 0; j <= G; j++) {
            pts[2 * (i * (G + 1) + j)] = x[0] + (x[1] - x[0]) * i / G;
            pts[2 * (i * (G + 1) + j) + 1] = y[0] + (y[1] - y[0]) * j / G;
        }
    lp_many(c->kind, c->opts, c->raw, pts, (G + 1) * (G + 1), lp);
    free(pts);
    return lp;
}
/* the grid over the draws' bounding box */
static double *grid_draws(const kind_case *c)
{
    const double x[2] = {c->lo[0], c->hi[0]}, y[2] = {c->lo[1], c->hi[1]};
    return grid_2d(c, x, y);
}
/* integral of exp(lp) over the grid cells [i0, i1] x [j0, j1] (even bounds) */
static double grid_mass(const double *lp, int i0, int i1, int j0, int j1, double hx, double hy)
{
    double s = 0;
    for (int i = i0; i <= i1; i++)
        for (int j = j0; j <= j1; j++) {
            double wi = i == i0 || i == i1 ? 1 : (i % 2 ? 4 : 2), wj = j == j0 || j == j1 ? 1 : (j % 2 ? 4 : 2);
            s += wi * wj * exp(lp[i * (G + 1) + j]);
        }
    return s * hx * hy / 9;
}

/* ---- the checks ---- */

static bl_tensor *gc_fn(bl_ctx *c, bl_tensor *const *in, void *user)
{
    const kind_case *k = ((void **)user)[0];
    return k->kind->log_prob(c, k->opts, in[0], ((bl_tensor **)user)[1]);
}

static void check_gradcheck(kind_case *c)
{
    const bl_dist_kind *k = c->kind;
    bl_rng *rng = bl_rng_alloc(7, 1);
    bl_tensor *raw = bl_tensor_alloc("raw", 2, BL_SHAPE(6, k->dim), 1);
    bl_tensor *value = bl_tensor_alloc("value", 2, BL_SHAPE(6, k->value_dim), 0);
    for (int i = 0; i < 6; i++) {
        for (int j = 0; j < k->dim; j++) raw->data[i * k->dim + j] = -1.2 + 2.4 * bl_rng_uniform(rng);
        k->sample(c->opts, raw->data + i * k->dim, rng, value->data + i * k->value_dim);
    }
    void *user[2] = {c, value};
    bl_gradcheck_opts o = bl_gradcheck_defaults();
    bl_gradcheck_result r;
    int ok = bl_gradcheck(k->name, gc_fn, 1, (bl_tensor *[]){raw}, user, &o, &r);
    ck_assert_msg(ok, "%s: %d of %d failed (max abs err %g)", k->name, r.failed, r.checked, r.max_abs_err);
    ck_assert_int_ge(r.checked, (int)raw->numel - 1);
    bl_tensor_free(raw);
    bl_tensor_free(value);
    bl_rng_free(rng);
}

static void check_sampler_density(kind_case *c)
{
    const bl_dist_kind *k = c->kind;
    if (k->discrete) {
        double vals[64], lp[64];
        int count[64], n = distinct(c, vals, count);
        lp_many(k, c->opts, c->raw, vals, n, lp);
        for (int i = 0; i < n; i++) {
            double p = exp(lp[i]), f = (double)count[i] / N_SAMPLES, se = sqrt(p * (1 - p) / N_SAMPLES);
            ck_assert_msg(fabs(f - p) < 5 * se + 1e-9, "%s: value %g drawn %g of the time, mass %g", k->name,
                          vals[i], f, p);
        }
    } else if (k->value_dim == 1) {
        double *F = malloc(N_SAMPLES * sizeof *F), D = 0;
        cdf_at_draws(c, F);
        for (int i = 0; i < N_SAMPLES; i++)
            D = fmax(D, fmax(fabs(F[i] - (double)i / N_SAMPLES), fabs(F[i] - (double)(i + 1) / N_SAMPLES)));
        free(F);
        /* P(D > 1.95 / sqrt(N)) = 0.001 */
        ck_assert_msg(D < 1.95 / sqrt(N_SAMPLES) + 2.0 / N_SAMPLES, "%s: KS distance %g", k->name, D);
    } else {
        ck_assert_msg(k->value_dim == 2, "%s: the generated tests cover value_dim 1 and 2, not %d", k->name,
                      k->value_dim);
        double *lp = grid_draws(c), hx = (c->hi[0] - c->lo[0]) / G, hy = (c->hi[1] - c->lo[1]) / G;
        enum { NB = 4 };
        int count[NB][NB] = {{0}};
        for (int i = 0; i < N_SAMPLES; i++) {
            int a = (int)((c->x[2 * i] - c->lo[0]) / (c->hi[0] - c->lo[0]) * NB);
            int b = (int)((c->x[2 * i + 1] - c->lo[1]) / (c->hi[1] - c->lo[1]) * NB);
            count[a < NB ? a : NB - 1][b < NB ? b : NB - 1]++;
        }
        for (int a = 0; a < NB; a++)
            for (int b = 0; b < NB; b++) {
                double p = grid_mass(lp, a * G / NB, (a + 1) * G / NB, b * G / NB, (b + 1) * G / NB, hx, hy);
                double f = (double)count[a][b] / N_SAMPLES, se = sqrt(p * (1 - p) / N_SAMPLES);
                ck_assert_msg(fabs(f - p) < 5 * se + 2e-3, "%s: bin (%d, %d) holds %g of the draws, mass %g",
                              k->name, a, b, f, p);
            }
        free(lp);
    }
}

static void check_normalisation(kind_case *c)
{
    const bl_dist_kind *k = c->kind;
    double mass;
    if (k->discrete) {
        double vals[64], lp[64];
        int count[64], n = distinct(c, vals, count);
        lp_many(k, c->opts, c->raw, vals, n, lp);
        mass = 0;
        for (int i = 0; i < n; i++) mass += exp(lp[i]);
        ck_assert_msg(mass <= 1 + 1e-9, "%s: masses sum to %.12g", k->name, mass);
    } else if (k->value_dim == 1) {
        mass = integrate_1d(c, c->lo[0], c->hi[0]);
    } else {
        ck_assert_int_eq(k->value_dim, 2);
        double *lp = grid_draws(c);
        mass = grid_mass(lp, 0, G, 0, G, (c->hi[0] - c->lo[0]) / G, (c->hi[1] - c->lo[1]) / G);
        free(lp);
    }
    /* the draws' range misses O(1/N) of the mass */
    ck_assert_msg(fabs(mass - 1) < 2e-3, "%s: the density integrates to %.9g over the draws' range", k->name,
                  mass);
}

static void check_mode(kind_case *c)
{
    const bl_dist_kind *k = c->kind;
    bl_real m[8];
    k->mode(c->opts, c->raw, m);
    double mv[2] = {m[0], k->value_dim > 1 ? m[1] : 0}, lpm = lp_one(k, c->opts, c->raw, mv);
    ck_assert_msg(isfinite(lpm), "%s: log_prob at the mode %g is %g", k->name, mv[0], lpm);
    if (k->discrete) {
        double vals[64], lp[64];
        int count[64], n = distinct(c, vals, count);
        lp_many(k, c->opts, c->raw, vals, n, lp);
        for (int i = 0; i < n; i++)
            ck_assert_msg(lp[i] <= lpm + 1e-12, "%s: mass at %g exceeds the mass at the mode %g", k->name,
                          vals[i], mv[0]);
    } else if (k->value_dim == 1) {
        /* the draws and their midpoints; then golden section around the best one */
        int64_t n = 2 * N_SAMPLES - 1, best = 0;
        double *pts = malloc((size_t)n * sizeof *pts), *lp = malloc((size_t)n * sizeof *lp);
        for (int i = 0; i < N_SAMPLES; i++) {
            pts[2 * i] = c->x[i];
            if (i + 1 < N_SAMPLES) pts[2 * i + 1] = 0.5 * (c->x[i] + c->x[i + 1]);
        }
        lp_many(k, c->opts, c->raw, pts, n, lp);
        for (int64_t i = 0; i < n; i++)
            if (lp[i] > lp[best]) best = i;
        ck_assert_msg(lp[best] <= lpm + 1e-9 * (1 + fabs(lpm)), "%s: density at %g above the mode %g (%g > %g)",
                      k->name, pts[best], mv[0], lp[best], lpm);
        double a = pts[best > 0 ? best - 1 : 0], b = pts[best + 1 < n ? best + 1 : n - 1];
        const double r = (sqrt(5) - 1) / 2;
        for (int it = 0; it < 100; it++) {
            double x1 = b - r * (b - a), x2 = a + r * (b - a);
            if (lp_one(k, c->opts, c->raw, &x1) >= lp_one(k, c->opts, c->raw, &x2)) b = x2; else a = x1;
        }
        double scale = c->x[3 * N_SAMPLES / 4] - c->x[N_SAMPLES / 4];
        ck_assert_msg(fabs(0.5 * (a + b) - mv[0]) < 1e-3 * scale, "%s: mode %.9g, numeric argmax %.9g", k->name,
                      mv[0], 0.5 * (a + b));
        free(pts);
        free(lp);
    } else {
        ck_assert_int_eq(k->value_dim, 2);
        double *lp = grid_draws(c);
        int best = 0;
        for (int i = 0; i < (G + 1) * (G + 1); i++)
            if (lp[i] > lp[best]) best = i;
        double bx = c->lo[0] + (c->hi[0] - c->lo[0]) * (best / (G + 1)) / G;
        double by = c->lo[1] + (c->hi[1] - c->lo[1]) * (best % (G + 1)) / G;
        ck_assert_msg(lp[best] <= lpm + 1e-9 * (1 + fabs(lpm)), "%s: density at (%g, %g) above the mode", k->name,
                      bx, by);
        ck_assert_msg(fabs(bx - mv[0]) <= 1.01 * (c->hi[0] - c->lo[0]) / G &&
                          fabs(by - mv[1]) <= 1.01 * (c->hi[1] - c->lo[1]) / G,
                      "%s: mode (%g, %g), grid argmax (%g, %g)", k->name, mv[0], mv[1], bx, by);
        free(lp);
    }
}

static void check_median(kind_case *c)
{
    const bl_dist_kind *k = c->kind;
    bl_real m[8];
    /* without a median the factors' point estimate is the mode (dists/kind.h): test that one */
    (k->median ? k->median : k->mode)(c->opts, c->raw, m);
    if (!k->median) fprintf(stderr, "%s: no median; the mode stands for it\n", k->name);
    if (k->discrete) {
        double vals[64], lp[64], below = 0, above = 0;
        int count[64], n = distinct(c, vals, count);
        lp_many(k, c->opts, c->raw, vals, n, lp);
        for (int i = 0; i < n; i++) {
            if (vals[i] <= m[0]) below += exp(lp[i]);
            if (vals[i] >= m[0]) above += exp(lp[i]);
        }
        ck_assert_msg(below >= 0.5 - 1e-12 && above >= 0.5 - 1e-12, "%s: median %g has P(X <= m) = %g, P(X >= m) = %g",
                      k->name, (double)m[0], below, above);
    } else if (k->value_dim == 1) {
        double total = integrate_1d(c, c->lo[0], c->hi[0]), below = integrate_1d(c, c->lo[0], m[0]);
        ck_assert_msg(fabs(below / total - 0.5) < 1e-3, "%s: CDF at the median %g is %g", k->name, (double)m[0],
                      below / total);
    } else {
        ck_assert_int_eq(k->value_dim, 2);
        for (int d = 0; d < 2; d++) {
            /* grids over [lo, m] and [m, hi] in dimension d */
            double lo[2][2] = {{c->lo[0], c->hi[0]}, {c->lo[1], c->hi[1]}}, part[2];
            for (int s = 0; s < 2; s++) {
                double r[2][2] = {{lo[0][0], lo[0][1]}, {lo[1][0], lo[1][1]}};
                if (s == 0) r[d][1] = m[d]; else r[d][0] = m[d];
                double *lp = grid_2d(c, r[0], r[1]);
                part[s] = grid_mass(lp, 0, G, 0, G, (r[0][1] - r[0][0]) / G, (r[1][1] - r[1][0]) / G);
                free(lp);
            }
            ck_assert_msg(fabs(part[0] / (part[0] + part[1]) - 0.5) < 2e-3, "%s: dim %d: marginal CDF at the median %g is %g",
                          k->name, d, (double)m[d], part[0] / (part[0] + part[1]));
        }
    }
}

static void check_cdf(kind_case *c)
{
    const bl_dist_kind *k = c->kind;
    if (!k->cdf) {
        fprintf(stderr, "%s: no cdf; its coverage metrics are n/a\n", k->name);
        return;
    }
    const int vd = k->value_dim;
    bl_real m[8];
    (k->median ? k->median : k->mode)(c->opts, c->raw, m);
    for (int d = 0; d < vd; d++) {
        ck_assert_msg(fabs(k->cdf(c->opts, c->raw, d, (double)m[d]) - 0.5) < 1e-5, "%s: dim %d: cdf at the median %g is %g",
                      k->name, d, (double)m[d], k->cdf(c->opts, c->raw, d, (double)m[d]));
        int64_t in68 = 0, in95 = 0;
        double prev = -1;
        for (int i = 0; i < N_SAMPLES; i++) {
            double u = k->cdf(c->opts, c->raw, d, c->x[i * vd + d]);
            ck_assert_msg(u >= 0 && u <= 1, "%s: cdf %g outside [0, 1]", k->name, u);
            if (vd == 1) { /* sorted draws: non-decreasing */
                ck_assert_msg(u >= prev - 1e-12, "%s: cdf decreases at %g", k->name, c->x[i]);
                prev = u;
            }
            in68 += u >= 0.16 && u <= 0.84;
            in95 += u >= 0.025 && u <= 0.975;
        }
        const double f68 = (double)in68 / N_SAMPLES, f95 = (double)in95 / N_SAMPLES;
        ck_assert_msg(fabs(f68 - 0.68) < 4 * sqrt(0.68 * 0.32 / N_SAMPLES), "%s: dim %d: 68%% interval covers %g of the draws",
                      k->name, d, f68);
        ck_assert_msg(fabs(f95 - 0.95) < 4 * sqrt(0.95 * 0.05 / N_SAMPLES), "%s: dim %d: 95%% interval covers %g of the draws",
                      k->name, d, f95);
    }
    if (vd == 1) {
        /* against the density: F(x) - F(lo) = integral over [lo, x] at the draws' deciles */
        const double lo = c->x[0], F_lo = k->cdf(c->opts, c->raw, 0, lo);
        for (int q = 1; q < 10; q++) {
            const double x = c->x[q * N_SAMPLES / 10];
            const double want = F_lo + integrate_1d(c, lo, x), got = k->cdf(c->opts, c->raw, 0, x);
            ck_assert_msg(fabs(got - want) < 1e-5, "%s: cdf(%g) = %.9g, integrated density %.9g", k->name, x, got, want);
        }
    }
}

/* a factor entry of this kind for a field of value_dim columns, with its example options except
 * `skip` (-1: all), plus `extra` ("" or "key = value;") */
static bl_status factor_from_config(const bl_dist_kind *k, int skip, const char *extra)
{
    char text[2048], field[64];
    snprintf(field, sizeof field, "generated_%d", k->value_dim);
    ck_assert_int_eq(bl_catalog_field_register(field, k->value_dim, 0), BL_OK);
    int used = snprintf(text, sizeof text, "factors = ( { name = \"g\"; kind = \"%s\"; field = \"%s\"; %s", k->name,
                        field, extra);
    for (int i = 0; i < k->n_opts; i++)
        if (i != skip) used += snprintf(text + used, sizeof text - (size_t)used, " %s = %.17g;", k->opt_names[i], k->example_opts[i]);
    snprintf(text + used, sizeof text - (size_t)used, " } );\n");
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, text, "generated.cfg"), BL_OK);
    bl_vardist_spec *spec = bl_vardist_spec_alloc(3, 4);
    bl_status st = bl_vardist_spec_add_config(spec, cfg, "factors");
    if (st == BL_OK) st = bl_config_check_unused(cfg);
    bl_vardist_spec_free(spec);
    bl_config_free(cfg);
    return st;
}

static void check_options(kind_case *c)
{
    const bl_dist_kind *k = c->kind;
    ck_assert_msg(bl_dist_kind_check_opts(k, k->example_opts) == BL_OK, "%s: example_opts refused: %s", k->name,
                  bl_error_message());
    ck_assert_msg(factor_from_config(k, -1, "") == BL_OK, "%s: %s", k->name, bl_error_message());
    char want[128];
    for (int i = 0; i < k->n_opts; i++) {
        const double bad[2] = {NAN, INFINITY};
        for (int b = 0; b < 2; b++) {
            double o[BL_DIST_MAX_OPTS];
            memcpy(o, k->example_opts, sizeof o);
            o[i] = bad[b];
            ck_assert_int_eq(bl_dist_kind_check_opts(k, o), BL_ERR_ARG);
            snprintf(want, sizeof want, "option %s = ", k->opt_names[i]);
            ck_assert_msg(strstr(bl_error_message(), want), "%s: \"%s\" lacks \"%s\"", k->name, bl_error_message(), want);
        }
        ck_assert_int_eq(factor_from_config(k, i, ""), BL_ERR_CONFIG);
        snprintf(want, sizeof want, "needs the option '%s'", k->opt_names[i]);
        ck_assert_msg(strstr(bl_error_message(), want), "%s: \"%s\" lacks \"%s\"", k->name, bl_error_message(), want);
    }
    /* an option the kind does not have: in a config, an unknown key; in C, a value past n_opts */
    ck_assert_int_eq(factor_from_config(k, -1, "no_such_option = 1.0;"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "generated.cfg:1: unknown key 'factors.[0].no_such_option'"));
    if (k->n_opts < BL_DIST_MAX_OPTS) {
        bl_vardist_spec *spec = bl_vardist_spec_alloc(3, 4);
        bl_factor f = {.name = "g", .kind = k, .field = "generated_1"};
        ck_assert_int_eq(bl_catalog_field_register("generated_1", 1, 0), BL_OK);
        if (k->value_dim > 1) f.field = "locs";
        memcpy(f.opts, k->example_opts, sizeof f.opts);
        f.opts[k->n_opts] = 1;
        ck_assert_int_eq(bl_vardist_spec_add(spec, &f), BL_ERR_ARG);
        ck_assert_msg(strstr(bl_error_message(), "takes"), "%s: %s", k->name, bl_error_message());
        bl_vardist_spec_free(spec);
    }
}

/* ---- the generated cases: every kind x every check ---- */

static const struct {
    const char *name;
    void (*run)(kind_case *c);
} checks[] = {
    {"gradcheck", check_gradcheck},          {"sampler_density", check_sampler_density},
    {"normalisation", check_normalisation},  {"mode", check_mode},
    {"median", check_median},                {"options", check_options},
    {"cdf", check_cdf},
};
#define N_CHECKS ((int)(sizeof checks / sizeof checks[0]))

static int n_builtin_kinds; /* before this file registered its toy kind */
static int n_cases;         /* generated cases in the suite */

START_TEST(test_generated)
{
    const bl_dist_kind *k = bl_dist_kind_at(_i / N_CHECKS);
    fprintf(stderr, "generated: %s / %s\n", k->name, checks[_i % N_CHECKS].name);
    ctx = bl_ctx_alloc(1 << 22);
    kind_case c;
    case_init(&c, k, _i / N_CHECKS);
    checks[_i % N_CHECKS].run(&c);
    free(c.x);
    bl_ctx_free(ctx);
}
END_TEST

/* Registering the toy kind added exactly one kind's worth of generated cases. */
START_TEST(test_registration_adds_cases)
{
    ck_assert_int_eq(n_builtin_kinds, 5);
    ck_assert_int_eq(bl_dist_kind_count(), n_builtin_kinds + 1);
    ck_assert_ptr_eq(bl_dist_kind_at(n_builtin_kinds), &toy_kind);
    ck_assert_int_eq(N_CHECKS, 7);
    ck_assert_int_eq(n_cases, (n_builtin_kinds + 1) * N_CHECKS); /* 42 = 35 + the toy kind's 7 */
}
END_TEST

int main(void)
{
    n_builtin_kinds = bl_dist_kind_count();
    if (bl_dist_kind_register(&toy_kind) != BL_OK) {
        fprintf(stderr, "%s\n", bl_error_message());
        return 1;
    }
    Suite *s = suite_create("dists_kinds_generated");
    TCase *tc = tcase_create("generated");
    tcase_set_timeout(tc, 120);
    n_cases = bl_dist_kind_count() * N_CHECKS;
    tcase_add_loop_test(tc, test_generated, 0, n_cases);
    tcase_add_test(tc, test_registration_adds_cases);
    suite_add_tcase(s, tc);
    fprintf(stderr, "%d generated cases: %d kinds (%d built in) x %d checks\n", n_cases, bl_dist_kind_count(),
            n_builtin_kinds, N_CHECKS);
    return bl_check_run(s);
}
