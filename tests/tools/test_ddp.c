/* Data-parallel training (tools/ddp.h) against one process, run under `mpirun -np 2`
 * (tests/tools/meson.build). Every rank first trains the whole global batch alone (the
 * reference: BatchNorm reducer off, no communication), then the two ranks train their halves
 * together with sync_batchnorm, from the same initialisation and the same simulated images:
 *   - the gradients of step 1 (after the all-reduce) equal the single-process gradients,
 *     normwise to TOL (1e-5 in float32, 1e-12 in the double build);
 *   - the loss of step 1 agrees to TOL, steps 2..5 to TOL_LATER;
 *   - after 5 Adam steps both ranks hold bit-identical parameters and buffers;
 *   - with the all-reduce overlapped with backward (bl_ddp_overlap, small buckets so that there
 *     are many), buckets start during backward and the gradients, losses and parameters are
 *     bit-identical to the plain all-reduce's (two ranks: every sum is a + b, however the
 *     buffer is cut).
 * On failure the tensors with the largest gradient differences are named.
 * Configuration: configs/quick.cfg with a global batch of 4 (2 images per rank); test
 * mpi_ddp_wino5 runs it with tests/data/quick_w64.cfg (features width 64: the 5x5 Winograd
 * layers; measured 9.8e-7). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/conv_engine.h"
#include "autograd/conv_onednn.h"
#include "lib/sim/prior.h"
#include "models/trainer.h"
#include "experiment/data.h"
#include "tools/ddp.h"
#include "tools/dist.h"
#include "experiment/settings.h"

#define N_STEPS 5
/* Tolerances. Both computations do the same float operations on every value; only sums over
 * the batch are added in another order: the BatchNorm sums (double; autograd/ops_norm.c), the
 * batch sums of the weight gradients (float per process, then the float all-reduce) and the
 * loss mean. Measured: 4.9e-7 (float32, oneDNN convolutions), 3.1e-13 (double build). The
 * convolution engine is pinned: oneDNN's result for an image does not depend on the batch,
 * but OpenBLAS's GEMMs (the im2col engine: the double build, a float build without oneDNN)
 * round an output element differently depending on the matrix width, i.e. on how many images
 * share a GEMM: 3.9e-5 in float32 (docs/scaling.md), hence TOL_IM2COL.
 * After step 1, Adam's first steps move each parameter by about lr sign(g): components near
 * zero flip with rounding, so the float32 losses of later steps drift apart (2e-3 at step 5),
 * the double ones stay within 1e-8. */
#ifdef BL_REAL_DOUBLE
#define TOL 1e-12
#define TOL_LATER 1e-8
#else
#define TOL 1e-5
#define TOL_IM2COL 2e-4
#define TOL_LATER 2e-2
#endif

static int failures;
#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", bl_dist_rank(), __FILE__, __LINE__);        \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fprintf(stderr, "\n");                                                               \
            failures++;                                                                          \
        }                                                                                        \
    } while (0)

typedef struct {
    bl_ddp *ddp;       /* NULL for the reference */
    double *grads;     /* gradients of step 1 after reduction, packed */
    int64_t n, calls;
    int64_t early, n_buckets; /* overlap: buckets started during backward, buckets per step */
} capture;

static void capture_hook(void *user, bl_params *p)
{
    capture *c = user;
    if (c->ddp) bl_ddp_after_backward(c->ddp, p);
    if (c->calls++ > 0) return;
    int64_t o = 0;
    for (int i = 0; i < p->n; i++)
        if (p->t[i]->requires_grad)
            for (int64_t k = 0; k < p->t[i]->numel; k++) c->grads[o++] = (double)p->t[i]->grad[k];
    c->n = o;
}

/* N_STEPS steps: losses (global-batch means) and the step-1 gradients */
static void run(const bl_settings *s, int rank, int n_ranks, int overlap, double *losses, capture *cap,
                bl_encoder **enc_out)
{
    bl_cli_data *data;
    bl_status st = bl_cli_data_open_slice(&data, s, "simulate", rank, n_ranks);
    if (st) {
        fprintf(stderr, "data: %s\n", bl_error_message());
        exit(1);
    }
    bl_encoder *enc = bl_encoder_alloc(s->spec, &s->arch, &s->encoder, (uint64_t)s->train.seed);
    cap->grads = calloc((size_t)bl_params_count_trainable(enc->params), sizeof(double));
    if (n_ranks > 1) cap->ddp = bl_ddp_alloc(enc->params, 1);
    bl_trainer_opts o = bl_trainer_opts_default();
    o.adam.lr = s->train.adam.lr;
    o.after_backward = capture_hook;
    o.after_backward_user = cap;
    bl_trainer *tr = bl_trainer_alloc(enc, &o, bl_cli_data_source(data, BL_DATA_TRAIN, 0), (bl_batch_source){0});
    if (overlap) {
        cap->ddp->bucket = 10000; /* ~15 buckets for the quick encoder */
        bl_ddp_overlap(cap->ddp, tr->ctx);
    }
    for (int k = 0; k < N_STEPS; k++) {
        double l;
        if (bl_trainer_step(tr, s->train.adam.lr, &l)) {
            fprintf(stderr, "step %d: %s\n", k, bl_error_message());
            exit(1);
        }
        bl_dist_sum_double(&l, n_ranks > 1 ? 1 : 0);
        losses[k] = l / n_ranks;
    }
    if (overlap) cap->early = cap->ddp->early, cap->n_buckets = cap->ddp->n_buckets;
    bl_trainer_free(tr);
    bl_ddp_free(cap->ddp);
    bl_cli_data_free(data);
    *enc_out = enc;
}

int main(int argc, char **argv)
{
    bl_dist_init(&argc, &argv);
    const int rank = bl_dist_rank(), n_ranks = bl_dist_size();
    const int expect_wino5 = argc == 3 && !strcmp(argv[2], "--expect-wino5");
    if ((argc != 2 && !expect_wino5) || n_ranks != 2) {
        fprintf(stderr, "usage: mpirun -np 2 test_ddp configs/quick.cfg [--expect-wino5] (got %d "
                        "processes)\n", n_ranks);
        bl_dist_abort(1);
    }
    const char *sets[] = {"prior.batch_size=4", "train.sync_batchnorm=true"};
    bl_settings *s;
    if (bl_settings_load(&s, argv[1], 2, sets, 0, 0)) {
        fprintf(stderr, "%s\n", bl_error_message());
        bl_dist_abort(1);
    }
    double tol = TOL;
#ifndef BL_REAL_DOUBLE
    if (bl_conv_engine_available(BL_CONV_ENGINE_ONEDNN))
        bl_conv_set_engine(BL_CONV_ENGINE_ONEDNN);
    else
        tol = TOL_IM2COL;
#endif
    double ref_loss[N_STEPS], ddp_loss[N_STEPS], ovl_loss[N_STEPS];
    capture ref = {0}, par = {0}, ovl = {0};
    bl_encoder *enc_ref, *enc_par, *enc_ovl;
    run(s, 0, 1, 0, ref_loss, &ref, &enc_ref);
    run(s, rank, n_ranks, 0, ddp_loss, &par, &enc_par);
    run(s, rank, n_ranks, 1, ovl_loss, &ovl, &enc_ovl);

    /* gradients of step 1 */
    CHECK(ref.n == par.n && ref.n > 0, "gradient sizes %lld vs %lld", (long long)ref.n, (long long)par.n);
    double d2 = 0, r2 = 0;
    for (int64_t k = 0; k < ref.n; k++) {
        d2 += (par.grads[k] - ref.grads[k]) * (par.grads[k] - ref.grads[k]);
        r2 += ref.grads[k] * ref.grads[k];
    }
    const double grad_err = sqrt(d2 / r2);
    CHECK(r2 > 0 && grad_err <= tol, "step-1 gradients: |g_2x - g_1| / |g_1| = %.3g > %.0e", grad_err, tol);
    if (grad_err > tol) /* name the worst tensors: where the two computations part */
        for (int i = 0, o = 0; i < enc_par->params->n; i++) {
            const bl_tensor *t = enc_par->params->t[i];
            if (!t->requires_grad) continue;
            double e2 = 0;
            for (int64_t k = 0; k < t->numel; k++, o++)
                e2 += (par.grads[o] - ref.grads[o]) * (par.grads[o] - ref.grads[o]);
            if (e2 > 0.01 * d2)
                fprintf(stderr, "rank %d:   %s: %.0f%% of the squared difference\n", rank, t->name, 100 * e2 / d2);
        }
    /* losses */
    CHECK(fabs(ddp_loss[0] - ref_loss[0]) <= tol * fabs(ref_loss[0]), "step 1 loss %.17g vs %.17g",
          ddp_loss[0], ref_loss[0]);
    for (int k = 1; k < N_STEPS; k++)
        CHECK(fabs(ddp_loss[k] - ref_loss[k]) <= TOL_LATER * fabs(ref_loss[k]), "step %d loss %.17g vs %.17g",
              k + 1, ddp_loss[k], ref_loss[k]);
    /* every parameter and buffer identical on both ranks: rank 0's copy against each */
    int differ = 0;
    for (int i = 0; i < enc_par->params->n; i++) {
        bl_tensor *t = enc_par->params->t[i];
        bl_real *mine = malloc((size_t)t->numel * sizeof(bl_real));
        memcpy(mine, t->data, (size_t)t->numel * sizeof(bl_real));
        bl_dist_bcast_real(mine, t->numel);
        if (memcmp(mine, t->data, (size_t)t->numel * sizeof(bl_real)) != 0) differ++;
        free(mine);
    }
    CHECK(differ == 0, "%d parameter tensors differ from rank 0's after %d steps", differ, N_STEPS);
    CHECK(bl_dist_same_u64(bl_params_checksum(enc_par->params)), "parameter checksums differ");
    /* overlapped all-reduce: buckets started during backward, results bit-identical */
    CHECK(ovl.n_buckets > 4 && ovl.early >= N_STEPS * (ovl.n_buckets / 2),
          "overlap: %lld of %d x %lld buckets started during backward", (long long)ovl.early, N_STEPS,
          (long long)ovl.n_buckets);
    CHECK(ovl.n == par.n && memcmp(ovl.grads, par.grads, (size_t)par.n * sizeof(double)) == 0,
          "overlap: step-1 gradients differ from the plain all-reduce's");
    CHECK(memcmp(ovl_loss, ddp_loss, sizeof ovl_loss) == 0, "overlap: losses differ from the plain all-reduce's");
    CHECK(bl_params_checksum(enc_ovl->params) == bl_params_checksum(enc_par->params),
          "overlap: parameters after %d steps differ from the plain all-reduce's", N_STEPS);
#ifdef BL_CONV_HAVE_ONEDNN
    /* --expect-wino5: the features net's 5x5 ConvBlocks at each rank's batch ran the project's
     * Winograd for all three products (the point of mpi_ddp_wino5) */
    if (expect_wino5) {
        const bl_prior_params *pp = bl_prior_get_params(s->prior);
        const int64_t fw = s->arch.features_width, H = pp->n_tiles_h * s->tile_slen,
                      W = pp->n_tiles_w * s->tile_slen;
        const bl_conv_geom g5 = {.B = s->batch_size / n_ranks, .C = fw, .H = H, .W = W, .M = fw,
                                 .kh = 5, .kw = 5, .stride = 1, .pad_h = 2, .pad_w = 2, .Ho = H,
                                 .Wo = W};
        const char *impl = bl_conv_onednn_describe(&g5, 0, NULL);
        CHECK(strncmp(impl, "wino5:", 6) == 0 && strstr(impl, "| wino5:") != NULL,
              "the 5x5 ConvBlocks ran %s, not the 5x5 Winograd", impl);
    }
#else
    CHECK(!expect_wino5, "--expect-wino5 in a build without oneDNN");
#endif
    if (rank == 0)
        printf("step-1 gradient error %.3g (tol %.0e, %s convolutions); losses 1 process / 2 ranks:", grad_err,
               tol, bl_conv_engine_name(bl_conv_get_engine()));
    for (int k = 0; k < N_STEPS && rank == 0; k++) printf(" %.9g/%.9g", ref_loss[k], ddp_loss[k]);
    if (rank == 0)
        printf("\noverlap: %lld of %d x %lld buckets started during backward; results bit-identical\n",
               (long long)ovl.early, N_STEPS, (long long)ovl.n_buckets);

    free(ref.grads);
    free(par.grads);
    free(ovl.grads);
    bl_encoder_free(enc_ref);
    bl_encoder_free(enc_par);
    bl_encoder_free(enc_ovl);
    bl_settings_free(s);
    int fail = bl_dist_max_int(failures);
    bl_dist_finalize();
    return fail ? 1 : 0;
}
