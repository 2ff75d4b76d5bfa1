/* Finite-difference gradient check, for every op here and for later modules' own functions.
 *
 * fn builds an output from `inputs` in ctx. The check forms L = sum(out * r) with fixed
 * pseudo-random weights r, gets dL/dinput by bl_backward, and compares each element with the
 * central difference (L(x + h) - L(x - h)) / 2h. An element passes when
 *   |analytic - numeric| <= atol + rtol * |numeric|.
 * Kinks (clamp boundaries, |x| at 0, ...) are filtered: when the central differences at h and
 * h/2 disagree by more than the tolerance the function is not smooth there and the element is
 * skipped (counted in `skipped`). Only meaningful with bl_real = double (meson builds
 * libbliss_f64 for this). */
#ifndef BL_GRADCHECK_H
#define BL_GRADCHECK_H

#include "autograd/tape.h"

typedef bl_tensor *bl_gradcheck_fn(bl_ctx *ctx, bl_tensor *const *inputs, void *user);

typedef struct bl_gradcheck_opts {
    double eps;   /* finite-difference step h (default 1e-6) */
    double atol;  /* default 1e-6 */
    double rtol;  /* default 1e-5 */
    int max_elements; /* per input: check at most this many elements, spread evenly (0 = all) */
    int verbose;
} bl_gradcheck_opts;

typedef struct bl_gradcheck_result {
    int checked, failed, skipped;
    double max_abs_err, max_rel_err;
} bl_gradcheck_result;

bl_gradcheck_opts bl_gradcheck_defaults(void);
/* Checks the gradient w.r.t. every input with requires_grad set (inputs are persistent or
 * per-step tensors the caller made). Returns 1 if all checked elements pass; prints each
 * failure to stderr with `name`, the input index and the element. */
int bl_gradcheck(const char *name, bl_gradcheck_fn *fn, int n_in, bl_tensor *const *inputs,
                 void *user, const bl_gradcheck_opts *opts, bl_gradcheck_result *result);

#endif
