#include "lib/sim/color_model.h"

#include <errno.h>
#include <gsl/gsl_linalg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sim/datadir.h"

void bl_gmm_free(bl_gmm *g)
{
    if (!g) return;
    free(g->weights);
    free(g->cum_weights);
    free(g->means);
    free(g->covs);
    free(g->chol);
    free(g);
}

/* Parse exactly n doubles from s; 1 on success. */
static int bl_parse_doubles(const char *s, int n, double *v)
{
    char *end;
    for (int i = 0; i < n; i++) {
        errno = 0;
        v[i] = strtod(s, &end);
        if (end == s || errno == ERANGE || !isfinite(v[i])) return 0;
        s = end;
    }
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    return *s == 0;
}

static int bl_starts(const char *line, const char *word)
{
    size_t n = strlen(word);
    return strncmp(line, word, n) == 0 && (line[n] == ' ' || line[n] == '\t' || line[n] == '\n' ||
                                           line[n] == '\r' || line[n] == 0);
}

static bl_status bl_gmm_finish(bl_gmm *g, const char *path)
{
    const int K = g->n_components, D = g->dim;
    double sum = 0;
    for (int k = 0; k < K; k++) {
        if (!(g->weights[k] >= 0))
            return bl_error(BL_ERR_FORMAT, "%s: model '%s': component %d has weight %g < 0", path,
                            g->name, k, g->weights[k]);
        sum += g->weights[k];
    }
    if (fabs(sum - 1) > 1e-6)
        return bl_error(BL_ERR_FORMAT, "%s: model '%s': weights sum to %.9g, not 1", path, g->name, sum);
    double acc = 0;
    for (int k = 0; k < K; k++) {
        g->weights[k] /= sum;
        acc += g->weights[k];
        g->cum_weights[k] = acc;
    }
    g->cum_weights[K - 1] = 1;
    for (int k = 0; k < K; k++) {
        double *L = g->chol + (size_t)k * D * D;
        memcpy(L, g->covs + (size_t)k * D * D, (size_t)(D * D) * sizeof(double));
        gsl_matrix_view m = gsl_matrix_view_array(L, (size_t)D, (size_t)D);
        gsl_error_handler_t *old = gsl_set_error_handler_off();
        int st = gsl_linalg_cholesky_decomp1(&m.matrix);
        gsl_set_error_handler(old);
        if (st != GSL_SUCCESS)
            return bl_error(BL_ERR_FORMAT, "%s: model '%s': covariance of component %d is not "
                            "positive definite", path, g->name, k);
        for (int i = 0; i < D; i++)
            for (int j = i + 1; j < D; j++) L[i * D + j] = 0; /* keep the lower factor only */
    }
    return BL_OK;
}

bl_status bl_gmm_load(bl_gmm **out, const char *path, const char *name)
{
    *out = NULL;
    char full[4096];
    bl_status s = bl_data_find(path, full, sizeof full);
    if (s != BL_OK) return s;
    FILE *f = fopen(full, "r");
    if (!f) return bl_error(BL_ERR_IO, "%s: cannot open: %s", full, strerror(errno));
    bl_gmm *g = bl_calloc(1, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    char line[4096];
    int lineno = 0, in_model = 0, found = 0, comp = -1, cov_row = -1;
    unsigned char *seen = NULL;  /* which components got weight / mean / covariance */
    s = BL_OK;
#define BL_FAIL(...) do { s = bl_error(BL_ERR_FORMAT, __VA_ARGS__); goto done; } while (0)
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == 0) continue;
        if (!in_model) {
            char mname[256];
            if (bl_starts(p, "MODEL") && sscanf(p + 5, "%255s", mname) == 1 && strcmp(mname, name) == 0) {
                in_model = 1;
                found = 1;
            }
            continue;
        }
        if (bl_starts(p, "END")) break;
        if (cov_row >= 0) {
            if (!bl_parse_doubles(p, g->dim, g->covs + ((size_t)comp * g->dim + cov_row) * g->dim))
                BL_FAIL("%s:%d: expected %d numbers (covariance row %d of component %d)", full,
                        lineno, g->dim, cov_row, comp);
            if (++cov_row == g->dim) {
                seen[comp] |= 4;
                cov_row = -1;
            }
            continue;
        }
        if (bl_starts(p, "n_components") || bl_starts(p, "dimension")) {
            int v = 0, is_k = bl_starts(p, "n_components");
            char extra;
            if (sscanf(p + (is_k ? 12 : 9), "%d %c", &v, &extra) != 1 || v < 1 || v > 100000 ||
                (!is_k && v > BL_GMM_MAX_DIM))
                BL_FAIL("%s:%d: bad %s", full, lineno, is_k ? "n_components" : "dimension");
            if (is_k) g->n_components = v; else g->dim = v;
            if (g->n_components && g->dim && !g->weights) {
                size_t K = (size_t)g->n_components, D = (size_t)g->dim;
                g->weights = bl_calloc(K, sizeof(double));
                g->cum_weights = bl_calloc(K, sizeof(double));
                g->means = bl_calloc(K * D, sizeof(double));
                g->covs = bl_calloc(K * D * D, sizeof(double));
                g->chol = bl_calloc(K * D * D, sizeof(double));
                seen = bl_calloc(K, 1);
            }
        } else if (bl_starts(p, "component")) {
            if (!g->weights) BL_FAIL("%s:%d: 'component' before n_components and dimension", full, lineno);
            char extra;
            if (sscanf(p + 9, "%d %c", &comp, &extra) != 1 || comp < 0 || comp >= g->n_components)
                BL_FAIL("%s:%d: bad component index (model has %d)", full, lineno, g->n_components);
        } else if (bl_starts(p, "weight") || bl_starts(p, "mean") || bl_starts(p, "covariance")) {
            if (comp < 0) BL_FAIL("%s:%d: value outside a 'component' block", full, lineno);
            if (bl_starts(p, "weight")) {
                if (!bl_parse_doubles(p + 6, 1, &g->weights[comp]))
                    BL_FAIL("%s:%d: bad weight", full, lineno);
                seen[comp] |= 1;
            } else if (bl_starts(p, "mean")) {
                if (!bl_parse_doubles(p + 4, g->dim, g->means + (size_t)comp * g->dim))
                    BL_FAIL("%s:%d: expected %d numbers after 'mean'", full, lineno, g->dim);
                seen[comp] |= 2;
            } else {
                cov_row = 0;
            }
        } else if (!(bl_starts(p, "attr") || bl_starts(p, "source_file") ||
                     bl_starts(p, "sklearn_class") || bl_starts(p, "covariance_type") ||
                     bl_starts(p, "covariances_shape") || bl_starts(p, "weights_sum"))) {
            BL_FAIL("%s:%d: unexpected line in model '%s'", full, lineno, name);
        }
    }
    if (ferror(f)) {
        s = bl_error(BL_ERR_IO, "%s: read error", full);
        goto done;
    }
    if (!found) BL_FAIL("%s: no model named '%s'", full, name);
    if (cov_row >= 0) BL_FAIL("%s: model '%s' ends inside a covariance (truncated?)", full, name);
    if (!g->weights) BL_FAIL("%s: model '%s' lacks n_components or dimension", full, name);
    for (int k = 0; k < g->n_components; k++)
        if (seen[k] != 7)
            BL_FAIL("%s: model '%s': component %d lacks its %s (truncated?)", full, name, k,
                    !(seen[k] & 1) ? "weight" : !(seen[k] & 2) ? "mean" : "covariance");
    {
        char where[4200];
        snprintf(where, sizeof where, "%s", full);
        s = bl_gmm_finish(g, where);
    }
#undef BL_FAIL
done:
    fclose(f);
    free(seen);
    if (s != BL_OK) {
        bl_gmm_free(g);
        return s;
    }
    *out = g;
    return BL_OK;
}

void bl_gmm_sample(const bl_gmm *g, bl_rng *rng, double *x)
{
    const int D = g->dim;
    double u = bl_rng_uniform(rng);
    /* first component with u < cum_weight (binary search) */
    int lo = 0, hi = g->n_components - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (u < g->cum_weights[mid]) hi = mid; else lo = mid + 1;
    }
    const double *mu = g->means + (size_t)lo * D, *L = g->chol + (size_t)lo * D * D;
    double z[BL_GMM_MAX_DIM];
    for (int i = 0; i < D; i++) z[i] = bl_rng_normal(rng);
    for (int i = 0; i < D; i++) {
        double acc = mu[i];
        for (int j = 0; j <= i; j++) acc += L[i * D + j] * z[j];
        x[i] = acc;
    }
}

void bl_gmm_mean(const bl_gmm *g, double *mean)
{
    for (int d = 0; d < g->dim; d++) {
        mean[d] = 0;
        for (int k = 0; k < g->n_components; k++) mean[d] += g->weights[k] * g->means[k * g->dim + d];
    }
}

void bl_color_proportions(const double *log_ratios, int n_bands, int ref_band, double *prop)
{
    prop[ref_band] = 1;
    for (int k = ref_band - 1; k >= 0; k--) {
        double lr = fmin(fmax(log_ratios[k], -BL_COLOR_LOG_RATIO_CLIP), BL_COLOR_LOG_RATIO_CLIP);
        prop[k] = prop[k + 1] / exp(lr);
    }
    for (int k = ref_band + 1; k < n_bands; k++) {
        double lr = fmin(fmax(log_ratios[k - 1], -BL_COLOR_LOG_RATIO_CLIP), BL_COLOR_LOG_RATIO_CLIP);
        prop[k] = prop[k - 1] * exp(lr);
    }
}
