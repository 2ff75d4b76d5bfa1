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

#endif
