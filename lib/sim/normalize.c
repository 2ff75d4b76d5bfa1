#include "lib/sim/normalize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BL_CLAHE_PAD 4 /* kernel 9 = 2 * 4 + 1 */

void bl_normalize_opts_default(bl_normalize_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_bands = 5;
    for (int i = 0; i < 5; i++) o->bands[i] = i;
    o->num_psf_params = 6;
    o->n_log = 4;
    o->log_transform_stdevs[0] = -3;
    o->log_transform_stdevs[1] = 0;
    o->log_transform_stdevs[2] = 1;
    o->log_transform_stdevs[3] = 3;
    o->use_clahe = 1;
    o->clahe_min_stdev = 200;
}

bl_status bl_normalize_opts_from_config(bl_normalize_opts *o, bl_config *cfg, const char *path)
{
    bl_normalize_opts_default(o);
    char key[256];
    bl_status s;
#define BL_KEY(name) (snprintf(key, sizeof key, "%s.%s", path, name), key)
    if (bl_config_exists(cfg, BL_KEY("bands"))) {
        double v[BL_NORMALIZE_MAX_BANDS];
        int n = 0;
        if ((s = bl_config_doubles(cfg, key, 1, BL_NORMALIZE_MAX_BANDS, v, &n)) != BL_OK) return s;
        for (int i = 0; i < n; i++) {
            if (v[i] != floor(v[i]) || v[i] < 0 || v[i] >= BL_NORMALIZE_MAX_BANDS)
                return bl_error(BL_ERR_CONFIG, "%s: key '%s': band %g is not a band index",
                                bl_config_where(cfg, key), key, v[i]);
            o->bands[i] = (int)v[i];
        }
        o->n_bands = n;
    }
    if ((s = bl_config_bool(cfg, BL_KEY("include_original"), o->include_original, 0,
                            &o->include_original)) != BL_OK ||
        (s = bl_config_bool(cfg, BL_KEY("concat_psf_params"), o->concat_psf_params, 0,
                            &o->concat_psf_params)) != BL_OK ||
        (s = bl_config_bool(cfg, BL_KEY("use_clahe"), o->use_clahe, 0, &o->use_clahe)) != BL_OK)
        return s;
    int64_t np = o->num_psf_params;
    if ((s = bl_config_int(cfg, BL_KEY("num_psf_params"), np, 0, &np)) != BL_OK ||
        (s = bl_config_check_range(cfg, key, (double)np, 0, 6)) != BL_OK)
        return s;
    o->num_psf_params = (int)np;
    if (bl_config_exists(cfg, BL_KEY("log_transform_stdevs"))) {
        int n = 0;
        if ((s = bl_config_doubles(cfg, key, 0, BL_NORMALIZE_MAX_LOGS, o->log_transform_stdevs,
                                   &n)) != BL_OK)
            return s;
        o->n_log = n;
    }
    if ((s = bl_config_double(cfg, BL_KEY("clahe_min_stdev"), o->clahe_min_stdev, 0,
                              &o->clahe_min_stdev)) != BL_OK)
        return s;
    if (!(o->clahe_min_stdev > 0) || !isfinite(o->clahe_min_stdev))
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' = %g must be > 0 (it divides the residual)",
                        bl_config_where(cfg, key), key, o->clahe_min_stdev);
#undef BL_KEY
    return BL_OK;
}

int bl_normalize_channels(const bl_normalize_opts *o)
{
    return (o->include_original ? 1 : 0) + 1 + (o->concat_psf_params ? o->num_psf_params : 0) +
           o->n_log + (o->use_clahe ? 1 : 0);
}

/* numpy "reflect" index for i in [-(n-1), 2n-2] */
static inline int64_t bl_reflect(int64_t i, int64_t n)
{
    if (i < 0) return -i;
    if (i >= n) return 2 * (n - 1) - i;
    return i;
}

/* out = 9x9 box mean of the reflect-padded plane x (double in, double out); tmp: H*W. */
static void bl_box_mean_reflect(const double *x, int64_t H, int64_t W, double *tmp, double *out)
{
    const int p = BL_CLAHE_PAD;
    for (int64_t i = 0; i < H; i++) {
        const double *row = x + i * W;
        for (int64_t j = 0; j < W; j++) {
            double acc = 0;
            if (j >= p && j + p < W)
                for (int d = -p; d <= p; d++) acc += row[j + d];
            else
                for (int d = -p; d <= p; d++) acc += row[bl_reflect(j + d, W)];
            tmp[i * W + j] = acc;
        }
    }
    const double inv = 1.0 / ((2 * p + 1) * (2 * p + 1));
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++) {
            double acc = 0;
            for (int d = -p; d <= p; d++) acc += tmp[bl_reflect(i + d, H) * W + j];
            out[i * W + j] = acc * inv;
        }
}

void bl_local_zscore(const bl_real *x, int64_t H, int64_t W, double min_stdev, bl_real *out,
                     double *work)
{
    BL_ASSERT(H > BL_CLAHE_PAD && W > BL_CLAHE_PAD,
              "bl_local_zscore: reflect padding by %d needs H, W >= %d (got %lld x %lld)",
              BL_CLAHE_PAD, BL_CLAHE_PAD + 1, (long long)H, (long long)W);
    int64_t n = H * W;
    /* four planes: a = x then r^2, tmp = box scratch, r = residual, m2 = local mean of r^2 */
    double *a = work, *tmp = work + n, *r = work + 2 * n, *m2 = work + 3 * n;
    for (int64_t i = 0; i < n; i++) a[i] = x[i];
    bl_box_mean_reflect(a, H, W, tmp, r);   /* r = local mean */
    for (int64_t i = 0; i < n; i++) {
        r[i] = a[i] - r[i];
        a[i] = r[i] * r[i];
    }
    bl_box_mean_reflect(a, H, W, tmp, m2);
    for (int64_t i = 0; i < n; i++) {
        double s = sqrt(m2[i]);
        out[i] = (bl_real)(r[i] / (s > min_stdev ? s : min_stdev));
    }
}

bl_status bl_normalize(const bl_normalize_opts *o, const bl_tensor *images, const bl_tensor *background,
                       const bl_tensor *psf_params, bl_tensor *out)
{
    BL_ASSERT(images->ndim == 4, "bl_normalize: images must be (B, NB, H, W)");
    BL_ASSERT_SAME_SHAPE("bl_normalize", images, background);
    const int64_t B = images->shape[0], NB = images->shape[1], H = images->shape[2],
                  W = images->shape[3];
    const int C = bl_normalize_channels(o);
    BL_ASSERT(out->ndim == 5 && out->shape[0] == B && out->shape[1] == o->n_bands &&
                  out->shape[2] == C && out->shape[3] == H && out->shape[4] == W,
              "bl_normalize: out must be (%lld, %d, %d, %lld, %lld)", (long long)B, o->n_bands, C,
              (long long)H, (long long)W);
    if (o->concat_psf_params)
        BL_ASSERT(psf_params && psf_params->ndim == 3 && psf_params->shape[0] == B &&
                      psf_params->shape[1] == NB && psf_params->shape[2] >= o->num_psf_params,
                  "bl_normalize: psf_params must be (B, NB, >= %d)", o->num_psf_params);
    if (H <= BL_CLAHE_PAD || W <= BL_CLAHE_PAD)
        return bl_error(BL_ERR_ARG, "normalizer: images are %lld x %lld; reflect padding needs >= 5 x 5",
                        (long long)H, (long long)W);
    for (int i = 0; i < o->n_bands; i++)
        if (o->bands[i] < 0 || o->bands[i] >= NB)
            return bl_error(BL_ERR_ARG, "normalizer: band %d requested, images have %lld bands",
                            o->bands[i], (long long)NB);
    for (int64_t i = 0; i < images->numel; i++) {
        if (!isfinite(images->data[i]) || !isfinite(background->data[i]))
            return bl_error(BL_ERR_NAN, "normalizer: non-finite %s at flat index %lld",
                            isfinite(images->data[i]) ? "background" : "image", (long long)i);
        if (o->n_log && !(background->data[i] > 1e-6))
            return bl_error(BL_ERR_RANGE,
                            "normalizer: background %g <= 1e-6 at flat index %lld (the log "
                            "transforms divide by sqrt(background))",
                            (double)background->data[i], (long long)i);
    }
    const int64_t plane = H * W;
    const int64_t n_pairs = B * o->n_bands;
#pragma omp parallel if (n_pairs > 1 && plane * n_pairs > 20000)
    {
        double *work = bl_malloc((size_t)(4 * plane) * sizeof(double));
#pragma omp for schedule(static)
        for (int64_t pair = 0; pair < n_pairs; pair++) {
            int64_t b = pair / o->n_bands;
            int band = o->bands[pair % o->n_bands];
            const bl_real *img = images->data + (b * NB + band) * plane;
            const bl_real *bg = background->data + (b * NB + band) * plane;
            bl_real *dst = out->data + pair * C * plane;
            int c = 0;
            if (o->include_original) memcpy(dst + (c++) * plane, img, (size_t)plane * sizeof(bl_real));
            if (o->use_clahe)
                bl_local_zscore(bg, H, W, o->clahe_min_stdev, dst + (c++) * plane, work);
            else
                memcpy(dst + (c++) * plane, bg, (size_t)plane * sizeof(bl_real));
            if (o->concat_psf_params)
                for (int k = 0; k < o->num_psf_params; k++) {
                    bl_real v = psf_params->data[(b * NB + band) * psf_params->shape[2] + k];
                    bl_real *d = dst + (c++) * plane;
                    for (int64_t i = 0; i < plane; i++) d[i] = v;
                }
            for (int t = 0; t < o->n_log; t++) {
                double th = o->log_transform_stdevs[t];
                bl_real *d = dst + (c++) * plane;
                for (int64_t i = 0; i < plane; i++) {
                    double z = ((double)img[i] - bg[i]) / sqrt((double)bg[i]) - th;
                    d[i] = (bl_real)log1p(z > 0 ? z : 0);
                }
            }
            if (o->use_clahe) bl_local_zscore(img, H, W, o->clahe_min_stdev, dst + (c++) * plane, work);
        }
        free(work);
    }
    return BL_OK;
}

bl_status bl_normalize_push(const bl_normalize_opts *o, bl_arena *arena, const bl_tensor *images,
                            const bl_tensor *background, const bl_tensor *psf_params,
                            bl_tensor **out)
{
    *out = NULL;
    if (o->concat_psf_params && !psf_params)
        return bl_error(BL_ERR_ARG, "encoder.image_normalizer.concat_psf_params needs psf_params, "
                                    "which this input lacks");
    bl_tensor *t = bl_tensor_push(arena, 5, BL_SHAPE(images->shape[0], o->n_bands,
                                                     bl_normalize_channels(o), images->shape[2],
                                                     images->shape[3]));
    bl_status st = bl_normalize(o, images, background, psf_params, t);
    if (st == BL_OK) *out = t;
    return st;
}
