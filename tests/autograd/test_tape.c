/* The tape's contract (autograd/tape.h) exercised through the ops: no-grad scope, detach,
 * gradient accumulation (a tensor used twice; parameters over two backward passes), reshape
 * views, and bl_ctx_reset. Expected gradients are worked out by hand in the comments. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "autograd/ops.h"
#include "autograd/params.h"
#include "tests/bl_check.h"

static bl_ctx *ctx;
static bl_params *params;

static void setup(void)
{
    ctx = bl_ctx_alloc(0);
    params = bl_params_alloc();
}

static void teardown(void)
{
    bl_params_free(params);
    bl_ctx_free(ctx);
}

static bl_tensor *make_param(const char *name, int n, const double *v)
{
    bl_tensor *p = bl_params_add(params, name, 1, &(int64_t){n}, 1);
    for (int i = 0; i < n; i++) p->data[i] = (bl_real)v[i];
    return p;
}

static const double xv[] = {1, -2, 3};

START_TEST(test_no_grad_scope)
{
    bl_tensor *x = make_param("x", 3, xv);
    int was = bl_set_grad_enabled(ctx, 0);
    ck_assert_int_eq(was, 1);
    bl_tensor *y = bl_sum(ctx, bl_mul(ctx, bl_exp(ctx, x), x));
    ck_assert_int_eq(bl_tape_length(ctx), 0);
    ck_assert_int_eq(y->requires_grad, 0);
    bl_set_grad_enabled(ctx, was);
    /* recording again: exp, mul, sum */
    bl_sum(ctx, bl_mul(ctx, bl_exp(ctx, x), x));
    ck_assert_int_eq(bl_tape_length(ctx), 3);
    /* ops on tensors that need no gradient record nothing even when recording is on */
    bl_tensor *c = bl_full(ctx, 1, BL_SHAPE(3), 2);
    bl_add(ctx, c, c);
    ck_assert_int_eq(bl_tape_length(ctx), 3);
}
END_TEST

START_TEST(test_detach)
{
    bl_tensor *x = make_param("x", 3, xv);
    /* L = sum(detach(x) * x): dL/dx = detach(x) = x (one path only, not 2x) */
    bl_tensor *d = bl_detach(ctx, x);
    ck_assert_int_eq(d->requires_grad, 0);
    ck_assert_ptr_eq(d->data, x->data);
    bl_backward(ctx, bl_sum(ctx, bl_mul(ctx, d, x)));
    for (int i = 0; i < 3; i++) ck_assert(x->grad[i] == (bl_real)xv[i]);
    ck_assert_ptr_null(d->grad);
}
END_TEST

START_TEST(test_used_twice)
{
    bl_tensor *x = make_param("x", 3, xv);
    /* L = sum(x * x) + sum(x + x): dL/dx = 2x + 2 */
    bl_tensor *l = bl_add(ctx, bl_sum(ctx, bl_mul(ctx, x, x)), bl_sum(ctx, bl_add(ctx, x, x)));
    ck_assert(l->data[0] == 14 + 4);
    bl_backward(ctx, l);
    for (int i = 0; i < 3; i++) ck_assert(x->grad[i] == (bl_real)(2 * xv[i] + 2));
    /* an intermediate used twice: t = exp(x); L = sum(t * t) -> dL/dx = 2 e^{2x} */
    bl_tensor_zero_grad(x);
    bl_ctx_reset(ctx);
    bl_tensor *t = bl_exp(ctx, x);
    bl_backward(ctx, bl_sum(ctx, bl_mul(ctx, t, t)));
    for (int i = 0; i < 3; i++) {
        double want = 2 * exp(2 * xv[i]);
        ck_assert_msg(fabs(x->grad[i] - want) <= 1e-6 * want, "grad %g want %g", (double)x->grad[i],
                      want);
    }
}
END_TEST

START_TEST(test_accumulate_across_backward)
{
    bl_tensor *w = make_param("w", 3, xv);
    static const double cv[] = {0.5, 4, -1};
    /* L = sum(w * c) twice, with a reset in between (a new step): grad = 2c */
    for (int step = 0; step < 2; step++) {
        bl_tensor *c = bl_from_data(ctx, 1, BL_SHAPE(3), (const bl_real[]){0.5, 4, -1});
        bl_backward(ctx, bl_sum(ctx, bl_mul(ctx, w, c)));
        for (int i = 0; i < 3; i++) ck_assert(w->grad[i] == (bl_real)((step + 1) * cv[i]));
        bl_ctx_reset(ctx);
    }
    bl_params_zero_grad(params);
    for (int i = 0; i < 3; i++) ck_assert(w->grad[i] == 0);
}
END_TEST

START_TEST(test_backward_consumes_tape)
{
    bl_tensor *w = make_param("w", 3, xv);
    /* two losses in one step, each with its own backward: L1 = sum(w c), L2 = sum(2 w c).
     * The second backward must not replay L1's nodes: grad = c + 2c = 3c (not 4c). */
    bl_tensor *c = bl_from_data(ctx, 1, BL_SHAPE(3), (const bl_real[]){0.5, 4, -1});
    bl_backward(ctx, bl_sum(ctx, bl_mul(ctx, w, c)));
    ck_assert_int_eq(bl_tape_length(ctx), 0);
    bl_backward(ctx, bl_sum(ctx, bl_mul_scalar(ctx, bl_mul(ctx, w, c), 2)));
    static const double cv[] = {0.5, 4, -1};
    for (int i = 0; i < 3; i++) ck_assert(w->grad[i] == (bl_real)(3 * cv[i]));
}
END_TEST

START_TEST(test_reshape_view)
{
    static const double v[] = {1, 2, 3, 4, 5, 6};
    bl_tensor *x = bl_params_add(params, "x", 2, BL_SHAPE(2, 3), 1);
    for (int i = 0; i < 6; i++) x->data[i] = (bl_real)v[i];
    bl_tensor *r = bl_reshape(ctx, x, 3, BL_SHAPE(3, 1, -1));
    ck_assert_int_eq(r->ndim, 3);
    ck_assert_int_eq(r->shape[0], 3);
    ck_assert_int_eq(r->shape[2], 2);
    ck_assert_ptr_eq(r->data, x->data);
    x->data[4] = 50; /* visible through the view */
    ck_assert(r->data[4] == 50);
    /* L = sum(r * r): the view has a gradient buffer of its own (kept by bl_retain_grad: r is
     * made by a recorded op); x gets 2x */
    bl_retain_grad(ctx, r);
    bl_backward(ctx, bl_sum(ctx, bl_mul(ctx, r, r)));
    ck_assert_ptr_nonnull(r->grad);
    ck_assert_ptr_ne(r->grad, x->grad);
    for (int i = 0; i < 6; i++) ck_assert(x->grad[i] == 2 * x->data[i]);
    for (int i = 0; i < 6; i++) ck_assert(r->grad[i] == 2 * r->data[i]);
}
END_TEST

START_TEST(test_ctx_reset)
{
    bl_tensor *x = make_param("x", 3, xv);
    bl_sum(ctx, bl_square(ctx, x));
    ck_assert_int_eq(bl_tape_length(ctx), 2);
    ck_assert(bl_arena_used(bl_ctx_arena(ctx)) > 0);
    bl_ctx_reset(ctx);
    ck_assert_int_eq(bl_tape_length(ctx), 0);
    ck_assert_int_eq(bl_arena_used(bl_ctx_arena(ctx)), 0);
    /* the parameter survives; a fresh step works: d sum(x^2) = 2x */
    bl_backward(ctx, bl_sum(ctx, bl_square(ctx, x)));
    for (int i = 0; i < 3; i++) ck_assert(x->grad[i] == (bl_real)(2 * xv[i]));
    /* the arena does not grow over identical steps */
    bl_ctx_reset(ctx);
    bl_backward(ctx, bl_sum(ctx, bl_square(ctx, x)));
    size_t used = bl_arena_used(bl_ctx_arena(ctx));
    bl_ctx_reset(ctx);
    bl_backward(ctx, bl_sum(ctx, bl_square(ctx, x)));
    ck_assert_uint_eq(bl_arena_used(bl_ctx_arena(ctx)), used);
}
END_TEST

/* 1000 floats: a 4000-byte gradient, 4032 bytes in 64-byte units */
#define CHAIN_N 1000
#define CHAIN_BYTES 4032

START_TEST(test_grad_recycled)
{
    /* t_0 = x, t_k = 2 t_{k-1} (k = 1..10), L = sum(t_10): dL/dx = 2^10. Walking back, the
     * gradient of t_k is made by the node of t_{k+1} and is free once the node of t_k ran, so
     * two buffers of 4032 bytes (plus the loss's 64) serve the eleven gradients. */
    bl_tensor *x = bl_params_add(params, "x", 1, BL_SHAPE(CHAIN_N), 1);
    for (int i = 0; i < CHAIN_N; i++) x->data[i] = (bl_real)(i % 7) - 3;
    bl_tensor *t = x, *mid = NULL, *kept = NULL;
    for (int k = 1; k <= 10; k++) {
        t = bl_mul_scalar(ctx, t, 2);
        if (k == 3) mid = t;
        if (k == 5) kept = t;
    }
    bl_retain_grad(ctx, kept);
    bl_backward(ctx, bl_sum(ctx, t));
    for (int i = 0; i < CHAIN_N; i++) ck_assert(x->grad[i] == 1024);
    ck_assert_ptr_null(mid->grad); /* recycled */
    ck_assert_ptr_null(t->grad);
    ck_assert_ptr_nonnull(kept->grad); /* d L / d t_5 = 2^5 */
    for (int i = 0; i < CHAIN_N; i++) ck_assert(kept->grad[i] == 32);
    bl_ctx_mem m;
    bl_ctx_memory(ctx, &m);
    ck_assert_uint_eq(m.grad_total, 10 * CHAIN_BYTES + 64);
    /* the retained t_5 holds one buffer out of the rotation: 3 gradients alive at once (the
     * loss's was recycled before), 3 buffers and the loss's in the gradient arena */
    ck_assert_uint_eq(m.grad_live_peak, 3 * CHAIN_BYTES);
    ck_assert_uint_eq(m.grad_peak, 3 * CHAIN_BYTES + 64);
    ck_assert_uint_ge(m.forward_bytes, 10 * (size_t)CHAIN_BYTES); /* the ten activations */
    ck_assert_uint_ge(m.arena_peak, m.forward_bytes);

    /* without a retained tensor two buffers rotate (a new ctx: the peaks count since its start),
     * and the next step recycles the same memory */
    bl_ctx *c2 = bl_ctx_alloc(0);
    for (int step = 0; step < 2; step++) {
        bl_tensor_zero_grad(x);
        t = x;
        for (int k = 1; k <= 10; k++) t = bl_mul_scalar(c2, t, 2);
        bl_backward(c2, bl_sum(c2, t));
        for (int i = 0; i < CHAIN_N; i++) ck_assert(x->grad[i] == 1024);
        bl_ctx_memory(c2, &m);
        ck_assert_uint_eq(m.grad_total, 10 * CHAIN_BYTES + 64);
        ck_assert_uint_eq(m.grad_live_peak, 2 * CHAIN_BYTES);
        ck_assert_uint_eq(m.grad_peak, 2 * CHAIN_BYTES + 64);
        bl_ctx_reset(c2);
    }
    bl_ctx_free(c2);
}
END_TEST

START_TEST(test_grad_buffer_of_caller_kept)
{
    /* a gradient buffer the caller installed on an intermediate (as bl_gradcheck does on its
     * inputs) is the caller's: bl_backward accumulates into it and leaves it in place.
     * y = exp(x), L = sum(y): dL/dy = 1, dL/dx = e^x */
    bl_tensor *x = make_param("x", 3, xv);
    bl_tensor *y = bl_exp(ctx, x);
    bl_real mine[3] = {0.5, 0.5, 0.5};
    y->grad = mine;
    bl_backward(ctx, bl_sum(ctx, y));
    ck_assert_ptr_eq(y->grad, mine);
    for (int i = 0; i < 3; i++) ck_assert(mine[i] == 1.5);
    /* exp's backward read the accumulated 1.5 */
    for (int i = 0; i < 3; i++) ck_assert(x->grad[i] == (bl_real)(1.5f * y->data[i]));
}
END_TEST

static Suite *tape_suite(void)
{
    Suite *s = suite_create("tape");
    TCase *tc = tcase_create("tape");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_no_grad_scope);
    tcase_add_test(tc, test_detach);
    tcase_add_test(tc, test_used_twice);
    tcase_add_test(tc, test_accumulate_across_backward);
    tcase_add_test(tc, test_backward_consumes_tape);
    tcase_add_test(tc, test_reshape_view);
    tcase_add_test(tc, test_ctx_reset);
    tcase_add_test(tc, test_grad_recycled);
    tcase_add_test(tc, test_grad_buffer_of_caller_kept);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(tape_suite()); }
