#include "lib/tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the element type of this build (lib/tensor.h: BL_REAL_SYMBOL) */
const int BL_REAL_SYMBOL = (int)sizeof(bl_real);

int64_t bl_shape_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

void bl_tensor_set_shape(bl_tensor *t, int ndim, const int64_t *shape)
{
    BL_ASSERT(ndim >= 0 && ndim <= BL_MAX_DIMS, "tensor: %d dims requested, at most %d supported",
              ndim, BL_MAX_DIMS);
    t->ndim = ndim;
    for (int i = 0; i < BL_MAX_DIMS; i++) {
        t->shape[i] = i < ndim ? shape[i] : 1;
        BL_ASSERT(t->shape[i] >= 0, "tensor: negative size %lld in dim %d", (long long)t->shape[i], i);
    }
    t->numel = bl_shape_numel(ndim, shape);
}

int bl_tensor_same_shape(const bl_tensor *a, const bl_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *bl_shape_str(const bl_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    k += snprintf(buf + k, n - k, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
    return buf;
}

bl_tensor *bl_tensor_alloc(const char *name, int ndim, const int64_t *shape, int requires_grad)
{
    bl_tensor *t = bl_calloc(1, sizeof *t);
    bl_tensor_set_shape(t, ndim, shape);
    t->data = bl_calloc((size_t)t->numel, sizeof(bl_real));
    if (requires_grad) t->grad = bl_calloc((size_t)t->numel, sizeof(bl_real));
    t->requires_grad = requires_grad;
    t->persistent = 1;
    t->name = name ? bl_strdup(name) : NULL;
    return t;
}

bl_tensor *bl_tensor_push(bl_arena *arena, int ndim, const int64_t *shape)
{
    bl_tensor *t = bl_arena_push_zero(arena, sizeof *t);
    bl_tensor_set_shape(t, ndim, shape);
    t->data = bl_arena_push(arena, (size_t)t->numel * sizeof(bl_real));
    return t;
}

void bl_tensor_free(bl_tensor *t)
{
    if (!t) return;
    BL_ASSERT(t->persistent, "bl_tensor_free: tensor is per-step (arena) memory; reset its ctx instead");
    free(t->data);
    free(t->grad);
    free((char *)t->name);
    free(t);
}

void bl_tensor_fill(bl_tensor *t, bl_real value)
{
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
}

void bl_tensor_copy(bl_tensor *dst, const bl_tensor *src)
{
    char sa[96], sb[96];
    BL_ASSERT(dst->numel == src->numel, "bl_tensor_copy: %s vs %s", bl_shape_str(dst, sa, 96),
              bl_shape_str(src, sb, 96));
    memmove(dst->data, src->data, (size_t)src->numel * sizeof(bl_real));
}

void bl_tensor_zero_grad(bl_tensor *t)
{
    if (t->grad) memset(t->grad, 0, (size_t)t->numel * sizeof(bl_real));
    t->has_grad = 0;
}

int64_t bl_tensor_offset(const bl_tensor *t, int n, const int64_t *idx)
{
    int64_t off = 0;
    for (int i = 0; i < t->ndim; i++) {
        int64_t k = i < n ? idx[i] : 0;
        BL_ASSERT(k >= 0 && k < t->shape[i], "tensor index %lld out of range for dim %d of size %lld",
                  (long long)k, i, (long long)t->shape[i]);
        off = off * t->shape[i] + k;
    }
    return off;
}

void bl_tensor_print(FILE *f, const char *label, const bl_tensor *t)
{
    char s[96];
    fprintf(f, "%s %s:", label ? label : (t->name ? t->name : "tensor"), bl_shape_str(t, s, 96));
    int64_t n = t->numel < 16 ? t->numel : 16;
    for (int64_t i = 0; i < n; i++) fprintf(f, " %.6g", (double)t->data[i]);
    fprintf(f, t->numel > n ? " ...\n" : "\n");
}

int bl_tensor_all_finite(const bl_tensor *t)
{
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(t->data[i])) return 0;
    return 1;
}
