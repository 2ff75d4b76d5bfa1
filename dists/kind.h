/* Distribution kinds (docs/factors.md, docs/behaviour.md §3.2–3.3): GSL-style descriptors.
 *
 * A kind is a `static const bl_dist_kind` exported by pointer (like gsl_rng_mt19937): no enum,
 * no switch. It maps the `dim` unconstrained network outputs of one source ("raw") to a
 * distribution over a value of `value_dim` numbers:
 *   log_prob  raw (..., dim), value (..., value_dim) -> (...)   built from tape ops, so its
 *             backward is free; gradients flow to raw only (value is data)
 *   sample    raw[dim] -> value[value_dim], no tape, randomness from a bl_rng stream
 *   mode      raw[dim] -> value[value_dim]
 *   median    raw[dim] -> value[value_dim] (NULL: the mode is used)
 *   loc_scale raw[dim] -> loc[value_dim], scale[value_dim] (NULL: none, as for bernoulli)
 *   cdf       raw[dim], d, v -> P(value[d] <= v) (NULL: none, as for bernoulli)
 * Options: a kind names its numeric options (`opt_names`, `n_opts`), as prior sampler kinds
 * name their parameters; a factor gives one value per name, in that order (config keys of the
 * same names, e.g. logitnormal's `low` and `high`). Every function receives them as
 * `opts[0 .. n_opts)`. `example_opts` are valid values the generated tests use.
 *
 * The kind table (bl_dist_kind_find, lib/registry.h) starts with the five built-ins; a new
 * kind is one bl_dist_kind_register call, after which configs can name it and the generated
 * tests (tests/dists/test_kinds_generated.c) check it. A descriptor without a name, a dimension, a value
 * dimension, log_prob, sample or mode, or with unnamed options, is refused with a message
 * naming what is missing, as is a second kind of the same name. */
#ifndef BL_DIST_KIND_H
#define BL_DIST_KIND_H

#include <stddef.h>

#include "autograd/tape.h"
#include "lib/error.h"
#include "lib/rng.h"

#define BL_DIST_MAX_OPTS 4

typedef struct bl_dist_kind {
    const char *name;
    int dim;        /* raw (unconstrained) parameters per source */
    int value_dim;  /* numbers in one value: 1, or 2 for tdbn (row, col) */
    int discrete;   /* values are integers and log_prob is a log probability mass */
    int n_opts;     /* named options, at most BL_DIST_MAX_OPTS */
    const char *opt_names[BL_DIST_MAX_OPTS];
    double example_opts[BL_DIST_MAX_OPTS]; /* valid values (generated tests, docs) */
    bl_tensor *(*log_prob)(bl_ctx *ctx, const double *opts, bl_tensor *raw, bl_tensor *value);
    void (*sample)(const double *opts, const bl_real *raw, bl_rng *rng, bl_real *value);
    void (*mode)(const double *opts, const bl_real *raw, bl_real *value);
    void (*median)(const double *opts, const bl_real *raw, bl_real *value);
    /* optional: validate finite option values (e.g. high > low); BL_ERR_ARG with a message
     * naming the option */
    bl_status (*check_opts)(const double *opts);
    /* optional: raw[dim] -> the location and scale parameters the raw numbers map to,
     * value_dim of each (call through bl_dist_kind_loc_scale) */
    void (*loc_scale)(const double *opts, const bl_real *raw, double *loc, double *scale);
    /* optional, continuous kinds: the marginal CDF of value dimension d in [0, value_dim) at v,
     * P(value[d] <= v) under raw, with the kind's clamps (NULL: the calibration metrics are
     * "n/a" for the kind; docs/metrics.md). The central p-interval [F^-1((1-p)/2),
     * F^-1((1+p)/2)] covers v iff (1-p)/2 <= F(v) <= (1+p)/2, so no quantile function is needed. */
    double (*cdf)(const double *opts, const bl_real *raw, int d, double v);
} bl_dist_kind;

/* The built-in kinds (docs/behaviour.md §3.2); only logitnormal has options: `low`, `high` (the support).
 * Raw parameters:
 *   bernoulli    1  [logit]                 p = clamp(sigmoid(x), 1e-4, 1 - 1e-4); value 0/1
 *   normal       2  [mean, logvar]          sd = exp(clamp(logvar, -20, 20) / 2)
 *   lognormal    2  [mu, logvar]            sigma = exp(clamp(logvar, -6, 10) / 2)
 *   logitnormal  2  [mu, logvar]            sigma = exp(clamp(logvar, -10, 10) / 2),
 *                                           Y = low + (high - low) sigmoid(Z), Z ~ N(mu, sigma)
 *   tdbn         4  [mu_row_logit, mu_col_logit, logvar_row, logvar_col]
 *                                           mu = sigmoid, sigma = exp(clamp(logvar, -6, 3) / 2),
 *                                           independent normals truncated to [0, 1]^2 */
extern const bl_dist_kind *const bl_dist_bernoulli;
extern const bl_dist_kind *const bl_dist_normal;
extern const bl_dist_kind *const bl_dist_lognormal;
extern const bl_dist_kind *const bl_dist_logitnormal;
extern const bl_dist_kind *const bl_dist_tdbn;

/* bernoulli's probability of 1 from its raw logit: clamp(sigmoid(x), 1e-4, 1 - 1e-4). */
double bl_dist_bernoulli_p(const bl_real *raw);
/* Location and scale of one source's distribution, value_dim numbers each, with the kind's
 * clamps applied (what to print or plot of q):
 *   normal       mean, sd
 *   lognormal    mu, sigma of log Y          logitnormal  mu, sigma of Z (before the sigmoid)
 *   tdbn         per dimension mu = sigmoid(logit), sigma, before truncation
 * BL_ERR_ARG naming the kind when it has no loc_scale (bernoulli). */
bl_status bl_dist_kind_loc_scale(const bl_dist_kind *kind, const double *opts,
                                 const bl_real *raw, double *loc, double *scale);
/* BL_OK if `kind` is a usable descriptor (see above), else BL_ERR_ARG naming the problem. */
bl_status bl_dist_kind_check(const bl_dist_kind *kind);
/* Add a kind to the table (the descriptor must outlive its use: usually a static const). */
bl_status bl_dist_kind_register(const bl_dist_kind *kind);
const bl_dist_kind *bl_dist_kind_find(const char *name);
int bl_dist_kind_count(void);
/* "bernoulli, normal, ...": the registered names, for messages (truncated to n). */
void bl_dist_kind_names(char *buf, size_t n);
const bl_dist_kind *bl_dist_kind_at(int i);
/* opts[0 .. n_opts) valid for this kind: finite, and check_opts passes. BL_ERR_ARG naming the
 * kind and the option. */
bl_status bl_dist_kind_check_opts(const bl_dist_kind *kind, const double *opts);
/* Index of the option called `name`, -1 if the kind has none of that name. */
int bl_dist_kind_opt_index(const bl_dist_kind *kind, const char *name);

/* ---- parameter-level functions of the built-ins (tests, metrics) ---- */

/* log N(v; mu, sigma) elementwise with logvar = 2 log sigma: the shared phi of docs/behaviour.md §3.3 */
bl_tensor *bl_normal_log_density(bl_ctx *ctx, bl_tensor *mu, bl_tensor *logvar, bl_tensor *v);
/* TDBN on [0,1]^d with mu, sigma (..., d) and value (..., d) -> (...). */
bl_tensor *bl_tdbn_log_prob_params(bl_ctx *ctx, bl_tensor *mu, bl_tensor *sigma, bl_tensor *value);
/* Exact per-dimension mean of the truncated normal for raw[4] (docs/porting.md: the original used an
 * approximation): mu + sigma (phi(a) - phi(b)) / (Phi(b) - Phi(a)), a = -mu/sigma,
 * b = (1 - mu)/sigma. */
void bl_tdbn_mean(const bl_real *raw, double mean[2]);
/* P(X_row <= v0, X_col <= v1) for raw[4] (values clamped to [0, 1]): exactly 0 at (0, 0) and
 * 1 at (1, 1). */
double bl_tdbn_cdf(const bl_real *raw, const double v[2]);
/* N(mu, sigma) truncated to [lo, hi]: the value at probability u in (0, 1) of its CDF (a
 * draw for u ~ U(0, 1), the median for u = 1/2); within [lo, hi). */
double bl_truncnorm_icdf(double mu, double sigma, double lo, double hi, double u);

#endif
