/* The survey a batch is simulated for (docs/behaviour.md §5.6, §5.7; docs/porting.md "SDSS field data"): band
 * names, pixel scale, per-band PSF parameters, sky level (electrons per pixel) and calibration
 * (electrons per nanomaggy). The default SDSS-like survey is configs/sim_default.cfg; its
 * values and their sources are documented there and in docs/simulator.md.
 *
 * Config group (path given by the caller, normally "survey"):
 *   bands          = ["u", "g", "r", "i", "z"];   names; also the keys of `psf`
 *   pixel_scale    = 0.396;                        arcsec / pixel, > 0
 *   psf_slen       = 25;                           odd, >= 3: the pixelised PSF stamp
 *   pixel_shift    = 0;                            only 0 is supported (docs/porting.md)
 *   sky            = [...];                        electrons / pixel per band, > 0
 *   nelec_per_nmgy = [...];                        electrons per nanomaggy per band, > 0
 *   psf = { u = { sigma1 = ..; sigma2 = ..; sigmap = ..; beta = ..; b = ..; p0 = ..; }; ... };
 *     sigma1, sigma2, sigmap are squared widths in pixel^2 (psField psf_sigma*^2). */
#ifndef BL_SIM_SURVEY_H
#define BL_SIM_SURVEY_H

#include "lib/config.h"
#include "lib/error.h"
#include "lib/sim/psf.h"

#define BL_SURVEY_MAX_BANDS 8
#define BL_BAND_NAME_MAX 16

typedef struct bl_survey {
    int n_bands;
    char band_names[BL_SURVEY_MAX_BANDS][BL_BAND_NAME_MAX];
    const char *band_name_ptrs[BL_SURVEY_MAX_BANDS]; /* into band_names, for APIs taking char** */
    double pixel_scale;                              /* arcsec / pixel */
    int psf_slen;
    double pixel_shift;
    bl_psf_params psf[BL_SURVEY_MAX_BANDS];
    double sky[BL_SURVEY_MAX_BANDS];                 /* electrons / pixel */
    double nelec_per_nmgy[BL_SURVEY_MAX_BANDS];
} bl_survey;

/* The documented SDSS-like defaults (same numbers as configs/sim_default.cfg). */
void bl_survey_default(bl_survey *sv);
/* Read the group at `path`; every key is required. Impossible values are BL_ERR_CONFIG naming
 * the file:line and key. */
bl_status bl_survey_from_config(bl_survey *sv, bl_config *cfg, const char *path);
/* Check a filled survey (used by _from_config; call after changing fields by hand). */
bl_status bl_survey_check(const bl_survey *sv);
/* Index of the band named `name`, or -1. */
int bl_survey_band(const bl_survey *sv, const char *name);

#endif
