/* bliss predict: catalogs for images -> PREFIX.fits (table) + PREFIX.safetensors (tile catalog). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/fits.h"
#include "lib/io/safetensors.h"
#include "models/checkpoint.h"
#include "tools/commands.h"
#include "tools/data.h"
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

    enc = bl_encoder_alloc(s->spec, &s->arch, &s->encoder, (uint64_t)s->train.seed);
    if (bl_cli_checkpoint_unpack(cli, ckpt, enc->params)) goto done;
    bl_safetensors_free(ckpt);
    ckpt = NULL;
    bl_encoder_set_training(enc, 0);
    if (bl_cli_read_images(s, cli->input, &images, &background)) goto done;
    ctx = bl_ctx_alloc(0);
    bl_set_grad_enabled(ctx, 0);
    bl_tensor *x;
    if (bl_cli_normalize(s, ctx, images, background, &x)) goto done;
    if (bl_encoder_check_input(enc, x)) goto done;
    if (bl_encoder_sample(enc, ctx, x, 1, (uint64_t)s->train.seed, 0, &cat)) goto done;

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
