/* A new prior sampler kind in one registration call: a log-normal redshift prior.
 *
 *   sampler_kind    registers the kind "lognormal" (parameters mu, sigma), names it in a config
 *                   entry as any built-in kind, draws one batch of catalogs and compares the
 *                   redshifts' mean and median with the closed forms; exit status 1 if they
 *                   disagree by more than 4 standard errors
 *
 * The same registration also gives the kind the generic tests of tests/lib/test_sim_prior.c
 * when it is registered there (example_params, cdf). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/config.h"
#include "lib/sim/prior.h"

/* every slot of every column: exp(mu + sigma N(0, 1)) */
static void lognormal_sample(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                             bl_tile_catalog *cat, int64_t b)
{
    (void)prior;
    bl_tensor *t = bl_tile_catalog_require(cat, s->field);
    const int64_t n = cat->ht * cat->wt * cat->S * t->shape[4];
    for (int64_t i = 0; i < n; i++)
        t->data[b * n + i] = (bl_real)exp(s->params[0] + s->params[1] * bl_rng_normal(rng));
}

static bl_status lognormal_check(const double *p, const char *where)
{
    if (!(p[1] > 0)) return bl_error(BL_ERR_CONFIG, "%s: sigma = %g must be > 0", where, p[1]);
    return BL_OK;
}

static double lognormal_cdf(const double *p, double x)
{
    return x <= 0 ? 0 : 0.5 * erfc(-(log(x) - p[0]) / (p[1] * M_SQRT2));
}

static const bl_sampler_kind lognormal_kind = {
    .name = "lognormal", .n_params = 2, .param_names = {"mu", "sigma"}, .example_params = {-0.5, 0.4},
    .check = lognormal_check, .cdf = lognormal_cdf, .sample = lognormal_sample};

static int fail(const char *what)
{
    fprintf(stderr, "sampler_kind: %s: %s\n", what, bl_error_message());
    return EXIT_FAILURE;
}

static int cmp_real(const void *a, const void *b)
{
    bl_real x = *(const bl_real *)a, y = *(const bl_real *)b;
    return (x > y) - (x < y);
}

int main(void)
{
    /* 1. one call: configs can now say sampler = "lognormal" */
    if (bl_sampler_kind_register(&lognormal_kind) != BL_OK) return fail("register");

    /* 2. a config naming it, as it would name "uniform" or "gamma" */
    const char *text = "prior = { batch_size = 8; n_tiles_h = 10; n_tiles_w = 10; max_sources = 2; };\n"
                       "prior_fields = ( { name = \"redshift\"; sampler = \"lognormal\";\n"
                       "                   field = \"redshifts\"; mu = -0.5; sigma = 0.4; } );\n";
    bl_config *cfg;
    bl_prior *prior;
    if (bl_config_load_string(&cfg, text, "example.cfg") != BL_OK) return fail("config");
    bl_status st = bl_prior_from_config(&prior, cfg, 5);
    if (st == BL_OK) st = bl_config_check_unused(cfg);
    bl_config_free(cfg);
    if (st != BL_OK) return fail("prior");

    /* 3. one batch: every slot, on or off, holds a redshift */
    bl_tile_catalog *cat = bl_prior_sample(prior, 2026, 0);
    const bl_tensor *z = bl_tile_catalog_require(cat, "redshifts");
    const int64_t n = z->numel;
    double sum = 0;
    bl_real *sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted) return fail("malloc");
    for (int64_t i = 0; i < n; i++) {
        sum += z->data[i];
        sorted[i] = z->data[i];
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_real);
    const double mu = -0.5, sigma = 0.4;
    double mean = sum / (double)n, median = sorted[n / 2];
    double mean_ref = exp(mu + sigma * sigma / 2), median_ref = exp(mu);
    double sd = mean_ref * sqrt(expm1(sigma * sigma));
    /* the sample median's standard error: 1 / (2 f(m) sqrt(n)), f(m) = 1 / (m sigma sqrt(2 pi)) */
    double se_mean = sd / sqrt((double)n), se_median = median_ref * sigma * sqrt(2 * M_PI) / (2 * sqrt((double)n));
    printf("sampler kinds: %d (uniform, gamma, lognormal)\n", bl_sampler_kind_count());
    printf("redshifts %lld values: mean %.5f (closed form %.5f, se %.5f), median %.5f (closed form %.5f, se %.5f)\n",
           (long long)n, mean, mean_ref, se_mean, median, median_ref, se_median);
    int ok = fabs(mean - mean_ref) < 4 * se_mean && fabs(median - median_ref) < 4 * se_median;
    printf("%s\n", ok ? "agree within 4 standard errors" : "DISAGREE");
    free(sorted);
    bl_tile_catalog_free(cat);
    bl_prior_free(prior);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
