#include "lib/sim/psf.h"

#include <gsl/gsl_errno.h>
#include <gsl/gsl_sf_bessel.h>
#include <gsl/gsl_sf_gamma.h>
#include <math.h>

void bl_psf_params_to_array(const bl_psf_params *p, double out[BL_PSF_N_PARAMS])
{
    out[0] = p->sigma1;
    out[1] = p->sigma2;
    out[2] = p->sigmap;
    out[3] = p->beta;
    out[4] = p->b;
    out[5] = p->p0;
}

void bl_psf_params_from_array(bl_psf_params *p, const double in[BL_PSF_N_PARAMS])
{
    p->sigma1 = in[0];
    p->sigma2 = in[1];
    p->sigmap = in[2];
    p->beta = in[3];
    p->b = in[4];
    p->p0 = in[5];
}

bl_status bl_psf_params_check(const bl_psf_params *p, const char *where)
{
    static const char *names[BL_PSF_N_PARAMS] = {"sigma1", "sigma2", "sigmap", "beta", "b", "p0"};
    double v[BL_PSF_N_PARAMS];
    bl_psf_params_to_array(p, v);
    for (int i = 0; i < BL_PSF_N_PARAMS; i++)
        if (!isfinite(v[i]))
            return bl_error(BL_ERR_CONFIG, "%s.%s = %g is not finite", where, names[i], v[i]);
    for (int i = 0; i < 3; i++)
        if (!(v[i] > 0))
            return bl_error(BL_ERR_CONFIG,
                            "%s.%s = %g: a squared PSF width must be > 0 (the profile would not "
                            "be a positive, finite function)",
                            where, names[i], v[i]);
    if (p->b < 0 || p->p0 < 0)
        return bl_error(BL_ERR_CONFIG,
                        "%s.%s = %g gives a PSF profile that is not positive everywhere (needs b >= 0 "
                        "and p0 >= 0)",
                        where, p->b < 0 ? "b" : "p0", p->b < 0 ? p->b : p->p0);
    if (!(p->beta > 2))
        return bl_error(BL_ERR_CONFIG,
                        "%s.beta = %g: the power-law wing (1 + r^2/(beta sigmap))^(-beta/2) has "
                        "infinite flux unless beta > 2",
                        where, p->beta);
    return BL_OK;
}

double bl_psf_profile(const bl_psf_params *p, double r2)
{
    return (exp(-r2 / (2 * p->sigma1)) + p->b * exp(-r2 / (2 * p->sigma2)) +
            p->p0 * pow(1 + r2 / (p->beta * p->sigmap), -p->beta / 2)) /
           (1 + p->b + p->p0);
}

/* flux of each unnormalised term: 2 pi sigma for a Gaussian exp(-r^2 / 2 sigma), and
 * 2 pi a / (beta - 2) for (1 + r^2/a)^(-beta/2) */
static void bl_psf_term_fluxes(const bl_psf_params *p, double w[3])
{
    w[0] = 2 * M_PI * p->sigma1;
    w[1] = p->b * 2 * M_PI * p->sigma2;
    w[2] = p->p0 * 2 * M_PI * p->beta * p->sigmap / (p->beta - 2);
}

double bl_psf_total(const bl_psf_params *p)
{
    double w[3];
    bl_psf_term_fluxes(p, w);
    return (w[0] + w[1] + w[2]) / (1 + p->b + p->p0);
}

/* (2 / Gamma(nu)) (z/2)^nu K_nu(z): the normalised transform of the power-law term */
static double bl_matern(double nu, double z)
{
    if (z <= 0) return 1;
    if (fabs(nu - 0.5) < 1e-12) return exp(-z);
    if (z > 700) return 0;
    /* the scaled K (e^z K_nu(z)) neither under- nor overflows for nu > 0, z > 0 */
    gsl_sf_result r;
    if (gsl_sf_bessel_Knu_scaled_e(nu, z, &r) != GSL_SUCCESS) return 0;
    return exp(log(2.0) - gsl_sf_lngamma(nu) + nu * log(z / 2) + log(r.val) - z);
}

double bl_psf_ft(const bl_psf_params *p, double k)
{
    double w[3];
    bl_psf_term_fluxes(p, w);
    double k2 = k * k;
    double v = w[0] * exp(-0.5 * p->sigma1 * k2) + w[1] * exp(-0.5 * p->sigma2 * k2);
    if (w[2] > 0) v += w[2] * bl_matern(p->beta / 2 - 1, sqrt(p->beta * p->sigmap) * k);
    return v / (w[0] + w[1] + w[2]);
}

double bl_psf_radius(const bl_psf_params *p, double eps)
{
    double w[3];
    bl_psf_term_fluxes(p, w);
    double tot = w[0] + w[1] + w[2];
    /* flux outside r: w0 e^{-r^2/2s1} + w1 e^{-r^2/2s2} + w2 (1 + r^2/a)^{1 - beta/2};
     * decreasing in r, so bisection */
    double lo = 0, hi = 1;
    for (;;) {
        double r2 = hi * hi;
        double out = w[0] * exp(-r2 / (2 * p->sigma1)) + w[1] * exp(-r2 / (2 * p->sigma2)) +
                     w[2] * pow(1 + r2 / (p->beta * p->sigmap), 1 - p->beta / 2);
        if (out <= eps * tot || hi > 1e6) break;
        lo = hi;
        hi *= 2;
    }
    for (int it = 0; it < 60; it++) {
        double mid = 0.5 * (lo + hi), r2 = mid * mid;
        double out = w[0] * exp(-r2 / (2 * p->sigma1)) + w[1] * exp(-r2 / (2 * p->sigma2)) +
                     w[2] * pow(1 + r2 / (p->beta * p->sigmap), 1 - p->beta / 2);
        if (out > eps * tot) lo = mid; else hi = mid;
    }
    return hi;
}

void bl_psf_image(const bl_psf_params *p, int slen, double *out)
{
    int h = slen / 2;
    double sum = 0;
    for (int i = 0; i < slen; i++)
        for (int j = 0; j < slen; j++) {
            double dy = i - h, dx = j - h;
            out[i * slen + j] = bl_psf_profile(p, dx * dx + dy * dy);
            sum += out[i * slen + j];
        }
    for (int i = 0; i < slen * slen; i++) out[i] /= sum;
}
