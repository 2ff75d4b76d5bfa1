/* Finite-difference gradient check (see gradcheck.h).
 *
 * L = sum_k r_k out_k with fixed weights r_k = +-(0.5 .. 1.5) drawn from a hash of k (the sign
 * and size vary so that errors in different output elements cannot cancel, and no weight is
 * near 0). The analytic gradient comes from one bl_backward through a private node that seeds
 * d out = r. The numeric one perturbs a single input element:
 *   d_h = (L(x + h) - L(x - h)) / 2h = sum_k r_k (out_k(x + h) - out_k(x - h)) / 2h,
 * summed as differences of outputs so that the outputs the element does not touch contribute
 * exactly 0 (no cancellation between two large sums).
 * An element whose d_h and d_{h/2} disagree beyond the tolerance sits on a kink and is skipped.
 * The check fails when nothing at all could be checked: a vacuous pass would hide a broken
 * test. */
#include "autograd/gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/rng.h"

#define BL_GRADCHECK_SEED 20240601u

bl_gradcheck_opts bl_gradcheck_defaults(void)
{
    return (bl_gradcheck_opts){.eps = 1e-6, .atol = 1e-6, .rtol = 1e-5, .max_elements = 0,
                               .verbose = 0};
}

typedef struct bl_gradcheck_dot {
    const double *r;
} bl_gradcheck_dot;

/* L = sum r * out: d out += r * dL */
static void bl_gradcheck_dot_backward(bl_ctx *ctx, bl_node *node)
{
    const bl_gradcheck_dot *sv = node->saved;
    bl_tensor *out = node->in[0];
    bl_real *g = bl_grad(ctx, out);
    const double gl = node->out->grad[0];
    for (int64_t k = 0; k < out->numel; k++) g[k] += (bl_real)(sv->r[k] * gl);
}

/* Runs fn without recording and copies its output into buf (numel checked against n). */
static void bl_gradcheck_eval(const char *name, bl_ctx *ctx, bl_gradcheck_fn *fn,
                              bl_tensor *const *inputs, void *user, double *buf, int64_t n)
{
    bl_ctx_reset(ctx);
    bl_tensor *out = fn(ctx, inputs, user);
    BL_ASSERT(out && out->numel == n,
              "bl_gradcheck(%s): the function's output changed size (%lld, was %lld) when an input "
              "was perturbed",
              name, out ? (long long)out->numel : -1LL, (long long)n);
    for (int64_t k = 0; k < n; k++) buf[k] = (double)out->data[k];
}

/* (L(x + h) - L(x - h)) / step, step = the distance between the two evaluation points */
static double bl_gradcheck_diff(const double *r, const double *plus, const double *minus,
                                int64_t n, double step)
{
    double s = 0;
    for (int64_t k = 0; k < n; k++)
        if (plus[k] != minus[k]) s += r[k] * (plus[k] - minus[k]);
    return s / step;
}

int bl_gradcheck(const char *name, bl_gradcheck_fn *fn, int n_in, bl_tensor *const *inputs,
                 void *user, const bl_gradcheck_opts *opts, bl_gradcheck_result *result)
{
    BL_ASSERT(fn && (n_in == 0 || inputs), "bl_gradcheck(%s): NULL function or inputs", name);
    bl_gradcheck_opts o = opts ? *opts : bl_gradcheck_defaults();
    BL_ASSERT(o.eps > 0, "bl_gradcheck(%s): eps must be > 0, got %g", name, o.eps);
    bl_gradcheck_result res = {0};
    bl_ctx *ctx = bl_ctx_alloc(0);
    const int grad_was = bl_set_grad_enabled(ctx, 1);

    /* analytic: each input's gradient goes to a private zeroed buffer (the caller's
     * accumulated gradients are left untouched) */
    bl_real **saved_grad = bl_calloc((size_t)(n_in ? n_in : 1), sizeof *saved_grad);
    bl_real **analytic = bl_calloc((size_t)(n_in ? n_in : 1), sizeof *analytic);
    for (int i = 0; i < n_in; i++) {
        BL_ASSERT(inputs[i], "bl_gradcheck(%s): input %d is NULL", name, i);
        if (!inputs[i]->requires_grad) continue;
        saved_grad[i] = inputs[i]->grad;
        analytic[i] = bl_calloc((size_t)(inputs[i]->numel ? inputs[i]->numel : 1), sizeof(bl_real));
        inputs[i]->grad = analytic[i];
    }
    bl_tensor *out = fn(ctx, inputs, user);
    BL_ASSERT(out, "bl_gradcheck(%s): the function returned NULL", name);
    const int64_t n_out = out->numel;
    double *r = bl_malloc((size_t)(n_out ? n_out : 1) * sizeof(double));
    for (int64_t k = 0; k < n_out; k++) {
        uint64_t h = bl_rng_mix(BL_GRADCHECK_SEED, (uint64_t)k);
        double u = (double)(h >> 11) * 0x1.0p-53; /* [0, 1) */
        r[k] = (h & 1 ? -1.0 : 1.0) * (0.5 + u);
    }
    if (out->requires_grad) { /* otherwise no input reaches out: the gradient is 0 */
        bl_tensor *loss = bl_new(ctx, 0, NULL);
        double l = 0;
        for (int64_t k = 0; k < n_out; k++) l += r[k] * (double)out->data[k];
        loss->data[0] = (bl_real)l;
        bl_node *node = bl_tape_push(ctx, "bl_gradcheck_dot", bl_gradcheck_dot_backward, loss, 1,
                                     &out, sizeof(bl_gradcheck_dot));
        ((bl_gradcheck_dot *)node->saved)->r = r;
        bl_backward(ctx, loss);
    }
    for (int i = 0; i < n_in; i++)
        if (analytic[i]) inputs[i]->grad = saved_grad[i];

    /* numeric */
    bl_set_grad_enabled(ctx, 0);
    double *plus = bl_malloc((size_t)(n_out ? n_out : 1) * sizeof(double));
    double *minus = bl_malloc((size_t)(n_out ? n_out : 1) * sizeof(double));
    const double h = o.eps;
    for (int i = 0; i < n_in; i++) {
        if (!analytic[i]) continue;
        bl_tensor *x = inputs[i];
        int64_t n = x->numel, m = o.max_elements > 0 && o.max_elements < n ? o.max_elements : n;
        for (int64_t c = 0; c < m; c++) {
            int64_t j = m == n ? c : c * n / m; /* spread evenly */
            const bl_real x0 = x->data[j];
            double d[2];
            for (int s = 0; s < 2; s++) {
                double hs = s ? h / 2 : h;
                /* divide by the step actually taken after rounding x0 +- hs */
                const bl_real xp = (bl_real)(x0 + hs), xm = (bl_real)(x0 - hs);
                x->data[j] = xp;
                bl_gradcheck_eval(name, ctx, fn, inputs, user, plus, n_out);
                x->data[j] = xm;
                bl_gradcheck_eval(name, ctx, fn, inputs, user, minus, n_out);
                d[s] = bl_gradcheck_diff(r, plus, minus, n_out, (double)xp - (double)xm);
            }
            x->data[j] = x0;
            const double num = d[0], ana = (double)analytic[i][j];
            if (!isfinite(d[0]) || !isfinite(d[1]) || fabs(d[0] - d[1]) > o.atol + o.rtol * fabs(d[1])) {
                res.skipped++;
                if (o.verbose)
                    fprintf(stderr, "gradcheck %s: input %d element %lld skipped (kink): d_h %.10g, "
                                    "d_h/2 %.10g\n", name, i, (long long)j, d[0], d[1]);
                continue;
            }
            res.checked++;
            const double err = fabs(ana - num), rel = err / (fabs(num) > 1e-300 ? fabs(num) : 1e-300);
            if (err > res.max_abs_err) res.max_abs_err = err;
            if (num != 0 && rel > res.max_rel_err) res.max_rel_err = rel;
            const int ok = isfinite(ana) && err <= o.atol + o.rtol * fabs(num);
            if (!ok) res.failed++;
            if (!ok || o.verbose)
                fprintf(stderr, "gradcheck %s: input %d element %lld: analytic %.10g numeric %.10g "
                                "(abs err %.3g)%s\n", name, i, (long long)j, ana, num, err,
                        ok ? "" : "  FAILED");
        }
    }
    if (res.checked == 0)
        fprintf(stderr, "gradcheck %s: no element checked (%d skipped): no input requires a "
                        "gradient, or every element sits on a kink\n", name, res.skipped);

    bl_set_grad_enabled(ctx, grad_was);
    for (int i = 0; i < n_in; i++) free(analytic[i]);
    free(analytic);
    free(saved_grad);
    free(r);
    free(plus);
    free(minus);
    bl_ctx_free(ctx);
    if (result) *result = res;
    return res.failed == 0 && res.checked > 0;
}
