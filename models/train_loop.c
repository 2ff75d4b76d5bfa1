#include "models/train_loop.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void bl_train_state_init(bl_train_state *s)
{
    memset(s, 0, sizeof *s);
    s->best_val = INFINITY;
}

const char *bl_train_end_name(bl_train_end end)
{
    static const char *const names[] = {"max_epochs reached", "early stopping",
                                        "max_steps reached", "interrupted"};
    return (unsigned)end <= BL_TRAIN_INTERRUPTED ? names[end] : "?";
}

static double bl_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *bl_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = bl_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

typedef struct {
    const bl_train_plan *plan;
    const bl_train_hooks *hooks;
    bl_train_state *state;
    bl_curve *curve;
    bl_progress *progress;
    char *last, *best, *csv, *png, *mcsv, *mpng;
    double t_start, seconds_before;
} bl_run;

static void bl_run_clock(bl_run *r) { r->state->seconds = r->seconds_before + (bl_clock() - r->t_start); }

static bl_status bl_save_last(bl_run *r)
{
    bl_run_clock(r);
    return r->hooks->save(r->hooks->ctx, r->last, r->state);
}

static bl_status bl_write_curve(bl_run *r)
{
    if (r->plan->follower) return BL_OK;
    bl_status st = bl_curve_write_csv(r->curve, r->csv);
    if (st == BL_OK && r->plan->plot_width > 0 && r->curve->n > 0)
        st = bl_curve_write_png_log(r->curve, r->png, r->plan->plot_width, r->plan->plot_height,
                                r->plan->title, r->plan->plot_log);
    return st;
}

/* metrics.csv and metrics.png: a panel per metric against the epoch */
static bl_status bl_write_metrics(bl_run *r)
{
    const bl_table *t = r->plan->metrics;
    if (r->plan->follower || !t) return BL_OK;
    bl_status st = bl_table_write_csv(t, r->mcsv);
    if (st || r->plan->plot_width <= 0 || t->n_rows == 0 || t->n_cols <= 2) return st;
    const int ns = t->n_cols - 2;
    double *x = bl_malloc((size_t)t->n_rows * sizeof *x), *y = bl_malloc((size_t)(t->n_rows * ns) * sizeof *y);
    const double **ys = bl_malloc((size_t)ns * sizeof *ys);
    for (int64_t i = 0; i < t->n_rows; i++) {
        x[i] = t->v[i * t->n_cols + 1];
        for (int k = 0; k < ns; k++) y[k * t->n_rows + i] = t->v[i * t->n_cols + 2 + k];
    }
    for (int k = 0; k < ns; k++) ys[k] = y + k * t->n_rows;
    st = bl_curve_write_panels_png(r->mpng, ns, (const char *const *)t->cols + 2, t->n_rows, x, ys,
                                   260, 200, "epoch");
    free(x);
    free(y);
    free(ys);
    return st;
}

static int bl_stop_requested(const bl_train_plan *plan) { return plan->stop && *plan->stop; }

bl_status bl_train_run(const bl_train_plan *plan, const bl_train_hooks *hooks,
                       bl_train_state *state, bl_curve *curve, bl_train_end *end)
{
    BL_ASSERT(plan->steps_per_epoch > 0 && plan->max_epochs > 0 && plan->print_every > 0,
              "train: steps_per_epoch %lld, max_epochs %lld, print_every %lld",
              (long long)plan->steps_per_epoch, (long long)plan->max_epochs,
              (long long)plan->print_every);
    BL_ASSERT(hooks->step && hooks->save, "train: the step and save hooks are required");
    bl_run r = {.plan = plan, .hooks = hooks, .state = state, .curve = curve};
    r.last = bl_join(plan->out_dir, "last.safetensors");
    r.best = bl_join(plan->out_dir, "best.safetensors");
    r.csv = bl_join(plan->out_dir, "curve.csv");
    r.png = bl_join(plan->out_dir, "curve.png");
    r.mcsv = bl_join(plan->out_dir, "metrics.csv");
    r.mpng = bl_join(plan->out_dir, "metrics.png");
    r.t_start = bl_clock();
    r.seconds_before = state->seconds;
    bl_curve_truncate(curve, state->step);
    if (plan->metrics) bl_table_truncate(plan->metrics, (double)state->step);

    int64_t total = plan->steps_per_epoch * plan->max_epochs;
    if (plan->max_steps > 0 && plan->max_steps < total) total = plan->max_steps;
    if (total < 1) total = 1;
    r.progress = bl_progress_alloc(plan->log, "train", state->step < total ? state->step : total,
                                   total, plan->print_every, plan->progress);
    *end = BL_TRAIN_DONE;
    bl_status st = BL_OK;
    int saved = 0; /* last.safetensors holds the current state */
    char status[160];

    while (st == BL_OK && state->epoch < plan->max_epochs) {
        double lr = bl_multistep_lr(&plan->schedule, (int)state->epoch);
        int64_t epoch_end = (state->epoch + 1) * plan->steps_per_epoch;
        while (state->step < epoch_end) {
            if (plan->max_steps > 0 && state->step >= plan->max_steps) {
                *end = BL_TRAIN_MAX_STEPS;
                break;
            }
            if (bl_stop_requested(plan)) {
                *end = BL_TRAIN_INTERRUPTED;
                break;
            }
            double loss = NAN;
            if ((st = hooks->step(hooks->ctx, state->step, lr, &loss))) break;
            state->step++;
            saved = 0;
            bl_run_clock(&r);
            bl_curve_append(curve, (bl_curve_point){state->step, loss, NAN, lr, state->seconds});
            snprintf(status, sizeof status, "epoch %lld  loss %.6g  lr %.3g",
                     (long long)state->epoch + 1, loss, lr);
            bl_progress_update(r.progress, state->step, status);
            if (plan->checkpoint_every > 0 && state->step % plan->checkpoint_every == 0) {
                /* the curve first: after a kill between the two writes it holds at least the
                 * checkpoint's steps (resume truncates it to the checkpoint) */
                if ((st = bl_curve_write_csv(curve, r.csv))) break;
                if ((st = bl_save_last(&r))) break;
                saved = 1;
            }
        }
        if (st != BL_OK || *end != BL_TRAIN_DONE) break;

        /* a whole epoch is done */
        state->epoch++;
        if (hooks->validate) {
            double val = NAN;
            if ((st = hooks->validate(hooks->ctx, &val))) break;
            if (curve->n > 0 && curve->points[curve->n - 1].step == state->step)
                curve->points[curve->n - 1].val_loss = val;
            else
                bl_curve_append(curve, (bl_curve_point){state->step, NAN, val, lr, state->seconds});
            if (val < state->best_val) {
                state->best_val = val;
                state->best_epoch = state->epoch;
                state->bad_epochs = 0;
                bl_run_clock(&r);
                if ((st = hooks->save(hooks->ctx, r.best, state))) break;
                bl_progress_message(r.progress, "epoch %lld: val loss %.6g (best; saved %s)",
                                    (long long)state->epoch, val, r.best);
            } else {
                state->bad_epochs++;
                bl_progress_message(r.progress, "epoch %lld: val loss %.6g (best %.6g at epoch %lld, %lld without improvement)",
                                    (long long)state->epoch, val, state->best_val,
                                    (long long)state->best_epoch, (long long)state->bad_epochs);
            }
            if (plan->metrics && hooks->val_metrics) {
                bl_table *t = plan->metrics;
                double *row = bl_malloc((size_t)t->n_cols * sizeof *row);
                row[0] = (double)state->step;
                row[1] = (double)state->epoch;
                st = hooks->val_metrics(hooks->ctx, row + 2);
                if (!st) bl_table_append(t, row);
                free(row);
                if (st || (st = bl_write_metrics(&r))) break;
            }
        }
        if ((st = bl_write_curve(&r))) break;
        if ((st = bl_save_last(&r))) break;
        saved = 1;
        if (hooks->validate && plan->patience > 0 && state->bad_epochs >= plan->patience &&
            state->epoch >= plan->min_epochs) {
            *end = BL_TRAIN_EARLY_STOP;
            break;
        }
    }
    if (st == BL_OK) st = bl_write_curve(&r);
    if (st == BL_OK && !saved) st = bl_save_last(&r);
    bl_progress_finish(r.progress);
    bl_progress_free(r.progress);
    free(r.last);
    free(r.best);
    free(r.csv);
    free(r.png);
    free(r.mcsv);
    free(r.mpng);
    return st;
}
