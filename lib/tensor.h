/* Tensors: contiguous, row-major, up to 5 dims, PyTorch's layout (NCHW, NCDHW).
 *
 * The element type bl_real is float, or double when the library is built with the meson
 * option `real=double` (-DBL_REAL_DOUBLE): the gradient checks run on that build.
 *
 * Two lifetimes (docs/architecture.md, Memory): persistent tensors (parameters, gradients, optimiser state,
 * running statistics) are made with bl_tensor_alloc and freed with bl_tensor_free; per-step
 * tensors live in an arena (bl_tensor_push; autograd/tape.h's bl_new pushes onto the ctx's
 * arena) and die when the arena is reset. */
#ifndef BL_TENSOR_H
#define BL_TENSOR_H

#include <stdint.h>
#include <stdio.h>

#include "lib/arena.h"
#include "lib/error.h"

#ifdef BL_REAL_DOUBLE
typedef double bl_real;
#define BL_REAL_NAME "double"
#define BL_REAL_SYMBOL bl_real_is_double_rebuild_with_the_library_s_BL_REAL_DOUBLE_setting
#else
typedef float bl_real;
#define BL_REAL_NAME "float"
#define BL_REAL_SYMBOL bl_real_is_float_rebuild_with_the_library_s_BL_REAL_DOUBLE_setting
#endif

/* Every library build defines the one symbol of its element type (lib/tensor.c) and every
 * translation unit that includes this header references the symbol of the type it was
 * compiled with. A program compiled for float but linked with a double library (or the
 * reverse) thus fails to link, or to load, naming the symbol, instead of reading doubles as
 * floats. */
extern const int BL_REAL_SYMBOL;
__attribute__((used, unused)) static const int *const bl_real_check_ = &BL_REAL_SYMBOL;

#define BL_MAX_DIMS 5

typedef struct bl_tensor {
    bl_real *data;               /* numel elements, row-major */
    bl_real *grad;               /* d loss / d data, same shape; NULL until a gradient flows */
    int64_t shape[BL_MAX_DIMS];  /* unused trailing entries are 1 */
    int ndim;                    /* 0 (scalar) .. 5 */
    int64_t numel;
    int requires_grad;           /* gradients are accumulated into `grad` by bl_backward */
    int has_grad;                /* persistent tensors: a backward pass reached it since the last
                                    zero_grad (torch: .grad is not None); Adam skips it when 0 */
    int persistent;              /* data/grad are malloc'ed and owned (bl_tensor_free) */
    const char *name;            /* PyTorch state_dict name for parameters and buffers, else NULL */
    int layout;                  /* BL_LAYOUT_PLAIN (row-major), or a channel block size b
                                    (8, 16): x (B, C, ...) stored as (B, C/b, S, b) with S the
                                    product of dims 2.. (oneDNN's nChw{b}c), C a multiple of b;
                                    grad has the same layout. Only the oneDNN convolution
                                    produces it and only layout-aware ops accept it
                                    (docs/conv.md, Layouts) */
} bl_tensor;

#define BL_LAYOUT_PLAIN 0

/* Shapes are passed as (ndim, const int64_t *shape); BL_SHAPE(2, 3) makes the array inline. */
#define BL_SHAPE(...) ((const int64_t[]){__VA_ARGS__})

int64_t bl_shape_numel(int ndim, const int64_t *shape);
/* Fill t's shape fields (ndim, shape, numel); asserts 0 <= ndim <= 5 and non-negative sizes. */
void bl_tensor_set_shape(bl_tensor *t, int ndim, const int64_t *shape);
int bl_tensor_same_shape(const bl_tensor *a, const bl_tensor *b);
/* "(4, 64, 80, 80)" into buf (>= 96 bytes); returns buf. */
char *bl_shape_str(const bl_tensor *t, char *buf, size_t n);

/* Persistent tensor, zero-filled; `name` is copied (may be NULL). grad is allocated
 * (zeroed) when requires_grad. */
bl_tensor *bl_tensor_alloc(const char *name, int ndim, const int64_t *shape, int requires_grad);
void bl_tensor_free(bl_tensor *t);
/* Per-step tensor in `arena`, data uninitialised, no gradient; gone at the arena's reset. */
bl_tensor *bl_tensor_push(bl_arena *arena, int ndim, const int64_t *shape);

void bl_tensor_fill(bl_tensor *t, bl_real value);
void bl_tensor_copy(bl_tensor *dst, const bl_tensor *src);  /* same numel */
/* zero the gradient and clear has_grad */
void bl_tensor_zero_grad(bl_tensor *t);
/* Row-major index of (i0, i1, ...) for the first `n` dims (remaining indices 0). */
int64_t bl_tensor_offset(const bl_tensor *t, int n, const int64_t *idx);
void bl_tensor_print(FILE *f, const char *label, const bl_tensor *t);
/* 1 if every element is finite */
int bl_tensor_all_finite(const bl_tensor *t);

/* Programmer-error assertion for ops: aborts naming the op, both shapes and file:line. */
#define BL_ASSERT_SAME_SHAPE(op, a, b)                                                         \
    do {                                                                                       \
        if (!bl_tensor_same_shape((a), (b))) {                                                 \
            char bl_sa_[96], bl_sb_[96];                                                       \
            bl_abort(__FILE__, __LINE__, "%s: shape mismatch %s vs %s", (op),                  \
                     bl_shape_str((a), bl_sa_, 96), bl_shape_str((b), bl_sb_, 96));           \
        }                                                                                      \
    } while (0)

#endif
