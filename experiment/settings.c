#include "experiment/settings.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


bl_train_settings bl_train_settings_default(void)
{
    return (bl_train_settings){.seed = 42, .data = "simulate", .steps_per_epoch = 128,
                               .val_batches = 10, .max_epochs = 50, .min_epochs = 1, .patience = 5,
                               .max_steps = 0, .fixed_batch = 0, .val_metrics = 1,
                               .ddp_bucket_mb = BL_DDP_BUCKET_MB, .print_every = 10,
                               .checkpoint_every = 0, .adam = bl_adam_defaults(),
                               .n_milestones = 1, .milestones = {32}, .gamma = 0.1,
                               .output_dir = "output", .plot_width = 800, .plot_height = 500};
}

bl_generate_settings bl_generate_settings_default(void)
{
    return (bl_generate_settings){.n_files = 32, .n_batches_per_file = 16,
                                  .output_dir = "data/sim", .fits = 0};
}

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

/* Two factors explaining the same column of a catalog field would both be trained on it and
 * the later one would overwrite the earlier one's predictions: an error naming both. */
static bl_status bl_check_factor_columns(const bl_settings *s)
{
    const bl_vardist_spec *spec = s->spec;
    int n_listed = bl_config_length(s->cfg, "factors"), first_listed = spec->n_factors - n_listed;
    for (int j = 1; j < spec->n_factors; j++)
        for (int i = 0; i < j; i++) {
            const bl_factor *a = &spec->factors[i], *b = &spec->factors[j];
            int a1 = a->column + a->kind->value_dim, b1 = b->column + b->kind->value_dim;
            if (strcmp(a->field, b->field) || a1 <= b->column || b1 <= a->column) continue;
            char where[1100] = "";
            if (j >= first_listed) {
                char key[64];
                snprintf(key, sizeof key, "factors.[%d]", j - first_listed);
                snprintf(where, sizeof where, "%s: ", bl_config_where(s->cfg, key));
            }
            return bl_error(BL_ERR_CONFIG, "%sfactors '%s' and '%s' both explain %s[%d]: two factors on the "
                            "same column are not allowed (set 'column', or encoder.base_factors = \"none\")",
                            where, a->name, b->name, a->field, a->column > b->column ? a->column : b->column);
        }
    return BL_OK;
}

static bl_status bl_read_encoder(bl_settings *s)
{
    bl_config *cfg = s->cfg;
    bl_status st;
    int64_t v;
    s->encoder = bl_encoder_opts_default();
    if ((st = bl_get_int(cfg, "encoder.tiles_to_crop", s->encoder.tiles_to_crop, 0, 64, &v))) return st;
    s->encoder.tiles_to_crop = (int)v;
    if ((st = bl_get_double(cfg, "encoder.min_flux_threshold", s->encoder.min_flux_threshold, 0,
                            INFINITY, &s->encoder.min_flux_threshold)))
        return st;
    if ((st = bl_get_int(cfg, "encoder.flux_band", s->encoder.flux_band, 0, s->n_bands - 1, &v))) return st;
    s->encoder.flux_band = (int)v;
    if ((st = bl_config_bool(cfg, "encoder.use_checkerboard", s->encoder.use_checkerboard, 0,
                             &s->encoder.use_checkerboard)))
        return st;
    if ((st = bl_config_bool(cfg, "encoder.double_detect", s->encoder.double_detect, 0,
                             &s->encoder.double_detect)))
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
    if ((st = bl_check_factor_columns(s))) return st;

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
        /* CatalogNet's C3 blocks halve catalog_width: 1 would make a layer of 0 channels */
        int lo = widths[i].field == &s->arch.catalog_width ? 2 : 1;
        if ((st = bl_get_int(cfg, widths[i].key, *widths[i].field, lo, 4096, &v))) return st;
        *widths[i].field = (int)v;
    }
    return BL_OK;
}

static bl_status bl_read_train(bl_settings *s)
{
    bl_config *cfg = s->cfg;
    bl_train_settings *t = &s->train;
    bl_status st;
    *t = bl_train_settings_default();
    /* every default comes from the struct just filled (one place for each number) */
    if ((st = bl_get_int(cfg, "train.seed", t->seed, 0, INT64_MAX, &t->seed)) ||
        (st = bl_config_string(cfg, "train.data", t->data, 0, &t->data)) ||
        (st = bl_get_int(cfg, "train.steps_per_epoch", t->steps_per_epoch, 1, INT64_MAX, &t->steps_per_epoch)) ||
        (st = bl_get_int(cfg, "train.val_batches", t->val_batches, 0, 1 << 20, &t->val_batches)) ||
        (st = bl_get_int(cfg, "train.max_epochs", t->max_epochs, 1, INT64_MAX, &t->max_epochs)) ||
        (st = bl_get_int(cfg, "train.min_epochs", t->min_epochs, 0, INT64_MAX, &t->min_epochs)) ||
        (st = bl_get_int(cfg, "train.patience", t->patience, 0, INT64_MAX, &t->patience)) ||
        (st = bl_get_int(cfg, "train.max_steps", t->max_steps, 0, INT64_MAX, &t->max_steps)) ||
        (st = bl_config_bool(cfg, "train.fixed_batch", t->fixed_batch, 0, &t->fixed_batch)) ||
        (st = bl_config_bool(cfg, "train.sync_batchnorm", t->sync_batchnorm, 0, &t->sync_batchnorm)) ||
        (st = bl_config_bool(cfg, "train.val_metrics", t->val_metrics, 0, &t->val_metrics)) ||
        (st = bl_config_bool(cfg, "train.ddp_overlap", t->ddp_overlap, 0, &t->ddp_overlap)) ||
        (st = bl_get_double(cfg, "train.ddp_bucket_mb", t->ddp_bucket_mb, 0.001, 4000, &t->ddp_bucket_mb)) ||
        (st = bl_get_int(cfg, "train.print_every", t->print_every, 1, INT64_MAX, &t->print_every)) ||
        (st = bl_get_int(cfg, "train.checkpoint_every", t->checkpoint_every, 0, INT64_MAX, &t->checkpoint_every)) ||
        (st = bl_get_double(cfg, "train.optimizer.lr", t->adam.lr, 0, 1e3, &t->adam.lr)) ||
        (st = bl_get_double(cfg, "train.optimizer.beta1", t->adam.beta1, 0, 0.999999, &t->adam.beta1)) ||
        (st = bl_get_double(cfg, "train.optimizer.beta2", t->adam.beta2, 0, 0.999999999, &t->adam.beta2)) ||
        (st = bl_get_double(cfg, "train.optimizer.eps", t->adam.eps, 0, 1, &t->adam.eps)) ||
        (st = bl_get_double(cfg, "train.optimizer.weight_decay", t->adam.weight_decay, 0, 1, &t->adam.weight_decay)) ||
        (st = bl_get_double(cfg, "train.scheduler.gamma", t->gamma, 0, 1, &t->gamma)) ||
        (st = bl_config_string(cfg, "train.output_dir", t->output_dir, 0, &t->output_dir)) ||
        (st = bl_get_int(cfg, "train.plot.width", t->plot_width, 64, 10000, &t->plot_width)) ||
        (st = bl_get_int(cfg, "train.plot.height", t->plot_height, 64, 10000, &t->plot_height)) ||
        (st = bl_config_bool(cfg, "train.plot.log_scale", t->plot_log, 0, &t->plot_log)))
        return st;
    if (t->min_epochs > t->max_epochs)
        return bl_error(BL_ERR_CONFIG, "%s: key 'train.min_epochs' = %lld exceeds train.max_epochs = %lld",
                        bl_config_where(cfg, "train.min_epochs"), (long long)t->min_epochs,
                        (long long)t->max_epochs);
    double ms[BL_MAX_MILESTONES];
    if (bl_config_exists(cfg, "train.scheduler.milestones")) {
        if ((st = bl_config_doubles(cfg, "train.scheduler.milestones", 0, BL_MAX_MILESTONES, ms,
                                    &t->n_milestones)))
            return st;
        for (int i = 0; i < t->n_milestones; i++) {
            /* range-checked as a double before the conversion (the schedule counts in int) */
            if (ms[i] != floor(ms[i]) || !(ms[i] >= 1 && ms[i] <= INT_MAX) || (i && ms[i] <= ms[i - 1]))
                return bl_error(BL_ERR_CONFIG, "%s: key 'train.scheduler.milestones': entry %d = %g; "
                                "milestones are increasing whole epochs in [1, 2147483647]",
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
    *g = bl_generate_settings_default();
    if ((st = bl_get_int(cfg, "generate.n_files", g->n_files, 1, 1 << 20, &g->n_files)) ||
        (st = bl_get_int(cfg, "generate.n_batches_per_file", g->n_batches_per_file, 1, 1 << 20, &g->n_batches_per_file)) ||
        (st = bl_config_string(cfg, "generate.output_dir", g->output_dir, 0, &g->output_dir)) ||
        (st = bl_config_bool(cfg, "generate.fits", g->fits, 0, &g->fits)))
        return st;
    return BL_OK;
}

static bl_status bl_settings_finish(bl_settings **out, bl_settings *s, int n_sets,
                                    const char *const *sets, int has_seed, int64_t seed);

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
    return bl_settings_finish(out, s, n_sets, sets, has_seed, seed);
}

bl_status bl_settings_load_string(bl_settings **out, const char *text, const char *name, int n_sets,
                                  const char *const *sets, int has_seed, int64_t seed)
{
    *out = NULL;
    bl_settings *s = bl_calloc(1, sizeof *s);
    bl_status st = bl_config_load_string(&s->cfg, text, name);
    if (st) {
        free(s);
        return st;
    }
    return bl_settings_finish(out, s, n_sets, sets, has_seed, seed);
}

static bl_status bl_settings_finish(bl_settings **out, bl_settings *s, int n_sets,
                                    const char *const *sets, int has_seed, int64_t seed)
{
    bl_status st;
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

double bl_settings_step_bytes(const bl_settings *s)
{
    const bl_net_arch *a = &s->arch;
    const bl_prior_params *pp = bl_prior_get_params(s->prior);
    const double B = (double)s->batch_size, slen = (double)s->tile_slen;
    const double H = (double)pp->n_tiles_h * slen, W = (double)pp->n_tiles_w * slen;
    const double px = H * W, tiles = (double)pp->n_tiles_h * (double)pp->n_tiles_w;
    const double fw = a->features_width, nf = a->num_features, cw = a->catalog_width,
                 xw = a->context_width;
    /* values per image kept for the backward pass: every convolution block keeps its output,
     * the normalised and the activated values (3 per channel); FeaturesNet runs the 3-D input
     * convolution and 5 blocks of fw channels at full resolution, 6 blocks of 2 fw at half;
     * per tile the last features block, ContextNet (3 blocks of xw, the merge) and CatalogNet
     * (about 20 layers of catalog_width), twice with the checkerboard */
    const double full = 2.0 * a->n_bands * a->ch_per_band + 3.0 * fw * 6;
    const double half = 3.0 * 2 * fw * 6;
    const double tile = 3.0 * nf * 2 + 3.0 * xw * 3 + 3.0 * (nf + xw) + 3.0 * cw * 20;
    const double net = full * px + half * px / 4 + tile * tiles * (s->encoder.use_checkerboard ? 2 : 1);
    /* gradients double it; the simulated batch holds ~8 planes per band (images, background,
     * renders, noise) */
    const double sim = 8.0 * s->n_bands * px;
    return B * (2.0 * net + sim) * sizeof(bl_real);
}

bl_status bl_settings_check_memory(const bl_settings *s)
{
    double need = bl_settings_step_bytes(s);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    double have = pages > 0 && page > 0 ? (double)pages * (double)page : INFINITY;
    if (need <= have) return BL_OK;
    const bl_prior_params *pp = bl_prior_get_params(s->prior);
    const double gib = 1024.0 * 1024.0 * 1024.0;
    return bl_error(BL_ERR_NOMEM,
                    "%s: needs ~%.3g GiB for batch %lld at %lldx%lld (the machine has %.3g GiB); "
                    "reduce prior.batch_size (the training batch), the image size or the network widths",
                    s->path, need / gib, (long long)s->batch_size,
                    (long long)pp->n_tiles_h * s->tile_slen, (long long)pp->n_tiles_w * s->tile_slen,
                    have / gib);
}
