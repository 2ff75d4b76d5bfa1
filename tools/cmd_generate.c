/* bliss generate: simulated batches into safetensors shards (and FITS), docs/cli.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/progress.h"
#include "tools/commands.h"
#include "experiment/data.h"
#include "tools/dist.h"

int bl_cmd_generate(bl_cli *cli)
{
    bl_settings *s = NULL;
    bl_cli_data *data = NULL;
    bl_sim_batch *batch = NULL, *shard = NULL;
    bl_progress *progress = NULL;
    int status = BL_EXIT_ERROR;
    if (bl_cli_settings(cli, &s)) return bl_cli_fail(cli);
    const bl_generate_settings *g = &s->generate;
    const char *out_dir = cli->out ? cli->out : g->output_dir;
    const int fits = cli->fits || g->fits;
    if (bl_cli_mkdirs(out_dir) || bl_cli_data_open(&data, s, "simulate")) goto done;
    const bl_simulator *sim = bl_cli_data_simulator(data);
    const int64_t B = s->batch_size, per = g->n_batches_per_file;
    batch = bl_sim_batch_alloc(sim);
    shard = bl_cli_batch_like(batch, B * per);
    printf("generating %lld shards of %lld batches x %lld images (%lld x %lld pixels, %d bands) into %s\n",
           (long long)g->n_files, (long long)per, (long long)B, (long long)batch->H,
           (long long)batch->W, s->n_bands, out_dir);
    progress = bl_progress_alloc(stdout, "generate", 0, g->n_files, 1, BL_PROGRESS_AUTO);
    size_t n = strlen(out_dir) + 64;
    char *path = bl_malloc(n);
    bl_status st = BL_OK;
    int64_t sources = 0;
    /* under mpirun, process r writes the shards f = r, r + n, ...; shard f depends only on f */
    const int rank = bl_dist_rank(), n_ranks = bl_dist_size();
    for (int64_t f = rank; f < g->n_files && st == BL_OK; f += n_ranks) {
        /* batch j of shard f is stream f * per + j of train.seed: the same batches `bliss train`
         * simulates for steps f * per + j with the same seed */
        for (int64_t j = 0; j < per; j++) {
            bl_simulator_generate(sim, (uint64_t)s->train.seed, (uint64_t)(f * per + j), batch);
            bl_cli_batch_copy(shard, j * B, batch, 0, B);
        }
        sources += bl_tile_catalog_total_sources(shard->tile_catalog);
        snprintf(path, n, "%s/shard_%04lld.safetensors", out_dir, (long long)f);
        st = bl_sim_batch_write(shard, path);
        if (st == BL_OK && fits) {
            snprintf(path, n, "%s/shard_%04lld.fits", out_dir, (long long)f);
            st = bl_sim_batch_write_fits(shard, path);
        }
        char msg[96];
        snprintf(msg, sizeof msg, "%lld sources so far", (long long)sources);
        bl_progress_update(progress, f + 1, msg);
    }
    bl_progress_finish(progress);
    free(path);
    if (st) goto done;
    bl_dist_sum_int64(&sources, 1);
    printf("wrote %lld shards (%lld images, %lld sources) to %s%s\n", (long long)g->n_files,
           (long long)(g->n_files * per * B), (long long)sources, out_dir, fits ? " (+ FITS)" : "");
    status = 0;
done:
    if (status) bl_cli_fail(cli);
    bl_progress_free(progress);
    bl_sim_batch_free(shard);
    bl_sim_batch_free(batch);
    bl_cli_data_free(data);
    bl_settings_free(s);
    return status;
}
