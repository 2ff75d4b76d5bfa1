/* The bliss CLI against damaged inputs and extreme settings: each case exits 1 with a message
 * naming the file or key (it once crashed, read out of bounds or ran with a wrong setting). */
#include <math.h>

#include "lib/io/fits.h"
#include "lib/io/safetensors.h"
#include "tests/bl_check.h"

#include "cli_run.h"

static char dir[256];
static cli_result r;

static const char *p(const char *name) { return cli_path(dir, name); }

static void setup(void)
{
    bl_check_tmpdir(dir, sizeof dir, "bl_test_cli_harden");
    cli_link_configs(dir);
}

static void teardown(void) { cli_rmtree(dir); }

/* a one-step run of configs/quick.cfg: run/last.safetensors */
static void train_one_step(void)
{
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run", "--threads", "1", "--max-steps", "1", NULL);
    ck_assert_msg(r.status == 0, "train: %s", r.err);
}

START_TEST(test_empty_output_dir)
{
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "the output directory is an empty string");
    cli_run(&r, dir, "generate", "-c", "quick.cfg", "-o", "", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "the output directory is an empty string");
}
END_TEST

START_TEST(test_predict_empty_fits)
{
    train_one_step();
    /* 0 x 0 images in the five bands of the config, no BKG_ HDUs */
    const char *bands[] = {"u", "g", "r", "i", "z"};
    bl_tensor *im = bl_tensor_alloc("images", 4, BL_SHAPE(1, 5, 0, 0), 0);
    ck_assert_int_eq(bl_fits_write_batch(p("empty.fits"), im, NULL, bands, "nmgy", NULL), BL_OK);
    bl_tensor_free(im);
    cli_run(&r, dir, "predict", "-c", "quick.cfg", "--checkpoint", "run/last.safetensors", "-i",
            "empty.fits", "-o", "pred", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "empty.fits: images have shape [1, 5, 0, 0]: nothing to predict");
    /* a directory as the checkpoint */
    cli_run(&r, dir, "predict", "-c", "quick.cfg", "--checkpoint", "run", "-i", "empty.fits", "-o",
            "pred", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "run: not a regular file");
}
END_TEST

START_TEST(test_resume_metadata)
{
    train_one_step();
    static const char *keys[] = {"train.step", "train.epoch", "train.best_epoch", "train.bad_epochs"};
    static const char *values[] = {"nan", "1e300", "-1", "0.5"};
    for (int i = 0; i < 4; i++) {
        bl_safetensors *st;
        ck_assert_int_eq(bl_safetensors_read(&st, p("run/last.safetensors")), BL_OK);
        bl_safetensors_set_meta(st, keys[i], values[i]);
        ck_assert_int_eq(bl_safetensors_write(st, p("bad.safetensors")), BL_OK);
        bl_safetensors_free(st);
        cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run2", "--resume", "bad.safetensors", NULL);
        ck_assert_int_eq(r.status, 1);
        char want[128];
        snprintf(want, sizeof want, "bad.safetensors: metadata '%s' = ", keys[i]);
        ck_assert_has(r.err, want);
        ck_assert_has(r.err, "is not a whole number in [0, 2^53]");
    }
}
END_TEST

START_TEST(test_large_settings)
{
    /* beyond int32 in --set: the value itself reaches the range check (not 0) */
    cli_run(&r, dir, "factors", "-c", "quick.cfg", "--set", "prior.n_tiles_h=4294967297", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "key 'prior.n_tiles_h' = 4.29497e+09 is impossible");
    cli_write(dir, "ov.cfg", "@include \"quick.cfg\"\noverrides = ( \"prior.n_tiles_w = 4294967296\" );\n");
    cli_run(&r, dir, "factors", "-c", "ov.cfg", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "key 'prior.n_tiles_w' = 4.29497e+09 is impossible");
    cli_run(&r, dir, "factors", "-c", "quick.cfg", "--seed", "4294967296", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    /* a milestone beyond int is refused, not wrapped to a negative epoch */
    cli_write(dir, "ms.cfg", "@include \"sim_default.cfg\"\ntrain: { scheduler: { milestones = [3e9]; }; };\n");
    cli_run(&r, dir, "factors", "-c", "ms.cfg", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "key 'train.scheduler.milestones': entry 0 = 3e+09");
}
END_TEST

/* Settings beyond what can run: a width that builds an empty layer, a batch that cannot fit */
START_TEST(test_resources)
{
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run", "--set", "encoder.arch.catalog_width=1", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "key 'encoder.arch.catalog_width' = 1 is out of range [2, 4096]");
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run", "--set", "prior.batch_size=1000000000", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "GiB for batch 1000000000 at 16x16");
    ck_assert_has(r.err, "reduce prior.batch_size");
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run", "--set", "prior.n_tiles_h=1000000",
            "--set", "prior.n_tiles_w=1000000", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "at 4000000x4000000");
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run", "--set", "encoder.arch.num_features=4096",
            "--set", "encoder.arch.catalog_width=4096", "--set", "prior.batch_size=100000", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "GiB for batch 100000");
    /* commands that do not run the network on such batches are not refused by the estimate */
    cli_run(&r, dir, "factors", "-c", "quick.cfg", "--set", "prior.batch_size=1000000000", NULL);
    ck_assert_msg(r.status == 0, "%s", r.err);
    ck_assert(!cli_exists(dir, "run/last.safetensors"));
}
END_TEST

/* A network fed one of the survey's five bands (BLISS's test_encode_with_psf): the catalog keeps
 * the five flux bands, the input has one */
START_TEST(test_band_subset)
{
    cli_write(dir, "band2.cfg",
              "@include \"sim_default.cfg\"\n"
              "encoder: {\n"
              "  image_normalizer: { bands = [2]; };\n"
              "  arch: { features_width = 8; num_features = 16; catalog_width = 16; context_width = 8; };\n"
              "};\n"
              "train: { steps_per_epoch = 2; max_epochs = 1; val_batches = 1; print_every = 1; };\n"
              "overrides = ( \"prior.batch_size = 2\", \"prior.n_tiles_h = 4\", \"prior.n_tiles_w = 4\" );\n");
    cli_run(&r, dir, "train", "-c", "band2.cfg", "-o", "run", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "train: %s", r.err);
    bl_safetensors *st;
    ck_assert_int_eq(bl_safetensors_read(&st, p("run/last.safetensors")), BL_OK);
    const bl_st_tensor *w = bl_safetensors_find(st, "features_net.preprocess3d.0.weight");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(w->shape[1], 1); /* one input band */
    bl_safetensors_free(st);
    cli_run(&r, dir, "evaluate", "-c", "band2.cfg", "--checkpoint", "run/last.safetensors", "--batches",
            "1", "-o", "m.json", NULL);
    ck_assert_msg(r.status == 0, "evaluate: %s", r.err);
}
END_TEST

static Suite *cli_harden_suite(void)
{
    Suite *s = suite_create("cli_harden");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_empty_output_dir);
    tcase_add_test(tc, test_predict_empty_fits);
    tcase_add_test(tc, test_resume_metadata);
    tcase_add_test(tc, test_large_settings);
    tcase_add_test(tc, test_resources);
    tcase_add_test(tc, test_band_subset);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(cli_harden_suite()); }
