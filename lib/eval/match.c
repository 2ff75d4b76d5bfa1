#include "lib/eval/match.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Workspace of the shortest-augmenting-path solver for an nr x nc problem, nr <= nc. */
typedef struct {
    double *u, *v, *spc;    /* row duals (nr), column duals (nc), shortest path costs (nc) */
    int *path, *row4col, *col4row, *remaining;  /* (nc), (nc), (nr), (nc) */
    uint8_t *sr, *sc;       /* rows / columns in the current search tree */
} bl_lsap_work;

static void bl_lsap_work_init(bl_lsap_work *w, int nr, int nc)
{
    w->u = bl_calloc((size_t)nr + 1, sizeof(double));
    w->v = bl_calloc((size_t)nc + 1, sizeof(double));
    w->spc = bl_malloc(((size_t)nc + 1) * sizeof(double));
    w->path = bl_malloc(((size_t)nc + 1) * sizeof(int));
    w->row4col = bl_malloc(((size_t)nc + 1) * sizeof(int));
    w->col4row = bl_malloc(((size_t)nr + 1) * sizeof(int));
    w->remaining = bl_malloc(((size_t)nc + 1) * sizeof(int));
    w->sr = bl_malloc((size_t)nr + 1);
    w->sc = bl_malloc((size_t)nc + 1);
    for (int j = 0; j < nc; j++) w->row4col[j] = -1;
    for (int i = 0; i < nr; i++) w->col4row[i] = -1;
}

static void bl_lsap_work_release(bl_lsap_work *w)
{
    free(w->u);
    free(w->v);
    free(w->spc);
    free(w->path);
    free(w->row4col);
    free(w->col4row);
    free(w->remaining);
    free(w->sr);
    free(w->sc);
}

/* Dijkstra on reduced costs cost[i][j] - u[i] - v[j] >= 0 from free row `i` to the nearest
 * free column (the sink). Columns are scanned in decreasing index order and an equal-cost
 * free column replaces the current best, so ties go to the lowest column index. */
static int bl_lsap_augmenting_path(int nc, const double *cost, bl_lsap_work *w, int i,
                                   double *min_val)
{
    double mv = 0;
    int n_remaining = nc;
    for (int it = 0; it < nc; it++) {
        w->remaining[it] = nc - it - 1;
        w->spc[it] = INFINITY;
        w->sc[it] = 0;
    }
    int sink = -1;
    while (sink == -1) {
        int index = -1;
        double lowest = INFINITY;
        w->sr[i] = 1;
        for (int it = 0; it < n_remaining; it++) {
            int j = w->remaining[it];
            double r = mv + cost[(size_t)i * nc + j] - w->u[i] - w->v[j];
            if (r < w->spc[j]) {
                w->path[j] = i;
                w->spc[j] = r;
            }
            if (w->spc[j] < lowest || (w->spc[j] == lowest && w->row4col[j] == -1)) {
                lowest = w->spc[j];
                index = it;
            }
        }
        mv = lowest;
        if (index < 0 || mv == INFINITY) return -1;
        int j = w->remaining[index];
        if (w->row4col[j] == -1)
            sink = j;
        else
            i = w->row4col[j];
        w->sc[j] = 1;
        w->remaining[index] = w->remaining[--n_remaining];
    }
    *min_val = mv;
    return sink;
}

/* nr <= nc; cost finite. */
static void bl_lsap_solve_wide(int nr, int nc, const double *cost, int *row_to_col)
{
    bl_lsap_work w;
    bl_lsap_work_init(&w, nr, nc);
    for (int cur = 0; cur < nr; cur++) {
        memset(w.sr, 0, (size_t)nr);
        double min_val = 0;
        int sink = bl_lsap_augmenting_path(nc, cost, &w, cur, &min_val);
        /* finite costs and nr <= nc: a free column is always reachable */
        BL_ASSERT(sink >= 0, "lsap: no augmenting path for row %d (%d x %d)", cur, nr, nc);
        w.u[cur] += min_val;
        for (int i = 0; i < nr; i++)
            if (w.sr[i] && i != cur) w.u[i] += min_val - w.spc[w.col4row[i]];
        for (int j = 0; j < nc; j++)
            if (w.sc[j]) w.v[j] -= min_val - w.spc[j];
        for (int j = sink;;) {
            int i = w.path[j];
            w.row4col[j] = i;
            int t = w.col4row[i];
            w.col4row[i] = j;
            j = t;
            if (i == cur) break;
        }
    }
    memcpy(row_to_col, w.col4row, (size_t)nr * sizeof(int));
    bl_lsap_work_release(&w);
}

bl_status bl_lsap_solve(int nr, int nc, const double *cost, int *row_to_col)
{
    BL_ASSERT(nr >= 0 && nc >= 0, "lsap: negative size %d x %d", nr, nc);
    for (int i = 0; i < nr; i++) row_to_col[i] = -1;
    if (nr == 0 || nc == 0) return BL_OK;
    for (size_t k = 0; k < (size_t)nr * nc; k++)
        if (!isfinite(cost[k]))
            return bl_error(BL_ERR_RANGE, "linear assignment: cost[%zu][%zu] = %g is not finite",
                            k / (size_t)nc, k % (size_t)nc, cost[k]);
    if (nr <= nc) {
        bl_lsap_solve_wide(nr, nc, cost, row_to_col);
        return BL_OK;
    }
    /* more rows than columns: solve the transpose, columns become rows */
    double *t = bl_malloc((size_t)nr * nc * sizeof(double));
    int *col_to_row = bl_malloc((size_t)nc * sizeof(int));
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < nc; j++) t[(size_t)j * nr + i] = cost[(size_t)i * nc + j];
    bl_lsap_solve_wide(nc, nr, t, col_to_row);
    for (int j = 0; j < nc; j++) row_to_col[col_to_row[j]] = j;
    free(t);
    free(col_to_row);
    return BL_OK;
}

static int bl_uf_find(int *parent, int x)
{
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

/* The allowed graph splits into connected components; pairs never cross components, so each
 * is solved alone (with sparse sources and a 1-pixel slack they have one or two nodes). Within
 * a component with k = min(rows, cols), allowed costs are shifted to [0, range] and forbidden
 * pairs cost M = (k + 1) * range (1 if range = 0): an assignment with f forbidden pairs costs
 * at most f*M + (k - f)*range < (f + 1)*M, so fewer forbidden pairs always wins, and among
 * assignments with the same count the allowed total decides. */
bl_status bl_lsap_solve_allowed(int nr, int nc, const double *cost, const uint8_t *allowed,
                                int *row_to_col, int *n_pairs)
{
    BL_ASSERT(nr >= 0 && nc >= 0, "lsap: negative size %d x %d", nr, nc);
    *n_pairs = 0;
    for (int i = 0; i < nr; i++) row_to_col[i] = -1;
    if (nr == 0 || nc == 0) return BL_OK;
    for (size_t k = 0; k < (size_t)nr * nc; k++)
        if (allowed[k] && !isfinite(cost[k]))
            return bl_error(BL_ERR_RANGE, "linear assignment: allowed cost[%zu][%zu] = %g is not finite",
                            k / (size_t)nc, k % (size_t)nc, cost[k]);
    int n = nr + nc;
    int *parent = bl_malloc((size_t)n * sizeof(int));
    for (int x = 0; x < n; x++) parent[x] = x;
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < nc; j++)
            if (allowed[(size_t)i * nc + j]) {
                int a = bl_uf_find(parent, i), b = bl_uf_find(parent, nr + j);
                if (a != b) parent[a < b ? b : a] = a < b ? a : b;
            }
    int *rows = bl_malloc((size_t)nr * sizeof(int)), *cols = bl_malloc((size_t)nc * sizeof(int));
    int *sub_r2c = bl_malloc((size_t)nr * sizeof(int));
    double *sub = bl_malloc((size_t)nr * nc * sizeof(double));
    uint8_t *done = bl_calloc((size_t)n, 1);
    bl_status st = BL_OK;
    for (int root0 = 0; root0 < nr && st == BL_OK; root0++) {
        int root = bl_uf_find(parent, root0);
        if (done[root]) continue;
        done[root] = 1;
        int r = 0, c = 0;
        for (int i = 0; i < nr; i++)
            if (bl_uf_find(parent, i) == root) rows[r++] = i;
        for (int j = 0; j < nc; j++)
            if (bl_uf_find(parent, nr + j) == root) cols[c++] = j;
        if (c == 0) continue;
        double cmin = INFINITY, cmax = -INFINITY;
        for (int a = 0; a < r; a++)
            for (int b = 0; b < c; b++) {
                size_t k = (size_t)rows[a] * nc + cols[b];
                if (allowed[k]) {
                    cmin = fmin(cmin, cost[k]);
                    cmax = fmax(cmax, cost[k]);
                }
            }
        double range = cmax - cmin, big = range > 0 ? ((r < c ? r : c) + 1) * range : 1.0;
        if (!isfinite(big)) {
            st = bl_error(BL_ERR_RANGE, "linear assignment: cost range %g too large", range);
            break;
        }
        for (int a = 0; a < r; a++)
            for (int b = 0; b < c; b++) {
                size_t k = (size_t)rows[a] * nc + cols[b];
                sub[(size_t)a * c + b] = allowed[k] ? cost[k] - cmin : big;
            }
        st = bl_lsap_solve(r, c, sub, sub_r2c);
        for (int a = 0; a < r && st == BL_OK; a++) {
            int b = sub_r2c[a];
            if (b >= 0 && allowed[(size_t)rows[a] * nc + cols[b]]) {
                row_to_col[rows[a]] = cols[b];
                (*n_pairs)++;
            }
        }
    }
    free(parent);
    free(rows);
    free(cols);
    free(sub_r2c);
    free(sub);
    free(done);
    return st;
}

bl_status bl_match_plocs(const bl_real *true_plocs, int n_true, const bl_real *est_plocs,
                         int n_est, const bl_match_opts *opts, const bl_real *true_mags,
                         const bl_real *est_mags, int *true_idx, int *est_idx, int *n_matched)
{
    *n_matched = 0;
    if (n_true == 0 || n_est == 0) return BL_OK;
    int use_mag = opts->mag_slack > 0;
    BL_ASSERT(!use_mag || (true_mags && est_mags), "match: mag_slack %g needs magnitudes",
              opts->mag_slack);
    size_t nn = (size_t)n_true * n_est;
    double *dist = bl_malloc(nn * sizeof(double));
    uint8_t *allowed = bl_malloc(nn);
    int *t2e = bl_malloc((size_t)n_true * sizeof(int));
    for (int i = 0; i < n_true; i++)
        for (int j = 0; j < n_est; j++) {
            double dr = (double)true_plocs[2 * i] - est_plocs[2 * j];
            double dc = (double)true_plocs[2 * i + 1] - est_plocs[2 * j + 1];
            double d = sqrt(dr * dr + dc * dc);
            size_t k = (size_t)i * n_est + j;
            /* written as a negation so a NaN distance or magnitude forbids the pair */
            int ok = d <= opts->dist_slack;
            if (use_mag) ok = ok && fabs((double)true_mags[i] - est_mags[j]) <= opts->mag_slack;
            dist[k] = ok ? d : 0;
            allowed[k] = (uint8_t)ok;
        }
    int n = 0;
    bl_status st = bl_lsap_solve_allowed(n_true, n_est, dist, allowed, t2e, &n);
    if (st == BL_OK) {
        int m = 0;
        for (int i = 0; i < n_true; i++)
            if (t2e[i] >= 0) {
                true_idx[m] = i;
                est_idx[m] = t2e[i];
                m++;
            }
        *n_matched = m;
    }
    free(dist);
    free(allowed);
    free(t2e);
    return st;
}
