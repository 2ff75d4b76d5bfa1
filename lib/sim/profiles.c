#include "lib/sim/profiles.h"

#include <gsl/gsl_integration.h>
#include <gsl/gsl_sf_bessel.h>
#include <gsl/gsl_sf_gamma.h>
#include <math.h>
#include <pthread.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "lib/error.h"

#define BL_DEV_STEP_INV 64                 /* tier 1: s = i / 64 */
#define BL_DEV_T1_MAX 64.0
#define BL_DEV_T1_N (64 * BL_DEV_STEP_INV + 1)
#define BL_DEV_T2_PER_OCTAVE 64            /* tier 2: s = 64 * 2^(i / 64) */
#define BL_DEV_T2_OCTAVES 12
#define BL_DEV_T2_N (BL_DEV_T2_PER_OCTAVE * BL_DEV_T2_OCTAVES + 1)
#define BL_DEV_SERIES_MAX 400

static double bl_dev_b;
static double bl_dev_coef[BL_DEV_SERIES_MAX + 1]; /* c_n of the series; 0 where 8 | n */
/* tier 1 with one guard entry on each side: t1[i + 1] = F(i / 64), i = -1 .. T1_N */
static double bl_dev_t1[BL_DEV_T1_N + 2];
static double bl_dev_t2[BL_DEV_T2_N];           /* log F at s = 64 * 2^(i / 64) */
/* the vector form: F at s = i / 512 on [0, 64], linear interpolation (error < 6e-6: F'' is at
 * most 11 in magnitude, h^2 / 8 * 11 = 5.2e-6) */
#define BL_DEV_FINE_INV 512
#define BL_DEV_FINE_N (64 * BL_DEV_FINE_INV + 2)
static float bl_dev_fine[BL_DEV_FINE_N];
static pthread_once_t bl_profiles_once = PTHREAD_ONCE_INIT;
static double bl_dev_lookup(double s);

double bl_exponential_ft(double s)
{
    double t = 1 + (s * s) * (1.0 / (BL_EXP_HLR_PER_SCALE * BL_EXP_HLR_PER_SCALE));
    return 1 / (t * sqrt(t));
}

/* b with P(8, b) = 1/2: half the light of exp(-b r^(1/4)) lies inside r = 1 */
static double bl_dev_solve_b(void)
{
    double lo = 7, hi = 8.5;
    for (int i = 0; i < 100; i++) {
        double mid = 0.5 * (lo + hi);
        if (gsl_sf_gamma_inc_P(8, mid) < 0.5) lo = mid; else hi = mid;
    }
    return 0.5 * (lo + hi);
}

static void bl_dev_series_init(void)
{
    double b = bl_dev_b, lb = log(b);
    for (int n = 1; n <= BL_DEV_SERIES_MAX; n++) {
        if (n % 8 == 0) {
            bl_dev_coef[n] = 0; /* 1 / Gamma(-n/8) = 0 */
            continue;
        }
        gsl_sf_result lg;
        double sgn;
        gsl_sf_lngamma_sgn_e(-n / 8.0, &lg, &sgn);
        double lmag = n * lb - gsl_sf_lnfact((unsigned)n) + (n / 4.0 + 1) * M_LN2 +
                      gsl_sf_lngamma(1 + n / 8.0) - lg.val + 8 * lb - log(4.0 * 5040.0);
        bl_dev_coef[n] = ((n % 2) ? -1.0 : 1.0) * sgn * exp(lmag);
    }
}

static double bl_dev_series(double s)
{
    double q = pow(s, -0.25), pw = 1 / (s * s), sum = 0, peak = 0;
    for (int n = 1; n <= BL_DEV_SERIES_MAX; n++) {
        pw *= q;
        double term = bl_dev_coef[n] * pw;
        sum += term;
        double a = fabs(term);
        if (a > peak) peak = a;
        else if (n > 16 && a < 1e-18 * fabs(sum) && bl_dev_coef[n] != 0) break;
    }
    return sum;
}

/* (1/7!) int_0^inf u^7 e^-u J0(s (u/b)^4) du by 8-point Gauss-Legendre on pieces no longer
 * than 1/2 and than half a period of the Bessel phase s (u/b)^4. */
static double bl_dev_quadrature(double s)
{
    static gsl_integration_glfixed_table *gl; /* only touched inside pthread_once */
    if (!gl) gl = gsl_integration_glfixed_table_alloc(8);
    const double umax = 40; /* Q(8, 40) < 1e-9: the weight beyond is negligible */
    const double c = s / pow(bl_dev_b, 4);
    double u = 0, sum = 0;
    while (u < umax) {
        double dphase = 4 * c * u * u * u;   /* d/du of the phase c u^4 */
        double step = 0.5;
        if (dphase > 0 && M_PI / dphase < step) step = M_PI / dphase;
        if (u + step > umax) step = umax - u;
        double a = u, bnd = u + step;
        for (size_t i = 0; i < 8; i++) {
            double x, w;
            gsl_integration_glfixed_point(a, bnd, i, &x, &w, gl);
            double x4 = x * x * x * x;
            sum += w * exp(7 * log(x) - x) * gsl_sf_bessel_J0(c * x4);
        }
        u = bnd;
    }
    return sum / 5040.0;
}

double bl_devaucouleurs_ft_exact(double s)
{
    bl_profiles_init();
    s = fabs(s);
    if (s == 0) return 1;
    return s < 1 ? bl_dev_quadrature(s) : bl_dev_series(s);
}

static void bl_profiles_build(void)
{
    bl_dev_b = bl_dev_solve_b();
    bl_dev_series_init();
    for (int i = 0; i < BL_DEV_T1_N + 1; i++) {
        double s = (double)i / BL_DEV_STEP_INV;
        bl_dev_t1[i + 1] = s == 0 ? 1 : s < 1 ? bl_dev_quadrature(s) : bl_dev_series(s);
    }
    bl_dev_t1[0] = bl_dev_t1[2]; /* F is even in s */
    for (int i = 0; i < BL_DEV_T2_N; i++)
        bl_dev_t2[i] = log(bl_dev_series(BL_DEV_T1_MAX * exp2((double)i / BL_DEV_T2_PER_OCTAVE)));
    for (int i = 0; i < BL_DEV_FINE_N; i++) bl_dev_fine[i] = (float)bl_dev_lookup((double)i / BL_DEV_FINE_INV);
}

void bl_profiles_init(void)
{
    pthread_once(&bl_profiles_once, bl_profiles_build);
}

double bl_devaucouleurs_b(void)
{
    bl_profiles_init();
    return bl_dev_b;
}

double bl_devaucouleurs_ft(double s)
{
    bl_profiles_init();
    return bl_dev_lookup(s);
}

static double bl_dev_lookup(double s)
{
    if (s < BL_DEV_T1_MAX) {
        /* Catmull-Rom on the uniform grid */
        double x = s * BL_DEV_STEP_INV;
        int i = (int)x;
        double t = x - i;
        const double *p = bl_dev_t1 + i; /* p[0] = F((i-1)/64) ... p[3] = F((i+2)/64) */
        return p[1] + 0.5 * t * (p[2] - p[0] +
                                 t * (2 * p[0] - 5 * p[1] + 4 * p[2] - p[3] +
                                      t * (3 * (p[1] - p[2]) + p[3] - p[0])));
    }
    double x = log2(s / BL_DEV_T1_MAX) * BL_DEV_T2_PER_OCTAVE;
    if (x >= BL_DEV_T2_N - 1) {
        /* beyond the table: the leading s^(-9/4) term */
        double xl = BL_DEV_T2_N - 1;
        return exp(bl_dev_t2[BL_DEV_T2_N - 1] - 2.25 * (x - xl) * M_LN2 / BL_DEV_T2_PER_OCTAVE);
    }
    int i = (int)x;
    double t = x - i;
    return exp(bl_dev_t2[i] + t * (bl_dev_t2[i + 1] - bl_dev_t2[i]));
}

/* out[i] = sqrt(x[i]) for x >= 0; SSE when available (plain sqrtf keeps errno semantics,
 * which stops the compiler from vectorising without -fno-math-errno) */
static void bl_sqrt_many(const float *x, float *out, int n)
{
    int i = 0;
#ifdef __SSE2__
    for (; i + 4 <= n; i += 4) _mm_storeu_ps(out + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; i++) out[i] = sqrtf(x[i]);
}

void bl_exponential_ft_sq(const float *s2, float *out, int n)
{
    const float c = (float)(1.0 / (BL_EXP_HLR_PER_SCALE * BL_EXP_HLR_PER_SCALE));
    int i = 0;
#ifdef __SSE2__
    const __m128 one = _mm_set1_ps(1.0f), cc = _mm_set1_ps(c);
    for (; i + 4 <= n; i += 4) {
        __m128 t = _mm_add_ps(one, _mm_mul_ps(_mm_loadu_ps(s2 + i), cc));
        _mm_storeu_ps(out + i, _mm_div_ps(one, _mm_mul_ps(t, _mm_sqrt_ps(t))));
    }
#endif
    for (; i < n; i++) {
        float t = 1.0f + s2[i] * c;
        out[i] = 1.0f / (t * sqrtf(t));
    }
}

void bl_devaucouleurs_ft_sq(const float *s2, float *out, int n)
{
    bl_profiles_init();
    const float lim = (float)((BL_DEV_T1_MAX - 1.0 / BL_DEV_FINE_INV) * BL_DEV_FINE_INV);
    bl_sqrt_many(s2, out, n);
    for (int k = 0; k < n; k++) {
        float x = out[k] * (float)BL_DEV_FINE_INV;
        if (x >= lim) {
            out[k] = (float)bl_dev_lookup(x / BL_DEV_FINE_INV);
            continue;
        }
        int i = (int)x;
        float t = x - (float)i;
        out[k] = bl_dev_fine[i] + t * (bl_dev_fine[i + 1] - bl_dev_fine[i]);
    }
}

double bl_exponential_radius(double eps)
{
    /* flux outside x scale radii: (1 + x) e^-x */
    double lo = 0, hi = 100;
    for (int i = 0; i < 100; i++) {
        double mid = 0.5 * (lo + hi);
        if ((1 + mid) * exp(-mid) > eps) lo = mid; else hi = mid;
    }
    return hi / BL_EXP_HLR_PER_SCALE;
}

double bl_devaucouleurs_radius(double eps)
{
    /* flux outside r: Q(8, b r^(1/4)) */
    double b = bl_devaucouleurs_b(), lo = 0, hi = 200;
    for (int i = 0; i < 100; i++) {
        double mid = 0.5 * (lo + hi);
        if (gsl_sf_gamma_inc_Q(8, mid) > eps) lo = mid; else hi = mid;
    }
    return pow(hi / b, 4);
}
