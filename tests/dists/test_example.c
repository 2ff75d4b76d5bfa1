/* Runs examples/vardists (path in argv[1]) with and without the redshift config (argv[2])
 * (and with a malformed one, argv[3]) and checks its output: the factor tables, P = 38 then 40, the nll shape, the sampled
 * fields. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/bl_check.h"

static const char *example, *config, *bad_config;

/* the whole stdout of `cmd`, and its exit status */
static char *run(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    size_t k;
    while ((k = fread(out + n, 1, cap - 1 - n, p)) > 0) n += k;
    out[n] = 0;
    *status = pclose(p);
    return out;
}

/* runs of blanks -> one blank, so that checks do not depend on column widths */
static void squeeze(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++)
        if (!(*r == ' ' && w > s && w[-1] == ' ')) *w++ = *r;
    *w = 0;
}

static void check_tour(char *out)
{
    squeeze(out);
    /* the base table, then the extended one */
    const char *t38 = strstr(out, "total P = 38"), *t40 = strstr(out, "total P = 40");
    ck_assert_ptr_nonnull(t38);
    ck_assert_ptr_nonnull(t40);
    ck_assert(t38 < t40);
    ck_assert_ptr_nonnull(strstr(out, "18 galaxy_flux_z lognormal 2 36-37 galaxy_fluxes[4] galaxy median"));
    ck_assert_ptr_nonnull(strstr(out, "1 loc tdbn 4 1-4 locs[0:2] on mode"));
    ck_assert_ptr_nonnull(strstr(out, "4 galsim_beta_radians logitnormal(0,3.142) 2 8-9"));
    const char *z = strstr(out, "19 redshift normal 2 38-39 redshifts[0] on mode");
    ck_assert_ptr_nonnull(z);
    ck_assert(z > t38 && z < t40);
    ck_assert_ptr_null(strstr(t40, "total P = 38"));
    ck_assert_ptr_nonnull(strstr(out, "x_cat shape (4, 20, 20, 40)"));
    ck_assert_ptr_nonnull(strstr(out, "nll shape (4, 20, 20), mean "));
    ck_assert_ptr_nonnull(strstr(out, "redshifts(4, 20, 20, 1, 1)"));
    ck_assert_ptr_nonnull(strstr(out, "locs(4, 20, 20, 1, 2)"));
    ck_assert_ptr_nonnull(strstr(out, "(0,0,3) "));
}

START_TEST(test_example_c_call)
{
    char cmd[4096];
    int status;
    snprintf(cmd, sizeof cmd, "'%s'", example);
    char *out = run(cmd, &status);
    ck_assert_int_eq(status, 0);
    check_tour(out);
    ck_assert_ptr_nonnull(strstr(out, "one registration call"));
    free(out);
}
END_TEST

START_TEST(test_example_config)
{
    char cmd[4096];
    int status;
    snprintf(cmd, sizeof cmd, "'%s' '%s'", example, config);
    char *out = run(cmd, &status);
    ck_assert_int_eq(status, 0);
    check_tour(out);
    ck_assert_ptr_nonnull(strstr(out, "with the factors of"));
    free(out);
    /* a malformed entry: non-zero exit, the message names file:line and the key */
    snprintf(cmd, sizeof cmd, "'%s' '%s' 2>&1", example, bad_config);
    out = run(cmd, &status);
    ck_assert_int_ne(status, 0);
    ck_assert_ptr_nonnull(strstr(out, "bad_factor.cfg:6: unknown key 'factors.[0].fields'"));
    free(out);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s path/to/vardists redshift_factor.cfg bad_factor.cfg\n", argv[0]);
        return EXIT_FAILURE;
    }
    example = argv[1];
    config = argv[2];
    bad_config = argv[3];
    Suite *s = suite_create("dists_example");
    TCase *tc = tcase_create("example");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_example_c_call);
    tcase_add_test(tc, test_example_config);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
