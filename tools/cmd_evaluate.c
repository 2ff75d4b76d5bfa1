/* bliss evaluate: metrics of a checkpoint on a dataset (docs/cli.md, docs/metrics.md). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/atomic_file.h"
#include "lib/eval/metrics.h"
#include "models/checkpoint.h"
#include "tools/commands.h"
#include "tools/data.h"
#include "tools/dist.h"
#include "tools/run_info.h"

/* q(redshift) of the marginal on every tile of the uncropped, filtered target: the NLL of
 * docs/behaviour.md §6.6 over tiles holding a source (docs/porting.md). */
static bl_status bl_update_redshift_nll(bl_metrics *m, const bl_settings *s, bl_encoder *enc,
                                        bl_ctx *ctx, bl_tensor *x, const bl_tile_catalog *target)
{
    int idx = bl_vardist_spec_index(s->spec, "redshift");
    const bl_tensor *z = bl_tile_catalog_get(target, "redshifts");
    /* the metric is the normal's NLL: q(redshift) must be a normal */
    if (idx < 0 || !z || s->spec->factors[idx].kind != bl_dist_normal) return BL_OK;
    const bl_factor *f = &s->spec->factors[idx];
    bl_encoder_pred pred;
    bl_encoder_infer_marginal(enc, ctx, x, &pred);
    const bl_tensor *raw = pred.marginal->raw[idx]; /* (B, ht, wt, 2): mean, logvar */
    int64_t n = raw->numel / 2;
    BL_ASSERT(n == bl_tile_catalog_n_tiles(target), "redshift nll: %lld tiles vs %lld",
              (long long)n, (long long)bl_tile_catalog_n_tiles(target));
    bl_real *loc = bl_malloc((size_t)n * sizeof(bl_real)), *scale = bl_malloc((size_t)n * sizeof(bl_real));
    bl_real *zt = bl_malloc((size_t)n * sizeof(bl_real));
    bl_status st = BL_OK;
    for (int64_t t = 0; t < n && st == BL_OK; t++) {
        double l, sd; /* mean and sd = exp(clamp(logvar, -20, 20) / 2) */
        st = bl_dist_kind_loc_scale(f->kind, f->opts, raw->data + 2 * t, &l, &sd);
        loc[t] = (bl_real)l;
        scale[t] = (bl_real)sd;
        zt[t] = z->data[t * target->S]; /* slot 0: the brightest source after the filter */
    }
    if (st == BL_OK) st = bl_metrics_update_redshift_nll(m, n, target->n_sources, zt, loc, scale);
    free(loc);
    free(scale);
    free(zt);
    return st;
}

/* the metrics of one result as a JSON object (new reference) */
static json_t *bl_cli_metrics_json(const bl_metrics_result *r, const char *const *band_names)
{
    char *text = bl_metrics_result_to_json(r, band_names);
    json_error_t err;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &err);
    BL_ASSERT(j, "bl_cli_metrics_json: bl_metrics_result_to_json wrote invalid JSON: %s", err.text);
    free(text);
    return j;
}

int bl_cmd_evaluate(bl_cli *cli)
{
    bl_settings *s = NULL;
    bl_cli_data *data = NULL;
    bl_encoder *enc = NULL;
    bl_ctx *ctx = NULL;
    bl_metrics *m[2] = {NULL, NULL};
    bl_safetensors *ckpt = NULL;
    int status = BL_EXIT_ERROR;
    if (!cli->checkpoint) {
        fprintf(stderr, "bliss evaluate: error: --checkpoint FILE is required\n");
        return BL_EXIT_USAGE;
    }
    /* the encoder, spec and normaliser of the checkpoint's own config unless --config */
    if (bl_safetensors_read(&ckpt, cli->checkpoint) || bl_cli_checkpoint_settings(cli, ckpt, &s)) {
        bl_safetensors_free(ckpt);
        return bl_cli_fail(cli);
    }
    const char *source = cli->data ? cli->data : s->train.data;
    const char *out = cli->out ? cli->out : "metrics.json";
    if (bl_cli_check_out_dir(out)) goto done;
    if (bl_cli_data_open(&data, s, source)) goto done;
    enc = bl_encoder_alloc(s->spec, &s->arch, &s->encoder, (uint64_t)s->train.seed);
    if (bl_cli_checkpoint_unpack(cli, ckpt, enc->params)) goto done;
    bl_safetensors_free(ckpt);
    ckpt = NULL;
    bl_encoder_set_training(enc, 0);
    ctx = bl_ctx_alloc(0);
    bl_set_grad_enabled(ctx, 0);
    /* a dataset: all of it; simulation: as many batches as the validation set */
    int64_t n_batches = cli->batches                      ? cli->batches
                        : bl_cli_data_n_batches(data) > 0 ? bl_cli_data_n_batches(data)
                        : s->train.val_batches > 0        ? s->train.val_batches
                                                          : 1;
    bl_batch_source src = bl_cli_data_source(data, BL_DATA_TEST, n_batches);
    if (src.n_batches > 0 && src.n_batches < n_batches) n_batches = src.n_batches;
    for (int k = 0; k < 2; k++) m[k] = bl_metrics_alloc(&s->metrics, s->n_bands);
    const int ttc = s->encoder.tiles_to_crop, band = s->encoder.flux_band;
    /* under mpirun each process evaluates its share of the batches (each batch keeps its random
     * streams); the metrics' counts and sums are then added up (docs/scaling.md) */
    int64_t b_lo, b_hi;
    bl_dist_share(n_batches, &b_lo, &b_hi);
    for (int64_t b = b_lo; b < b_hi; b++) {
        bl_tensor *x;
        bl_tile_catalog *truth;
        if (src.get(src.user, bl_ctx_arena(ctx), b, &x, &truth)) goto done;
        /* docs/behaviour.md §4.11: the target is filtered by flux, cropped like the prediction */
        bl_tile_catalog *target = bl_tile_catalog_filter_by_flux(truth, s->encoder.min_flux_threshold,
                                                                 INFINITY, band);
        bl_tile_catalog *cropped = bl_tile_catalog_symmetric_crop(target, ttc);
        bl_full_catalog *true_full = bl_tile_catalog_to_full(cropped);
        bl_status st = BL_OK;
        for (int k = 0; k < 2 && st == BL_OK; k++) {
            bl_tile_catalog *est;
            st = bl_encoder_sample(enc, ctx, x, k == 0, (uint64_t)s->train.seed, (uint64_t)b, &est);
            if (st) break;
            bl_full_catalog *est_full = bl_tile_catalog_to_full(est);
            st = bl_metrics_update(m[k], true_full, est_full);
            bl_full_catalog_free(est_full);
            bl_tile_catalog_free(est);
        }
        if (st == BL_OK) st = bl_update_redshift_nll(m[0], s, enc, ctx, x, target);
        bl_full_catalog_free(true_full);
        bl_tile_catalog_free(cropped);
        bl_tile_catalog_free(target);
        bl_tile_catalog_free(truth);
        bl_ctx_reset(ctx);
        if (st) goto done;
    }
    for (int k = 0; k < 2; k++) bl_dist_sum_metrics(m[k]);
    if (bl_dist_rank() > 0) { /* rank 0 writes */
        status = 0;
        goto done;
    }
    bl_metrics_result r[2];
    for (int k = 0; k < 2; k++) bl_metrics_compute(m[k], &r[k]);
    json_t *root = json_object();
    json_object_set_new(root, "checkpoint", json_string(cli->checkpoint));
    json_object_set_new(root, "config", json_string(s->path));
    json_object_set_new(root, "data", json_string(source));
    json_object_set_new(root, "n_batches", json_integer(n_batches));
    /* the NLL is a property of the marginal, not of a sampled catalog */
    double nll = r[0].redshift_nll;
    int64_t n_nll = r[0].n_nll;
    r[0].n_nll = 0;
    json_object_set_new(root, "mode", bl_cli_metrics_json(&r[0], s->band_names));
    json_object_set_new(root, "sample", bl_cli_metrics_json(&r[1], s->band_names));
    if (n_nll > 0) {
        json_t *mg = json_object();
        json_object_set_new(mg, "redshift_nll", isfinite(nll) ? json_real(nll) : json_null());
        json_object_set_new(mg, "redshift_nll_tiles", json_integer(n_nll));
        json_object_set_new(root, "marginal", mg);
    }
    bl_atomic_file af;
    bl_status st = bl_atomic_open(&af, out, "w");
    if (st == BL_OK) {
        if (json_dumpf(root, af.f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) != 0) {
            bl_atomic_abort(&af);
            st = bl_error(BL_ERR_IO, "%s: cannot write the metrics", out);
        } else {
            fputc('\n', af.f);
            st = bl_atomic_commit(&af);
        }
    }
    json_decref(root);
    if (st) goto done;
    printf("metrics of %s on %lld batches of %s\n", cli->checkpoint, (long long)n_batches, source);
    const bl_metrics_result *rs[2] = {&r[0], &r[1]};
    bl_metrics_print_table(stdout, 2, (const char *const[]){"mode", "sample"}, rs, s->band_names);
    if (n_nll > 0) printf("\n  q(redshift) NLL over %lld tiles with a source: %.6g\n", (long long)n_nll, nll);
    printf("\nwrote %s\n", out);
    status = 0;
done:
    if (status) bl_cli_fail(cli);
    bl_safetensors_free(ckpt);
    for (int k = 0; k < 2; k++) bl_metrics_free(m[k]);
    bl_ctx_free(ctx);
    if (enc) bl_encoder_free(enc);
    bl_cli_data_free(data);
    bl_settings_free(s);
    return status;
}
