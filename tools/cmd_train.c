/* bliss train: a bl_experiment (experiment/experiment.h) with the command line, signals and
 * data-parallel hooks around it (docs/cli.md). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "experiment/experiment.h"
#include "tools/commands.h"
#include "tools/ddp.h"
#include "tools/dist.h"
#include "tools/run_info.h"

/* The first SIGINT/SIGTERM/SIGUSR1 asks the loop to stop after the current step (it then
 * saves); SA_RESETHAND makes a second one end the process at once. SIGUSR1 is for mpirun,
 * which forwards it to every process (a SIGTERM to mpirun tears the job down, see
 * docs/scaling.md). Under mpirun the processes agree
 * after every step (the maximum of their signal flags), so all stop after the same step. */
static volatile sig_atomic_t bl_stop_flag, bl_stop_signal, bl_signal_flag;

static void bl_on_signal(int sig)
{
    bl_stop_signal = sig;
    bl_signal_flag = 1;
    if (bl_dist_size() == 1) bl_stop_flag = 1;
}

/* parameters compared across processes every this many steps (and before every save) */
#define BL_DDP_CHECK_EVERY 100

static void bl_install_signals(struct sigaction *old_int, struct sigaction *old_term,
                               struct sigaction *old_usr1)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bl_on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, old_int);
    sigaction(SIGTERM, &sa, old_term);
    sigaction(SIGUSR1, &sa, old_usr1);
}

/* ---- data-parallel hook points of the experiment ---------------------------------------- */

/* The mean of v over the processes (each holds the mean over its equal slice of the global
 * batch: the mean is the global batch's), as rank 0 has it: decided once for everyone. */
static void bl_par_mean(void *user, double *v, int n)
{
    (void)user;
    bl_dist_sum_double(v, n);
    for (int i = 0; i < n; i++) v[i] /= bl_dist_size();
    bl_dist_bcast_double(v, n);
}

/* the global loss, the stop request of any process, and the parameters compared */
static bl_status bl_par_after_step(void *user, int64_t step, double *loss)
{
    double v[2] = {*loss, bl_signal_flag ? 1.0 : 0.0};
    bl_dist_sum_double(v, 2);
    *loss = v[0] / bl_dist_size();
    if (v[1] > 0) bl_stop_flag = 1;
    if (step == 0 || (step + 1) % BL_DDP_CHECK_EVERY == 0) return bl_ddp_check(user, step + 1);
    return BL_OK;
}

static bl_status bl_par_before_save(void *user, int64_t step) { return bl_ddp_check(user, step); }

/* ---- the command ------------------------------------------------------------------------ */

int bl_cmd_train(bl_cli *cli)
{
    bl_settings *s = NULL;
    bl_experiment *ex = NULL;
    bl_ddp *ddp = NULL;
    int status = BL_EXIT_ERROR;
    if (cli->init && cli->resume) {
        fprintf(stderr, "bliss train: error: --init and --resume exclude each other (--resume continues a run, "
                        "--init starts a new one from weights)\n");
        return BL_EXIT_USAGE;
    }
    if (bl_cli_settings(cli, &s)) return bl_cli_fail(cli);
    const bl_train_settings *t = &s->train;
    const char *out_dir = cli->out ? cli->out : t->output_dir;
    if (bl_cli_mkdirs(out_dir)) {
        bl_settings_free(s);
        return bl_cli_fail(cli);
    }
    /* what the run records about itself besides the experiment's own metadata (run_info.h) */
    char seed[32], threads[32], title[256];
    snprintf(seed, sizeof seed, "%lld", (long long)t->seed);
    snprintf(threads, sizeof threads, "%d", bl_cli_threads());
    snprintf(title, sizeof title, "bliss train %s", s->path);
    const char *meta_keys[3] = {BL_META_VERSION, BL_META_THREADS, BL_META_ENGINE};
    const char *meta_values[3] = {bl_cli_version(), threads, bl_cli_conv_engine()};
    bl_experiment_opts o = bl_experiment_opts_default();
    o.out_dir = cli->out;
    o.data = cli->data;
    o.max_steps = cli->max_steps;
    o.rank = bl_dist_rank();
    o.n_ranks = bl_dist_size();
    o.log = stdout;
    o.stop = &bl_stop_flag;
    o.title = title;
    o.n_meta = 3;
    o.meta_keys = meta_keys;
    o.meta_values = meta_values;
    bl_status est = bl_experiment_from_settings(&ex, s, &o); /* takes s */
    s = NULL;
    if (est) goto done;
    if (bl_dist_rank() == 0 && bl_cli_write_run_config(cli, ex->out_dir, ex->s->path, ex->config_text, t->seed))
        goto done;
    t = &ex->s->train;
    ddp = bl_ddp_alloc(ex->enc->params, t->sync_batchnorm);
    if (ddp) {
        ex->tr->opts.after_backward = bl_ddp_after_backward;
        ex->tr->opts.after_backward_user = ddp;
        ex->parallel = (bl_experiment_parallel){.user = ddp, .after_step = bl_par_after_step,
                                                .mean = bl_par_mean, .before_save = bl_par_before_save};
        ddp->bucket = (int64_t)ceil(t->ddp_bucket_mb * 1e6 / sizeof(bl_real));
        if (t->ddp_overlap) bl_ddp_overlap(ddp, ex->tr->ctx);
    }
    if (cli->init) {
        /* weights only: Adam starts fresh at step 0, the run at step 0 */
        if (bl_experiment_init_weights(ex, cli->init)) goto done;
        printf("initialised from %s (weights only; fresh optimizer)\n", cli->init);
    }
    if (cli->resume) {
        if (bl_experiment_resume(ex, cli->resume, stderr)) goto done;
        printf("resuming from %s: step %lld, epoch %lld, best val %.6g\n", cli->resume,
               (long long)ex->state.step, (long long)ex->state.epoch, ex->state.best_val);
    }

    printf("training %s: P = %d, %lld trainable parameters, batch %lld, %s, output %s\n", ex->s->path,
           ex->s->spec->dim, (long long)bl_params_count_trainable(ex->enc->params),
           (long long)ex->s->batch_size, ex->data_name, ex->out_dir);
    printf("run: bliss-c %s, seed %lld, threads %d, conv engine %s; resolved config in %s/config.cfg\n",
           bl_cli_version(), (long long)t->seed, bl_cli_threads(), bl_cli_conv_engine(), ex->out_dir);
    if (bl_dist_size() > 1)
        printf("data-parallel: %d processes x %lld images, BatchNorm statistics %s, all-reduce %s\n",
               bl_dist_size(), (long long)(ex->s->batch_size / bl_dist_size()),
               t->sync_batchnorm ? "of the global batch (sync_batchnorm)" : "per process",
               t->ddp_overlap ? "overlapped with backward" : "after backward");
    fflush(stdout);
    struct sigaction old_int, old_term, old_usr1;
    bl_install_signals(&old_int, &old_term, &old_usr1);
    bl_train_end end;
    bl_status st = bl_experiment_run(ex, &end);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    if (st) goto done;
    const bl_train_state *state = &ex->state;
    printf("stopped: %s after %lld steps (%lld epochs, %.1f s)", bl_train_end_name(end),
           (long long)state->step, (long long)state->epoch, state->seconds);
    if (isfinite(state->best_val))
        printf("; best val loss %.6g at epoch %lld", state->best_val, (long long)state->best_epoch);
    printf("\nwrote %s/last.safetensors%s, %s/curve.csv, %s/curve.png", ex->out_dir,
           isfinite(state->best_val) ? ", best.safetensors" : "", ex->out_dir, ex->out_dir);
    if (ex->metrics && ex->metrics->n_rows > 0) printf(", %s/metrics.csv, %s/metrics.png", ex->out_dir, ex->out_dir);
    printf("\n");
    if (end == BL_TRAIN_INTERRUPTED) {
        printf("interrupted by signal %d; continue with --resume %s/last.safetensors\n",
               (int)bl_stop_signal, ex->out_dir);
        status = 128 + (int)bl_stop_signal;
        goto done;
    }
    bl_experiment_print_q_stats(ex, stdout);
    status = 0;
done:
    if (status == BL_EXIT_ERROR) bl_cli_fail(cli);
    bl_ddp_free(ddp);
    bl_experiment_free(ex);
    bl_settings_free(s);
    return status;
}
