/* bliss predict: catalogs for images -> PREFIX.fits (table) + PREFIX.safetensors (tile catalog). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/fits.h"
#include "lib/io/safetensors.h"
#include "models/checkpoint.h"
#include "tools/commands.h"
#include "tools/data.h"
#include "tools/dist.h"
#include "tools/run_info.h"

/* The predicted tile catalog under BLISS's batch names ("tile_catalog.<field>"), n_sources as
 * int64 like PyTorch's, with the geometry in the metadata. */
static bl_status bl_write_tile_catalog(const char *path, const bl_tile_catalog *cat, int ttc,
                                       const char *checkpoint)
{
    bl_safetensors *st = bl_safetensors_alloc();
    int64_t nt = bl_tile_catalog_n_tiles(cat);
    int64_t *ns = bl_malloc(((size_t)nt + 1) * sizeof(int64_t));
    for (int64_t t = 0; t < nt; t++) ns[t] = cat->n_sources[t];
    bl_status s = bl_safetensors_add(st, "tile_catalog.n_sources", BL_DTYPE_I64, 3,
                                     BL_SHAPE(cat->B, cat->ht, cat->wt), ns);
    free(ns);
    char name[128];
    for (int f = 0; f < cat->n_fields && s == BL_OK; f++) {
        const bl_tensor *t = cat->fields[f].t;
        const bl_catalog_field_info *info = bl_catalog_field_find(cat->fields[f].name);
        snprintf(name, sizeof name, "tile_catalog.%s", cat->fields[f].name);
        if (info && (info->flags & BL_FIELD_INTEGER)) {
            /* integer fields (source_type) as int64, like PyTorch's and the simulator's files */
            int64_t *v = bl_malloc(((size_t)t->numel + 1) * sizeof(int64_t));
            for (int64_t i = 0; i < t->numel; i++) v[i] = (int64_t)t->data[i];
            s = bl_safetensors_add(st, name, BL_DTYPE_I64, t->ndim, t->shape, v);
            free(v);
        } else {
            s = bl_safetensors_add_tensor(st, name, t, BL_DTYPE_F32);
        }
    }
    char v[64];
    snprintf(v, sizeof v, "%d", cat->tile_slen);
    bl_safetensors_set_meta(st, "tile_slen", v);
    snprintf(v, sizeof v, "%d", ttc);
    bl_safetensors_set_meta(st, "tiles_to_crop", v);
    snprintf(v, sizeof v, "%d", ttc * cat->tile_slen);
    bl_safetensors_set_meta(st, "origin_offset_pixels", v);
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

int bl_cmd_predict(bl_cli *cli)
{
    bl_settings *s = NULL;
    bl_encoder *enc = NULL;
    bl_ctx *ctx = NULL;
    bl_tensor *images = NULL, *background = NULL;
    bl_tile_catalog *cat = NULL;
    bl_full_catalog *full = NULL;
    char *fits_path = NULL, *st_path = NULL;
    bl_safetensors *ckpt = NULL;
    int status = BL_EXIT_ERROR;
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

    enc = bl_encoder_alloc(s->spec, &s->arch, &s->encoder, (uint64_t)s->train.seed);
    if (bl_cli_checkpoint_unpack(cli, ckpt, enc->params)) goto done;
    bl_safetensors_free(ckpt);
    ckpt = NULL;
    bl_encoder_set_training(enc, 0);
    if (bl_cli_read_images(s, cli->input, &images, &background)) goto done;
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
    if (images->shape[0] > 0 || n_images == 0) {
        if (bl_cli_normalize(s, ctx, images, background, &x)) goto done;
        if (bl_encoder_check_input(enc, x)) goto done;
        if (bl_encoder_sample(enc, ctx, x, 1, (uint64_t)s->train.seed, 0, &cat)) goto done;
    }
    bl_dist_gather_tile_catalog(&cat, n_images);
    if (bl_dist_rank() > 0) {
        status = 0;
        goto done;
    }

    /* plocs of the cropped catalog are relative to its corner: shift back to the input image */
    const int ttc = s->encoder.tiles_to_crop, off = ttc * s->tile_slen;
    full = bl_tile_catalog_to_full(cat);
    full->height = images->shape[2];
    full->width = images->shape[3];
    for (int64_t b = 0; b < full->B; b++)
        for (int64_t m = 0; m < full->n_sources[b]; m++) {
            full->plocs->data[(b * full->M + m) * 2] += (bl_real)off;
            full->plocs->data[(b * full->M + m) * 2 + 1] += (bl_real)off;
        }
    bl_full_catalog_keep_inside(full, height, width); /* no source in the padding (--pad) */
    char offs[32];
    snprintf(offs, sizeof offs, "%d", off);
    const bl_fits_keyword kw[] = {
        {"CHECKPT", cli->checkpoint, "encoder checkpoint"},
        {"INPUT", cli->input, "images"},
        {"CROPPIX", offs, "border pixels without predictions"},
    };
    if (bl_fits_write(fits_path, s->n_bands, s->band_names, NULL, 0, full, kw, 3)) goto done;
    if (bl_write_tile_catalog(st_path, cat, ttc, cli->checkpoint)) goto done;
    int64_t total = 0;
    for (int64_t b = 0; b < full->B; b++) total += full->n_sources[b];
    printf("predicted %lld sources in %lld images (%lld x %lld pixels, %d-pixel border excluded)\n"
           "wrote %s and %s\n", (long long)total, (long long)full->B, (long long)full->height,
           (long long)full->width, off, fits_path, st_path);
    status = 0;
done:
    if (status) bl_cli_fail(cli);
    bl_safetensors_free(ckpt);
    bl_full_catalog_free(full);
    if (cat) bl_tile_catalog_free(cat);
    bl_tensor_free(images);
    bl_tensor_free(background);
    bl_ctx_free(ctx);
    if (enc) bl_encoder_free(enc);
    free(fits_path);
    free(st_path);
    bl_settings_free(s);
    return status;
}
