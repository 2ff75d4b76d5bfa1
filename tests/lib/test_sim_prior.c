/* The catalog prior (lib/sim/prior.h): sample moments and frequencies against closed forms
 * (fixed seeds, tolerances of 4 standard errors), the colour models against the numbers of the
 * spec, determinism, extra samplers, and impossible configuration values. */
#include <check.h>
#include <gsl/gsl_cdf.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/sim/datadir.h"
#include "lib/sim/prior.h"
#include "lib/sim/simulate.h"
#include "tests/bl_check.h"

#define CONFIG BL_SOURCE_ROOT "/configs/sim_default.cfg"

static bl_prior *default_prior(int64_t B, int64_t nt, int64_t S)
{
    bl_prior_params p;
    bl_prior_params_default(&p);
    p.batch_size = B;
    p.n_tiles_h = p.n_tiles_w = nt;
    p.max_sources = S;
    bl_prior *prior;
    ck_assert_msg(bl_prior_alloc(&prior, &p) == BL_OK, "%s", bl_error_message());
    return prior;
}

/* |mean - mu| < 4 sd / sqrt(n) */
static void check_mean(const char *what, double sum, double n, double mu, double var)
{
    double mean = sum / n, tol = 4 * sqrt(var / n);
    ck_assert_msg(fabs(mean - mu) < tol, "%s: mean %.6f, expected %.6f +- %.6f", what, mean, mu, tol);
}

START_TEST(test_counts_clamped)
{
    /* Poisson(0.2) clamped to [0, 1]: P(n = 1) = 1 - e^-0.2 */
    bl_prior *prior = default_prior(64, 20, 1);
    double on = 0, n = 0;
    for (int k = 0; k < 4; k++) {
        bl_tile_catalog *c = bl_prior_sample(prior, 11, (uint64_t)k);
        for (int64_t t = 0; t < bl_tile_catalog_n_tiles(c); t++) {
            ck_assert(c->n_sources[t] == 0 || c->n_sources[t] == 1);
            on += c->n_sources[t];
            n += 1;
        }
        bl_tile_catalog_free(c);
    }
    double p = 1 - exp(-0.2);
    check_mean("P(on)", on, n, p, p * (1 - p));
    bl_prior_free(prior);

    /* Poisson(1.5) clamped to [1, 3]: P(1) = P(0) + P(1), P(3) = 1 - P(0) - P(1) - P(2) */
    bl_prior_params pp;
    bl_prior_params_default(&pp);
    pp.batch_size = 16;
    pp.mean_sources = 1.5;
    pp.min_sources = 1;
    pp.max_sources = 3;
    ck_assert_int_eq(bl_prior_alloc(&prior, &pp), BL_OK);
    bl_tile_catalog *c = bl_prior_sample(prior, 5, 0);
    double cnt[4] = {0}, nt = (double)bl_tile_catalog_n_tiles(c);
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(c); t++) cnt[c->n_sources[t]] += 1;
    double e = exp(-1.5), p0 = e, p1 = 1.5 * e, p2 = 1.125 * e;
    ck_assert_double_eq(cnt[0], 0);
    check_mean("P(n=1)", cnt[1], nt, p0 + p1, (p0 + p1) * (1 - p0 - p1));
    check_mean("P(n=2)", cnt[2], nt, p2, p2 * (1 - p2));
    check_mean("P(n=3)", cnt[3], nt, 1 - p0 - p1 - p2, (p0 + p1 + p2) * (1 - p0 - p1 - p2));
    bl_tile_catalog_free(c);
    bl_prior_free(prior);
}
END_TEST

START_TEST(test_types_locs_shapes)
{
    bl_prior *prior = default_prior(40, 20, 2);
    bl_tile_catalog *c = bl_prior_sample(prior, 3, 1);
    const bl_tensor *st = bl_tile_catalog_require(c, "source_type"), *locs = bl_tile_catalog_require(c, "locs"),
                    *gp = bl_tile_catalog_require(c, "galaxy_params");
    const double n = (double)st->numel;
    double sum = 0;
    for (int64_t i = 0; i < st->numel; i++) {
        ck_assert(st->data[i] == 0 || st->data[i] == 1);
        sum += st->data[i];
    }
    check_mean("galaxy fraction", sum, n, 0.72, 0.72 * 0.28);
    double s[2] = {0}, s2[2] = {0};
    for (int64_t i = 0; i < locs->numel; i++) {
        ck_assert(locs->data[i] >= 0 && locs->data[i] < 1);
        s[i % 2] += locs->data[i];
        s2[i % 2] += (locs->data[i] - 0.5) * (locs->data[i] - 0.5);
    }
    check_mean("loc row", s[0], n, 0.5, 1.0 / 12);
    check_mean("loc col", s[1], n, 0.5, 1.0 / 12);
    check_mean("loc var", s2[1], n, 1.0 / 12, 1.0 / 180); /* var of (U - 1/2)^2 = 1/80 - 1/144 */
    /* galaxy_params: U(0,1), U(0,pi), U(1e-8,1), a_d = G 4.4327 + 0.8372 with G ~ Gamma(0.3933),
     * U(1e-8,1), a_b = (G' 4.4327 + 0.8372) / 2 */
    const double k = 0.39330758068481686, sc = 4.432725319432478, loc = 0.8371888967872619;
    const double mu[6] = {0.5, M_PI / 2, 0.5, k * sc + loc, 0.5, (k * sc + loc) / 2};
    const double var[6] = {1.0 / 12, M_PI * M_PI / 12, 1.0 / 12, k * sc * sc, 1.0 / 12, k * sc * sc / 4};
    for (int j = 0; j < 6; j++) {
        double sum_j = 0, mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < (int64_t)n; i++) {
            double v = gp->data[i * 6 + j];
            sum_j += v;
            mn = fmin(mn, v);
            mx = fmax(mx, v);
        }
        char what[32];
        snprintf(what, sizeof what, "galaxy_params[%d]", j);
        check_mean(what, sum_j, n, mu[j], var[j]);
        if (j == 3) ck_assert(mn >= loc);
        if (j == 1) ck_assert(mx <= M_PI);
        if (j == 2 || j == 4) ck_assert(mn > 0 && mx <= 1);
    }
    bl_tile_catalog_free(c);
    bl_prior_free(prior);
}
END_TEST

START_TEST(test_pareto_fluxes)
{
    bl_prior *prior = default_prior(64, 25, 1);
    bl_tile_catalog *c = bl_prior_sample(prior, 17, 0);
    const char *fields[2] = {"star_fluxes", "galaxy_fluxes"};
    const double bexp[2] = {0.43, 0.47}, trunc[2] = {640, 1013}, scale[2] = {0.63094948, 0.6301037};
    for (int f = 0; f < 2; f++) {
        const bl_tensor *t = bl_tile_catalog_require(c, fields[f]);
        const int64_t n = t->numel / 5;
        const double lo = scale[f], hi = trunc[f] * scale[f], norm = 1 - pow(trunc[f], -bexp[f]);
        /* support and the closed-form CDF F(x) = (1 - (x/scale)^-b) / (1 - c^-b) */
        const double xs[5] = {0.7, 1.0, 3.0, 20.0, 300.0};
        for (int q = 0; q < 5; q++) {
            double below = 0;
            for (int64_t i = 0; i < n; i++) below += t->data[i * 5 + 2] <= xs[q];
            double F = (1 - pow(xs[q] / scale[f], -bexp[f])) / norm;
            check_mean(fields[f], below, (double)n, F, F * (1 - F));
        }
        /* quantiles: F^-1(q) = scale (1 - q (1 - c^-b))^(-1/b) */
        const double qs[3] = {0.1, 0.5, 0.9};
        for (int q = 0; q < 3; q++) {
            double xq = scale[f] * pow(1 - qs[q] * norm, -1 / bexp[f]), below = 0;
            for (int64_t i = 0; i < n; i++) below += t->data[i * 5 + 2] <= xq;
            check_mean("quantile", below, (double)n, qs[q], qs[q] * (1 - qs[q]));
        }
        for (int64_t i = 0; i < n; i++) {
            ck_assert(t->data[i * 5 + 2] >= (float)lo * (1 - 1e-6));
            ck_assert(t->data[i * 5 + 2] <= (float)hi * (1 + 1e-6));
        }
    }
    /* the inverse CDF itself at the ends of [0, 1) */
    ck_assert_double_eq_tol(bl_truncated_pareto_icdf(0, 0.43, 640, 0, 0.63094948), 0.63094948, 1e-12);
    ck_assert_double_eq_tol(bl_truncated_pareto_icdf(1 - 1e-15, 0.43, 640, 1, 2), 1 + 2 * 640, 1e-6);
    bl_tile_catalog_free(c);
    bl_prior_free(prior);
}
END_TEST

/* E[clip(X, -c, c)] for X ~ N(m, s^2) */
static double clipped_mean(double m, double s, double c)
{
    double a = (-c - m) / s, b = (c - m) / s;
    double Pa = gsl_cdf_ugaussian_P(a), Pb = gsl_cdf_ugaussian_P(b);
    double pa = exp(-a * a / 2) / sqrt(2 * M_PI), pb = exp(-b * b / 2) / sqrt(2 * M_PI);
    return m * (Pb - Pa) + s * (pa - pb) + c * (1 - Pb) - c * Pa;
}

START_TEST(test_color_models)
{
    bl_prior *prior = default_prior(64, 25, 1);
    /* mixture means given in the spec (Appendix B) */
    const double spec_mean[2][4] = {{1.02555, 0.85809, 0.52502, 0.23021},
                                    {-0.22098, 0.73614, 0.47502, 0.51195}};
    const bl_gmm *g[2] = {bl_prior_star_gmm(prior), bl_prior_galaxy_gmm(prior)};
    for (int m = 0; m < 2; m++) {
        ck_assert_int_eq(g[m]->n_components, 64);
        ck_assert_int_eq(g[m]->dim, 4);
        double mean[4];
        bl_gmm_mean(g[m], mean);
        for (int d = 0; d < 4; d++) ck_assert_double_eq_tol(mean[d], spec_mean[m][d], 6e-6);
        /* the raw sampler reproduces the mixture mean */
        bl_rng *rng = bl_rng_alloc(99, (uint64_t)m);
        double s[4] = {0}, x[4];
        const int n = 100000;
        for (int i = 0; i < n; i++) {
            bl_gmm_sample(g[m], rng, x);
            for (int d = 0; d < 4; d++) s[d] += x[d];
        }
        for (int d = 0; d < 4; d++) {
            double var = 0; /* total variance of dimension d */
            for (int k = 0; k < 64; k++) {
                double dm = g[m]->means[k * 4 + d] - mean[d];
                var += g[m]->weights[k] * (g[m]->covs[(k * 4 + d) * 4 + d] + dm * dm);
            }
            check_mean("gmm sample", s[d], n, mean[d], var);
        }
        bl_rng_free(rng);
    }
    /* the prior's log flux ratios: means of the clipped mixture, computed per component */
    bl_tile_catalog *c = bl_prior_sample(prior, 23, 0);
    const char *fields[2] = {"star_fluxes", "galaxy_fluxes"};
    for (int m = 0; m < 2; m++) {
        const bl_tensor *t = bl_tile_catalog_require(c, fields[m]);
        const int64_t n = t->numel / 5;
        for (int d = 0; d < 4; d++) {
            double want = 0, sum = 0, sum2 = 0, lag = 0, prev = 0;
            for (int k = 0; k < 64; k++)
                want += g[m]->weights[k] * clipped_mean(g[m]->means[k * 4 + d],
                                                        sqrt(g[m]->covs[(k * 4 + d) * 4 + d]), 2.76);
            for (int64_t i = 0; i < n; i++) {
                double v = log((double)t->data[i * 5 + d + 1] / t->data[i * 5 + d]);
                sum += v;
                sum2 += v * v;
                if (i) lag += (v - want) * (prev - want);
                prev = v;
            }
            double var = sum2 / n - (sum / n) * (sum / n);
            check_mean(fields[m], sum, (double)n, want, var);
            /* each source draws its own component: neighbouring slots are uncorrelated (BLISS
             * groups samples by component, which gives a lag-1 correlation near 1) */
            double rho = lag / (n - 1) / var;
            ck_assert_msg(fabs(rho) < 4 / sqrt((double)n), "%s dim %d: lag-1 correlation %g",
                          fields[m], d, rho);
        }
    }
    bl_tile_catalog_free(c);
    bl_prior_free(prior);
}
END_TEST

START_TEST(test_determinism_and_extra_fields)
{
    bl_prior *prior = default_prior(8, 12, 2);
    omp_set_num_threads(1);
    bl_tile_catalog *a = bl_prior_sample(prior, 7, 3);
    omp_set_num_threads(2);
    bl_tile_catalog *b = bl_prior_sample(prior, 7, 3);
    bl_tile_catalog *d = bl_prior_sample(prior, 7, 4);
    ck_assert_int_eq(memcmp(a->n_sources, b->n_sources, (size_t)bl_tile_catalog_n_tiles(a) * 4), 0);
    ck_assert_int_eq(a->n_fields, b->n_fields);
    int differs = 0;
    for (int f = 0; f < a->n_fields; f++) {
        const bl_tensor *x = a->fields[f].t, *y = bl_tile_catalog_require(b, a->fields[f].name),
                        *z = bl_tile_catalog_require(d, a->fields[f].name);
        ck_assert_int_eq(memcmp(x->data, y->data, (size_t)x->numel * sizeof(bl_real)), 0);
        differs |= memcmp(x->data, z->data, (size_t)x->numel * sizeof(bl_real)) != 0;
    }
    ck_assert(differs);

    /* redshift priors of docs/behaviour.md §9.1, added like a factor; the other fields do not change */
    bl_field_sampler zs = {.name = "redshift", .kind = bl_sampler_uniform, .field = "redshifts",
                           .params = {0.5, 2.5}};
    ck_assert_int_eq(bl_prior_add(prior, &zs), BL_OK);
    ck_assert_int_eq(bl_prior_add(prior, &zs), BL_ERR_ARG); /* name taken */
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'redshift' is taken"));
    bl_tile_catalog *e = bl_prior_sample(prior, 7, 3);
    for (int f = 0; f < a->n_fields; f++) {
        const bl_tensor *x = a->fields[f].t, *y = bl_tile_catalog_require(e, a->fields[f].name);
        ck_assert_int_eq(memcmp(x->data, y->data, (size_t)x->numel * sizeof(bl_real)), 0);
    }
    const bl_tensor *z = bl_tile_catalog_require(e, "redshifts");
    ck_assert_int_eq(z->ndim, 5);
    ck_assert_int_eq(z->shape[3], 2);
    ck_assert_int_eq(z->shape[4], 1);
    double sum = 0;
    for (int64_t i = 0; i < z->numel; i++) {
        ck_assert(z->data[i] >= 0.5 && z->data[i] < 2.5);
        sum += z->data[i];
    }
    check_mean("uniform redshift", sum, (double)z->numel, 1.5, 4.0 / 12);
    bl_tile_catalog_free(e);
    bl_prior_free(prior);

    /* the gamma redshift prior through a config entry: Gamma(alpha 2, rate 4), mean 1/2,
     * variance 1/8 */
    prior = default_prior(16, 20, 1);
    bl_config *cfg;
    const char *text = "prior = { fields = ( { name = \"z\"; sampler = \"gamma\"; field = \"redshifts\";\n"
                       "alpha = 2.0; beta = 4.0; } ); };";
    ck_assert_int_eq(bl_config_load_string(&cfg, text, "z.cfg"), BL_OK);
    ck_assert_msg(bl_prior_add_config(prior, cfg, "prior.fields") == BL_OK, "%s", bl_error_message());
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_OK);
    bl_config_free(cfg);
    e = bl_prior_sample(prior, 8, 0);
    z = bl_tile_catalog_require(e, "redshifts");
    sum = 0;
    for (int64_t i = 0; i < z->numel; i++) sum += z->data[i];
    check_mean("gamma redshift", sum, (double)z->numel, 0.5, 0.125);
    bl_tile_catalog_free(e);
    bl_prior_free(prior);
    bl_tile_catalog_free(a);
    bl_tile_catalog_free(b);
    bl_tile_catalog_free(d);
}
END_TEST


/* A new catalog field from the config's `fields` list: registered with its width, drawn by the
 * named sampler kind (uniform per column: bounds and mean; gamma: mean), the base fields
 * unchanged; loading the same list again is fine (the field is already registered). */
START_TEST(test_fields_from_config)
{
    const char *text = "fields = (\n"
                       "  { name = \"photo_z_err\"; width = 3; sampler = \"uniform\"; min = 0.02; max = 0.1; },\n"
                       "  { name = \"dust\"; sampler = \"gamma\"; alpha = 3.0; beta = 6.0; } );\n";
    for (int round = 0; round < 2; round++) {
        bl_prior *prior = default_prior(8, 20, 2);
        bl_tile_catalog *base = bl_prior_sample(prior, 5, 1);
        bl_config *cfg;
        ck_assert_int_eq(bl_config_load_string(&cfg, text, "f.cfg"), BL_OK);
        ck_assert_msg(bl_prior_fields_from_config(prior, cfg, "fields") == BL_OK, "%s", bl_error_message());
        ck_assert_int_eq(bl_config_check_unused(cfg), BL_OK);
        bl_config_free(cfg);
        ck_assert_int_eq(bl_catalog_field_width("photo_z_err", 5), 3);
        ck_assert_int_eq(bl_catalog_field_width("dust", 5), 1);
        ck_assert(!bl_catalog_field_is_builtin("photo_z_err") && bl_catalog_field_is_builtin("redshifts"));
        ck_assert_int_eq(bl_prior_n_samplers(prior), 8);
        ck_assert_str_eq(bl_prior_sampler(prior, 6)->field, "photo_z_err");
        bl_tile_catalog *c = bl_prior_sample(prior, 5, 1);
        for (int f = 0; f < base->n_fields; f++) {
            const bl_tensor *x = base->fields[f].t, *y = bl_tile_catalog_require(c, base->fields[f].name);
            ck_assert_int_eq(memcmp(x->data, y->data, (size_t)x->numel * sizeof(bl_real)), 0);
        }
        const bl_tensor *e = bl_tile_catalog_require(c, "photo_z_err");
        ck_assert_int_eq(e->ndim, 5);
        ck_assert_int_eq(e->shape[3], 2);
        ck_assert_int_eq(e->shape[4], 3);
        double sum[3] = {0, 0, 0}, lo = 1, hi = 0;
        for (int64_t i = 0; i < e->numel; i++) {
            sum[i % 3] += e->data[i];
            lo = fmin(lo, e->data[i]);
            hi = fmax(hi, e->data[i]);
        }
        ck_assert(lo >= 0.02 && hi < 0.1 && lo < 0.021 && hi > 0.099);
        for (int k = 0; k < 3; k++) /* Uniform(0.02, 0.1): mean 0.06, variance 0.08^2 / 12 */
            check_mean("photo_z_err column", sum[k], (double)e->numel / 3, 0.06, 0.0064 / 12);
        const bl_tensor *d = bl_tile_catalog_require(c, "dust");
        double dsum = 0;
        for (int64_t i = 0; i < d->numel; i++) {
            ck_assert(d->data[i] > 0);
            dsum += d->data[i];
        }
        check_mean("dust", dsum, (double)d->numel, 0.5, 3.0 / 36); /* Gamma(3, rate 6) */
        bl_tile_catalog_free(c);
        bl_tile_catalog_free(base);
        bl_prior_free(prior);
    }
    /* a C registration of another width is refused, naming the file, the line and the key */
    bl_prior *prior = default_prior(1, 4, 1);
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, "fields = (\n { name = \"dust\";\n width = 2; sampler = \"gamma\"; alpha = 1.0; beta = 1.0; } );",
                                           "g.cfg"), BL_OK);
    ck_assert_int_eq(bl_prior_fields_from_config(prior, cfg, "fields"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "g.cfg:3: key 'fields.[0].width'"));
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "already registered with width 1"));
    bl_config_free(cfg);
    bl_prior_free(prior);
}
END_TEST

/* load the default config, apply `set`, build the simulator; returns the status */
static bl_status build_with(const char *set)
{
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load(&cfg, CONFIG), BL_OK);
    if (set) ck_assert_msg(bl_config_set(cfg, set) == BL_OK, "%s", bl_error_message());
    bl_simulator *sim;
    bl_status s = bl_simulator_from_config(&sim, cfg);
    if (s == BL_OK) {
        ck_assert_ptr_nonnull(sim);
        bl_simulator_free(sim);
    } else {
        ck_assert_ptr_null(sim);
    }
    bl_config_free(cfg);
    return s;
}

static void expect_rejected(const char *set, const char *needle)
{
    bl_status s = build_with(set);
    ck_assert_msg(s == BL_ERR_CONFIG, "%s accepted (status %d)", set, s);
    ck_assert_msg(strstr(bl_error_message(), needle) != NULL, "%s: message '%s' lacks '%s'", set,
                  bl_error_message(), needle);
}

START_TEST(test_impossible_config_values)
{
    ck_assert_msg(build_with(NULL) == BL_OK, "%s", bl_error_message());
    expect_rejected("prior.star_flux_scale=-1.0", "prior.star_flux_scale");
    expect_rejected("prior.galaxy_flux_scale=0.0", "prior.galaxy_flux_scale");
    expect_rejected("prior.prob_galaxy=1.5", "prior.prob_galaxy");
    expect_rejected("prior.mean_sources=-0.1", "prior.mean_sources");
    expect_rejected("prior.star_flux_truncation=0.5", "prior.star_flux_truncation");
    expect_rejected("prior.min_sources=2", "prior.min_sources");
    expect_rejected("prior.galaxy_a_loc=0.0", "prior.galaxy_a_loc");
    expect_rejected("survey.psf.r.b=-0.5", "survey.psf.r.b");
    expect_rejected("survey.psf.u.p0=-0.01", "survey.psf.u.p0");
    expect_rejected("survey.psf.g.beta=2.0", "survey.psf.g.beta");
    expect_rejected("survey.psf.z.sigma1=0.0", "survey.psf.z.sigma1");
    expect_rejected("survey.pixel_scale=-0.4", "survey.pixel_scale");
    expect_rejected("survey.pixel_shift=2", "survey.pixel_shift");
    expect_rejected("survey.psf_slen=24", "survey.psf_slen");
    expect_rejected("prior.reference_band=7", "prior.reference_band");
    /* missing PSF parameter: named */
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg,
        "survey = { bands = [\"a\", \"b\"]; pixel_scale = 0.4; psf_slen = 5; sky = [1.0, 2.0];\n"
        "nelec_per_nmgy = [1.0, 1.0]; psf = { a = { sigma1 = 1.0; sigma2 = 2.0; sigmap = 1.0;\n"
        "beta = 3.0; b = 0.1; p0 = 0.0; }; b = { sigma1 = 1.0; }; }; };", "two.cfg"), BL_OK);
    bl_survey sv;
    ck_assert_int_eq(bl_survey_from_config(&sv, cfg, "survey"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "survey.psf.b.sigma2"));
    bl_config_free(cfg);
    /* extra samplers with impossible values */
    bl_prior *prior = default_prior(2, 4, 1);
    const char *bad[][2] = {
        {"f = ( { name = \"z\"; sampler = \"gamma\"; field = \"redshifts\"; alpha = 0.0; beta = 1.0; } );", "alpha = 0"},
        {"f = ( { name = \"z\"; sampler = \"uniform\"; field = \"redshifts\"; min = 1.0; max = 1.0; } );", "max = 1"},
        {"f = ( { name = \"z\"; sampler = \"normal\"; field = \"redshifts\"; } );", "unknown sampler 'normal'"},
        {"f = ( { name = \"z\"; sampler = \"uniform\"; field = \"z\"; min = 0.0; max = 1.0; } );", "'z' is not a catalog field"},
        {"f = ( { name = \"z\"; sampler = \"uniform\"; field = \"locs\"; min = 0.0; max = 1.0; } );", "already drawn by 'locs'"},
        {"f = ( { name = \"z\"; sampler = \"uniform\"; field = \"redshifts\"; min = 0.0; } );", "f.[0].max"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(bl_config_load_string(&cfg, bad[i][0], "x.cfg"), BL_OK);
        ck_assert_int_eq(bl_prior_add_config(prior, cfg, "f"), BL_ERR_CONFIG);
        ck_assert_msg(strstr(bl_error_message(), bad[i][1]) != NULL, "'%s' lacks '%s'",
                      bl_error_message(), bad[i][1]);
        bl_config_free(cfg);
    }
    ck_assert_int_eq(bl_prior_n_samplers(prior), 6);
    bl_prior_free(prior);
}
END_TEST

START_TEST(test_color_model_files)
{
    char path[4096];
    ck_assert_int_eq(bl_data_find("color_models/sdss_color_models.txt", path, sizeof path), BL_OK);
    /* a truncated copy and an override directory */
    char dir[64];
    bl_check_tmpdir(dir, sizeof dir, "bl_test_gmm");
    char cmd[16384], sub[300];
    snprintf(sub, sizeof sub, "%s/color_models", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && head -n 300 %s > %s/cut.txt && cp %s %s/full.txt", sub,
             path, sub, path, sub);
    ck_assert_int_eq(system(cmd), 0);
    setenv("BLISS_DATA_DIR", dir, 1);
    bl_gmm *g;
    ck_assert_int_eq(bl_gmm_load(&g, "color_models/full.txt", "gal_gmm_nmgy"), BL_OK);
    ck_assert_int_eq(g->n_components, 64);
    bl_gmm_free(g);
    ck_assert_int_eq(bl_gmm_load(&g, "color_models/cut.txt", "star_gmm_nmgy"), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "truncated"));
    ck_assert_ptr_null(g);
    ck_assert_int_eq(bl_gmm_load(&g, "color_models/full.txt", "nope"), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "no model named 'nope'"));
    ck_assert_int_eq(bl_gmm_load(&g, "color_models/absent.txt", "x"), BL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), dir));
    /* a corrupted number names the line */
    snprintf(cmd, sizeof cmd, "sed '40s/.*/  0.1 zz 0.3 0.4/' %s > %s/bad.txt", path, sub);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(bl_gmm_load(&g, "color_models/bad.txt", "star_gmm_nmgy"), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "bad.txt:40:"));
    unsetenv("BLISS_DATA_DIR");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* a config that @includes others: its overrides lists (applied by bl_config_load) and the
 * top-level prior_fields reach the library's simulator, not only the CLI's */
START_TEST(test_simulator_from_including_config)
{
    bl_config *cfg;
    ck_assert_msg(bl_config_load(&cfg, BL_SOURCE_ROOT "/configs/seed_toy.cfg") == BL_OK, "%s",
                  bl_error_message());
    bl_simulator *sim;
    ck_assert_msg(bl_simulator_from_config(&sim, cfg) == BL_OK, "%s", bl_error_message());
    const bl_prior *prior = bl_simulator_prior(sim);
    /* base.cfg says 64, redshift.cfg 32, seed_toy.cfg (the including file) 64 again */
    ck_assert_int_eq(bl_prior_get_params(prior)->batch_size, 64);
    const bl_field_sampler *z = NULL;
    for (int i = 0; i < bl_prior_n_samplers(prior); i++)
        if (!strcmp(bl_prior_sampler(prior, i)->name, "redshift")) z = bl_prior_sampler(prior, i);
    ck_assert_ptr_nonnull(z);
    ck_assert_ptr_eq(z->kind, bl_sampler_uniform);
    ck_assert_str_eq(z->field, "redshifts");
    /* redshift.cfg's Uniform(0, 1), changed by seed_toy.cfg */
    ck_assert_double_eq(z->params[0], 0.99);
    ck_assert_double_eq(z->params[1], 1.01);
    bl_simulator_free(sim);
    bl_config_free(cfg);

    /* the simulator group on its own */
    bl_sim_opts o;
    ck_assert_int_eq(bl_config_load_string(&cfg, "simulator = { deconvolve = true;\n rl_pad = 3; };",
                                           "s.cfg"), BL_OK);
    ck_assert_int_eq(bl_sim_opts_from_config(&o, cfg, "simulator"), BL_OK);
    ck_assert_int_eq(o.deconvolve, 1);
    ck_assert_int_eq(o.rl_pad, 3);
    bl_sim_opts d;
    bl_sim_opts_default(&d);
    ck_assert_int_eq(o.rl_iterations, d.rl_iterations);
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_OK);
    bl_config_free(cfg);
    ck_assert_int_eq(bl_config_load_string(&cfg, "simulator = {\n rl_iterations = -1; };", "s.cfg"), BL_OK);
    ck_assert_int_eq(bl_sim_opts_from_config(&o, cfg, "simulator"), BL_ERR_CONFIG);
    ck_assert_msg(strstr(bl_error_message(), "s.cfg:2: key 'simulator.rl_iterations' = -1") != NULL, "%s",
                  bl_error_message());
    bl_config_free(cfg);
}
END_TEST

/* ---- generated: every registered sampler kind x every generic check ----
 * A kind registered before the suite is built (like the toy kind below) gets these cases with
 * no test code of its own; its example_params are the values tested. */

/* Exponential(rate): a toy kind of this file */
static void toy_sample(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng, bl_tile_catalog *cat,
                       int64_t b)
{
    (void)prior;
    bl_tensor *t = bl_tile_catalog_require(cat, s->field);
    const int64_t n = cat->ht * cat->wt * cat->S * t->shape[4];
    for (int64_t i = 0; i < n; i++) t->data[b * n + i] = (bl_real)(-log(bl_rng_uniform_pos(rng)) / s->params[0]);
}
static bl_status toy_check(const double *p, const char *where)
{
    return p[0] > 0 ? BL_OK : bl_error(BL_ERR_CONFIG, "%s: rate = %g must be > 0", where, p[0]);
}
static double toy_cdf(const double *p, double x) { return x <= 0 ? 0 : -expm1(-p[0] * x); }
static const bl_sampler_kind toy_sampler_kind = {
    .name = "toy_exponential", .n_params = 1, .param_names = {"rate"}, .example_params = {3.0},
    .check = toy_check, .cdf = toy_cdf, .sample = toy_sample};

#define GEN_FIELD "generated_sampler_field"

/* a prior (B, nt x nt tiles, S 2) with the kind bound to GEN_FIELD under `name` */
static bl_prior *gen_prior_sized(const bl_sampler_kind *k, const char *name, int64_t B, int64_t nt)
{
    bl_prior *prior = default_prior(B, nt, 2);
    bl_field_sampler fs = {.name = name, .kind = k, .field = GEN_FIELD};
    memcpy(fs.params, k->example_params, sizeof fs.params);
    ck_assert_msg(bl_prior_add(prior, &fs) == BL_OK, "%s: %s", k->name, bl_error_message());
    return prior;
}

static bl_prior *gen_prior(const bl_sampler_kind *k, const char *name) { return gen_prior_sized(k, name, 4, 10); }

/* the entry "{ name = "g"; sampler = "<kind>"; field = ...; <params except skip> <extra> }" */
static bl_status gen_config(const bl_sampler_kind *k, int skip, const char *extra, bl_prior **out)
{
    char text[2048];
    int used = snprintf(text, sizeof text, "prior_fields = ( { name = \"g\"; sampler = \"%s\"; field = \"%s\"; %s",
                        k->name, GEN_FIELD, extra);
    for (int i = 0; i < k->n_params; i++)
        if (i != skip)
            used += snprintf(text + used, sizeof text - (size_t)used, " %s = %.17g;", k->param_names[i],
                             k->example_params[i]);
    snprintf(text + used, sizeof text - (size_t)used, " } );\n");
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, text, "gen.cfg"), BL_OK);
    *out = default_prior(4, 10, 2);
    bl_status st = bl_prior_add_config(*out, cfg, "prior_fields");
    if (st == BL_OK) st = bl_config_check_unused(cfg);
    bl_config_free(cfg);
    return st;
}

static const bl_tensor *gen_values(const bl_tile_catalog *cat) { return bl_tile_catalog_require(cat, GEN_FIELD); }

static int cmp_real(const void *a, const void *b)
{
    bl_real x = *(const bl_real *)a, y = *(const bl_real *)b;
    return (x > y) - (x < y);
}

/* every value finite; with a cdf: Kolmogorov-Smirnov against it */
static void gen_check_distribution(const bl_sampler_kind *k)
{
    bl_prior *prior = gen_prior_sized(k, "g", 16, 20); /* 12800 values */
    bl_tile_catalog *cat = bl_prior_sample(prior, 11, 2);
    const bl_tensor *t = gen_values(cat);
    int64_t n = t->numel;
    bl_real *x = malloc((size_t)n * sizeof *x);
    memcpy(x, t->data, (size_t)n * sizeof *x);
    for (int64_t i = 0; i < n; i++) ck_assert_msg(isfinite(x[i]), "%s: value %lld is %g", k->name, (long long)i, (double)x[i]);
    if (k->cdf) {
        qsort(x, (size_t)n, sizeof *x, cmp_real);
        double D = 0;
        for (int64_t i = 0; i < n; i++) {
            double F = k->cdf(k->example_params, x[i]);
            D = fmax(D, fmax(fabs(F - (double)i / n), fabs(F - (double)(i + 1) / n)));
        }
        /* P(D > 1.95 / sqrt(n)) = 0.001; float values add at most a few 1e-7 */
        ck_assert_msg(D < 1.95 / sqrt((double)n), "%s: KS distance %g over %lld values", k->name, D, (long long)n);
    } else {
        fprintf(stderr, "%s: no cdf; only finiteness of the draws is checked\n", k->name);
    }
    free(x);
    bl_tile_catalog_free(cat);
    bl_prior_free(prior);
}

/* same seed and stream: the same values whatever the thread count and the other samplers; another
 * stream: other values */
static void gen_check_determinism(const bl_sampler_kind *k)
{
    bl_prior *p1 = gen_prior(k, "g"), *p2 = default_prior(4, 10, 2);
    bl_field_sampler other = {.name = "redshift", .kind = bl_sampler_uniform, .field = "redshifts", .params = {0, 1}};
    ck_assert_int_eq(bl_prior_add(p2, &other), BL_OK);
    bl_field_sampler fs = {.name = "g", .kind = k, .field = GEN_FIELD};
    memcpy(fs.params, k->example_params, sizeof fs.params);
    ck_assert_int_eq(bl_prior_add(p2, &fs), BL_OK);
    omp_set_num_threads(1);
    bl_tile_catalog *a = bl_prior_sample(p1, 5, 1);
    omp_set_num_threads(2);
    bl_tile_catalog *b = bl_prior_sample(p2, 5, 1), *c = bl_prior_sample(p1, 5, 2);
    const bl_tensor *ta = gen_values(a), *tb = gen_values(b), *tc = gen_values(c);
    size_t bytes = (size_t)ta->numel * sizeof(bl_real);
    ck_assert_msg(memcmp(ta->data, tb->data, bytes) == 0, "%s: draws depend on threads or other samplers", k->name);
    ck_assert_msg(memcmp(ta->data, tc->data, bytes) != 0, "%s: streams 1 and 2 drew the same values", k->name);
    bl_tile_catalog_free(a);
    bl_tile_catalog_free(b);
    bl_tile_catalog_free(c);
    bl_prior_free(p1);
    bl_prior_free(p2);
}

/* a config entry draws what the C call draws; a missing or unknown parameter is an error
 * naming the key; NaN is refused naming the parameter; example_params pass the check */
static void gen_check_params(const bl_sampler_kind *k)
{
    ck_assert_msg(!k->check || k->check(k->example_params, "example") == BL_OK, "%s: %s", k->name,
                  bl_error_message());
    bl_prior *pc, *pf = gen_prior(k, "g");
    ck_assert_msg(gen_config(k, -1, "", &pc) == BL_OK, "%s: %s", k->name, bl_error_message());
    bl_tile_catalog *a = bl_prior_sample(pc, 3, 0), *b = bl_prior_sample(pf, 3, 0);
    ck_assert_int_eq(memcmp(gen_values(a)->data, gen_values(b)->data, (size_t)gen_values(a)->numel * sizeof(bl_real)), 0);
    bl_tile_catalog_free(a);
    bl_tile_catalog_free(b);
    bl_prior_free(pc);
    bl_prior_free(pf);
    char want[160];
    for (int i = 0; i < k->n_params; i++) {
        ck_assert_int_eq(gen_config(k, i, "", &pc), BL_ERR_CONFIG);
        snprintf(want, sizeof want, "missing required key 'prior_fields.[0].%s'", k->param_names[i]);
        ck_assert_msg(strstr(bl_error_message(), want), "%s: \"%s\" lacks \"%s\"", k->name, bl_error_message(), want);
        bl_prior_free(pc);
        bl_prior *p = default_prior(4, 10, 2);
        bl_field_sampler fs = {.name = "g", .kind = k, .field = GEN_FIELD};
        memcpy(fs.params, k->example_params, sizeof fs.params);
        fs.params[i] = NAN;
        ck_assert_int_eq(bl_prior_add(p, &fs), BL_ERR_ARG);
        snprintf(want, sizeof want, "%s = nan is not finite", k->param_names[i]);
        ck_assert_msg(strstr(bl_error_message(), want), "%s: \"%s\" lacks \"%s\"", k->name, bl_error_message(), want);
        bl_prior_free(p);
    }
    ck_assert_int_eq(gen_config(k, -1, "no_such_param = 1.0;", &pc), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "gen.cfg:1: unknown key 'prior_fields.[0].no_such_param'"));
    bl_prior_free(pc);
}

static const struct {
    const char *name;
    void (*run)(const bl_sampler_kind *k);
} gen_checks[] = {
    {"distribution", gen_check_distribution},
    {"determinism", gen_check_determinism},
    {"params", gen_check_params},
};
#define N_GEN_CHECKS ((int)(sizeof gen_checks / sizeof gen_checks[0]))
static int n_builtin_sampler_kinds, n_gen_cases;

START_TEST(test_generated_sampler_kind)
{
    const bl_sampler_kind *k = bl_sampler_kind_at(_i / N_GEN_CHECKS);
    fprintf(stderr, "generated: %s / %s\n", k->name, gen_checks[_i % N_GEN_CHECKS].name);
    gen_checks[_i % N_GEN_CHECKS].run(k);
}
END_TEST

static void gen_sample_nothing(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng, bl_tile_catalog *cat,
                               int64_t b)
{
    (void)s, (void)prior, (void)rng, (void)cat, (void)b;
}

/* bl_sampler_kind_register: the toy kind went in (and added its generated cases); bad
 * descriptors and a second kind of a taken name are refused with a message naming them */
START_TEST(test_sampler_kind_register)
{
    ck_assert_int_eq(n_builtin_sampler_kinds, 2);
    ck_assert_int_eq(bl_sampler_kind_count(), n_builtin_sampler_kinds + 1);
    ck_assert_ptr_eq(bl_sampler_kind_find("toy_exponential"), &toy_sampler_kind);
    ck_assert_ptr_eq(bl_sampler_kind_at(n_builtin_sampler_kinds), &toy_sampler_kind);
    ck_assert_int_eq(n_gen_cases, (n_builtin_sampler_kinds + 1) * N_GEN_CHECKS); /* 9 = 6 + the toy's 3 */
    ck_assert_int_eq(bl_sampler_kind_register(&toy_sampler_kind), BL_OK); /* the same descriptor again */
    static const bl_sampler_kind dup = {.name = "uniform", .sample = gen_sample_nothing};
    ck_assert_int_eq(bl_sampler_kind_register(&dup), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "sampler kind 'uniform' is already registered"));
    static const bl_sampler_kind no_sample = {.name = "no_sample"};
    ck_assert_int_eq(bl_sampler_kind_register(&no_sample), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'no_sample' has no sample function"));
    static const bl_sampler_kind unnamed = {.name = "unnamed_param", .n_params = 1, .sample = gen_sample_nothing};
    ck_assert_int_eq(bl_sampler_kind_register(&unnamed), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'unnamed_param': parameter 0 has no name"));
    static const bl_sampler_kind too_many = {.name = "too_many", .n_params = BL_SAMPLER_MAX_PARAMS + 1,
                                             .sample = gen_sample_nothing};
    ck_assert_int_eq(bl_sampler_kind_register(&too_many), BL_ERR_ARG);
    ck_assert_int_eq(bl_sampler_kind_count(), n_builtin_sampler_kinds + 1);
    /* a config naming an unknown kind lists the registered ones */
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, "f = ( { name = \"g\"; sampler = \"expo\"; field = \"redshifts\"; } );",
                                           "u.cfg"), BL_OK);
    bl_prior *prior = default_prior(1, 2, 1);
    ck_assert_int_eq(bl_prior_add_config(prior, cfg, "f"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "unknown sampler 'expo' (known: uniform, gamma, toy_exponential)"));
    bl_prior_free(prior);
    bl_config_free(cfg);
}
END_TEST

int main(void)
{
    n_builtin_sampler_kinds = bl_sampler_kind_count();
    if (bl_sampler_kind_register(&toy_sampler_kind) != BL_OK ||
        bl_catalog_field_register(GEN_FIELD, 1, 0) != BL_OK) {
        fprintf(stderr, "%s\n", bl_error_message());
        return 1;
    }
    n_gen_cases = bl_sampler_kind_count() * N_GEN_CHECKS;
    Suite *s = suite_create("sim_prior");
    TCase *tc = tcase_create("prior");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_counts_clamped);
    tcase_add_test(tc, test_types_locs_shapes);
    tcase_add_test(tc, test_pareto_fluxes);
    tcase_add_test(tc, test_color_models);
    tcase_add_test(tc, test_determinism_and_extra_fields);
    tcase_add_test(tc, test_fields_from_config);
    tcase_add_test(tc, test_impossible_config_values);
    tcase_add_test(tc, test_simulator_from_including_config);
    tcase_add_test(tc, test_color_model_files);
    tcase_add_test(tc, test_sampler_kind_register);
    tcase_add_loop_test(tc, test_generated_sampler_kind, 0, n_gen_cases);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
