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

/* One tensor argument: the op boundary's plain layout and the primitive's layout. */
typedef struct onednn_arg {
    dnnl_memory_desc_t md;  /* the primitive's layout */
    int plain;              /* md is the plain layout: the primitive reads/writes in place */
    size_t bytes;
    dnnl_memory_t user;     /* plain memory (handle set per call) */
    dnnl_memory_t mem;      /* md memory (handle: the plain buffer or arena scratch) */
    onednn_prim to;         /* inputs: plain -> md, when !plain */
    onednn_prim back;       /* outputs: md -> plain, when !plain */
    onednn_prim back_acc;   /* outputs: plain += md */
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
} onednn_conv;

static dnnl_engine_t onednn_engine;
static dnnl_stream_t onednn_stream;
static onednn_conv **onednn_cache;
static int onednn_n, onednn_cap;
static bl_conv_wino onednn_wino = BL_CONV_WINO_AUTO;

void bl_conv_onednn_set_winograd(bl_conv_wino mode) { onednn_wino = mode; }
bl_conv_wino bl_conv_onednn_get_winograd(void) { return onednn_wino; }

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

/* a: argument `what` of pd, whose plain layout is `plain`; output arguments get the reorders
 * back (store and accumulate), inputs the reorder in. */
static void arg_init(onednn_arg *a, const_dnnl_primitive_desc_t pd, dnnl_query_t what,
                     const dnnl_memory_desc_t *plain, int output)
{
    a->md = *dnnl_primitive_desc_query_md(pd, what, 0);
    a->plain = dnnl_memory_desc_equal(&a->md, plain);
    a->bytes = dnnl_memory_desc_get_size(&a->md);
    ONEDNN_CHECK(dnnl_memory_create(&a->user, plain, onednn_engine, DNNL_MEMORY_NONE));
    ONEDNN_CHECK(dnnl_memory_create(&a->mem, &a->md, onednn_engine, DNNL_MEMORY_NONE));
    if (output) {
        if (!a->plain) reorder_make(&a->back, &a->md, plain, 0);
        reorder_make(&a->back_acc, &a->md, plain, 1);
    } else if (!a->plain) {
        reorder_make(&a->to, plain, &a->md, 0);
    }
}

static void arg_free(onednn_arg *a)
{
    if (a->user) dnnl_memory_destroy(a->user);
    if (a->mem) dnnl_memory_destroy(a->mem);
    prim_free(&a->to);
    prim_free(&a->back);
    prim_free(&a->back_acc);
}

/* The input p (plain layout) as the primitive wants it: a->mem points at p itself or at an
 * arena copy in the primitive's layout. */
static void arg_in(bl_ctx *ctx, onednn_arg *a, const bl_real *p)
{
    if (a->plain) {
        ONEDNN_CHECK(dnnl_memory_set_data_handle(a->mem, (void *)p));
        return;
    }
    ONEDNN_CHECK(dnnl_memory_set_data_handle(a->user, (void *)p));
    ONEDNN_CHECK(dnnl_memory_set_data_handle(a->mem, bl_scratch(ctx, a->bytes)));
    reorder_run(ctx, &a->to, a->user, a->mem);
}

/* Point the output a->mem at p when the primitive can write there directly (plain layout and
 * no accumulation), else at arena scratch. */
static void arg_out(bl_ctx *ctx, onednn_arg *a, bl_real *p, int acc)
{
    ONEDNN_CHECK(dnnl_memory_set_data_handle(a->mem, a->plain && !acc ? (void *)p : bl_scratch(ctx, a->bytes)));
}

/* After the primitive: p = or += the output (a no-op when it was written in place). */
static void arg_out_finish(bl_ctx *ctx, onednn_arg *a, bl_real *p, int acc)
{
    if (a->plain && !acc) return;
    ONEDNN_CHECK(dnnl_memory_set_data_handle(a->user, p));
    reorder_run(ctx, acc ? &a->back_acc : &a->back, a->mem, a->user);
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
    if (onednn_wino == BL_CONV_WINO_OFF) return 0;
    const int shape_ok = g->kh == 3 && g->kw == 3 && g->stride == 1;
    if (onednn_wino == BL_CONV_WINO_ALL) return shape_ok;
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
    dnnl_memory_desc_t s_plain, w_plain, d_plain, b_plain;
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&s_plain, 4, sd, dnnl_f32, dnnl_nchw));
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&w_plain, 4, wd, dnnl_f32, dnnl_oihw));
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&d_plain, 4, dd, dnnl_f32, dnnl_nchw));
    ONEDNN_CHECK(dnnl_memory_desc_init_by_tag(&b_plain, 1, bd, dnnl_f32, dnnl_a));
    arg_init(&c->f_src, pd[0], dnnl_query_src_md, &s_plain, 0);
    arg_init(&c->f_wei, pd[0], dnnl_query_weights_md, &w_plain, 0);
    arg_init(&c->f_dst, pd[0], dnnl_query_dst_md, &d_plain, 1);
    arg_init(&c->d_ddst, pd[1], dnnl_query_diff_dst_md, &d_plain, 0);
    arg_init(&c->d_wei, pd[1], dnnl_query_weights_md, &w_plain, 0);
    arg_init(&c->d_dsrc, pd[1], dnnl_query_diff_src_md, &s_plain, 1);
    arg_init(&c->w_src, pd[2], dnnl_query_src_md, &s_plain, 0);
    arg_init(&c->w_ddst, pd[2], dnnl_query_diff_dst_md, &d_plain, 0);
    arg_init(&c->w_dwei, pd[2], dnnl_query_diff_weights_md, &w_plain, 1);
    if (key->has_bias) {
        ONEDNN_CHECK(dnnl_memory_create(&c->bias, &b_plain, onednn_engine, DNNL_MEMORY_NONE));
        ONEDNN_CHECK(dnnl_memory_create(&c->dbias, &b_plain, onednn_engine, DNNL_MEMORY_NONE));
    }
    prim_make(&c->fwd, pd[0], c->impl[0], sizeof c->impl[0]);
    prim_make(&c->bwd_d, pd[1], c->impl[1], sizeof c->impl[1]);
    prim_make(&c->bwd_w, pd[2], c->impl[2], sizeof c->impl[2]);
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
    key.wino_mode = onednn_wino;
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

void bl_conv_onednn_forward(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *x,
                            const bl_real *w, const bl_real *bias, bl_real *y)
{
    onednn_conv *c = onednn_get(g, bias != NULL);
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    arg_in(ctx, &c->f_src, x);
    arg_in(ctx, &c->f_wei, w);
    arg_out(ctx, &c->f_dst, y, 0);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, c->f_src.mem}, {DNNL_ARG_WEIGHTS, c->f_wei.mem},
                               {DNNL_ARG_DST, c->f_dst.mem}};
    int n = 3;
    if (bias) {
        ONEDNN_CHECK(dnnl_memory_set_data_handle(c->bias, (void *)bias));
        args[n++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, c->bias};
    }
    prim_run(ctx, &c->fwd, n, args);
    arg_out_finish(ctx, &c->f_dst, y, 0);
    bl_arena_release(arena, mark);
}

void bl_conv_onednn_backward(bl_ctx *ctx, const bl_conv_geom *g, int has_bias, const bl_real *x,
                             const bl_real *w, const bl_real *dy, bl_real *dw, bl_real *db,
                             bl_real *dx, int dx_acc)
{
    onednn_conv *c = onednn_get(g, has_bias);
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int want_w = dw || (has_bias && db);
    if (dx) {
        arg_in(ctx, &c->d_ddst, dy);
        /* what follows is released before backward weights runs: at most two activation-sized
         * copies live at a time (dy's and dx's, then dy's and x's) */
        const size_t mark_d = bl_arena_used(arena);
        arg_in(ctx, &c->d_wei, w);
        arg_out(ctx, &c->d_dsrc, dx, dx_acc);
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, c->d_ddst.mem},
                                   {DNNL_ARG_WEIGHTS, c->d_wei.mem},
                                   {DNNL_ARG_DIFF_SRC, c->d_dsrc.mem}};
        prim_run(ctx, &c->bwd_d, 3, args);
        arg_out_finish(ctx, &c->d_dsrc, dx, dx_acc);
        bl_arena_release(arena, mark_d);
    }
    if (want_w) {
        /* dy in the layout backward weights wants: the copy made for backward data when the
         * layouts agree */
        if (dx && !c->d_ddst.plain && dnnl_memory_desc_equal(&c->d_ddst.md, &c->w_ddst.md)) {
            void *h;
            ONEDNN_CHECK(dnnl_memory_get_data_handle(c->d_ddst.mem, &h));
            ONEDNN_CHECK(dnnl_memory_set_data_handle(c->w_ddst.mem, h));
        } else {
            arg_in(ctx, &c->w_ddst, dy);
        }
        arg_in(ctx, &c->w_src, x);
        arg_out(ctx, &c->w_dwei, NULL, 1);
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
        if (dw) arg_out_finish(ctx, &c->w_dwei, dw, 1);
        if (db)
            for (int64_t m = 0; m < g->M; m++) db[m] += dbias[m];
    }
    bl_arena_release(arena, mark);
}

#else

/* ISO C forbids an empty translation unit */
typedef int bl_conv_onednn_unused;

#endif
