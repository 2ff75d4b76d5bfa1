#include "lib/eval/metrics.h"

#include <jansson.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const bl_galaxy_param_names[BL_N_GALAXY_PARAMS] = {
    "disk_frac", "beta_radians", "disk_q", "a_d", "bulge_q", "a_b",
};

/* one tracked factor */
typedef struct bl_metrics_factor_desc {
    char name[BL_METRICS_NAME_MAX], field[BL_METRICS_NAME_MAX];
    int column, value_dim, discrete, source_type;
} bl_metrics_factor_desc;

/* what one factor accumulates */
typedef struct bl_metrics_factor_sums {
    int seen_field;
    int64_t n_matched, n_correct;
    double sq_err, abs_err;
    int64_t n_tiles, n_pit, n_in68, n_in95, n_hit_tiles, n_hit;
    double nll_sum;
} bl_metrics_factor_sums;

/* every counter is part of bl_metrics_get_state / bl_metrics_set_state */
struct bl_metrics {
    bl_metrics_opts opts;
    int n_bands, n_bins;
    /* detection histograms over magnitude bins */
    int64_t n_true[BL_METRICS_MAX_CUTOFFS + 1], n_est[BL_METRICS_MAX_CUTOFFS + 1];
    int64_t n_true_matched[BL_METRICS_MAX_CUTOFFS + 1], n_est_matched[BL_METRICS_MAX_CUTOFFS + 1];
    int64_t n_matches, n_type_correct;
    double flux_abs_err[BL_METRICS_MAX_BANDS];
    int seen_shape;  /* some batch had the fields in both catalogs */
    int64_t n_matched_galaxies;
    double shape_abs_err[BL_N_GALAXY_PARAMS];
    int n_factors;
    bl_metrics_factor_desc fdesc[BL_METRICS_MAX_FACTORS];
    bl_metrics_factor_sums factor[BL_METRICS_MAX_FACTORS];
};

/* pointers to m's counters and sums in the state's order (the flags are handled apart) */
static void bl_metrics_state_fields(bl_metrics *m, int64_t **ints, double **sums)
{
    int k = 0, j = 0;
    for (int b = 0; b <= BL_METRICS_MAX_CUTOFFS; b++) {
        ints[k++] = &m->n_true[b];
        ints[k++] = &m->n_est[b];
        ints[k++] = &m->n_true_matched[b];
        ints[k++] = &m->n_est_matched[b];
    }
    ints[k++] = &m->n_matches;
    ints[k++] = &m->n_type_correct;
    ints[k++] = &m->n_matched_galaxies;
    for (int b = 0; b < BL_METRICS_MAX_BANDS; b++) sums[j++] = &m->flux_abs_err[b];
    for (int p = 0; p < BL_N_GALAXY_PARAMS; p++) sums[j++] = &m->shape_abs_err[p];
    for (int f = 0; f < BL_METRICS_MAX_FACTORS; f++) {
        bl_metrics_factor_sums *fs = &m->factor[f];
        int64_t *fi[] = {&fs->n_matched, &fs->n_correct, &fs->n_tiles, &fs->n_pit, &fs->n_in68,
                         &fs->n_in95, &fs->n_hit_tiles, &fs->n_hit};
        for (size_t q = 0; q < sizeof fi / sizeof fi[0]; q++) ints[k++] = fi[q];
        sums[j++] = &fs->sq_err;
        sums[j++] = &fs->abs_err;
        sums[j++] = &fs->nll_sum;
    }
    BL_ASSERT(k + BL_METRICS_STATE_FLAGS == BL_METRICS_STATE_INTS && j == BL_METRICS_STATE_SUMS,
              "bl_metrics_state_fields: %d counts and %d sums, metrics.h says %d and %d",
              k + BL_METRICS_STATE_FLAGS, j, BL_METRICS_STATE_INTS, BL_METRICS_STATE_SUMS);
}

void bl_metrics_get_state(const bl_metrics *m, int64_t *ints, double *sums)
{
    int64_t *ip[BL_METRICS_STATE_INTS];
    double *dp[BL_METRICS_STATE_SUMS];
    bl_metrics_state_fields((bl_metrics *)m, ip, dp);
    const int n = BL_METRICS_STATE_INTS - BL_METRICS_STATE_FLAGS;
    for (int k = 0; k < n; k++) ints[k] = *ip[k];
    ints[n] = m->seen_shape;
    for (int f = 0; f < BL_METRICS_MAX_FACTORS; f++) ints[n + 1 + f] = m->factor[f].seen_field;
    for (int j = 0; j < BL_METRICS_STATE_SUMS; j++) sums[j] = *dp[j];
}

void bl_metrics_set_state(bl_metrics *m, const int64_t *ints, const double *sums)
{
    int64_t *ip[BL_METRICS_STATE_INTS];
    double *dp[BL_METRICS_STATE_SUMS];
    bl_metrics_state_fields(m, ip, dp);
    const int n = BL_METRICS_STATE_INTS - BL_METRICS_STATE_FLAGS;
    for (int k = 0; k < n; k++) *ip[k] = ints[k];
    m->seen_shape = ints[n] > 0;
    for (int f = 0; f < BL_METRICS_MAX_FACTORS; f++) m->factor[f].seen_field = ints[n + 1 + f] > 0;
    for (int j = 0; j < BL_METRICS_STATE_SUMS; j++) *dp[j] = sums[j];
}

void bl_metrics_opts_default(bl_metrics_opts *opts)
{
    static const double cutoffs[] = {19, 19.4, 19.8, 20.2, 20.6, 21, 21.4, 21.8};
    memset(opts, 0, sizeof *opts);
    opts->match.dist_slack = 1.0;
    opts->match.mag_slack = 0;
    opts->mag_band = 2;
    opts->n_cutoffs = (int)(sizeof cutoffs / sizeof cutoffs[0]);
    memcpy(opts->mag_cutoffs, cutoffs, sizeof cutoffs);
    opts->exclude_last_bin = 0;
}

bl_status bl_metrics_opts_from_config(bl_config *cfg, const char *group, int n_bands,
                                      bl_metrics_opts *opts)
{
    bl_metrics_opts_default(opts);
    char key[256];
    bl_status st;
    int64_t band;
#define BL_KEY(name) (snprintf(key, sizeof key, "%s.%s", group, name), key)
    if ((st = bl_config_double(cfg, BL_KEY("dist_slack"), opts->match.dist_slack, 0,
                               &opts->match.dist_slack)) ||
        (st = bl_config_check_range(cfg, key, opts->match.dist_slack, 0, INFINITY)))
        return st;
    if ((st = bl_config_double(cfg, BL_KEY("mag_slack"), opts->match.mag_slack, 0, &opts->match.mag_slack)) ||
        (st = bl_config_check_range(cfg, key, opts->match.mag_slack, 0, INFINITY)))
        return st;
    if ((st = bl_config_int(cfg, BL_KEY("mag_band"), opts->mag_band, 0, &band)) ||
        (st = bl_config_check_range(cfg, key, (double)band, -1, n_bands - 1)))
        return st;
    opts->mag_band = (int)band;
    if (opts->match.mag_slack > 0 && opts->mag_band == BL_METRICS_NO_BAND)
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' = -1 (no band) but mag_slack = %g needs a band",
                        bl_config_where(cfg, key), key, opts->match.mag_slack);
    if (bl_config_exists(cfg, BL_KEY("mag_cutoffs"))) {
        if ((st = bl_config_doubles(cfg, key, 0, BL_METRICS_MAX_CUTOFFS, opts->mag_cutoffs,
                                    &opts->n_cutoffs)))
            return st;
        for (int i = 0; i < opts->n_cutoffs; i++)
            if (!isfinite(opts->mag_cutoffs[i]) || (i > 0 && opts->mag_cutoffs[i] <= opts->mag_cutoffs[i - 1]))
                return bl_error(BL_ERR_CONFIG, "%s: key '%s': cutoffs must be finite and strictly increasing (entry %d = %g)",
                                bl_config_where(cfg, key), key, i, opts->mag_cutoffs[i]);
    }
    if ((st = bl_config_bool(cfg, BL_KEY("exclude_last_bin"), opts->exclude_last_bin, 0, &opts->exclude_last_bin)))
        return st;
#undef BL_KEY
    return BL_OK;
}

bl_metrics *bl_metrics_alloc(const bl_metrics_opts *opts, int n_bands)
{
    BL_ASSERT(n_bands > 0 && n_bands <= BL_METRICS_MAX_BANDS, "metrics: n_bands %d not in [1, %d]",
              n_bands, BL_METRICS_MAX_BANDS);
    BL_ASSERT(opts->n_cutoffs >= 0 && opts->n_cutoffs <= BL_METRICS_MAX_CUTOFFS,
              "metrics: %d cutoffs", opts->n_cutoffs);
    BL_ASSERT(opts->mag_band == BL_METRICS_NO_BAND || (opts->mag_band >= 0 && opts->mag_band < n_bands),
              "metrics: mag_band %d with %d bands", opts->mag_band, n_bands);
    bl_metrics *m = bl_calloc(1, sizeof *m);
    m->opts = *opts;
    m->n_bands = n_bands;
    m->n_bins = opts->n_cutoffs + 1;
    return m;
}

void bl_metrics_free(bl_metrics *m) { free(m); }

void bl_metrics_reset(bl_metrics *m)
{
    memset(m->n_true, 0, sizeof m->n_true);
    memset(m->n_est, 0, sizeof m->n_est);
    memset(m->n_true_matched, 0, sizeof m->n_true_matched);
    memset(m->n_est_matched, 0, sizeof m->n_est_matched);
    m->n_matches = m->n_type_correct = 0;
    memset(m->flux_abs_err, 0, sizeof m->flux_abs_err);
    m->seen_shape = 0;
    m->n_matched_galaxies = 0;
    memset(m->shape_abs_err, 0, sizeof m->shape_abs_err);
    memset(m->factor, 0, sizeof m->factor); /* the sums; the tracked factors stay */
}

int bl_metrics_add_factor(bl_metrics *m, const bl_metrics_factor *f)
{
    BL_ASSERT(m->n_factors < BL_METRICS_MAX_FACTORS, "metrics: more than %d factors", BL_METRICS_MAX_FACTORS);
    BL_ASSERT(f->name && f->name[0] && f->field && f->value_dim >= 1 && f->column >= 0 &&
                  f->source_type >= -1 && f->source_type <= 1,
              "metrics: factor '%s' field '%s' column %d value_dim %d source_type %d",
              f->name ? f->name : "(null)", f->field ? f->field : "(null)", f->column,
              f->value_dim, f->source_type);
    bl_metrics_factor_desc *d = &m->fdesc[m->n_factors];
    memset(d, 0, sizeof *d);
    memset(&m->factor[m->n_factors], 0, sizeof m->factor[0]);
    snprintf(d->name, sizeof d->name, "%s", f->name);
    snprintf(d->field, sizeof d->field, "%s", f->field);
    d->column = f->column;
    d->value_dim = f->value_dim;
    d->discrete = f->discrete;
    d->source_type = f->source_type;
    return m->n_factors++;
}

bl_status bl_metrics_update_factor_q(bl_metrics *m, int f, int64_t n, const uint8_t *sel,
                                     const double *nll, const double *pit, const uint8_t *hit)
{
    BL_ASSERT(f >= 0 && f < m->n_factors, "metrics: factor %d of %d", f, m->n_factors);
    bl_metrics_factor_sums *d = &m->factor[f];
    const int vd = m->fdesc[f].value_dim;
    for (int64_t t = 0; t < n; t++)
        if (sel[t] && !isfinite(nll[t]))
            return bl_error(BL_ERR_RANGE, "metrics: factor '%s': -log q of the true value on tile %lld is %g",
                            m->fdesc[f].name, (long long)t, nll[t]);
    for (int64_t t = 0; t < n; t++) {
        if (!sel[t]) continue;
        d->nll_sum += nll[t];
        d->n_tiles++;
        for (int k = 0; pit && k < vd; k++) {
            double u = pit[t * vd + k];
            if (isnan(u)) continue;
            d->n_pit++;
            d->n_in68 += u >= 0.5 - 0.68 / 2 && u <= 0.5 + 0.68 / 2;
            d->n_in95 += u >= 0.5 - 0.95 / 2 && u <= 0.5 + 0.95 / 2;
        }
        if (hit) {
            d->n_hit_tiles++;
            d->n_hit += hit[t] != 0;
        }
    }
    return BL_OK;
}

/* number of cutoffs < mag: bin k holds (c[k-1], c[k]]; a NaN magnitude compares false
 * everywhere and lands in bin 0, as in the original's formula */
static int bl_mag_bin(const bl_metrics_opts *o, double mag)
{
    int k = 0;
    while (k < o->n_cutoffs && o->mag_cutoffs[k] < mag) k++;
    return k;
}

static int bl_is_galaxy(const bl_tensor *st, int64_t slot)
{
    return st && lrint((double)st->data[slot]) == 1;
}

bl_status bl_metrics_update(bl_metrics *m, const bl_full_catalog *truth, const bl_full_catalog *est)
{
    BL_ASSERT(truth->B == est->B && truth->n_bands == est->n_bands && truth->n_bands == m->n_bands,
              "metrics: truth B %lld, %d bands vs estimate B %lld, %d bands (metrics %d bands)",
              (long long)truth->B, truth->n_bands, (long long)est->B, est->n_bands, m->n_bands);
    const int nb = m->n_bands, band = m->opts.mag_band;
    const int64_t B = truth->B, Mt = truth->M, Me = est->M;
    bl_real *tflux = bl_malloc(((size_t)(B * Mt * nb) + 1) * sizeof(bl_real));
    bl_real *eflux = bl_malloc(((size_t)(B * Me * nb) + 1) * sizeof(bl_real));
    bl_full_catalog_on_fluxes(truth, tflux);
    bl_full_catalog_on_fluxes(est, eflux);
    bl_real *tmag = bl_malloc(((size_t)Mt + 1) * sizeof(bl_real));
    bl_real *emag = bl_malloc(((size_t)Me + 1) * sizeof(bl_real));
    int64_t mmin = Mt < Me ? Mt : Me;
    int *ti = bl_malloc(((size_t)mmin + 1) * sizeof(int)), *ei = bl_malloc(((size_t)mmin + 1) * sizeof(int));
    const bl_tensor *tst = bl_full_catalog_get(truth, "source_type");
    const bl_tensor *est_st = bl_full_catalog_get(est, "source_type");
    const bl_tensor *tgp = bl_full_catalog_get(truth, "galaxy_params");
    const bl_tensor *egp = bl_full_catalog_get(est, "galaxy_params");
    if (tgp && egp) m->seen_shape = 1;
    /* each factor's field in both catalogs (NULL: not scored in this batch) */
    const bl_tensor *tf[BL_METRICS_MAX_FACTORS], *ef[BL_METRICS_MAX_FACTORS];
    for (int f = 0; f < m->n_factors; f++) {
        const bl_metrics_factor_desc *d = &m->fdesc[f];
        tf[f] = ef[f] = NULL;
        if (strcmp(d->field, "n_sources") == 0) continue;
        tf[f] = bl_full_catalog_get(truth, d->field);
        ef[f] = bl_full_catalog_get(est, d->field);
        if (!tf[f] || !ef[f] || tf[f]->shape[2] < d->column + d->value_dim ||
            ef[f]->shape[2] != tf[f]->shape[2]) {
            tf[f] = ef[f] = NULL;
            continue;
        }
        m->factor[f].seen_field = 1;
    }
    bl_status st = BL_OK;
    for (int64_t b = 0; b < B && st == BL_OK; b++) {
        int nt = truth->n_sources[b], ne = est->n_sources[b];
        BL_ASSERT(nt >= 0 && nt <= Mt && ne >= 0 && ne <= Me,
                  "metrics: image %lld has %d / %d sources for M = %lld / %lld", (long long)b, nt,
                  ne, (long long)Mt, (long long)Me);
        for (int i = 0; i < nt; i++)
            tmag[i] = band == BL_METRICS_NO_BAND ? 1 : (bl_real)bl_flux_to_mag(tflux[(b * Mt + i) * nb + band]);
        for (int j = 0; j < ne; j++)
            emag[j] = band == BL_METRICS_NO_BAND ? 1 : (bl_real)bl_flux_to_mag(eflux[(b * Me + j) * nb + band]);
        int n = 0;
        st = bl_match_plocs(truth->plocs->data + b * Mt * 2, nt, est->plocs->data + b * Me * 2, ne,
                            &m->opts.match, tmag, emag, ti, ei, &n);
        if (st != BL_OK) {
            st = bl_error_context(st, "metrics: matching image %lld", (long long)b);
            break;
        }
        for (int i = 0; i < nt; i++) m->n_true[bl_mag_bin(&m->opts, tmag[i])]++;
        for (int j = 0; j < ne; j++) m->n_est[bl_mag_bin(&m->opts, emag[j])]++;
        m->n_matches += n;
        for (int k = 0; k < n; k++) {
            int64_t ts = b * Mt + ti[k], es = b * Me + ei[k];
            m->n_true_matched[bl_mag_bin(&m->opts, tmag[ti[k]])]++;
            m->n_est_matched[bl_mag_bin(&m->opts, emag[ei[k]])]++;
            int tg = bl_is_galaxy(tst, ts), eg = bl_is_galaxy(est_st, es);
            m->n_type_correct += tg == eg;
            for (int c = 0; c < nb; c++)
                m->flux_abs_err[c] += fabs((double)tflux[ts * nb + c] - eflux[es * nb + c]);
            if (tgp && egp && tg) {
                m->n_matched_galaxies++;
                for (int p = 0; p < BL_N_GALAXY_PARAMS; p++)
                    m->shape_abs_err[p] += fabs((double)tgp->data[ts * BL_N_GALAXY_PARAMS + p] -
                                                egp->data[es * BL_N_GALAXY_PARAMS + p]);
            }
            for (int f = 0; f < m->n_factors; f++) {
                const bl_metrics_factor_desc *d = &m->fdesc[f];
                bl_metrics_factor_sums *a = &m->factor[f];
                if (!tf[f] || (d->source_type >= 0 && tg != d->source_type)) continue;
                const int64_t w = tf[f]->shape[2];
                const bl_real *tv = tf[f]->data + ts * w + d->column, *ev = ef[f]->data + es * w + d->column;
                a->n_matched++;
                if (d->discrete) {
                    int same = 1;
                    for (int c = 0; c < d->value_dim; c++) same &= lrint((double)tv[c]) == lrint((double)ev[c]);
                    a->n_correct += same;
                } else {
                    for (int c = 0; c < d->value_dim; c++) {
                        double e = (double)tv[c] - ev[c];
                        a->sq_err += e * e;
                        a->abs_err += fabs(e);
                    }
                }
            }
        }
    }
    free(tflux);
    free(eflux);
    free(tmag);
    free(emag);
    free(ti);
    free(ei);
    return st;
}

static double bl_ratio(double num, double den) { return den > 0 ? num / den : NAN; }

/* F1 = 2PR / (P + R); 0 when both are 0 (nothing right), NaN when either is undefined */
static double bl_f1(double p, double r)
{
    if (isnan(p) || isnan(r)) return NAN;
    return p + r > 0 ? 2 * p * r / (p + r) : 0;
}

void bl_metrics_compute(const bl_metrics *m, bl_metrics_result *r)
{
    memset(r, 0, sizeof *r);
    r->n_bands = m->n_bands;
    r->n_bins = m->n_bins;
    int used = m->opts.exclude_last_bin ? m->n_bins - 1 : m->n_bins;
    for (int k = 0; k < m->n_bins; k++) {
        bl_metrics_bin *bin = &r->bins[k];
        bin->lo = k == 0 ? -INFINITY : m->opts.mag_cutoffs[k - 1];
        bin->hi = k == m->n_bins - 1 ? INFINITY : m->opts.mag_cutoffs[k];
        bin->n_true = m->n_true[k];
        bin->n_est = m->n_est[k];
        bin->n_true_matched = m->n_true_matched[k];
        bin->n_est_matched = m->n_est_matched[k];
        bin->precision = bl_ratio((double)bin->n_est_matched, (double)bin->n_est);
        bin->recall = bl_ratio((double)bin->n_true_matched, (double)bin->n_true);
        bin->f1 = bl_f1(bin->precision, bin->recall);
        if (k < used) {
            r->n_true += bin->n_true;
            r->n_est += bin->n_est;
            r->n_true_matched += bin->n_true_matched;
            r->n_est_matched += bin->n_est_matched;
        }
    }
    r->precision = bl_ratio((double)r->n_est_matched, (double)r->n_est);
    r->recall = bl_ratio((double)r->n_true_matched, (double)r->n_true);
    r->f1 = bl_f1(r->precision, r->recall);
    r->n_matches = m->n_matches;
    r->classification_acc = bl_ratio((double)m->n_type_correct, (double)m->n_matches);
    for (int c = 0; c < m->n_bands; c++)
        r->flux_mae[c] = bl_ratio(m->flux_abs_err[c], (double)m->n_matches);
    r->has_shape = m->seen_shape;
    r->n_matched_galaxies = m->n_matched_galaxies;
    for (int p = 0; p < BL_N_GALAXY_PARAMS; p++)
        r->shape_mae[p] = bl_ratio(m->shape_abs_err[p], (double)m->n_matched_galaxies);
    r->n_factors = m->n_factors;
    for (int f = 0; f < m->n_factors; f++) {
        const bl_metrics_factor_sums *d = &m->factor[f];
        const bl_metrics_factor_desc *fd = &m->fdesc[f];
        bl_metrics_factor_result *o = &r->factors[f];
        memcpy(o->name, fd->name, sizeof o->name);
        o->discrete = fd->discrete;
        o->value_dim = fd->value_dim;
        o->has_field = d->seen_field;
        o->n_matched = d->n_matched;
        const double nv = (double)d->n_matched * fd->value_dim;
        o->mse = fd->discrete ? NAN : bl_ratio(d->sq_err, nv);
        o->mae = fd->discrete ? NAN : bl_ratio(d->abs_err, nv);
        o->acc = fd->discrete ? bl_ratio((double)d->n_correct, (double)d->n_matched) : NAN;
        o->n_tiles = d->n_tiles;
        o->nll = bl_ratio(d->nll_sum, (double)d->n_tiles);
        o->has_cdf = d->n_pit > 0;
        o->coverage68 = bl_ratio((double)d->n_in68, (double)d->n_pit);
        o->coverage95 = bl_ratio((double)d->n_in95, (double)d->n_pit);
        o->has_hit = d->n_hit_tiles > 0;
        o->tile_acc = bl_ratio((double)d->n_hit, (double)d->n_hit_tiles);
    }
}

static json_t *bl_json_number(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static void bl_band_name(char *buf, size_t n, const char *const *band_names, int c)
{
    if (band_names && band_names[c])
        snprintf(buf, n, "%s", band_names[c]);
    else
        snprintf(buf, n, "band%d", c);
}

static json_t *bl_metrics_result_json(const bl_metrics_result *r, const char *const *band_names)
{
    json_t *o = json_object();
    json_object_set_new(o, "detection_precision", bl_json_number(r->precision));
    json_object_set_new(o, "detection_recall", bl_json_number(r->recall));
    json_object_set_new(o, "detection_f1", bl_json_number(r->f1));
    json_object_set_new(o, "n_true_sources", json_integer(r->n_true));
    json_object_set_new(o, "n_est_sources", json_integer(r->n_est));
    json_object_set_new(o, "n_matches", json_integer(r->n_matches));
    json_object_set_new(o, "classification_acc", bl_json_number(r->classification_acc));
    char key[96], name[32];
    for (int c = 0; c < r->n_bands; c++) {
        bl_band_name(name, sizeof name, band_names, c);
        snprintf(key, sizeof key, "flux_err_%s_mae", name);
        json_object_set_new(o, key, bl_json_number(r->flux_mae[c]));
    }
    if (r->has_shape) {
        json_object_set_new(o, "n_matched_galaxies", json_integer(r->n_matched_galaxies));
        for (int p = 0; p < BL_N_GALAXY_PARAMS; p++) {
            snprintf(key, sizeof key, "%s_mae", bl_galaxy_param_names[p]);
            json_object_set_new(o, key, bl_json_number(r->shape_mae[p]));
        }
    }
    json_t *factors = json_object();
    for (int f = 0; f < r->n_factors; f++) {
        const bl_metrics_factor_result *fr = &r->factors[f];
        if (!fr->has_field && fr->n_tiles == 0) continue;
        json_t *jf = json_object();
        if (fr->has_field) {
            json_object_set_new(jf, "n_matched", json_integer(fr->n_matched));
            if (fr->discrete) {
                json_object_set_new(jf, "acc", bl_json_number(fr->acc));
            } else {
                json_object_set_new(jf, "mse", bl_json_number(fr->mse));
                json_object_set_new(jf, "mae", bl_json_number(fr->mae));
            }
        }
        if (fr->n_tiles > 0) {
            json_object_set_new(jf, "n_tiles", json_integer(fr->n_tiles));
            json_object_set_new(jf, "nll", bl_json_number(fr->nll));
            if (fr->discrete) {
                if (fr->has_hit) json_object_set_new(jf, "tile_acc", bl_json_number(fr->tile_acc));
            } else {
                json_object_set_new(jf, "coverage_68", fr->has_cdf ? bl_json_number(fr->coverage68) : json_string("n/a"));
                json_object_set_new(jf, "coverage_95", fr->has_cdf ? bl_json_number(fr->coverage95) : json_string("n/a"));
            }
        }
        json_object_set_new(factors, fr->name, jf);
    }
    json_object_set_new(o, "factors", factors);
    json_t *bins = json_array();
    for (int k = 0; k < r->n_bins; k++) {
        const bl_metrics_bin *bin = &r->bins[k];
        json_t *jb = json_object();
        json_object_set_new(jb, "mag_lo", bl_json_number(bin->lo));
        json_object_set_new(jb, "mag_hi", bl_json_number(bin->hi));
        json_object_set_new(jb, "n_true_sources", json_integer(bin->n_true));
        json_object_set_new(jb, "n_est_sources", json_integer(bin->n_est));
        json_object_set_new(jb, "n_true_matches", json_integer(bin->n_true_matched));
        json_object_set_new(jb, "n_est_matches", json_integer(bin->n_est_matched));
        json_object_set_new(jb, "precision", bl_json_number(bin->precision));
        json_object_set_new(jb, "recall", bl_json_number(bin->recall));
        json_object_set_new(jb, "f1", bl_json_number(bin->f1));
        json_array_append_new(bins, jb);
    }
    json_object_set_new(o, "bins", bins);
    return o;
}

char *bl_metrics_result_to_json(const bl_metrics_result *r, const char *const *band_names)
{
    json_t *o = bl_metrics_result_json(r, band_names);
    char *s = json_dumps(o, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    BL_ASSERT(s, "bl_metrics_result_to_json: out of memory");
    return s;
}

static void bl_print_row(FILE *f, const char *label, int n, const double *v)
{
    fprintf(f, "  %-22s", label);
    if (strlen(label) > 22) fprintf(f, "\n  %-22s", "");
    for (int i = 0; i < n; i++) {
        if (isnan(v[i]))
            fprintf(f, " %12s", "-");
        else
            fprintf(f, " %12.6g", v[i]);
    }
    fputc('\n', f);
}

void bl_metrics_print_table(FILE *f, int n, const char *const *titles,
                            const bl_metrics_result *const *results, const char *const *band_names)
{
    if (n <= 0) return;
    double *v = bl_malloc((size_t)n * sizeof(double));
    fprintf(f, "  %-22s", "metric");
    for (int i = 0; i < n; i++) fprintf(f, " %12s", titles[i]);
    fputc('\n', f);
#define BL_ROW(label, expr)                                           \
    do {                                                              \
        for (int i = 0; i < n; i++) v[i] = (double)(results[i]->expr); \
        bl_print_row(f, label, n, v);                                 \
    } while (0)
    BL_ROW("detection_precision", precision);
    BL_ROW("detection_recall", recall);
    BL_ROW("detection_f1", f1);
    BL_ROW("n_true_sources", n_true);
    BL_ROW("n_est_sources", n_est);
    BL_ROW("n_matches", n_matches);
    BL_ROW("classification_acc", classification_acc);
    char label[96], name[32];
    for (int c = 0; c < results[0]->n_bands; c++) {
        bl_band_name(name, sizeof name, band_names, c);
        snprintf(label, sizeof label, "flux_err_%s_mae", name);
        BL_ROW(label, flux_mae[c]);
    }
    if (results[0]->has_shape)
        for (int p = 0; p < BL_N_GALAXY_PARAMS; p++) {
            snprintf(label, sizeof label, "%s_mae", bl_galaxy_param_names[p]);
            BL_ROW(label, shape_mae[p]);
        }
    for (int k = 0; k < results[0]->n_factors; k++) {
        const bl_metrics_factor_result *fr = &results[0]->factors[k];
        if (!fr->has_field) continue;
        if (fr->discrete) {
            snprintf(label, sizeof label, "%s.acc", fr->name);
            BL_ROW(label, factors[k].acc);
        } else {
            snprintf(label, sizeof label, "%s.mse", fr->name);
            BL_ROW(label, factors[k].mse);
            snprintf(label, sizeof label, "%s.mae", fr->name);
            BL_ROW(label, factors[k].mae);
        }
    }
#undef BL_ROW
    free(v);
    for (int i = 0; i < n; i++) {
        const bl_metrics_result *r = results[i];
        fprintf(f, "\n  detection by magnitude (%s)\n  %-15s %8s %8s %10s %10s %8s\n", titles[i],
                "mag bin", "n_true", "n_est", "precision", "recall", "f1");
        for (int k = 0; k < r->n_bins; k++) {
            const bl_metrics_bin *b = &r->bins[k];
            char range[32];
            if (r->n_bins == 1)
                snprintf(range, sizeof range, "all");
            else if (k == 0)
                snprintf(range, sizeof range, "<= %.4g", b->hi);
            else if (k == r->n_bins - 1)
                snprintf(range, sizeof range, "> %.4g", b->lo);
            else
                snprintf(range, sizeof range, "(%.4g, %.4g]", b->lo, b->hi);
            fprintf(f, "  %-15s %8lld %8lld", range, (long long)b->n_true, (long long)b->n_est);
            const double pr[3] = {b->precision, b->recall, b->f1};
            for (int q = 0; q < 3; q++) {
                if (isnan(pr[q]))
                    fprintf(f, " %*s", q < 2 ? 10 : 8, "-");
                else
                    fprintf(f, " %*.4f", q < 2 ? 10 : 8, pr[q]);
            }
            fputc('\n', f);
        }
    }
}

static void bl_print_value(FILE *f, double v, int defined)
{
    if (!defined)
        fprintf(f, " %10s", "n/a");
    else if (isnan(v))
        fprintf(f, " %10s", "-");
    else
        fprintf(f, " %10.5g", v);
}

void bl_metrics_print_q_table(FILE *f, const bl_metrics_result *r)
{
    int any = 0;
    for (int k = 0; k < r->n_factors; k++) any |= r->factors[k].n_tiles > 0;
    if (!any) return;
    fprintf(f, "  %-22s %8s %10s %10s %10s %10s\n", "q of factor", "tiles", "nll", "cover_68",
            "cover_95", "tile_acc");
    for (int k = 0; k < r->n_factors; k++) {
        const bl_metrics_factor_result *fr = &r->factors[k];
        if (fr->n_tiles == 0) continue;
        fprintf(f, "  %-22s %8lld", fr->name, (long long)fr->n_tiles);
        bl_print_value(f, fr->nll, 1);
        bl_print_value(f, fr->coverage68, !fr->discrete && fr->has_cdf);
        bl_print_value(f, fr->coverage95, !fr->discrete && fr->has_cdf);
        bl_print_value(f, fr->tile_acc, fr->discrete && fr->has_hit);
        fputc('\n', f);
    }
}
