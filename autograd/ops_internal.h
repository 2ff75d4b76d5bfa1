/* Kernels shared by the op families (not installed, not for users of the library).
 *
 * Broadcasting engine. Every elementwise loop is "out[i] = row(src_0[...], src_1[...], ...)"
 * over a contiguous output of shape `shape`, where each source is addressed through its own
 * element strides (0 on a broadcast dim). Before running, dims of size 1 are dropped and
 * adjacent dims that are contiguous for every source are merged ("coalesced"), so:
 *   equal shapes                 -> one dim, all strides 1 (a flat loop)
 *   scalar operand               -> one dim, stride 0 for the scalar
 *   trailing broadcast (H,W)+(W) -> two dims, the inner one contiguous for both
 * and the row kernels specialise on inner strides 1/0, which makes these the fast paths.
 * Long rows are cut into fixed chunks so a flat loop still runs in parallel; the chunking
 * depends only on the shape, never on the thread count, so results are deterministic. */
#ifndef BL_OPS_INTERNAL_H
#define BL_OPS_INTERNAL_H

#include "autograd/tape.h"

/* Loops over fewer elements than this stay serial (thread start-up costs more). */
#define BL_OMP_MIN 32768
#define BL_ITER_MAX_SRC 3

/* One output row of n elements: src[k] points at the row start of source k, stride[k] is its
 * inner element stride, param the op's scalar parameters (may be NULL). */
typedef void bl_row_fn(bl_real *restrict out, const bl_real *const *src, const int64_t *stride,
                       int64_t n, const double *param);

/* Broadcast shape of n tensors (numpy rules, aligned from the right) into (*ndim, shape);
 * aborts "op: cannot broadcast (2, 3) with (4, 3)" naming the op. */
void bl_bcast_shape(const char *op, int n, const bl_tensor *const *t, int *ndim, int64_t *shape);
/* Element strides of t read as a tensor of `shape` (0 on broadcast dims); t must broadcast. */
void bl_bcast_strides(const char *op, const bl_tensor *t, int ndim, const int64_t *shape,
                      int64_t *stride);
/* Drop size-1 dims and merge dims contiguous for every source; returns the number of dims
 * left (>= 1) in cshape/cstride, outermost first. */
int bl_iter_coalesce(int ndim, const int64_t *shape, int n_src, const int64_t (*stride)[BL_MAX_DIMS],
                     int64_t *cshape, int64_t (*cstride)[BL_MAX_DIMS]);
/* Row-major element strides of a contiguous tensor of `shape`. */
void bl_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
/* dst (contiguous, `shape`) = row(sources read through explicit strides). */
void bl_strided_apply(bl_real *dst, int ndim, const int64_t *shape, int n_src,
                      const bl_real *const *src, const int64_t (*stride)[BL_MAX_DIMS],
                      bl_row_fn *row, const double *param);
/* dst (contiguous, `shape`) = row(src tensors broadcast to `shape`). */
void bl_bcast_apply(const char *op, bl_real *dst, int ndim, const int64_t *shape, int n_src,
                    const bl_tensor *const *src, bl_row_fn *row, const double *param);

/* dst (laid out as `like`, which broadcasts to `shape`) += scale * src (contiguous, `shape`)
 * summed over the broadcast dims. Sums run in double over fixed blocks combined in order:
 * deterministic for any thread count. This is both the reduction kernel and the backward of
 * broadcasting. */
void bl_reduce_acc(bl_ctx *ctx, bl_real *dst, const bl_tensor *like, const bl_real *src,
                   int ndim, const int64_t *shape, double scale);
/* grad(in) += scale * reduce(contrib) where contrib has out's shape; no-op unless
 * in->requires_grad. */
void bl_grad_acc(bl_ctx *ctx, bl_tensor *in, const bl_real *contrib, const bl_tensor *out,
                 double scale);

/* dim in [-ndim, ndim) -> [0, ndim); aborts naming op and the shape otherwise. */
int bl_ops_dim(const char *op, const bl_tensor *a, int dim);
/* a viewed as (outer, a.shape[dim], inner) */
void bl_ops_split_dims(const bl_tensor *a, int dim, int64_t *outer, int64_t *inner);
/* A stack tensor header with out's shape whose data is out's gradient (for feeding the
 * broadcasting engine in backward functions). */
bl_tensor bl_ops_grad_view(const bl_tensor *out);

/* Row kernels shared between files. */
bl_row_fn bl_row_copy;      /* out = s0 */
bl_row_fn bl_row_copy_acc;  /* out += s0 */

#endif
