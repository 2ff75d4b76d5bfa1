/* The bliss CLI: usage errors and config errors, each rejected with a clear message naming the
 * file and the line. Runs the real binary (cli_run.h) on small configs written here. */
#include "cli_run.h"
#include "tests/bl_check.h"

static char dir[256];
static cli_result r;

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/bl_test_cli_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    /* the simulator's defaults beside the test configs (@include paths are relative to the
     * top-level file's directory), and a small config of our own on top */
    cli_link_configs(dir);
    cli_write(dir, "ok.cfg",
              "@include \"sim_default.cfg\"\n"
              "encoder: {\n"
              "  tiles_to_crop = 1;\n"
              "};\n"
              "train: {\n"
              "  steps_per_epoch = 8;\n"
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
    /* the SDSS base spec: 28 factors, P = 38 (docs/behaviour.md §3.1) */
    ck_assert_has(r.out, "galaxy_flux_z");
    ck_assert_has(r.out, "total P = 38");
    ck_assert_has(r.out, "13865740 trainable parameters"); /* docs/behaviour.md §4.6 */
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
              "@include \"sim_default.cfg\"\n"
              "train: {\n"
              "  steps_per_epoch = 8;\n"
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
    cli_write(dir, "grp.cfg", "@include \"sim_default.cfg\"\n\ntrainer: { epochs = 3; };\n");
    cli_run(&r, NULL, "factors", "-c", path("grp.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "grp.cfg:3: unknown key 'trainer.epochs'");
    /* an unknown key in a factor entry */
    cli_write(dir, "fac.cfg", "@include \"sim_default.cfg\"\nfactors = (\n  { name = \"z\"; kind = \"normal\"; field = \"redshifts\"; colum = 0; }\n);\n");
    cli_run(&r, NULL, "factors", "-c", path("fac.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "fac.cfg:3");
    ck_assert_has(r.err, "colum");
}
END_TEST

START_TEST(test_wrong_type)
{
    cli_write(dir, "type.cfg", "@include \"sim_default.cfg\"\ntrain: {\n  steps_per_epoch = \"many\";\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("type.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "type.cfg:3: key 'train.steps_per_epoch' must be an integer");
    cli_write(dir, "type2.cfg", "@include \"sim_default.cfg\"\nencoder: {\n  use_checkerboard = 1;\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("type2.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "type2.cfg:3: key 'encoder.use_checkerboard' must be true or false");
    /* from the command line */
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--set", "prior.batch_size=big", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "prior.batch_size=big: expected an integer");
}
END_TEST

START_TEST(test_missing_include_and_syntax)
{
    cli_write(dir, "noinc.cfg", "encoder: { tiles_to_crop = 1; };\n@include \"nope.cfg\"\n");
    cli_run(&r, NULL, "factors", "-c", path("noinc.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "noinc.cfg:2");
    ck_assert_has(r.err, "include");
    cli_write(dir, "syntax.cfg", "encoder: {\n  double_detect = false;\n  tiles_to_crop = = 1;\n};\n");
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
    cli_write(dir, "range.cfg", "@include \"sim_default.cfg\"\ntrain: {\n  steps_per_epoch = 8;\n  optimizer: {\n    lr = -0.5;\n  };\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("range.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "range.cfg:5: key 'train.optimizer.lr' = -0.5 is out of range");
    cli_write(dir, "range2.cfg", "@include \"sim_default.cfg\"\nmetrics: {\n  mag_band = 7;\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("range2.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "range2.cfg:3: key 'metrics.mag_band' = 7 is out of range");
    /* a value of the included simulator config, changed by an override */
    cli_write(dir, "range3.cfg", "@include \"sim_default.cfg\"\noverrides = ( \"prior.tile_slen = 3\" );\n");
    cli_run(&r, NULL, "factors", "-c", path("range3.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "key 'prior.tile_slen' = 3");
    cli_write(dir, "range4.cfg", "@include \"sim_default.cfg\"\ntrain: {\n  scheduler: {\n    milestones = [10, 5];\n  };\n};\n");
    cli_run(&r, NULL, "factors", "-c", path("range4.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "range4.cfg:4: key 'train.scheduler.milestones'");
    /* the simulator's own checks name the key too */
    cli_write(dir, "range5.cfg", "@include \"sim_default.cfg\"\noverrides = ( \"prior.prob_galaxy = 1.5\" );\n");
    cli_run(&r, NULL, "factors", "-c", path("range5.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "prob_galaxy");
}
END_TEST

START_TEST(test_overrides_and_set)
{
    /* overrides change included values; a value out of range is reported as such */
    cli_write(dir, "ov.cfg",
              "@include \"ok.cfg\"\n"
              "overrides = (\n"
              "  \"prior.batch_size = 4\",\n"
              "  \"train.optimizer.lr = 1e-4\"\n"
              ");\n");
    cli_run(&r, NULL, "factors", "-c", path("ov.cfg"), NULL);
    ck_assert_msg(r.status == 0, "stderr: %s", r.err);
    cli_write(dir, "ov_bad.cfg",
              "@include \"ok.cfg\"\n"
              "overrides = (\n"
              "  \"prior.batch_size = 4\",\n"
              "  \"train.nosuch.lr = 1e-4\" );\n");
    cli_run(&r, NULL, "factors", "-c", path("ov_bad.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "ov_bad.cfg:4: override \"train.nosuch.lr=1e-4\"");
    cli_write(dir, "ov_type.cfg", "@include \"ok.cfg\"\noverrides = ( \"prior.batch_size = 1.5\" );\n");
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
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--set", "train.steps_per_epoch=0", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "'train.steps_per_epoch' = 0 is out of range");
    /* 80 x 80 images in 2-pixel tiles: 40 x 40 tiles */
    cli_run(&r, NULL, "factors", "-c", path("ok.cfg"), "--set", "prior.tile_slen=2", "--set",
            "prior.n_tiles_h=40", "--set", "prior.n_tiles_w=40", "--seed", "7", NULL);
    ck_assert_msg(r.status == 0, "stderr: %s", r.err);
    ck_assert_has(r.out, "tile_slen 2");
    /* overrides lists of several files apply in file order: the including file wins */
    cli_write(dir, "ov2.cfg", "@include \"ov.cfg\"\noverrides_more = ( \"prior.tile_slen = 2\", \"prior.n_tiles_h = 40\", \"prior.n_tiles_w = 40\" );\n");
    cli_run(&r, NULL, "factors", "-c", path("ov2.cfg"), NULL);
    ck_assert_msg(r.status == 0, "stderr: %s", r.err);
    ck_assert_has(r.out, "tile_slen 2");
    cli_write(dir, "ov3.cfg", "@include \"ov.cfg\"\noverrides = ( \"prior.tile_slen = 2\" );\n");
    cli_run(&r, NULL, "factors", "-c", path("ov3.cfg"), NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "ov3.cfg:2: duplicate setting name");
}
END_TEST

/* A user's config outside the repository includes a shipped one by name (the search path has
 * the project's configs/), extends its lists and changes list elements with --set; include
 * errors are reported with file:line and exit status 1, never from inside libconfig. */
START_TEST(test_include_from_elsewhere_and_extend)
{
    char elsewhere[512];
    snprintf(elsewhere, sizeof elsewhere, "%s/elsewhere", dir);
    ck_assert_int_eq(mkdir(elsewhere, 0777), 0);
    cli_write(elsewhere, "mine.cfg",
              "@include \"quick.cfg\"\n"
              "extend_mine = {\n"
              "  factors = ( { name = \"flux_r\"; kind = \"lognormal\"; field = \"fluxes\"; column = 2; } );\n"
              "  train = { optimizer = { lr = 0.5; }; };\n"
              "};\n");
    char mine[600];
    snprintf(mine, sizeof mine, "%s/mine.cfg", elsewhere);
    cli_run(&r, NULL, "factors", "-c", mine, "--set", "factors[0].mask=always", NULL);
    ck_assert_msg(r.status == 0, "stderr: %s", r.err);
    /* redshift (from redshift.cfg) with its mask changed, then the appended factor: P 40 -> 42 */
    ck_assert_has(r.out, "redshift             normal                  2  38-39    redshifts[0]       always");
    ck_assert_has(r.out, "flux_r               lognormal               2  40-41    fluxes[2]          on");
    ck_assert_has(r.out, "total P = 42");
    /* an unknown key brought in by extend is dated in mine.cfg, with a suggestion */
    cli_write(elsewhere, "typo.cfg", "@include \"quick.cfg\"\nextend = {\n  train = { optimiser = { lr = 0.5; }; };\n};\n");
    snprintf(mine, sizeof mine, "%s/typo.cfg", elsewhere);
    cli_run(&r, NULL, "factors", "-c", mine, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "typo.cfg:3: unknown key 'train.optimiser.lr' (did you mean 'train.optimizer.lr'?)");
    /* include errors */
    cli_write(elsewhere, "empty.cfg", "# nothing\n@include \"\"\n");
    snprintf(mine, sizeof mine, "%s/empty.cfg", elsewhere);
    cli_run(&r, NULL, "factors", "-c", mine, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "empty.cfg:2: @include \"\": empty file name");
    ck_assert(strstr(r.err, "flex") == NULL);
    cli_write(elsewhere, "isdir.cfg", "@include \"..\"\n");
    snprintf(mine, sizeof mine, "%s/isdir.cfg", elsewhere);
    cli_run(&r, NULL, "factors", "-c", mine, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "isdir.cfg:1: @include \"..\":");
    ck_assert_has(r.err, "is a directory");
    cli_run(&r, NULL, "factors", "-c", elsewhere, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "is a directory");
    cli_write(elsewhere, "quote.cfg", "\"\"");
    snprintf(mine, sizeof mine, "%s/quote.cfg", elsewhere);
    cli_run(&r, NULL, "factors", "-c", mine, NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "quote.cfg:1: syntax error");
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
    tcase_add_test(tc, test_include_from_elsewhere_and_extend);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(cli_config_suite()); }
