/* bliss plot (and predict --plot): PNGs of images with their true and predicted sources
 * (lib/io/plot.h), and training curves redrawn from curve.csv (lib/io/curve.h). docs/cli.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/eval/match.h"
#include "lib/io/curve.h"
#include "lib/io/fits.h"
#include "lib/io/plot.h"
#include "lib/io/safetensors.h"
#include "tools/commands.h"
#include "tools/data.h"

bl_status bl_cli_read_truth(const bl_settings *s, const char *path, bl_full_catalog **out)
{
    *out = NULL;
    bl_status st;
    if (bl_cli_input_is_fits(path)) {
        int has = 0;
        if ((st = bl_fits_has_hdu(path, "CATALOG", &has)) || !has) return st;
        return bl_fits_read_catalog(path, out);
    }
    bl_safetensors *f;
    if ((st = bl_safetensors_read(&f, path))) return st;
    int has = bl_safetensors_find(f, "tile_catalog.n_sources") != NULL;
    bl_safetensors_free(f);
    if (!has) return BL_OK;
    bl_sim_batch *b;
    if ((st = bl_sim_batch_read(&b, path))) return st;
    (void)s;
    *out = bl_tile_catalog_to_full(b->tile_catalog);
    bl_sim_batch_free(b);
    return BL_OK;
}

/* matched[m] for the sources of image b of `a` that have a partner in `b_cat` (Hungarian
 * matching within metrics.dist_slack pixels, lib/eval/match.h); sources of `a` outside
 * `region` (row0, row1, col0, col1), where nothing was predicted, count as matched */
static void bl_plot_matches(const bl_settings *s, const bl_full_catalog *a, const bl_full_catalog *b_cat,
                            int64_t b, const double region[4], uint8_t *a_matched, uint8_t *b_matched)
{
    const int na = a->n_sources[b], nb = b_cat->n_sources[b];
    int *ai = bl_malloc(((size_t)(na < nb ? na : nb) + 1) * sizeof(int));
    int *bi = bl_malloc(((size_t)(na < nb ? na : nb) + 1) * sizeof(int));
    int n = 0;
    bl_match_opts mo = s->metrics.match;
    mo.mag_slack = 0;
    if (bl_match_plocs(a->plocs->data + b * a->M * 2, na, b_cat->plocs->data + b * b_cat->M * 2, nb, &mo, NULL,
                       NULL, ai, bi, &n) != BL_OK)
        n = 0;
    memset(a_matched, 0, (size_t)na + 1);
    memset(b_matched, 0, (size_t)nb + 1);
    for (int k = 0; k < n; k++) {
        a_matched[ai[k]] = 1;
        b_matched[bi[k]] = 1;
    }
    for (int m = 0; m < na; m++) {
        const bl_real *pl = a->plocs->data + (b * a->M + m) * 2;
        if (!(pl[0] >= region[0] && pl[0] < region[1] && pl[1] >= region[2] && pl[1] < region[3])) a_matched[m] = 1;
    }
    free(ai);
    free(bi);
}

/* PREFIX.png for a single image, PREFIX_NNNN.png for each image of a batch */
static void bl_plot_path(char *buf, size_t n, const char *prefix, int64_t b, int64_t B)
{
    if (B == 1)
        snprintf(buf, n, "%s.png", prefix);
    else
        snprintf(buf, n, "%s_%04lld.png", prefix, (long long)b);
}

bl_status bl_cli_plot_images(const bl_settings *s, const bl_cli *cli, const char *prefix, const bl_tensor *images,
                             const bl_tensor *background, const bl_full_catalog *truth, const bl_full_catalog *pred,
                             int border)
{
    bl_plot_opts o = bl_plot_opts_default(s->n_bands);
    if (cli->plot_width) o.width = cli->plot_width, o.height = cli->plot_height;
    if (cli->plot_band >= 0) o.band = cli->plot_band;
    if (cli->has_rgb) {
        o.band = -1;
        memcpy(o.rgb, cli->plot_rgb, sizeof o.rgb);
    }
    o.flux_band = s->encoder.flux_band < images->shape[1] ? s->encoder.flux_band : 0;
    const int64_t B = images->shape[0], H = images->shape[2], W = images->shape[3];
    const double region[4] = {border, (double)H - border, border, (double)W - border};
    size_t n = strlen(prefix) + 32;
    char *path = bl_malloc(n), title[160];
    bl_status st = BL_OK;
    for (int64_t b = 0; b < B && st == BL_OK; b++) {
        bl_plot_path(path, n, prefix, b, B);
        uint8_t *tm = NULL, *pm = NULL;
        if (truth && pred && b < truth->B && b < pred->B) {
            tm = bl_malloc((size_t)truth->n_sources[b] + 1);
            pm = bl_malloc((size_t)pred->n_sources[b] + 1);
            bl_plot_matches(s, truth, pred, b, region, tm, pm);
        }
        snprintf(title, sizeof title, "image %lld: %d true, %d predicted", (long long)b,
                 truth && b < truth->B ? truth->n_sources[b] : 0, pred && b < pred->B ? pred->n_sources[b] : 0);
        o.title = title;
        st = bl_plot_image_png(path, images, background, b, (bl_plot_sources){truth, tm},
                               (bl_plot_sources){pred, pm}, &o);
        free(tm);
        free(pm);
    }
    if (st == BL_OK) {
        bl_plot_path(path, n, prefix, B == 1 ? 0 : B - 1, B);
        printf("wrote %lld plot%s (%s%s)\n", (long long)B, B == 1 ? "" : "s", path, B == 1 ? "" : ", ...");
    }
    free(path);
    return st;
}

/* bliss plot --curve CSV [--log] -o OUT.png */
static int bl_plot_curve(const bl_cli *cli)
{
    bl_curve *c = NULL;
    if (bl_curve_read_csv(&c, cli->curve) ||
        bl_curve_write_png_log(c, cli->out, cli->plot_width ? cli->plot_width : 800,
                               cli->plot_width ? cli->plot_height : 500, cli->curve, cli->log_scale)) {
        bl_curve_free(c);
        return bl_cli_fail(cli);
    }
    printf("wrote %s (%lld points%s)\n", cli->out, (long long)c->n, cli->log_scale ? ", log scale" : "");
    bl_curve_free(c);
    return 0;
}

int bl_cmd_plot(bl_cli *cli)
{
    if (!cli->out || (!cli->curve && !cli->input)) {
        fprintf(stderr, "bliss plot: error: --out is required, with --input FILE (images) or --curve FILE (curve.csv)\n");
        return BL_EXIT_USAGE;
    }
    if (cli->curve) {
        if (bl_cli_check_out_dir(cli->out)) return bl_cli_fail(cli);
        return bl_plot_curve(cli);
    }
    bl_settings *s = NULL;
    bl_tensor *images = NULL, *background = NULL;
    bl_full_catalog *truth = NULL, *pred = NULL;
    int status = BL_EXIT_ERROR;
    if (bl_cli_settings(cli, &s)) return bl_cli_fail(cli);
    /* a predicted catalog has q's columns (docs/cli.md): known fields once registered */
    if (bl_vardist_q_register(s->spec) || bl_cli_check_out_dir(cli->out)) goto done;
    if (bl_cli_read_images(s, cli->input, &images, &background) || bl_cli_read_truth(s, cli->input, &truth)) goto done;
    if (cli->catalog && bl_fits_read_catalog(cli->catalog, &pred)) goto done;
    if (pred && pred->B != images->shape[0]) {
        bl_error(BL_ERR_FORMAT, "%s: a catalog of %lld images for %s's %lld images", cli->catalog, (long long)pred->B,
                 cli->input, (long long)images->shape[0]);
        goto done;
    }
    const int border = s->encoder.tiles_to_crop * s->tile_slen;
    if (bl_cli_plot_images(s, cli, cli->out, images, background, truth, pred, pred ? border : 0)) goto done;
    status = 0;
done:
    if (status) bl_cli_fail(cli);
    bl_full_catalog_free(truth);
    bl_full_catalog_free(pred);
    bl_tensor_free(images);
    bl_tensor_free(background);
    bl_settings_free(s);
    return status;
}
