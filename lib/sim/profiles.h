/* Galaxy light profiles in Fourier space (docs/behaviour.md §5.4): the exponential disk and the
 * de Vaucouleurs bulge (Sersic n = 4, untruncated), both circular with unit flux and unit
 * half-light radius, as functions of s = |k| * hlr. A sheared profile with half-light ellipse
 * semi-axes (a, a q) at angle beta is the same function of
 *   s^2 = a^2 (kx cos beta + ky sin beta)^2 + (a q)^2 (-kx sin beta + ky cos beta)^2.
 *
 * Exponential: I(r) ~ exp(-r / r0), hlr = 1.6783469900166605 r0; F(s) = (1 + (s / 1.678...)^2)^-1.5.
 * de Vaucouleurs: I(r) ~ exp(-b r^(1/4)), b = 7.66924944... solves P(8, b) = 1/2. Its Hankel
 * transform F(s) = 2 pi int I(r) J0(s r) r dr / flux has no closed form; we tabulate it once
 * per process (bl_profiles_init, ~10 ms) from
 *   s < 1:  F(s) = (1/7!) int_0^inf u^7 e^-u J0(s (u/b)^4) du   (Gauss-Legendre over half
 *           periods of the Bessel function),
 *   s >= 1: the convergent expansion from the cusp of the profile at r = 0,
 *           F(s) = sum_{n >= 1, 8 does not divide n} (-b)^n / n! * 2^(n/4 + 1) Gamma(1 + n/8)
 *                  / Gamma(-n/8) * s^(-n/4 - 2) * b^8 / (4 * 7!)
 *           (term-wise Hankel transforms of r^(n/4); the Gamma(1 + n/8)^2 / n! decay makes it
 *           converge for every s > 0, usable in double precision for s >= 1).
 * F is positive and decreasing (I is a scale mixture of Gaussians: exp(-b v^(1/8)) is completely
 * monotone in v = r^2). Table: uniform step 1/64 on [0, 64] with cubic interpolation, then
 * log-log linear interpolation on [64, 2^18], then the s^(-9/4) power law. */
#ifndef BL_SIM_PROFILES_H
#define BL_SIM_PROFILES_H

#define BL_EXP_HLR_PER_SCALE 1.6783469900166605 /* hlr / scale radius of an exponential */

/* Build the de Vaucouleurs table (thread-safe, runs once). */
void bl_profiles_init(void);

double bl_exponential_ft(double s);
/* Table lookup; calls bl_profiles_init if needed. */
double bl_devaucouleurs_ft(double s);
/* The direct computation behind the table (slow: for tests). */
double bl_devaucouleurs_ft_exact(double s);
/* b of the n = 4 Sersic profile (7.669249442500804). */
double bl_devaucouleurs_b(void);

/* Vector forms on squared arguments: out[i] = F(sqrt(s2[i])) for i < n (float, for the
 * renderer's inner loops). */
void bl_exponential_ft_sq(const float *s2, float *out, int n);
void bl_devaucouleurs_ft_sq(const float *s2, float *out, int n);

/* Radius, in half-light radii, outside which a fraction eps of the flux lies. */
double bl_exponential_radius(double eps);
double bl_devaucouleurs_radius(double eps);

#endif
