#include "experiment/data.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/fits.h"
#include "lib/rng.h"
#include "lib/io/safetensors.h"

/* Stream ids of simulated batches: training batch i is stream i; the validation and test sets
 * use disjoint ranges, so the fixed validation set never depends on how long training ran. */
#define BL_STREAM_VAL (UINT64_C(1) << 40)
#define BL_STREAM_TEST (UINT64_C(2) << 40)

typedef struct {
    bl_cli_data *d;
    bl_data_split split;
} bl_split_user;

struct bl_cli_data {
    const bl_settings *s;
    bl_split_user users[3];
    /* simulation */
    bl_simulator *sim;
    bl_sim_batch *batch;     /* the batch being handed out */
    /* dataset: files of concatenated batches */
    int n_files;
    char **files;
    int64_t *first;          /* first global batch of each file (n_files + 1 entries) */
    int64_t n_batches, n_train, n_val;
    int cached;              /* index of the file in `file_batch`, -1 none */
    bl_sim_batch *file_batch;
    /* data-parallel slice: images [first_image, first_image + local_B) of every batch */
    int64_t local_B, first_image;
};

/* ---- batches of a dataset ----------------------------------------------------------------- */

static int bl_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* An empty batch of B images with the geometry and catalog fields of `like`. */
bl_sim_batch *bl_cli_batch_like(const bl_sim_batch *like, int64_t B)
{
    bl_sim_batch *b = bl_calloc(1, sizeof *b);
    b->B = B;
    b->NB = like->NB;
    b->H = like->H;
    b->W = like->W;
    memcpy(b->band_names, like->band_names, sizeof b->band_names);
    b->images = bl_tensor_alloc("images", 4, BL_SHAPE(B, like->NB, like->H, like->W), 0);
    b->background = bl_tensor_alloc("background", 4, BL_SHAPE(B, like->NB, like->H, like->W), 0);
    b->psf_params = bl_tensor_alloc("psf_params", 3, BL_SHAPE(B, like->NB, like->psf_params->shape[2]), 0);
    if (like->deconvolution)
        b->deconvolution = bl_tensor_alloc("deconvolution", 4, BL_SHAPE(B, like->NB, like->H, like->W), 0);
    const bl_tile_catalog *c = like->tile_catalog;
    b->tile_catalog = bl_tile_catalog_alloc(B, c->ht, c->wt, c->S, c->tile_slen, c->n_bands);
    for (int f = 0; f < c->n_fields; f++) bl_tile_catalog_add(b->tile_catalog, c->fields[f].name);
    return b;
}

/* images [s0, s0 + n) of src -> [d0, d0 + n) of dst (same geometry and fields) */
void bl_cli_batch_copy(bl_sim_batch *dst, int64_t d0, const bl_sim_batch *src, int64_t s0, int64_t n)
{
    const bl_tensor *st[4] = {src->images, src->background, src->psf_params, src->deconvolution};
    bl_tensor *dt[4] = {dst->images, dst->background, dst->psf_params, dst->deconvolution};
    for (int k = 0; k < 4; k++) {
        if (!st[k] || !dt[k]) continue;
        int64_t per = st[k]->numel / st[k]->shape[0];
        memcpy(dt[k]->data + d0 * per, st[k]->data + s0 * per, (size_t)(n * per) * sizeof(bl_real));
    }
    const bl_tile_catalog *sc = src->tile_catalog;
    bl_tile_catalog *dc = dst->tile_catalog;
    int64_t tiles = sc->ht * sc->wt;
    memcpy(dc->n_sources + d0 * tiles, sc->n_sources + s0 * tiles, (size_t)(n * tiles) * sizeof(int32_t));
    for (int f = 0; f < sc->n_fields; f++) {
        bl_tensor *t = bl_tile_catalog_add(dc, sc->fields[f].name); /* added on first use */
        int64_t per = sc->fields[f].t->numel / sc->B;
        memcpy(t->data + d0 * per, sc->fields[f].t->data + s0 * per, (size_t)(n * per) * sizeof(bl_real));
    }
}

static bl_status bl_data_open_dir(bl_cli_data *d, const char *dir)
{
    DIR *dp = opendir(dir);
    if (!dp) return bl_error(BL_ERR_IO, "%s: cannot open the dataset directory", dir);
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(dp))) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors") != 0) continue;
        if (d->n_files == cap) {
            cap = cap ? 2 * cap : 16;
            d->files = bl_realloc(d->files, (size_t)cap * sizeof *d->files);
        }
        size_t len = strlen(dir) + n + 2;
        d->files[d->n_files] = bl_malloc(len);
        snprintf(d->files[d->n_files++], len, "%s/%s", dir, e->d_name);
    }
    closedir(dp);
    if (d->n_files == 0)
        return bl_error(BL_ERR_IO, "%s: no .safetensors files (write a dataset with 'bliss generate')", dir);
    qsort(d->files, (size_t)d->n_files, sizeof *d->files, bl_cmp_str);
    /* count batches: each file holds a whole number of prior.batch_size batches */
    d->first = bl_calloc((size_t)d->n_files + 1, sizeof(int64_t));
    const int64_t B = d->s->batch_size;
    for (int i = 0; i < d->n_files; i++) {
        bl_sim_batch *fb;
        bl_status st = bl_sim_batch_read(&fb, d->files[i]);
        if (st) return st;
        const bl_tile_catalog *c = fb->tile_catalog;
        bl_status chk = BL_OK;
        if (fb->B % B)
            chk = bl_error(BL_ERR_FORMAT, "%s: %lld images are not a whole number of batches of %lld (prior.batch_size)",
                           d->files[i], (long long)fb->B, (long long)B);
        if (!chk && (fb->NB != d->s->n_bands || c->tile_slen != d->s->tile_slen))
            chk = bl_error(BL_ERR_FORMAT, "%s: %lld bands, tile_slen %d; the config has %d bands, tile_slen %d",
                           d->files[i], (long long)fb->NB, c->tile_slen, d->s->n_bands, d->s->tile_slen);
        if (!chk && i > 0) {
            const bl_tile_catalog *c0 = d->file_batch->tile_catalog;
            if (fb->H != d->file_batch->H || fb->W != d->file_batch->W || c->S != c0->S)
                chk = bl_error(BL_ERR_FORMAT, "%s: images %lld x %lld, S %lld differ from %s (%lld x %lld, S %lld)",
                               d->files[i], (long long)fb->H, (long long)fb->W, (long long)c->S,
                               d->files[0], (long long)d->file_batch->H, (long long)d->file_batch->W,
                               (long long)c0->S);
        }
        d->first[i + 1] = d->first[i] + fb->B / B;
        if (i == 0) {
            d->file_batch = fb;
            d->cached = 0;
        } else {
            bl_sim_batch_free(fb);
        }
        if (chk) return chk;
    }
    d->n_batches = d->first[d->n_files];
    if (d->n_batches < 2)
        return bl_error(BL_ERR_FORMAT, "%s: %lld batch(es); training needs at least 2 (train + validation)",
                        dir, (long long)d->n_batches);
    /* the last 10% (at least one batch) validate, the rest train */
    d->n_val = (int64_t)floor(0.1 * (double)d->n_batches);
    if (d->n_val < 1) d->n_val = 1;
    d->n_train = d->n_batches - d->n_val;
    d->batch = bl_cli_batch_like(d->file_batch, d->local_B);
    return BL_OK;
}

/* global batch g of the dataset into d->batch */
static bl_status bl_data_load(bl_cli_data *d, int64_t g)
{
    int f = 0;
    while (f + 1 < d->n_files && d->first[f + 1] <= g) f++;
    if (d->cached != f) {
        bl_sim_batch_free(d->file_batch);
        d->file_batch = NULL;
        d->cached = -1;
        bl_status st = bl_sim_batch_read(&d->file_batch, d->files[f]);
        if (st) return st;
        if (d->file_batch->H != d->batch->H || d->file_batch->W != d->batch->W ||
            d->file_batch->tile_catalog->n_fields != d->batch->tile_catalog->n_fields)
            return bl_error(BL_ERR_FORMAT, "%s: geometry or catalog fields changed since the dataset was opened",
                            d->files[f]);
        d->cached = f;
    }
    bl_cli_batch_copy(d->batch, 0, d->file_batch, (g - d->first[f]) * d->s->batch_size + d->first_image,
                      d->local_B);
    return BL_OK;
}

/* Training batch i of a dataset: epochs of n_train batches; within an epoch the files are
 * visited in an order shuffled from (seed, epoch) and their batches in order (one file is
 * cached at a time). */
static int64_t bl_data_train_batch(bl_cli_data *d, int64_t i)
{
    int64_t epoch = i / d->n_train, k = i % d->n_train;
    int *order = bl_malloc((size_t)d->n_files * sizeof(int));
    for (int f = 0; f < d->n_files; f++) order[f] = f;
    bl_rng *rng = bl_rng_alloc((uint64_t)d->s->train.seed, bl_rng_mix(UINT64_C(0xda7a), (uint64_t)epoch));
    for (int f = d->n_files - 1; f > 0; f--) {
        int j = (int)bl_rng_uniform_int(rng, (unsigned long)f + 1), t = order[f];
        order[f] = order[j];
        order[j] = t;
    }
    bl_rng_free(rng);
    int64_t g = -1;
    for (int q = 0; q < d->n_files && g < 0; q++) {
        int f = order[q];
        int64_t lo = d->first[f], hi = d->first[f + 1] < d->n_train ? d->first[f + 1] : d->n_train;
        if (hi <= lo) continue;
        if (k < hi - lo)
            g = lo + k;
        else
            k -= hi - lo;
    }
    free(order);
    return g;
}

/* ---- the batch source --------------------------------------------------------------------- */

bl_status bl_cli_normalize(const bl_settings *s, bl_ctx *ctx, const bl_tensor *images,
                           const bl_tensor *background, bl_tensor **x)
{
    return bl_normalize_push(&s->normalize, bl_ctx_arena(ctx), images, background, NULL, x);
}

static bl_status bl_data_get(void *user, bl_arena *arena, int64_t index, bl_tensor **x,
                             bl_tile_catalog **truth)
{
    bl_split_user *u = user;
    bl_cli_data *d = u->d;
    *x = NULL;
    *truth = NULL;
    bl_status st = BL_OK;
    if (d->sim) {
        uint64_t stream = (uint64_t)index + (u->split == BL_DATA_VAL ? BL_STREAM_VAL
                                             : u->split == BL_DATA_TEST ? BL_STREAM_TEST : 0);
        bl_simulator_generate_slice(d->sim, (uint64_t)d->s->train.seed, stream, d->first_image, d->batch);
    } else {
        int64_t g = u->split == BL_DATA_TRAIN ? bl_data_train_batch(d, index)
                    : u->split == BL_DATA_VAL ? d->n_train + index % d->n_val
                                              : index % d->n_batches;
        st = bl_data_load(d, g);
    }
    if (st == BL_OK)
        st = bl_normalize_push(&d->s->normalize, arena, d->batch->images, d->batch->background,
                                  d->batch->psf_params, x);
    if (st == BL_OK) *truth = bl_tile_catalog_copy(d->batch->tile_catalog);
    return st;
}

bl_status bl_cli_data_open(bl_cli_data **out, const bl_settings *s, const char *dir)
{
    return bl_cli_data_open_slice(out, s, dir, 0, 1);
}

bl_status bl_cli_data_open_slice(bl_cli_data **out, const bl_settings *s, const char *dir, int rank,
                                 int n_ranks)
{
    *out = NULL;
    if (n_ranks < 1 || rank < 0 || rank >= n_ranks || s->batch_size % n_ranks)
        return bl_error(BL_ERR_CONFIG,
                        "%s: prior.batch_size = %lld cannot be split over %d processes: the global "
                        "batch must be a multiple of the number of processes",
                        s->path, (long long)s->batch_size, n_ranks);
    bl_cli_data *d = bl_calloc(1, sizeof *d);
    d->s = s;
    d->cached = -1;
    d->local_B = s->batch_size / n_ranks;
    d->first_image = d->local_B * rank;
    for (int k = 0; k < 3; k++) d->users[k] = (bl_split_user){d, (bl_data_split)k};
    bl_status st;
    if (!dir || !strcmp(dir, "simulate")) {
        /* the simulator takes a prior of its own: rebuild it from the settings' parameters
         * and samplers (the settings keep theirs for other uses) */
        bl_prior *prior;
        bl_prior_params pp = *bl_prior_get_params(s->prior);
        pp.batch_size = d->local_B;
        st = bl_prior_alloc(&prior, &pp);
        for (int i = bl_prior_n_samplers(prior); st == BL_OK && i < bl_prior_n_samplers(s->prior); i++)
            st = bl_prior_add(prior, bl_prior_sampler(s->prior, i));
        if (st == BL_OK) {
            st = bl_simulator_alloc(&d->sim, &s->survey, prior, &s->sim);
            if (st) bl_prior_free(prior);
        }
        if (st == BL_OK) d->batch = bl_sim_batch_alloc(d->sim);
    } else {
        st = bl_data_open_dir(d, dir);
    }
    if (st) {
        bl_cli_data_free(d);
        return st;
    }
    *out = d;
    return BL_OK;
}

void bl_cli_data_free(bl_cli_data *d)
{
    if (!d) return;
    bl_sim_batch_free(d->batch);
    bl_sim_batch_free(d->file_batch);
    bl_simulator_free(d->sim);
    for (int i = 0; i < d->n_files; i++) free(d->files[i]);
    free(d->files);
    free(d->first);
    free(d);
}

bl_batch_source bl_cli_data_source(bl_cli_data *d, bl_data_split split, int64_t n_batches)
{
    if (!d->sim) {
        int64_t avail = split == BL_DATA_TRAIN ? 0 : split == BL_DATA_VAL ? d->n_val : d->n_batches;
        if (avail > 0 && (n_batches <= 0 || n_batches > avail)) n_batches = avail;
    }
    return (bl_batch_source){.user = &d->users[split], .get = bl_data_get, .n_batches = n_batches};
}

int64_t bl_cli_data_n_batches(const bl_cli_data *d) { return d->sim ? 0 : d->n_batches; }

const bl_simulator *bl_cli_data_simulator(const bl_cli_data *d) { return d->sim; }

/* ---- images for predict ------------------------------------------------------------------- */

static int bl_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int bl_cmp_real(const void *a, const void *b)
{
    bl_real x = *(const bl_real *)a, y = *(const bl_real *)b;
    return (x > y) - (x < y);
}

int bl_cli_input_is_fits(const char *path)
{
    return bl_ends_with(path, ".fits") || bl_ends_with(path, ".fit") || bl_ends_with(path, ".fits.gz");
}

bl_status bl_cli_read_images(const bl_settings *s, const char *path, bl_tensor **images,
                             bl_tensor **background)
{
    *images = *background = NULL;
    bl_status st;
    if (bl_ends_with(path, ".safetensors")) {
        bl_safetensors *f;
        if ((st = bl_safetensors_read(&f, path))) return st;
        const bl_st_tensor *im, *bg;
        if ((st = bl_safetensors_expect(f, path, "images", 4, BL_SHAPE(-1, s->n_bands, -1, -1), &im)) ||
            (st = bl_safetensors_expect(f, path, "background", 4, im->shape, &bg))) {
            bl_safetensors_free(f);
            return st;
        }
        *images = bl_tensor_alloc("images", 4, im->shape, 0);
        *background = bl_tensor_alloc("background", 4, im->shape, 0);
        if ((st = bl_safetensors_read_into(f, path, "images", *images)) == BL_OK)
            st = bl_safetensors_read_into(f, path, "background", *background);
        bl_safetensors_free(f);
    } else if (bl_cli_input_is_fits(path)) {
        if ((st = bl_fits_read_batch_images(path, s->n_bands, s->band_names, NULL, images))) {
            if (st != BL_ERR_FORMAT) return st;
            /* say what was expected: one image HDU per band, named after it */
            char want[256] = "";
            for (int k = 0; k < s->n_bands; k++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", k ? ", " : "", s->band_names[k]);
            return bl_error_context(st, "%s: expected one image HDU per band with EXTNAME %s (as 'bliss generate "
                                    "--fits' writes; optional BKG_<band> HDUs for the background)", path, want);
        }
        if ((*images)->numel == 0) {
            st = bl_error(BL_ERR_FORMAT, "%s: images have shape [%lld, %lld, %lld, %lld]: nothing to predict",
                          path, (long long)(*images)->shape[0], (long long)(*images)->shape[1],
                          (long long)(*images)->shape[2], (long long)(*images)->shape[3]);
            goto done;
        }
        st = bl_fits_read_batch_images(path, s->n_bands, s->band_names, "BKG_", background);
        if (st == BL_ERR_FORMAT) {
            /* no BKG_<band> HDUs: each band's median stands for its (flat) sky */
            const bl_tensor *im = *images;
            int64_t B = im->shape[0], NB = im->shape[1], plane = im->shape[2] * im->shape[3];
            *background = bl_tensor_alloc("background", 4, im->shape, 0);
            bl_real *tmp = bl_malloc((size_t)plane * sizeof(bl_real));
            for (int64_t p = 0; p < B * NB; p++) {
                memcpy(tmp, im->data + p * plane, (size_t)plane * sizeof(bl_real));
                qsort(tmp, (size_t)plane, sizeof(bl_real), bl_cmp_real);
                bl_real med = tmp[plane / 2];
                for (int64_t q = 0; q < plane; q++) (*background)->data[p * plane + q] = med;
            }
            free(tmp);
            fprintf(stderr, "bliss: note: %s has no BKG_<band> images; using each band's median as the background\n", path);
            st = BL_OK;
        } else if (st == BL_OK && !bl_tensor_same_shape(*images, *background)) {
            st = bl_error(BL_ERR_FORMAT, "%s: background and image HDUs differ in shape", path);
        }
    } else {
        return bl_error(BL_ERR_ARG, "%s: expected a .safetensors batch or a .fits file", path);
    }
done:
    if (st) {
        bl_tensor_free(*images);
        bl_tensor_free(*background);
        *images = *background = NULL;
    }
    return st;
}
