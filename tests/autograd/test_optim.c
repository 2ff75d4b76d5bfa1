/* Adam and MultiStepLR against torch.optim (double build: the numbers below were produced by
 * torch 1.13 with float64 parameters, see the comment above each table), and Adam's handling
 * of parameters without a gradient (torch: grad = None) with per-parameter step counts. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "autograd/optim.h"
#include "tests/bl_check.h"

START_TEST(test_adam_matches_torch)
{
    /* torch.optim.Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01),
     * p0 = [1, -2, 0.3] float64, gradients set by hand before each step */
    static const double grads[3][3] = {{0.5, -0.25, 0.0}, {-1.0, 0.75, 1e-3}, {0.2, 0.2, -3.0}};
    static const double expect[3][3] = {
        {0.9000000019607843, -1.9000000037037035, 0.20000033333222222},
        {0.9355236415321513, -1.946602693568868, 0.1000006637681113},
        {0.950710760225499, -1.9961214913323537, 0.1637726860067706},
    };
    bl_params *ps = bl_params_alloc();
    bl_tensor *p = bl_params_add(ps, "p", 1, BL_SHAPE(3), 1);
    bl_tensor *buf = bl_params_add(ps, "running_mean", 1, BL_SHAPE(3), 0);
    p->data[0] = 1;
    p->data[1] = -2;
    p->data[2] = 0.3;
    buf->data[0] = 5;
    bl_adam_opts o = bl_adam_defaults();
    ck_assert_double_eq(o.lr, 1e-3);
    ck_assert_double_eq(o.beta2, 0.999);
    ck_assert_double_eq(o.eps, 1e-8);
    o.lr = 0.1;
    o.weight_decay = 0.01;
    bl_adam *adam = bl_adam_alloc(ps, o);
    for (int s = 0; s < 3; s++) {
        for (int i = 0; i < 3; i++) p->grad[i] = grads[s][i];
        p->has_grad = 1; /* set by hand: what bl_backward does for a reached parameter */
        bl_adam_step(adam);
        for (int i = 0; i < 3; i++) ck_assert_double_eq_tol(p->data[i], expect[s][i], 1e-12);
    }
    ck_assert_int_eq(adam->step, 3);
    ck_assert(buf->data[0] == 5); /* buffers are not optimised */
    ck_assert_int_eq(bl_params_count_trainable(ps), 3);
    bl_params_zero_grad(ps);
    ck_assert(p->grad[0] == 0 && p->grad[2] == 0);
    ck_assert_int_eq(p->has_grad, 0);
    bl_adam_free(adam);
    bl_params_free(ps);
}
END_TEST

/* loss = sum(a * a) + (with_b ? sum(b * c) : 0): d/da = 2a, d/db = c */
static void backward_once(bl_ctx *ctx, bl_params *ps, bl_tensor *a, bl_tensor *b, bl_tensor *c,
                          int with_b)
{
    bl_params_zero_grad(ps);
    bl_tensor *loss = bl_sum(ctx, bl_mul(ctx, a, a));
    if (with_b) loss = bl_add(ctx, loss, bl_sum(ctx, bl_mul(ctx, b, c)));
    bl_backward(ctx, loss);
    ck_assert_int_eq(a->has_grad, 1);
    ck_assert_int_eq(b->has_grad, with_b);
    ck_assert_int_eq(c->has_grad, 0); /* a constant (requires no gradient) */
}

START_TEST(test_adam_skips_params_without_grad)
{
    /* b takes part in steps 1-2, then not in steps 3-5 (torch: its grad is None after
     * zero_grad(set_to_none=True)): its value, moments and step count must stay bit-exact
     * even with weight decay, while a keeps moving */
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_params *ps = bl_params_alloc();
    bl_tensor *a = bl_params_add(ps, "a", 1, BL_SHAPE(3), 1);
    bl_tensor *b = bl_params_add(ps, "b", 1, BL_SHAPE(3), 1);
    bl_tensor *c = bl_params_add(ps, "c", 1, BL_SHAPE(3), 0);
    for (int i = 0; i < 3; i++) {
        a->data[i] = 1.0 + i;
        b->data[i] = 0.5 + i;
        c->data[i] = 2.0 - 1.5 * i;
    }
    bl_adam_opts o = bl_adam_defaults();
    o.lr = 0.1;
    o.weight_decay = 0.01;
    bl_adam *adam = bl_adam_alloc(ps, o);
    for (int s = 0; s < 2; s++) {
        backward_once(ctx, ps, a, b, c, 1);
        bl_adam_step(adam);
        bl_ctx_reset(ctx);
    }
    ck_assert_int_eq(adam->steps[1], 2);
    bl_real b_data[3], b_m[3], b_v[3], a_prev[3];
    memcpy(b_data, b->data, sizeof b_data);
    memcpy(b_m, adam->m[1], sizeof b_m);
    memcpy(b_v, adam->v[1], sizeof b_v);
    ck_assert(b_m[0] != 0 && b_v[0] != 0);
    for (int s = 0; s < 3; s++) {
        memcpy(a_prev, a->data, sizeof a_prev);
        backward_once(ctx, ps, a, b, c, 0);
        bl_adam_step(adam);
        bl_ctx_reset(ctx);
        ck_assert(memcmp(b->data, b_data, sizeof b_data) == 0);
        ck_assert(memcmp(adam->m[1], b_m, sizeof b_m) == 0);
        ck_assert(memcmp(adam->v[1], b_v, sizeof b_v) == 0);
        for (int i = 0; i < 3; i++) ck_assert(a->data[i] != a_prev[i]);
    }
    ck_assert_int_eq(adam->step, 5);
    ck_assert_int_eq(adam->steps[0], 5);
    ck_assert_int_eq(adam->steps[1], 2);
    ck_assert_int_eq(adam->steps[2], 0); /* a buffer */
    bl_adam_free(adam);
    bl_params_free(ps);
    bl_ctx_free(ctx);
}
END_TEST

START_TEST(test_adam_late_parameter_counts_its_own_steps)
{
    /* b gets the constant gradient c from step 3 on. With its own count t = 1, 2, ... (torch's
     * per-parameter state['step']) and no weight decay: m_t = c (1 - beta1^t) and
     * v_t = c^2 (1 - beta2^t), so the bias-corrected ratio is c / |c| and every step moves b by
     * lr c / (|c| + eps): after k steps b = b0 - k lr c / (|c| + eps). With the global count
     * (t = 3, 4, ...) the first of them would move b by 0.64 lr instead. */
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_params *ps = bl_params_alloc();
    bl_tensor *a = bl_params_add(ps, "a", 1, BL_SHAPE(3), 1);
    bl_tensor *b = bl_params_add(ps, "b", 1, BL_SHAPE(3), 1);
    bl_tensor *c = bl_params_add(ps, "c", 1, BL_SHAPE(3), 0);
    static const double b0[3] = {0.5, -1.25, 2}, cv[3] = {2, -0.5, 1e-3};
    for (int i = 0; i < 3; i++) {
        a->data[i] = 1.0 + i;
        b->data[i] = b0[i];
        c->data[i] = cv[i];
    }
    bl_adam_opts o = bl_adam_defaults();
    o.lr = 0.1;
    bl_adam *adam = bl_adam_alloc(ps, o);
    for (int s = 1; s <= 6; s++) {
        backward_once(ctx, ps, a, b, c, s >= 3);
        bl_adam_step(adam);
        bl_ctx_reset(ctx);
        const int k = s >= 3 ? s - 2 : 0;
        ck_assert_int_eq(adam->steps[1], k);
        for (int i = 0; i < 3; i++) {
            const double expect = b0[i] - k * o.lr * cv[i] / (fabs(cv[i]) + o.eps);
            ck_assert_double_eq_tol(b->data[i], expect, 1e-12);
            ck_assert_double_eq_tol(adam->m[1][i], cv[i] * (1 - pow(o.beta1, k)), 1e-15);
            ck_assert_double_eq_tol(adam->v[1][i], cv[i] * cv[i] * (1 - pow(o.beta2, k)), 1e-15);
        }
    }
    ck_assert_int_eq(adam->steps[0], 6);
    bl_adam_free(adam);
    bl_params_free(ps);
    bl_ctx_free(ctx);
}
END_TEST

START_TEST(test_multistep_matches_torch)
{
    /* torch MultiStepLR(milestones=[2, 5], gamma=0.1) on lr 1e-3, epochs 0..6 */
    static const double expect[7] = {0.001, 0.001, 0.0001, 0.0001, 0.0001, 1e-05, 1e-05};
    bl_multistep s = {.base_lr = 1e-3, .gamma = 0.1, .n_milestones = 2, .milestones = {2, 5}};
    for (int e = 0; e < 7; e++) ck_assert_double_eq_tol(bl_multistep_lr(&s, e), expect[e], 1e-15);
}
END_TEST

START_TEST(test_params_registry)
{
    bl_params *ps = bl_params_alloc();
    for (int i = 0; i < 100; i++) { /* grows past the initial capacity */
        char name[32];
        snprintf(name, sizeof name, "layer.%d.weight", i);
        bl_params_add(ps, name, 2, BL_SHAPE(2, 3), i % 2);
    }
    ck_assert_int_eq(ps->n, 100);
    ck_assert_ptr_eq(bl_params_find(ps, "layer.42.weight"), ps->t[42]);
    ck_assert_ptr_null(bl_params_find(ps, "layer.100.weight"));
    ck_assert_int_eq(bl_params_count_trainable(ps), 50 * 6);
    bl_params_free(ps);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("optim");
    tcase_add_test(tc, test_adam_matches_torch);
    tcase_add_test(tc, test_adam_skips_params_without_grad);
    tcase_add_test(tc, test_adam_late_parameter_counts_its_own_steps);
    tcase_add_test(tc, test_multistep_matches_torch);
    tcase_add_test(tc, test_params_registry);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
