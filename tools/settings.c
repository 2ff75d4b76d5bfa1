#include "tools/settings.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* integer key in [lo, hi] */
static bl_status bl_get_int(bl_config *cfg, const char *key, int64_t def, int64_t lo, int64_t hi,
                            int64_t *v)
{
    bl_status st = bl_config_int(cfg, key, def, 0, v);
    if (st) return st;
    return bl_config_check_range(cfg, key, (double)*v, (double)lo, (double)hi);
}

static bl_status bl_get_double(bl_config *cfg, const char *key, double def, double lo, double hi,
                               double *v)
{
    bl_status st = bl_config_double(cfg, key, def, 0, v);
    if (st) return st;
    if (!isfinite(*v))
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' = %g is not a finite number",
                        bl_config_where(cfg, key), key, *v);
    return bl_config_check_range(cfg, key, *v, lo, hi);
}

static bl_status bl_read_encoder(bl_settings *s)
{
    bl_config *cfg = s->cfg;
    bl_status st;
    int64_t v;
    s->encoder = bl_encoder_opts_default();
    if ((st = bl_get_int(cfg, "encoder.tiles_to_crop", 1, 0, 64, &v))) return st;
    s->encoder.tiles_to_crop = (int)v;
    if ((st = bl_get_double(cfg, "encoder.min_flux_threshold", 0, 0, INFINITY,
                            &s->encoder.min_flux_threshold)))
        return st;
    if ((st = bl_get_int(cfg, "encoder.flux_band", 2, 0, s->n_bands - 1, &v))) return st;
    s->encoder.flux_band = (int)v;
    if ((st = bl_config_bool(cfg, "encoder.use_checkerboard", 1, 0, &s->encoder.use_checkerboard)))
        return st;
    if ((st = bl_config_bool(cfg, "encoder.double_detect", 0, 0, &s->encoder.double_detect)))
        return st;

    const char *base;
    if ((st = bl_config_string(cfg, "encoder.base_factors", "sdss", 0, &base))) return st;
    if (strcmp(base, "sdss") && strcmp(base, "none"))
        return bl_error(BL_ERR_CONFIG, "%s: key 'encoder.base_factors' = \"%s\": expected \"sdss\" or \"none\"",
                        bl_config_where(cfg, "encoder.base_factors"), base);
    s->base_factors = !strcmp(base, "sdss");
    s->spec = s->base_factors ? bl_vardist_spec_alloc_sdss(s->n_bands, s->tile_slen)
                              : bl_vardist_spec_alloc(s->n_bands, s->tile_slen);
    if ((st = bl_vardist_spec_add_config(s->spec, cfg, "factors"))) return st;
    if (s->spec->n_factors == 0)
        return bl_error(BL_ERR_CONFIG, "%s: no factors (encoder.base_factors = \"none\" and no 'factors' list)",
                        s->path);

    if ((st = bl_normalize_opts_from_config(&s->normalize, cfg, "encoder.image_normalizer"))) return st;
    for (int i = 0; i < s->normalize.n_bands; i++)
        if (s->normalize.bands[i] >= s->n_bands)
            return bl_error(BL_ERR_CONFIG, "%s: key 'encoder.image_normalizer.bands': band %d but the survey has %d bands",
                            bl_config_where(cfg, "encoder.image_normalizer.bands"), s->normalize.bands[i],
                            s->n_bands);
    s->arch = bl_net_arch_default(s->spec->dim);
    s->arch.n_bands = s->normalize.n_bands;
    s->arch.ch_per_band = bl_normalize_channels(&s->normalize);
    s->arch.tile_slen = s->tile_slen;
    struct { const char *key; int *field; } widths[] = {
        {"encoder.arch.features_width", &s->arch.features_width},
        {"encoder.arch.num_features", &s->arch.num_features},
        {"encoder.arch.catalog_width", &s->arch.catalog_width},
        {"encoder.arch.context_width", &s->arch.context_width},
    };
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        if ((st = bl_get_int(cfg, widths[i].key, *widths[i].field, 1, 4096, &v))) return st;
        *widths[i].field = (int)v;
    }
    return BL_OK;
}

static bl_status bl_read_train(bl_settings *s)
{
    bl_config *cfg = s->cfg;
    bl_train_settings *t = &s->train;
    bl_status st;
    if ((st = bl_get_int(cfg, "train.seed", 42, 0, INT64_MAX, &t->seed)) ||
        (st = bl_config_string(cfg, "train.data", "simulate", 0, &t->data)) ||
        (st = bl_get_int(cfg, "train.steps_per_epoch", 128, 1, INT64_MAX, &t->steps_per_epoch)) ||
        (st = bl_get_int(cfg, "train.val_batches", 10, 0, 1 << 20, &t->val_batches)) ||
        (st = bl_get_int(cfg, "train.max_epochs", 50, 1, INT64_MAX, &t->max_epochs)) ||
        (st = bl_get_int(cfg, "train.min_epochs", 1, 0, INT64_MAX, &t->min_epochs)) ||
        (st = bl_get_int(cfg, "train.patience", 5, 0, INT64_MAX, &t->patience)) ||
        (st = bl_get_int(cfg, "train.max_steps", 0, 0, INT64_MAX, &t->max_steps)) ||
        (st = bl_config_bool(cfg, "train.fixed_batch", 0, 0, &t->fixed_batch)) ||
        (st = bl_config_bool(cfg, "train.sync_batchnorm", 0, 0, &t->sync_batchnorm)) ||
        (st = bl_get_int(cfg, "train.print_every", 10, 1, INT64_MAX, &t->print_every)) ||
        (st = bl_get_int(cfg, "train.checkpoint_every", 0, 0, INT64_MAX, &t->checkpoint_every)) ||
        (st = bl_get_double(cfg, "train.optimizer.lr", 1e-3, 0, 1e3, &t->lr)) ||
        (st = bl_get_double(cfg, "train.optimizer.beta1", 0.9, 0, 0.999999, &t->beta1)) ||
        (st = bl_get_double(cfg, "train.optimizer.beta2", 0.999, 0, 0.999999999, &t->beta2)) ||
        (st = bl_get_double(cfg, "train.optimizer.eps", 1e-8, 0, 1, &t->eps)) ||
        (st = bl_get_double(cfg, "train.optimizer.weight_decay", 0, 0, 1, &t->weight_decay)) ||
        (st = bl_get_double(cfg, "train.scheduler.gamma", 0.1, 0, 1, &t->gamma)) ||
        (st = bl_config_string(cfg, "train.output_dir", "output", 0, &t->output_dir)) ||
        (st = bl_get_int(cfg, "train.plot.width", 800, 64, 10000, &t->plot_width)) ||
        (st = bl_get_int(cfg, "train.plot.height", 500, 64, 10000, &t->plot_height)))
        return st;
    if (t->min_epochs > t->max_epochs)
        return bl_error(BL_ERR_CONFIG, "%s: key 'train.min_epochs' = %lld exceeds train.max_epochs = %lld",
                        bl_config_where(cfg, "train.min_epochs"), (long long)t->min_epochs,
                        (long long)t->max_epochs);
    double ms[BL_MAX_MILESTONES];
    t->n_milestones = 1;
    t->milestones[0] = 32;
    if (bl_config_exists(cfg, "train.scheduler.milestones")) {
        if ((st = bl_config_doubles(cfg, "train.scheduler.milestones", 0, BL_MAX_MILESTONES, ms,
                                    &t->n_milestones)))
            return st;
        for (int i = 0; i < t->n_milestones; i++) {
            if (ms[i] != floor(ms[i]) || ms[i] < 1 || (i && ms[i] <= ms[i - 1]))
                return bl_error(BL_ERR_CONFIG, "%s: key 'train.scheduler.milestones': entry %d = %g; "
                                "milestones are increasing whole epochs >= 1",
                                bl_config_where(cfg, "train.scheduler.milestones"), i, ms[i]);
            t->milestones[i] = (int64_t)ms[i];
        }
    }
    return BL_OK;
}

/* survey, prior (+ prior.fields and the top-level prior_fields) and simulator groups: what
 * bl_simulator_from_config reads, plus the encoder's constraints on the tiles */
static bl_status bl_read_simulator(bl_settings *s)
{
    bl_config *cfg = s->cfg;
    bl_status st;
    if ((st = bl_survey_from_config(&s->survey, cfg, "survey"))) return st;
    s->n_bands = s->survey.n_bands;
    s->band_names = s->survey.band_name_ptrs;
    if ((st = bl_prior_from_config(&s->prior, cfg, s->survey.n_bands))) return st;
    const bl_prior_params *pp = bl_prior_get_params(s->prior);
    if (pp->tile_slen != 2 && pp->tile_slen != 4)
        return bl_error(BL_ERR_CONFIG, "%s: key 'prior.tile_slen' = %d: the encoder supports 2 or 4",
                        bl_config_where(cfg, "prior.tile_slen"), pp->tile_slen);
    if ((pp->n_tiles_h * pp->tile_slen) % 16 || (pp->n_tiles_w * pp->tile_slen) % 16)
        return bl_error(BL_ERR_CONFIG, "%s: images of %lld x %lld pixels (prior.n_tiles_h/w x tile_slen): "
                        "the encoder needs multiples of 16", bl_config_where(cfg, "prior.n_tiles_h"),
                        (long long)(pp->n_tiles_h * pp->tile_slen), (long long)(pp->n_tiles_w * pp->tile_slen));
    s->tile_slen = pp->tile_slen;
    s->batch_size = pp->batch_size;
    return bl_sim_opts_from_config(&s->sim, cfg, "simulator");
}

static bl_status bl_read_generate(bl_settings *s)
{
    bl_config *cfg = s->cfg;
    bl_generate_settings *g = &s->generate;
    bl_status st;
    if ((st = bl_get_int(cfg, "generate.n_files", 32, 1, 1 << 20, &g->n_files)) ||
        (st = bl_get_int(cfg, "generate.n_batches_per_file", 16, 1, 1 << 20, &g->n_batches_per_file)) ||
        (st = bl_config_string(cfg, "generate.output_dir", "data/sim", 0, &g->output_dir)) ||
        (st = bl_config_bool(cfg, "generate.fits", 0, 0, &g->fits)))
        return st;
    return BL_OK;
}

bl_status bl_settings_load(bl_settings **out, const char *path, int n_sets, const char *const *sets,
                           int has_seed, int64_t seed)
{
    *out = NULL;
    bl_settings *s = bl_calloc(1, sizeof *s);
    bl_status st = bl_config_load(&s->cfg, path);
    if (st) {
        free(s);
        return st;
    }
    s->path = bl_config_file(s->cfg);
    for (int i = 0; i < n_sets; i++)
        if ((st = bl_config_set(s->cfg, sets[i]))) goto fail;
    if (has_seed) {
        char a[64];
        snprintf(a, sizeof a, "train.seed=%lld", (long long)seed);
        if (!bl_config_exists(s->cfg, "train")) {
            st = bl_error(BL_ERR_CONFIG, "%s: --seed needs a 'train' group", s->path);
            goto fail;
        }
        if ((st = bl_config_set(s->cfg, a))) goto fail;
    }
    if ((st = bl_read_simulator(s)) || (st = bl_read_encoder(s)) || (st = bl_read_train(s)) || (st = bl_read_generate(s)) ||
        (st = bl_metrics_opts_from_config(s->cfg, "metrics", s->n_bands, &s->metrics)))
        goto fail;
    if ((st = bl_config_check_unused(s->cfg))) goto fail;
    *out = s;
    return BL_OK;
fail:
    bl_settings_free(s);
    return st;
}

void bl_settings_free(bl_settings *s)
{
    if (!s) return;
    bl_vardist_spec_free(s->spec);
    bl_prior_free(s->prior);
    bl_config_free(s->cfg);
    free(s);
}
