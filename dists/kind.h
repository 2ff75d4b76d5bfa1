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
 * Options: kinds with `uses_range` take (low, high) from the factor (logitnormal); the others
 * refuse them.
 *
 * The kind table (bl_dist_kind_find) starts with the five built-ins; a new kind is one
 * bl_dist_kind_register call, after which configs can name it. A descriptor without a name,
 * a dimension, a value dimension, log_prob, sample or mode is refused with a message naming
 * what is missing, as is a second kind of the same name. */
#ifndef BL_DIST_KIND_H
#define BL_DIST_KIND_H

#include "autograd/tape.h"
#include "lib/error.h"
#include "lib/rng.h"

typedef struct bl_dist_opts {
    double low, high; /* logitnormal support [low, high]; 0, 0 for kinds without options */
} bl_dist_opts;

typedef struct bl_dist_kind {
    const char *name;
    int dim;        /* raw (unconstrained) parameters per source */
    int value_dim;  /* numbers in one value: 1, or 2 for tdbn (row, col) */
    int uses_range; /* takes bl_dist_opts low/high */
    bl_tensor *(*log_prob)(bl_ctx *ctx, const bl_dist_opts *opts, bl_tensor *raw, bl_tensor *value);
    void (*sample)(const bl_dist_opts *opts, const bl_real *raw, bl_rng *rng, bl_real *value);
    void (*mode)(const bl_dist_opts *opts, const bl_real *raw, bl_real *value);
    void (*median)(const bl_dist_opts *opts, const bl_real *raw, bl_real *value);
    /* optional: validate options (e.g. high > low); BL_ERR_ARG with a message */
    bl_status (*check_opts)(const bl_dist_opts *opts);
    /* optional: raw[dim] -> the location and scale parameters the raw numbers map to,
     * value_dim of each (call through bl_dist_kind_loc_scale) */
    void (*loc_scale)(const bl_dist_opts *opts, const bl_real *raw, double *loc, double *scale);
} bl_dist_kind;

/* The built-in kinds (docs/behaviour.md §3.2). Raw parameters:
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

/* Location and scale of one source's distribution, value_dim numbers each, with the kind's
 * clamps applied (what to print or plot of q):
 *   normal       mean, sd
 *   lognormal    mu, sigma of log Y          logitnormal  mu, sigma of Z (before the sigmoid)
 *   tdbn         per dimension mu = sigmoid(logit), sigma, before truncation
 * BL_ERR_ARG naming the kind when it has no loc_scale (bernoulli). */
bl_status bl_dist_kind_loc_scale(const bl_dist_kind *kind, const bl_dist_opts *opts,
                                 const bl_real *raw, double *loc, double *scale);
/* BL_OK if `kind` is a usable descriptor (see above), else BL_ERR_ARG naming the problem. */
bl_status bl_dist_kind_check(const bl_dist_kind *kind);
/* Add a kind to the table (the descriptor must outlive its use: usually a static const). */
bl_status bl_dist_kind_register(const bl_dist_kind *kind);
const bl_dist_kind *bl_dist_kind_find(const char *name);
int bl_dist_kind_count(void);
const bl_dist_kind *bl_dist_kind_at(int i);
/* Options valid for this kind: range given iff uses_range, and check_opts passes. */
bl_status bl_dist_kind_check_opts(const bl_dist_kind *kind, const bl_dist_opts *opts);

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
