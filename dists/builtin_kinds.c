/* The five built-in distribution kinds (docs/behaviour.md §3.2–3.3, docs/porting.md for TDBN).
 *
 * Each kind has two faces that must agree: log_prob on the tape (ops on (..., dim) raw
 * tensors, for training) and scalar sample/mode/median on one source's raw row (no tape, for
 * inference). The raw -> parameter clamps are named constants used by both. */
#include <float.h>
#include <gsl/gsl_cdf.h>
#include <gsl/gsl_randist.h>
#include <math.h>

#include "autograd/ops.h"
#include "dists/kind.h"
#include "lib/registry.h"

static const double bl_log_sqrt_2pi = 0.91893853320467274178; /* log(sqrt(2 pi)) */

/* logvar clamps of the raw -> parameter maps (docs/behaviour.md §3.2) */
#define BL_NORMAL_LV_LO (-20.0)
#define BL_NORMAL_LV_HI 20.0
#define BL_LOGNORMAL_LV_LO (-6.0)
#define BL_LOGNORMAL_LV_HI 10.0
#define BL_LOGITNORMAL_LV_LO (-10.0)
#define BL_LOGITNORMAL_LV_HI 10.0
#define BL_TDBN_LV_LO (-6.0)
#define BL_TDBN_LV_HI 3.0
#define BL_BERNOULLI_P_LO 1e-4
/* logitnormal options, in the order of its opt_names */
enum { BL_LN_LOW, BL_LN_HIGH };
/* logitnormal clamps u into [FLT_MIN, 1 - FLT_EPSILON] as the original's float32 sigmoid
 * transform does; the same constants are used in the double build */
#define BL_U_LO ((double)FLT_MIN)
#define BL_U_HI (1.0 - (double)FLT_EPSILON)

static double bl_clampd(double x, double lo, double hi) { return x < lo ? lo : (x > hi ? hi : x); }
static double bl_sigmoidd(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }
/* sd = exp(clamp(logvar) / 2) */
static double bl_sd(double logvar, double lo, double hi) { return exp(0.5 * bl_clampd(logvar, lo, hi)); }

/* column c of raw (..., dim) as (..., 1) */
static bl_tensor *bl_col(bl_ctx *ctx, bl_tensor *raw, int64_t c0, int64_t c1)
{
    return bl_slice(ctx, raw, raw->ndim - 1, c0, c1);
}

bl_tensor *bl_normal_log_density(bl_ctx *ctx, bl_tensor *mu, bl_tensor *logvar, bl_tensor *v)
{
    /* -(v - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi), sigma^2 = e^logvar */
    bl_tensor *d2 = bl_square(ctx, bl_sub(ctx, v, mu));
    bl_tensor *t = bl_add(ctx, bl_mul(ctx, d2, bl_exp(ctx, bl_neg(ctx, logvar))), logvar);
    return bl_add_scalar(ctx, bl_mul_scalar(ctx, t, -0.5), -bl_log_sqrt_2pi);
}

/* (..., 1) -> (...) */
static bl_tensor *bl_drop_last(bl_ctx *ctx, bl_tensor *a) { return bl_sum_dim(ctx, a, -1, 0); }

/* ---------------------------------------------------------------------------------------- */
/* bernoulli: [logit] -> p = clamp(sigmoid(x), 1e-4, 1 - 1e-4); value 0/1                   */

double bl_dist_bernoulli_p(const bl_real *raw)
{
    return bl_clampd(bl_sigmoidd((double)raw[0]), BL_BERNOULLI_P_LO, 1 - BL_BERNOULLI_P_LO);
}

static bl_tensor *bl_bernoulli_log_prob(bl_ctx *ctx, const double *opts, bl_tensor *raw,
                                        bl_tensor *value)
{
    (void)opts;
    bl_tensor *p = bl_clamp(ctx, bl_sigmoid(ctx, raw), BL_BERNOULLI_P_LO, 1 - BL_BERNOULLI_P_LO);
    bl_tensor *lp = bl_where(ctx, value, bl_log(ctx, p), bl_log(ctx, bl_rsub_scalar(ctx, 1, p)));
    return bl_drop_last(ctx, lp);
}

static void bl_bernoulli_sample(const double *opts, const bl_real *raw, bl_rng *rng, bl_real *value)
{
    (void)opts;
    value[0] = bl_rng_uniform(rng) < bl_dist_bernoulli_p(raw) ? 1 : 0;
}

/* argmax([1 - p, p]): 1 iff p > 1/2 (a tie goes to 0, as torch.argmax) */
static void bl_bernoulli_mode(const double *opts, const bl_real *raw, bl_real *value)
{
    (void)opts;
    value[0] = bl_dist_bernoulli_p(raw) > 0.5 ? 1 : 0;
}

static const bl_dist_kind bl_bernoulli_kind = {
    .name = "bernoulli", .dim = 1, .value_dim = 1, .discrete = 1,
    .log_prob = bl_bernoulli_log_prob, .sample = bl_bernoulli_sample,
    .mode = bl_bernoulli_mode, .median = bl_bernoulli_mode,
};
const bl_dist_kind *const bl_dist_bernoulli = &bl_bernoulli_kind;

/* ---------------------------------------------------------------------------------------- */
/* normal: [mean, logvar] -> N(mean, exp(clamp(logvar, -20, 20) / 2))                        */

static bl_tensor *bl_normal_log_prob(bl_ctx *ctx, const double *opts, bl_tensor *raw,
                                     bl_tensor *value)
{
    (void)opts;
    bl_tensor *mu = bl_col(ctx, raw, 0, 1);
    bl_tensor *lv = bl_clamp(ctx, bl_col(ctx, raw, 1, 2), BL_NORMAL_LV_LO, BL_NORMAL_LV_HI);
    return bl_drop_last(ctx, bl_normal_log_density(ctx, mu, lv, value));
}

static void bl_normal_sample(const double *opts, const bl_real *raw, bl_rng *rng, bl_real *value)
{
    (void)opts;
    value[0] = (bl_real)(raw[0] + bl_sd(raw[1], BL_NORMAL_LV_LO, BL_NORMAL_LV_HI) * bl_rng_normal(rng));
}

static void bl_normal_mode(const double *opts, const bl_real *raw, bl_real *value)
{
    (void)opts;
    value[0] = raw[0];
}

static void bl_normal_loc_scale(const double *opts, const bl_real *raw, double *loc,
                                double *scale)
{
    (void)opts;
    loc[0] = raw[0];
    scale[0] = bl_sd(raw[1], BL_NORMAL_LV_LO, BL_NORMAL_LV_HI);
}

static double bl_normal_cdf(const double *opts, const bl_real *raw, int d, double v)
{
    (void)opts;
    (void)d;
    return gsl_cdf_ugaussian_P((v - raw[0]) / bl_sd(raw[1], BL_NORMAL_LV_LO, BL_NORMAL_LV_HI));
}

static const bl_dist_kind bl_normal_kind = {
    .name = "normal", .dim = 2, .value_dim = 1,
    .log_prob = bl_normal_log_prob, .sample = bl_normal_sample,
    .mode = bl_normal_mode, .median = bl_normal_mode,
    .loc_scale = bl_normal_loc_scale, .cdf = bl_normal_cdf,
};
const bl_dist_kind *const bl_dist_normal = &bl_normal_kind;

/* ---------------------------------------------------------------------------------------- */
/* lognormal: [mu, logvar] -> log Y ~ N(mu, exp(clamp(logvar, -6, 10) / 2))                 */

static bl_tensor *bl_lognormal_log_prob(bl_ctx *ctx, const double *opts, bl_tensor *raw,
                                        bl_tensor *value)
{
    (void)opts;
    bl_tensor *mu = bl_col(ctx, raw, 0, 1);
    bl_tensor *lv = bl_clamp(ctx, bl_col(ctx, raw, 1, 2), BL_LOGNORMAL_LV_LO, BL_LOGNORMAL_LV_HI);
    bl_tensor *ly = bl_log(ctx, value);
    /* density of log Y times the Jacobian 1/y */
    return bl_drop_last(ctx, bl_sub(ctx, bl_normal_log_density(ctx, mu, lv, ly), ly));
}

static void bl_lognormal_sample(const double *opts, const bl_real *raw, bl_rng *rng, bl_real *value)
{
    (void)opts;
    double s = bl_sd(raw[1], BL_LOGNORMAL_LV_LO, BL_LOGNORMAL_LV_HI);
    value[0] = (bl_real)exp(raw[0] + s * bl_rng_normal(rng));
}

/* exp(mu - sigma^2) */
static void bl_lognormal_mode(const double *opts, const bl_real *raw, bl_real *value)
{
    (void)opts;
    double s = bl_sd(raw[1], BL_LOGNORMAL_LV_LO, BL_LOGNORMAL_LV_HI);
    value[0] = (bl_real)exp(raw[0] - s * s);
}

static void bl_lognormal_median(const double *opts, const bl_real *raw, bl_real *value)
{
    (void)opts;
    value[0] = (bl_real)exp(raw[0]);
}

/* of log Y */
static void bl_lognormal_loc_scale(const double *opts, const bl_real *raw, double *loc,
                                   double *scale)
{
    (void)opts;
    loc[0] = raw[0];
    scale[0] = bl_sd(raw[1], BL_LOGNORMAL_LV_LO, BL_LOGNORMAL_LV_HI);
}

/* P(Y <= v) = Phi((log v - mu) / sigma); 0 for v <= 0 */
static double bl_lognormal_cdf(const double *opts, const bl_real *raw, int d, double v)
{
    (void)opts;
    (void)d;
    if (!(v > 0)) return v <= 0 ? 0 : NAN;
    return gsl_cdf_ugaussian_P((log(v) - raw[0]) / bl_sd(raw[1], BL_LOGNORMAL_LV_LO, BL_LOGNORMAL_LV_HI));
}

static const bl_dist_kind bl_lognormal_kind = {
    .name = "lognormal", .dim = 2, .value_dim = 1,
    .log_prob = bl_lognormal_log_prob, .sample = bl_lognormal_sample,
    .mode = bl_lognormal_mode, .median = bl_lognormal_median,
    .loc_scale = bl_lognormal_loc_scale, .cdf = bl_lognormal_cdf,
};
const bl_dist_kind *const bl_dist_lognormal = &bl_lognormal_kind;

/* ---------------------------------------------------------------------------------------- */
/* logitnormal(low, high): [mu, logvar] -> Y = low + (high - low) sigmoid(Z),                 */
/* Z ~ N(mu, exp(clamp(logvar, -10, 10) / 2))                                                 */

static bl_status bl_logitnormal_check(const double *opts)
{
    if (!(opts[BL_LN_HIGH] > opts[BL_LN_LOW]))
        return bl_error(BL_ERR_ARG, "logitnormal needs finite low < high (got low %g, high %g)",
                        opts[BL_LN_LOW], opts[BL_LN_HIGH]);
    return BL_OK;
}

static bl_tensor *bl_logitnormal_log_prob(bl_ctx *ctx, const double *opts, bl_tensor *raw,
                                          bl_tensor *value)
{
    double scale = opts[BL_LN_HIGH] - opts[BL_LN_LOW];
    bl_tensor *mu = bl_col(ctx, raw, 0, 1);
    bl_tensor *lv = bl_clamp(ctx, bl_col(ctx, raw, 1, 2), BL_LOGITNORMAL_LV_LO, BL_LOGITNORMAL_LV_HI);
    /* u in (0, 1), z = logit u; log q(y) = log N(z) - log scale - log u - log(1 - u) */
    bl_tensor *u = bl_clamp(ctx, bl_mul_scalar(ctx, bl_add_scalar(ctx, value, -opts[BL_LN_LOW]), 1 / scale),
                            BL_U_LO, BL_U_HI);
    bl_tensor *lu = bl_log(ctx, u), *l1u = bl_log1p(ctx, bl_neg(ctx, u));
    bl_tensor *z = bl_sub(ctx, lu, l1u);
    bl_tensor *jac = bl_add_scalar(ctx, bl_add(ctx, lu, l1u), log(scale));
    return bl_drop_last(ctx, bl_sub(ctx, bl_normal_log_density(ctx, mu, lv, z), jac));
}

static double bl_logitnormal_y(const double *opts, double z)
{
    return opts[BL_LN_LOW] + (opts[BL_LN_HIGH] - opts[BL_LN_LOW]) * bl_clampd(bl_sigmoidd(z), BL_U_LO, BL_U_HI);
}

static void bl_logitnormal_sample(const double *opts, const bl_real *raw, bl_rng *rng, bl_real *value)
{
    double s = bl_sd(raw[1], BL_LOGITNORMAL_LV_LO, BL_LOGITNORMAL_LV_HI);
    value[0] = (bl_real)bl_logitnormal_y(opts, raw[0] + s * bl_rng_normal(rng));
}

static void bl_logitnormal_median(const double *opts, const bl_real *raw, bl_real *value)
{
    value[0] = (bl_real)bl_logitnormal_y(opts, raw[0]);
}

/* log density of U = sigmoid(Z) at u = sigmoid(z), up to a constant:
 * -(z - mu)^2 / (2 s^2) - log u - log(1 - u), with -log u = softplus(-z), -log(1-u) = softplus(z) */
static double bl_logitnormal_log_u(double z, double mu, double s2)
{
    double sp = log1p(exp(-fabs(z))) + (z > 0 ? z : 0); /* softplus(z) */
    return -(z - mu) * (z - mu) / (2 * s2) + sp + (sp - z);
}

/* The mode of the logit-normal (no closed form): stationary points of the density of U in
 * z = logit u solve g(z) = z - mu - s^2 (2 sigmoid(z) - 1) = 0. Every root lies in
 * [mu - s^2, mu + s^2] (g <= 0 at the left end, >= 0 at the right). g is increasing when
 * s^2 <= 2 (unimodal); otherwise up to three roots: scan for sign changes, bisect each, keep
 * the one of highest density. */
static void bl_logitnormal_mode(const double *opts, const bl_real *raw, bl_real *value)
{
    double mu = raw[0], s = bl_sd(raw[1], BL_LOGITNORMAL_LV_LO, BL_LOGITNORMAL_LV_HI), s2 = s * s;
    enum { N_GRID = 256 };
    double lo = mu - s2, hi = mu + s2, best_z = mu, best = -INFINITY;
    double z0 = lo, g0 = z0 - mu - s2 * (2 * bl_sigmoidd(z0) - 1);
    for (int k = 1; k <= N_GRID; k++) {
        double z1 = lo + (hi - lo) * k / N_GRID, g1 = z1 - mu - s2 * (2 * bl_sigmoidd(z1) - 1);
        /* d/dz log density = -g(z)/s^2: maxima are the upward crossings of g */
        if (g0 <= 0 && g1 >= 0) {
            double a = z0, b = z1;
            for (int it = 0; it < 200 && b - a > 1e-13 * (1 + fabs(a)); it++) {
                double m = 0.5 * (a + b);
                if (m - mu - s2 * (2 * bl_sigmoidd(m) - 1) <= 0) a = m; else b = m;
            }
            double z = 0.5 * (a + b), ld = bl_logitnormal_log_u(z, mu, s2);
            if (ld > best) {
                best = ld;
                best_z = z;
            }
        }
        z0 = z1;
        g0 = g1;
    }
    value[0] = (bl_real)bl_logitnormal_y(opts, best_z);
}

/* of Z, before the sigmoid */
static void bl_logitnormal_loc_scale(const double *opts, const bl_real *raw, double *loc,
                                     double *scale)
{
    (void)opts;
    loc[0] = raw[0];
    scale[0] = bl_sd(raw[1], BL_LOGITNORMAL_LV_LO, BL_LOGITNORMAL_LV_HI);
}

/* P(Y <= v) = Phi((logit(u) - mu) / sigma), u = (v - low) / (high - low); 0 below low, 1 above
 * high */
static double bl_logitnormal_cdf(const double *opts, const bl_real *raw, int d, double v)
{
    (void)d;
    double u = (v - opts[0]) / (opts[1] - opts[0]);
    if (!(u > 0)) return u <= 0 ? 0 : NAN;
    if (u >= 1) return 1;
    return gsl_cdf_ugaussian_P((log(u) - log1p(-u) - raw[0]) /
                               bl_sd(raw[1], BL_LOGITNORMAL_LV_LO, BL_LOGITNORMAL_LV_HI));
}

static const bl_dist_kind bl_logitnormal_kind = {
    .name = "logitnormal", .dim = 2, .value_dim = 1, .n_opts = 2,
    .opt_names = {"low", "high"}, .example_opts = {0.0, 1.0},
    .log_prob = bl_logitnormal_log_prob, .sample = bl_logitnormal_sample,
    .mode = bl_logitnormal_mode, .median = bl_logitnormal_median, .check_opts = bl_logitnormal_check,
    .loc_scale = bl_logitnormal_loc_scale, .cdf = bl_logitnormal_cdf,
};
const bl_dist_kind *const bl_dist_logitnormal = &bl_logitnormal_kind;

/* ---------------------------------------------------------------------------------------- */
/* tdbn: [mu_row_logit, mu_col_logit, logvar_row, logvar_col] -> independent N(mu_d, s_d)     */
/* truncated to [0, 1], mu = sigmoid, s = exp(clamp(logvar, -6, 3) / 2)                       */

bl_tensor *bl_tdbn_log_prob_params(bl_ctx *ctx, bl_tensor *mu, bl_tensor *sigma, bl_tensor *value)
{
    /* per dim: log N(v) - log Z, Z = Phi(b) - Phi(a), a = -mu/s, b = (1 - mu)/s, and
     * log Z = log Phi(b) + log1p(-exp(log Phi(a) - log Phi(b))): stable as long as the box
     * holds a fair share of the mass relative to Phi(b), which the sigmoid map guarantees
     * (mu in (0, 1) so a < 0 < b, and s <= e^1.5 keeps Z >= 0.08) */
    bl_tensor *a = bl_neg(ctx, bl_div(ctx, mu, sigma));
    bl_tensor *b = bl_div(ctx, bl_rsub_scalar(ctx, 1, mu), sigma);
    bl_tensor *la = bl_log_ndtr(ctx, a), *lb = bl_log_ndtr(ctx, b);
    bl_tensor *log_z = bl_add(ctx, lb, bl_log1p(ctx, bl_neg(ctx, bl_exp(ctx, bl_sub(ctx, la, lb)))));
    /* log N(v; mu, s) = -(z^2/2 + log s + log sqrt(2 pi)), z = (v - mu)/s */
    bl_tensor *zv = bl_div(ctx, bl_sub(ctx, value, mu), sigma);
    bl_tensor *phi = bl_add(ctx, bl_mul_scalar(ctx, bl_square(ctx, zv), 0.5), bl_log(ctx, sigma));
    phi = bl_neg(ctx, bl_add_scalar(ctx, phi, bl_log_sqrt_2pi));
    return bl_sum_dim(ctx, bl_sub(ctx, phi, log_z), -1, 0);
}

static bl_tensor *bl_tdbn_log_prob(bl_ctx *ctx, const double *opts, bl_tensor *raw,
                                   bl_tensor *value)
{
    (void)opts;
    bl_tensor *mu = bl_sigmoid(ctx, bl_col(ctx, raw, 0, 2));
    bl_tensor *lv = bl_clamp(ctx, bl_col(ctx, raw, 2, 4), BL_TDBN_LV_LO, BL_TDBN_LV_HI);
    bl_tensor *sigma = bl_exp(ctx, bl_mul_scalar(ctx, lv, 0.5));
    return bl_tdbn_log_prob_params(ctx, mu, sigma, value);
}

/* Phi(b) - Phi(a), using upper tails when the interval lies above the mean (no cancellation) */
static double bl_norm_mass(double a, double b)
{
    return a + b > 0 ? gsl_cdf_ugaussian_Q(a) - gsl_cdf_ugaussian_Q(b)
                     : gsl_cdf_ugaussian_P(b) - gsl_cdf_ugaussian_P(a);
}

double bl_truncnorm_icdf(double mu, double sigma, double lo, double hi, double u)
{
    double a = (lo - mu) / sigma, b = (hi - mu) / sigma, x;
    if (a + b > 0) { /* above the mean: invert the upper tail */
        double qa = gsl_cdf_ugaussian_Q(a), qb = gsl_cdf_ugaussian_Q(b);
        x = gsl_cdf_ugaussian_Qinv(qa - u * (qa - qb));
    } else {
        double pa = gsl_cdf_ugaussian_P(a), pb = gsl_cdf_ugaussian_P(b);
        x = gsl_cdf_ugaussian_Pinv(pa + u * (pb - pa));
    }
    /* round-off can step outside the box; the original accepts values in [lo, hi) */
    return bl_clampd(mu + sigma * x, lo, nextafter(hi, lo));
}

static void bl_tdbn_params(const bl_real *raw, double mu[2], double s[2])
{
    for (int d = 0; d < 2; d++) {
        mu[d] = bl_sigmoidd(raw[d]);
        s[d] = bl_sd(raw[2 + d], BL_TDBN_LV_LO, BL_TDBN_LV_HI);
    }
}

static void bl_tdbn_sample(const double *opts, const bl_real *raw, bl_rng *rng, bl_real *value)
{
    (void)opts;
    double mu[2], s[2];
    bl_tdbn_params(raw, mu, s);
    for (int d = 0; d < 2; d++)
        value[d] = (bl_real)bl_truncnorm_icdf(mu[d], s[d], 0, 1, bl_rng_uniform_pos(rng));
}

static void bl_tdbn_mode(const double *opts, const bl_real *raw, bl_real *value)
{
    (void)opts;
    double mu[2], s[2];
    bl_tdbn_params(raw, mu, s);
    value[0] = (bl_real)mu[0];
    value[1] = (bl_real)mu[1];
}

static void bl_tdbn_median(const double *opts, const bl_real *raw, bl_real *value)
{
    (void)opts;
    double mu[2], s[2];
    bl_tdbn_params(raw, mu, s);
    for (int d = 0; d < 2; d++) value[d] = (bl_real)bl_truncnorm_icdf(mu[d], s[d], 0, 1, 0.5);
}

void bl_tdbn_mean(const bl_real *raw, double mean[2])
{
    double mu[2], s[2];
    bl_tdbn_params(raw, mu, s);
    for (int d = 0; d < 2; d++) {
        double a = -mu[d] / s[d], b = (1 - mu[d]) / s[d];
        mean[d] = mu[d] + s[d] * (gsl_ran_ugaussian_pdf(a) - gsl_ran_ugaussian_pdf(b)) / bl_norm_mass(a, b);
    }
}

/* the marginal CDF of dimension d: (Phi(x) - Phi(a)) / (Phi(b) - Phi(a)), v clamped to [0, 1] */
static double bl_tdbn_marginal_cdf(const double *opts, const bl_real *raw, int d, double v)
{
    (void)opts;
    double mu[2], s[2];
    bl_tdbn_params(raw, mu, s);
    double a = -mu[d] / s[d], b = (1 - mu[d]) / s[d];
    double x = (bl_clampd(v, 0, 1) - mu[d]) / s[d];
    return bl_norm_mass(a, x) / bl_norm_mass(a, b);
}

double bl_tdbn_cdf(const bl_real *raw, const double v[2])
{
    return bl_tdbn_marginal_cdf(NULL, raw, 0, v[0]) * bl_tdbn_marginal_cdf(NULL, raw, 1, v[1]);
}

/* of the normals before truncation */
static void bl_tdbn_loc_scale(const double *opts, const bl_real *raw, double *loc, double *scale)
{
    (void)opts;
    bl_tdbn_params(raw, loc, scale);
}

static const bl_dist_kind bl_tdbn_kind = {
    .name = "tdbn", .dim = 4, .value_dim = 2,
    .log_prob = bl_tdbn_log_prob, .sample = bl_tdbn_sample,
    .mode = bl_tdbn_mode, .median = bl_tdbn_median,
    .loc_scale = bl_tdbn_loc_scale, .cdf = bl_tdbn_marginal_cdf,
};
const bl_dist_kind *const bl_dist_tdbn = &bl_tdbn_kind;

/* ---------------------------------------------------------------------------------------- */
/* The kind table (dists/kind.c): the built-ins, then registered kinds                       */

static const char *bl_dist_kind_name(const void *kind) { return ((const bl_dist_kind *)kind)->name; }
static const void *const bl_builtin_kinds[] = {&bl_bernoulli_kind, &bl_normal_kind, &bl_lognormal_kind,
                                               &bl_logitnormal_kind, &bl_tdbn_kind};
static const void *bl_registered_kinds[64]; /* capacity for registered kinds */
bl_registry bl_dist_kinds =
    BL_REGISTRY_INIT("distribution kind", bl_builtin_kinds, bl_registered_kinds, bl_dist_kind_name);
