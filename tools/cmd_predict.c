/* bliss predict: catalogs for images -> PREFIX.fits (table) + PREFIX.safetensors (tile catalog). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/fits.h"
#include "lib/io/safetensors.h"
#include "lib/rng.h"
#include "models/checkpoint.h"
#include "tools/commands.h"
#include "tools/data.h"
#include "tools/dist.h"
#include "tools/run_info.h"

/* how positions are given (the FITS headers and safetensors metadata say it too) */
#define BL_PIXEL_CONVENTION "0-based (row, col); pixel i spans [i, i + 1), its centre is i + 0.5"

/* Tile catalogs under BLISS's batch names: "<prefix>.n_sources" (int64 like PyTorch's) and
 * "<prefix>.<field>"; n == 1: the catalog's own shapes, n > 1: a leading axis of the n
 * catalogs (all of one geometry and fields, as the --samples draws are). Integer fields
 * (source_type) as int64, like PyTorch's and the simulator's files. */
static bl_status bl_add_tile_catalogs(bl_safetensors *st, const char *prefix, bl_tile_catalog *const *cats, int n)
{
    const bl_tile_catalog *cat = cats[0];
    const int lead = n > 1;
    int64_t nt = bl_tile_catalog_n_tiles(cat), shape[8] = {n};
    int64_t *ns = bl_malloc(((size_t)(n * nt) + 1) * sizeof(int64_t));
    for (int k = 0; k < n; k++)
        for (int64_t t = 0; t < nt; t++) ns[k * nt + t] = cats[k]->n_sources[t];
    memcpy(shape + lead, (int64_t[]){cat->B, cat->ht, cat->wt}, 3 * sizeof(int64_t));
    char name[160];
    snprintf(name, sizeof name, "%s.n_sources", prefix);
    bl_status s = bl_safetensors_add(st, name, BL_DTYPE_I64, 3 + lead, shape, ns);
    free(ns);
    for (int f = 0; f < cat->n_fields && s == BL_OK; f++) {
        const bl_tensor *t = cat->fields[f].t;
        const bl_catalog_field_info *info = bl_catalog_field_find(cat->fields[f].name);
        const int integer = info && (info->flags & BL_FIELD_INTEGER);
        snprintf(name, sizeof name, "%s.%s", prefix, cat->fields[f].name);
        memcpy(shape + lead, t->shape, (size_t)t->ndim * sizeof(int64_t));
        size_t elem = integer ? sizeof(int64_t) : sizeof(float);
        char *buf = bl_malloc((size_t)(n * t->numel) * elem + 1);
        for (int k = 0; k < n; k++) {
            const bl_real *d = bl_tile_catalog_require(cats[k], cat->fields[f].name)->data;
            for (int64_t i = 0; i < t->numel; i++) {
                if (integer)
                    ((int64_t *)buf)[k * t->numel + i] = (int64_t)d[i];
                else
                    ((float *)buf)[k * t->numel + i] = (float)d[i];
            }
        }
        s = bl_safetensors_add(st, name, integer ? BL_DTYPE_I64 : BL_DTYPE_F32, t->ndim + lead, shape, buf);
        free(buf);
    }
    return s;
}

/* PREFIX.safetensors: the predicted tile catalog ("tile_catalog.*", with q's summaries) and
 * the --samples draws ("samples.*", K first), with the geometry in the metadata. */
static bl_status bl_write_tile_catalog(const char *path, bl_tile_catalog *cat, bl_tile_catalog *const *samples,
                                       int n_samples, int ttc, const char *checkpoint)
{
    bl_safetensors *st = bl_safetensors_alloc();
    bl_status s = bl_add_tile_catalogs(st, "tile_catalog", &cat, 1);
    if (s == BL_OK && n_samples > 0) s = bl_add_tile_catalogs(st, "samples", samples, n_samples);
    char v[64];
    snprintf(v, sizeof v, "%d", cat->tile_slen);
    bl_safetensors_set_meta(st, "tile_slen", v);
    snprintf(v, sizeof v, "%d", ttc);
    bl_safetensors_set_meta(st, "tiles_to_crop", v);
    snprintf(v, sizeof v, "%d", ttc * cat->tile_slen);
    bl_safetensors_set_meta(st, "origin_offset_pixels", v);
    snprintf(v, sizeof v, "%d", n_samples);
    bl_safetensors_set_meta(st, "n_samples", v);
    bl_safetensors_set_meta(st, "pixel_convention", BL_PIXEL_CONVENTION);
    bl_safetensors_set_meta(st, "checkpoint", checkpoint);
    if (s == BL_OK) s = bl_safetensors_write(st, path);
    bl_safetensors_free(st);
    return s;
}

/* Images whose sides are not multiples of 16 (what the encoder needs): an error saying so, or
 * with --pad both tensors grown at the bottom and right to the next multiples, the new pixels
 * holding the nearest background value in both (sky without sources). */
static bl_status bl_pad_images(const bl_cli *cli, bl_tensor **images, bl_tensor **background)
{
    const int64_t B = (*images)->shape[0], NB = (*images)->shape[1];
    const int64_t H = (*images)->shape[2], W = (*images)->shape[3];
    const int64_t PH = (H + 15) / 16 * 16, PW = (W + 15) / 16 * 16;
    if (PH == H && PW == W && H > 0 && W > 0) return BL_OK;
    if (!cli->pad || H == 0 || W == 0)
        return bl_error(BL_ERR_ARG, "%s: images of %lld x %lld pixels: the encoder needs sides that are "
                        "multiples of 16; pass --pad to pad them with their background to %lld x %lld "
                        "(sources are then predicted in the original area only), or crop them",
                        cli->input, (long long)H, (long long)W, (long long)PH, (long long)PW);
    bl_tensor *im = bl_tensor_alloc("images", 4, BL_SHAPE(B, NB, PH, PW), 0);
    bl_tensor *bg = bl_tensor_alloc("background", 4, BL_SHAPE(B, NB, PH, PW), 0);
    for (int64_t p = 0; p < B * NB; p++)
        for (int64_t i = 0; i < PH; i++)
            for (int64_t j = 0; j < PW; j++) {
                int64_t si = i < H ? i : H - 1, sj = j < W ? j : W - 1, src = (p * H + si) * W + sj;
                int64_t dst = (p * PH + i) * PW + j;
                bg->data[dst] = (*background)->data[src];
                im->data[dst] = i < H && j < W ? (*images)->data[src] : (*background)->data[src];
            }
    fprintf(stderr, "bliss predict: note: images of %lld x %lld pixels padded to %lld x %lld with their background\n",
            (long long)H, (long long)W, (long long)PH, (long long)PW);
    bl_tensor_free(*images);
    bl_tensor_free(*background);
    *images = im;
    *background = bg;
    return BL_OK;
}

/* Drop the sources outside the first height x width pixels (the padding). */
static void bl_full_catalog_keep_inside(bl_full_catalog *c, int64_t height, int64_t width)
{
    for (int64_t b = 0; b < c->B; b++) {
        int64_t w = 0;
        for (int64_t m = 0; m < c->n_sources[b]; m++) {
            const bl_real *pl = c->plocs->data + (b * c->M + m) * 2;
            if (!(pl[0] < height && pl[1] < width)) continue;
            if (w != m) {
                memmove(c->plocs->data + (b * c->M + w) * 2, pl, 2 * sizeof(bl_real));
                for (int f = 0; f < c->n_fields; f++) {
                    bl_tensor *t = c->fields[f].t;
                    int64_t k = t->numel / (c->B * c->M);
                    memmove(t->data + (b * c->M + w) * k, t->data + (b * c->M + m) * k, (size_t)k * sizeof(bl_real));
                }
            }
            w++;
        }
        c->n_sources[b] = (int32_t)w;
    }
    c->height = height;
    c->width = width;
}

/* The full catalog of a cropped tile catalog, in pixels of the input image: plocs shifted by
 * the crop `off`, the sources in the padding (--pad) dropped, the input's size. */
static bl_full_catalog *bl_predicted_full(const bl_tile_catalog *cat, int off, int64_t height, int64_t width)
{
    bl_full_catalog *full = bl_tile_catalog_to_full(cat);
    for (int64_t b = 0; b < full->B; b++)
        for (int64_t m = 0; m < full->n_sources[b]; m++) {
            full->plocs->data[(b * full->M + m) * 2] += (bl_real)off;
            full->plocs->data[(b * full->M + m) * 2 + 1] += (bl_real)off;
        }
    bl_full_catalog_keep_inside(full, height, width);
    return full;
}

int bl_cmd_predict(bl_cli *cli)
{
    bl_settings *s = NULL;
    bl_encoder *enc = NULL;
    bl_ctx *ctx = NULL;
    bl_tensor *images = NULL, *background = NULL;
    bl_tile_catalog *cat = NULL, **samples = NULL;
    bl_full_catalog *full = NULL, **sample_full = NULL, *truth = NULL;
    bl_fits_table *tables = NULL;
    bl_fits_keyword *kw = NULL;
    char *fits_path = NULL, *st_path = NULL, (*wcs)[81] = NULL;
    bl_safetensors *ckpt = NULL;
    int status = BL_EXIT_ERROR, n_wcs = 0;
    const int K = (int)cli->samples;
    if (!cli->checkpoint || !cli->input || !cli->out) {
        fprintf(stderr, "bliss predict: error: --checkpoint FILE, --input FILE and --out PREFIX are required\n");
        return BL_EXIT_USAGE;
    }
    /* the encoder, spec and normaliser of the checkpoint's own config unless --config */
    if (bl_safetensors_read(&ckpt, cli->checkpoint) || bl_cli_checkpoint_settings(cli, ckpt, &s)) {
        bl_safetensors_free(ckpt);
        return bl_cli_fail(cli);
    }
    size_t n = strlen(cli->out) + 16;
    fits_path = bl_malloc(n);
    st_path = bl_malloc(n);
    snprintf(fits_path, n, "%s.fits", cli->out);
    snprintf(st_path, n, "%s.safetensors", cli->out);
    if (bl_cli_check_out_dir(fits_path)) goto done;
    /* the q columns (on_prob, galaxy_prob, <factor>_loc/_scale) are catalog fields */
    if (bl_vardist_q_register(s->spec)) goto done;

    enc = bl_encoder_alloc(s->spec, &s->arch, &s->encoder, (uint64_t)s->train.seed);
    if (bl_cli_checkpoint_unpack(cli, ckpt, enc->params)) goto done;
    bl_safetensors_free(ckpt);
    ckpt = NULL;
    bl_encoder_set_training(enc, 0);
    if (bl_cli_read_images(s, cli->input, &images, &background)) goto done;
    if (bl_cli_input_is_fits(cli->input) && bl_fits_read_wcs(cli->input, s->band_names[0], &wcs, &n_wcs))
        goto done;
    const int64_t height = images->shape[2], width = images->shape[3];
    if (bl_pad_images(cli, &images, &background)) goto done;
    ctx = bl_ctx_alloc(0);
    bl_set_grad_enabled(ctx, 0);
    /* under mpirun each process predicts its share of the images (none if there are fewer
     * images than processes); rank 0 gathers the catalogs and writes (docs/scaling.md) */
    const int64_t n_images = images->shape[0];
    bl_dist_keep_share(&images);
    bl_dist_keep_share(&background);
    bl_tensor *x;
    samples = bl_calloc((size_t)K + 1, sizeof *samples);
    sample_full = bl_calloc((size_t)K + 1, sizeof *sample_full);
    if (images->shape[0] > 0 || n_images == 0) {
        if (bl_cli_normalize(s, ctx, images, background, &x)) goto done;
        if (bl_encoder_check_input(enc, x)) goto done;
        /* the point estimate (stream 0) with q's summaries; the draws from streams 1 .. K (under
         * mpirun mixed with the rank: a process's draws are its own, docs/scaling.md) */
        if (bl_encoder_predict(enc, ctx, x, (uint64_t)s->train.seed, 0, &cat)) goto done;
        bl_vardist_spec_mark_inapplicable(s->spec, cat);
        for (int k = 0; k < K; k++) {
            uint64_t stream = (uint64_t)k + 1;
            if (bl_dist_size() > 1) stream = bl_rng_mix(stream, (uint64_t)bl_dist_rank());
            bl_ctx_reset(ctx);
            if (bl_cli_normalize(s, ctx, images, background, &x) ||
                bl_encoder_sample(enc, ctx, x, 0, (uint64_t)s->train.seed, stream, &samples[k]))
                goto done;
            bl_vardist_spec_mark_inapplicable(s->spec, samples[k]);
        }
    }
    bl_dist_gather_tile_catalog(&cat, n_images);
    for (int k = 0; k < K; k++) bl_dist_gather_tile_catalog(&samples[k], n_images);
    if (bl_dist_rank() > 0) {
        status = 0;
        goto done;
    }

    /* plocs of the cropped catalogs are relative to their corner: shift back to the input image */
    const int ttc = s->encoder.tiles_to_crop, off = ttc * s->tile_slen;
    full = bl_predicted_full(cat, off, height, width);
    tables = bl_calloc((size_t)K + 1, sizeof *tables);
    tables[0] = (bl_fits_table){.extname = "CATALOG", .cat = full};
    for (int k = 0; k < K; k++) {
        sample_full[k] = bl_predicted_full(samples[k], off, height, width);
        tables[k + 1] = (bl_fits_table){.extname = "SAMPLE", .extver = k + 1, .cat = sample_full[k]};
    }
    char offs[32], nsamp[32];
    snprintf(offs, sizeof offs, "%d", off);
    snprintf(nsamp, sizeof nsamp, "%d", K);
    const bl_fits_keyword fixed[] = {
        {"CHECKPT", cli->checkpoint, "encoder checkpoint", NULL},
        {"INPUT", cli->input, "images", NULL},
        {"CROPPIX", offs, "border pixels without predictions", NULL},
        {"NSAMPLES", nsamp, "SAMPLE tables: draws of the catalog from q", NULL},
        {"PIXCONV", BL_PIXEL_CONVENTION, "plocs", NULL},
    };
    const int n_fixed = (int)(sizeof fixed / sizeof fixed[0]);
    kw = bl_calloc((size_t)(n_fixed + n_wcs), sizeof *kw);
    memcpy(kw, fixed, sizeof fixed);
    for (int i = 0; i < n_wcs; i++) kw[n_fixed + i].card = wcs[i]; /* the input's WCS, verbatim */
    if (bl_fits_write_tables(fits_path, s->n_bands, s->band_names, NULL, 0, tables, K + 1, kw, n_fixed + n_wcs))
        goto done;
    if (bl_write_tile_catalog(st_path, cat, samples, K, ttc, cli->checkpoint)) goto done;
    int64_t total = 0;
    for (int64_t b = 0; b < full->B; b++) total += full->n_sources[b];
    printf("predicted %lld sources in %lld images (%lld x %lld pixels, %d-pixel border excluded)%s\n"
           "wrote %s and %s", (long long)total, (long long)full->B, (long long)full->height,
           (long long)full->width, off, n_wcs ? "; the input's WCS copied" : "", fits_path, st_path);
    if (K) printf(" (with %d sampled catalogs)", K);
    printf("\n");
    if (cli->plot) { /* the input as it was read (not padded), its true sources when it has them */
        bl_tensor_free(images);
        bl_tensor_free(background);
        images = background = NULL;
        if (bl_cli_read_images(s, cli->input, &images, &background) || bl_cli_read_truth(s, cli->input, &truth) ||
            bl_cli_plot_images(s, cli, cli->out, images, background, truth, full, off))
            goto done;
    }
    status = 0;
done:
    if (status) bl_cli_fail(cli);
    bl_safetensors_free(ckpt);
    bl_full_catalog_free(full);
    bl_full_catalog_free(truth);
    if (cat) bl_tile_catalog_free(cat);
    for (int k = 0; k < K && samples; k++) {
        if (samples[k]) bl_tile_catalog_free(samples[k]);
        bl_full_catalog_free(sample_full[k]);
    }
    free(samples);
    free(sample_full);
    free(tables);
    free(kw);
    free(wcs);
    bl_tensor_free(images);
    bl_tensor_free(background);
    bl_ctx_free(ctx);
    if (enc) bl_encoder_free(enc);
    free(fits_path);
    free(st_path);
    bl_settings_free(s);
    return status;
}
