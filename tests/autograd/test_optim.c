/* Adam and MultiStepLR against torch.optim (double build: the numbers below were produced by
 * torch 1.13 with float64 parameters, see the comment above each table). */
#include <check.h>
#include <math.h>
#include <stdlib.h>

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
        bl_adam_step(adam);
        for (int i = 0; i < 3; i++) ck_assert_double_eq_tol(p->data[i], expect[s][i], 1e-12);
    }
    ck_assert_int_eq(adam->step, 3);
    ck_assert(buf->data[0] == 5); /* buffers are not optimised */
    ck_assert_int_eq(bl_params_count_trainable(ps), 3);
    bl_params_zero_grad(ps);
    ck_assert(p->grad[0] == 0 && p->grad[2] == 0);
    bl_adam_free(adam);
    bl_params_free(ps);
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
    tcase_add_test(tc, test_multistep_matches_torch);
    tcase_add_test(tc, test_params_registry);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
