/* The end of every Check test program: run the suite, report, turn the result into the exit
 * status meson reads.
 *
 *   int main(void) { return bl_check_run(my_suite()); }
 *
 * CK_NORMAL prints one line per failure plus the summary; CK_FORK and CK_VERBOSITY from the
 * environment still apply (srunner_run_all reads them), e.g. CK_FORK=no under valgrind. */
#ifndef BL_TESTS_CHECK_H
#define BL_TESTS_CHECK_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

/* Runs and frees `s`; EXIT_SUCCESS iff no test failed or errored. */
static inline int bl_check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* A suite of one test case per entry, each with its own timeout (seconds): for programs
 * whose tests are slow enough that each should be timed (and reported) on its own. */
typedef struct bl_check_case {
    const char *name;
    const TTest *test;
} bl_check_case;

static inline Suite *bl_check_suite(const char *name, const bl_check_case *cases, size_t n,
                                    double timeout)
{
    Suite *s = suite_create(name);
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, timeout);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

/* A fresh directory "/tmp/<prefix>_XXXXXX" written into dir (>= 64 bytes), for the files a
 * test writes; bl_check_tmpdir_remove deletes it with its contents. */
static inline void bl_check_tmpdir(char *dir, size_t n, const char *prefix)
{
    snprintf(dir, n, "/tmp/%s_XXXXXX", prefix);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static inline void bl_check_tmpdir_remove(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

#endif
