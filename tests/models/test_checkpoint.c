/* models: checkpoints (round trip, mismatch reports, resume), the trainer (fixed-batch loop,
 * validation, NaN guard) and the PyTorch conversion tool. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/ops.h"
#include "models/checkpoint.h"
#include "lib/sim/source.h"
#include "models/trainer.h"
#include "test_models_util.h"
#include "tests/bl_check.h"

#ifndef BL_SOURCE_DIR
#error "BL_SOURCE_DIR must name the project root"
#endif

static char tmpdir[256];

static void make_tmpdir(void)
{
    bl_check_tmpdir(tmpdir, sizeof tmpdir, "bl_test_ckpt");
}

static void path_in_tmp(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

/* A batch source: random input and truth from index-keyed streams (a fixed set). */
typedef struct rand_source {
    int64_t B;
    uint64_t seed;
    int poison; /* index whose input holds a NaN (-1: none) */
} rand_source;

static bl_status rand_get(void *user, bl_arena *arena, int64_t index, bl_tensor **x, bl_tile_catalog **truth)
{
    rand_source *s = user;
    *x = tm_random_input_in(arena, s->B, 32, 32, s->seed * 1000 + (uint64_t)index);
    if (index == s->poison) (*x)->data[17] = NAN;
    *truth = tm_random_truth(s->B, 8, 8, 4, s->seed * 1000 + (uint64_t)index, 0);
    return BL_OK;
}

static bl_encoder *tiny_encoder(bl_vardist_spec *spec, uint64_t seed)
{
    bl_net_arch arch = tm_tiny_arch();
    return bl_encoder_alloc(spec, &arch, NULL, seed);
}

static void assert_params_equal(const bl_params *a, const bl_params *b)
{
    ck_assert_int_eq(a->n, b->n);
    for (int i = 0; i < a->n; i++)
        ck_assert_msg(memcmp(a->t[i]->data, b->t[i]->data, (size_t)a->t[i]->numel * sizeof(bl_real)) == 0,
                      "%s differs", a->t[i]->name);
}

static void assert_adam_equal(const bl_adam *a, const bl_adam *b)
{
    ck_assert_int_eq(a->step, b->step);
    for (int i = 0; i < a->params->n; i++) {
        if (!a->params->t[i]->requires_grad) continue;
        ck_assert_int_eq(a->steps[i], b->steps[i]);
        size_t n = (size_t)a->params->t[i]->numel * sizeof(bl_real);
        ck_assert(memcmp(a->m[i], b->m[i], n) == 0 && memcmp(a->v[i], b->v[i], n) == 0);
    }
}

START_TEST(test_round_trip_bit_exact_and_resume)
{
    make_tmpdir();
    char path[512];
    path_in_tmp(path, sizeof path, "a.safetensors");
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    rand_source src = {2, 3, -1};
    bl_batch_source bs = {&src, rand_get, 0};
    bl_encoder *e1 = tiny_encoder(spec, 1);
    bl_trainer *t1 = bl_trainer_alloc(e1, NULL, bs, (bl_batch_source){0});
    double l;
    for (int s = 0; s < 3; s++) ck_assert_int_eq(bl_trainer_step(t1, 1e-3, &l), BL_OK);
    ck_assert_int_eq(bl_trainer_save(t1, path, 1, (const char *[]){"note"}, (const char *[]){"hello"}), BL_OK);

    /* a fresh model from another seed, loaded: identical parameters, buffers, Adam state */
    bl_encoder *e2 = tiny_encoder(spec, 2);
    bl_trainer *t2 = bl_trainer_alloc(e2, NULL, bs, (bl_batch_source){0});
    bl_safetensors *meta;
    ck_assert_int_eq(bl_trainer_load(t2, path, &meta), BL_OK);
    ck_assert_str_eq(bl_safetensors_meta(meta, "note"), "hello");
    ck_assert_str_eq(bl_safetensors_meta(meta, "format"), BL_CHECKPOINT_FORMAT);
    /* num_batches_tracked is an int64 scalar as in PyTorch: 3 steps, checkerboard net twice */
    const bl_st_tensor *nbt = bl_safetensors_find(meta, "checkerboard_net.merge.bn.num_batches_tracked");
    ck_assert(nbt && nbt->dtype == BL_DTYPE_I64 && nbt->ndim == 0);
    ck_assert_int_eq(*(const int64_t *)nbt->data, 6);
    nbt = bl_safetensors_find(meta, "features_net.preprocess3d.1.num_batches_tracked");
    ck_assert_int_eq(*(const int64_t *)nbt->data, 3);
    bl_safetensors_free(meta);
    assert_params_equal(e1->params, e2->params);
    assert_adam_equal(t1->adam, t2->adam);
    ck_assert_int_eq(t2->step, 3);

    /* resumed training: the same next loss and the same parameters after it */
    double a, b;
    ck_assert_int_eq(bl_trainer_step(t1, 1e-3, &a), BL_OK);
    ck_assert_int_eq(bl_trainer_step(t2, 1e-3, &b), BL_OK);
    ck_assert_msg(a == b, "next loss %.9g uninterrupted vs %.9g resumed", a, b);
    assert_params_equal(e1->params, e2->params);

    /* saving the loaded model again gives the same bytes */
    char p2[512];
    path_in_tmp(p2, sizeof p2, "b.safetensors");
    ck_assert_int_eq(bl_checkpoint_save(p2, e2->params, t2->adam, 0, NULL, NULL), BL_OK);
    ck_assert_int_eq(bl_checkpoint_save(path, e1->params, t1->adam, 0, NULL, NULL), BL_OK);
    FILE *f1 = fopen(path, "rb"), *f2 = fopen(p2, "rb");
    int c1, c2;
    long n = 0;
    do {
        c1 = fgetc(f1);
        c2 = fgetc(f2);
        ck_assert_int_eq(c1, c2);
        n++;
    } while (c1 != EOF);
    fclose(f1);
    fclose(f2);
    ck_assert_int_gt(n, 22760 * 3 * 4);
    remove(path);
    remove(p2);
    rmdir(tmpdir);
    bl_trainer_free(t1);
    bl_trainer_free(t2);
    bl_encoder_free(e1);
    bl_encoder_free(e2);
    bl_vardist_spec_free(spec);
}
END_TEST

START_TEST(test_per_parameter_adam_steps)
{
    /* checkerboard off: the checkerboard net never gets a gradient, so Adam never steps it
     * (count 0) while every other parameter takes 2 steps; the counts round-trip, an older
     * file without them gets adam.step or 0 (all-zero moments), a bad count is rejected */
    make_tmpdir();
    char path[512];
    path_in_tmp(path, sizeof path, "steps.safetensors");
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    rand_source src = {2, 5, -1};
    bl_batch_source bs = {&src, rand_get, 0};
    bl_net_arch arch = tm_tiny_arch();
    bl_encoder_opts eo = bl_encoder_opts_default();
    eo.use_checkerboard = 0;
    bl_encoder *e1 = bl_encoder_alloc(spec, &arch, &eo, 1), *e2 = bl_encoder_alloc(spec, &arch, &eo, 2);
    bl_trainer *t1 = bl_trainer_alloc(e1, NULL, bs, (bl_batch_source){0});
    bl_trainer *t2 = bl_trainer_alloc(e2, NULL, bs, (bl_batch_source){0});
    bl_tensor *cb_w = bl_params_find(e1->params, "checkerboard_net.merge.conv.weight");
    ck_assert_ptr_nonnull(cb_w);
    bl_real *w0 = bl_malloc((size_t)cb_w->numel * sizeof *w0);
    memcpy(w0, cb_w->data, (size_t)cb_w->numel * sizeof *w0);
    double l;
    for (int s = 0; s < 2; s++) ck_assert_int_eq(bl_trainer_step(t1, 1e-3, &l), BL_OK);
    ck_assert(memcmp(w0, cb_w->data, (size_t)cb_w->numel * sizeof *w0) == 0);
    int n_skipped = 0, n_stepped = 0;
    for (int i = 0; i < e1->params->n; i++) {
        const bl_tensor *t = e1->params->t[i];
        if (!t->requires_grad) continue;
        const int cb = strncmp(t->name, "checkerboard_net.", 17) == 0;
        ck_assert_msg(t1->adam->steps[i] == (cb ? 0 : 2), "%s: %lld steps", t->name,
                      (long long)t1->adam->steps[i]);
        n_skipped += cb;
        n_stepped += !cb;
    }
    ck_assert(n_skipped > 0 && n_stepped > 0);

    /* round trip */
    ck_assert_int_eq(bl_checkpoint_save(path, e1->params, t1->adam, 0, NULL, NULL), BL_OK);
    ck_assert_int_eq(bl_checkpoint_load(path, e2->params, t2->adam, NULL), BL_OK);
    assert_adam_equal(t1->adam, t2->adam);

    /* an older file: the same without the .step entries */
    bl_safetensors *full = bl_checkpoint_pack(e1->params, t1->adam), *old = bl_safetensors_alloc();
    for (int j = 0; j < full->n; j++) {
        const bl_st_tensor *e = &full->tensors[j];
        if (strstr(e->name, "optimizer.") == e->name && strcmp(e->name + strlen(e->name) - 5, ".step") == 0)
            continue;
        ck_assert_int_eq(bl_safetensors_add(old, e->name, e->dtype, e->ndim, e->shape, e->data), BL_OK);
    }
    bl_safetensors_set_meta(old, "adam.step", "2");
    for (int i = 0; i < e2->params->n; i++) t2->adam->steps[i] = 7;
    ck_assert_int_eq(bl_checkpoint_unpack(old, "old.safetensors", e2->params, t2->adam), BL_OK);
    assert_adam_equal(t1->adam, t2->adam);

    /* a count above adam.step: BL_ERR_FORMAT naming the entry, nothing changed */
    bl_st_tensor *e = (bl_st_tensor *)bl_safetensors_find(full, "optimizer.state.features_net.preprocess3d.0.weight.step");
    ck_assert_ptr_nonnull(e);
    ck_assert(e->dtype == BL_DTYPE_I64 && e->ndim == 0 && *(int64_t *)e->data == 2);
    *(int64_t *)e->data = 3;
    for (int i = 0; i < e2->params->n; i++) t2->adam->steps[i] = 1;
    ck_assert_int_eq(bl_checkpoint_unpack(full, "bad.safetensors", e2->params, t2->adam), BL_ERR_FORMAT);
    ck_assert_msg(strstr(bl_error_message(), "bad.safetensors") &&
                      strstr(bl_error_message(), "preprocess3d.0.weight.step = 3"),
                  "%s", bl_error_message());
    ck_assert_int_eq(t2->adam->steps[0], 1);
    bl_safetensors_free(full);
    bl_safetensors_free(old);
    free(w0);
    remove(path);
    rmdir(tmpdir);
    bl_trainer_free(t1);
    bl_trainer_free(t2);
    bl_encoder_free(e1);
    bl_encoder_free(e2);
    bl_vardist_spec_free(spec);
}
END_TEST

START_TEST(test_mismatch_is_reported)
{
    make_tmpdir();
    char path[512];
    path_in_tmp(path, sizeof path, "w.safetensors");
    bl_vardist_spec *s38 = bl_vardist_spec_alloc_sdss(5, 4), *s40 = bl_vardist_spec_alloc_sdss(5, 4);
    ck_assert_int_eq(bl_vardist_spec_add(s40, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                                           .field = "redshifts", .mask = BL_MASK_ON}),
                     BL_OK);
    bl_encoder *e38 = tiny_encoder(s38, 1), *e40 = tiny_encoder(s40, 2);
    ck_assert_int_eq(bl_checkpoint_save(path, e38->params, NULL, 0, NULL, NULL), BL_OK);

    /* P = 38 weights into a P = 40 model: the four Detect tensors differ, nothing is loaded */
    bl_tensor *w40 = bl_params_find(e40->params, "marginal_net.net_ml.6.conv.bias");
    const bl_real before = w40->data[0];
    ck_assert_int_eq(bl_checkpoint_load(path, e40->params, NULL, NULL), BL_ERR_FORMAT);
    const char *msg = bl_error_message();
    ck_assert_ptr_nonnull(strstr(msg, path));
    ck_assert_ptr_nonnull(strstr(msg, "4 of another shape"));
    ck_assert_ptr_nonnull(strstr(msg, "marginal_net.net_ml.6.conv.weight is (38, 8, 1, 1) in the file, "
                                      "(40, 8, 1, 1) in the model"));
    ck_assert(w40->data[0] == before);
    ck_assert(bl_params_find(e40->params, "features_net.backbone.0.conv.weight")->data[0] !=
              bl_params_find(e38->params, "features_net.backbone.0.conv.weight")->data[0]);

    /* a weights-only file cannot resume training */
    bl_adam *adam = bl_adam_alloc(e38->params, bl_adam_defaults());
    ck_assert_int_eq(bl_checkpoint_load(path, e38->params, adam, NULL), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "no optimizer state"));
    ck_assert_int_eq(bl_checkpoint_load(path, e38->params, NULL, NULL), BL_OK);

    /* missing and unexpected names: a model with a second net, a file with an extra tensor */
    bl_encoder_opts o = bl_encoder_opts_default();
    o.double_detect = 1;
    bl_net_arch arch = tm_tiny_arch();
    bl_encoder *e2 = bl_encoder_alloc(s38, &arch, &o, 3);
    ck_assert_int_eq(bl_checkpoint_load(path, e2->params, NULL, NULL), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "212 missing"));
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "missing: second_net.net_ml.0.cv1.conv.weight (4, 8, 1, 1)"));
    bl_safetensors *st = bl_checkpoint_pack(e38->params, NULL);
    ck_assert_int_eq(bl_safetensors_add(st, "extra.weight", BL_DTYPE_F32, 1, BL_SHAPE(3),
                                        (const float[]){1, 2, 3}), BL_OK);
    ck_assert_int_eq(bl_checkpoint_unpack(st, "mem", e38->params, NULL), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "unexpected: extra.weight (3)"));
    bl_safetensors_free(st);

    /* a truncated file is an error, not a crash */
    FILE *f = fopen(path, "r+b");
    ck_assert_int_eq(ftruncate(fileno(f), 1000), 0);
    fclose(f);
    ck_assert_int_ne(bl_checkpoint_load(path, e38->params, NULL, NULL), BL_OK);
    remove(path);
    rmdir(tmpdir);
    bl_adam_free(adam);
    bl_encoder_free(e2);
    bl_encoder_free(e38);
    bl_encoder_free(e40);
    bl_vardist_spec_free(s38);
    bl_vardist_spec_free(s40);
}
END_TEST

START_TEST(test_trainer_fixed_batch_validation_nan)
{
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    rand_source tsrc = {4, 5, -1}, vsrc = {2, 6, -1};
    bl_encoder *enc = tiny_encoder(spec, 4);
    bl_trainer_opts o = bl_trainer_opts_default();
    bl_trainer *tr = bl_trainer_alloc(enc, &o, (bl_batch_source){&tsrc, rand_get, 0},
                                      (bl_batch_source){&vsrc, rand_get, 2});
    double v0, v1, v0b, losses[30];
    ck_assert_int_eq(bl_trainer_validate(tr, &v0), BL_OK);
    ck_assert_int_eq(bl_trainer_validate(tr, &v0b), BL_OK);
    ck_assert(v0 == v0b); /* fixed set, eval mode: running stats untouched */
    ck_assert(enc->training == 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *log = open_memstream(&buf, &len);
    ck_assert_int_eq(bl_trainer_fixed_batch_loop(tr, 30, 3e-3, 10, log, losses), BL_OK);
    fclose(log);
    ck_assert_ptr_nonnull(strstr(buf, "step 0 loss "));
    ck_assert_ptr_nonnull(strstr(buf, "step 20 loss "));
    ck_assert_ptr_nonnull(strstr(buf, "step 29 loss "));
    ck_assert_ptr_null(strstr(buf, "step 5 loss"));
    free(buf);
    ck_assert_msg(losses[29] < 0.85 * losses[0], "fixed batch: %g -> %g", losses[0], losses[29]);
    ck_assert_int_eq(tr->step, 30);
    ck_assert_int_eq(bl_trainer_validate(tr, &v1), BL_OK);
    ck_assert(isfinite(v1) && v1 != v0);

    /* a NaN in a batch: an error naming it, parameters untouched */
    tsrc.poison = 30;
    bl_tensor *w = bl_params_find(enc->params, "features_net.backbone.0.conv.weight");
    const bl_real w0 = w->data[5];
    double l;
    ck_assert_int_eq(bl_trainer_step(tr, 1e-3, &l), BL_ERR_NAN);
    ck_assert(w->data[5] == w0);
    ck_assert_int_eq(tr->step, 30);
    bl_trainer_free(tr);
    bl_encoder_free(enc);
    bl_vardist_spec_free(spec);
}
END_TEST

START_TEST(test_pt_convert_round_trip)
{
    /* C checkpoint -> Lightning .ckpt (torch) -> safetensors -> C: bit-exact, Adam included.
     * Runs only when main found torch (otherwise the program exits 77: skipped). */
    make_tmpdir();
    char a[512], ck[512], b[512], cmd[4096];
    path_in_tmp(a, sizeof a, "c.safetensors");
    path_in_tmp(ck, sizeof ck, "c.ckpt");
    path_in_tmp(b, sizeof b, "back.safetensors");
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    rand_source src = {2, 7, -1};
    bl_encoder *e1 = tiny_encoder(spec, 1), *e2 = tiny_encoder(spec, 9);
    bl_trainer *t1 = bl_trainer_alloc(e1, NULL, (bl_batch_source){&src, rand_get, 0}, (bl_batch_source){0});
    bl_trainer *t2 = bl_trainer_alloc(e2, NULL, (bl_batch_source){&src, rand_get, 0}, (bl_batch_source){0});
    double l;
    ck_assert_int_eq(bl_trainer_step(t1, 1e-3, &l), BL_OK);
    ck_assert_int_eq(bl_trainer_step(t1, 1e-3, &l), BL_OK);
    ck_assert_int_eq(bl_checkpoint_save(a, e1->params, t1->adam, 0, NULL, NULL), BL_OK);
    /* one interpreter for both directions (importing torch takes seconds) */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import sys; sys.path.insert(0, '%s/tools'); import pt_convert as p; "
             "p.safetensors_to_pt('%s', '%s', True); p.pt_to_safetensors('%s', '%s')\" >/dev/null",
             BL_SOURCE_DIR, a, ck, ck, b);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_eq(bl_checkpoint_load(b, e2->params, t2->adam, NULL), BL_OK);
    assert_params_equal(e1->params, e2->params);
    assert_adam_equal(t1->adam, t2->adam);
    remove(a);
    remove(ck);
    remove(b);
    rmdir(tmpdir);
    bl_trainer_free(t1);
    bl_trainer_free(t2);
    bl_encoder_free(e1);
    bl_encoder_free(e2);
    bl_vardist_spec_free(spec);
}
END_TEST

START_TEST(test_trainer_on_simulated_batches)
{
    /* the simulator -> normaliser -> encoder pipeline at 32 x 32 with the tiny widths */
    bl_survey sv;
    bl_survey_default(&sv);
    bl_prior_params pp;
    bl_prior_params_default(&pp);
    pp.batch_size = 2;
    pp.n_tiles_h = pp.n_tiles_w = 8;
    bl_prior *prior;
    ck_assert_msg(bl_prior_alloc(&prior, &pp) == BL_OK, "%s", bl_error_message());
    bl_sim_opts so;
    bl_sim_opts_default(&so);
    bl_simulator *sim;
    ck_assert_msg(bl_simulator_alloc(&sim, &sv, prior, &so) == BL_OK, "%s", bl_error_message());
    bl_normalize_opts no;
    bl_normalize_opts_default(&no);
    bl_sim_source *train = bl_sim_source_alloc(sim, &no, 42, 0), *val = bl_sim_source_alloc(sim, &no, 42, 1u << 30);

    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    bl_encoder *enc = tiny_encoder(spec, 4);
    bl_trainer *tr = bl_trainer_alloc(enc, NULL, bl_sim_source_batches(train, 0), bl_sim_source_batches(val, 2));
    double l0, l1, v0, v1;
    ck_assert_msg(bl_trainer_step(tr, 1e-3, &l0) == BL_OK, "%s", bl_error_message());
    ck_assert_int_eq(bl_trainer_step(tr, 1e-3, &l1), BL_OK);
    ck_assert(isfinite(l0) && isfinite(l1) && l0 > 0);
    ck_assert_int_eq(bl_trainer_validate(tr, &v0), BL_OK);
    ck_assert_int_eq(bl_trainer_validate(tr, &v1), BL_OK);
    ck_assert(isfinite(v0) && v0 == v1); /* a fixed validation set */

    /* the same index gives the same batch */
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_batch_source bs = bl_sim_source_batches(train, 0);
    bl_tensor *xa, *xb;
    bl_tile_catalog *ta, *tb;
    ck_assert_int_eq(bs.get(bs.user, bl_ctx_arena(ctx), 5, &xa, &ta), BL_OK);
    ck_assert_int_eq(bs.get(bs.user, bl_ctx_arena(ctx), 5, &xb, &tb), BL_OK);
    ck_assert_int_eq(xa->shape[2], 6);
    ck_assert(memcmp(xa->data, xb->data, (size_t)xa->numel * sizeof(bl_real)) == 0);
    ck_assert_int_eq(bl_tile_catalog_total_sources(ta), bl_tile_catalog_total_sources(tb));
    bl_tile_catalog_free(ta);
    bl_tile_catalog_free(tb);
    bl_ctx_free(ctx);
    bl_trainer_free(tr);
    bl_encoder_free(enc);
    bl_vardist_spec_free(spec);
    bl_sim_source_free(train);
    bl_sim_source_free(val);
    bl_simulator_free(sim);
}
END_TEST

/*   test_models_checkpoint             the checkpoint and trainer tests
 *   test_models_checkpoint pt_convert  the round trip through PyTorch: exit 77 (meson: skipped)
 *                                      when /usr/bin/python3 has no torch */
int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "pt_convert")) {
        if (access("/usr/bin/python3", X_OK) != 0 ||
            system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
            fprintf(stderr, "pt_convert round trip: no /usr/bin/python3 with torch, skipped\n");
            return 77;
        }
        const bl_check_case pt[] = {{"pt_convert", test_pt_convert_round_trip}};
        return bl_check_run(bl_check_suite("models_checkpoint_pt_convert", pt, 1, 300));
    }
    /* Check's test handles are not constant expressions: the table lives in main */
    const bl_check_case cases[] = {
        {"round_trip", test_round_trip_bit_exact_and_resume},
        {"adam_steps", test_per_parameter_adam_steps},
        {"mismatch", test_mismatch_is_reported},
        {"trainer", test_trainer_fixed_batch_validation_nan},
        {"simulated", test_trainer_on_simulated_batches},
    };
    return bl_check_run(bl_check_suite("models_checkpoint", cases, sizeof cases / sizeof cases[0], 300));
}
