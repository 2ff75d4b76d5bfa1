#include "lib/sim/simulate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/fits.h"
#include "lib/io/safetensors.h"
#include "lib/sim/deconvolve.h"

/* stream tag of the pixel noise (any constant distinct from the prior's name hashes) */
#define BL_NOISE_STREAM 0x6e6f697365ULL /* "noise" */

struct bl_simulator {
    bl_survey sv;
    bl_prior *prior;
    bl_renderer *renderer;
    bl_sim_opts opts;
    bl_rl_plan *rl;
    double *psf_image;          /* (NB, psf_slen, psf_slen): BLISS's pixelised PSF, for RL */
    int64_t B, H, W;
};

void bl_sim_opts_default(bl_sim_opts *o)
{
    o->deconvolve = 0;
    o->rl_iterations = 50;
    o->rl_pad = 10;
}

bl_status bl_simulator_alloc(bl_simulator **out, const bl_survey *sv, bl_prior *prior,
                             const bl_sim_opts *opts)
{
    *out = NULL;
    const bl_prior_params *p = bl_prior_get_params(prior);
    bl_status s = bl_survey_check(sv);
    if (s != BL_OK) return s;
    if (p->n_bands != sv->n_bands)
        return bl_error(BL_ERR_CONFIG, "prior has %d bands, survey has %d", p->n_bands, sv->n_bands);
    if (opts->rl_iterations < 0 || opts->rl_pad < 0)
        return bl_error(BL_ERR_CONFIG, "simulator: rl_iterations and rl_pad must be >= 0");
    bl_simulator *sim = bl_calloc(1, sizeof *sim);
    sim->sv = *sv;
    sim->prior = prior;
    sim->opts = *opts;
    sim->B = p->batch_size;
    sim->H = p->n_tiles_h * p->tile_slen;
    sim->W = p->n_tiles_w * p->tile_slen;
    sim->renderer = bl_renderer_alloc(sv, sim->H, sim->W);
    const size_t ps = (size_t)sv->psf_slen * sv->psf_slen;
    sim->psf_image = bl_malloc((size_t)sv->n_bands * ps * sizeof(double));
    for (int b = 0; b < sv->n_bands; b++) bl_psf_image(&sv->psf[b], sv->psf_slen, sim->psf_image + b * ps);
    if (opts->deconvolve)
        sim->rl = bl_rl_plan_alloc(sim->H, sim->W, sv->psf_slen, opts->rl_pad, opts->rl_iterations);
    *out = sim;
    return BL_OK;
}

bl_status bl_sim_opts_from_config(bl_sim_opts *o, bl_config *cfg, const char *path)
{
    bl_sim_opts_default(o);
    char dk[256], ik[256], pk[256];
    snprintf(dk, sizeof dk, "%s.deconvolve", path);
    snprintf(ik, sizeof ik, "%s.rl_iterations", path);
    snprintf(pk, sizeof pk, "%s.rl_pad", path);
    int64_t it = o->rl_iterations, pad = o->rl_pad;
    bl_status s;
    if ((s = bl_config_bool(cfg, dk, o->deconvolve, 0, &o->deconvolve)) != BL_OK ||
        (s = bl_config_int(cfg, ik, it, 0, &it)) != BL_OK ||
        (s = bl_config_check_range(cfg, ik, (double)it, 0, 100000)) != BL_OK ||
        (s = bl_config_int(cfg, pk, pad, 0, &pad)) != BL_OK ||
        (s = bl_config_check_range(cfg, pk, (double)pad, 0, 10000)) != BL_OK)
        return s;
    o->rl_iterations = (int)it;
    o->rl_pad = (int)pad;
    return BL_OK;
}

bl_status bl_simulator_from_config(bl_simulator **out, bl_config *cfg)
{
    *out = NULL;
    bl_survey sv;
    bl_status s = bl_survey_from_config(&sv, cfg, "survey");
    if (s != BL_OK) return s;
    bl_prior *prior;
    if ((s = bl_prior_from_config(&prior, cfg, sv.n_bands)) != BL_OK) return s;
    bl_sim_opts o;
    if ((s = bl_sim_opts_from_config(&o, cfg, "simulator")) != BL_OK ||
        (s = bl_simulator_alloc(out, &sv, prior, &o)) != BL_OK)
        bl_prior_free(prior);
    return s;
}

void bl_simulator_free(bl_simulator *sim)
{
    if (!sim) return;
    bl_prior_free(sim->prior);
    bl_renderer_free(sim->renderer);
    bl_rl_plan_free(sim->rl);
    free(sim->psf_image);
    free(sim);
}

const bl_survey *bl_simulator_survey(const bl_simulator *sim) { return &sim->sv; }
const bl_prior *bl_simulator_prior(const bl_simulator *sim) { return sim->prior; }
const bl_renderer *bl_simulator_renderer(const bl_simulator *sim) { return sim->renderer; }

static bl_sim_batch *bl_sim_batch_new(int64_t B, int64_t NB, int64_t H, int64_t W, int deconv)
{
    bl_sim_batch *batch = bl_calloc(1, sizeof *batch);
    batch->B = B;
    batch->NB = NB;
    batch->H = H;
    batch->W = W;
    batch->images = bl_tensor_alloc("images", 4, BL_SHAPE(B, NB, H, W), 0);
    batch->background = bl_tensor_alloc("background", 4, BL_SHAPE(B, NB, H, W), 0);
    batch->psf_params = bl_tensor_alloc("psf_params", 3, BL_SHAPE(B, NB, BL_PSF_N_PARAMS), 0);
    if (deconv) batch->deconvolution = bl_tensor_alloc("deconvolution", 4, BL_SHAPE(B, NB, H, W), 0);
    return batch;
}

bl_sim_batch *bl_sim_batch_alloc(const bl_simulator *sim)
{
    const bl_prior_params *p = bl_prior_get_params(sim->prior);
    bl_sim_batch *batch = bl_sim_batch_new(sim->B, sim->sv.n_bands, sim->H, sim->W, sim->opts.deconvolve);
    for (int k = 0; k < sim->sv.n_bands; k++)
        snprintf(batch->band_names[k], BL_BAND_NAME_MAX, "%s", sim->sv.band_names[k]);
    batch->tile_catalog = bl_tile_catalog_alloc(p->batch_size, p->n_tiles_h, p->n_tiles_w,
                                                p->max_sources, p->tile_slen, p->n_bands);
    return batch;
}

void bl_sim_batch_free(bl_sim_batch *batch)
{
    if (!batch) return;
    bl_tensor_free(batch->images);
    bl_tensor_free(batch->background);
    bl_tensor_free(batch->psf_params);
    bl_tensor_free(batch->deconvolution);
    bl_tile_catalog_free(batch->tile_catalog);
    free(batch);
}

/* Render image b of the catalog into img (NB, H, W), zeroed first. */
static void bl_render_image(const bl_simulator *sim, bl_render_scratch *w, const bl_tile_catalog *cat,
                            int64_t b, bl_real *img)
{
    const int NB = sim->sv.n_bands;
    const int64_t H = sim->H, W = sim->W;
    memset(img, 0, (size_t)(NB * H * W) * sizeof(bl_real));
    const bl_tensor *locs = bl_tile_catalog_require(cat, "locs");
    const bl_tensor *type = bl_tile_catalog_get(cat, "source_type");
    const bl_tensor *sf = bl_tile_catalog_get(cat, "star_fluxes");
    const bl_tensor *gf = bl_tile_catalog_get(cat, "galaxy_fluxes");
    const bl_tensor *gp = bl_tile_catalog_get(cat, "galaxy_params");
    const int slen = cat->tile_slen;
    double flux[BL_SURVEY_MAX_BANDS];
    for (int64_t i = 0; i < cat->ht; i++)
        for (int64_t j = 0; j < cat->wt; j++) {
            const int32_t n = cat->n_sources[bl_tile_index(cat, b, i, j)];
            for (int64_t s = 0; s < n && s < cat->S; s++) {
                const bl_real *loc = locs->data + bl_tile_offset(cat, b, i, j, s, 2, 0);
                const double row = (double)i * slen + (double)loc[0] * slen;
                const double col = (double)j * slen + (double)loc[1] * slen;
                const int galaxy = type && type->data[bl_tile_offset(cat, b, i, j, s, 1, 0)] == 1;
                const bl_tensor *ft = galaxy ? gf : sf;
                if (!ft) continue;
                for (int k = 0; k < NB; k++)
                    flux[k] = (double)ft->data[bl_tile_offset(cat, b, i, j, s, NB, k)] * sim->sv.nelec_per_nmgy[k];
                if (galaxy) {
                    BL_ASSERT(gp, "bl_simulator: a galaxy without galaxy_params");
                    const bl_real *g = gp->data + bl_tile_offset(cat, b, i, j, s, 6, 0);
                    bl_galaxy_shape shape = {g[0], g[1], g[2], g[3], g[4], g[5]};
                    bl_render_galaxy(sim->renderer, w, img, row, col, &shape, flux);
                } else {
                    bl_render_star(sim->renderer, w, img, row, col, flux);
                }
            }
        }
    bl_render_flush(sim->renderer, w, img);
}

/* every value the renderer reads for an on source must be finite */
static bl_status bl_check_catalog(const bl_tile_catalog *cat)
{
    if (!bl_tile_catalog_has(cat, "locs"))
        return bl_error(BL_ERR_ARG, "render: the catalog has no 'locs' field");
    const char *names[4] = {"locs", "star_fluxes", "galaxy_fluxes", "galaxy_params"};
    for (int f = 0; f < 4; f++) {
        const bl_tensor *t = bl_tile_catalog_get(cat, names[f]);
        if (!t) continue;
        const int64_t k = t->shape[4];
        for (int64_t b = 0; b < cat->B; b++)
            for (int64_t i = 0; i < cat->ht; i++)
                for (int64_t j = 0; j < cat->wt; j++) {
                    int32_t n = cat->n_sources[bl_tile_index(cat, b, i, j)];
                    for (int64_t s = 0; s < n && s < cat->S; s++)
                        for (int64_t c = 0; c < k; c++)
                            if (!isfinite(t->data[bl_tile_offset(cat, b, i, j, s, (int)k, (int)c)]))
                                return bl_error(BL_ERR_NAN, "render: %s of image %lld, tile (%lld, %lld), "
                                                "slot %lld is not finite", names[f], (long long)b,
                                                (long long)i, (long long)j, (long long)s);
                }
    }
    return BL_OK;
}

bl_status bl_simulator_render(const bl_simulator *sim, const bl_tile_catalog *cat, bl_tensor *images)
{
    const int64_t B = cat->B, NB = sim->sv.n_bands, H = sim->H, W = sim->W;
    BL_ASSERT(images->ndim == 4 && images->shape[0] == B && images->shape[1] == NB &&
                  images->shape[2] == H && images->shape[3] == W,
              "bl_simulator_render: images must be (%lld, %lld, %lld, %lld)", (long long)B,
              (long long)NB, (long long)H, (long long)W);
    BL_ASSERT(cat->ht * cat->tile_slen == H && cat->wt * cat->tile_slen == W && cat->n_bands == NB,
              "bl_simulator_render: catalog geometry differs from the simulator's");
    bl_status st = bl_check_catalog(cat);
    if (st != BL_OK) return st;
#pragma omp parallel if (B > 1)
    {
        bl_render_scratch *w = bl_render_scratch_alloc(sim->renderer);
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++) bl_render_image(sim, w, cat, b, images->data + b * NB * H * W);
        bl_render_scratch_free(w);
    }
    return BL_OK;
}

void bl_simulator_generate(const bl_simulator *sim, uint64_t seed, uint64_t batch_index,
                           bl_sim_batch *batch)
{
    bl_simulator_generate_slice(sim, seed, batch_index, 0, batch);
}

void bl_simulator_generate_slice(const bl_simulator *sim, uint64_t seed, uint64_t batch_index,
                                 int64_t first, bl_sim_batch *batch)
{
    const int64_t B = sim->B, NB = sim->sv.n_bands, H = sim->H, W = sim->W;
    BL_ASSERT(batch->B == B && batch->NB == NB && batch->H == H && batch->W == W &&
                  (batch->deconvolution != NULL) == (sim->opts.deconvolve != 0),
              "bl_simulator_generate: batch was not made by bl_sim_batch_alloc for this simulator");
    bl_prior_sample_slice(sim->prior, seed, batch_index, first, batch->tile_catalog);
    const bl_tile_catalog *cat = batch->tile_catalog;
    const int64_t plane = H * W;
    for (int64_t b = 0; b < B; b++)
        for (int64_t k = 0; k < NB; k++) {
            double v[BL_PSF_N_PARAMS];
            bl_psf_params_to_array(&sim->sv.psf[k], v);
            for (int i = 0; i < BL_PSF_N_PARAMS; i++)
                batch->psf_params->data[(b * NB + k) * BL_PSF_N_PARAMS + i] = (bl_real)v[i];
        }
#pragma omp parallel if (B > 1)
    {
        bl_render_scratch *w = bl_render_scratch_alloc(sim->renderer);
        bl_rng *rng = bl_rng_alloc(seed, 0);
        bl_rl_scratch *rl = sim->rl ? bl_rl_scratch_alloc(sim->rl) : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++) {
            bl_real *img = batch->images->data + b * NB * plane;
            bl_real *bg = batch->background->data + b * NB * plane;
            bl_render_image(sim, w, cat, b, img);
            bl_rng_reseed(rng, seed, bl_rng_mix(bl_rng_mix(batch_index, (uint64_t)(first + b)), BL_NOISE_STREAM));
            for (int64_t k = 0; k < NB; k++) {
                const double sky = sim->sv.sky[k];
                for (int64_t i = 0; i < plane; i++) {
                    double rendered = img[k * plane + i];
                    if (rendered < 1e-8) rendered = 1e-8;
                    double mean = rendered + sky;
                    if (mean < 1e-6) mean = 1e-6;
                    bg[k * plane + i] = (bl_real)sky;
                    img[k * plane + i] = (bl_real)(mean + sqrt(mean) * bl_rng_normal(rng));
                }
            }
            if (rl)
                for (int64_t k = 0; k < NB; k++)
                    bl_richardson_lucy(sim->rl, rl, img + k * plane,
                                       sim->psf_image + k * sim->sv.psf_slen * sim->sv.psf_slen, sim->sv.sky[k],
                                       batch->deconvolution->data + (b * NB + k) * plane);
        }
        bl_rl_scratch_free(rl);
        bl_rng_free(rng);
        bl_render_scratch_free(w);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Files                                                                                       */

#define BL_BATCH_PREFIX "tile_catalog."

bl_status bl_sim_batch_write(const bl_sim_batch *batch, const char *path)
{
    bl_safetensors *st = bl_safetensors_alloc();
    const bl_tile_catalog *cat = batch->tile_catalog;
    char bands[256] = "", buf[64];
    for (int k = 0; k < batch->NB; k++) {
        if (k) strncat(bands, ",", sizeof bands - strlen(bands) - 1);
        strncat(bands, batch->band_names[k], sizeof bands - strlen(bands) - 1);
    }
    bl_safetensors_set_meta(st, "format", "bliss-c simulated batch v1");
    bl_safetensors_set_meta(st, "bands", bands);
    snprintf(buf, sizeof buf, "%d", cat->tile_slen);
    bl_safetensors_set_meta(st, "tile_slen", buf);
    bl_status s = BL_OK;
    if ((s = bl_safetensors_add_tensor(st, "images", batch->images, BL_DTYPE_F32)) != BL_OK ||
        (s = bl_safetensors_add_tensor(st, "background", batch->background, BL_DTYPE_F32)) != BL_OK ||
        (s = bl_safetensors_add_tensor(st, "psf_params", batch->psf_params, BL_DTYPE_F32)) != BL_OK)
        goto done;
    if (batch->deconvolution &&
        (s = bl_safetensors_add_tensor(st, "deconvolution", batch->deconvolution, BL_DTYPE_F64)) != BL_OK)
        goto done;
    const int64_t nt = bl_tile_catalog_n_tiles(cat);
    int64_t *ns = bl_malloc((size_t)(nt ? nt : 1) * sizeof(int64_t));
    for (int64_t i = 0; i < nt; i++) ns[i] = cat->n_sources[i];
    s = bl_safetensors_add(st, BL_BATCH_PREFIX "n_sources", BL_DTYPE_I64, 3,
                           BL_SHAPE(cat->B, cat->ht, cat->wt), ns);
    free(ns);
    for (int f = 0; f < cat->n_fields && s == BL_OK; f++) {
        const bl_catalog_field *fd = &cat->fields[f];
        const bl_catalog_field_info *info = bl_catalog_field_find(fd->name);
        char name[BL_CATALOG_NAME_MAX + 32];
        snprintf(name, sizeof name, BL_BATCH_PREFIX "%s", fd->name);
        if (info && (info->flags & BL_FIELD_INTEGER)) {
            int64_t *v = bl_malloc((size_t)(fd->t->numel ? fd->t->numel : 1) * sizeof(int64_t));
            for (int64_t i = 0; i < fd->t->numel; i++) v[i] = (int64_t)llround(fd->t->data[i]);
            s = bl_safetensors_add(st, name, BL_DTYPE_I64, fd->t->ndim, fd->t->shape, v);
            free(v);
        } else {
            s = bl_safetensors_add_tensor(st, name, fd->t, BL_DTYPE_F32);
        }
    }
    if (s == BL_OK) s = bl_safetensors_write(st, path);
done:
    bl_safetensors_free(st);
    return s;
}

bl_status bl_sim_batch_read(bl_sim_batch **out, const char *path)
{
    *out = NULL;
    bl_safetensors *st;
    bl_status s = bl_safetensors_read(&st, path);
    if (s != BL_OK) return s;
    bl_sim_batch *batch = NULL;
    const bl_st_tensor *im, *ns;
    if ((s = bl_safetensors_expect(st, path, "images", 4, BL_SHAPE(-1, -1, -1, -1), &im)) != BL_OK)
        goto fail;
    const int64_t B = im->shape[0], NB = im->shape[1], H = im->shape[2], W = im->shape[3];
    if (B < 1 || H < 1 || W < 1) {
        s = bl_error(BL_ERR_FORMAT, "%s: images have shape [%lld, %lld, %lld, %lld]: an empty batch",
                     path, (long long)B, (long long)NB, (long long)H, (long long)W);
        goto fail;
    }
    if (NB < 1 || NB > BL_SURVEY_MAX_BANDS) {
        s = bl_error(BL_ERR_FORMAT, "%s: images have %lld bands (1 to %d supported)", path,
                     (long long)NB, BL_SURVEY_MAX_BANDS);
        goto fail;
    }
    const char *slen_s = bl_safetensors_meta(st, "tile_slen");
    char *end = NULL;
    long slen = slen_s ? strtol(slen_s, &end, 10) : 0;
    if (!slen_s || *end || slen < 1 || slen > H || H % slen || W % slen) {
        s = bl_error(BL_ERR_FORMAT, "%s: metadata tile_slen '%s' missing or not dividing %lld x %lld",
                     path, slen_s ? slen_s : "", (long long)H, (long long)W);
        goto fail;
    }
    const bl_st_tensor *dec = bl_safetensors_find(st, "deconvolution");
    batch = bl_sim_batch_new(B, NB, H, W, dec != NULL);
    const char *bands = bl_safetensors_meta(st, "bands");
    for (int k = 0; k < NB; k++) snprintf(batch->band_names[k], BL_BAND_NAME_MAX, "%d", k);
    if (bands) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", bands);
        char *save = NULL, *tok = strtok_r(tmp, ",", &save);
        for (int k = 0; k < NB && tok; k++, tok = strtok_r(NULL, ",", &save))
            snprintf(batch->band_names[k], BL_BAND_NAME_MAX, "%s", tok);
    }
    if ((s = bl_safetensors_read_into(st, path, "images", batch->images)) != BL_OK ||
        (s = bl_safetensors_read_into(st, path, "background", batch->background)) != BL_OK ||
        (s = bl_safetensors_read_into(st, path, "psf_params", batch->psf_params)) != BL_OK)
        goto fail;
    if (dec && (s = bl_safetensors_read_into(st, path, "deconvolution", batch->deconvolution)) != BL_OK)
        goto fail;
    const int64_t ht = H / slen, wt = W / slen;
    if ((s = bl_safetensors_expect(st, path, BL_BATCH_PREFIX "n_sources", 3, BL_SHAPE(B, ht, wt), &ns)) != BL_OK)
        goto fail;
    /* S from the first field */
    int64_t S = -1;
    for (int i = 0; i < st->n; i++)
        if (strncmp(st->tensors[i].name, BL_BATCH_PREFIX, strlen(BL_BATCH_PREFIX)) == 0 &&
            strcmp(st->tensors[i].name, BL_BATCH_PREFIX "n_sources") != 0 && st->tensors[i].ndim == 5) {
            S = st->tensors[i].shape[3];
            break;
        }
    if (S < 1) S = 1;
    if (S > BL_SIM_MAX_SOURCES_PER_TILE) {
        s = bl_error(BL_ERR_FORMAT, "%s: %lld sources per tile (at most %d supported)", path,
                     (long long)S, BL_SIM_MAX_SOURCES_PER_TILE);
        goto fail;
    }
    batch->tile_catalog = bl_tile_catalog_alloc(B, ht, wt, S, (int)slen, (int)NB);
    bl_tile_catalog *cat = batch->tile_catalog;
    for (int64_t i = 0; i < ns->numel; i++) {
        /* checked as a double before any conversion: NaN or 1e30 must not reach a cast */
        double v = ns->dtype == BL_DTYPE_I64 ? (double)((const int64_t *)ns->data)[i]
                 : ns->dtype == BL_DTYPE_I32 ? (double)((const int32_t *)ns->data)[i]
                 : ns->dtype == BL_DTYPE_F32 ? (double)((const float *)ns->data)[i]
                                             : ((const double *)ns->data)[i];
        if (!(v >= 0 && v <= (double)S) || v != floor(v)) {
            s = bl_error(BL_ERR_FORMAT, "%s: tile_catalog.n_sources[%lld] = %g is not a whole number in [0, %lld]",
                         path, (long long)i, v, (long long)S);
            goto fail;
        }
        cat->n_sources[i] = (int32_t)v;
    }
    for (int i = 0; i < st->n; i++) {
        const char *name = st->tensors[i].name;
        if (strncmp(name, BL_BATCH_PREFIX, strlen(BL_BATCH_PREFIX)) != 0) {
            if (strcmp(name, "images") && strcmp(name, "background") && strcmp(name, "psf_params") &&
                strcmp(name, "deconvolution")) {
                s = bl_error(BL_ERR_FORMAT, "%s: unexpected tensor '%s' in a batch file", path, name);
                goto fail;
            }
            continue;
        }
        const char *field = name + strlen(BL_BATCH_PREFIX);
        if (strcmp(field, "n_sources") == 0) continue;
        int k = bl_catalog_field_width(field, (int)NB);
        if (k < 0) {
            s = bl_error(BL_ERR_FORMAT, "%s: tensor '%s': '%s' is not a catalog field", path, name, field);
            goto fail;
        }
        /* the shape is checked before the field is allocated */
        if ((s = bl_safetensors_expect(st, path, name, 5, BL_SHAPE(B, ht, wt, S, k), NULL)) != BL_OK)
            goto fail;
        bl_tensor *t = bl_tile_catalog_add(cat, field);
        if ((s = bl_safetensors_read_into(st, path, name, t)) != BL_OK) goto fail;
    }
    bl_safetensors_free(st);
    *out = batch;
    return BL_OK;
fail:
    bl_sim_batch_free(batch);
    bl_safetensors_free(st);
    return s;
}

bl_status bl_sim_batch_write_fits(const bl_sim_batch *batch, const char *path)
{
    const char *names[BL_SURVEY_MAX_BANDS];
    for (int k = 0; k < batch->NB; k++) names[k] = batch->band_names[k];
    bl_full_catalog *full = bl_tile_catalog_to_full(batch->tile_catalog);
    bl_status s = bl_fits_write_batch(path, batch->images, batch->background, names, "electron", full);
    bl_full_catalog_free(full);
    return s;
}
