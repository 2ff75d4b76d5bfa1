/* The input normaliser (lib/sim/normalize.h, docs/behaviour.md §4.1) on examples computed by hand, against an
 * independent padded-array implementation, and on bad inputs. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sim/normalize.h"
#include "tests/bl_check.h"

#define TOL 1e-5

/* 5 x 6 plane with x(i, j) = a * i + c: every 9x9 window with reflect padding sees the rows
 *   i = 0: 4 3 2 1 0 1 2 3 4   mean 20/9      i = 1: 3 2 1 0 1 2 3 4 3   mean 19/9
 *   i = 2: 2 1 0 1 2 3 4 3 2   mean 18/9      i = 3: 1 0 1 2 3 4 3 2 1   mean 17/9
 *   i = 4: 0 1 2 3 4 3 2 1 0   mean 16/9
 * so r(i) = a (i - mean) = a * (-20, -10, 0, 10, 20) / 9, and the window means of r^2 are
 *   i = 0 and 4: (3 * 400 + 4 * 100) / 729 = 1600/729 -> s = a 40/27
 *   i = 1 and 3: (5 * 100 + 2 * 400) / 729 = 1300/729 -> s = a sqrt(1300)/27
 *   i = 2:       (4 * 100 + 2 * 400) / 729 = 1200/729 -> s = a sqrt(1200)/27 */
static void row_plane(bl_real *x, double a, double c)
{
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 6; j++) x[i * 6 + j] = (bl_real)(a * i + c);
}

START_TEST(test_local_zscore_by_hand)
{
    bl_real x[30], out[30];
    double work[4 * 30];
    /* unit slope, floor below every s: out = r / s */
    row_plane(x, 1, 0);
    bl_local_zscore(x, 5, 6, 0.5, out, work);
    const double want[5] = {-1.5, (-10.0 / 9) / (sqrt(1300.0) / 27), 0, (10.0 / 9) / (sqrt(1300.0) / 27), 1.5};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 6; j++) ck_assert_double_eq_tol(out[i * 6 + j], want[i], TOL);
    /* slope 100: s = 148.1 (rows 0, 4), 133.5 (1, 3), 128.3 (2), all below the floor 200 */
    row_plane(x, 100, 7);
    bl_local_zscore(x, 5, 6, 200, out, work);
    const double want2[5] = {-2000.0 / 9 / 200, -1000.0 / 9 / 200, 0, 1000.0 / 9 / 200, 2000.0 / 9 / 200};
    for (int i = 0; i < 5; i++) ck_assert_double_eq_tol(out[i * 6 + 3], want2[i], TOL);
    /* slope 200: s above the floor again: out = r / s as in the first case */
    row_plane(x, 200, -3);
    bl_local_zscore(x, 5, 6, 200, out, work);
    for (int i = 0; i < 5; i++) ck_assert_double_eq_tol(out[i * 6 + 5], want[i], TOL);
}
END_TEST

/* independent reference: build the reflect-padded array explicitly, average windows directly */
static void reference_zscore(const bl_real *x, int H, int W, double floor_, double *out)
{
    int Hp = H + 8, Wp = W + 8;
    double *pad = malloc(sizeof(double) * Hp * Wp), *r = malloc(sizeof(double) * H * W);
    double *rpad = malloc(sizeof(double) * Hp * Wp);
    for (int i = 0; i < Hp; i++)
        for (int j = 0; j < Wp; j++) {
            int a = abs(i - 4), b = abs(j - 4);
            if (a > H - 1) a = 2 * (H - 1) - a;
            if (b > W - 1) b = 2 * (W - 1) - b;
            pad[i * Wp + j] = x[a * W + b];
        }
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            double m = 0;
            for (int u = 0; u < 9; u++)
                for (int v = 0; v < 9; v++) m += pad[(i + u) * Wp + j + v];
            r[i * W + j] = x[i * W + j] - m / 81;
        }
    for (int i = 0; i < Hp; i++)
        for (int j = 0; j < Wp; j++) {
            int a = abs(i - 4), b = abs(j - 4);
            if (a > H - 1) a = 2 * (H - 1) - a;
            if (b > W - 1) b = 2 * (W - 1) - b;
            rpad[i * Wp + j] = r[a * W + b] * r[a * W + b];
        }
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            double m = 0;
            for (int u = 0; u < 9; u++)
                for (int v = 0; v < 9; v++) m += rpad[(i + u) * Wp + j + v];
            double s = sqrt(m / 81);
            out[i * W + j] = r[i * W + j] / (s > floor_ ? s : floor_);
        }
    free(pad);
    free(r);
    free(rpad);
}

START_TEST(test_normalize_batch)
{
    const int B = 2, NB = 3, H = 16, W = 11;
    bl_tensor *img = bl_tensor_alloc(NULL, 4, BL_SHAPE(B, NB, H, W), 0);
    bl_tensor *bg = bl_tensor_alloc(NULL, 4, BL_SHAPE(B, NB, H, W), 0);
    srand(3);
    for (int64_t i = 0; i < img->numel; i++) {
        bg->data[i] = (bl_real)(500 + 300 * (rand() / (double)RAND_MAX));
        img->data[i] = (bl_real)(bg->data[i] + 2000 * (rand() / (double)RAND_MAX - 0.2));
    }
    bl_normalize_opts o;
    bl_normalize_opts_default(&o);
    o.n_bands = 2;
    o.bands[0] = 2; /* output band order differs from the input's */
    o.bands[1] = 0;
    ck_assert_int_eq(bl_normalize_channels(&o), 6);
    bl_tensor *out = bl_tensor_alloc(NULL, 5, BL_SHAPE(B, 2, 6, H, W), 0);
    ck_assert_int_eq(bl_normalize(&o, img, bg, NULL, out), BL_OK);
    double *ref = malloc(sizeof(double) * H * W);
    const double ts[4] = {-3, 0, 1, 3};
    for (int b = 0; b < B; b++)
        for (int ob = 0; ob < 2; ob++) {
            int band = o.bands[ob];
            const bl_real *x = img->data + (b * NB + band) * H * W, *y = bg->data + (b * NB + band) * H * W;
            const bl_real *o0 = out->data + ((b * 2 + ob) * 6) * H * W;
            reference_zscore(y, H, W, 200, ref);
            for (int i = 0; i < H * W; i++) ck_assert_double_eq_tol(o0[i], ref[i], TOL);
            for (int t = 0; t < 4; t++)
                for (int i = 0; i < H * W; i++) {
                    double z = (x[i] - y[i]) / sqrt(y[i]) - ts[t];
                    ck_assert_double_eq_tol(o0[(1 + t) * H * W + i], z > 0 ? log(1 + z) : 0, TOL);
                }
            reference_zscore(x, H, W, 200, ref);
            for (int i = 0; i < H * W; i++) ck_assert_double_eq_tol(o0[5 * H * W + i], ref[i], TOL);
        }
    free(ref);
    bl_tensor_free(out);
    bl_tensor_free(img);
    bl_tensor_free(bg);
}
END_TEST

START_TEST(test_log_transform_by_hand)
{
    /* bg = 100 (sqrt 10), img = 100 + 10 z0: channel t holds log1p(max(z0 - t, 0)) */
    const int H = 5, W = 5;
    bl_tensor *img = bl_tensor_alloc(NULL, 4, BL_SHAPE(1, 1, H, W), 0);
    bl_tensor *bg = bl_tensor_alloc(NULL, 4, BL_SHAPE(1, 1, H, W), 0);
    const double z0[4] = {-5, 0, 2, 5};
    for (int i = 0; i < H * W; i++) {
        bg->data[i] = 100;
        img->data[i] = (bl_real)(100 + 10 * z0[i % 4]);
    }
    bl_normalize_opts o;
    bl_normalize_opts_default(&o);
    o.n_bands = 1;
    o.use_clahe = 0;
    ck_assert_int_eq(bl_normalize_channels(&o), 5);
    bl_tensor *out = bl_tensor_alloc(NULL, 5, BL_SHAPE(1, 1, 5, H, W), 0);
    ck_assert_int_eq(bl_normalize(&o, img, bg, NULL, out), BL_OK);
    /* t = -3: z0 = -5 -> 0; 0 -> log 4; 2 -> log 6; 5 -> log 9 */
    const double want[4][4] = {{0, log(4), log(6), log(9)},
                               {0, 0, log(3), log(6)},
                               {0, 0, log(2), log(5)},
                               {0, 0, 0, log(3)}};
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < H * W; i++)
            ck_assert_double_eq_tol(out->data[(1 + t) * H * W + i], want[t][i % 4], 1e-6);
    /* channel 0 is the raw background without CLAHE */
    ck_assert_double_eq(out->data[0], 100);
    bl_tensor_free(out);
    bl_tensor_free(img);
    bl_tensor_free(bg);
}
END_TEST

START_TEST(test_channel_layout_and_errors)
{
    const int H = 6, W = 5;
    bl_tensor *img = bl_tensor_alloc(NULL, 4, BL_SHAPE(1, 2, H, W), 0);
    bl_tensor *bg = bl_tensor_alloc(NULL, 4, BL_SHAPE(1, 2, H, W), 0);
    bl_tensor *psf = bl_tensor_alloc(NULL, 3, BL_SHAPE(1, 2, 6), 0);
    for (int i = 0; i < img->numel; i++) {
        img->data[i] = (bl_real)(1000 + i);
        bg->data[i] = 900;
    }
    for (int i = 0; i < 12; i++) psf->data[i] = (bl_real)(i + 1);
    bl_normalize_opts o;
    bl_normalize_opts_default(&o);
    o.n_bands = 1;
    o.bands[0] = 1;
    o.include_original = 1;
    o.concat_psf_params = 1;
    o.num_psf_params = 3;
    o.n_log = 1;
    o.log_transform_stdevs[0] = 0;
    /* [image, CLAHE(bg), psf0, psf1, psf2, log t=0, CLAHE(image)] */
    ck_assert_int_eq(bl_normalize_channels(&o), 7);
    bl_tensor *out = bl_tensor_alloc(NULL, 5, BL_SHAPE(1, 1, 7, H, W), 0);
    ck_assert_int_eq(bl_normalize(&o, img, bg, psf, out), BL_OK);
    const int P = H * W;
    ck_assert_double_eq(out->data[3], img->data[P + 3]);         /* raw band-1 image */
    ck_assert_double_eq(out->data[P + 4], 0);                    /* CLAHE of a constant */
    ck_assert_double_eq(out->data[2 * P + 5], 7);                /* psf_params[0, 1, 0] */
    ck_assert_double_eq(out->data[4 * P + 5], 9);                /* psf_params[0, 1, 2] */
    ck_assert_double_eq_tol(out->data[5 * P], log1p((1030.0 - 900) / 30), 1e-5);
    bl_tensor_free(out);

    /* bad inputs */
    bl_normalize_opts_default(&o);
    o.n_bands = 2;
    o.bands[1] = 1;
    out = bl_tensor_alloc(NULL, 5, BL_SHAPE(1, 2, 6, H, W), 0);
    bg->data[7] = 0;
    ck_assert_int_eq(bl_normalize(&o, img, bg, NULL, out), BL_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "flat index 7"));
    bg->data[7] = 900;
    img->data[3] = NAN;
    ck_assert_int_eq(bl_normalize(&o, img, bg, NULL, out), BL_ERR_NAN);
    img->data[3] = 1;
    o.bands[1] = 4;
    ck_assert_int_eq(bl_normalize(&o, img, bg, NULL, out), BL_ERR_ARG);
    bl_tensor_free(out);
    bl_tensor *small = bl_tensor_alloc(NULL, 4, BL_SHAPE(1, 1, 4, 9), 0);
    bl_tensor *small_bg = bl_tensor_alloc(NULL, 4, BL_SHAPE(1, 1, 4, 9), 0);
    bl_tensor_fill(small_bg, 10);
    bl_normalize_opts_default(&o);
    o.n_bands = 1;
    out = bl_tensor_alloc(NULL, 5, BL_SHAPE(1, 1, 6, 4, 9), 0);
    ck_assert_int_eq(bl_normalize(&o, small, small_bg, NULL, out), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "4 x 9"));
    bl_tensor_free(out);
    bl_tensor_free(small);
    bl_tensor_free(small_bg);
    bl_tensor_free(img);
    bl_tensor_free(bg);
    bl_tensor_free(psf);
}
END_TEST

START_TEST(test_options_from_config)
{
    bl_config *cfg;
    const char *text = "enc = { image_normalizer = { bands = [0, 2]; log_transform_stdevs = [1.0];\n"
                       "use_clahe = false; clahe_min_stdev = 50.0; }; };\n";
    ck_assert_int_eq(bl_config_load_string(&cfg, text, "norm.cfg"), BL_OK);
    bl_normalize_opts o;
    ck_assert_int_eq(bl_normalize_opts_from_config(&o, cfg, "enc.image_normalizer"), BL_OK);
    ck_assert_int_eq(o.n_bands, 2);
    ck_assert_int_eq(o.bands[1], 2);
    ck_assert_int_eq(o.n_log, 1);
    ck_assert_int_eq(o.use_clahe, 0);
    ck_assert_int_eq(bl_normalize_channels(&o), 2);
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_OK);
    bl_config_free(cfg);
    ck_assert_int_eq(bl_config_load_string(&cfg, "n = { clahe_min_stdev = -1.0; };", "bad.cfg"), BL_OK);
    ck_assert_int_eq(bl_normalize_opts_from_config(&o, cfg, "n"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "n.clahe_min_stdev"));
    bl_config_free(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("normalize");
    TCase *tc = tcase_create("normalize");
    tcase_add_test(tc, test_local_zscore_by_hand);
    tcase_add_test(tc, test_normalize_batch);
    tcase_add_test(tc, test_log_transform_by_hand);
    tcase_add_test(tc, test_channel_layout_and_errors);
    tcase_add_test(tc, test_options_from_config);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
