/* Linear assignment and the catalog matcher (lib/eval/match.h). Expected matches are worked out by
 * hand in the comments; random instances are compared with exhaustive enumeration. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "lib/eval/match.h"
#include "lib/rng.h"
#include "tests/bl_check.h"

/* ---- exhaustive reference: max count of allowed pairs, then min total cost ---------------- */
typedef struct {
    int nr, nc;
    const double *cost;
    const uint8_t *allowed;  /* NULL: every pair allowed, all min(nr, nc) pairs required */
    int best_n;
    double best_cost;
    int used[8];
} brute;

static void brute_rec(brute *b, int i, int n, double c)
{
    if (i == b->nr) {
        int need = b->nr < b->nc ? b->nr : b->nc;
        if (!b->allowed && n != need) return;
        if (n > b->best_n || (n == b->best_n && c < b->best_cost)) {
            b->best_n = n;
            b->best_cost = c;
        }
        return;
    }
    brute_rec(b, i + 1, n, c); /* row i unmatched */
    for (int j = 0; j < b->nc; j++) {
        if (b->used[j] || (b->allowed && !b->allowed[i * b->nc + j])) continue;
        b->used[j] = 1;
        brute_rec(b, i + 1, n + 1, c + b->cost[i * b->nc + j]);
        b->used[j] = 0;
    }
}

static void brute_solve(brute *b)
{
    b->best_n = -1;
    b->best_cost = INFINITY;
    for (int j = 0; j < 8; j++) b->used[j] = 0;
    brute_rec(b, 0, 0, 0);
}

/* ---- bl_lsap_solve ------------------------------------------------------------------------ */

START_TEST(test_lsap_hand_3x3)
{
    /* rows want columns (2, 0, 1): 1 + 2 + 1 = 4; every other permutation costs >= 9 */
    const double cost[9] = {7, 8, 1,
                            2, 9, 6,
                            9, 1, 8};
    int r2c[3];
    ck_assert_int_eq(bl_lsap_solve(3, 3, cost, r2c), BL_OK);
    ck_assert_int_eq(r2c[0], 2);
    ck_assert_int_eq(r2c[1], 0);
    ck_assert_int_eq(r2c[2], 1);
}
END_TEST

START_TEST(test_lsap_rectangular)
{
    /* 3 rows, 2 columns: row 1 is left out. Options: (r0,c0)+(r2,c1) = 1+1 = 2 is the best
     * (r0,c1)+(r1,c0) = 5+3, (r1,c1)+(r2,c0) = 4+6, ... */
    const double tall[6] = {1, 5,
                            3, 4,
                            6, 1};
    int r2c[3];
    ck_assert_int_eq(bl_lsap_solve(3, 2, tall, r2c), BL_OK);
    ck_assert_int_eq(r2c[0], 0);
    ck_assert_int_eq(r2c[1], -1);
    ck_assert_int_eq(r2c[2], 1);
    /* the transpose: 2 rows, 3 columns */
    const double wide[6] = {1, 3, 6,
                            5, 4, 1};
    int w2c[2];
    ck_assert_int_eq(bl_lsap_solve(2, 3, wide, w2c), BL_OK);
    ck_assert_int_eq(w2c[0], 0);
    ck_assert_int_eq(w2c[1], 2);
    /* negative costs are fine: maximising profit 10 vs 1+1 */
    const double neg[4] = {-10, -1,
                           -1, 0};
    int n2c[2];
    ck_assert_int_eq(bl_lsap_solve(2, 2, neg, n2c), BL_OK);
    ck_assert_int_eq(n2c[0], 0);
    ck_assert_int_eq(n2c[1], 1);
}
END_TEST

START_TEST(test_lsap_ties_and_errors)
{
    /* constant matrix: every assignment is optimal; the solver returns the identity */
    const double c[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    int r2c[3];
    ck_assert_int_eq(bl_lsap_solve(3, 3, c, r2c), BL_OK);
    for (int i = 0; i < 3; i++) ck_assert_int_eq(r2c[i], i);
    /* a single row with equal columns takes the lowest index */
    const double row[4] = {2, 1, 1, 1};
    int r;
    ck_assert_int_eq(bl_lsap_solve(1, 4, row, &r), BL_OK);
    ck_assert_int_eq(r, 1);
    /* empty problems */
    ck_assert_int_eq(bl_lsap_solve(0, 3, row, &r), BL_OK);
    r = 7;
    ck_assert_int_eq(bl_lsap_solve(1, 0, row, &r), BL_OK);
    ck_assert_int_eq(r, -1);
    /* a NaN cost is a user error, not a crash */
    const double bad[4] = {1, NAN, 2, 3};
    int b2c[2];
    ck_assert_int_eq(bl_lsap_solve(2, 2, bad, b2c), BL_ERR_RANGE);
}
END_TEST

START_TEST(test_lsap_matches_brute_force)
{
    bl_rng *rng = bl_rng_alloc(11, 0);
    double cost[64];
    int r2c[8];
    for (int trial = 0; trial < 400; trial++) {
        int nr = 1 + (int)bl_rng_uniform_int(rng, 6), nc = 1 + (int)bl_rng_uniform_int(rng, 6);
        /* integer costs from a small range make many ties and degenerate duals */
        int integer = trial % 2;
        for (int k = 0; k < nr * nc; k++)
            cost[k] = integer ? (double)bl_rng_uniform_int(rng, 4) : bl_rng_normal(rng);
        ck_assert_int_eq(bl_lsap_solve(nr, nc, cost, r2c), BL_OK);
        int seen[8] = {0}, n = 0;
        double total = 0;
        for (int i = 0; i < nr; i++) {
            if (r2c[i] < 0) continue;
            ck_assert_int_lt(r2c[i], nc);
            ck_assert_int_eq(seen[r2c[i]]++, 0);
            total += cost[i * nc + r2c[i]];
            n++;
        }
        ck_assert_int_eq(n, nr < nc ? nr : nc);
        brute b = {.nr = nr, .nc = nc, .cost = cost, .allowed = NULL};
        brute_solve(&b);
        ck_assert_msg(fabs(total - b.best_cost) < 1e-9, "trial %d (%dx%d): %g vs optimum %g",
                      trial, nr, nc, total, b.best_cost);
    }
    bl_rng_free(rng);
}
END_TEST

/* ---- bl_lsap_solve_allowed ---------------------------------------------------------------- */

START_TEST(test_lsap_allowed_prefers_more_pairs)
{
    /* Allowed pairs: (r0,c0) cost 0.1, (r0,c1) 0.9, (r1,c0) 0.9. The cheapest single pair is
     * (r0,c0) = 0.1, but two pairs (r0,c1)+(r1,c0) = 1.8 match more: that wins. */
    const double cost[4] = {0.1, 0.9,
                            0.9, 0.0};
    const uint8_t allowed[4] = {1, 1,
                                1, 0};
    int r2c[2], n;
    ck_assert_int_eq(bl_lsap_solve_allowed(2, 2, cost, allowed, r2c, &n), BL_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(r2c[0], 1);
    ck_assert_int_eq(r2c[1], 0);
    /* nothing allowed: nothing matched; a forbidden NaN cost is ignored */
    const double nanc[4] = {NAN, NAN, NAN, NAN};
    const uint8_t none[4] = {0, 0, 0, 0};
    ck_assert_int_eq(bl_lsap_solve_allowed(2, 2, nanc, none, r2c, &n), BL_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(r2c[0], -1);
    ck_assert_int_eq(r2c[1], -1);
    /* an allowed NaN cost is an error */
    const uint8_t one[4] = {1, 0, 0, 0};
    ck_assert_int_eq(bl_lsap_solve_allowed(2, 2, nanc, one, r2c, &n), BL_ERR_RANGE);
}
END_TEST

START_TEST(test_lsap_allowed_matches_brute_force)
{
    bl_rng *rng = bl_rng_alloc(12, 0);
    double cost[64];
    uint8_t allowed[64];
    int r2c[8];
    for (int trial = 0; trial < 400; trial++) {
        int nr = 1 + (int)bl_rng_uniform_int(rng, 6), nc = 1 + (int)bl_rng_uniform_int(rng, 6);
        double p = bl_rng_uniform(rng);
        for (int k = 0; k < nr * nc; k++) {
            cost[k] = trial % 3 == 0 ? (double)bl_rng_uniform_int(rng, 3) : bl_rng_uniform(rng);
            allowed[k] = bl_rng_uniform(rng) < p;
        }
        int n;
        ck_assert_int_eq(bl_lsap_solve_allowed(nr, nc, cost, allowed, r2c, &n), BL_OK);
        int seen[8] = {0}, m = 0;
        double total = 0;
        for (int i = 0; i < nr; i++) {
            if (r2c[i] < 0) continue;
            ck_assert(allowed[i * nc + r2c[i]]);
            ck_assert_int_eq(seen[r2c[i]]++, 0);
            total += cost[i * nc + r2c[i]];
            m++;
        }
        ck_assert_int_eq(m, n);
        brute b = {.nr = nr, .nc = nc, .cost = cost, .allowed = allowed};
        brute_solve(&b);
        ck_assert_int_eq(n, b.best_n);
        ck_assert_msg(fabs(total - b.best_cost) < 1e-9, "trial %d: %g vs optimum %g", trial,
                      total, b.best_cost);
    }
    bl_rng_free(rng);
}
END_TEST

/* ---- bl_match_plocs ----------------------------------------------------------------------- */

static const bl_match_opts slack1 = {.dist_slack = 1.0, .mag_slack = 0};

START_TEST(test_match_empty_and_unmatched)
{
    const bl_real t[4] = {10, 10, 20, 20}, e[4] = {12, 10, 20, 21.5};
    int ti[2], ei[2], n = 99;
    ck_assert_int_eq(bl_match_plocs(t, 0, e, 2, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 0);
    n = 99;
    ck_assert_int_eq(bl_match_plocs(t, 2, e, 0, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 0);
    /* distances 2 and 1.5: both beyond the slack of 1 pixel */
    ck_assert_int_eq(bl_match_plocs(t, 2, e, 2, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 0);
    /* exactly at the slack is a match (oob is dist > slack) */
    const bl_real e2[2] = {20, 21};
    ck_assert_int_eq(bl_match_plocs(t, 2, e2, 1, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ti[0], 1);
    ck_assert_int_eq(ei[0], 0);
    /* a NaN location matches nothing */
    const bl_real enan[2] = {NAN, 10};
    ck_assert_int_eq(bl_match_plocs(t, 2, enan, 1, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(test_match_greedy_wrong_hungarian_right)
{
    /* On a line (row 0): T0 at col 0, T1 at col 1.5; E0 at col 0.6, E1 at col -0.9.
     * Greedy nearest-first takes T0-E0 (0.6) and then T1 has only E1 at 2.4 > 1: 1 match.
     * Hungarian: T0-E1 (0.9) + T1-E0 (0.9): 2 matches. */
    const bl_real t[4] = {0, 0, 0, 1.5}, e[4] = {0, 0.6, 0, -0.9};
    int ti[2], ei[2], n;
    ck_assert_int_eq(bl_match_plocs(t, 2, e, 2, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(ti[0], 0);
    ck_assert_int_eq(ei[0], 1);
    ck_assert_int_eq(ti[1], 1);
    ck_assert_int_eq(ei[1], 0);
    /* Same count, lower total: T0 (0,0), T1 (0,1); E0 (0,0.55), E1 (0,1.5). Greedy takes
     * T1-E0 (0.45) then T0-E1 is 1.5 > 1 -> 1 match; optimal is T0-E0 + T1-E1 = 0.55 + 0.5. */
    const bl_real t2[4] = {0, 0, 0, 1}, e2[4] = {0, 0.55, 0, 1.5};
    ck_assert_int_eq(bl_match_plocs(t2, 2, e2, 2, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(ei[0], 0);
    ck_assert_int_eq(ei[1], 1);
}
END_TEST

START_TEST(test_match_ties)
{
    /* one true source halfway between two estimates: the lower est index */
    const bl_real t[2] = {5, 5}, e[4] = {5, 5.5, 5, 4.5};
    int ti[2], ei[2], n;
    ck_assert_int_eq(bl_match_plocs(t, 1, e, 2, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(ei[0], 0);
    /* two true sources at (0,0), (0,1) and two estimates both at (0,0.5): every pair is 0.5
     * away, both assignments cost 1; the identity is returned */
    const bl_real t2[4] = {0, 0, 0, 1}, e2[4] = {0, 0.5, 0, 0.5};
    ck_assert_int_eq(bl_match_plocs(t2, 2, e2, 2, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(ti[0], 0);
    ck_assert_int_eq(ei[0], 0);
    ck_assert_int_eq(ti[1], 1);
    ck_assert_int_eq(ei[1], 1);
}
END_TEST

START_TEST(test_match_mag_slack_and_order)
{
    /* E0 is 0.1 px from T0 but 2 mag fainter; with mag_slack 0.5 only E1 (0.8 px, same mag)
     * matches T0. Pairs come out ordered by true index. */
    const bl_real t[4] = {3, 3, 9, 9}, e[6] = {3, 3.1, 3.8, 3, 9, 9.2};
    const bl_real tm[2] = {20, 18}, em[3] = {22, 20.1, 18.3};
    bl_match_opts o = {.dist_slack = 1.0, .mag_slack = 0.5};
    int ti[2], ei[2], n;
    ck_assert_int_eq(bl_match_plocs(t, 2, e, 3, &o, tm, em, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(ti[0], 0);
    ck_assert_int_eq(ei[0], 1);
    ck_assert_int_eq(ti[1], 1);
    ck_assert_int_eq(ei[1], 2);
    /* without the magnitude condition the nearest one wins */
    ck_assert_int_eq(bl_match_plocs(t, 2, e, 3, &slack1, NULL, NULL, ti, ei, &n), BL_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(ei[0], 0);
}
END_TEST

static Suite *match_suite(void)
{
    Suite *s = suite_create("match");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_lsap_hand_3x3);
    tcase_add_test(tc, test_lsap_rectangular);
    tcase_add_test(tc, test_lsap_ties_and_errors);
    tcase_add_test(tc, test_lsap_matches_brute_force);
    tcase_add_test(tc, test_lsap_allowed_prefers_more_pairs);
    tcase_add_test(tc, test_lsap_allowed_matches_brute_force);
    tcase_add_test(tc, test_match_empty_and_unmatched);
    tcase_add_test(tc, test_match_greedy_wrong_hungarian_right);
    tcase_add_test(tc, test_match_ties);
    tcase_add_test(tc, test_match_mag_slack_and_order);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(match_suite()); }
