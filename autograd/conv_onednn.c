/* The oneDNN convolution engine behind bl_conv2d / bl_conv3d_depth (docs/conv.md, "Engines").
 *
 * Per convolution shape (geometry, bias or not, OpenMP thread count, Winograd policy) one cache
 * entry holds three primitives — forward (training), backward data, backward weights (+bias) —
 * created from memory descriptors with format_tag_any, so oneDNN picks its blocked layouts
 * (e.g. nChw16c activations, OIhw16i16o weights), plus the reorders between those layouts
 * and the op boundary's NCHW / OIHW. Entries live until the process exits; nothing is created
 * per step once every shape has been seen.
 *
 * A call: reorder each input whose layout differs into arena scratch (dy once when backward
 * data and backward weights want the same layout), run the primitive, reorder outputs back.
 * Gradients accumulate as the tape requires: dW is reordered into w's gradient with a sum
 * post-op (grad += dW in one pass), dX likewise unless the gradient buffer is fresh, db is
 * added. Scratchpads are user-managed (dnnl_scratchpad_mode_user) and come from the ctx arena,
 * released with the other scratch when the call returns.
 *
 * Threads: oneDNN is the OpenMP build (libgomp), the same runtime as OpenBLAS and our loops.
 * Primitives are created for the thread count of the moment (part of the cache key). For a
 * fixed thread count and ISA the results are bit-identical from run to run. */
#include "autograd/conv_onednn.h"

#ifdef BL_CONV_HAVE_ONEDNN

#include "autograd/conv_wino5.h"

#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ONEDNN_CHECK(call)                                                                     \
    do {                                                                                       \
        dnnl_status_t st_ = (call);                                                            \
        if (st_ != dnnl_success)                                                               \
            bl_abort(__FILE__, __LINE__, "oneDNN: %s failed with status %d", #call, (int)st_); \
    } while (0)

/* A primitive and its scratchpad (user-managed). */
typedef struct onednn_prim {
    dnnl_primitive_t prim;
    dnnl_memory_desc_t scratch_md;
    size_t scratch_bytes;
    dnnl_memory_t scratch;
} onednn_prim;

/* The tensor layouts at the op boundary (lib/tensor.h): index 0 plain (NCHW, weights OIHW),
 * 1 nChw8c, 2 nChw16c (activations only). */
#define ONEDNN_LAYOUTS 3
static int layout_index(int layout) { return layout == 16 ? 2 : layout == 8 ? 1 : 0; }
static int layout_of_index(int i) { return i == 2 ? 16 : i == 1 ? 8 : BL_LAYOUT_PLAIN; }

/* One tensor argument: the primitive's layout and the op boundary's layouts. Reorders between
 * them are created on first use (a network that keeps the primitive's own layout between
 * layers needs none for activations). */
typedef struct onednn_arg {
    dnnl_memory_desc_t md;                   /* the primitive's layout */
    int native;                              /* index of the boundary layout equal to md, or -1 */
    int n_user;                              /* boundary layouts: 3 for activations, 1 for weights */
    size_t bytes;
    dnnl_memory_desc_t user_md[ONEDNN_LAYOUTS];
    dnnl_memory_t user[ONEDNN_LAYOUTS];      /* boundary memory (handle set per call) */
    dnnl_memory_t mem;                       /* md memory (handle: the tensor itself or scratch) */
    onednn_prim to[ONEDNN_LAYOUTS];          /* inputs: boundary -> md */
    onednn_prim back[ONEDNN_LAYOUTS];        /* outputs: md -> boundary */
    onednn_prim back_acc[ONEDNN_LAYOUTS];    /* outputs: boundary += md */
} onednn_arg;

typedef struct onednn_key {
    bl_conv_geom g;
    int64_t has_bias, threads, wino_mode;
} onednn_key;

typedef struct onednn_conv {
    onednn_key key;
    int winograd;
    char impl[3][40];
    char describe[3 * 40 + 24];
    onednn_prim fwd, bwd_d, bwd_w;
    onednn_arg f_src, f_wei, f_dst;    /* forward */
    onednn_arg d_ddst, d_wei, d_dsrc;  /* backward data */
    onednn_arg w_src, w_ddst, w_dwei;  /* backward weights */
    dnnl_memory_t bias, dbias;         /* plain (M) */
    int out_layout;                    /* the blocked output layout on offer, or plain */
    int wino5;                         /* 5x5 Winograd (autograd/conv_wino5.h) where the layouts allow */
    /* eval (made on first use): a forward convolution (prop kind forward_training, see onednn_eval_make) with a bias and, when the implementation
     * takes it, SiLU as an eltwise post-op; else SiLU runs as an in-place eltwise primitive */
    int eval_made, eval_post;
    onednn_prim eval, eval_silu;
    onednn_arg e_src, e_wei, e_dst;
    dnnl_memory_t e_bias;
} onednn_conv;

static dnnl_engine_t onednn_engine;
static dnnl_stream_t onednn_stream;
static onednn_conv **onednn_cache;
static int onednn_n, onednn_cap;
static int onednn_wino = -1; /* -1 until the first query or set */

void bl_conv_onednn_set_winograd(bl_conv_wino mode) { onednn_wino = (int)mode; }

bl_conv_wino bl_conv_onednn_get_winograd(void)
{
    if (onednn_wino < 0) {
        const char *env = getenv("BL_CONV_WINO");
        onednn_wino = BL_CONV_WINO_AUTO;
        if (env && *env) {
            if (!strcmp(env, "off")) onednn_wino = BL_CONV_WINO_OFF;
            else if (!strcmp(env, "all")) onednn_wino = BL_CONV_WINO_ALL;
            else if (strcmp(env, "auto")) { /* a user error with no caller to return it to */
                fprintf(stderr, "bliss: BL_CONV_WINO=%s: unknown Winograd policy (expected off, "
                                "auto or all)\n", env);
                exit(2);
            }
        }
    }
    return (bl_conv_wino)onednn_wino;
}

/* ---- building blocks ---- */

static void prim_free(onednn_prim *p)
{
    if (p->prim) dnnl_primitive_destroy(p->prim);
    if (p->scratch) dnnl_memory_destroy(p->scratch);
    memset(p, 0, sizeof *p);
}

/* The primitive of pd (which is destroyed), its implementation name into impl (may be NULL). */
static void prim_make(onednn_prim *p, dnnl_primitive_desc_t pd, char *impl, size_t impl_n)
{
    if (impl) {
        const char *s = NULL;
        ONEDNN_CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s));
        snprintf(impl, impl_n, "%s", s ? s : "?");
    }
    p->scratch_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    p->scratch_bytes = dnnl_memory_desc_get_size(&p->scratch_md);
    if (p->scratch_bytes)
        ONEDNN_CHECK(dnnl_memory_create(&p->scratch, &p->scratch_md, onednn_engine, DNNL_MEMORY_NONE));
    ONEDNN_CHECK(dnnl_primitive_create(&p->prim, pd));
    dnnl_primitive_desc_destroy(pd);
}

static dnnl_primitive_attr_t attr_user_scratchpad(int sum)
{
    dnnl_primitive_attr_t attr;
    ONEDNN_CHECK(dnnl_primitive_attr_create(&attr));
    ONEDNN_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (sum) { /* dst += result */
        dnnl_post_ops_t po;
        ONEDNN_CHECK(dnnl_post_ops_create(&po));
        ONEDNN_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
        ONEDNN_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
        dnnl_post_ops_destroy(po);
    }
    return attr;
}

static void reorder_make(onednn_prim *p, const dnnl_memory_desc_t *from,
                         const dnnl_memory_desc_t *to, int sum)
{
    dnnl_primitive_attr_t attr = attr_user_scratchpad(sum);
    dnnl_primitive_desc_t pd;
    ONEDNN_CHECK(dnnl_reorder_primitive_desc_create(&pd, from, onednn_engine, to, onednn_engine, attr));
    dnnl_primitive_attr_destroy(attr);
    prim_make(p, pd, NULL, 0);
}

/* Run p with args (room for one more: the scratchpad, from the arena). */
static void prim_run(bl_ctx *ctx, onednn_prim *p, int n, dnnl_exec_arg_t *args)
{
    if (p->scratch_bytes) {
        ONEDNN_CHECK(dnnl_memory_set_data_handle(p->scratch, bl_scratch(ctx, p->scratch_bytes)));
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    }
    ONEDNN_CHECK(dnnl_primitive_execute(p->prim, onednn_stream, n, args));
}

static void reorder_run(bl_ctx *ctx, onednn_prim *p, dnnl_memory_t from, dnnl_memory_t to)
{
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    prim_run(ctx, p, 2, args);
}

/* a: argument `what` of pd with dims d; weights (OIHW) have one boundary layout, activations
 * three (NCHW, nChw8c, nChw16c). */
static void arg_init(onednn_arg *a, const_dnnl_primitive_desc_t pd, dnnl_query_t what,
                     const dnnl_dims_t d, int weights)
{
    a->md = *dnnl_primitive_desc_query_md(pd, what, 0);
    a->bytes = dnnl_memory_desc_get_size(&a->md);
    const dnnl_format_tag_t tags[ONEDNN_LAYOUTS] = {dnnl_nchw, dnnl_nChw8c, dnnl_nChw16c};
    a->n_user = weights ? 1 : ONEDNN_LAYOUTS;
    a->native = -1;
    for (int i = 0; i < a->n_user; i++) {
        ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&a->user_md[i], 4, d, dnnl_f32,
                                                  weights ? dnnl_oihw : tags[i]));
        ONEDNN_CHECK(dnnl_memory_create(&a->user[i], &a->user_md[i], onednn_engine, DNNL_MEMORY_NONE));
        if (a->native < 0 && dnnl_memory_desc_equal(&a->md, &a->user_md[i])) a->native = i;
    }
    ONEDNN_CHECK(dnnl_memory_create(&a->mem, &a->md, onednn_engine, DNNL_MEMORY_NONE));
}

static void arg_free(onednn_arg *a)
{
    for (int i = 0; i < a->n_user; i++) {
        if (a->user[i]) dnnl_memory_destroy(a->user[i]);
        prim_free(&a->to[i]);
        prim_free(&a->back[i]);
        prim_free(&a->back_acc[i]);
    }
    if (a->mem) dnnl_memory_destroy(a->mem);
}

/* The input p (boundary layout `layout`) as the primitive wants it: a->mem points at p itself
 * or at an arena copy in the primitive's layout. */
static void arg_in(bl_ctx *ctx, onednn_arg *a, const bl_real *p, int layout)
{
    const int li = layout_index(layout);
    if (li == a->native) {
        ONEDNN_CHECK(dnnl_memory_set_data_handle(a->mem, (void *)p));
        return;
    }
    if (!a->to[li].prim) reorder_make(&a->to[li], &a->user_md[li], &a->md, 0);
    ONEDNN_CHECK(dnnl_memory_set_data_handle(a->user[li], (void *)p));
    ONEDNN_CHECK(dnnl_memory_set_data_handle(a->mem, bl_scratch(ctx, a->bytes)));
    reorder_run(ctx, &a->to[li], a->user[li], a->mem);
}

/* Point the output a->mem at p when the primitive can write there directly (p's layout is the
 * primitive's and no accumulation), else at arena scratch. */
static void arg_out(bl_ctx *ctx, onednn_arg *a, bl_real *p, int layout, int acc)
{
    const int direct = layout_index(layout) == a->native && !acc;
    ONEDNN_CHECK(dnnl_memory_set_data_handle(a->mem, direct ? (void *)p : bl_scratch(ctx, a->bytes)));
}

/* After the primitive: p = or += the output (a no-op when it was written in place). */
static void arg_out_finish(bl_ctx *ctx, onednn_arg *a, bl_real *p, int layout, int acc)
{
    const int li = layout_index(layout);
    if (li == a->native && !acc) return;
    if (li == a->native) { /* same layout: a flat add (oneDNN's sum reorder between equal
                              blocked layouts is its slow generic one, `simple:any`) */
        const float *src;
        ONEDNN_CHECK(dnnl_memory_get_data_handle(a->mem, (void **)&src));
        const int64_t n = (int64_t)(a->bytes / sizeof(float));
#pragma omp parallel for schedule(static) if (n > 32768)
        for (int64_t i = 0; i < n; i++) p[i] += src[i];
        return;
    }
    onednn_prim *r = acc ? &a->back_acc[li] : &a->back[li];
    if (!r->prim) reorder_make(r, &a->md, &a->user_md[li], acc);
    ONEDNN_CHECK(dnnl_memory_set_data_handle(a->user[li], p));
    reorder_run(ctx, r, a->mem, a->user[li]);
}

/* ---- the cache ---- */

static void onednn_conv_free(onednn_conv *c)
{
    prim_free(&c->fwd);
    prim_free(&c->bwd_d);
    prim_free(&c->bwd_w);
    onednn_arg *args[] = {&c->f_src, &c->f_wei, &c->f_dst, &c->d_ddst, &c->d_wei,
                          &c->d_dsrc, &c->w_src, &c->w_ddst, &c->w_dwei};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) arg_free(args[i]);
    if (c->eval_made) {
        prim_free(&c->eval);
        prim_free(&c->eval_silu);
        arg_free(&c->e_src);
        arg_free(&c->e_wei);
        arg_free(&c->e_dst);
        dnnl_memory_destroy(c->e_bias);
    }
    if (c->bias) dnnl_memory_destroy(c->bias);
    if (c->dbias) dnnl_memory_destroy(c->dbias);
    free(c);
}

static void onednn_shutdown(void)
{
    for (int i = 0; i < onednn_n; i++) onednn_conv_free(onednn_cache[i]);
    free(onednn_cache);
    onednn_cache = NULL;
    onednn_n = onednn_cap = 0;
    if (onednn_stream) dnnl_stream_destroy(onednn_stream);
    if (onednn_engine) dnnl_engine_destroy(onednn_engine);
    onednn_stream = NULL;
    onednn_engine = NULL;
}

static void onednn_init(void)
{
    if (onednn_engine) return;
    ONEDNN_CHECK(dnnl_engine_create(&onednn_engine, dnnl_cpu, 0));
    ONEDNN_CHECK(dnnl_stream_create(&onednn_stream, onednn_engine, dnnl_stream_default_flags));
    atexit(onednn_shutdown);
}

/* Winograd where the measured policy says it pays (docs/conv.md): 3x3 stride 1 with channel
 * counts that are multiples of 16 (full SIMD blocks; measured 1.5-2.5x faster than direct on
 * the encoder's 128 @40, 256 @20 and 256 @10 layers). */
static int onednn_want_winograd(const bl_conv_geom *g)
{
    if (bl_conv_onednn_get_winograd() == BL_CONV_WINO_OFF) return 0;
    const int shape_ok = g->kh == 3 && g->kw == 3 && g->stride == 1;
    if (bl_conv_onednn_get_winograd() == BL_CONV_WINO_ALL) return shape_ok;
    return shape_ok && g->C % 16 == 0 && g->M % 16 == 0;
}

/* Forward, backward-data and backward-weights descriptors with algorithm alg; 0 when oneDNN
 * has no implementation (Winograd on this CPU or shape), pds then untouched. */
static int onednn_conv_pds(const bl_conv_geom *g, int has_bias, dnnl_alg_kind_t alg,
                           dnnl_primitive_desc_t pd[3])
{
    const dnnl_dims_t sd = {g->B, g->C, g->H, g->W}, wd = {g->M, g->C, g->kh, g->kw},
                      dd = {g->B, g->M, g->Ho, g->Wo}, bd = {g->M}, str = {g->stride, g->stride},
                      pad = {g->pad_h, g->pad_w};
    dnnl_memory_desc_t smd, wmd, dmd, bmd;
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, dnnl_format_tag_any));
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dnnl_f32, dnnl_format_tag_any));
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, dnnl_format_tag_any));
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a));
    /* symmetric padding: oneDNN checks (H - kh + 2 pad) / stride + 1 == Ho with the same
     * integer division as ours, so pad_r = pad is consistent even when the last row is cut */
    dnnl_convolution_desc_t fd, dd_, wd_;
    ONEDNN_CHECK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &smd, &wmd,
                                                    has_bias ? &bmd : NULL, &dmd, str, pad, pad));
    ONEDNN_CHECK(dnnl_convolution_backward_data_desc_init(&dd_, alg, &smd, &wmd, &dmd, str, pad, pad));
    ONEDNN_CHECK(dnnl_convolution_backward_weights_desc_init(&wd_, alg, &smd, &wmd,
                                                             has_bias ? &bmd : NULL, &dmd, str, pad, pad));
    dnnl_primitive_attr_t attr = attr_user_scratchpad(0);
    int ok = dnnl_primitive_desc_create(&pd[0], &fd, attr, onednn_engine, NULL) == dnnl_success;
    if (ok && dnnl_primitive_desc_create(&pd[1], &dd_, attr, onednn_engine, pd[0]) != dnnl_success) {
        dnnl_primitive_desc_destroy(pd[0]);
        ok = 0;
    }
    if (ok && dnnl_primitive_desc_create(&pd[2], &wd_, attr, onednn_engine, pd[0]) != dnnl_success) {
        dnnl_primitive_desc_destroy(pd[0]);
        dnnl_primitive_desc_destroy(pd[1]);
        ok = 0;
    }
    dnnl_primitive_attr_destroy(attr);
    return ok;
}

static onednn_conv *onednn_conv_make(const onednn_key *key)
{
    const bl_conv_geom *g = &key->g;
    onednn_conv *c = calloc(1, sizeof *c);
    BL_ASSERT(c, "oneDNN conv engine: out of memory");
    c->key = *key;
    dnnl_primitive_desc_t pd[3];
    c->winograd = onednn_want_winograd(g) && onednn_conv_pds(g, (int)key->has_bias,
                                                              dnnl_convolution_winograd, pd);
    if (!c->winograd && !onednn_conv_pds(g, (int)key->has_bias, dnnl_convolution_direct, pd))
        bl_abort(__FILE__, __LINE__,
                 "oneDNN has no convolution for x (%lld, %lld, %lld, %lld), w (%lld, %lld, %lld, "
                 "%lld), stride %lld, pad %lld",
                 (long long)g->B, (long long)g->C, (long long)g->H, (long long)g->W,
                 (long long)g->M, (long long)g->C, (long long)g->kh, (long long)g->kw,
                 (long long)g->stride, (long long)g->pad_h);
    const dnnl_dims_t sd = {g->B, g->C, g->H, g->W}, wd = {g->M, g->C, g->kh, g->kw},
                      dd = {g->B, g->M, g->Ho, g->Wo}, bd = {g->M};
    dnnl_memory_desc_t b_plain;
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&b_plain, 1, bd, dnnl_f32, dnnl_a));
    arg_init(&c->f_src, pd[0], dnnl_query_src_md, sd, 0);
    arg_init(&c->f_wei, pd[0], dnnl_query_weights_md, wd, 1);
    arg_init(&c->f_dst, pd[0], dnnl_query_dst_md, dd, 0);
    arg_init(&c->d_ddst, pd[1], dnnl_query_diff_dst_md, dd, 0);
    arg_init(&c->d_wei, pd[1], dnnl_query_weights_md, wd, 1);
    arg_init(&c->d_dsrc, pd[1], dnnl_query_diff_src_md, sd, 0);
    arg_init(&c->w_src, pd[2], dnnl_query_src_md, sd, 0);
    arg_init(&c->w_ddst, pd[2], dnnl_query_diff_dst_md, dd, 0);
    arg_init(&c->w_dwei, pd[2], dnnl_query_diff_weights_md, wd, 1);
    c->out_layout = c->f_dst.native > 0 && g->M % layout_of_index(c->f_dst.native) == 0
                        ? layout_of_index(c->f_dst.native)
                        : BL_LAYOUT_PLAIN;
    if (key->has_bias) {
        ONEDNN_CHECK(dnnl_memory_create(&c->bias, &b_plain, onednn_engine, DNNL_MEMORY_NONE));
        ONEDNN_CHECK(dnnl_memory_create(&c->dbias, &b_plain, onednn_engine, DNNL_MEMORY_NONE));
    }
    prim_make(&c->fwd, pd[0], c->impl[0], sizeof c->impl[0]);
    prim_make(&c->bwd_d, pd[1], c->impl[1], sizeof c->impl[1]);
    prim_make(&c->bwd_w, pd[2], c->impl[2], sizeof c->impl[2]);
    c->wino5 = bl_conv_onednn_get_winograd() != BL_CONV_WINO_OFF &&
               bl_wino5_applies(g, c->out_layout, c->out_layout);
    if (c->wino5) { /* backward weights with a bias stays on oneDNN (onednn_wino5) */
        char bw[24];
        snprintf(bw, sizeof bw, "wino5:%s", bl_wino5_isa_name());
        snprintf(c->describe, sizeof c->describe, "%s | %s | %s (winograd)", bw, bw,
                 key->has_bias ? c->impl[2] : bw);
    } else
        snprintf(c->describe, sizeof c->describe, "%s | %s | %s%s", c->impl[0], c->impl[1],
                 c->impl[2], c->winograd ? " (winograd)" : "");
    return c;
}

static onednn_conv *onednn_get(const bl_conv_geom *g, int has_bias)
{
    onednn_init();
    onednn_key key;
    memset(&key, 0, sizeof key);
    key.g = *g;
    key.has_bias = has_bias != 0;
    key.threads = omp_get_max_threads();
    key.wino_mode = bl_conv_onednn_get_winograd();
    for (int i = 0; i < onednn_n; i++)
        if (!memcmp(&onednn_cache[i]->key, &key, sizeof key)) return onednn_cache[i];
    if (onednn_n == onednn_cap) {
        const int cap = onednn_cap ? 2 * onednn_cap : 32;
        onednn_conv **p = realloc(onednn_cache, (size_t)cap * sizeof *p);
        BL_ASSERT(p, "oneDNN conv engine: out of memory");
        onednn_cache = p;
        onednn_cap = cap;
    }
    return onednn_cache[onednn_n++] = onednn_conv_make(&key);
}

const char *bl_conv_onednn_describe(const bl_conv_geom *g, int has_bias, int *winograd)
{
    onednn_conv *c = onednn_get(g, has_bias);
    if (winograd) *winograd = c->winograd;
    return c->describe;
}

/* ---- the ops ---- */

/* 1 when the 5x5 Winograd (autograd/conv_wino5.h) computes c's products with activations in
 * these layouts (a policy that allows it, a shape in its scope and blocked layouts); its
 * backward weights also needs the convolution to have no bias. */
static int onednn_wino5(const onednn_conv *c, int x_layout, int y_layout)
{
    return c->wino5 && bl_wino5_applies(&c->key.g, x_layout, y_layout);
}

int bl_conv_onednn_out_layout(const bl_conv_geom *g, int has_bias)
{
    return onednn_get(g, has_bias)->out_layout;
}

void bl_conv_onednn_forward(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *x, int x_layout,
                            const bl_real *w, const bl_real *bias, bl_real *y, int y_layout)
{
    onednn_conv *c = onednn_get(g, bias != NULL);
    if (onednn_wino5(c, x_layout, y_layout)) {
        bl_wino5_forward(ctx, g, x, x_layout, w, bias, y, y_layout, BL_WINO5_STORE);
        return;
    }
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    arg_in(ctx, &c->f_src, x, x_layout);
    arg_in(ctx, &c->f_wei, w, BL_LAYOUT_PLAIN);
    arg_out(ctx, &c->f_dst, y, y_layout, 0);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, c->f_src.mem}, {DNNL_ARG_WEIGHTS, c->f_wei.mem},
                               {DNNL_ARG_DST, c->f_dst.mem}};
    int n = 3;
    if (bias) {
        ONEDNN_CHECK(dnnl_memory_set_data_handle(c->bias, (void *)bias));
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, c->bias};
    }
    prim_run(ctx, &c->fwd, n, args);
    arg_out_finish(ctx, &c->f_dst, y, y_layout, 0);
    bl_arena_release(arena, mark);
}

/* The eval primitive of c: a forward convolution with a bias, with src and dst in the training
 * forward's layouts (so the layouts between layers are the same in both modes), the training
 * algorithm when it accepts a SiLU post-op, else the training algorithm without the post-op
 * (SiLU then runs as a separate in-place eltwise primitive), else direct with the post-op. */
/* Its prop kind is forward_training although nothing is recorded: oneDNN 2.6's
 * forward_inference kernels (with the post-op) gave results that differed in the last bit with
 * the batch size, so a predict split over processes differed from one process; the
 * forward_training kernels give the same bits for every batch size (tests/tools/test_mpi_cli.sh). */
static void onednn_eval_make(onednn_conv *c)
{
    const bl_conv_geom *g = &c->key.g;
    const dnnl_dims_t wd = {g->M, g->C, g->kh, g->kw}, bd = {g->M}, str = {g->stride, g->stride},
                      pad = {g->pad_h, g->pad_w};
    dnnl_memory_desc_t wmd, bmd;
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dnnl_f32, dnnl_format_tag_any));
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a));
    const struct { dnnl_alg_kind_t alg; int post; } tries[3] = {
        {c->winograd ? dnnl_convolution_winograd : dnnl_convolution_direct, 1},
        {c->winograd ? dnnl_convolution_winograd : dnnl_convolution_direct, 0},
        {dnnl_convolution_direct, 1}};
    dnnl_primitive_desc_t pd = NULL;
    for (int t = 0; t < 3 && !pd; t++) {
        dnnl_convolution_desc_t fd;
        ONEDNN_CHECK(dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, tries[t].alg,
                                                        &c->f_src.md, &wmd, &bmd, &c->f_dst.md,
                                                        str, pad, pad));
        dnnl_primitive_attr_t attr = attr_user_scratchpad(0);
        if (tries[t].post) {
            dnnl_post_ops_t po;
            ONEDNN_CHECK(dnnl_post_ops_create(&po));
            ONEDNN_CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_swish, 1.0f, 0.0f));
            ONEDNN_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
            dnnl_post_ops_destroy(po);
        }
        if (dnnl_primitive_desc_create(&pd, &fd, attr, onednn_engine, NULL) != dnnl_success) pd = NULL;
        else c->eval_post = tries[t].post;
        dnnl_primitive_attr_destroy(attr);
    }
    BL_ASSERT(pd, "oneDNN: no inference convolution for the cached shape (%lld, %lld, %lld, %lld) "
              "-> %lld channels", (long long)g->B, (long long)g->C, (long long)g->H,
              (long long)g->W, (long long)g->M);
    const dnnl_dims_t sd = {g->B, g->C, g->H, g->W}, dd = {g->B, g->M, g->Ho, g->Wo};
    arg_init(&c->e_src, pd, dnnl_query_src_md, sd, 0);
    arg_init(&c->e_wei, pd, dnnl_query_weights_md, wd, 1);
    arg_init(&c->e_dst, pd, dnnl_query_dst_md, dd, 0);
    ONEDNN_CHECK(dnnl_memory_create(&c->e_bias, &bmd, onednn_engine, DNNL_MEMORY_NONE));
    prim_make(&c->eval, pd, NULL, 0);
    if (!c->eval_post) {
        dnnl_eltwise_desc_t ed;
        ONEDNN_CHECK(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, dnnl_eltwise_swish,
                                                    &c->e_dst.md, 1.0f, 0.0f));
        dnnl_primitive_attr_t attr = attr_user_scratchpad(0);
        dnnl_primitive_desc_t epd;
        ONEDNN_CHECK(dnnl_primitive_desc_create(&epd, &ed, attr, onednn_engine, NULL));
        dnnl_primitive_attr_destroy(attr);
        prim_make(&c->eval_silu, epd, NULL, 0);
    }
    c->eval_made = 1;
}

void bl_conv_onednn_forward_silu(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *x,
                                 int x_layout, const bl_real *w, const bl_real *bias, bl_real *y,
                                 int y_layout)
{
    onednn_conv *c = onednn_get(g, 0);
    if (onednn_wino5(c, x_layout, y_layout)) {
        bl_wino5_forward(ctx, g, x, x_layout, w, bias, y, y_layout, BL_WINO5_SILU);
        return;
    }
    if (!c->eval_made) onednn_eval_make(c);
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    arg_in(ctx, &c->e_src, x, x_layout);
    arg_in(ctx, &c->e_wei, w, BL_LAYOUT_PLAIN);
    arg_out(ctx, &c->e_dst, y, y_layout, 0);
    ONEDNN_CHECK(dnnl_memory_set_data_handle(c->e_bias, (void *)bias));
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, c->e_src.mem}, {DNNL_ARG_WEIGHTS, c->e_wei.mem},
                               {DNNL_ARG_DST, c->e_dst.mem}, {DNNL_ARG_BIAS, c->e_bias}};
    prim_run(ctx, &c->eval, 4, args);
    if (!c->eval_post) {
        dnnl_exec_arg_t eargs[3] = {{DNNL_ARG_SRC, c->e_dst.mem}, {DNNL_ARG_DST, c->e_dst.mem}};
        prim_run(ctx, &c->eval_silu, 2, eargs);
    }
    arg_out_finish(ctx, &c->e_dst, y, y_layout, 0);
    bl_arena_release(arena, mark);
}

void bl_conv_onednn_backward(bl_ctx *ctx, const bl_conv_geom *g, int has_bias, const bl_real *x,
                             int x_layout, const bl_real *w, const bl_real *dy, int dy_layout,
                             bl_real *dw, bl_real *db, bl_real *dx, int dx_acc)
{
    onednn_conv *c = onednn_get(g, has_bias);
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int want_w = dw || (has_bias && db);
    const int wino5 = onednn_wino5(c, x_layout, dy_layout), dx_wino5 = dx && wino5;
    if (dx_wino5) {
        bl_wino5_backward_data(ctx, g, dy, dy_layout, w, dx, x_layout, dx_acc);
    } else if (dx) {
        arg_in(ctx, &c->d_ddst, dy, dy_layout);
        /* what follows is released before backward weights runs: at most two activation-sized
         * copies live at a time (dy's and dx's, then dy's and x's) */
        const size_t mark_d = bl_arena_used(arena);
        arg_in(ctx, &c->d_wei, w, BL_LAYOUT_PLAIN);
        arg_out(ctx, &c->d_dsrc, dx, x_layout, dx_acc);
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, c->d_ddst.mem},
                                   {DNNL_ARG_WEIGHTS, c->d_wei.mem},
                                   {DNNL_ARG_DIFF_SRC, c->d_dsrc.mem}};
        prim_run(ctx, &c->bwd_d, 3, args);
        arg_out_finish(ctx, &c->d_dsrc, dx, x_layout, dx_acc);
        bl_arena_release(arena, mark_d);
    }
    if (want_w && dw && !has_bias && wino5) {
        bl_wino5_backward_weights(ctx, g, x, x_layout, dy, dy_layout, dw);
    } else if (want_w) {
        /* dy in the layout backward weights wants: the copy made for backward data when the
         * layouts agree */
        if (dx && !dx_wino5 && layout_index(dy_layout) != c->d_ddst.native &&
            dnnl_memory_desc_equal(&c->d_ddst.md, &c->w_ddst.md)) {
            void *h;
            ONEDNN_CHECK(dnnl_memory_get_data_handle(c->d_ddst.mem, &h));
            ONEDNN_CHECK(dnnl_memory_set_data_handle(c->w_ddst.mem, h));
        } else {
            arg_in(ctx, &c->w_ddst, dy, dy_layout);
        }
        arg_in(ctx, &c->w_src, x, x_layout);
        arg_out(ctx, &c->w_dwei, NULL, BL_LAYOUT_PLAIN, 1);
        dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, c->w_src.mem}, {DNNL_ARG_DIFF_DST, c->w_ddst.mem},
                                   {DNNL_ARG_DIFF_WEIGHTS, c->w_dwei.mem}};
        int n = 3;
        bl_real *dbias = NULL;
        if (has_bias) {
            dbias = bl_scratch(ctx, (size_t)g->M * sizeof *dbias);
            ONEDNN_CHECK(dnnl_memory_set_data_handle(c->dbias, dbias));
            args[n++] = (dnnl_exec_arg_t){DNNL_ARG_DIFF_BIAS, c->dbias};
        }
        prim_run(ctx, &c->bwd_w, n, args);
        if (dw) arg_out_finish(ctx, &c->w_dwei, dw, BL_LAYOUT_PLAIN, 1);
        if (db)
            for (int64_t m = 0; m < g->M; m++) db[m] += dbias[m];
    }
    bl_arena_release(arena, mark);
}

#else

/* ISO C forbids an empty translation unit */
typedef int bl_conv_onednn_unused;

#endif
