/* Data-parallel training step (tools/ddp.h, docs/scaling.md), run under mpirun:
 *
 *   mpirun -np N bench_ddp CONFIG [B] [reps] [overlap]
 *
 * (default B = 16 images in the global batch, 3 reps; overlap 1: the all-reduce overlapped with
 * backward, bl_ddp_overlap, in buckets of BL_DDP_BUCKET_MB)
 *
 * One batch of the config's simulator (each rank its slice of B / N images) is drawn once and
 * reused (the trainer's fixed-batch loop), so a step is training alone: forward, backward, the
 * gradient all-reduce, Adam. Prints, from rank 0: ms per step (mean of `reps` after one
 * warm-up step; the slowest rank's), images per second (B / step time), the all-reduce time
 * inside the steps (with overlap: the part left after backward), and an all-reduce of the packed gradient buffer on its own (mean of 5).
 * Threads per rank: OMP_NUM_THREADS / OPENBLAS_NUM_THREADS as set by the caller.
 * reps = 0: the all-reduce of the gradient buffer alone (no training step). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench/bench_common.h"
#include "models/trainer.h"
#include "experiment/data.h"
#include "tools/ddp.h"
#include "tools/dist.h"
#include "experiment/settings.h"

int main(int argc, char **argv)
{
    bl_dist_init(&argc, &argv);
    const int rank = bl_dist_rank(), n = bl_dist_size();
    if (argc < 2) {
        fprintf(stderr, "usage: [mpirun -np N] bench_ddp CONFIG [B] [reps] [overlap]\n");
        bl_dist_abort(2);
    }
    const int B = argc > 2 ? atoi(argv[2]) : 16, reps = argc > 3 ? atoi(argv[3]) : 3;
    const int overlap = argc > 4 ? atoi(argv[4]) : 0;
    char bs[64];
    snprintf(bs, sizeof bs, "prior.batch_size=%d", B);
    const char *sets[] = {bs};
    bl_settings *s;
    bl_cli_data *data;
    if (bl_settings_load(&s, argv[1], 1, sets, 0, 0) || bl_cli_data_open_slice(&data, s, "simulate", rank, n)) {
        fprintf(stderr, "bench_ddp: %s\n", bl_error_message());
        bl_dist_abort(1);
    }
    bl_encoder *enc = bl_encoder_alloc(s->spec, &s->arch, &s->encoder, 42);
    bl_ddp *ddp = bl_ddp_alloc(enc->params, s->train.sync_batchnorm);
    bl_trainer_opts o = bl_trainer_opts_default();
    o.fixed_batch = 1;
    o.after_backward = ddp ? bl_ddp_after_backward : NULL;
    o.after_backward_user = ddp;
    bl_trainer *tr = bl_trainer_alloc(enc, &o, bl_cli_data_source(data, BL_DATA_TRAIN, 0), (bl_batch_source){0});
    if (overlap) bl_ddp_overlap(ddp, tr->ctx);
    const int64_t P = bl_params_count_trainable(enc->params);
    if (rank == 0)
        printf("config %s, %lld trainable parameters (%.1f MB of gradients), global batch %d = %d ranks x %d, "
               "%d OpenMP / %d OpenBLAS threads per rank, OpenBLAS kernels %s, all-reduce %s\n",
               argv[1], (long long)P, 4e-6 * (double)P, B, n, B / n, omp_get_max_threads(),
               openblas_get_num_threads(), openblas_get_corename(),
               !ddp ? "none" : overlap ? "overlapped with backward" : "after backward");
    double loss;
    if (reps > 0 && bl_trainer_step(tr, 1e-4, &loss)) { /* warm-up */
        fprintf(stderr, "bench_ddp: %s\n", bl_error_message());
        bl_dist_abort(1);
    }
    if (ddp) ddp->comm_seconds = 0, ddp->n_reduces = 0;
    bl_dist_barrier();
    double t0 = bl_bench_now();
    for (int r = 0; r < reps; r++)
        if (bl_trainer_step(tr, 1e-4, &loss)) bl_dist_abort(1);
    bl_dist_barrier();
    double step = reps > 0 ? (bl_bench_now() - t0) / reps : 0;
    double comm = ddp && ddp->n_reduces ? ddp->comm_seconds / (double)ddp->n_reduces : 0;
    double ar = 0;
    if (ddp) {
        bl_dist_barrier();
        double t1 = bl_bench_now();
        for (int r = 0; r < 5; r++) bl_dist_sum_real(ddp->grads, ddp->n_grads, ddp->bucket);
        ar = (bl_bench_now() - t1) / 5;
    }
    double v[2] = {comm, ar};
    bl_dist_sum_double(v, 2);
    if (rank == 0)
        printf("ms/step %.1f  images/s %.2f  all-reduce in step %.1f ms (mean over ranks)  "
               "all-reduce of the %.1f MB gradient buffer alone %.1f ms\n",
               1e3 * step, step > 0 ? B / step : 0, 1e3 * v[0] / n, 4e-6 * (double)P, 1e3 * v[1] / n);
    bl_ddp_free(ddp);
    bl_trainer_free(tr);
    bl_encoder_free(enc);
    bl_cli_data_free(data);
    bl_settings_free(s);
    bl_dist_finalize();
    return 0;
}
