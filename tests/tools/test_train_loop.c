/* The training driver (models/train_loop.h) with a fake model: the learning-rate schedule,
 * early stopping with min_epochs, the best and last checkpoints, max_steps, a stop request
 * (what SIGINT/SIGTERM set) and resuming to the same curve as an uninterrupted run. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/io/atomic_file.h"
#include "tests/bl_check.h"
#include "models/train_loop.h"

#include "cli_run.h"

/* The fake model: train loss at step s is 10 / (1 + s) + lr; validation losses come from a
 * table indexed by the epoch. A checkpoint is a text file with the train state. */
typedef struct {
    const double *val;       /* per epoch (0-based) */
    int n_val, val_calls;
    int64_t stop_at_step;    /* set *stop during this step (0: never) */
    int64_t crash_at_step;   /* fail this step: the run ends at once, as after kill -9 (0: never) */
    volatile sig_atomic_t *stop;
    double lrs[256];
    int n_saves;
} fake;

static bl_status fake_step(void *ctx, int64_t step, double lr, double *loss)
{
    fake *f = ctx;
    if (f->crash_at_step && step + 1 == f->crash_at_step) return BL_ERR_IO;
    f->lrs[step] = lr;
    *loss = 10.0 / (1.0 + (double)step) + lr;
    if (f->stop_at_step && step + 1 == f->stop_at_step) *f->stop = 1;
    return BL_OK;
}

static bl_status fake_validate(void *ctx, double *val)
{
    fake *f = ctx;
    ck_assert_int_lt(f->val_calls, f->n_val);
    *val = f->val[f->val_calls++];
    return BL_OK;
}

/* two metrics after each validation: 2 x that validation's loss, and an undefined one (NaN) */
static bl_status fake_metrics(void *ctx, double *v)
{
    fake *f = ctx;
    v[0] = 2 * f->val[f->val_calls - 1];
    v[1] = NAN;
    return BL_OK;
}

static bl_status fake_save(void *ctx, const char *path, const bl_train_state *s)
{
    fake *f = ctx;
    f->n_saves++;
    bl_atomic_file af;
    bl_status st = bl_atomic_open(&af, path, "w");
    if (st) return st;
    fprintf(af.f, "%lld %lld %.17g %lld %lld %.17g\n", (long long)s->step, (long long)s->epoch,
            s->best_val, (long long)s->best_epoch, (long long)s->bad_epochs, s->seconds);
    return bl_atomic_commit(&af);
}

static bl_train_state load_state(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *fp = fopen(p, "r");
    ck_assert_msg(fp != NULL, "missing %s", p);
    bl_train_state s;
    long long step, epoch, best_epoch, bad;
    ck_assert_int_eq(fscanf(fp, "%lld %lld %lf %lld %lld %lf", &step, &epoch, &s.best_val,
                            &best_epoch, &bad, &s.seconds), 6);
    fclose(fp);
    s.step = step;
    s.epoch = epoch;
    s.best_epoch = best_epoch;
    s.bad_epochs = bad;
    return s;
}

static char dir[256];
static FILE *devnull;

static void setup(void)
{
    bl_check_tmpdir(dir, sizeof dir, "bl_test_train");
    devnull = fopen("/dev/null", "w");
}

static void teardown(void)
{
    cli_rmtree(dir);
    fclose(devnull);
}

static bl_train_plan plan_for(int64_t spe, int64_t max_epochs)
{
    bl_train_plan p = {.steps_per_epoch = spe, .max_epochs = max_epochs, .min_epochs = 1,
                       .patience = 0, .print_every = 2, .out_dir = dir, .plot_width = 320,
                       .plot_height = 200, .title = "test", .log = devnull,
                       .progress = BL_PROGRESS_PLAIN};
    p.schedule = (bl_multistep){.base_lr = 1e-2, .gamma = 0.1, .n_milestones = 2,
                                .milestones = {1, 2}};
    return p;
}

START_TEST(test_schedule_no_validation)
{
    fake f = {0};
    bl_train_plan plan = plan_for(4, 3);
    bl_train_hooks hooks = {.ctx = &f, .step = fake_step, .save = fake_save};
    bl_train_state s;
    bl_train_state_init(&s);
    bl_curve *c = bl_curve_alloc();
    bl_train_end end;
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &s, c, &end), BL_OK);
    ck_assert_int_eq(end, BL_TRAIN_DONE);
    ck_assert_int_eq(s.step, 12);
    ck_assert_int_eq(s.epoch, 3);
    /* MultiStepLR per epoch, milestones [1, 2]: 1e-2, 1e-3, 1e-4 */
    for (int i = 0; i < 12; i++) ck_assert_double_eq_tol(f.lrs[i], 1e-2 * pow(0.1, i / 4), 1e-15);
    ck_assert_int_eq(c->n, 12);
    ck_assert_double_eq_tol(c->points[11].train_loss, 10.0 / 12 + 1e-4, 1e-12);
    ck_assert(isnan(c->points[3].val_loss));
    bl_train_state l = load_state(dir, "last.safetensors");
    ck_assert_int_eq(l.step, 12);
    ck_assert_int_eq(l.epoch, 3);
    ck_assert(!cli_exists(dir, "best.safetensors"));
    ck_assert(cli_exists(dir, "curve.png"));
    bl_curve *d;
    char p[512];
    snprintf(p, sizeof p, "%s/curve.csv", dir);
    ck_assert_int_eq(bl_curve_read_csv(&d, p), BL_OK);
    ck_assert_int_eq(d->n, 12);
    ck_assert(d->points[5].lr == 1e-3);
    bl_curve_free(c);
    bl_curve_free(d);
}
END_TEST

START_TEST(test_early_stopping)
{
    /* val per epoch: best 4.0 at epoch 2, then 3 epochs without improvement (4.0 is not better
     * than 4.0). patience 2: stop after epoch 4. */
    const double val[] = {5, 4, 4.5, 4.0, 4.3, 4.4, 3.0, 3.0, 3.0, 3.0};
    fake f = {.val = val, .n_val = 10};
    bl_train_plan plan = plan_for(3, 10);
    plan.patience = 2;
    bl_train_hooks hooks = {.ctx = &f, .step = fake_step, .validate = fake_validate, .save = fake_save};
    bl_train_state s;
    bl_train_state_init(&s);
    bl_curve *c = bl_curve_alloc();
    bl_train_end end;
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &s, c, &end), BL_OK);
    ck_assert_int_eq(end, BL_TRAIN_EARLY_STOP);
    ck_assert_int_eq(s.epoch, 4);
    ck_assert_int_eq(s.step, 12);
    ck_assert_int_eq(s.best_epoch, 2);
    ck_assert_double_eq(s.best_val, 4);
    bl_train_state b = load_state(dir, "best.safetensors");
    ck_assert_int_eq(b.epoch, 2);
    ck_assert_int_eq(b.step, 6);
    bl_train_state l = load_state(dir, "last.safetensors");
    ck_assert_int_eq(l.epoch, 4);
    ck_assert_int_eq(l.bad_epochs, 2);
    /* val losses sit on the last step of each epoch */
    ck_assert_double_eq(c->points[5].val_loss, 4);
    ck_assert_double_eq(c->points[11].val_loss, 4.0);
    ck_assert(isnan(c->points[10].val_loss));
    bl_curve_free(c);

    /* min_epochs 6 keeps going through epoch 5 (bad 3) and 6 (bad 4) */
    f.val_calls = 0;
    plan.min_epochs = 6;
    bl_train_state_init(&s);
    c = bl_curve_alloc();
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &s, c, &end), BL_OK);
    ck_assert_int_eq(end, BL_TRAIN_EARLY_STOP);
    ck_assert_int_eq(s.epoch, 6);
    ck_assert_int_eq(s.bad_epochs, 4);
    bl_curve_free(c);
}
END_TEST

START_TEST(test_max_steps)
{
    fake f = {0};
    bl_train_plan plan = plan_for(4, 5);
    plan.max_steps = 6;
    bl_train_hooks hooks = {.ctx = &f, .step = fake_step, .save = fake_save};
    bl_train_state s;
    bl_train_state_init(&s);
    bl_curve *c = bl_curve_alloc();
    bl_train_end end;
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &s, c, &end), BL_OK);
    ck_assert_int_eq(end, BL_TRAIN_MAX_STEPS);
    ck_assert_int_eq(s.step, 6);
    ck_assert_int_eq(s.epoch, 1);
    ck_assert_int_eq(load_state(dir, "last.safetensors").step, 6);
    ck_assert_int_eq(c->n, 6);
    bl_curve_free(c);
}
END_TEST

/* Checkpoints mid-epoch: the curve is written with each, so a run killed between epochs
 * resumes with every point up to its checkpoint and continues the curve exactly. */
START_TEST(test_kill_mid_epoch)
{
    fake f = {.crash_at_step = 18};
    bl_train_plan plan = plan_for(10, 3);
    plan.checkpoint_every = 3;
    bl_train_hooks hooks = {.ctx = &f, .step = fake_step, .save = fake_save};
    bl_train_state s;
    bl_train_state_init(&s);
    bl_curve *c = bl_curve_alloc();
    bl_train_end end;
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &s, c, &end), BL_ERR_IO);
    bl_curve_free(c);
    /* what the kill leaves: the checkpoint of step 15 and a curve up to at least step 15 */
    bl_train_state l = load_state(dir, "last.safetensors");
    ck_assert_int_eq(l.step, 15);
    char p[512];
    snprintf(p, sizeof p, "%s/curve.csv", dir);
    ck_assert_int_eq(bl_curve_read_csv(&c, p), BL_OK);
    ck_assert_int_ge(c->n, 15);
    /* resume: steps 1..30 once each, with the uninterrupted run's losses */
    f.crash_at_step = 0;
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &l, c, &end), BL_OK);
    ck_assert_int_eq(end, BL_TRAIN_DONE);
    bl_curve *d;
    ck_assert_int_eq(bl_curve_read_csv(&d, p), BL_OK);
    ck_assert_int_eq(d->n, 30);
    for (int i = 0; i < 30; i++) {
        ck_assert_int_eq(d->points[i].step, i + 1);
        ck_assert_double_eq_tol(d->points[i].train_loss, 10.0 / (1 + i) + 1e-2 * pow(0.1, i / 10), 1e-12);
    }
    bl_curve_free(c);
    bl_curve_free(d);
}
END_TEST

START_TEST(test_interrupt_and_resume)
{
    const double val[] = {5, 4, 3, 2, 1};
    /* uninterrupted reference */
    fake f = {.val = val, .n_val = 5};
    bl_train_plan plan = plan_for(4, 3);
    bl_train_hooks hooks = {.ctx = &f, .step = fake_step, .validate = fake_validate, .save = fake_save};
    bl_train_state s;
    bl_train_state_init(&s);
    bl_curve *ref = bl_curve_alloc();
    bl_train_end end;
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &s, ref, &end), BL_OK);
    ck_assert_int_eq(ref->n, 12);

    /* a stop request during step 6 (epoch 2): the step finishes, last is saved at step 6 */
    volatile sig_atomic_t stop = 0;
    fake g = {.val = val, .n_val = 5, .stop_at_step = 6, .stop = &stop};
    plan.stop = &stop;
    hooks.ctx = &g;
    bl_train_state_init(&s);
    bl_curve *c = bl_curve_alloc();
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &s, c, &end), BL_OK);
    ck_assert_int_eq(end, BL_TRAIN_INTERRUPTED);
    bl_train_state l = load_state(dir, "last.safetensors");
    ck_assert_int_eq(l.step, 6);
    ck_assert_int_eq(l.epoch, 1);
    ck_assert_double_eq(l.best_val, 5);
    bl_curve_free(c);

    /* resume: state from the checkpoint, curve from the CSV, same validation sequence from
     * epoch 2 on; the result equals the uninterrupted run */
    stop = 0;
    fake h = {.val = val + 1, .n_val = 4};
    hooks.ctx = &h;
    char p[512];
    snprintf(p, sizeof p, "%s/curve.csv", dir);
    ck_assert_int_eq(bl_curve_read_csv(&c, p), BL_OK);
    ck_assert_int_eq(c->n, 6);
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &l, c, &end), BL_OK);
    ck_assert_int_eq(end, BL_TRAIN_DONE);
    ck_assert_int_eq(c->n, ref->n);
    for (int64_t i = 0; i < ref->n; i++) {
        ck_assert_int_eq(c->points[i].step, ref->points[i].step);
        ck_assert(c->points[i].train_loss == ref->points[i].train_loss);
        ck_assert(c->points[i].lr == ref->points[i].lr);
        ck_assert(c->points[i].val_loss == ref->points[i].val_loss ||
                  (isnan(c->points[i].val_loss) && isnan(ref->points[i].val_loss)));
    }
    ck_assert_int_eq(l.best_epoch, 3);
    /* seconds continue from the earlier run */
    ck_assert(c->points[11].seconds >= c->points[5].seconds);
    bl_curve_free(c);
    bl_curve_free(ref);
}
END_TEST

/* metrics.csv: a row per validation (step, epoch, the hook's values); after an interruption
 * and a stale row (a kill after metrics.csv but before the checkpoint), resuming drops the rows
 * past the checkpoint and continues the table exactly; metrics.png is drawn. */
START_TEST(test_metrics_table_resume)
{
    const double val[] = {5, 4, 3};
    const char *cols[4] = {"step", "epoch", "z.nll", "z.coverage_68"};
    fake f = {.val = val, .n_val = 3};
    bl_train_plan plan = plan_for(4, 3);
    plan.plot_width = 400;
    plan.plot_height = 300;
    plan.metrics = bl_table_alloc(4, cols);
    volatile sig_atomic_t stop = 0;
    f.stop_at_step = 6;
    f.stop = &stop;
    plan.stop = &stop;
    bl_train_hooks hooks = {.ctx = &f, .step = fake_step, .validate = fake_validate,
                            .val_metrics = fake_metrics, .save = fake_save};
    bl_train_state s;
    bl_train_state_init(&s);
    bl_curve *c = bl_curve_alloc();
    bl_train_end end;
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &s, c, &end), BL_OK);
    ck_assert_int_eq(end, BL_TRAIN_INTERRUPTED);
    bl_table_free(plan.metrics);
    char p[512];
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    bl_table *t;
    ck_assert_int_eq(bl_table_read_csv(&t, p), BL_OK);
    ck_assert_int_eq(t->n_rows, 1);
    ck_assert_int_eq(t->n_cols, 4);
    ck_assert_str_eq(t->cols[3], "z.coverage_68");
    ck_assert(t->v[0] == 4 && t->v[1] == 1 && t->v[2] == 10 && isnan(t->v[3]));
    /* a stale row of a later epoch, as a kill between metrics.csv and the checkpoint leaves */
    bl_table_append(t, (const double[]){8, 2, 99, 0.5});
    ck_assert_int_eq(bl_table_write_csv(t, p), BL_OK);
    bl_table_free(t);
    ck_assert_int_eq(bl_table_read_csv(&t, p), BL_OK);
    ck_assert_int_eq(t->n_rows, 2);
    ck_assert(t->v[7] == 0.5);

    bl_train_state l = load_state(dir, "last.safetensors");
    ck_assert_int_eq(l.step, 6);
    stop = 0;
    fake h = {.val = val + 1, .n_val = 2};
    hooks.ctx = &h;
    plan.stop = NULL;
    plan.metrics = t;
    bl_curve_free(c);
    snprintf(p, sizeof p, "%s/curve.csv", dir);
    ck_assert_int_eq(bl_curve_read_csv(&c, p), BL_OK);
    ck_assert_int_eq(bl_train_run(&plan, &hooks, &l, c, &end), BL_OK);
    ck_assert_int_eq(end, BL_TRAIN_DONE);
    bl_table_free(t);
    snprintf(p, sizeof p, "%s/metrics.csv", dir);
    ck_assert_int_eq(bl_table_read_csv(&t, p), BL_OK);
    ck_assert_int_eq(t->n_rows, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_double_eq(t->v[i * 4], 4 * (i + 1));
        ck_assert_double_eq(t->v[i * 4 + 1], i + 1);
        ck_assert_double_eq(t->v[i * 4 + 2], 2 * val[i]);
        ck_assert(isnan(t->v[i * 4 + 3]));
    }
    bl_table_free(t);
    bl_curve_free(c);
    snprintf(p, sizeof p, "%s/metrics.png", dir);
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    ck_assert_int_gt(sb.st_size, 1000);
}
END_TEST

/* the table's CSV: exact round trip of awkward doubles, NaN as an empty field, errors naming
 * file and line */
START_TEST(test_table_csv)
{
    const char *cols[3] = {"step", "a", "b"};
    bl_table *t = bl_table_alloc(3, cols);
    bl_table_append(t, (const double[]){1, 0.1, 1.0 / 3});
    bl_table_append(t, (const double[]){2, NAN, -1e-300});
    bl_table_append(t, (const double[]){3, 5, 6});
    bl_table_truncate(t, 2);
    ck_assert_int_eq(t->n_rows, 2);
    char p[512];
    snprintf(p, sizeof p, "%s/t.csv", dir);
    ck_assert_int_eq(bl_table_write_csv(t, p), BL_OK);
    bl_table *u;
    ck_assert_int_eq(bl_table_read_csv(&u, p), BL_OK);
    ck_assert_int_eq(u->n_rows, 2);
    ck_assert_int_eq(bl_table_col(u, "b"), 2);
    ck_assert_int_eq(bl_table_col(u, "c"), -1);
    ck_assert(u->v[1] == 0.1 && u->v[2] == 1.0 / 3 && isnan(u->v[4]) && u->v[5] == -1e-300);
    bl_table_free(u);
    bl_table_free(t);
    FILE *f = fopen(p, "w");
    fputs("step,a\n1,2\n2,x\n", f);
    fclose(f);
    ck_assert_int_eq(bl_table_read_csv(&u, p), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "t.csv:3"));
    f = fopen(p, "w");
    fputs("step,a\n1,2,3\n", f);
    fclose(f);
    ck_assert_int_eq(bl_table_read_csv(&u, p), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "t.csv:2: expected 2"));
    f = fopen(p, "w");
    fclose(f);
    ck_assert_int_eq(bl_table_read_csv(&u, p), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "empty file"));
}
END_TEST

static Suite *train_loop_suite(void)
{
    Suite *s = suite_create("train_loop");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_schedule_no_validation);
    tcase_add_test(tc, test_early_stopping);
    tcase_add_test(tc, test_max_steps);
    tcase_add_test(tc, test_interrupt_and_resume);
    tcase_add_test(tc, test_kill_mid_epoch);
    tcase_add_test(tc, test_metrics_table_resume);
    tcase_add_test(tc, test_table_csv);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(train_loop_suite()); }
