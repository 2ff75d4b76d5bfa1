/* The bliss CLI: usage errors and config errors, each rejected with a clear message naming the
 * file and the line. Runs the real binary (cli_run.h) on small configs written here. */
#include "cli_run.h"

static char dir[256];
static cli_result r;

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/bl_test_cli_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* a config of its own (no simulator keys) that the factors command accepts */
    cli_write(dir, "ok.cfg",
              "encoder: {\n"
              "  tile_slen = 4;\n"
              "};\n"
              "train: {\n"
              "  batch_size = 8;\n"
              "  optimizer: { lr = 1e-3; };\n"
              "};\n");
}

static void teardown(void) { cli_rmtree(dir); }

static const char *path(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

START_TEST(test_usage)
{
    cli_run(&r, NULL, NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_has(r.err, "usage: bliss COMMAND");
    cli_run(&r, NULL, "--help", NULL);
    ck_assert_int_eq(r.status, 0);
    for (const char *const *c = (const char *const[]){"generate", "train", "evaluate", "predict", "factors", NULL}; *c; c++) {
        ck_assert_has(r.out, *c);
        cli_run(&r, NULL, *c, "--help", NULL);
        ck_assert_int_eq(r.status, 0);
        ck_assert_has(r.out, "usage: bliss ");
        ck_assert_has(r.out, "--config FILE");
        ck_assert_has(r.out, "--set KEY=VALUE");
        ck_assert_has(r.out, "--threads N");
        ck_assert_has(r.out, "--seed N");
        cli_run(&r, NULL, "--help", NULL); /* restore the command list for the next check */
    }
    cli_run(&r, NULL, "fly", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_has(r.err, "unknown command 'fly'");
    cli_run(&r, NULL, "factors", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_has(r.err, "--config FILE is required");
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--bogus", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_has(r.err, "unknown option '--bogus'");
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--threads", "zero", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_has(r.err, "--threads 'zero'");
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--resume", "x", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_has(r.err, "does not apply");
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--set", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_has(r.err, "needs a value");
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "stray", NULL);
    ck_assert_int_eq(r.status, 2);
}
END_TEST

START_TEST(test_factors_table)
{
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "stderr: %s", r.err);
    /* the SDSS base spec: 28 factors, P = 38 (spec §3.1) */
    ck_assert_has(r.out, "galaxy_flux_z");
    ck_assert_has(r.out, "total P = 38");
    ck_assert_has(r.out, "13865740 trainable parameters"); /* spec §4.6 */
    /* one config entry adds the redshift factor: P = 40 */
    cli_write(dir, "z.cfg",
              "@include \"ok.cfg\"\n"
              "factors = ( { name = \"redshift\"; kind = \"normal\"; field = \"redshifts\"; } );\n");
    cli_run(&r, NULL, "factors", "-c", path("z.cfg"), NULL);
    ck_assert_msg(r.status == 0, "stderr: %s", r.err);
    ck_assert_has(r.out, "redshift ");
    ck_assert_has(r.out, "38-39");
    ck_assert_has(r.out, "total P = 40");
    ck_assert_has(r.out, "13866768 trainable parameters");
}
END_TEST

START_TEST(test_unknown_key)
{
    cli_write(dir, "typo.cfg",
              "encoder: { tile_slen = 4; };\n"
              "train: {\n"
              "  batch_size = 8;\n"
              "  lrr = 0.1;\n"
              "};\n");
    cli_run(&r, NULL, "factors", "-c", path("typo.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "typo.cfg:4: unknown key 'train.lrr'");
    /* in an included file: that file and its line */
    cli_write(dir, "inc.cfg", "@include \"typo.cfg\"\n");
    cli_run(&r, NULL, "factors", "-c", path("inc.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "typo.cfg:4: unknown key 'train.lrr'");
    /* a whole unknown group */
    cli_write(dir, "grp.cfg", "encoder: { tile_slen = 4; };\n\ntrainer: { epochs = 3; };\n");
    cli_run(&r, NULL, "factors", "-c", path("grp.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "grp.cfg:3: unknown key 'trainer.epochs'");
    /* an unknown key in a factor entry */
    cli_write(dir, "fac.cfg", "factors = (\n  { name = \"z\"; kind = \"normal\"; field = \"redshifts\"; colum = 0; }\n);\n");
    cli_run(&r, NULL, "factors", "-c", path("fac.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "fac.cfg:2");
    ck_assert_has(r.err, "colum");
}
END_TEST

START_TEST(test_wrong_type)
{
    cli_write(dir, "type.cfg", "train: {\n  batch_size = \"big\";\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("type.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "type.cfg:2: key 'train.batch_size' must be an integer");
    cli_write(dir, "type2.cfg", "encoder: {\n  use_checkerboard = 1;\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("type2.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "type2.cfg:2: key 'encoder.use_checkerboard' must be true or false");
    /* from the command line */
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--set", "train.batch_size=big", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "train.batch_size=big: expected an integer");
}
END_TEST

START_TEST(test_missing_include_and_syntax)
{
    cli_write(dir, "noinc.cfg", "encoder: { tile_slen = 4; };\n@include \"nope.cfg\"\n");
    cli_run(&r, NULL, "factors", "-c", path("noinc.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "noinc.cfg:2");
    ck_assert_has(r.err, "include");
    cli_write(dir, "syntax.cfg", "encoder: {\n  tile_slen = 4;\n  tiles_to_crop = = 1;\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("syntax.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "syntax.cfg:3");
    cli_run(&r, NULL, "factors", "-c", path("absent.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "absent.cfg: cannot open");
}
END_TEST

START_TEST(test_out_of_range)
{
    cli_write(dir, "range.cfg", "train: {\n  batch_size = 8;\n  optimizer: {\n    lr = -0.5;\n  };\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("range.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "range.cfg:4: key 'train.optimizer.lr' = -0.5 is out of range");
    cli_write(dir, "range2.cfg", "metrics: {\n  mag_band = 7;\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("range2.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "range2.cfg:2: key 'metrics.mag_band' = 7 is out of range");
    cli_write(dir, "range3.cfg", "encoder: {\n  tile_slen = 3;\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("range3.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "range3.cfg:2: key 'encoder.tile_slen' = 3");
    cli_write(dir, "range4.cfg", "train: {\n  scheduler: {\n    milestones = [10, 5];\n  };\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("range4.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "range4.cfg:3: key 'train.scheduler.milestones'");
}
END_TEST

START_TEST(test_overrides_and_set)
{
    /* overrides change included values; a value out of range is reported as such */
    cli_write(dir, "ov.cfg",
              "@include \"ok.cfg\"\n"
              "overrides = (\n"
              "  \"train.batch_size = 4\",\n"
              "  \"train.optimizer.lr = 1e-4\"\n"
              ");\n");
    cli_run(&r, NULL, "factors", "-c", path("ov.cfg"), NULL);
    ck_assert_msg(r.status == 0, "stderr: %s", r.err);
    cli_write(dir, "ov_bad.cfg",
              "@include \"ok.cfg\"\n"
              "overrides = (\n"
              "  \"train.batch_size = 4\",\n"
              "  \"train.nosuch.lr = 1e-4\" );\n");
    cli_run(&r, NULL, "factors", "-c", path("ov_bad.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "ov_bad.cfg:4: override \"train.nosuch.lr=1e-4\"");
    cli_write(dir, "ov_type.cfg", "@include \"ok.cfg\"\noverrides = ( \"train.batch_size = 1.5\" );\n");
    cli_run(&r, NULL, "factors", "-c", path("ov_type.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "ov_type.cfg:2: override");
    ck_assert_has(r.err, "expected an integer");
    cli_write(dir, "ov_str.cfg", "@include \"ok.cfg\"\noverrides = ( 3 );\n");
    cli_run(&r, NULL, "factors", "-c", path("ov_str.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "ov_str.cfg:2");
    /* --set: a new key in an existing group is still checked as unknown */
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--set", "train.lrr=0.1", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "unknown key 'train.lrr'");
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--set", "train.batch_size=0", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "'train.batch_size' = 0 is out of range");
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--set", "encoder.tile_slen=2", "--seed", "7", NULL);
    ck_assert_msg(r.status == 0, "stderr: %s", r.err);
    ck_assert_has(r.out, "tile_slen 2");
}
END_TEST

static Suite *cli_config_suite(void)
{
    Suite *s = suite_create("cli_config");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_usage);
    tcase_add_test(tc, test_factors_table);
    tcase_add_test(tc, test_unknown_key);
    tcase_add_test(tc, test_wrong_type);
    tcase_add_test(tc, test_missing_include_and_syntax);
    tcase_add_test(tc, test_out_of_range);
    tcase_add_test(tc, test_overrides_and_set);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cli_config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
