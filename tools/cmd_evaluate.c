/* bliss evaluate: metrics of a checkpoint on a dataset (docs/cli.md, docs/metrics.md). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/atomic_file.h"
#include "lib/eval/metrics.h"
#include "models/checkpoint.h"
#include "models/evaluate.h"
#include "tools/commands.h"
#include "experiment/data.h"
#include "tools/dist.h"
#include "tools/run_info.h"

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
    bl_metrics *m[3] = {NULL, NULL, NULL}; /* mode, sample, marginal q */
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
    for (int k = 0; k < 3; k++) {
        m[k] = bl_metrics_alloc(&s->metrics, s->n_bands);
        bl_metrics_add_spec_factors(m[k], s->spec);
    }
    /* under mpirun each process evaluates its share of the batches (each batch keeps its random
     * streams); the metrics' counts and sums are then added up (docs/scaling.md) */
    int64_t b_lo, b_hi;
    bl_dist_share(n_batches, &b_lo, &b_hi);
    for (int64_t b = b_lo; b < b_hi; b++) {
        bl_tensor *x;
        bl_tile_catalog *truth;
        if (src.get(src.user, bl_ctx_arena(ctx), b, &x, &truth)) goto done;
        /* docs/behaviour.md §4.11: the target is filtered by flux, cropped like the prediction */
        bl_status st = bl_encoder_metrics_update(enc, ctx, x, truth, (uint64_t)s->train.seed,
                                                 (uint64_t)b, m[0], m[1], m[2]);
        bl_tile_catalog_free(truth);
        bl_ctx_reset(ctx);
        if (st) goto done;
    }
    for (int k = 0; k < 3; k++) bl_dist_sum_metrics(m[k]);
    if (bl_dist_rank() > 0) { /* rank 0 writes */
        status = 0;
        goto done;
    }
    /* three results of ~20 KB each: on the heap */
    bl_metrics_result *r = bl_malloc(3 * sizeof *r);
    for (int k = 0; k < 3; k++) bl_metrics_compute(m[k], &r[k]);
    json_t *root = json_object();
    json_object_set_new(root, "checkpoint", json_string(cli->checkpoint));
    json_object_set_new(root, "config", json_string(s->path));
    json_object_set_new(root, "data", json_string(source));
    json_object_set_new(root, "n_batches", json_integer(n_batches));
    json_object_set_new(root, "mode", bl_cli_metrics_json(&r[0], s->band_names));
    json_object_set_new(root, "sample", bl_cli_metrics_json(&r[1], s->band_names));
    /* q of every factor is a property of the marginal, not of a catalog */
    json_t *mg = json_object(), *all = bl_cli_metrics_json(&r[2], s->band_names);
    json_object_set(mg, "factors", json_object_get(all, "factors"));
    json_decref(all);
    json_object_set_new(root, "marginal", mg);
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
    if (st) {
        free(r);
        goto done;
    }
    printf("metrics of %s on %lld batches of %s\n", cli->checkpoint, (long long)n_batches, source);
    const bl_metrics_result *rs[2] = {&r[0], &r[1]};
    bl_metrics_print_table(stdout, 2, (const char *const[]){"mode", "sample"}, rs, s->band_names);
    printf("\n");
    bl_metrics_print_q_table(stdout, &r[2]);
    printf("\nwrote %s\n", out);
    free(r);
    status = 0;
done:
    if (status) bl_cli_fail(cli);
    bl_safetensors_free(ckpt);
    for (int k = 0; k < 3; k++) bl_metrics_free(m[k]);
    bl_ctx_free(ctx);
    if (enc) bl_encoder_free(enc);
    bl_cli_data_free(data);
    bl_settings_free(s);
    return status;
}
