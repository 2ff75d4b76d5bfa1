#include "models/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void bl_metrics_add_spec_factors(bl_metrics *m, const bl_vardist_spec *spec)
{
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *g = &spec->factors[i];
        bl_metrics_factor f = {.name = g->name, .field = g->field, .column = g->column,
                               .value_dim = g->kind->value_dim, .discrete = g->kind->discrete,
                               .source_type = g->mask == BL_MASK_STAR     ? 0
                                              : g->mask == BL_MASK_GALAXY ? 1
                                                                          : -1};
        bl_metrics_add_factor(m, &f);
    }
}

/* q of every factor on the brightest source per tile of the filtered target */
static bl_status bl_update_q(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, const bl_tile_catalog *target,
                             bl_metrics *m)
{
    const bl_vardist_spec *spec = enc->spec;
    bl_tile_catalog *t1 = bl_tile_catalog_brightest_per_tile(target, enc->opts.flux_band, 0, 1);
    bl_encoder_pred pred;
    bl_encoder_infer_marginal(enc, ctx, x, &pred);
    bl_vardist_targets tg;
    bl_status st = bl_vardist_targets_make(ctx, spec, t1, &tg);
    const int64_t n = pred.marginal->B * pred.marginal->ht * pred.marginal->wt;
    int vmax = 1;
    for (int i = 0; i < spec->n_factors; i++)
        if (spec->factors[i].kind->value_dim > vmax) vmax = spec->factors[i].kind->value_dim;
    uint8_t *sel = bl_scratch(ctx, (size_t)n), *hit = bl_scratch(ctx, (size_t)n);
    double *nll = bl_scratch(ctx, (size_t)n * sizeof(double));
    double *pit = bl_scratch(ctx, (size_t)(n * vmax) * sizeof(double));
    for (int i = 0; i < spec->n_factors && !st; i++) {
        const int discrete = spec->factors[i].kind->discrete;
        st = bl_vardist_factor_eval(ctx, pred.marginal, &tg, i, sel, nll, pit, discrete ? hit : NULL);
        if (!st) st = bl_metrics_update_factor_q(m, i, n, sel, nll, pit, discrete ? hit : NULL);
    }
    bl_tile_catalog_free(t1);
    return st;
}

bl_status bl_encoder_metrics_update(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                                    const bl_tile_catalog *truth, uint64_t seed, uint64_t stream,
                                    bl_metrics *mode, bl_metrics *sample, bl_metrics *marginal)
{
    const int grad_was = bl_set_grad_enabled(ctx, 0);
    bl_tile_catalog *target = bl_tile_catalog_filter_by_flux(truth, enc->opts.min_flux_threshold,
                                                             INFINITY, enc->opts.flux_band);
    bl_status st = BL_OK;
    if (mode || sample) {
        bl_tile_catalog *cropped = bl_tile_catalog_symmetric_crop(target, enc->opts.tiles_to_crop);
        bl_full_catalog *true_full = bl_tile_catalog_to_full(cropped);
        bl_metrics *ms[2] = {mode, sample};
        for (int k = 0; k < 2 && !st; k++) {
            if (!ms[k]) continue;
            bl_tile_catalog *est;
            st = bl_encoder_sample(enc, ctx, x, k == 0, seed, stream, &est);
            if (st) break;
            bl_full_catalog *est_full = bl_tile_catalog_to_full(est);
            st = bl_metrics_update(ms[k], true_full, est_full);
            bl_full_catalog_free(est_full);
            bl_tile_catalog_free(est);
        }
        bl_full_catalog_free(true_full);
        bl_tile_catalog_free(cropped);
    }
    if (!st && marginal) st = bl_update_q(enc, ctx, x, target, marginal);
    bl_tile_catalog_free(target);
    bl_set_grad_enabled(ctx, grad_was);
    return st;
}

/* running sums of two numbers (loc, scale) over two tile sets (all, with a source) */
typedef struct {
    double sum[2][2], sq[2][2];
    int64_t n[2];
} bl_q_sums;

static void bl_q_add(bl_q_sums *q, int on, double a, double b)
{
    for (int k = 0; k <= on; k++) {
        q->sum[k][0] += a;
        q->sum[k][1] += b;
        q->sq[k][0] += a * a;
        q->sq[k][1] += b * b;
        q->n[k]++;
    }
}

static void bl_q_print(FILE *f, const bl_q_sums *q, const char *name, int d, int has_loc_scale)
{
    static const char *const what[2] = {"tiles", "tiles with a source"};
    char label[96];
    if (d < 0)
        snprintf(label, sizeof label, "q(%s)", name);
    else
        snprintf(label, sizeof label, "q(%s)[%d]", name, d);
    for (int k = 0; k < 2; k++) {
        if (q->n[k] == 0) continue;
        const double n = (double)q->n[k], m0 = q->sum[k][0] / n, m1 = q->sum[k][1] / n;
        const double s0 = sqrt(fmax(q->sq[k][0] / n - m0 * m0, 0)), s1 = sqrt(fmax(q->sq[k][1] / n - m1 * m1, 0));
        if (has_loc_scale)
            fprintf(f, "%s over %lld %s: loc mean %.6g sd %.6g, scale mean %.6g sd %.6g\n", label,
                    (long long)q->n[k], what[k], m0, s0, m1, s1);
        else
            fprintf(f, "%s over %lld %s: p(1) mean %.6g sd %.6g\n", label, (long long)q->n[k],
                    what[k], m0, s0);
    }
}

void bl_encoder_print_q_stats(FILE *f, bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                              const bl_tile_catalog *truth)
{
    const bl_vardist_spec *spec = enc->spec;
    const int was_training = enc->training, g = bl_set_grad_enabled(ctx, 0);
    bl_encoder_set_training(enc, 0);
    bl_encoder_pred pred;
    bl_encoder_infer_marginal(enc, ctx, x, &pred);
    const int64_t tiles = pred.marginal->B * pred.marginal->ht * pred.marginal->wt;
    BL_ASSERT(tiles == bl_tile_catalog_n_tiles(truth), "q stats: %lld tiles vs a catalog of %lld",
              (long long)tiles, (long long)bl_tile_catalog_n_tiles(truth));
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *fac = &spec->factors[i];
        const bl_dist_kind *kind = fac->kind;
        const int vd = kind->value_dim;
        const bl_tensor *raw = pred.marginal->raw[i]; /* (B, ht, wt, dim), contiguous copy */
        if (kind->loc_scale) {
            double loc[8], scale[8];
            BL_ASSERT(vd <= 8, "q stats: kind '%s' has value_dim %d > 8", kind->name, vd);
            for (int d = 0; d < vd; d++) {
                bl_q_sums q = {0};
                for (int64_t t = 0; t < tiles; t++) {
                    kind->loc_scale(fac->opts, raw->data + t * kind->dim, loc, scale);
                    bl_q_add(&q, truth->n_sources[t] > 0, loc[d], scale[d]);
                }
                bl_q_print(f, &q, fac->name, vd > 1 ? d : -1, 1);
            }
        } else if (vd == 1) {
            /* p(1) = exp(log_prob(raw, 1)): e.g. a Bernoulli's probability */
            bl_tensor *one = bl_full(ctx, 4, BL_SHAPE(pred.marginal->B, pred.marginal->ht, pred.marginal->wt, 1), 1);
            bl_tensor *lp = kind->log_prob(ctx, fac->opts, pred.marginal->raw[i], one);
            bl_q_sums q = {0};
            for (int64_t t = 0; t < tiles; t++) bl_q_add(&q, truth->n_sources[t] > 0, exp((double)lp->data[t]), 0);
            bl_q_print(f, &q, fac->name, -1, 0);
        }
    }
    bl_encoder_set_training(enc, was_training);
    bl_set_grad_enabled(ctx, g);
}

static const char *const bl_det_names[3] = {"detection_precision", "detection_recall", "detection_f1"};
static const char *const bl_cont_metrics[5] = {"mse", "mae", "nll", "coverage_68", "coverage_95"};
static const char *const bl_disc_metrics[2] = {"acc", "nll"};

char **bl_val_metrics_names(const bl_vardist_spec *spec, int *n)
{
    int k = 3;
    for (int i = 0; i < spec->n_factors; i++) k += spec->factors[i].kind->discrete ? 2 : 5;
    char **names = bl_malloc((size_t)k * sizeof *names);
    k = 0;
    for (int j = 0; j < 3; j++) names[k++] = bl_strdup(bl_det_names[j]);
    for (int i = 0; i < spec->n_factors; i++) {
        const int disc = spec->factors[i].kind->discrete;
        for (int j = 0; j < (disc ? 2 : 5); j++) {
            const char *what = disc ? bl_disc_metrics[j] : bl_cont_metrics[j];
            size_t len = strlen(spec->factors[i].name) + strlen(what) + 2;
            names[k] = bl_malloc(len);
            snprintf(names[k++], len, "%s.%s", spec->factors[i].name, what);
        }
    }
    *n = k;
    return names;
}

void bl_val_metrics_names_free(char **names, int n)
{
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

bl_status bl_encoder_val_metrics(bl_encoder *enc, bl_ctx *ctx, bl_batch_source src,
                                 const bl_metrics_opts *opts, uint64_t seed, double *values)
{
    const bl_vardist_spec *spec = enc->spec;
    bl_metrics *mode = bl_metrics_alloc(opts, spec->n_bands), *q = bl_metrics_alloc(opts, spec->n_bands);
    bl_metrics_add_spec_factors(mode, spec);
    bl_metrics_add_spec_factors(q, spec);
    const int was_training = enc->training;
    bl_encoder_set_training(enc, 0);
    bl_status st = BL_OK;
    for (int64_t b = 0; b < src.n_batches && !st; b++) {
        bl_tensor *x;
        bl_tile_catalog *truth;
        st = src.get(src.user, bl_ctx_arena(ctx), b, &x, &truth);
        if (!st) {
            st = bl_encoder_metrics_update(enc, ctx, x, truth, seed, (uint64_t)b, mode, NULL, q);
            bl_tile_catalog_free(truth);
        }
        bl_ctx_reset(ctx);
    }
    bl_encoder_set_training(enc, was_training);
    if (!st) {
        bl_metrics_result *r = bl_malloc(2 * sizeof *r);
        bl_metrics_compute(mode, &r[0]);
        bl_metrics_compute(q, &r[1]);
        int k = 0;
        values[k++] = r[0].precision;
        values[k++] = r[0].recall;
        values[k++] = r[0].f1;
        for (int i = 0; i < spec->n_factors; i++) {
            const bl_metrics_factor_result *fm = &r[0].factors[i], *fq = &r[1].factors[i];
            if (spec->factors[i].kind->discrete) {
                values[k++] = fm->has_field ? fm->acc : fq->tile_acc;
                values[k++] = fq->nll;
            } else {
                values[k++] = fm->mse;
                values[k++] = fm->mae;
                values[k++] = fq->nll;
                values[k++] = fq->coverage68;
                values[k++] = fq->coverage95;
            }
        }
        free(r);
    }
    bl_metrics_free(mode);
    bl_metrics_free(q);
    return st;
}
