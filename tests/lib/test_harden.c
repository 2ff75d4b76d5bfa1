/* Readers and writers against hostile or damaged files: every count read from a file is checked
 * before it is converted or allocated for, a declared size must fit the file, checkpoints hold
 * finite float weights, a truncated PNG never replaces the previous one, and the temporaries of
 * killed writers are recognised and removed. Each case once crashed, aborted or was accepted. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "autograd/params.h"
#include "lib/arena.h"
#include "lib/config.h"
#include "lib/io/atomic_file.h"
#include "lib/io/curve.h"
#include "lib/io/fits.h"
#include "lib/io/safetensors.h"
#include "lib/sim/psf.h"
#include "lib/sim/simulate.h"
#include "models/checkpoint.h"
#include "tests/bl_check.h"

static char dir[256];

static void setup(void) { bl_check_tmpdir(dir, sizeof dir, "bl_test_harden"); }
static void teardown(void) { bl_check_tmpdir_remove(dir); }

static const char *path(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

static void ck_has(const char *text, const char *part)
{
    ck_assert_msg(strstr(text, part) != NULL, "expected '%s' in: %s", part, text);
}

/* A one-image, one-band 4 x 4 shard in 2-pixel tiles whose n_sources (F64) holds `ns` and whose
 * field 'locs' has shape (1, 2, 2, S, k) (no data when k = 0). */
static void write_shard(const char *p, const double ns[4], int64_t S, int64_t k)
{
    bl_safetensors *st = bl_safetensors_alloc();
    float zeros[16] = {0};
    ck_assert_int_eq(bl_safetensors_add(st, "images", BL_DTYPE_F32, 4, BL_SHAPE(1, 1, 4, 4), zeros), BL_OK);
    ck_assert_int_eq(bl_safetensors_add(st, "background", BL_DTYPE_F32, 4, BL_SHAPE(1, 1, 4, 4), zeros), BL_OK);
    ck_assert_int_eq(bl_safetensors_add(st, "psf_params", BL_DTYPE_F32, 3, BL_SHAPE(1, 1, BL_PSF_N_PARAMS), zeros),
                     BL_OK);
    ck_assert_int_eq(bl_safetensors_add(st, "tile_catalog.n_sources", BL_DTYPE_F64, 3, BL_SHAPE(1, 2, 2), ns), BL_OK);
    float *locs = calloc((size_t)(4 * S * k) + 1, sizeof(float));
    ck_assert_int_eq(bl_safetensors_add(st, "tile_catalog.locs", BL_DTYPE_F32, 5, BL_SHAPE(1, 2, 2, S, k), locs),
                     BL_OK);
    free(locs);
    bl_safetensors_set_meta(st, "tile_slen", "2");
    ck_assert_int_eq(bl_safetensors_write(st, p), BL_OK);
    bl_safetensors_free(st);
}

START_TEST(test_shard_counts)
{
    bl_sim_batch *b;
    /* a well-formed shard reads back */
    write_shard(path("ok.safetensors"), (double[]){0, 1, 2, 0}, 2, 2);
    ck_assert_msg(bl_sim_batch_read(&b, path("ok.safetensors")) == BL_OK, "%s", bl_error_message());
    ck_assert_int_eq(b->tile_catalog->n_sources[2], 2);
    bl_sim_batch_free(b);
    /* NaN, 1e30, a fraction and -0.5 are refused, named as they are (not as a converted int) */
    const double bad[] = {NAN, 1e30, 1.5, -0.5};
    const char *shown[] = {"= nan ", "= 1e+30 ", "= 1.5 ", "= -0.5 "};
    for (int i = 0; i < 4; i++) {
        write_shard(path("bad.safetensors"), (double[]){0, bad[i], 0, 0}, 2, 2);
        ck_assert_int_eq(bl_sim_batch_read(&b, path("bad.safetensors")), BL_ERR_FORMAT);
        ck_has(bl_error_message(), "tile_catalog.n_sources[1]");
        ck_has(bl_error_message(), shown[i]);
    }
    /* 2^40 sources per tile (a field with no data): refused before allocating for them */
    write_shard(path("huge.safetensors"), (double[]){0, 0, 0, 0}, (int64_t)1 << 40, 0);
    ck_assert_int_eq(bl_sim_batch_read(&b, path("huge.safetensors")), BL_ERR_FORMAT);
    ck_has(bl_error_message(), "1099511627776 sources per tile");
    /* a field of another S than the first is named, not read out of bounds */
    write_shard(path("k.safetensors"), (double[]){0, 0, 0, 0}, 3, 1);
    ck_assert_int_eq(bl_sim_batch_read(&b, path("k.safetensors")), BL_ERR_FORMAT);
    ck_has(bl_error_message(), "tile_catalog.locs");
}
END_TEST

/* replace the value of header card `key` (the n-th occurrence) by `value` */
static void patch_card(char *buf, size_t n, const char *key, int nth, long long value)
{
    char want[9];
    snprintf(want, sizeof want, "%-8s", key);
    for (size_t at = 0; at + 80 <= n; at += 80)
        if (memcmp(buf + at, want, 8) == 0 && buf[at + 8] == '=' && nth-- == 0) {
            char card[32];
            snprintf(card, sizeof card, "= %20lld", value);
            memcpy(buf + at + 8, card, 22);
            return;
        }
    ck_abort_msg("no card %s", key);
}

START_TEST(test_fits_declared_size)
{
    bl_tensor *im = bl_tensor_alloc("images", 4, BL_SHAPE(1, 1, 4, 4), 0);
    const char *bands[] = {"r"};
    ck_assert_int_eq(bl_fits_write_batch(path("a.fits"), im, NULL, bands, "nmgy", NULL), BL_OK);
    bl_tensor *t;
    ck_assert_int_eq(bl_fits_read_image(path("a.fits"), "r", &t), BL_OK);
    bl_tensor_free(t);
    FILE *f = fopen(path("a.fits"), "rb");
    char buf[20000];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    /* the image HDU (after the primary one) claims 10^6 x 10^6 pixels */
    patch_card(buf, n, "NAXIS1", 0, 1000000);
    patch_card(buf, n, "NAXIS2", 0, 1000000);
    f = fopen(path("b.fits"), "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    ck_assert_int_eq(bl_fits_read_image(path("b.fits"), "r", &t), BL_ERR_FORMAT);
    ck_has(bl_error_message(), "declares data up to byte");
    ck_assert_ptr_null(t);
    bl_tensor_free(im);
}
END_TEST

START_TEST(test_safetensors_directory)
{
    bl_safetensors *st;
    ck_assert_int_eq(bl_safetensors_read(&st, dir), BL_ERR_IO);
    ck_has(bl_error_message(), "not a regular file");
    ck_assert_int_eq(bl_safetensors_read(&st, "/dev/zero"), BL_ERR_IO);
}
END_TEST

START_TEST(test_curve_step_range)
{
    static const char *lines[] = {"1e20,1,,0.1,1", "-1,1,,0.1,1", "nan,1,,0.1,1", "9.5,1,,0.1,1"};
    bl_curve *c;
    for (int i = 0; i < 4; i++) {
        FILE *f = fopen(path("curve.csv"), "w");
        fprintf(f, "step,train_loss,val_loss,lr,seconds\n1,2,,0.1,1\n%s\n", lines[i]);
        fclose(f);
        ck_assert_msg(bl_curve_read_csv(&c, path("curve.csv")) == BL_ERR_FORMAT, "accepted %s", lines[i]);
        ck_has(bl_error_message(), "curve.csv:3");
    }
    FILE *f = fopen(path("curve.csv"), "w");
    fprintf(f, "step,train_loss,val_loss,lr,seconds\n9007199254740992,2,,0.1,1\n");
    fclose(f);
    ck_assert_int_eq(bl_curve_read_csv(&c, path("curve.csv")), BL_OK);
    ck_assert(c->points[0].step == (int64_t)1 << 53);
    bl_curve_free(c);
}
END_TEST

/* A full disk, as RLIMIT_FSIZE makes it: writes beyond `limit` bytes fail (EFBIG). */
static int png_under_limit(const bl_curve *c, const char *p, rlim_t limit)
{
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {limit, limit};
        setrlimit(RLIMIT_FSIZE, &rl);
        _exit(bl_curve_write_png(c, p, 640, 400, "t") == BL_OK ? 0 : 1);
    }
    int ws;
    waitpid(pid, &ws, 0);
    ck_assert_msg(WIFEXITED(ws), "the writer died (status %d)", ws);
    return WEXITSTATUS(ws);
}

START_TEST(test_png_truncated)
{
    bl_curve *c = bl_curve_alloc();
    for (int i = 1; i <= 50; i++) bl_curve_append(c, (bl_curve_point){i, 1.0 / i, NAN, 0.1, i});
    ck_assert_int_eq(png_under_limit(c, path("full.png"), RLIM_INFINITY), 0);
    struct stat sb;
    ck_assert_int_eq(stat(path("full.png"), &sb), 0);
    ck_assert_int_gt(sb.st_size, 3000);
    /* the disk fills after 3000 bytes: an error, the previous complete image stays */
    ck_assert_int_eq(rename(path("full.png"), path("cut.png")), 0);
    ck_assert_int_eq(link(path("cut.png"), path("prev.png")), 0);
    ck_assert_int_eq(png_under_limit(c, path("cut.png"), 3000), 1);
    struct stat s2;
    ck_assert_int_eq(stat(path("cut.png"), &s2), 0);
    ck_assert_int_eq(s2.st_size, sb.st_size);
    ck_assert_int_eq(png_under_limit(c, path("none.png"), 3000), 1);
    ck_assert_int_ne(stat(path("none.png"), &s2), 0);
    bl_curve_free(c);
}
END_TEST

START_TEST(test_stale_temporaries)
{
    /* the temporary is a hidden file a glob for results never matches */
    char *tmp = bl_atomic_tmp_path("out/last.safetensors");
    char want[128];
    snprintf(want, sizeof want, "out/.last.safetensors" BL_ATOMIC_TMP_TAG "%ld", (long)getpid());
    ck_assert_str_eq(tmp, want);
    ck_assert_int_eq(bl_atomic_tmp_owner(tmp + 4), getpid());
    free(tmp);
    ck_assert_int_eq(bl_atomic_tmp_owner("last.safetensors"), 0);
    ck_assert_int_eq(bl_atomic_tmp_owner(".x.tmp-12a"), 0);
    ck_assert_int_eq(bl_atomic_tmp_owner(".tmp-12"), 0);
    /* a dead writer's temporary is removed; a live process's and other files stay */
    pid_t child = fork();
    ck_assert(child >= 0);
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    char dead[64], live[64];
    snprintf(dead, sizeof dead, ".last.safetensors" BL_ATOMIC_TMP_TAG "%ld", (long)child);
    snprintf(live, sizeof live, ".curve.csv" BL_ATOMIC_TMP_TAG "%ld", (long)getppid());
    const char *names[] = {dead, live, "last.safetensors", ".hidden"};
    for (int i = 0; i < 4; i++) {
        FILE *f = fopen(path(names[i]), "w");
        fputs("x", f);
        fclose(f);
    }
    ck_assert_int_eq(bl_atomic_clean_stale(dir), 1);
    struct stat sb;
    ck_assert_int_ne(stat(path(dead), &sb), 0);
    for (int i = 1; i < 4; i++) ck_assert_msg(stat(path(names[i]), &sb) == 0, "%s removed", names[i]);
    /* a commit leaves no temporary */
    bl_atomic_file af;
    ck_assert_int_eq(bl_atomic_open(&af, path("r.txt"), "w"), BL_OK);
    fputs("ok\n", af.f);
    ck_assert_int_eq(bl_atomic_commit(&af), BL_OK);
    ck_assert_int_eq(bl_atomic_clean_stale(dir), 0);
}
END_TEST

static void write_weights(const char *p, bl_dtype dtype, double fill)
{
    bl_safetensors *st = bl_safetensors_alloc();
    double d[4] = {0.5, fill, -1, 2};
    float f[4] = {0.5f, (float)fill, -1, 2};
    int32_t i[4] = {1, 2, 3, 4};
    const void *data = dtype == BL_DTYPE_F64 ? (const void *)d : dtype == BL_DTYPE_F32 ? (const void *)f : i;
    ck_assert_int_eq(bl_safetensors_add(st, "net.w", dtype, 2, BL_SHAPE(2, 2), data), BL_OK);
    ck_assert_int_eq(bl_safetensors_write(st, p), BL_OK);
    bl_safetensors_free(st);
}

START_TEST(test_checkpoint_values)
{
    bl_params *params = bl_params_alloc();
    bl_tensor *w = bl_params_add(params, "net.w", 2, BL_SHAPE(2, 2), 1);
    write_weights(path("ok.safetensors"), BL_DTYPE_F64, 3);
    ck_assert_msg(bl_checkpoint_load(path("ok.safetensors"), params, NULL, NULL) == BL_OK, "%s",
                  bl_error_message());
    ck_assert(w->data[1] == 3);
    write_weights(path("int.safetensors"), BL_DTYPE_I32, 0);
    ck_assert_int_eq(bl_checkpoint_load(path("int.safetensors"), params, NULL, NULL), BL_ERR_FORMAT);
    ck_has(bl_error_message(), "'net.w' has dtype I32");
    write_weights(path("nan.safetensors"), BL_DTYPE_F32, NAN);
    ck_assert_int_eq(bl_checkpoint_load(path("nan.safetensors"), params, NULL, NULL), BL_ERR_NAN);
    ck_has(bl_error_message(), "'net.w' element 1");
    /* finite as a double, infinite as a float weight */
    write_weights(path("big.safetensors"), BL_DTYPE_F64, 1e300);
    ck_assert_int_eq(bl_checkpoint_load(path("big.safetensors"), params, NULL, NULL),
                     sizeof(bl_real) == 4 ? BL_ERR_NAN : BL_OK);
    ck_assert(w->data[1] == 3); /* nothing was copied from the refused files */
    bl_params_free(params);
    /* BatchNorm's counter may be an integer (as PyTorch writes it) but must be a finite count */
    params = bl_params_alloc();
    bl_params_add(params, "bn.num_batches_tracked", 0, NULL, 0);
    const double counts[] = {7, -1, -1e300, NAN};
    for (int i = 0; i < 4; i++) {
        bl_safetensors *st = bl_safetensors_alloc();
        int64_t n = 7;
        if (i == 0) ck_assert_int_eq(bl_safetensors_add(st, "bn.num_batches_tracked", BL_DTYPE_I64, 0, NULL, &n), BL_OK);
        else ck_assert_int_eq(bl_safetensors_add(st, "bn.num_batches_tracked", BL_DTYPE_F64, 0, NULL, &counts[i]), BL_OK);
        ck_assert_int_eq(bl_safetensors_write(st, path("bn.safetensors")), BL_OK);
        bl_safetensors_free(st);
        ck_assert_int_eq(bl_checkpoint_load(path("bn.safetensors"), params, NULL, NULL), i == 0 ? BL_OK : BL_ERR_NAN);
        if (i) ck_has(bl_error_message(), "'bn.num_batches_tracked' element 0");
    }
    ck_assert(params->t[0]->data[0] == 7);
    bl_params_free(params);
}
END_TEST

START_TEST(test_config_int64_set)
{
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, "train: { seed = 42; max_steps = 0; };\n", "t.cfg"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.seed=4294967296"), BL_OK);
    ck_assert_int_eq(bl_config_set(cfg, "train.max_steps=-4294967297"), BL_OK);
    int64_t v;
    ck_assert_int_eq(bl_config_int(cfg, "train.seed", 0, 1, &v), BL_OK);
    ck_assert(v == 4294967296LL);
    ck_assert_int_eq(bl_config_int(cfg, "train.max_steps", 0, 1, &v), BL_OK);
    ck_assert(v == -4294967297LL);
    ck_assert_int_eq(bl_config_set(cfg, "train.seed=7"), BL_OK);
    ck_assert_int_eq(bl_config_int(cfg, "train.seed", 0, 1, &v), BL_OK);
    ck_assert(v == 7);
    ck_assert_int_eq(bl_config_set(cfg, "train.seed=99999999999999999999"), BL_ERR_CONFIG);
    bl_config_free(cfg);
}
END_TEST

/* A step's working memory that cannot grow: exit 1 with a message, not an abort. (meson runs
 * this test with allocator_may_return_null=1, so that under ASan too the allocation fails.) */
START_TEST(test_arena_out_of_memory)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        bl_arena *a = bl_arena_alloc(4096);
        bl_arena_push(a, (size_t)1 << 62);
        _exit(0);
    }
    close(fds[1]);
    char err[4096];
    size_t len = 0;
    for (ssize_t n; len < sizeof err - 1 && (n = read(fds[0], err + len, sizeof err - 1 - len)) > 0;)
        len += (size_t)n;
    close(fds[0]);
    err[len] = 0;
    int ws;
    waitpid(pid, &ws, 0);
    ck_assert_msg(WIFEXITED(ws) && WEXITSTATUS(ws) == 1, "status %d: %s", ws, err);
    ck_has(err, "bliss: error: out of memory: needs ~4.29e+09 GiB more working memory; reduce prior.batch_size");
}
END_TEST

static Suite *harden_suite(void)
{
    Suite *s = suite_create("harden");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_shard_counts);
    tcase_add_test(tc, test_fits_declared_size);
    tcase_add_test(tc, test_safetensors_directory);
    tcase_add_test(tc, test_curve_step_range);
    tcase_add_test(tc, test_png_truncated);
    tcase_add_test(tc, test_stale_temporaries);
    tcase_add_test(tc, test_checkpoint_values);
    tcase_add_test(tc, test_config_int64_set);
    tcase_add_test(tc, test_arena_out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(harden_suite()); }
