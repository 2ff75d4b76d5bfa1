/* lib core: tensors, arena, RNG streams, errors, config. */
#include <check.h>
#include <gsl/gsl_errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    char path[512];
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
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
