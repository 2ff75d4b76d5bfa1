/* Matching estimated sources to true sources (docs/behaviour.md §6.1, docs/metrics.md).
 *
 * The core is a rectangular linear sum assignment solver (the shortest-augmenting-path form
 * of the Hungarian method by Jonker & Volgenant as given by Crouse, IEEE TAES 52(4), 2016; the
 * algorithm behind scipy.optimize.linear_sum_assignment), O(n^2 m) for an n x m matrix with
 * n <= m. The catalog matcher of the original passes `distance + 1e20 * out_of_slack` to it and
 * drops the out-of-slack pairs afterwards; with 1e20 the distances are lost to rounding. Here
 * the intent is computed exactly: bl_lsap_solve_allowed first maximises the number of allowed
 * pairs and then minimises their total cost (a finite big-M per connected component of the
 * allowed graph, see match.c). Pixel locations are (row, col). */
#ifndef BL_MATCH_H
#define BL_MATCH_H

#include <stdint.h>

#include "lib/error.h"
#include "lib/tensor.h"

/* Minimum-cost assignment of min(nr, nc) pairs in the nr x nc row-major `cost` matrix.
 * row_to_col[i] = column of row i, or -1 if row i is unassigned (only when nr > nc).
 * Non-finite costs are BL_ERR_RANGE. Among optimal assignments the result is deterministic;
 * a row with several equal-cost free columns takes the lowest column index. */
bl_status bl_lsap_solve(int nr, int nc, const double *cost, int *row_to_col);

/* Assignment restricted to allowed pairs (allowed[i*nc + j] != 0): the maximum number of
 * allowed pairs, and among those the minimum total cost. Costs of allowed pairs must be
 * finite (BL_ERR_RANGE otherwise); costs of forbidden pairs are ignored. row_to_col[i] = -1
 * for rows left unmatched. Returns the number of pairs in *n_pairs. */
bl_status bl_lsap_solve_allowed(int nr, int nc, const double *cost, const uint8_t *allowed,
                                int *row_to_col, int *n_pairs);

typedef struct bl_match_opts {
    double dist_slack;   /* a pair is allowed iff its distance (pixels) <= dist_slack; 1.0 */
    double mag_slack;    /* and, if > 0, |mag_true - mag_est| <= mag_slack; 0 = off */
} bl_match_opts;

/* Match the sources of one image. true_plocs (n_true, 2), est_plocs (n_est, 2) in pixels;
 * true_mags / est_mags (n) are read only when opts->mag_slack > 0 (may be NULL otherwise).
 * Writes the matched pairs ordered by true index into true_idx / est_idx (room for
 * min(n_true, n_est) each) and returns their number in *n_matched. A NaN location matches
 * nothing. */
bl_status bl_match_plocs(const bl_real *true_plocs, int n_true, const bl_real *est_plocs,
                         int n_est, const bl_match_opts *opts, const bl_real *true_mags,
                         const bl_real *est_mags, int *true_idx, int *est_idx, int *n_matched);

#endif
