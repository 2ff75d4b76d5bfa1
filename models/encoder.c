#include "models/encoder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "lib/rng.h"

bl_encoder_opts bl_encoder_opts_default(void)
{
    return (bl_encoder_opts){.tiles_to_crop = 1, .min_flux_threshold = 0, .flux_band = 2,
                             .use_checkerboard = 1, .double_detect = 0};
}

bl_encoder *bl_encoder_alloc(const bl_vardist_spec *spec, const bl_net_arch *arch,
                             const bl_encoder_opts *opts, uint64_t seed)
{
    BL_ASSERT(spec, "bl_encoder_alloc: NULL variational spec");
    bl_net_arch a = arch ? *arch : bl_net_arch_default(spec->dim);
    a.n_out = spec->dim;
    if (!arch) a.tile_slen = spec->tile_slen;
    BL_ASSERT(a.tile_slen == spec->tile_slen,
              "bl_encoder_alloc: network tile_slen %d but the variational spec's is %d",
              a.tile_slen, spec->tile_slen);
    /* as in BLISS, the input bands (the normaliser's choice) and the catalog's flux bands (the
     * survey's, in the spec) are separate: a network may see a subset of the bands */
    BL_ASSERT(a.n_bands >= 1, "bl_encoder_alloc: network has %d input bands", a.n_bands);
    bl_encoder *enc = bl_calloc(1, sizeof *enc);
    enc->opts = opts ? *opts : bl_encoder_opts_default();
    enc->spec = spec;
    enc->params = bl_params_alloc();
    bl_builder b = {enc->params, seed};
    bl_encoder_nets_init(&enc->nets, &b, &a, enc->opts.double_detect);
    enc->training = 1;
    return enc;
}

void bl_encoder_free(bl_encoder *enc)
{
    if (!enc) return;
    bl_params_free(enc->params);
    free(enc);
}

void bl_encoder_set_training(bl_encoder *enc, int training) { enc->training = training; }

bl_status bl_encoder_check_input(const bl_encoder *enc, const bl_tensor *x)
{
    char s[96];
    const bl_net_arch *a = &enc->nets.arch;
    if (x->ndim != 5 || x->shape[1] != a->n_bands || x->shape[2] != a->ch_per_band)
        return bl_error(BL_ERR_ARG, "encoder: input of shape %s, expected (B, %d, %d, H, W)",
                        bl_shape_str(x, s, sizeof s), a->n_bands, a->ch_per_band);
    if (x->shape[0] < 1 || x->shape[3] % 16 || x->shape[4] % 16 || x->shape[3] == 0 || x->shape[4] == 0)
        return bl_error(BL_ERR_ARG,
                        "encoder: input of shape %s: B >= 1 and H, W positive multiples of 16 needed",
                        bl_shape_str(x, s, sizeof s));
    if (!bl_tensor_all_finite(x))
        return bl_error(BL_ERR_NAN, "encoder: the input batch %s holds a NaN or infinite value",
                        bl_shape_str(x, s, sizeof s));
    return BL_OK;
}

bl_tensor *bl_encoder_checkerboard(bl_ctx *ctx, int64_t ht, int64_t wt)
{
    bl_tensor *cb = bl_new(ctx, 2, BL_SHAPE(ht, wt));
    for (int64_t i = 0; i < ht; i++)
        for (int64_t j = 0; j < wt; j++) cb->data[i * wt + j] = (bl_real)((i + j) % 2);
    return cb;
}

void bl_encoder_infer_marginal(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, bl_encoder_pred *pred)
{
    memset(pred, 0, sizeof *pred);
    pred->features = bl_features_net_forward(ctx, &enc->nets.features, x, enc->training);
    bl_tensor *xm = bl_catalog_net_forward(ctx, &enc->nets.marginal, pred->features, enc->training);
    pred->marginal = bl_vardist_spec_make_dist(ctx, enc->spec, xm);
}

/* x_cat of the checkerboard net given the history detections on tiles where mask = 1:
 * context (B, 2, ht, wt) = [n_sources * mask > 0, mask]; mask = cb (white) or 1 - cb (black). */
static bl_vardist *bl_encoder_conditional(bl_encoder *enc, bl_ctx *ctx, bl_tensor *features,
                                          const bl_tile_catalog *history, int white)
{
    const int64_t B = history->B, ht = history->ht, wt = history->wt, hw = ht * wt;
    bl_tensor *context = bl_new(ctx, 4, BL_SHAPE(B, 2, ht, wt));
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < ht; i++)
            for (int64_t j = 0; j < wt; j++) {
                const int cb = (int)((i + j) % 2), mask = white ? cb : 1 - cb;
                const int32_t n = history->n_sources[bl_tile_index(history, b, i, j)];
                context->data[(b * 2 + 0) * hw + i * wt + j] = (bl_real)(n * mask > 0);
                context->data[(b * 2 + 1) * hw + i * wt + j] = (bl_real)mask;
            }
    bl_tensor *x_cat = bl_context_net_forward(ctx, &enc->nets.context, features, context, enc->training);
    return bl_vardist_spec_make_dist(ctx, enc->spec, x_cat);
}

void bl_encoder_infer_conditionals(bl_encoder *enc, bl_ctx *ctx, const bl_tile_catalog *history,
                                   bl_encoder_pred *pred)
{
    const bl_vardist *m = pred->marginal;
    BL_ASSERT(m && pred->features, "bl_encoder_infer_conditionals: run bl_encoder_infer_marginal first");
    BL_ASSERT(history->B == m->B && history->ht == m->ht && history->wt == m->wt,
              "bl_encoder_infer_conditionals: history catalog (%lld, %lld, %lld) vs tiles "
              "(%lld, %lld, %lld)", (long long)history->B, (long long)history->ht,
              (long long)history->wt, (long long)m->B, (long long)m->ht, (long long)m->wt);
    if (enc->opts.use_checkerboard) {
        /* the conditional losses train the checkerboard net only (docs/behaviour.md §4.7) */
        bl_tensor *fd = bl_detach(ctx, pred->features);
        pred->white = bl_encoder_conditional(enc, ctx, fd, history, 1);
        pred->black = bl_encoder_conditional(enc, ctx, fd, history, 0);
    }
    if (enc->opts.double_detect) {
        bl_tensor *x2 = bl_catalog_net_forward(ctx, &enc->nets.second, pred->features, enc->training);
        pred->second = bl_vardist_spec_make_dist(ctx, enc->spec, x2);
    }
}

bl_status bl_encoder_infer(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                           const bl_tile_catalog *history, bl_encoder_pred *pred)
{
    bl_status st = bl_encoder_check_input(enc, x);
    if (st) return st;
    bl_encoder_infer_marginal(enc, ctx, x, pred);
    if (history) bl_encoder_infer_conditionals(enc, ctx, history, pred);
    return BL_OK;
}

/* ---- loss ---- */

/* (1 - cb) nll_white + cb nll_black + nll_m, halved; or nll_m alone (B, ht, wt) */
static bl_status bl_encoder_single_nll(bl_ctx *ctx, const bl_encoder_pred *pred, bl_tensor *cb,
                                       const bl_vardist_targets *target, bl_tensor **out,
                                       bl_encoder_loss_parts *parts)
{
    bl_tensor *nm, *nw = NULL, *nb = NULL;
    bl_status st = bl_vardist_nll_targets(ctx, pred->marginal, target, &nm);
    if (st) return st;
    if (!pred->white) {
        *out = nm;
    } else {
        if ((st = bl_vardist_nll_targets(ctx, pred->white, target, &nw))) return st;
        if ((st = bl_vardist_nll_targets(ctx, pred->black, target, &nb))) return st;
        bl_tensor *t = bl_add(ctx, nm, bl_mul(ctx, bl_rsub_scalar(ctx, 1, cb), nw));
        t = bl_add(ctx, t, bl_mul(ctx, cb, nb));
        *out = bl_mul_scalar(ctx, t, 0.5);
    }
    if (parts) {
        parts->nll_marginal = nm;
        parts->nll_white = nw;
        parts->nll_black = nb;
    }
    return BL_OK;
}

/* 0/1 mask (B, ht, wt) of tiles whose count equals n (n = 2 means >= 2) */
static bl_tensor *bl_count_mask(bl_ctx *ctx, const bl_tile_catalog *cat, int n)
{
    bl_tensor *m = bl_new(ctx, 3, BL_SHAPE(cat->B, cat->ht, cat->wt));
    for (int64_t t = 0; t < m->numel; t++)
        m->data[t] = (bl_real)(n < 2 ? cat->n_sources[t] == n : cat->n_sources[t] >= 2);
    return m;
}

bl_status bl_encoder_loss(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, const bl_tile_catalog *truth,
                          bl_tensor **loss, bl_encoder_loss_parts *parts)
{
    *loss = NULL;
    if (parts) memset(parts, 0, sizeof *parts);
    bl_status st = bl_encoder_check_input(enc, x);
    if (st) return st;
    const bl_net_arch *a = &enc->nets.arch;
    const int64_t B = x->shape[0], ht = x->shape[3] / a->tile_slen, wt = x->shape[4] / a->tile_slen;
    if (truth->B != B || truth->ht != ht || truth->wt != wt || truth->tile_slen != a->tile_slen)
        return bl_error(BL_ERR_ARG,
                        "encoder loss: true catalog of (%lld, %lld, %lld) tiles of %d px for an "
                        "image batch of (%lld, %lld, %lld) tiles of %d px",
                        (long long)truth->B, (long long)truth->ht, (long long)truth->wt,
                        truth->tile_slen, (long long)B, (long long)ht, (long long)wt, a->tile_slen);
    const int ttc = enc->opts.tiles_to_crop;
    if (ttc < 0 || 2 * ttc >= ht || 2 * ttc >= wt)
        return bl_error(BL_ERR_ARG, "encoder loss: tiles_to_crop = %d leaves no tile of %lld x %lld",
                        ttc, (long long)ht, (long long)wt);

    const int band = enc->opts.flux_band;
    bl_tile_catalog *target = bl_tile_catalog_filter_by_flux(truth, enc->opts.min_flux_threshold,
                                                             INFINITY, band);
    bl_tile_catalog *target1 = bl_tile_catalog_brightest_per_tile(target, band, 0, 1);
    bl_tile_catalog *target2 = NULL;
    bl_encoder_pred pred;
    bl_encoder_infer_marginal(enc, ctx, x, &pred);
    bl_encoder_infer_conditionals(enc, ctx, target1, &pred);
    bl_tensor *cb = bl_encoder_checkerboard(ctx, ht, wt);

    /* the targets depend only on (spec, catalog): made once, shared by every NLL below */
    bl_tensor *L = NULL;
    bl_vardist_targets tg1, tg2;
    st = bl_vardist_targets_make(ctx, enc->spec, target1, &tg1);
    if (!st) st = bl_encoder_single_nll(ctx, &pred, cb, &tg1, &L, parts);
    if (!st && pred.second) {
        /* two detections, either order; tiles with 0 / 1 / >= 2 true sources (docs/behaviour.md §4.9) */
        target2 = bl_tile_catalog_brightest_per_tile(target, band, 1, 1);
        bl_tensor *s2 = NULL, *n1 = NULL, *n2 = NULL;
        st = bl_vardist_targets_make(ctx, enc->spec, target2, &tg2);
        if (!st) st = bl_encoder_single_nll(ctx, &pred, cb, &tg2, &s2, NULL);
        if (!st) st = bl_vardist_nll_targets(ctx, pred.second, &tg2, &n2);
        if (!st) st = bl_vardist_nll_targets(ctx, pred.second, &tg1, &n1);
        if (!st) {
            const int64_t *s4 = BL_SHAPE(B, ht, wt, 1);
            bl_tensor *A = bl_add(ctx, L, n2), *Bv = bl_add(ctx, s2, n1);
            bl_tensor *both[2] = {bl_reshape(ctx, bl_neg(ctx, A), 4, s4),
                                  bl_reshape(ctx, bl_neg(ctx, Bv), 4, s4)};
            bl_tensor *lse = bl_neg(ctx, bl_logsumexp_dim(ctx, bl_concat(ctx, 2, both, 3), 3, 0));
            bl_tensor *many = bl_where(ctx, bl_count_mask(ctx, target, 1), A, lse);
            L = bl_where(ctx, bl_count_mask(ctx, target, 0), L, many);
        }
    }
    if (!st) {
        bl_tensor *cropped = bl_crop2d(ctx, L, ttc, ttc, ttc, ttc); /* (B, ht - 2 ttc, wt - 2 ttc) */
        *loss = bl_mean(ctx, cropped);
        if (parts) {
            parts->pred = pred;
            parts->loss_tiles = L;
        }
    }
    bl_tile_catalog_free(target2);
    bl_tile_catalog_free(target1);
    bl_tile_catalog_free(target);
    return st;
}

/* ---- sampling ---- */

/* est = a on tiles with cb = 1, b on tiles with cb = 0, for n_sources and every field of a */
static void bl_interleave(bl_tile_catalog *a, const bl_tile_catalog *b)
{
    for (int64_t bi = 0; bi < a->B; bi++)
        for (int64_t i = 0; i < a->ht; i++)
            for (int64_t j = 0; j < a->wt; j++) {
                if ((i + j) % 2) continue;
                const int64_t t = bl_tile_index(a, bi, i, j);
                a->n_sources[t] = b->n_sources[t];
                for (int f = 0; f < a->n_fields; f++) {
                    bl_tensor *fa = a->fields[f].t;
                    const bl_tensor *fb = bl_tile_catalog_require(b, a->fields[f].name);
                    const int64_t per_tile = a->S * a->fields[f].k;
                    memcpy(fa->data + t * per_tile, fb->data + t * per_tile,
                           (size_t)per_tile * sizeof(bl_real));
                }
            }
}

/* bl_vardist_sample of dist, with q's summaries (bl_vardist_q_fill) when with_q */
static bl_tile_catalog *bl_sample_dist(const bl_vardist *dist, uint64_t seed, uint64_t stream,
                                       int use_mode, int with_q)
{
    bl_tile_catalog *cat = bl_vardist_sample(dist, seed, stream, use_mode);
    if (with_q) bl_vardist_q_fill(dist, cat);
    return cat;
}

static bl_status bl_encoder_sample_q(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, int use_mode,
                                     int with_q, uint64_t seed, uint64_t stream, bl_tile_catalog **out)
{
    *out = NULL;
    bl_status st = bl_encoder_check_input(enc, x);
    if (st) return st;
    const int ttc = enc->opts.tiles_to_crop;
    const int64_t ht = x->shape[3] / enc->nets.arch.tile_slen, wt = x->shape[4] / enc->nets.arch.tile_slen;
    if (ttc < 0 || 2 * ttc >= ht || 2 * ttc >= wt)
        return bl_error(BL_ERR_ARG, "encoder sample: tiles_to_crop = %d leaves no tile of %lld x %lld",
                        ttc, (long long)ht, (long long)wt);
    const int grad_was = bl_set_grad_enabled(ctx, 0);
    bl_encoder_pred pred;
    bl_encoder_infer_marginal(enc, ctx, x, &pred);
    bl_tile_catalog *est = bl_sample_dist(pred.marginal, seed, bl_rng_mix(stream, 0), use_mode, with_q);
    if (enc->opts.use_checkerboard) {
        bl_tensor *fd = bl_detach(ctx, pred.features);
        bl_vardist *white = bl_encoder_conditional(enc, ctx, fd, est, 1);
        bl_tile_catalog *wcat = bl_sample_dist(white, seed, bl_rng_mix(stream, 1), use_mode, with_q);
        bl_interleave(est, wcat);
        bl_tile_catalog_free(wcat);
    }
    if (enc->opts.double_detect) {
        bl_tensor *x2 = bl_catalog_net_forward(ctx, &enc->nets.second, pred.features, enc->training);
        bl_vardist *second = bl_vardist_spec_make_dist(ctx, enc->spec, x2);
        bl_tile_catalog *scat = bl_sample_dist(second, seed, bl_rng_mix(stream, 2), use_mode, with_q);
        for (int64_t t = 0; t < bl_tile_catalog_n_tiles(scat); t++)
            scat->n_sources[t] *= est->n_sources[t];
        bl_tile_catalog *u = bl_tile_catalog_union(est, scat);
        bl_tile_catalog_free(scat);
        bl_tile_catalog_free(est);
        est = u;
    }
    bl_set_grad_enabled(ctx, grad_was);
    *out = bl_tile_catalog_symmetric_crop(est, ttc);
    bl_tile_catalog_free(est);
    return BL_OK;
}

bl_status bl_encoder_sample(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, int use_mode,
                            uint64_t seed, uint64_t stream, bl_tile_catalog **out)
{
    return bl_encoder_sample_q(enc, ctx, x, use_mode, 0, seed, stream, out);
}

bl_status bl_encoder_predict(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, uint64_t seed,
                             uint64_t stream, bl_tile_catalog **out)
{
    return bl_encoder_sample_q(enc, ctx, x, 1, 1, seed, stream, out);
}
