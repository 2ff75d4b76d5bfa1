/* The bliss CLI end to end on configs/quick.cfg: generate -> train 3 steps -> evaluate ->
 * predict, with every output file opened and checked; then SIGTERM and SIGKILL during training
 * leave a complete, loadable last checkpoint, and --resume continues the same curve. */
#include <jansson.h>
#include <math.h>
#include <png.h>
#include <time.h>

#include "autograd/conv_engine.h"
#include "dists/vardist.h"
#include "lib/io/atomic_file.h"
#include "lib/io/curve.h"
#include "lib/io/table.h"
#include "lib/io/fits.h"
#include "lib/io/safetensors.h"
#include "lib/sim/simulate.h"
#include "tests/bl_check.h"

#include "cli_run.h"

static char dir[256];
static cli_result r;

static const char *p(const char *name) { return cli_path(dir, name); }

static void setup(void)
{
    bl_check_tmpdir(dir, sizeof dir, "bl_test_e2e");
    cli_link_configs(dir);
}

static void teardown(void) { cli_rmtree(dir); }

static const char *meta(const char *path, const char *key, char *buf, size_t n)
{
    bl_safetensors *st;
    ck_assert_msg(bl_safetensors_read(&st, path) == BL_OK, "%s: %s", path, bl_error_message());
    const char *v = bl_safetensors_meta(st, key);
    ck_assert_msg(v != NULL, "%s: no metadata %s", path, key);
    snprintf(buf, n, "%s", v);
    bl_safetensors_free(st);
    return buf;
}

static int png_size(const char *path, int *w, int *h)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) return 0;
    img.format = PNG_FORMAT_RGBA;
    unsigned char *px = malloc(PNG_IMAGE_SIZE(img));
    int ok = png_image_finish_read(&img, NULL, px, 0, NULL);
    *w = (int)img.width;
    *h = (int)img.height;
    free(px);
    return ok;
}

/* 1 if the decoded pixels of two PNGs of the same size differ */
static int png_pixels_differ(const char *a, const char *b)
{
    unsigned char *px[2] = {NULL, NULL};
    size_t n[2] = {0, 0};
    const char *path[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        png_image img;
        memset(&img, 0, sizeof img);
        img.version = PNG_IMAGE_VERSION;
        ck_assert_msg(png_image_begin_read_from_file(&img, path[k]), "%s: not a PNG", path[k]);
        img.format = PNG_FORMAT_RGBA;
        n[k] = PNG_IMAGE_SIZE(img);
        px[k] = malloc(n[k]);
        ck_assert(px[k] && png_image_finish_read(&img, NULL, px[k], 0, NULL));
    }
    int differ = n[0] != n[1] || memcmp(px[0], px[1], n[0]) != 0;
    free(px[0]);
    free(px[1]);
    return differ;
}

/* no temporary ".<name>.tmp-<pid>" left in dir */
static int stray_temporaries(const char *d)
{
    DIR *dp = opendir(d);
    struct dirent *e;
    int n = 0;
    while (dp && (e = readdir(dp))) n += bl_atomic_tmp_owner(e->d_name) != 0;
    if (dp) closedir(dp);
    return n;
}

START_TEST(test_generate_train_evaluate_predict)
{
    /* generate: 2 shards x 2 batches x 2 images of 16 x 16, with FITS */
    cli_run(&r, dir, "generate", "-c", "quick.cfg", "-o", "ds", "--fits", "--threads", "2", NULL);
    ck_assert_msg(r.status == 0, "generate: %s", r.err);
    ck_assert_has(r.out, "wrote 2 shards (8 images");
    bl_sim_batch *b;
    ck_assert_msg(bl_sim_batch_read(&b, p("ds/shard_0001.safetensors")) == BL_OK, "%s", bl_error_message());
    ck_assert_int_eq(b->B, 4);
    ck_assert_int_eq(b->NB, 5);
    ck_assert_int_eq(b->H, 16);
    ck_assert_int_eq(b->W, 16);
    ck_assert(bl_tile_catalog_has(b->tile_catalog, "redshifts")); /* the redshift prior */
    const bl_tensor *z = bl_tile_catalog_get(b->tile_catalog, "redshifts");
    for (int64_t i = 0; i < z->numel; i++) ck_assert(z->data[i] >= 0 && z->data[i] < 1);
    int64_t shard1_sources = bl_tile_catalog_total_sources(b->tile_catalog);
    bl_tensor *fits_img;
    ck_assert_msg(bl_fits_read_batch_images(p("ds/shard_0001.fits"), 5,
                                            (const char *const[]){"u", "g", "r", "i", "z"}, NULL,
                                            &fits_img) == BL_OK, "%s", bl_error_message());
    ck_assert(bl_tensor_same_shape(fits_img, b->images));
    for (int64_t i = 0; i < fits_img->numel; i++) ck_assert(fits_img->data[i] == b->images->data[i]);
    bl_tensor_free(fits_img);
    bl_full_catalog *fc;
    ck_assert_msg(bl_fits_read_catalog(p("ds/shard_0001.fits"), &fc) == BL_OK, "%s", bl_error_message());
    int64_t rows = 0;
    for (int64_t i = 0; i < fc->B; i++) rows += fc->n_sources[i];
    ck_assert_int_eq(rows, shard1_sources);
    bl_full_catalog_free(fc);
    bl_sim_batch_free(b);

    /* train 3 steps on the dataset: 3 train batches, 1 validation batch */
    cli_run(&r, dir, "train", "-c", "quick.cfg", "--data", "ds", "-o", "run", NULL);
    ck_assert_msg(r.status == 0, "train: %s\n%s", r.err, r.out);
    ck_assert_has(r.out, "train 3/3");
    ck_assert_has(r.out, "epoch 1: val loss");
    ck_assert_has(r.out, "q(redshift) over");
    /* every factor's q: loc / scale per value dimension, p(1) for a Bernoulli */
    ck_assert_has(r.out, "q(loc)[1] over");
    ck_assert_has(r.out, "q(on_prob) over");
    ck_assert_has(r.out, ": p(1) mean");
    ck_assert_has(r.out, "q(galsim_a_d) over");
    ck_assert_ptr_null(strchr(r.out, '\r')); /* not a terminal: plain lines */
    bl_curve *c;
    ck_assert_int_eq(bl_curve_read_csv(&c, p("run/curve.csv")), BL_OK);
    ck_assert_int_eq(c->n, 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(c->points[i].step, i + 1);
        ck_assert(isfinite(c->points[i].train_loss));
        ck_assert(c->points[i].lr == 1e-3);
    }
    ck_assert(isnan(c->points[1].val_loss) && isfinite(c->points[2].val_loss));
    double val = c->points[2].val_loss;
    bl_curve_free(c);
    int w, h;
    ck_assert(png_size(p("run/curve.png"), &w, &h));
    ck_assert_int_eq(w, 400);
    ck_assert_int_eq(h, 300);
    /* train.plot.log_scale: the same run (same seed and data, same curve) with a log loss
     * axis draws another picture of the same size */
    cli_run(&r, dir, "train", "-c", "quick.cfg", "--data", "ds", "-o", "runlog", "--set",
            "train.plot.log_scale=true", NULL);
    ck_assert_msg(r.status == 0, "train log_scale: %s\n%s", r.err, r.out);
    ck_assert(png_size(p("runlog/curve.png"), &w, &h));
    ck_assert_int_eq(w, 400);
    ck_assert_int_eq(h, 300);
    ck_assert_msg(png_pixels_differ(p("run/curve.png"), p("runlog/curve.png")),
                  "train.plot.log_scale = true drew the same curve.png as the linear axis");
    char buf[64];
    ck_assert_str_eq(meta(p("run/last.safetensors"), "train.step", buf, sizeof buf), "3");
    ck_assert_str_eq(meta(p("run/best.safetensors"), "train.epoch", buf, sizeof buf), "1");
    ck_assert_double_eq_tol(atof(meta(p("run/best.safetensors"), "train.best_val", buf, sizeof buf)), val, 1e-9);
    ck_assert_int_eq(stray_temporaries(p("run")), 0);
    /* the per-factor validation metrics of the one epoch */
    bl_table *mt;
    ck_assert_int_eq(bl_table_read_csv(&mt, p("run/metrics.csv")), BL_OK);
    ck_assert_int_eq(mt->n_rows, 1);
    ck_assert_str_eq(mt->cols[0], "step");
    ck_assert_str_eq(mt->cols[2], "detection_precision");
    ck_assert_double_eq(mt->v[0], 3);
    ck_assert_double_eq(mt->v[1], 1);
    const int zc = bl_table_col(mt, "redshift.coverage_68"), zn = bl_table_col(mt, "redshift.nll");
    ck_assert(zc > 0 && zn > 0 && bl_table_col(mt, "on_prob.acc") > 0 && bl_table_col(mt, "on_prob.mse") < 0);
    ck_assert(isfinite(mt->v[zn]) && mt->v[zc] >= 0 && mt->v[zc] <= 1);
    bl_table_free(mt);
    ck_assert(png_size(p("run/metrics.png"), &w, &h));

    /* evaluate the best checkpoint on the whole dataset (4 batches) */
    cli_run(&r, dir, "evaluate", "-c", "quick.cfg", "--checkpoint", "run/best.safetensors",
            "--data", "ds", "-o", "metrics.json", NULL);
    ck_assert_msg(r.status == 0, "evaluate: %s", r.err);
    ck_assert_has(r.out, "detection_precision");
    ck_assert_has(r.out, "detection by magnitude (mode)");
    json_error_t je;
    json_t *m = json_load_file(p("metrics.json"), 0, &je);
    ck_assert_msg(m != NULL, "metrics.json: %s", je.text);
    ck_assert_int_eq(json_integer_value(json_object_get(m, "n_batches")), 4);
    for (const char *const *k = (const char *const[]){"mode", "sample", NULL}; *k; k++) {
        json_t *o = json_object_get(m, *k);
        ck_assert_ptr_nonnull(o);
        /* the truth is the cropped target: at most the sources of the whole dataset */
        json_int_t nt = json_integer_value(json_object_get(o, "n_true_sources"));
        json_int_t nm = json_integer_value(json_object_get(o, "n_matches"));
        json_int_t ne = json_integer_value(json_object_get(o, "n_est_sources"));
        ck_assert(nt > 0 && nm <= nt && nm <= ne);
        ck_assert_int_eq(json_array_size(json_object_get(o, "bins")), 9);
        ck_assert_ptr_nonnull(json_object_get(o, "flux_err_r_mae"));
        /* matched-pair metrics of every factor with a catalog field */
        json_t *fz = json_object_get(json_object_get(o, "factors"), "redshift");
        ck_assert(isfinite(json_real_value(json_object_get(fz, "mse"))));
        ck_assert(json_real_value(json_object_get(fz, "mae")) <= sqrt(json_real_value(json_object_get(fz, "mse"))) + 1e-9);
        ck_assert_int_eq(json_integer_value(json_object_get(fz, "n_matched")), nm);
        double acc = json_real_value(json_object_get(json_object_get(json_object_get(o, "factors"), "galaxy_prob"), "acc"));
        ck_assert_double_eq_tol(acc, json_real_value(json_object_get(o, "classification_acc")), 1e-9);
        ck_assert_ptr_null(json_object_get(fz, "nll")); /* q is the marginal's */
    }
    json_t *mg = json_object_get(json_object_get(m, "marginal"), "factors");
    ck_assert_ptr_nonnull(mg);
    json_t *qz = json_object_get(mg, "redshift");
    ck_assert(isfinite(json_real_value(json_object_get(qz, "nll"))));
    const double c68 = json_real_value(json_object_get(qz, "coverage_68"));
    const double c95 = json_real_value(json_object_get(qz, "coverage_95"));
    ck_assert(c68 >= 0 && c68 <= c95 && c95 <= 1);
    /* redshift counts on the tiles with a source, on_prob on every tile */
    json_int_t zt = json_integer_value(json_object_get(qz, "n_tiles"));
    json_t *qo = json_object_get(mg, "on_prob");
    ck_assert(zt > 0 && zt < json_integer_value(json_object_get(qo, "n_tiles")));
    const double tacc = json_real_value(json_object_get(qo, "tile_acc"));
    ck_assert(tacc >= 0 && tacc <= 1);
    ck_assert_ptr_null(json_object_get(qo, "coverage_68"));
    json_decref(m);

    /* predict from the safetensors batch and from the FITS export of the same images */
    cli_run(&r, dir, "predict", "-c", "quick.cfg", "--checkpoint", "run/best.safetensors", "-i",
            "ds/shard_0001.safetensors", "-o", "pred", NULL);
    ck_assert_msg(r.status == 0, "predict: %s", r.err);
    cli_run(&r, dir, "predict", "-c", "quick.cfg", "--checkpoint", "run/best.safetensors", "-i",
            "ds/shard_0001.fits", "-o", "predf", NULL);
    ck_assert_msg(r.status == 0, "predict (FITS): %s", r.err);
    bl_safetensors *s1, *s2;
    ck_assert_int_eq(bl_safetensors_read(&s1, p("pred.safetensors")), BL_OK);
    ck_assert_int_eq(bl_safetensors_read(&s2, p("predf.safetensors")), BL_OK);
    const bl_st_tensor *n1, *n2;
    /* 16 x 16 pixels = 4 x 4 tiles, one cropped on every side: 2 x 2 */
    ck_assert_int_eq(bl_safetensors_expect(s1, "pred", "tile_catalog.n_sources", 3, BL_SHAPE(4, 2, 2), &n1), BL_OK);
    ck_assert_int_eq(bl_safetensors_expect(s2, "predf", "tile_catalog.n_sources", 3, BL_SHAPE(4, 2, 2), &n2), BL_OK);
    ck_assert_int_eq(n1->dtype, BL_DTYPE_I64);
    ck_assert(memcmp(n1->data, n2->data, 16 * sizeof(int64_t)) == 0);
    ck_assert_ptr_nonnull(bl_safetensors_find(s1, "tile_catalog.redshifts"));
    ck_assert_str_eq(bl_safetensors_meta(s1, "origin_offset_pixels"), "4");
    int64_t predicted = 0;
    for (int i = 0; i < 16; i++) predicted += ((const int64_t *)n1->data)[i];
    bl_safetensors_free(s1);
    bl_safetensors_free(s2);
    ck_assert_msg(bl_fits_read_catalog(p("pred.fits"), &fc) == BL_OK, "%s", bl_error_message());
    ck_assert_int_eq(fc->B, 4);
    rows = 0;
    for (int64_t i = 0; i < fc->B; i++) rows += fc->n_sources[i];
    ck_assert_int_eq(rows, predicted);
    /* positions are in input-image pixels: inside the uncropped interior [4, 12) */
    for (int64_t i = 0; i < fc->B; i++)
        for (int64_t k = 0; k < fc->n_sources[i]; k++)
            for (int d = 0; d < 2; d++) {
                bl_real v = fc->plocs->data[(i * fc->M + k) * 2 + d];
                ck_assert(v >= 4 && v <= 12);
            }
    bl_full_catalog_free(fc);

    /* errors are clean: a missing checkpoint, a checkpoint of another network */
    cli_run(&r, dir, "evaluate", "-c", "quick.cfg", "--checkpoint", "nope.safetensors", "--data", "ds", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "nope.safetensors");
    cli_run(&r, dir, "predict", "-c", "quick.cfg", "--set", "encoder.arch.num_features=32",
            "--checkpoint", "run/best.safetensors", "-i", "ds/shard_0001.safetensors", "-o", "x", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "best.safetensors");
    ck_assert(!cli_exists(dir, "x.fits"));
    cli_run(&r, dir, "train", "-c", "quick.cfg", "--data", "no_such_dir", "-o", "run2", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "no_such_dir");
}
END_TEST

/* Start bliss in the background; returns its pid. */
static pid_t cli_spawn(const char *cwd, const char *const *args)
{
    const char *bin = getenv("BLISS");
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (; *args; args++) argv[n++] = *args;
    argv[n] = NULL;
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        if (chdir(cwd) != 0) _exit(127);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* wait (up to ~60 s) until `path` exists */
static void wait_for(const char *path)
{
    struct stat sb;
    for (int i = 0; i < 6000 && stat(path, &sb) != 0; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_msg(stat(path, &sb) == 0, "%s never appeared", path);
}

static int64_t saved_step(const char *path)
{
    char buf[64];
    return atoll(meta(path, "train.step", buf, sizeof buf));
}

START_TEST(test_interrupt_and_resume)
{
    /* a long run (200 steps), last.safetensors after every step */
    const char *args[] = {"train", "-c", "quick.cfg", "-o", "run", "--threads", "1", "--set",
                          "train.steps_per_epoch=200", "--set", "train.checkpoint_every=1",
                          "--set", "train.val_batches=0", NULL};
    pid_t pid = cli_spawn(dir, args);
    wait_for(p("run/last.safetensors"));
    kill(pid, SIGTERM);
    int ws;
    waitpid(pid, &ws, 0);
    ck_assert_msg(WIFEXITED(ws) && WEXITSTATUS(ws) == 128 + SIGTERM, "status %d", ws);
    int64_t k = saved_step(p("run/last.safetensors"));
    ck_assert(k >= 1 && k < 200);
    ck_assert_int_eq(stray_temporaries(p("run")), 0);
    bl_curve *c;
    ck_assert_int_eq(bl_curve_read_csv(&c, p("run/curve.csv")), BL_OK);
    ck_assert_int_eq(c->n, k);
    bl_curve *before = c;

    /* the interrupted checkpoint evaluates */
    cli_run(&r, dir, "evaluate", "-c", "quick.cfg", "--checkpoint", "run/last.safetensors",
            "--batches", "1", "-o", "m.json", NULL);
    ck_assert_msg(r.status == 0, "evaluate: %s", r.err);

    /* resume for 2 more steps: the curve continues, its first k points unchanged */
    char steps[32];
    snprintf(steps, sizeof steps, "%lld", (long long)k + 2);
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run", "--threads", "1", "--set",
            "train.steps_per_epoch=200", "--set", "train.checkpoint_every=1", "--set",
            "train.val_batches=0", "--resume", "run/last.safetensors", "--max-steps", steps, NULL);
    ck_assert_msg(r.status == 0, "resume: %s\n%s", r.err, r.out);
    ck_assert_has(r.out, "resuming from run/last.safetensors");
    ck_assert_has(r.out, "max_steps reached");
    ck_assert_int_eq(saved_step(p("run/last.safetensors")), k + 2);
    ck_assert_int_eq(bl_curve_read_csv(&c, p("run/curve.csv")), BL_OK);
    ck_assert_int_eq(c->n, k + 2);
    for (int64_t i = 0; i < k; i++) ck_assert(c->points[i].train_loss == before->points[i].train_loss);
    ck_assert_int_eq(c->points[k + 1].step, k + 2);
    ck_assert(c->points[k].seconds >= before->points[k - 1].seconds);
    bl_curve_free(c);
    bl_curve_free(before);

    /* SIGKILL: no chance to clean up, yet the last checkpoint in place is complete */
    pid = cli_spawn(dir, (const char *const[]){"train", "-c", "quick.cfg", "-o", "run3", "--threads",
                                               "1", "--set", "train.steps_per_epoch=200", "--set",
                                               "train.checkpoint_every=1", "--set",
                                               "train.val_batches=0", NULL});
    wait_for(p("run3/last.safetensors"));
    struct timespec ts = {0, 300000000};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    waitpid(pid, &ws, 0);
    ck_assert(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    ck_assert(saved_step(p("run3/last.safetensors")) >= 1);
    cli_run(&r, dir, "evaluate", "-c", "quick.cfg", "--checkpoint", "run3/last.safetensors",
            "--batches", "1", "-o", "m3.json", NULL);
    ck_assert_msg(r.status == 0, "evaluate after SIGKILL: %s", r.err);
    /* a resume of a file that is not a train checkpoint is refused */
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run4", "--resume", "m3.json", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "m3.json");
}
END_TEST

static const char *path(const char *name)
{
    static char p[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static bl_curve *read_curve(const char *d, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", d, name);
    bl_curve *c;
    ck_assert_msg(bl_curve_read_csv(&c, p) == BL_OK, "%s", bl_error_message());
    return c;
}

/* A run records itself: config.cfg and the checkpoints' metadata hold the resolved config (with
 * --set), the version, seed, threads and engine; evaluate and predict rebuild the encoder from
 * the checkpoint alone; `bliss train -c config.cfg` repeats the run loss for loss. */
START_TEST(test_run_records_itself)
{
    cli_run(&r, NULL, "--version", NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(!strncmp(r.out, "bliss-c 0.1.0 (git ", 19), "%s", r.out);
    char version[256];
    snprintf(version, sizeof version, "%.200s", r.out + 8);
    version[strcspn(version, "\n")] = 0;

    cli_run(&r, dir, "generate", "-c", "quick.cfg", "-o", "ds", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "generate: %s", r.err);
    /* a narrower network than quick.cfg's (features_width 8): only --set says so */
    cli_run(&r, dir, "train", "-c", "quick.cfg", "--set", "encoder.arch.features_width=16", "--seed", "5",
            "-o", "run", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "train: %s", r.err);
    char line[256];
    const char *engine = bl_conv_engine_name(bl_conv_get_engine());
    snprintf(line, sizeof line, "seed 5, threads 1, conv engine %s; resolved config in run/config.cfg", engine);
    ck_assert_has(r.out, line);
    char text[1 << 15], buf[1 << 15];
    cli_read_file(path("run/config.cfg"), text, sizeof text);
    ck_assert_has(text, "--set encoder.arch.features_width=16");
    snprintf(line, sizeof line, "# seed 5, threads 1, conv engine %s", engine);
    ck_assert_has(text, line);
    ck_assert_has(text, "features_width = 16;");
    ck_assert_has(text, "seed = 5;");
    ck_assert_has(text, "output_dir = \"run\";");
    ck_assert(strstr(text, "overrides_quick") == NULL); /* applied, not repeated */
    for (int k = 0; k < 2; k++) {
        const char *ckpt = path(k ? "run/best.safetensors" : "run/last.safetensors");
        ck_assert_has(meta(ckpt, "bliss.config", buf, sizeof buf), "features_width = 16;");
        ck_assert_has(strstr(text, "\n\n"), buf); /* the same text as config.cfg's body */
        ck_assert_str_eq(meta(ckpt, "bliss.version", buf, sizeof buf), version);
        ck_assert_str_eq(meta(ckpt, "train.seed", buf, sizeof buf), "5");
        ck_assert_str_eq(meta(ckpt, "train.threads", buf, sizeof buf), "1");
        /* the engine the run used: the library's choice under the same environment */
        ck_assert_str_eq(meta(ckpt, "train.conv_engine", buf, sizeof buf),
                         bl_conv_engine_name(bl_conv_get_engine()));
    }
    /* evaluate and predict without --config and without the --set */
    cli_run(&r, dir, "evaluate", "--checkpoint", "run/best.safetensors", "--data", "ds", "-o", "m.json", NULL);
    ck_assert_msg(r.status == 0, "evaluate: %s", r.err);
    ck_assert(cli_exists(dir, "m.json"));
    cli_run(&r, dir, "predict", "--checkpoint", "run/best.safetensors", "-i", "ds/shard_0000.safetensors",
            "-o", "p", NULL);
    ck_assert_msg(r.status == 0, "predict: %s", r.err);
    ck_assert(cli_exists(dir, "p.fits") && cli_exists(dir, "p.safetensors"));
    /* --set still applies on top of the recorded config; an explicit --config wins and a
     * mismatch is reported, with the hint */
    cli_run(&r, dir, "evaluate", "--checkpoint", "run/best.safetensors", "--data", "ds", "-o", "m2.json",
            "--set", "metrics.dist_slack=0.5", NULL);
    ck_assert_msg(r.status == 0, "evaluate --set: %s", r.err);
    cli_run(&r, dir, "predict", "-c", "quick.cfg", "--checkpoint", "run/best.safetensors", "-i",
            "ds/shard_0000.safetensors", "-o", "q", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "is (16) in the file, (8) in the model");
    ck_assert_has(r.err, "without --config the config recorded in the checkpoint is used");
    cli_run(&r, dir, "evaluate", "--checkpoint", "run/best.safetensors", "--data", "ds", NULL);
    ck_assert_msg(r.status == 0, "evaluate: %s", r.err);
    /* no --config and no --checkpoint: still a usage error */
    cli_run(&r, dir, "evaluate", "--data", "ds", NULL);
    ck_assert_int_eq(r.status, 2);
    /* a checkpoint without a recorded config (e.g. converted from PyTorch) asks for --config */
    bl_safetensors *st, *bare = bl_safetensors_alloc();
    ck_assert_int_eq(bl_safetensors_read(&st, path("run/best.safetensors")), BL_OK);
    for (int i = 0; i < st->n; i++)
        ck_assert_int_eq(bl_safetensors_add(bare, st->tensors[i].name, st->tensors[i].dtype, st->tensors[i].ndim,
                                            st->tensors[i].shape, st->tensors[i].data), BL_OK);
    ck_assert_int_eq(bl_safetensors_write(bare, path("bare.safetensors")), BL_OK);
    bl_safetensors_free(st);
    bl_safetensors_free(bare);
    cli_run(&r, dir, "evaluate", "--checkpoint", "bare.safetensors", "--data", "ds", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "bare.safetensors: the checkpoint records no config");
    ck_assert_has(r.err, "pass --config FILE");

    /* the recorded config repeats the run: the same losses at every step (same thread count) */
    cli_run(&r, dir, "train", "-c", "run/config.cfg", "-o", "again", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "train again: %s", r.err);
    bl_curve *a = read_curve(dir, "run/curve.csv"), *b = read_curve(dir, "again/curve.csv");
    ck_assert_int_eq(a->n, b->n);
    ck_assert_int_ge(a->n, 3);
    for (int64_t i = 0; i < a->n; i++) {
        ck_assert_int_eq(a->points[i].step, b->points[i].step);
        ck_assert(a->points[i].train_loss == b->points[i].train_loss ||
                  (isnan(a->points[i].train_loss) && isnan(b->points[i].train_loss)));
        ck_assert(a->points[i].val_loss == b->points[i].val_loss ||
                  (isnan(a->points[i].val_loss) && isnan(b->points[i].val_loss)));
    }
    bl_curve_free(a);
    bl_curve_free(b);
}
END_TEST

/* Smaller points: images not a multiple of 16 (message, --pad), -o into a missing directory, a
 * FITS without the band HDUs, two factors on one column, did-you-mean. */
START_TEST(test_input_and_output_messages)
{
    cli_run(&r, dir, "generate", "-c", "quick.cfg", "-o", "ds", "--threads", "1", "--fits", NULL);
    ck_assert_msg(r.status == 0, "generate: %s", r.err);
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run", "--threads", "1", "--max-steps", "1", NULL);
    ck_assert_msg(r.status == 0, "train: %s", r.err);
    /* the first batch cropped to 14 x 14 pixels */
    bl_safetensors *st, *crop = bl_safetensors_alloc();
    ck_assert_int_eq(bl_safetensors_read(&st, path("ds/shard_0000.safetensors")), BL_OK);
    const char *names[2] = {"images", "background"};
    for (int k = 0; k < 2; k++) {
        const bl_st_tensor *t = bl_safetensors_find(st, names[k]);
        ck_assert(t && t->dtype == BL_DTYPE_F32 && t->ndim == 4 && t->shape[2] == 16 && t->shape[3] == 16);
        int64_t B = t->shape[0], NB = t->shape[1];
        float *v = malloc((size_t)(B * NB * 14 * 14) * sizeof(float));
        for (int64_t p = 0; p < B * NB; p++)
            for (int i = 0; i < 14; i++)
                for (int j = 0; j < 14; j++) v[(p * 14 + i) * 14 + j] = ((const float *)t->data)[(p * 16 + i) * 16 + j];
        ck_assert_int_eq(bl_safetensors_add(crop, names[k], BL_DTYPE_F32, 4, (int64_t[]){B, NB, 14, 14}, v), BL_OK);
        free(v);
    }
    ck_assert_int_eq(bl_safetensors_write(crop, path("crop.safetensors")), BL_OK);
    bl_safetensors_free(crop);
    bl_safetensors_free(st);
    cli_run(&r, dir, "predict", "--checkpoint", "run/last.safetensors", "-i", "crop.safetensors", "-o", "p", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "crop.safetensors: images of 14 x 14 pixels: the encoder needs sides that are multiples of 16; pass --pad");
    ck_assert(!cli_exists(dir, "p.fits"));
    cli_run(&r, dir, "predict", "--checkpoint", "run/last.safetensors", "-i", "crop.safetensors", "-o", "p", "--pad",
            NULL);
    ck_assert_msg(r.status == 0, "predict --pad: %s", r.err);
    ck_assert_has(r.err, "padded to 16 x 16");
    ck_assert_has(r.out, "(14 x 14 pixels");
    bl_full_catalog *fc;
    ck_assert_int_eq(bl_fits_read_catalog(path("p.fits"), &fc), BL_OK);
    ck_assert_int_eq(fc->height, 14);
    ck_assert_int_eq(fc->width, 14);
    for (int64_t b = 0; b < fc->B; b++)
        for (int64_t m = 0; m < fc->n_sources[b]; m++)
            ck_assert(fc->plocs->data[(b * fc->M + m) * 2] < 14 && fc->plocs->data[(b * fc->M + m) * 2 + 1] < 14);
    bl_full_catalog_free(fc);
    /* -o into a missing directory */
    cli_run(&r, dir, "predict", "--checkpoint", "run/last.safetensors", "-i", "ds/shard_0000.safetensors", "-o",
            "nodir/p", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "nodir/p.fits: cannot write there: the directory nodir does not exist");
    cli_run(&r, dir, "evaluate", "--checkpoint", "run/last.safetensors", "--data", "ds", "-o", "nodir/m.json", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "nodir/m.json: cannot write there: the directory nodir does not exist");
    /* a FITS file without the band HDUs says what it expected */
    bl_full_catalog *empty = bl_full_catalog_alloc(1, 1, 16, 16, 5);
    const char *bands[5] = {"u", "g", "r", "i", "z"};
    ck_assert_int_eq(bl_fits_write(path("nobands.fits"), 5, bands, NULL, 0, empty, NULL, 0), BL_OK);
    bl_full_catalog_free(empty);
    cli_run(&r, dir, "predict", "--checkpoint", "run/last.safetensors", "-i", "nobands.fits", "-o", "p2", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "nobands.fits: expected one image HDU per band with EXTNAME u, g, r, i, z");
    /* two factors on one column */
    cli_write(dir, "two.cfg", "@include \"quick.cfg\"\nextend = {\n"
                              "  factors = ( { name = \"z2\"; kind = \"normal\"; field = \"redshifts\"; } );\n};\n");
    cli_run(&r, dir, "factors", "-c", "two.cfg", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "two.cfg:3: factors 'redshift' and 'z2' both explain redshifts[0]");
}
END_TEST

static Suite *cli_e2e_suite(void)


{
    Suite *s = suite_create("cli_e2e");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_generate_train_evaluate_predict);
    tcase_add_test(tc, test_interrupt_and_resume);
    tcase_add_test(tc, test_run_records_itself);
    tcase_add_test(tc, test_input_and_output_messages);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* predict's q columns (on_prob, <factor>_loc, ...) are catalog fields: register those of
     * quick.cfg's factors (the SDSS ones and redshift) to read its FITS tables */
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    if (bl_vardist_spec_add(spec, &(bl_factor){.name = "redshift", .kind = bl_dist_normal, .field = "redshifts",
                                               .mask = BL_MASK_ON}) != BL_OK ||
        bl_vardist_q_register(spec) != BL_OK) {
        fprintf(stderr, "%s\n", bl_error_message());
        return 1;
    }
    bl_vardist_spec_free(spec);
    return bl_check_run(cli_e2e_suite());
}
