#include "lib/sim/survey.h"

#include <libconfig.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* Representative SDSS values; see configs/sim_default.cfg for where they come from. */
static const char *const bl_sdss_bands[5] = {"u", "g", "r", "i", "z"};
static const double bl_sdss_psf[5][BL_PSF_N_PARAMS] = {
    /* sigma1, sigma2, sigmap (pixel^2), beta, b, p0 */
    {2.72, 10.9, 2.72, 3.0, 0.12, 0.03},
    {2.40, 9.6, 2.40, 3.0, 0.10, 0.03},
    {2.10, 8.4, 2.10, 3.0, 0.10, 0.03},
    {1.96, 7.84, 1.96, 3.0, 0.10, 0.03},
    {2.10, 8.4, 2.10, 3.0, 0.10, 0.03},
};
static const double bl_sdss_sky[5] = {40.0, 261.0, 865.0, 962.0, 567.0};
static const double bl_sdss_nelec_per_nmgy[5] = {162.0, 874.0, 906.0, 738.0, 144.0};

static void bl_survey_link_names(bl_survey *sv)
{
    for (int k = 0; k < BL_SURVEY_MAX_BANDS; k++) sv->band_name_ptrs[k] = sv->band_names[k];
}

void bl_survey_default(bl_survey *sv)
{
    memset(sv, 0, sizeof *sv);
    sv->n_bands = 5;
    for (int k = 0; k < 5; k++) {
        snprintf(sv->band_names[k], BL_BAND_NAME_MAX, "%s", bl_sdss_bands[k]);
        bl_psf_params_from_array(&sv->psf[k], bl_sdss_psf[k]);
        sv->sky[k] = bl_sdss_sky[k];
        sv->nelec_per_nmgy[k] = bl_sdss_nelec_per_nmgy[k];
    }
    sv->pixel_scale = 0.396;
    sv->psf_slen = 25;
    sv->pixel_shift = 0;
    bl_survey_link_names(sv);
}

int bl_survey_band(const bl_survey *sv, const char *name)
{
    for (int k = 0; k < sv->n_bands; k++)
        if (strcmp(sv->band_names[k], name) == 0) return k;
    return -1;
}

static bl_status bl_survey_check_where(const bl_survey *sv, bl_config *cfg, const char *path)
{
    char key[256], where[512];
#define BL_WHERE(k) (snprintf(key, sizeof key, "%s.%s", path, k), \
                     snprintf(where, sizeof where, "%s: key '%s'", cfg ? bl_config_where(cfg, key) : "survey", key), where)
    if (sv->n_bands < 1 || sv->n_bands > BL_SURVEY_MAX_BANDS)
        return bl_error(BL_ERR_CONFIG, "%s has %d bands (1 to %d supported)", BL_WHERE("bands"),
                        sv->n_bands, BL_SURVEY_MAX_BANDS);
    if (!(sv->pixel_scale > 0) || !isfinite(sv->pixel_scale))
        return bl_error(BL_ERR_CONFIG, "%s = %g must be > 0", BL_WHERE("pixel_scale"), sv->pixel_scale);
    if (sv->psf_slen < 3 || sv->psf_slen % 2 == 0 || sv->psf_slen > 255)
        return bl_error(BL_ERR_CONFIG, "%s = %d must be odd, in [3, 255]", BL_WHERE("psf_slen"),
                        sv->psf_slen);
    if (sv->pixel_shift != 0)
        return bl_error(BL_ERR_CONFIG,
                        "%s = %g: per-band pixel shifts are not implemented (docs/porting.md: off by "
                        "default); use 0",
                        BL_WHERE("pixel_shift"), sv->pixel_shift);
    for (int k = 0; k < sv->n_bands; k++) {
        char item[64];
        snprintf(item, sizeof item, "sky.[%d]", k);
        if (!(sv->sky[k] > 0) || !isfinite(sv->sky[k]))
            return bl_error(BL_ERR_CONFIG, "%s = %g: the sky level (electrons/pixel) must be > 0",
                            BL_WHERE(item), sv->sky[k]);
        snprintf(item, sizeof item, "nelec_per_nmgy.[%d]", k);
        if (!(sv->nelec_per_nmgy[k] > 0) || !isfinite(sv->nelec_per_nmgy[k]))
            return bl_error(BL_ERR_CONFIG, "%s = %g: electrons per nanomaggy must be > 0",
                            BL_WHERE(item), sv->nelec_per_nmgy[k]);
        snprintf(key, sizeof key, "%s.psf.%s", path, sv->band_names[k]);
        snprintf(where, sizeof where, "%s: %s", cfg ? bl_config_where(cfg, key) : "survey", key);
        bl_status s = bl_psf_params_check(&sv->psf[k], where);
        if (s != BL_OK) return s;
    }
    for (int k = 0; k < sv->n_bands; k++)
        for (int j = 0; j < k; j++)
            if (strcmp(sv->band_names[j], sv->band_names[k]) == 0)
                return bl_error(BL_ERR_CONFIG, "%s: band '%s' listed twice", BL_WHERE("bands"),
                                sv->band_names[k]);
#undef BL_WHERE
    return BL_OK;
}

bl_status bl_survey_check(const bl_survey *sv) { return bl_survey_check_where(sv, NULL, "survey"); }

bl_status bl_survey_from_config(bl_survey *sv, bl_config *cfg, const char *path)
{
    memset(sv, 0, sizeof *sv);
    bl_survey_link_names(sv);
    char key[256];
    bl_status s;
#define BL_KEY(k) (snprintf(key, sizeof key, "%s.%s", path, k), key)
    bl_config_setting *bands = bl_config_lookup(cfg, BL_KEY("bands"));
    if (!bands) return bl_error(BL_ERR_CONFIG, "%s: missing required key '%s'", bl_config_file(cfg), key);
    int n = config_setting_length(bands);
    if (config_setting_type(bands) != CONFIG_TYPE_ARRAY || n < 1 || n > BL_SURVEY_MAX_BANDS)
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' must be an array of 1 to %d band names, "
                        "e.g. [\"u\", \"g\"]", bl_config_where(cfg, key), key, BL_SURVEY_MAX_BANDS);
    sv->n_bands = n;
    for (int k = 0; k < n; k++) {
        const char *name = config_setting_get_string_elem(bands, k);
        if (!name || !*name || strlen(name) >= BL_BAND_NAME_MAX)
            return bl_error(BL_ERR_CONFIG, "%s: key '%s': element %d is not a band name (a short "
                            "string)", bl_config_where(cfg, key), key, k);
        snprintf(sv->band_names[k], BL_BAND_NAME_MAX, "%s", name);
    }
    bl_survey def;
    bl_survey_default(&def); /* the optional keys' defaults */
    int64_t slen = 0;
    double shift = 0;
    if ((s = bl_config_double(cfg, BL_KEY("pixel_scale"), 0, 1, &sv->pixel_scale)) != BL_OK ||
        (s = bl_config_int(cfg, BL_KEY("psf_slen"), def.psf_slen, 1, &slen)) != BL_OK ||
        (s = bl_config_double(cfg, BL_KEY("pixel_shift"), def.pixel_shift, 0, &shift)) != BL_OK)
        return s;
    sv->psf_slen = (int)slen;
    sv->pixel_shift = shift;
    int got = 0;
    if ((s = bl_config_doubles(cfg, BL_KEY("sky"), n, n, sv->sky, &got)) != BL_OK ||
        (s = bl_config_doubles(cfg, BL_KEY("nelec_per_nmgy"), n, n, sv->nelec_per_nmgy, &got)) != BL_OK)
        return s;
    static const char *pnames[BL_PSF_N_PARAMS] = {"sigma1", "sigma2", "sigmap", "beta", "b", "p0"};
    for (int k = 0; k < n; k++) {
        double v[BL_PSF_N_PARAMS];
        for (int i = 0; i < BL_PSF_N_PARAMS; i++) {
            snprintf(key, sizeof key, "%s.psf.%s.%s", path, sv->band_names[k], pnames[i]);
            if ((s = bl_config_double(cfg, key, 0, 1, &v[i])) != BL_OK) return s;
        }
        bl_psf_params_from_array(&sv->psf[k], v);
    }
    /* the psf group holds exactly one entry per band: anything else is caught by the
     * unknown-key check of the caller (bl_config_check_unused) */
    bl_config_lookup(cfg, BL_KEY("psf"));
#undef BL_KEY
    return bl_survey_check_where(sv, cfg, path);
}
