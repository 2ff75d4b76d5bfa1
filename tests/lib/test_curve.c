/* Training-curve CSV and PNG (lib/io/curve.h), atomic writes, progress output. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/io/atomic_file.h"
#include "lib/io/curve.h"
#include "lib/io/plot.h"
#include "lib/progress.h"
#include "tests/bl_check.h"

static char dir[256];

static void make_dir(void)
{
    bl_check_tmpdir(dir, sizeof dir, "bl_test_curve");
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    if (d) closedir(d);
    rmdir(dir);
}

/* number of entries in dir (a stray temporary would show here) */
static int count_files(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++; /* temporaries are hidden files */
    closedir(d);
    return n;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static bl_curve *sample_curve(int n)
{
    bl_curve *c = bl_curve_alloc();
    for (int i = 1; i <= n; i++) {
        /* a decaying loss that goes negative (NLLs can), val every 5 steps, lr drop at 20 */
        bl_curve_point p = {i, 4.0 * exp(-0.1 * i) - 1.0 + 0.1 / 3.0 * (i % 3),
                            i % 5 == 0 ? 4.2 * exp(-0.1 * i) - 0.9 : NAN, i < 20 ? 1e-3 : 1e-4,
                            0.123456789 * i};
        bl_curve_append(c, p);
    }
    return c;
}

START_TEST(test_curve_csv_round_trip)
{
    make_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/curve.csv", dir);
    bl_curve *c = sample_curve(30);
    c->points[3].train_loss = NAN; /* a step without a train loss */
    ck_assert_int_eq(bl_curve_write_csv(c, path), BL_OK);
    ck_assert_int_eq(count_files(), 1); /* no temporary left */
    char *text = read_all(path);
    ck_assert(strncmp(text, "step,train_loss,val_loss,lr,seconds\n", 36) == 0);
    /* step 1: no validation -> empty field; lr 1e-3 printed in its shortest exact form */
    ck_assert_ptr_nonnull(strstr(text, "\n1,"));
    ck_assert_ptr_nonnull(strstr(text, ",,0.001,"));
    ck_assert_ptr_nonnull(strstr(text, "\n4,,,0.001,"));
    free(text);
    bl_curve *d;
    ck_assert_int_eq(bl_curve_read_csv(&d, path), BL_OK);
    ck_assert_int_eq(d->n, 30);
    for (int i = 0; i < 30; i++) {
        const bl_curve_point *a = &c->points[i], *b = &d->points[i];
        ck_assert_int_eq(a->step, b->step);
        ck_assert(a->train_loss == b->train_loss || (isnan(a->train_loss) && isnan(b->train_loss)));
        ck_assert(a->val_loss == b->val_loss || (isnan(a->val_loss) && isnan(b->val_loss)));
        ck_assert(a->lr == b->lr);
        ck_assert(a->seconds == b->seconds);
    }
    /* resuming at step 12 keeps steps 1..12 */
    bl_curve_truncate(d, 12);
    ck_assert_int_eq(d->n, 12);
    ck_assert_int_eq(d->points[11].step, 12);
    /* overwriting replaces the file atomically */
    ck_assert_int_eq(bl_curve_write_csv(d, path), BL_OK);
    bl_curve *e;
    ck_assert_int_eq(bl_curve_read_csv(&e, path), BL_OK);
    ck_assert_int_eq(e->n, 12);
    ck_assert_int_eq(count_files(), 1);
    bl_curve_free(c);
    bl_curve_free(d);
    bl_curve_free(e);
    remove_dir();
}
END_TEST

START_TEST(test_curve_csv_errors)
{
    make_dir();
    char path[512];
    bl_curve *c;
    snprintf(path, sizeof path, "%s/missing.csv", dir);
    ck_assert_int_eq(bl_curve_read_csv(&c, path), BL_ERR_IO);
    ck_assert_ptr_null(c);
    snprintf(path, sizeof path, "%s/bad.csv", dir);
    write_text(path, "step,loss\n1,2\n");
    ck_assert_int_eq(bl_curve_read_csv(&c, path), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "bad.csv:1"));
    write_text(path, "step,train_loss,val_loss,lr,seconds\n1,2,,0.1,3\n2,x,,0.1,3\n");
    ck_assert_int_eq(bl_curve_read_csv(&c, path), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "bad.csv:3"));
    write_text(path, "step,train_loss,val_loss,lr,seconds\n1,2,,0.1\n");
    ck_assert_int_eq(bl_curve_read_csv(&c, path), BL_ERR_FORMAT);
    write_text(path, "step,train_loss,val_loss,lr,seconds\n1.5,2,,0.1,3\n");
    ck_assert_int_eq(bl_curve_read_csv(&c, path), BL_ERR_FORMAT);
    write_text(path, "");
    ck_assert_int_eq(bl_curve_read_csv(&c, path), BL_ERR_FORMAT);
    /* a directory that does not exist: an error, nothing written */
    bl_curve *d = sample_curve(3);
    snprintf(path, sizeof path, "%s/no/such/dir/curve.csv", dir);
    ck_assert_int_eq(bl_curve_write_csv(d, path), BL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "curve.csv"));
    bl_curve_free(d);
    remove_dir();
}
END_TEST

START_TEST(test_atomic_abort_keeps_old_file)
{
    make_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    write_text(path, "old\n");
    bl_atomic_file af;
    ck_assert_int_eq(bl_atomic_open(&af, path, "w"), BL_OK);
    fputs("half-written", af.f);
    ck_assert_int_eq(count_files(), 2);
    bl_atomic_abort(&af);
    ck_assert_int_eq(count_files(), 1);
    char *text = read_all(path);
    ck_assert_str_eq(text, "old\n");
    free(text);
    ck_assert_int_eq(bl_atomic_open(&af, path, "w"), BL_OK);
    fputs("new\n", af.f);
    ck_assert_int_eq(bl_atomic_commit(&af), BL_OK);
    text = read_all(path);
    ck_assert_str_eq(text, "new\n");
    free(text);
    remove_dir();
}
END_TEST

/* decode a PNG with libpng into RGBA; returns pixels (free) and the size */
static unsigned char *decode_png(const char *path, int *w, int *h)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    ck_assert_msg(png_image_begin_read_from_file(&img, path), "libpng: %s", img.message);
    img.format = PNG_FORMAT_RGBA;
    unsigned char *px = malloc(PNG_IMAGE_SIZE(img));
    ck_assert_msg(png_image_finish_read(&img, NULL, px, 0, NULL), "libpng: %s", img.message);
    *w = (int)img.width;
    *h = (int)img.height;
    return px;
}

/* pixels within 40 (per channel) of an RGB colour */
static long count_colour(const unsigned char *px, int w, int h, int r, int g, int b)
{
    long n = 0;
    for (long i = 0; i < (long)w * h; i++)
        n += abs(px[4 * i] - r) < 40 && abs(px[4 * i + 1] - g) < 40 && abs(px[4 * i + 2] - b) < 40;
    return n;
}

START_TEST(test_curve_png)
{
    make_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/curve.png", dir);
    bl_curve *c = sample_curve(40);
    ck_assert_int_eq(bl_curve_write_png(c, path, 640, 400, "test curve"), BL_OK);
    ck_assert_int_eq(count_files(), 1);
    int w, h;
    unsigned char *px = decode_png(path, &w, &h);
    ck_assert_int_eq(w, 640);
    ck_assert_int_eq(h, 400);
    long white = count_colour(px, w, h, 255, 255, 255);
    long blue = count_colour(px, w, h, 31, 119, 180), orange = count_colour(px, w, h, 255, 127, 14);
    long black = count_colour(px, w, h, 0, 0, 0);
    /* mostly background, with both series and the axes drawn */
    ck_assert_msg(white > w * h / 2, "white %ld", white);
    ck_assert_msg(blue > 200, "train line: %ld blue pixels", blue);
    ck_assert_msg(orange > 100, "validation line: %ld orange pixels", orange);
    ck_assert_msg(black > 500, "axes: %ld black pixels", black);
    free(px);

    /* only a train series, another size */
    bl_curve *d = bl_curve_alloc();
    bl_curve_append(d, (bl_curve_point){1, 2.0, NAN, 1e-3, 0.1});
    bl_curve_append(d, (bl_curve_point){2, 1.0, NAN, 1e-3, 0.2});
    ck_assert_int_eq(bl_curve_write_png(d, path, 300, 200, NULL), BL_OK);
    px = decode_png(path, &w, &h);
    ck_assert_int_eq(w, 300);
    ck_assert_int_eq(h, 200);
    ck_assert_int_eq(count_colour(px, w, h, 255, 127, 14), 0);
    free(px);

    /* nothing to plot, bad size, unwritable place: errors, the old file stays */
    bl_curve *e = bl_curve_alloc();
    bl_curve_append(e, (bl_curve_point){1, NAN, NAN, 1e-3, 0});
    ck_assert_int_eq(bl_curve_write_png(e, path, 300, 200, NULL), BL_ERR_ARG);
    ck_assert_int_eq(bl_curve_write_png(c, path, 10, 200, NULL), BL_ERR_ARG);
    char bad[512];
    snprintf(bad, sizeof bad, "%s/no/such/dir/c.png", dir);
    ck_assert_int_eq(bl_curve_write_png(c, bad, 300, 200, NULL), BL_ERR_IO);
    px = decode_png(path, &w, &h);
    ck_assert_int_eq(w, 300);
    free(px);
    ck_assert_int_eq(count_files(), 1);
    bl_curve_free(c);
    bl_curve_free(d);
    bl_curve_free(e);
    remove_dir();
}
END_TEST


/* The loss axis: all values when they are of one scale; a lone huge validation value (or a
 * few) above Q3 + 3 IQR does not set it and is counted; on a log axis the fence works in
 * decades and non-positive values are ignored. Then both PNGs are drawn, of the requested
 * size, with the series visible. */
START_TEST(test_curve_range_robust_and_log)
{
    double v[41], lo, hi;
    int64_t above;
    for (int i = 0; i < 40; i++) v[i] = 3.0 + 2.0 * exp(-0.1 * i); /* 5 .. 3.04 */
    ck_assert(bl_curve_y_range(v, 40, 0, &lo, &hi, &above));
    ck_assert_int_eq(above, 0);
    double span = 5.0 - v[39]; /* padded by 5% of the span */
    ck_assert_double_eq_tol(lo, v[39] - 0.05 * span, 1e-12);
    ck_assert_double_eq_tol(hi, 5.0 + 0.05 * span, 1e-12);
    v[40] = 1e30; /* one diverged validation */
    ck_assert(bl_curve_y_range(v, 41, 0, &lo, &hi, &above));
    ck_assert_int_eq(above, 1);
    ck_assert_double_eq_tol(hi, 5.0 + 0.05 * span, 1e-12);
    v[40] = NAN;
    v[39] = INFINITY;
    ck_assert(bl_curve_y_range(v, 41, 0, &lo, &hi, &above));
    ck_assert_int_eq(above, 0);
    ck_assert(hi < 6);
    /* log axis: 1e-3 .. 1e2 evenly in decades, a zero and a negative value left out */
    double w[12] = {1e-3, 1e-2, 1e-1, 1, 10, 100, 0, -5, 1e-3, 1e-2, 1e-1, 1};
    ck_assert(bl_curve_y_range(w, 12, 1, &lo, &hi, &above));
    ck_assert_int_eq(above, 0);
    ck_assert_double_eq_tol(log10(lo), -3 - 0.25, 1e-9);
    ck_assert_double_eq_tol(log10(hi), 2 + 0.25, 1e-9);
    w[6] = 1e40; /* 38 decades up: above the fence */
    ck_assert(bl_curve_y_range(w, 12, 1, &lo, &hi, &above));
    ck_assert_int_eq(above, 1);
    ck_assert_double_eq_tol(log10(hi), 2.25, 1e-9);
    ck_assert(!bl_curve_y_range((double[]){0, -1, NAN}, 3, 1, &lo, &hi, &above));
    ck_assert(bl_curve_y_range((double[]){0, -1, NAN}, 3, 0, &lo, &hi, &above));

    make_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/curve.png", dir);
    bl_curve *c = sample_curve(40);
    c->points[39].val_loss = 1e30;
    for (int log_scale = 0; log_scale < 2; log_scale++) {
        ck_assert_int_eq(bl_curve_write_png_log(c, path, 500, 350, "outlier", log_scale), BL_OK);
        int wd, ht;
        unsigned char *px = decode_png(path, &wd, &ht);
        ck_assert_int_eq(wd, 500);
        ck_assert_int_eq(ht, 350);
        /* the train line spans the plot's height, not a flat line at the bottom (which is
         * what an axis up to 1e30 would give) */
        int top = ht, bottom = -1;
        for (int y = 0; y < ht; y++)
            for (int x = 0; x < wd; x++) {
                const unsigned char *q = px + 4 * ((size_t)y * wd + x);
                if (q[0] == 31 && q[1] == 119 && q[2] == 180) {
                    top = y < top ? y : top;
                    bottom = y > bottom ? y : bottom;
                }
            }
        ck_assert_msg(bottom - top > ht / 3, "train curve spans rows %d to %d of %d (log %d)", top, bottom, ht,
                      log_scale);
        free(px);
    }
    ck_assert_int_eq(count_files(), 1);
    bl_curve_free(c);
    remove_dir();
}
END_TEST


/* lib/io/plot.h directly: a 200 x 300 image with one bright blob, drawn in grey into a PNG
 * smaller than the image (blocks of 3 x 3 pixels): the blob is bright where
 * bl_plot_image_to_png puts it, the sky dark; a star marker there in the prediction colour;
 * a band the image lacks is refused and writes nothing */
START_TEST(test_plot_image_blocks)
{
    make_dir();
    const int64_t H = 200, W = 300;
    bl_tensor *im = bl_tensor_alloc("im", 4, BL_SHAPE(1, 2, H, W), 0), *bg = bl_tensor_alloc("bg", 4, BL_SHAPE(1, 2, H, W), 0);
    for (int64_t c = 0; c < 2; c++)
        for (int64_t i = 0; i < H; i++)
            for (int64_t j = 0; j < W; j++) {
                double d2 = (double)((i - 50) * (i - 50) + (j - 220) * (j - 220));
                bg->data[(c * H + i) * W + j] = 100;
                im->data[(c * H + i) * W + j] = (bl_real)(100 + ((i * 7 + j * 13) % 5 - 2) + 5000 * exp(-d2 / 18));
            }
    bl_full_catalog *pred = bl_full_catalog_alloc(1, 1, H, W, 2);
    pred->n_sources[0] = 1;
    pred->plocs->data[0] = 150, pred->plocs->data[1] = 60; /* a false detection on the sky */
    bl_plot_opts o = bl_plot_opts_default(2);
    o.width = 160, o.height = 120, o.band = 1;
    ck_assert_int_eq(o.flux_band, 0);
    char path[512];
    snprintf(path, sizeof path, "%s/img.png", dir);
    uint8_t unmatched = 0;
    ck_assert_msg(bl_plot_image_png(path, im, bg, 0, (bl_plot_sources){0}, (bl_plot_sources){pred, &unmatched}, &o) == BL_OK,
                  "%s", bl_error_message());
    int w, h;
    unsigned char *px = decode_png(path, &w, &h);
    ck_assert(w == 160 && h == 120);
    double x, y;
    bl_plot_image_to_png(&o, H, W, 50, 220, &x, &y);
    const unsigned char *q = px + 4 * ((size_t)y * w + (size_t)x);
    ck_assert_msg(q[0] > 200 && q[0] == q[1] && q[1] == q[2], "blob at (%g, %g): %d %d %d", x, y, q[0], q[1], q[2]);
    bl_plot_image_to_png(&o, H, W, 120, 150, &x, &y);
    q = px + 4 * ((size_t)y * w + (size_t)x);
    ck_assert_msg(q[0] < 60, "sky at (%g, %g): %d", x, y, q[0]);
    bl_plot_image_to_png(&o, H, W, 150, 60, &x, &y);
    long red = 0, yellow = 0;
    for (int yy = (int)y - 8; yy <= (int)y + 8; yy++)
        for (int xx = (int)x - 8; xx <= (int)x + 8; xx++) {
            const unsigned char *c = px + 4 * ((size_t)yy * w + (size_t)xx);
            red += c[0] == 255 && c[1] == 40 && c[2] == 40;
            yellow += c[0] == 255 && c[1] == 230 && c[2] == 0;
        }
    ck_assert_msg(red > 3 && yellow > 3, "marker: %ld red, %ld yellow pixels", red, yellow);
    free(px);
    o.band = 2;
    snprintf(path, sizeof path, "%s/bad.png", dir);
    ck_assert_int_eq(bl_plot_image_png(path, im, bg, 0, (bl_plot_sources){0}, (bl_plot_sources){0}, &o), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "band 2: the images have bands 0 .. 1"));
    ck_assert_int_eq(count_files(), 1);
    bl_full_catalog_free(pred);
    bl_tensor_free(im);
    bl_tensor_free(bg);
    remove_dir();
}
END_TEST

START_TEST(test_progress_plain_and_bar)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bl_progress *p = bl_progress_alloc(f, "train", 0, 25, 10, BL_PROGRESS_PLAIN);
    ck_assert(!bl_progress_is_bar(p));
    char status[64];
    for (int s = 1; s <= 25; s++) {
        snprintf(status, sizeof status, "loss %d", 100 - s);
        bl_progress_update(p, s, status);
        if (s == 12) bl_progress_message(p, "validation loss %.2f", 1.5);
    }
    bl_progress_finish(p);
    bl_progress_free(p);
    fclose(f);
    /* lines at steps 10, 20 and the last, 25, plus the message; no carriage return */
    ck_assert_ptr_null(strchr(buf, '\r'));
    ck_assert_ptr_nonnull(strstr(buf, "train 10/25  loss 90"));
    ck_assert_ptr_nonnull(strstr(buf, "train 20/25  loss 80"));
    ck_assert_ptr_nonnull(strstr(buf, "train 25/25  loss 75"));
    ck_assert_ptr_nonnull(strstr(buf, "validation loss 1.50\n"));
    ck_assert_ptr_null(strstr(buf, "train 11/25"));
    int lines = 0;
    for (char *q = buf; *q; q++) lines += *q == '\n';
    ck_assert_int_eq(lines, 4);
    free(buf);

    f = open_memstream(&buf, &len);
    p = bl_progress_alloc(f, "train", 0, 4, 2, BL_PROGRESS_BAR);
    ck_assert(bl_progress_is_bar(p));
    for (int s = 1; s <= 4; s++) bl_progress_update(p, s, "loss 1");
    bl_progress_finish(p);
    bl_progress_free(p);
    fclose(f);
    /* the bar is redrawn with carriage returns; half done at step 2 */
    ck_assert_ptr_nonnull(strchr(buf, '\r'));
    ck_assert_ptr_nonnull(strstr(buf, "[############............] 2/4  50%"));
    ck_assert_ptr_nonnull(strstr(buf, "train 2/4  loss 1"));
    free(buf);
}
END_TEST

static Suite *curve_suite(void)
{
    Suite *s = suite_create("curve");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_curve_csv_round_trip);
    tcase_add_test(tc, test_curve_csv_errors);
    tcase_add_test(tc, test_atomic_abort_keeps_old_file);
    tcase_add_test(tc, test_curve_png);
    tcase_add_test(tc, test_curve_range_robust_and_log);
    tcase_add_test(tc, test_plot_image_blocks);
    tcase_add_test(tc, test_progress_plain_and_bar);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(curve_suite()); }
