/* Distribution kinds: log_prob against closed forms, mode/median, sampling against the
 * density (moments, histogram), the TDBN properties of the original project, and the kind
 * table's refusal of incomplete descriptors.
 *
 * Reference numbers were computed independently with python3's math module from the formulas
 * of docs/behaviour.md §3.2–3.3 (the script is reproduced in docs/factors.md, "Test references"); they are
 * written here as literals. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "dists/kind.h"
#include "lib/rng.h"
#include "tests/bl_check.h"

static bl_ctx *ctx;

static void setup(void) { ctx = bl_ctx_alloc(1 << 20); }
static void teardown(void) { bl_ctx_free(ctx); }

/* log q(value | raw) of one source */
static double lp1(const bl_dist_kind *k, const double *opts, const double *raw, const double *value)
{
    bl_tensor *r = bl_new(ctx, 2, BL_SHAPE(1, k->dim));
    bl_tensor *v = bl_new(ctx, 2, BL_SHAPE(1, k->value_dim));
    for (int i = 0; i < k->dim; i++) r->data[i] = (bl_real)raw[i];
    for (int i = 0; i < k->value_dim; i++) v->data[i] = (bl_real)value[i];
    bl_tensor *lp = k->log_prob(ctx, opts, r, v);
    ck_assert_int_eq(lp->ndim, 1);
    ck_assert_int_eq(lp->numel, 1);
    return (double)lp->data[0];
}

/* relative tolerance for the float build */
#define REL 2e-5
#define ck_close(x, ref) ck_assert_double_eq_tol((x), (ref), REL * (1 + fabs(ref)))

static const double none[BL_DIST_MAX_OPTS];

START_TEST(test_log_prob_closed_form)
{
    /* normal: mean 2.385, logvar -0.731, at 1.7423 */
    ck_close(lp1(bl_dist_normal, none, (double[]){2.385, -0.731}, (double[]){1.7423}), -0.982437128782971);
    /* logvar 23.7 clamps to 20 (sd = e^10): mean 0.25 at -3.1 */
    ck_close(lp1(bl_dist_normal, none, (double[]){0.25, 23.7}, (double[]){-3.1}), -10.91893854477032);
    /* lognormal: mu 0.4137, logvar 1.273, at 3.918 */
    ck_close(lp1(bl_dist_lognormal, none, (double[]){0.4137, 1.273}, (double[]){3.918}), -3.047866425250594);
    /* logvar -7.3 clamps to -6 */
    ck_close(lp1(bl_dist_lognormal, none, (double[]){-1.2, -7.3}, (double[]){0.0561}), -564.7769596639347);
    /* logitnormal(0, pi): mu -0.5721, logvar 0.8816, at 1.2087 */
    ck_close(lp1(bl_dist_logitnormal, (const double[]){0, M_PI}, (double[]){-0.5721, 0.8816},
                 (double[]){1.2087}), -1.065752562819891);
    ck_close(lp1(bl_dist_logitnormal, (const double[]){0, 1}, (double[]){0.9373, -1.4431}, (double[]){0.7319}),
             1.4216199035709223);
    /* bernoulli: logit 2.385 -> p = 0.91567630...; log p, log(1 - p) */
    ck_close(lp1(bl_dist_bernoulli, none, (double[]){2.385}, (double[]){1}), -0.08809235713435318);
    ck_close(lp1(bl_dist_bernoulli, none, (double[]){2.385}, (double[]){0}), -2.473092357134353);
    /* logit 11.3: p clamps to 1 - 1e-4 */
    ck_close(lp1(bl_dist_bernoulli, none, (double[]){11.3}, (double[]){0}), -9.210340371976182);
    ck_assert_double_eq_tol(lp1(bl_dist_bernoulli, none, (double[]){11.3}, (double[]){1}),
                            -0.00010000500033334732, 1e-7);
    /* tdbn: raw (0.6234, -1.1178, -2.4711, -0.9215) at (0.6931, 0.1234) */
    ck_close(lp1(bl_dist_tdbn, none, (double[]){0.6234, -1.1178, -2.4711, -0.9215}, (double[]){0.6931, 0.1234}),
             0.5892009512348646);
}
END_TEST

static double point(void (*fn)(const double *, const bl_real *, bl_real *), const double *o,
                    const double *raw, int dim, int c)
{
    bl_real r[8], v[8];
    for (int i = 0; i < dim; i++) r[i] = (bl_real)raw[i];
    fn(o, r, v);
    return (double)v[c];
}

START_TEST(test_mode_median)
{
    /* lognormal mode exp(mu - sigma^2), median exp(mu) */
    double ln[2] = {0.4137, 1.273};
    ck_close(point(bl_dist_lognormal->mode, none, ln, 2, 0), 0.04251700523450033);
    ck_close(point(bl_dist_lognormal->median, none, ln, 2, 0), 1.5124033378180926);
    /* normal: mean */
    ck_close(point(bl_dist_normal->mode, none, (double[]){-2.385, 3}, 2, 0), -2.385);
    /* logitnormal(0, pi) median = pi sigmoid(mu) */
    ck_close(point(bl_dist_logitnormal->median, (const double[]){0, M_PI}, (double[]){-0.5721, 0.8816}, 2, 0),
             1.1333370963614569);
    /* logitnormal mode (no closed form; python: dense grid + golden section on the density) */
    ck_assert_double_eq_tol(
        point(bl_dist_logitnormal->mode, (const double[]){0, 1}, (double[]){0.9373, -1.4431}, 2, 0),
        0.7409943349368739, 1e-5);
    /* sigma^2 = e^1.5 > 2: bimodal; the higher mode is near 1 */
    ck_assert_double_eq_tol(point(bl_dist_logitnormal->mode, (const double[]){0, 1}, (double[]){0.3, 1.5}, 2, 0),
                            0.9909954302203512, 1e-5);
    /* bernoulli: 1 iff p > 1/2, the tie goes to 0 */
    ck_assert(point(bl_dist_bernoulli->mode, none, (double[]){0.0}, 1, 0) == 0);
    ck_assert(point(bl_dist_bernoulli->mode, none, (double[]){0.001}, 1, 0) == 1);
    ck_assert(point(bl_dist_bernoulli->mode, none, (double[]){-0.001}, 1, 0) == 0);
    /* tdbn mode = sigmoid(raw[0:2]); median per dim of the truncated normal */
    double td[4] = {0.6234, -1.1178, -2.4711, -0.9215};
    ck_close(point(bl_dist_tdbn->mode, none, td, 4, 0), 1 / (1 + exp(-0.6234)));
    ck_close(point(bl_dist_tdbn->mode, none, td, 4, 1), 1 / (1 + exp(1.1178)));
    ck_assert_double_eq_tol(point(bl_dist_tdbn->median, none, td, 4, 0), 0.6135914626459442, 1e-6);
    ck_assert_double_eq_tol(point(bl_dist_tdbn->median, none, td, 4, 1), 0.43243303100130703, 1e-6);
}
END_TEST

START_TEST(test_tdbn_properties)
{
    /* 1. a narrow TDBN equals the normal: mu (0.5, 0.4), sigma 0.01 -> Z = 1 */
    bl_tensor *mu = bl_from_data(ctx, 2, BL_SHAPE(1, 2), (bl_real[]){0.5f, 0.4f});
    bl_tensor *sd = bl_from_data(ctx, 2, BL_SHAPE(1, 2), (bl_real[]){0.01f, 0.01f});
    bl_tensor *v = bl_from_data(ctx, 2, BL_SHAPE(1, 2), (bl_real[]){0.5123f, 0.3911f});
    double lt = bl_tdbn_log_prob_params(ctx, mu, sd, v)->data[0];
    bl_tensor *lv = bl_full(ctx, 2, BL_SHAPE(1, 2), (bl_real)(2 * log(0.01)));
    bl_tensor *ln = bl_normal_log_density(ctx, mu, lv, v);
    ck_assert_double_eq_tol(lt, ln->data[0] + ln->data[1], 1e-4);

    /* 2. a standard normal truncated to [0, 1]^2 has density 1 / 0.3413447... of the normal
     *    in each dimension */
    mu = bl_zeros(ctx, 2, BL_SHAPE(1, 2));
    sd = bl_full(ctx, 2, BL_SHAPE(1, 2), 1);
    v = bl_from_data(ctx, 2, BL_SHAPE(1, 2), (bl_real[]){0.25f, 0.75f});
    lt = bl_tdbn_log_prob_params(ctx, mu, sd, v)->data[0];
    ln = bl_normal_log_density(ctx, mu, bl_zeros(ctx, 2, BL_SHAPE(1, 2)), v);
    ck_assert_double_eq_tol(exp(lt - ln->data[0] - ln->data[1]), 2.929589546983088 * 2.929589546983088, 1e-4);

    /* 3. cdf(0) = 0, cdf(1) = 1, and an interior value (python) */
    bl_real raw[4] = {0.6234f, -1.1178f, -2.4711f, -0.9215f};
    ck_assert(bl_tdbn_cdf(raw, (double[]){0, 0}) == 0);
    ck_assert_double_eq_tol(bl_tdbn_cdf(raw, (double[]){1, 1}), 1, 1e-15);
    ck_assert_double_eq_tol(bl_tdbn_cdf(raw, (double[]){0.5, 0.3}), 0.11492371146965678, 1e-6);

    /* 4. exact mean (python), and the sample mean agrees with it */
    double mean[2];
    bl_tdbn_mean(raw, mean);
    ck_assert_double_eq_tol(mean[0], 0.5971755654584935, 1e-6);
    ck_assert_double_eq_tol(mean[1], 0.4514841617365211, 1e-6);
    bl_rng *rng = bl_rng_alloc(7, 0);
    enum { N = 100000 };
    double s[2] = {0, 0}, s2[2] = {0, 0};
    for (int i = 0; i < N; i++) {
        bl_real x[2];
        bl_dist_tdbn->sample(none, raw, rng, x);
        for (int d = 0; d < 2; d++) {
            ck_assert(x[d] >= 0 && x[d] < 1);
            s[d] += x[d];
            s2[d] += (double)x[d] * x[d];
        }
    }
    for (int d = 0; d < 2; d++) {
        double m = s[d] / N, se = sqrt((s2[d] / N - m * m) / N);
        ck_assert_msg(fabs(m - mean[d]) < 5 * se, "dim %d: sample mean %g vs %g (se %g)", d, m, mean[d], se);
    }
    bl_rng_free(rng);
}
END_TEST

/* Histogram of tdbn samples in dim 0 against the marginal cdf: chi-square over 10 bins. */
START_TEST(test_tdbn_histogram)
{
    bl_real raw[4] = {-0.8f, 0.3f, -1.1f, 0.4f};
    enum { N = 50000, NBIN = 10 };
    int count[NBIN] = {0};
    bl_rng *rng = bl_rng_alloc(11, 3);
    for (int i = 0; i < N; i++) {
        bl_real x[2];
        bl_dist_tdbn->sample(none, raw, rng, x);
        count[(int)(x[0] * NBIN)]++;
    }
    double chi2 = 0;
    for (int k = 0; k < NBIN; k++) {
        double p = bl_tdbn_cdf(raw, (double[]){(k + 1.0) / NBIN, 1}) - bl_tdbn_cdf(raw, (double[]){(double)k / NBIN, 1});
        chi2 += (count[k] - N * p) * (count[k] - N * p) / (N * p);
    }
    /* 9 degrees of freedom: P(chi2 > 27.88) = 0.001 */
    ck_assert_msg(chi2 < 27.88, "chi2 = %g", chi2);
    bl_rng_free(rng);
}
END_TEST

/* sample moments against closed forms (normal, lognormal, bernoulli) and against quadrature
 * (logitnormal, python) with a fixed seed; tolerance 5 standard errors */
START_TEST(test_sample_moments)
{
    struct {
        const bl_dist_kind *kind;
        double opts[2];
        double raw[2], mean, var;
    } cases[] = {
        {bl_dist_normal, {0, 0}, {2.385, -0.731}, 2.385, 0.48144},          /* var e^-0.731 */
        {bl_dist_lognormal, {0, 0}, {0.4137, -1.273}, 1.7471591, 0.9149866}, /* see below */
        {bl_dist_logitnormal, {0, 1}, {0.3, -0.4}, 0.5650299097736292, 0.031230144754657352},
        {bl_dist_bernoulli, {0, 0}, {2.385, 0}, 0.9156763035785255, 0.0772},
    };
    /* lognormal: mean exp(mu + s^2/2), var (e^{s^2} - 1) e^{2 mu + s^2}, s^2 = e^-1.273 */
    double s2 = exp(-1.273);
    cases[1].mean = exp(0.4137 + s2 / 2);
    cases[1].var = (exp(s2) - 1) * exp(2 * 0.4137 + s2);
    cases[0].var = exp(-0.731);
    cases[3].var = cases[3].mean * (1 - cases[3].mean);
    bl_rng *rng = bl_rng_alloc(2024, 1);
    enum { N = 200000 };
    for (int c = 0; c < 4; c++) {
        bl_real raw[2] = {(bl_real)cases[c].raw[0], (bl_real)cases[c].raw[1]};
        double s = 0, sq = 0;
        for (int i = 0; i < N; i++) {
            bl_real x;
            cases[c].kind->sample(cases[c].opts, raw, rng, &x);
            s += x;
            sq += (double)x * x;
        }
        double m = s / N, var = sq / N - m * m, se = sqrt(cases[c].var / N);
        ck_assert_msg(fabs(m - cases[c].mean) < 5 * se, "%s: mean %g vs %g (se %g)", cases[c].kind->name,
                      m, cases[c].mean, se);
        ck_assert_msg(fabs(var - cases[c].var) < 0.02 * cases[c].var, "%s: var %g vs %g",
                      cases[c].kind->name, var, cases[c].var);
    }
    bl_rng_free(rng);
}
END_TEST

/* the density integrates to 1 over its support and its first moment matches the samples */
START_TEST(test_density_integrates)
{
    enum { N = 4000 };
    bl_tensor *r = bl_new(ctx, 2, BL_SHAPE(N, 2));
    bl_tensor *v = bl_new(ctx, 2, BL_SHAPE(N, 1));
    /* logitnormal(0, pi) on (0, pi): midpoint rule */
    for (int i = 0; i < N; i++) {
        r->data[2 * i] = -0.5721f;
        r->data[2 * i + 1] = 0.8816f;
        v->data[i] = (bl_real)(M_PI * (i + 0.5) / N);
    }
    const double o[2] = {0, M_PI};
    bl_tensor *lp = bl_dist_logitnormal->log_prob(ctx, o, r, v);
    double mass = 0;
    for (int i = 0; i < N; i++) mass += exp(lp->data[i]) * M_PI / N;
    ck_assert_double_eq_tol(mass, 1, 2e-3);
}
END_TEST

/* ---- the kind table ---- */

static bl_tensor *exp_log_prob(bl_ctx *c, const double *o, bl_tensor *raw, bl_tensor *value)
{
    (void)o;
    /* rate = e^raw: log rate - rate v */
    return bl_sum_dim(c, bl_sub(c, raw, bl_mul(c, bl_exp(c, raw), value)), -1, 0);
}
static void exp_sample(const double *o, const bl_real *raw, bl_rng *rng, bl_real *v)
{
    (void)o;
    v[0] = (bl_real)(-log(bl_rng_uniform_pos(rng)) / exp(raw[0]));
}
static void exp_mode(const double *o, const bl_real *raw, bl_real *v)
{
    (void)o;
    (void)raw;
    v[0] = 0;
}

START_TEST(test_kind_registration)
{
    ck_assert_ptr_eq(bl_dist_kind_find("normal"), bl_dist_normal);
    ck_assert_ptr_eq(bl_dist_kind_find("tdbn"), bl_dist_tdbn);
    ck_assert_ptr_null(bl_dist_kind_find("exponential"));
    int n0 = bl_dist_kind_count();
    ck_assert_int_ge(n0, 5);

    static const bl_dist_kind no_dim = {.name = "nodim", .value_dim = 1, .log_prob = exp_log_prob,
                                        .sample = exp_sample, .mode = exp_mode};
    ck_assert_int_eq(bl_dist_kind_register(&no_dim), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'nodim': dimension 0"));
    static const bl_dist_kind no_lp = {.name = "nolp", .dim = 1, .value_dim = 1, .sample = exp_sample,
                                       .mode = exp_mode};
    ck_assert_int_eq(bl_dist_kind_register(&no_lp), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'nolp': no log_prob"));
    static const bl_dist_kind no_name = {.dim = 1, .value_dim = 1, .log_prob = exp_log_prob,
                                         .sample = exp_sample, .mode = exp_mode};
    ck_assert_int_eq(bl_dist_kind_register(&no_name), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "no name"));
    static const bl_dist_kind dup = {.name = "normal", .dim = 2, .value_dim = 1, .log_prob = exp_log_prob,
                                     .sample = exp_sample, .mode = exp_mode};
    ck_assert_int_eq(bl_dist_kind_register(&dup), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'normal' is already registered"));
    ck_assert_int_eq(bl_dist_kind_count(), n0);

    static const bl_dist_kind expo = {.name = "exponential", .dim = 1, .value_dim = 1,
                                      .log_prob = exp_log_prob, .sample = exp_sample, .mode = exp_mode};
    ck_assert_int_eq(bl_dist_kind_register(&expo), BL_OK);
    ck_assert_int_eq(bl_dist_kind_register(&expo), BL_OK); /* the same descriptor again */
    ck_assert_ptr_eq(bl_dist_kind_find("exponential"), &expo);
    ck_assert_int_eq(bl_dist_kind_count(), n0 + 1);
    /* rate e^0.7 at 0.4: 0.7 - e^0.7 * 0.4 */
    ck_close(lp1(&expo, none, (double[]){0.7}, (double[]){0.4}), 0.7 - exp(0.7) * 0.4);

    /* options: only logitnormal has named options (low, high), finite and increasing */
    ck_assert_int_eq(bl_dist_normal->n_opts, 0);
    ck_assert_int_eq(bl_dist_logitnormal->n_opts, 2);
    ck_assert_int_eq(bl_dist_kind_opt_index(bl_dist_logitnormal, "high"), 1);
    ck_assert_int_eq(bl_dist_kind_opt_index(bl_dist_logitnormal, "mid"), -1);
    ck_assert_int_eq(bl_dist_kind_check_opts(bl_dist_logitnormal, (const double[]){0, 1}), BL_OK);
    ck_assert_int_eq(bl_dist_kind_check_opts(bl_dist_logitnormal, (const double[]){2, 1}), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "low < high"));
    ck_assert_int_eq(bl_dist_kind_check_opts(bl_dist_logitnormal, (const double[]){0, INFINITY}), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "option high = inf is not finite"));
    static const bl_dist_kind unnamed_opt = {.name = "unnamed_opt", .dim = 1, .value_dim = 1, .n_opts = 1,
                                             .log_prob = exp_log_prob, .sample = exp_sample, .mode = exp_mode};
    ck_assert_int_eq(bl_dist_kind_register(&unnamed_opt), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'unnamed_opt': option 0 has no name"));
}
END_TEST

/* loc and scale with the kinds' clamps (dists/kind.h), closed forms */
START_TEST(test_loc_scale)
{
    const double range[2] = {0, 2};
    double loc[2], scale[2];
    struct { const bl_dist_kind *kind; const double *opts; bl_real raw[2]; double loc, scale; } one[] = {
        /* sd = exp(logvar / 2): logvar = log 0.25 -> 0.5 */
        {bl_dist_normal, none, {0.3f, (bl_real)log(0.25)}, 0.3, 0.5},
        {bl_dist_normal, none, {-1.0f, 50.0f}, -1.0, exp(10.0)},       /* clamp at 20 */
        {bl_dist_normal, none, {2.0f, -50.0f}, 2.0, exp(-10.0)},       /* clamp at -20 */
        {bl_dist_lognormal, none, {0.5f, 12.0f}, 0.5, exp(5.0)},       /* clamp at 10 */
        {bl_dist_lognormal, none, {0.5f, -7.0f}, 0.5, exp(-3.0)},      /* clamp at -6 */
        {bl_dist_logitnormal, range, {-0.25f, -30.0f}, -0.25, exp(-5.0)}, /* clamp at -10 */
        {bl_dist_logitnormal, range, {0.0f, 1.0f}, 0.0, exp(0.5)},
    };
    for (size_t i = 0; i < sizeof one / sizeof one[0]; i++) {
        ck_assert_int_eq(bl_dist_kind_loc_scale(one[i].kind, one[i].opts, one[i].raw, loc, scale), BL_OK);
        ck_assert_double_eq_tol(loc[0], one[i].loc, 1e-7);
        ck_assert_msg(fabs(scale[0] / one[i].scale - 1) < 1e-6, "%s case %zu: scale %.9g, expected %.9g",
                      one[i].kind->name, i, scale[0], one[i].scale);
    }
    /* tdbn: mu = sigmoid(logit) (sigmoid(log 3) = 3/4), sigma = exp(clamp(logvar, -6, 3) / 2) */
    const bl_real tr[4] = {0.0f, (bl_real)log(3.0), (bl_real)log(0.04), 5.0f};
    ck_assert_int_eq(bl_dist_kind_loc_scale(bl_dist_tdbn, none, tr, loc, scale), BL_OK);
    ck_assert_double_eq_tol(loc[0], 0.5, 1e-12);
    ck_assert_double_eq_tol(loc[1], 0.75, 1e-7);
    ck_assert_double_eq_tol(scale[0], 0.2, 1e-7);
    ck_assert_double_eq_tol(scale[1], exp(1.5), 1e-6);
    /* the normal's scale is the one its density uses: log q(loc) = -log sd - log sqrt(2 pi) */
    const double nr[2] = {0.7, 3.0};
    const bl_real nrr[2] = {0.7f, 3.0f};
    ck_assert_int_eq(bl_dist_kind_loc_scale(bl_dist_normal, none, nrr, loc, scale), BL_OK);
    ck_assert_double_eq_tol(lp1(bl_dist_normal, none, nr, loc), -log(scale[0]) - 0.91893853320467274, 1e-5);
    /* bernoulli has none */
    ck_assert_int_eq(bl_dist_kind_loc_scale(bl_dist_bernoulli, none, nrr, loc, scale), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'bernoulli'"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dists_kinds");
    TCase *tc = tcase_create("kinds");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_log_prob_closed_form);
    tcase_add_test(tc, test_mode_median);
    tcase_add_test(tc, test_tdbn_properties);
    tcase_add_test(tc, test_tdbn_histogram);
    tcase_add_test(tc, test_sample_moments);
    tcase_add_test(tc, test_density_integrates);
    tcase_add_test(tc, test_kind_registration);
    tcase_add_test(tc, test_loc_scale);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
