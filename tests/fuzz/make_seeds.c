/* Writes the fuzz corpora with the project's own writers:
 *   make_seeds seeds DIR    a small seed corpus per harness in DIR/<target>/
 *   make_seeds regress DIR  the inputs that crashed, aborted or were wrongly accepted before the
 *                           hardening fixes (committed under tests/fuzz/regress/) */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>

#include "lib/io/curve.h"
#include "lib/io/fits.h"
#include "lib/io/safetensors.h"
#include "lib/sim/psf.h"
#include "lib/sim/simulate.h"
#include "tests/fuzz/fuzz_params.h"
#include "tests/fuzz/fuzz_util.h"

static const char *out;

static const char *at(const char *target, const char *name)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", out, target);
    if (mkdir(p, 0777) != 0 && errno != EEXIST) abort();
    snprintf(p, sizeof p, "%s/%s/%s", out, target, name);
    return p;
}

static void check(bl_status s)
{
    if (s != BL_OK) {
        fprintf(stderr, "make_seeds: %s\n", bl_error_message());
        exit(1);
    }
}

static void put(const char *target, const char *name, const void *bytes, size_t n)
{
    FILE *f = fopen(at(target, name), "wb");
    if (!f || fwrite(bytes, 1, n, f) != n || fclose(f) != 0) abort();
}

static void put_text(const char *target, const char *name, const char *text) { put(target, name, text, strlen(text)); }

/* `prefix` (0, 1 or 2 bytes) followed by the file at `path` */
static void put_file(const char *target, const char *name, const char *prefix, size_t np, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    static unsigned char buf[1 << 22];
    memcpy(buf, prefix, np);
    size_t n = fread(buf + np, 1, sizeof buf - np, f);
    fclose(f);
    put(target, name, buf, np + n);
}

/* a 1-image shard, NB bands of 4 x 4 pixels in 2-pixel tiles; n_sources as doubles; field locs
 * of shape (1, 2, 2, S, k) */
static void shard(const char *path, int NB, const double ns[4], int64_t S, int64_t k)
{
    bl_safetensors *st = bl_safetensors_alloc();
    float v[5 * 16];
    for (int i = 0; i < 5 * 16; i++) v[i] = (float)(i % 5);
    check(bl_safetensors_add(st, "images", BL_DTYPE_F32, 4, BL_SHAPE(1, NB, 4, 4), v));
    check(bl_safetensors_add(st, "background", BL_DTYPE_F32, 4, BL_SHAPE(1, NB, 4, 4), v));
    check(bl_safetensors_add(st, "psf_params", BL_DTYPE_F32, 3, BL_SHAPE(1, NB, BL_PSF_N_PARAMS), v));
    check(bl_safetensors_add(st, "tile_catalog.n_sources", BL_DTYPE_F64, 3, BL_SHAPE(1, 2, 2), ns));
    float *locs = calloc((size_t)(4 * S * k) + 1, sizeof(float));
    for (int64_t i = 0; i < 4 * S * k; i++) locs[i] = 0.25f;
    check(bl_safetensors_add(st, "tile_catalog.locs", BL_DTYPE_F32, 5, BL_SHAPE(1, 2, 2, S, k), locs));
    free(locs);
    bl_safetensors_set_meta(st, "tile_slen", "2");
    bl_safetensors_set_meta(st, "bands", "u,g,r,i,z");
    check(bl_safetensors_write(st, path));
    bl_safetensors_free(st);
}

static void fits_batch(const char *path, int64_t H, int64_t W, int with_catalog)
{
    static const char *bands[] = {"u", "g", "r", "i", "z"};
    bl_tensor *im = bl_tensor_alloc("images", 4, BL_SHAPE(1, 5, H, W), 0);
    for (int64_t i = 0; i < im->numel; i++) im->data[i] = (bl_real)(i % 9);
    bl_full_catalog *cat = NULL;
    if (with_catalog) {
        cat = bl_full_catalog_alloc(1, 2, H, W, 5);
        cat->n_sources[0] = 2;
        for (int i = 0; i < 4; i++) cat->plocs->data[i] = (bl_real)(1 + i);
        bl_tensor *f = bl_full_catalog_add(cat, "fluxes");
        for (int64_t i = 0; i < f->numel; i++) f->data[i] = (bl_real)(10 + i);
    }
    check(bl_fits_write_batch(path, im, with_catalog ? im : NULL, bands, "nmgy", cat));
    bl_full_catalog_free(cat);
    bl_tensor_free(im);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    char *buf = malloc(1 << 22);
    *n = fread(buf, 1, 1 << 22, f);
    fclose(f);
    return buf;
}

/* replace the value of the first header card `key` at or after byte `from` */
static void patch_card(char *buf, size_t n, size_t from, const char *key, long long value)
{
    char want[9];
    snprintf(want, sizeof want, "%-8s", key);
    for (size_t a = from; a + 80 <= n; a += 80)
        if (memcmp(buf + a, want, 8) == 0 && buf[a + 8] == '=') {
            char card[32];
            snprintf(card, sizeof card, "= %20lld", value);
            memcpy(buf + a + 8, card, 22);
            return;
        }
    abort();
}

static void seeds(void)
{
    const char *tmp = bl_fuzz_dir();
    char p[512];
    /* safetensors and shard: a shard as bl_sim_batch_write writes it (read back first) */
    snprintf(p, sizeof p, "%s/raw.safetensors", tmp);
    shard(p, 5, (double[]){0, 1, 2, 0}, 2, 2);
    bl_sim_batch *b;
    check(bl_sim_batch_read(&b, p));
    check(bl_sim_batch_write(b, at("shard", "batch.safetensors")));
    check(bl_sim_batch_write(b, at("safetensors", "batch.safetensors")));
    bl_sim_batch_free(b);
    bl_safetensors *st = bl_safetensors_alloc();
    int64_t i64[3] = {1, -2, 3};
    int32_t i32[2] = {7, 8};
    double f64[2] = {0.5, -1e300};
    check(bl_safetensors_add(st, "a", BL_DTYPE_I64, 1, BL_SHAPE(3), i64));
    check(bl_safetensors_add(st, "b", BL_DTYPE_I32, 2, BL_SHAPE(1, 2), i32));
    check(bl_safetensors_add(st, "c", BL_DTYPE_F64, 1, BL_SHAPE(2), f64));
    check(bl_safetensors_add(st, "empty", BL_DTYPE_F32, 2, BL_SHAPE(0, 3), NULL));
    bl_safetensors_set_meta(st, "k", "v");
    check(bl_safetensors_write(st, at("safetensors", "dtypes.safetensors")));
    bl_safetensors_free(st);
    /* checkpoint: the harness's own set, raw (first byte odd) and as edit lists (even) */
    bl_params *params = bl_fuzz_params();
    bl_adam *adam = bl_adam_alloc(params, bl_adam_defaults());
    snprintf(p, sizeof p, "%s/ckpt.safetensors", tmp);
    const char *keys[] = {"train.step"}, *values[] = {"3"};
    check(bl_checkpoint_save(p, params, adam, 1, keys, values));
    put_file("checkpoint", "raw_adam", "\1", 1, p);
    put_file("safetensors", "checkpoint.safetensors", "", 0, p);
    check(bl_checkpoint_save(p, params, NULL, 0, NULL, NULL));
    put_file("checkpoint", "raw_weights", "\1", 1, p);
    bl_adam_free(adam);
    bl_params_free(params);
    put("checkpoint", "edits_none", "\0", 1);
    put("checkpoint", "edits_value", "\0\0\1\0\3", 5);
    put("checkpoint", "edits_dtype_meta", "\0\1\2\2\0\5\0\0\6", 9);
    put("checkpoint", "edits_shape_rename", "\0\2\0\0\4\4\1\2\0", 9);
    /* FITS: images + backgrounds + catalog, and images alone */
    fits_batch(at("fits", "batch.fits"), 4, 6, 1);
    fits_batch(at("fits", "images.fits"), 3, 3, 0);
    /* curve */
    bl_curve *c = bl_curve_alloc();
    for (int i = 1; i <= 4; i++) bl_curve_append(c, (bl_curve_point){i, 1.0 / i, i == 4 ? 0.7 : NAN, 1e-3, 0.5 * i});
    check(bl_curve_write_csv(c, at("curve", "curve.csv")));
    bl_curve_free(c);
    /* config: the quick config with and without --set lines, and a self-contained one */
    put_text("config", "quick", "@include \"quick.cfg\"\n");
    put_text("config", "quick_set", "@include \"quick.cfg\"\noverrides = ( \"prior.batch_size = 3\" );\n"
             "--set\ntrain.seed=5\nencoder.arch.num_features=8\n");
    put_text("config", "sim", "@include \"sim_default.cfg\"\ntrain: { scheduler: { milestones = [2, 4]; }; };\n");
}

static void regress(void)
{
    const char *tmp = bl_fuzz_dir();
    char p[512];
    /* dataset shards: n_sources NaN / 1e30 / 2.5, 2^40 sources per tile */
    shard(at("shard", "n_sources_nan"), 1, (double[]){0, NAN, 0, 0}, 2, 2);
    shard(at("shard", "n_sources_1e30"), 1, (double[]){0, 1e30, 0, 0}, 2, 2);
    shard(at("shard", "n_sources_fraction"), 1, (double[]){0, 2.5, 0, 0}, 3, 2);
    shard(at("shard", "sources_per_tile_2e40"), 1, (double[]){0, 0, 0, 0}, (int64_t)1 << 40, 0);
    snprintf(p, sizeof p, "%s/s.safetensors", tmp);
    shard(p, 1, (double[]){0, NAN, 0, 0}, 2, 2);
    put_file("safetensors", "n_sources_nan", "", 0, p);
    /* checkpoints: I32 weights, NaN weights, a NaN by an edit */
    bl_params *params = bl_fuzz_params();
    bl_safetensors *st = bl_checkpoint_pack(params, NULL);
    for (int i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, "net.conv.bias") == 0) {
            st->tensors[i].dtype = BL_DTYPE_I32; /* same byte size as F32 */
            ((float *)st->tensors[i].data)[0] = NAN;
        }
    snprintf(p, sizeof p, "%s/c.safetensors", tmp);
    check(bl_safetensors_write(st, p));
    put_file("checkpoint", "weights_i32", "\1", 1, p);
    for (int i = 0; i < st->n; i++)
        if (st->tensors[i].dtype == BL_DTYPE_I32) st->tensors[i].dtype = BL_DTYPE_F32;
    for (int i = 0; i < st->n; i++)
        if (st->tensors[i].dtype == BL_DTYPE_F32)
            for (int64_t j = 0; j < st->tensors[i].numel; j++) ((float *)st->tensors[i].data)[j] = NAN;
    check(bl_safetensors_write(st, p));
    put_file("checkpoint", "weights_all_nan", "\1", 1, p);
    bl_safetensors_free(st);
    bl_params_free(params);
    put("checkpoint", "edit_nan_weight", "\0\0\0\0\0", 5);
    /* FITS: 10^12 pixels declared in a small file; 0 x 0 images */
    snprintf(p, sizeof p, "%s/f.fits", tmp);
    fits_batch(p, 4, 4, 0);
    size_t n;
    char *buf = slurp(p, &n);
    patch_card(buf, n, 2880, "NAXIS1", 1000000);
    patch_card(buf, n, 2880, "NAXIS2", 1000000);
    put("fits", "naxis_1e12", buf, n);
    free(buf);
    fits_batch(at("fits", "empty_0x0.fits"), 0, 0, 0);
    /* curve.csv: steps 1e20 and nan */
    put_text("curve", "step_1e20", "step,train_loss,val_loss,lr,seconds\n1,2,,0.1,1\n1e20,1,,0.1,1\n");
    put_text("curve", "step_nan", "step,train_loss,val_loss,lr,seconds\nnan,1,,0.1,1\n");
    /* config: integers beyond int32 in --set and overrides, a milestone beyond int */
    put_text("config", "seed_2e32", "@include \"quick.cfg\"\n--set\ntrain.seed=4294967296\ntrain.max_steps=4294967297\n");
    put_text("config", "override_2e32", "@include \"quick.cfg\"\noverrides = ( \"prior.n_tiles_w = 4294967296\" );\n");
    put_text("config", "milestone_3e9", "@include \"sim_default.cfg\"\ntrain: { scheduler: { milestones = [3e9]; }; };\n");
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "seeds") && strcmp(argv[1], "regress"))) {
        fprintf(stderr, "usage: make_seeds seeds|regress DIR\n");
        return 2;
    }
    out = argv[2];
    if (mkdir(out, 0777) != 0 && errno != EEXIST) abort();
    if (!strcmp(argv[1], "seeds")) seeds();
    else regress();
    return 0;
}
