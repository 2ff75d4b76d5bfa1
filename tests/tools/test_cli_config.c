/* The bliss CLI: usage errors and config errors, each rejected with a clear message naming the
 * file and the line. Runs the real binary (cli_run.h) on small configs written here. */
#include "cli_run.h"
#include "tests/bl_check.h"

static char dir[256];
static cli_result r;

static void setup(void)
{
    bl_check_tmpdir(dir, sizeof dir, "bl_test_cli");
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

/* Config errors and accepted overrides, one row per `bliss factors` run: the config written as
 * `file` (text NULL: no file written), extra arguments, the exit status and what stderr must
 * contain. Rows run in order (tcase_add_loop_test), so a row may include an earlier row's file. */
typedef struct cli_case {
    const char *file, *text;
    const char *args[8];
    int status;
    const char *msgs[2];
} cli_case;

#define SIM "@include \"sim_default.cfg\"\n"
static const cli_case cases[] = {
    /* unknown keys: the file and line of the key */
    {"typo.cfg", SIM "train: {\n  steps_per_epoch = 8;\n  lrr = 0.1;\n};\n", {0}, 1,
     {"typo.cfg:4: unknown key 'train.lrr'"}},
    /* in an included file: that file and its line */
    {"inc.cfg", "@include \"typo.cfg\"\n", {0}, 1, {"typo.cfg:4: unknown key 'train.lrr'"}},
    /* a whole unknown group */
    {"grp.cfg", SIM "\ntrainer: { epochs = 3; };\n", {0}, 1,
     {"grp.cfg:3: unknown key 'trainer.epochs'"}},
    /* an unknown key in a factor entry */
    {"fac.cfg", SIM "factors = (\n  { name = \"z\"; kind = \"normal\"; field = \"redshifts\"; colum = 0; }\n);\n",
     {0}, 1, {"fac.cfg:3", "colum"}},
    /* wrong types */
    {"type.cfg", SIM "train: {\n  steps_per_epoch = \"many\";\n};\n", {0}, 1,
     {"type.cfg:3: key 'train.steps_per_epoch' must be an integer"}},
    {"type2.cfg", SIM "encoder: {\n  use_checkerboard = 1;\n};\n", {0}, 1,
     {"type2.cfg:3: key 'encoder.use_checkerboard' must be true or false"}},
    {"ok.cfg", NULL, {"--set", "prior.batch_size=big"}, 1,
     {"prior.batch_size=big: expected an integer"}},
    /* missing include, syntax error, missing file */
    {"noinc.cfg", "encoder: { tiles_to_crop = 1; };\n@include \"nope.cfg\"\n", {0}, 1,
     {"noinc.cfg:2", "include"}},
    {"syntax.cfg", "encoder: {\n  double_detect = false;\n  tiles_to_crop = = 1;\n};\n", {0}, 1,
     {"syntax.cfg:3"}},
    {"absent.cfg", NULL, {0}, 1, {"absent.cfg: cannot open"}},
    /* values out of range */
    {"range.cfg", SIM "train: {\n  steps_per_epoch = 8;\n  optimizer: {\n    lr = -0.5;\n  };\n};\n",
     {0}, 1, {"range.cfg:5: key 'train.optimizer.lr' = -0.5 is out of range"}},
    {"range2.cfg", SIM "metrics: {\n  mag_band = 7;\n};\n", {0}, 1,
     {"range2.cfg:3: key 'metrics.mag_band' = 7 is out of range"}},
    /* a value of the included simulator config, changed by an override */
    {"range3.cfg", SIM "overrides = ( \"prior.tile_slen = 3\" );\n", {0}, 1,
     {"key 'prior.tile_slen' = 3"}},
    {"range4.cfg", SIM "train: {\n  scheduler: {\n    milestones = [10, 5];\n  };\n};\n", {0}, 1,
     {"range4.cfg:4: key 'train.scheduler.milestones'"}},
    /* the simulator's own checks name the key too */
    {"range5.cfg", SIM "overrides = ( \"prior.prob_galaxy = 1.5\" );\n", {0}, 1, {"prob_galaxy"}},
    /* overrides change included values */
    {"ov.cfg", "@include \"ok.cfg\"\noverrides = (\n  \"prior.batch_size = 4\",\n  \"train.optimizer.lr = 1e-4\"\n);\n",
     {0}, 0, {0}},
    {"ov_bad.cfg", "@include \"ok.cfg\"\noverrides = (\n  \"prior.batch_size = 4\",\n  \"train.nosuch.lr = 1e-4\" );\n",
     {0}, 1, {"ov_bad.cfg:4: override \"train.nosuch.lr=1e-4\""}},
    {"ov_type.cfg", "@include \"ok.cfg\"\noverrides = ( \"prior.batch_size = 1.5\" );\n", {0}, 1,
     {"ov_type.cfg:2: override", "expected an integer"}},
    {"ov_str.cfg", "@include \"ok.cfg\"\noverrides = ( 3 );\n", {0}, 1, {"ov_str.cfg:2"}},
    /* --set: a new key in an existing group is still checked as unknown */
    {"ok.cfg", NULL, {"--set", "train.lrr=0.1"}, 1, {"unknown key 'train.lrr'"}},
    {"ok.cfg", NULL, {"--set", "train.steps_per_epoch=0"}, 1,
     {"'train.steps_per_epoch' = 0 is out of range"}},
    /* 80 x 80 images in 2-pixel tiles: 40 x 40 tiles */
    {"ok.cfg", NULL,
     {"--set", "prior.tile_slen=2", "--set", "prior.n_tiles_h=40", "--set", "prior.n_tiles_w=40",
      "--seed", "7"},
     0, {0}},
    /* overrides lists of several files apply in file order: the including file wins */
    {"ov2.cfg", "@include \"ov.cfg\"\noverrides_more = ( \"prior.tile_slen = 2\", \"prior.n_tiles_h = 40\", \"prior.n_tiles_w = 40\" );\n",
     {0}, 0, {0}},
    {"ov3.cfg", "@include \"ov.cfg\"\noverrides = ( \"prior.tile_slen = 2\" );\n", {0}, 1,
     {"ov3.cfg:2: duplicate setting name"}},
    /* new catalog fields (the top-level `fields` list): each mistake names file:line and key */
    {"fld_ok.cfg", SIM "fields = (\n  { name = \"photo_z_err\"; width = 2; sampler = \"gamma\"; alpha = 2.0; beta = 4.0; } );\n"
     "factors = (\n  { name = \"pz\"; kind = \"lognormal\"; field = \"photo_z_err\"; column = 1; } );\n",
     {0}, 0, {0}},
    {"fld_kind.cfg", SIM "fields = (\n  { name = \"photo_z_err\";\n    sampler = \"beta\"; a = 1.0; } );\n", {0}, 1,
     {"fld_kind.cfg:4: key 'fields.[0].sampler': unknown sampler 'beta' (known: uniform, gamma"}},
    {"fld_width.cfg", SIM "fields = (\n  { name = \"photo_z_err\";\n    width = 0; sampler = \"uniform\"; min = 0.0; max = 1.0; } );\n",
     {0}, 1, {"fld_width.cfg:4: key 'fields.[0].width' = 0 is out of range"}},
    {"fld_width2.cfg", SIM "fields = (\n  { name = \"photo_z_err\"; width = \"one\"; sampler = \"uniform\"; min = 0.0; max = 1.0; } );\n",
     {0}, 1, {"fld_width2.cfg:3: key 'fields.[0].width' must be an integer"}},
    {"fld_dup.cfg", SIM "fields = (\n  { name = \"pz\"; sampler = \"uniform\"; min = 0.0; max = 1.0; },\n"
     "  { name = \"pz\"; sampler = \"uniform\"; min = 0.0; max = 2.0; } );\n", {0}, 1,
     {"fld_dup.cfg:4: key 'fields.[1].name': field 'pz' is already defined by fields.[0] (", "fld_dup.cfg:3)"}},
    {"fld_builtin.cfg", SIM "fields = (\n  { name = \"redshifts\"; sampler = \"uniform\"; min = 0.0; max = 1.0; } );\n",
     {0}, 1, {"fld_builtin.cfg:3: key 'fields.[0].name': 'redshifts' is a built-in catalog field"}},
    {"fld_typo.cfg", SIM "fields = (\n  { name = \"pz\"; sampler = \"uniform\"; min = 0.0; max = 1.0;\n    widht = 2; } );\n",
     {0}, 1, {"fld_typo.cfg:4: unknown key 'fields.[0].widht'"}},
    {"fld_param.cfg", SIM "fields = (\n  { name = \"pz\"; sampler = \"uniform\"; min = 0.0; } );\n", {0}, 1,
     {"fld_param.cfg:3: key 'fields.[0]': sampler 'uniform' needs the parameter 'max'"}},
    {"fld_range.cfg", SIM "fields = (\n  { name = \"pz\"; sampler = \"uniform\"; min = 1.0; max = 1.0; } );\n", {0}, 1,
     {"fld_range.cfg:3", "max = 1 must be greater than min = 1"}},
    /* a factor on a field nobody defined: the message says how to define it */
    {"fld_none.cfg", SIM "factors = (\n  { name = \"pz\"; kind = \"normal\"; field = \"photo_z\"; } );\n", {0}, 1,
     {"fld_none.cfg:3", "unknown catalog field 'photo_z'"}},
};
#undef SIM
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* Row _i, after the files of rows 0 .. _i - 1 (a row may include them). */
START_TEST(test_config_case)
{
    for (int k = 0; k <= _i; k++)
        if (cases[k].text) cli_write(dir, cases[k].file, cases[k].text);
    const cli_case *c = &cases[_i];
    const char *argv[16] = {"factors", "-c", path(c->file)};
    int n = 3;
    for (int k = 0; k < 8 && c->args[k]; k++) argv[n++] = c->args[k];
    argv[n] = NULL;
    cli_runv(&r, NULL, argv);
    ck_assert_msg(r.status == c->status, "row %d (%s): exit %d, expected %d; stderr: %s", _i, c->file,
                  r.status, c->status, r.err);
    for (int k = 0; k < 2 && c->msgs[k]; k++) ck_assert_has(r.err, c->msgs[k]);
    if (c->status == 0 && c->args[0] && !strcmp(c->args[1], "prior.tile_slen=2"))
        ck_assert_has(r.out, "tile_slen 2");
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
    tcase_add_loop_test(tc, test_config_case, 0, N_CASES);
    tcase_add_test(tc, test_include_from_elsewhere_and_extend);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(cli_config_suite()); }
