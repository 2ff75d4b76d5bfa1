/* lib core: tensors, arena, RNG streams, errors, config. */
#include <check.h>
#include <gsl/gsl_errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/arena.h"
#include "lib/config.h"
#include "lib/registry.h"
#include "lib/rng.h"
#include "lib/tensor.h"
#include "tests/bl_check.h"

START_TEST(test_tensor_shape_and_offset)
{
    bl_tensor *t = bl_tensor_alloc("w", 4, BL_SHAPE(2, 3, 4, 5), 1);
    ck_assert_int_eq(t->numel, 120);
    ck_assert_int_eq(t->ndim, 4);
    ck_assert_int_eq(t->shape[4], 1);
    ck_assert_str_eq(t->name, "w");
    ck_assert_ptr_nonnull(t->grad);
    /* row-major: ((1*3 + 2)*4 + 3)*5 + 4 = 119 */
    ck_assert_int_eq(bl_tensor_offset(t, 4, BL_SHAPE(1, 2, 3, 4)), 119);
    ck_assert_int_eq(bl_tensor_offset(t, 2, BL_SHAPE(1, 1)), (1 * 3 + 1) * 20);
    for (int64_t i = 0; i < t->numel; i++) ck_assert(t->data[i] == 0 && t->grad[i] == 0);
    char s[96];
    ck_assert_str_eq(bl_shape_str(t, s, sizeof s), "(2, 3, 4, 5)");
    bl_tensor_fill(t, 2.5f);
    ck_assert(t->data[77] == 2.5f);
    ck_assert(bl_tensor_all_finite(t));
    t->data[3] = NAN;
    ck_assert(!bl_tensor_all_finite(t));
    bl_tensor *u = bl_tensor_alloc(NULL, 2, BL_SHAPE(12, 10), 0);
    ck_assert(!bl_tensor_same_shape(t, u));
    bl_tensor_copy(u, t);
    ck_assert(u->data[77] == 2.5f && isnan(u->data[3]));
    ck_assert_ptr_null(u->grad);
    bl_tensor_free(t);
    bl_tensor_free(u);
}
END_TEST

START_TEST(test_arena_alignment_growth_reset)
{
    bl_arena *a = bl_arena_alloc(4096);
    char *p = bl_arena_push(a, 10), *q = bl_arena_push(a, 100);
    ck_assert_int_eq((uintptr_t)p % 64, 0);
    ck_assert_int_eq((uintptr_t)q % 64, 0);
    ck_assert(q >= p + 10);
    ck_assert_int_eq(bl_arena_used(a), 64 + 128);
    /* overflow the first block: a second block is chained, earlier memory stays valid */
    memset(p, 7, 10);
    double *big = bl_arena_push_zero(a, 100000 * sizeof(double));
    ck_assert(big[99999] == 0 && p[9] == 7);
    size_t peak = bl_arena_peak(a);
    ck_assert(peak >= 64 + 128 + 800000);
    bl_arena_reset(a);
    ck_assert_int_eq(bl_arena_used(a), 0);
    /* after reset the merged block holds the whole previous peak without chaining */
    char *r = bl_arena_push(a, 800000);
    ck_assert_int_eq((uintptr_t)r % 64, 0);
    ck_assert_int_eq(bl_arena_used(a), 800000);
    ck_assert_int_eq(bl_arena_peak(a), peak);
    bl_arena_free(a);
}
END_TEST

START_TEST(test_rng_streams_are_reproducible_and_independent)
{
    enum { N = 64, K = 32 };
    static double serial[N][K], parallel[N][K];
    for (int s = 0; s < N; s++) {
        bl_rng *r = bl_rng_alloc(42, (uint64_t)s);
        for (int k = 0; k < K; k++) serial[s][k] = bl_rng_normal(r);
        bl_rng_free(r);
    }
    /* the same streams drawn by two threads in an arbitrary order give the same numbers */
    int old = omp_get_max_threads();
    omp_set_num_threads(2);
#pragma omp parallel for schedule(dynamic, 1)
    for (int s = N - 1; s >= 0; s--) {
        bl_rng *r = bl_rng_alloc(42, (uint64_t)s);
        for (int k = 0; k < K; k++) parallel[s][k] = bl_rng_normal(r);
        bl_rng_free(r);
    }
    omp_set_num_threads(old);
    ck_assert(memcmp(serial, parallel, sizeof serial) == 0);
    /* different streams and different seeds differ */
    ck_assert(serial[0][0] != serial[1][0]);
    bl_rng *r = bl_rng_alloc(43, 0);
    ck_assert(bl_rng_normal(r) != serial[0][0]);
    /* reseed restarts the stream */
    bl_rng_reseed(r, 42, 5);
    ck_assert(bl_rng_normal(r) == serial[5][0]);
    bl_rng_free(r);
}
END_TEST

START_TEST(test_rng_moments)
{
    /* 200000 draws: mean within 5 standard errors of the closed form */
    bl_rng *r = bl_rng_alloc(7, 3);
    const int n = 200000;
    double su = 0, sn = 0, sn2 = 0, sp = 0, sg = 0;
    for (int i = 0; i < n; i++) {
        su += bl_rng_uniform(r);
        double z = bl_rng_normal(r);
        sn += z;
        sn2 += z * z;
        sp += bl_rng_poisson(r, 0.2);
        sg += bl_rng_gamma(r, 2.5, 0.4); /* mean 1.0, var 0.4 */
    }
    ck_assert_double_eq_tol(su / n, 0.5, 5 * sqrt(1.0 / 12 / n));
    ck_assert_double_eq_tol(sn / n, 0.0, 5 * sqrt(1.0 / n));
    ck_assert_double_eq_tol(sn2 / n, 1.0, 5 * sqrt(2.0 / n));
    ck_assert_double_eq_tol(sp / n, 0.2, 5 * sqrt(0.2 / n));
    ck_assert_double_eq_tol(sg / n, 1.0, 5 * sqrt(0.4 / n));
    bl_rng_free(r);
}
END_TEST

static bl_status last_status;
static char last_message[1024];
static void record(bl_status st, const char *msg)
{
    last_status = st;
    snprintf(last_message, sizeof last_message, "%s", msg);
}

START_TEST(test_error_channel_and_handler)
{
    bl_error_handler *old = bl_set_error_handler(record);
    bl_status st = bl_error(BL_ERR_IO, "%s: cannot open", "x.safetensors");
    ck_assert_int_eq(st, BL_ERR_IO);
    ck_assert_int_eq(last_status, BL_ERR_IO);
    ck_assert_str_eq(last_message, "x.safetensors: cannot open");
    ck_assert_str_eq(bl_error_message(), "x.safetensors: cannot open");
    ck_assert_str_eq(bl_status_name(BL_ERR_CONFIG), "config error");
    /* context added by a caller goes in front of the callee's message, with the new status */
    st = bl_error_context(BL_ERR_CONFIG, "checkpoint '%s'", "run/last.safetensors");
    ck_assert_int_eq(st, BL_ERR_CONFIG);
    ck_assert_int_eq(last_status, BL_ERR_CONFIG);
    ck_assert_str_eq(bl_error_message(), "checkpoint 'run/last.safetensors': x.safetensors: cannot open");
    ck_assert_str_eq(last_message, bl_error_message());
    /* GSL errors no longer abort: they arrive as bl errors */
    bl_gsl_install_handler();
    gsl_error("domain error in test", "test_core.c", 1, 1 /* GSL_EDOM */);
    ck_assert_ptr_nonnull(strstr(last_message, "domain error in test"));
    bl_set_error_handler(old);
}
END_TEST

static const char *cfg_text =
    "train = { lr = 0.001; steps = 300; use_checkerboard = false; name = \"seed\";\n"
    "          milestones = [32, 64]; };\n"
    "factors = ( { name = \"redshift\"; kind = \"normal\"; } );\n"
    "extra = { typo_key = 3; };\n";

START_TEST(test_config_lookups_and_unknown_keys)
{
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, cfg_text, "test.cfg"), BL_OK);
    double lr, ms[4];
    int64_t steps;
    int cb, n;
    const char *name, *fname;
    ck_assert_int_eq(bl_config_double(cfg, "train.lr", 0, 1, &lr), BL_OK);
    ck_assert_double_eq(lr, 0.001);
    ck_assert_int_eq(bl_config_int(cfg, "train.steps", 0, 1, &steps), BL_OK);
    ck_assert_int_eq(steps, 300);
    ck_assert_int_eq(bl_config_bool(cfg, "train.use_checkerboard", 1, 1, &cb), BL_OK);
    ck_assert_int_eq(cb, 0);
    ck_assert_int_eq(bl_config_string(cfg, "train.name", NULL, 1, &name), BL_OK);
    ck_assert_str_eq(name, "seed");
    ck_assert_int_eq(bl_config_doubles(cfg, "train.milestones", 1, 4, ms, &n), BL_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_double_eq(ms[1], 64);
    /* defaults for missing optional keys; error for missing required ones */
    ck_assert_int_eq(bl_config_double(cfg, "train.gamma", 0.1, 0, &lr), BL_OK);
    ck_assert_double_eq(lr, 0.1);
    ck_assert_int_eq(bl_config_double(cfg, "train.gamma", 0.1, 1, &lr), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "train.gamma"));
    /* wrong type names file, line and key */
    ck_assert_int_eq(bl_config_int(cfg, "train.lr", 0, 1, &steps), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "test.cfg:1"));
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'train.lr'"));
    ck_assert_int_eq(bl_config_check_range(cfg, "train.steps", 300, 1, 100), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "out of range"));
    /* list elements by path */
    ck_assert_int_eq(bl_config_length(cfg, "factors"), 1);
    ck_assert_int_eq(bl_config_string(cfg, "factors.[0].name", NULL, 1, &fname), BL_OK);
    ck_assert_str_eq(fname, "redshift");
    /* factors.[0].kind and extra.typo_key were never read: the first is reported */
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_ERR_CONFIG);
    ck_assert_str_eq(bl_error_message(), "test.cfg:3: unknown key 'factors.[0].kind'");
    ck_assert_int_eq(bl_config_string(cfg, "factors.[0].kind", NULL, 1, &fname), BL_OK);
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_ERR_CONFIG);
    ck_assert_str_eq(bl_error_message(), "test.cfg:4: unknown key 'extra.typo_key'");
    ck_assert_int_eq(bl_config_int(cfg, "extra.typo_key", 0, 1, &steps), BL_OK);
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_OK);
    bl_config_free(cfg);
}
END_TEST

START_TEST(test_config_overrides)
{
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, cfg_text, "test.cfg"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.lr=0.01"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.steps=12"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.name=\"quick\""), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.use_checkerboard=true"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.seed=7"), BL_OK); /* new key in an existing group */
    double lr;
    int64_t steps, seed;
    int cb;
    const char *name;
    bl_config_double(cfg, "train.lr", 0, 1, &lr);
    bl_config_int(cfg, "train.steps", 0, 1, &steps);
    bl_config_int(cfg, "train.seed", 0, 1, &seed);
    bl_config_bool(cfg, "train.use_checkerboard", 0, 1, &cb);
    bl_config_string(cfg, "train.name", NULL, 1, &name);
    ck_assert_double_eq(lr, 0.01);
    ck_assert_int_eq(steps, 12);
    ck_assert_int_eq(seed, 7);
    ck_assert_int_eq(cb, 1);
    ck_assert_str_eq(name, "quick");
    ck_assert_int_eq(bl_config_set(cfg, "train.steps=abc"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "train.steps"));
    ck_assert_int_eq(bl_config_set(cfg, "nosuch.group.key=1"), BL_ERR_CONFIG);
    ck_assert_int_eq(bl_config_set(cfg, "novalue"), BL_ERR_ARG);
    bl_config_free(cfg);
}
END_TEST

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* the overrides lists are applied by bl_config_load itself, in file order */
START_TEST(test_config_override_lists)
{
    char dir[64];
    bl_check_tmpdir(dir, sizeof dir, "bl_test_core");
    write_file(dir, "base.cfg",
               "train = { lr = 0.1; steps = 10; name = \"base\"; };\n"
               "overrides_base = ( \"train.steps = 20\", \"train.name = changed\" );\n");
    /* within a list later entries win; the including file's list comes after the included
     * one's and wins; a new key in an existing group is allowed */
    write_file(dir, "top.cfg",
               "@include \"base.cfg\"\n"
               "overrides_top = ( \"train.lr = 0.5\", \"  train.lr=0.25 \", \"train.steps = 30\",\n"
               "  \"train.seed = 7\" );\n");
    char path[512];
    snprintf(path, sizeof path, "%s/top.cfg", dir);
    bl_config *cfg;
    ck_assert_msg(bl_config_load(&cfg, path) == BL_OK, "%s", bl_error_message());
    double lr;
    int64_t steps, seed;
    const char *name;
    ck_assert_int_eq(bl_config_double(cfg, "train.lr", 0, 1, &lr), BL_OK);
    ck_assert_int_eq(bl_config_int(cfg, "train.steps", 0, 1, &steps), BL_OK);
    ck_assert_int_eq(bl_config_int(cfg, "train.seed", 0, 1, &seed), BL_OK);
    ck_assert_int_eq(bl_config_string(cfg, "train.name", NULL, 1, &name), BL_OK);
    ck_assert_double_eq(lr, 0.25);
    ck_assert_int_eq(steps, 30);
    ck_assert_int_eq(seed, 7);
    ck_assert_str_eq(name, "changed");
    /* the lists themselves count as used keys */
    ck_assert_msg(bl_config_check_unused(cfg) == BL_OK, "%s", bl_error_message());
    bl_config_free(cfg);

    /* the included file alone: only its own list applies */
    snprintf(path, sizeof path, "%s/base.cfg", dir);
    ck_assert_int_eq(bl_config_load(&cfg, path), BL_OK);
    ck_assert_int_eq(bl_config_int(cfg, "train.steps", 0, 1, &steps), BL_OK);
    ck_assert_int_eq(bl_config_double(cfg, "train.lr", 0, 1, &lr), BL_OK);
    ck_assert_int_eq(steps, 20);
    ck_assert_double_eq(lr, 0.1);
    bl_config_free(cfg);

    /* an override of an unknown key fails the load, naming the entry's file and line */
    write_file(dir, "bad.cfg",
               "@include \"base.cfg\"\n"
               "overrides_bad = (\n"
               "  \"train.lr = 0.5\",\n"
               "  \"train.nosuch.lr = 1e-4\" );\n");
    snprintf(path, sizeof path, "%s/bad.cfg", dir);
    ck_assert_int_eq(bl_config_load(&cfg, path), BL_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(bl_error_message(), "bad.cfg:4: override \"train.nosuch.lr=1e-4\"") != NULL,
                  "%s", bl_error_message());
    /* a value of the wrong type for the existing key, and an entry that is not a string */
    ck_assert_int_eq(bl_config_load_string(&cfg, "a = { n = 1; };\noverrides = ( \"a.n = 1.5\" );\n",
                                           "t.cfg"), BL_ERR_CONFIG);
    ck_assert_msg(strstr(bl_error_message(), "t.cfg:2: override \"a.n=1.5\"") != NULL &&
                      strstr(bl_error_message(), "expected an integer") != NULL,
                  "%s", bl_error_message());
    ck_assert_int_eq(bl_config_load_string(&cfg, "a = { n = 1; };\n\noverrides = ( 3 );\n", "t.cfg"),
                     BL_ERR_CONFIG);
    ck_assert_msg(strstr(bl_error_message(), "t.cfg:3: overrides entry 0") != NULL, "%s",
                  bl_error_message());
    /* a name that only starts like one is an ordinary key */
    ck_assert_int_eq(bl_config_load_string(&cfg, "overridesx = ( \"a = 1\" );\n", "t.cfg"), BL_OK);
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "unknown key 'overridesx"));
    bl_config_free(cfg);

    const char *names[] = {"base.cfg", "top.cfg", "bad.cfg"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        remove(path);
    }
    rmdir(dir);
}
END_TEST

static void path_in(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

/* @include: relative to the including file, then $BLISS_CONFIG_PATH; errors name file:line */
START_TEST(test_config_include_resolution_and_errors)
{
    char dir[64], user[600], lib[600], path[700];
    bl_check_tmpdir(dir, sizeof dir, "bl_test_inc");
    path_in(user, sizeof user, dir, "user");
    path_in(lib, sizeof lib, dir, "lib");
    ck_assert_int_eq(mkdir(user, 0777), 0);
    ck_assert_int_eq(mkdir(lib, 0777), 0);
    /* lib/common.cfg includes inner.cfg from its own directory (not the top file's) */
    write_file(lib, "inner.cfg", "inner = { x = 1.5; };\n");
    write_file(lib, "common.cfg", "# common\n@include \"inner.cfg\"  # same dir\ncommon = { n = 3; };\n");
    write_file(user, "top.cfg", "@include \"common.cfg\"\ntop = { s = \"here\"; bad = ; };\n");
    path_in(path, sizeof path, user, "top.cfg");
    bl_config *cfg;
    /* not found: the message names the line and where it looked */
    unsetenv("BLISS_CONFIG_PATH");
    ck_assert_int_eq(bl_config_load(&cfg, path), BL_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strstr(bl_error_message(), "top.cfg:1: @include \"common.cfg\": not found in") != NULL,
                  "%s", bl_error_message());
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "$BLISS_CONFIG_PATH (unset)"));
    /* found along the search path; a syntax error after the included lines is dated in top.cfg */
    char env[700];
    snprintf(env, sizeof env, "/nonexistent:%s", lib);
    setenv("BLISS_CONFIG_PATH", env, 1);
    ck_assert_int_eq(bl_config_load(&cfg, path), BL_ERR_CONFIG);
    ck_assert_msg(strstr(bl_error_message(), "top.cfg:2: syntax error") != NULL, "%s", bl_error_message());
    write_file(user, "top.cfg", "@include \"common.cfg\"\ntop = { s = \"here\"; };\n");
    ck_assert_msg(bl_config_load(&cfg, path) == BL_OK, "%s", bl_error_message());
    double x;
    int64_t n;
    const char *s;
    ck_assert_int_eq(bl_config_double(cfg, "inner.x", 0, 1, &x), BL_OK);
    ck_assert_double_eq(x, 1.5);
    ck_assert_int_eq(bl_config_int(cfg, "common.n", 0, 1, &n), BL_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(bl_config_string(cfg, "top.s", NULL, 1, &s), BL_OK);
    ck_assert_str_eq(s, "here");
    /* file:line of settings from every file of the chain */
    ck_assert_msg(strstr(bl_config_where(cfg, "inner.x"), "lib/inner.cfg:1") != NULL, "%s",
                  bl_config_where(cfg, "inner.x"));
    ck_assert_msg(strstr(bl_config_where(cfg, "common.n"), "lib/common.cfg:3") != NULL, "%s",
                  bl_config_where(cfg, "common.n"));
    ck_assert_msg(strstr(bl_config_where(cfg, "top.s"), "user/top.cfg:2") != NULL, "%s",
                  bl_config_where(cfg, "top.s"));
    bl_config_free(cfg);
    unsetenv("BLISS_CONFIG_PATH");

    /* the error cases: never an exit from inside libconfig, always file:line */
    static const struct { const char *text, *msg; } bad[] = {
        {"a = 1;\n@include \"\"\n", "e.cfg:2: @include \"\": empty file name"},
        {"a = 1;\n\n@include \"lib\"\n", "e.cfg:3: @include \"lib\": "},
        {"@include \"nosuch.cfg\"\n", "e.cfg:1: @include \"nosuch.cfg\": not found"},
        {"@include \"/nonexistent/x.cfg\"\n", "e.cfg:1: @include \"/nonexistent/x.cfg\": no such file"},
        {"@include \"e.cfg\"\n", "includes itself"},
        {"a = 1; @include \"x.cfg\"\n", "e.cfg:1: '@' outside a string"},
        {"@include x.cfg\n", "e.cfg:1: expected @include \"file.cfg\" alone on its line"},
        {"\"\"", "e.cfg:1: syntax error"},
        {"\"\"\n", "e.cfg:1: syntax error"},
        /* strings libconfig's parser would reject (and leak): caught first, same message */
        {"a = \"x\";\n\"y\"\n", "e.cfg:2: syntax error"},
        {"a = { \"b\" = 1; };\n", "e.cfg:1: syntax error"},
        {"a = 1\n  \"x\";\n", "e.cfg:2: syntax error"},
        {"a = [1 \"x\"];\n", "e.cfg:1: syntax error"},
        /* errors libconfig reports itself */
        {"a = [1, \"x\"];\n", "e.cfg:1: mismatched element type in array"},
        {"a = \"x\" = 1;\n", "e.cfg:1: syntax error"},
        {"a = \"unterminated\n", "syntax error"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(dir, "e.cfg", bad[i].text);
        path_in(path, sizeof path, dir, "e.cfg");
        ck_assert_int_eq(bl_config_load(&cfg, path), BL_ERR_CONFIG);
        ck_assert_ptr_null(cfg);
        ck_assert_msg(strstr(bl_error_message(), bad[i].msg) != NULL, "case %zu: %s", i, bl_error_message());
    }
    ck_assert_ptr_nonnull(strstr((write_file(dir, "e.cfg", "a = 1;\n\n@include \"lib\"\n"),
                                  bl_config_load(&cfg, path), bl_error_message()), "is a directory"));
    /* a directory as the top-level file, and an @include in a comment or a string is text */
    ck_assert_int_eq(bl_config_load(&cfg, lib), BL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "is a directory"));
    ck_assert_int_eq(bl_config_load_string(&cfg, "/* \n@include \"\" */ s = \"@include\"; # @x\n", "c.cfg"),
                     BL_OK);
    ck_assert_int_eq(bl_config_string(cfg, "s", NULL, 1, &s), BL_OK);
    ck_assert_str_eq(s, "@include");
    bl_config_free(cfg);

    const char *files[][2] = {{lib, "inner.cfg"}, {lib, "common.cfg"}, {user, "top.cfg"}, {dir, "e.cfg"}};
    for (int i = 0; i < 4; i++) {
        path_in(path, sizeof path, files[i][0], files[i][1]);
        remove(path);
    }
    rmdir(lib);
    rmdir(user);
    rmdir(dir);
}
END_TEST

/* extend groups: append to lists, merge groups, replace scalars, in file order */
START_TEST(test_config_extend)
{
    char dir[64], path[600];
    bl_check_tmpdir(dir, sizeof dir, "bl_test_ext");
    write_file(dir, "parent.cfg",
               "train = { lr = 0.1; steps = 10; milestones = [4, 8]; };\n"
               "factors = ( { name = \"a\"; kind = \"normal\"; } );\n");
    write_file(dir, "child.cfg",
               "@include \"parent.cfg\"\n"
               "extend_child = {\n"
               "  factors = ( { name = \"b\"; kind = \"lognormal\"; } );\n"
               "  train = { lr = 1; milestones = [16]; optimizer = { eps = 1e-6; }; };\n"
               "  prior_fields = ( { name = \"z\"; } );\n"
               "};\n");
    write_file(dir, "grandchild.cfg",
               "@include \"child.cfg\"\n"
               "extend = { factors = ( { name = \"c\"; kind = \"normal\"; } ); train = { lr = 0.5; }; };\n");
    path_in(path, sizeof path, dir, "grandchild.cfg");
    bl_config *cfg;
    ck_assert_msg(bl_config_load(&cfg, path) == BL_OK, "%s", bl_error_message());
    ck_assert_int_eq(bl_config_length(cfg, "factors"), 3);
    const char *s;
    static const char *const want[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        char key[64];
        snprintf(key, sizeof key, "factors.[%d].name", i);
        ck_assert_int_eq(bl_config_string(cfg, key, NULL, 1, &s), BL_OK);
        ck_assert_str_eq(s, want[i]);
        snprintf(key, sizeof key, "factors.[%d].kind", i);
        ck_assert_int_eq(bl_config_string(cfg, key, NULL, 1, &s), BL_OK);
    }
    double lr, ms[4], eps;
    int m;
    ck_assert_int_eq(bl_config_double(cfg, "train.lr", 0, 1, &lr), BL_OK);
    ck_assert_double_eq(lr, 0.5); /* the grandchild wins, the int 1 became a float */
    ck_assert_int_eq(bl_config_doubles(cfg, "train.milestones", 0, 4, ms, &m), BL_OK);
    ck_assert_int_eq(m, 3);
    ck_assert_double_eq(ms[2], 16);
    ck_assert_int_eq(bl_config_double(cfg, "train.optimizer.eps", 0, 1, &eps), BL_OK);
    ck_assert_double_eq(eps, 1e-6);
    int64_t steps;
    ck_assert_int_eq(bl_config_int(cfg, "train.steps", 0, 1, &steps), BL_OK);
    /* a key added by extend and never read is reported at the line of the extend entry */
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_ERR_CONFIG);
    ck_assert_msg(strstr(bl_error_message(), "child.cfg:5: unknown key 'prior_fields.[0].name'") != NULL, "%s",
                  bl_error_message());
    bl_config_free(cfg);
    /* a type clash names both places */
    ck_assert_int_eq(bl_config_load_string(&cfg, "a = { n = 1; };\nextend = { a = { n = \"x\"; }; };\n", "t.cfg"),
                     BL_ERR_CONFIG);
    ck_assert_msg(strstr(bl_error_message(), "t.cfg:2: key 'a.n' is an integer (t.cfg:1), not a string") != NULL,
                  "%s", bl_error_message());
    ck_assert_int_eq(bl_config_load_string(&cfg, "a = [1, 2];\nextend = { a = [\"x\"]; };\n", "t.cfg"),
                     BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "cannot append a string to 'a'"));
    ck_assert_int_eq(bl_config_load_string(&cfg, "extend = 3;\n", "t.cfg"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "t.cfg:1: key 'extend' must be a group"));
    const char *names[] = {"parent.cfg", "child.cfg", "grandchild.cfg"};
    for (int i = 0; i < 3; i++) {
        path_in(path, sizeof path, dir, names[i]);
        remove(path);
    }
    rmdir(dir);
}
END_TEST

/* --set on list elements, list values and +=; the "did you mean" of unknown keys */
START_TEST(test_config_set_lists_and_did_you_mean)
{
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, cfg_text, "test.cfg"), BL_OK);
    const char *s;
    double ms[8];
    int n;
    ck_assert_int_eq(bl_config_set(cfg, "factors[0].kind=lognormal"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "factors.[0].name=\"z\""), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones[1]=70"), BL_OK);
    ck_assert_int_eq(bl_config_string(cfg, "factors.[0].kind", NULL, 1, &s), BL_OK);
    ck_assert_str_eq(s, "lognormal");
    ck_assert_int_eq(bl_config_string(cfg, "factors.[0].name", NULL, 1, &s), BL_OK);
    ck_assert_str_eq(s, "z");
    ck_assert_int_eq(bl_config_doubles(cfg, "train.milestones", 0, 8, ms, &n), BL_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_double_eq(ms[1], 70);
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones+=[80, 90]"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones+=100"), BL_OK);
    ck_assert_int_eq(bl_config_doubles(cfg, "train.milestones", 0, 8, ms, &n), BL_OK);
    ck_assert_int_eq(n, 5);
    ck_assert_double_eq(ms[4], 100);
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones=[5]"), BL_OK);
    ck_assert_int_eq(bl_config_doubles(cfg, "train.milestones", 0, 8, ms, &n), BL_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_double_eq(ms[0], 5);
    ck_assert_int_eq(bl_config_set(cfg, "factors+=({ name = \"w\"; kind = \"normal\"; })"), BL_OK);
    ck_assert_int_eq(bl_config_length(cfg, "factors"), 2);
    ck_assert_int_eq(bl_config_string(cfg, "factors.[1].name", NULL, 1, &s), BL_OK);
    ck_assert_str_eq(s, "w");
    ck_assert_int_eq(bl_config_set(cfg, "train={ steps = 5; }"), BL_OK); /* a group merges */
    int64_t steps;
    ck_assert_int_eq(bl_config_int(cfg, "train.steps", 0, 1, &steps), BL_OK);
    ck_assert_int_eq(steps, 5);
    /* errors */
    ck_assert_int_eq(bl_config_set(cfg, "factors[5].kind=normal"), BL_ERR_CONFIG);
    ck_assert_int_eq(bl_config_set(cfg, "train.steps+=1"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "+= appends to lists and arrays"));
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones=[1 \"x\"]"), BL_ERR_CONFIG);
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones=[1,"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "not a libconfig value"));
    /* an integer joins an array of floats as a float; a float does not join integers */
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones=[0.5]"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones+=(2, 3.5)"), BL_OK);
    ck_assert_int_eq(bl_config_doubles(cfg, "train.milestones", 0, 8, ms, &n), BL_OK);
    ck_assert_int_eq(n, 3);
    ck_assert_double_eq(ms[1], 2.0);
    ck_assert_double_eq(ms[2], 3.5);
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones=[1]"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones+=2.5"), BL_ERR_CONFIG);
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones=[\"a\"]"), BL_OK); /* replaced: any one type */
    ck_assert_int_eq(bl_config_set(cfg, "train.milestones+=[1]"), BL_ERR_CONFIG);
    ck_assert_int_eq(bl_config_set(cfg, "train.name=[1]"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'train.name' is a string"));
    bl_config_free(cfg);

    /* did you mean: a near spelling, or the same last name in another group */
    ck_assert_int_eq(bl_config_load_string(&cfg, "train = { lrr = 1.0; optimizer = { lr = 1.0; }; };\n", "t.cfg"),
                     BL_OK);
    double lr;
    ck_assert_int_eq(bl_config_double(cfg, "train.optimizer.lr", 0, 1, &lr), BL_OK);
    ck_assert_int_eq(bl_config_double(cfg, "train.lr", 0, 0, &lr), BL_OK);
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_ERR_CONFIG);
    ck_assert_str_eq(bl_error_message(), "t.cfg:1: unknown key 'train.lrr' (did you mean 'train.lr'?)");
    bl_config_free(cfg);
    ck_assert_int_eq(bl_config_load_string(&cfg, "train = { lr = 1.0; };\n", "t.cfg"), BL_OK);
    ck_assert_int_eq(bl_config_double(cfg, "train.optimizer.lr", 0, 0, &lr), BL_OK);
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_ERR_CONFIG);
    ck_assert_str_eq(bl_error_message(), "t.cfg:1: unknown key 'train.lr' (did you mean 'train.optimizer.lr'?)");
    bl_config_free(cfg);
}
END_TEST

/* bl_config_to_string reads back to the same values, bit for bit */
START_TEST(test_config_to_string_round_trip)
{
    const char *text =
        "a = { f = 0.39330758068481686; g = 1e-300; h = 3.0; i = -7; big = 9000000000L; b = true;\n"
        "      s = \"q\\\"uote\\\\ and\\n newline\"; arr = [0.1, 0.2]; sarr = [\"u\", \"g\"]; };\n"
        "l = ( { name = \"x\"; v = 1; }, 2.5, \"s\", ( 1, 2 ) );\n"
        "e = ( );\n"
        "overrides_x = ( \"a.h = 4.0\" );\n"
        "extend = { a = { arr = [0.3]; }; };\n";
    bl_config *cfg, *back;
    ck_assert_int_eq(bl_config_load_string(&cfg, text, "t.cfg"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "a.i=-8"), BL_OK);
    char *out = bl_config_to_string(cfg);
    ck_assert_msg(bl_config_load_string(&back, out, "back.cfg") == BL_OK, "%s\n%s", bl_error_message(), out);
    ck_assert_ptr_null(strstr(out, "overrides_x")); /* applied, not written */
    ck_assert_ptr_null(strstr(out, "extend"));
    double f[2], arr[8];
    int64_t i[2];
    const char *s[2];
    int na[2], b[2];
    bl_config *c[2] = {cfg, back};
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(bl_config_double(c[k], "a.f", 0, 1, &f[k]), BL_OK);
        ck_assert_int_eq(bl_config_int(c[k], "a.big", 0, 1, &i[k]), BL_OK);
        ck_assert_int_eq(bl_config_string(c[k], "a.s", NULL, 1, &s[k]), BL_OK);
        ck_assert_int_eq(bl_config_bool(c[k], "a.b", 0, 1, &b[k]), BL_OK);
        ck_assert_int_eq(bl_config_doubles(c[k], "a.arr", 0, 8, arr, &na[k]), BL_OK);
    }
    ck_assert(f[0] == f[1] && f[0] == 0.39330758068481686);
    ck_assert(i[0] == i[1] && i[0] == 9000000000LL);
    ck_assert_str_eq(s[0], s[1]);
    ck_assert_str_eq(s[1], "q\"uote\\ and\n newline");
    ck_assert_int_eq(b[1], 1);
    ck_assert_int_eq(na[1], 3);
    ck_assert_double_eq(arr[2], 0.3);
    double g, h;
    int64_t iv;
    ck_assert_int_eq(bl_config_double(back, "a.g", 0, 1, &g), BL_OK);
    ck_assert(g == 1e-300);
    ck_assert_int_eq(bl_config_double(back, "a.h", 0, 1, &h), BL_OK);
    ck_assert_double_eq(h, 4.0);
    ck_assert_int_eq(bl_config_int(back, "a.h", 0, 1, &iv), BL_ERR_CONFIG); /* still a float */
    ck_assert_int_eq(bl_config_int(back, "a.i", 0, 1, &iv), BL_OK);
    ck_assert_int_eq(iv, -8);
    ck_assert_int_eq(bl_config_length(back, "l"), 4);
    ck_assert_int_eq(bl_config_length(back, "l.[3]"), 2);
    ck_assert_int_eq(bl_config_length(back, "e"), 0);
    ck_assert(bl_config_exists(back, "e"));
    /* writing the read-back config gives the same text */
    char *again = bl_config_to_string(back);
    ck_assert_str_eq(out, again);
    free(again);
    free(out);
    bl_config_free(back);
    bl_config_free(cfg);
}
END_TEST

START_TEST(test_config_syntax_error_and_missing_file)
{
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, "a = 1;\nb = ;\n", "bad.cfg"), BL_ERR_CONFIG);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "bad.cfg:2"));
    ck_assert_int_eq(bl_config_load(&cfg, "/nonexistent/dir/x.cfg"), BL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "/nonexistent/dir/x.cfg"));
}
END_TEST

typedef struct {
    const char *name;
    int value;
} reg_item;
static const char *reg_item_name(const void *p) { return ((const reg_item *)p)->name; }

/* the registry helper: built-ins first, then registered items in order; same pointer again is a
 * no-op, a taken name, a missing name and a full table are refused naming the registry */
START_TEST(test_registry)
{
    static const reg_item a = {"a", 1}, b = {"b", 2}, c = {"c", 3}, d = {"d", 4}, a2 = {"a", 5}, noname = {NULL, 0};
    static const void *const builtins[] = {&a, &b};
    static const void *extra[2];
    static bl_registry r = BL_REGISTRY_INIT("test item", builtins, extra, reg_item_name);
    ck_assert_int_eq(bl_registry_count(&r), 2);
    ck_assert_ptr_eq(bl_registry_find(&r, "b"), &b);
    ck_assert_ptr_null(bl_registry_find(&r, "c"));
    ck_assert_ptr_null(bl_registry_find(&r, NULL));
    ck_assert_int_eq(bl_registry_add(&r, &c), BL_OK);
    ck_assert_int_eq(bl_registry_add(&r, &c), BL_OK);
    ck_assert_int_eq(bl_registry_count(&r), 3);
    ck_assert_ptr_eq(bl_registry_at(&r, 2), &c);
    ck_assert_int_eq(bl_registry_add(&r, &a2), BL_ERR_ARG);
    ck_assert_str_eq(bl_error_message(), "test item 'a' is already registered (another descriptor)");
    ck_assert_int_eq(bl_registry_add(&r, &noname), BL_ERR_ARG);
    ck_assert_str_eq(bl_error_message(), "test item: the descriptor has no name");
    ck_assert_int_eq(bl_registry_add(&r, &d), BL_OK);
    static const reg_item e = {"e", 5};
    ck_assert_int_eq(bl_registry_add(&r, &e), BL_ERR_ARG);
    ck_assert_str_eq(bl_error_message(), "test item 'e': the table is full (2 registered)");
    char names[16];
    bl_registry_names(&r, names, sizeof names);
    ck_assert_str_eq(names, "a, b, c, d");
    bl_registry_names(&r, names, 6);
    ck_assert_str_eq(names, "a, b,");
    bl_registry_reset(&r);
    ck_assert_int_eq(bl_registry_count(&r), 2);
    ck_assert_ptr_null(bl_registry_find(&r, "c"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lib_core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_tensor_shape_and_offset);
    tcase_add_test(tc, test_registry);
    tcase_add_test(tc, test_arena_alignment_growth_reset);
    tcase_add_test(tc, test_rng_streams_are_reproducible_and_independent);
    tcase_add_test(tc, test_rng_moments);
    tcase_add_test(tc, test_error_channel_and_handler);
    tcase_add_test(tc, test_config_lookups_and_unknown_keys);
    tcase_add_test(tc, test_config_overrides);
    tcase_add_test(tc, test_config_override_lists);
    tcase_add_test(tc, test_config_syntax_error_and_missing_file);
    tcase_add_test(tc, test_config_include_resolution_and_errors);
    tcase_add_test(tc, test_config_extend);
    tcase_add_test(tc, test_config_set_lists_and_did_you_mean);
    tcase_add_test(tc, test_config_to_string_round_trip);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
