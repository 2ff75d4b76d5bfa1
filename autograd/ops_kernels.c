/* The kernel layer under the op families (ops_internal.h): the broadcasting engine, strided
 * apply, the broadcast-reduction kernel (also the backward of every broadcasting op) and the dim
 * helpers. Every ops_*.c file depends on this one and on nothing beside it, so the op families
 * never include each other.
 *
 * Determinism: long rows are cut into fixed chunks and every sum runs in double over fixed
 * blocks of BL_BLOCK reduced elements whose partial sums are added in block order; neither
 * depends on the thread count. */
#include <math.h>
#include <string.h>

#include "autograd/ops_internal.h"

/* Length of the pieces a long row is cut into for the parallel loop (shape-only, so results do
 * not depend on the number of threads). */
#define BL_CHUNK 4096

/* ------------------------------------------------------------------------------------------ */
/* broadcasting engine */

static void bl_raw_shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    bl_tensor t;
    memset(&t, 0, sizeof t);
    bl_tensor_set_shape(&t, ndim, shape);
    bl_shape_str(&t, buf, n);
}

void bl_bcast_shape(const char *op, int n, const bl_tensor *const *t, int *ndim, int64_t *shape)
{
    int nd = 0;
    int64_t sh[BL_MAX_DIMS];
    for (int k = 0; k < n; k++) {
        BL_ASSERT(t[k], "%s: input %d is NULL", op, k);
        int tn = t[k]->ndim, rn = nd > tn ? nd : tn;
        int64_t res[BL_MAX_DIMS];
        for (int i = 0; i < rn; i++) { /* i counts dims from the right */
            int64_t x = i < nd ? sh[nd - 1 - i] : 1, y = i < tn ? t[k]->shape[tn - 1 - i] : 1;
            if (x == y || y == 1) {
                res[rn - 1 - i] = x;
            } else if (x == 1) {
                res[rn - 1 - i] = y;
            } else {
                char sa[96], sb[96];
                bl_raw_shape_str(nd, sh, sa, sizeof sa);
                bl_abort(__FILE__, __LINE__, "%s: cannot broadcast %s with %s", op, sa,
                         bl_shape_str(t[k], sb, sizeof sb));
            }
        }
        nd = rn;
        memcpy(sh, res, (size_t)rn * sizeof *sh);
    }
    *ndim = nd;
    memcpy(shape, sh, (size_t)nd * sizeof *sh);
}

void bl_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride)
{
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        stride[d] = s;
        s *= shape[d];
    }
}

void bl_bcast_strides(const char *op, const bl_tensor *t, int ndim, const int64_t *shape,
                      int64_t *stride)
{
    int64_t ts[BL_MAX_DIMS];
    int off = ndim - t->ndim;
    if (off < 0) goto fail;
    bl_contiguous_strides(t->ndim, t->shape, ts);
    for (int d = 0; d < ndim; d++) {
        if (d < off) {
            stride[d] = 0;
        } else if (t->shape[d - off] == shape[d]) {
            stride[d] = shape[d] == 1 ? 0 : ts[d - off];
        } else if (t->shape[d - off] == 1) {
            stride[d] = 0;
        } else {
            goto fail;
        }
    }
    return;
fail:;
    char sa[96], sb[96];
    bl_raw_shape_str(ndim, shape, sb, sizeof sb);
    bl_abort(__FILE__, __LINE__, "%s: cannot broadcast %s to %s", op, bl_shape_str(t, sa, sizeof sa),
             sb);
}

int bl_iter_coalesce(int ndim, const int64_t *shape, int n_src, const int64_t (*stride)[BL_MAX_DIMS],
                     int64_t *cshape, int64_t (*cstride)[BL_MAX_DIMS])
{
    /* built innermost first, reversed at the end */
    int64_t sh[BL_MAX_DIMS], st[BL_ITER_MAX_SRC][BL_MAX_DIMS];
    int m = 0;
    for (int d = ndim - 1; d >= 0; d--) {
        if (shape[d] == 1) continue;
        if (m > 0) {
            int merge = 1;
            for (int k = 0; k < n_src; k++)
                if (stride[k][d] != st[k][m - 1] * sh[m - 1]) merge = 0;
            if (merge) {
                sh[m - 1] *= shape[d];
                continue;
            }
        }
        sh[m] = shape[d];
        for (int k = 0; k < n_src; k++) st[k][m] = stride[k][d];
        m++;
    }
    if (m == 0) {
        sh[0] = 1;
        for (int k = 0; k < n_src; k++) st[k][0] = 0;
        m = 1;
    }
    for (int i = 0; i < m; i++) {
        cshape[i] = sh[m - 1 - i];
        for (int k = 0; k < n_src; k++) cstride[k][i] = st[k][m - 1 - i];
    }
    return m;
}

void bl_strided_apply(bl_real *dst, int ndim, const int64_t *shape, int n_src,
                      const bl_real *const *src, const int64_t (*stride)[BL_MAX_DIMS],
                      bl_row_fn *row, const double *param)
{
    BL_ASSERT(n_src >= 1 && n_src <= BL_ITER_MAX_SRC, "bl_strided_apply: %d sources", n_src);
    int64_t numel = bl_shape_numel(ndim, shape);
    if (numel == 0) return;
    int64_t csh[BL_MAX_DIMS], cst[BL_ITER_MAX_SRC][BL_MAX_DIMS];
    int nd = bl_iter_coalesce(ndim, shape, n_src, stride, csh, cst);
    int64_t inner = csh[nd - 1], nrows = numel / inner;
    int64_t nch = (inner + BL_CHUNK - 1) / BL_CHUNK, nwork = nrows * nch;
    int64_t ist[BL_ITER_MAX_SRC];
    for (int k = 0; k < n_src; k++) ist[k] = cst[k][nd - 1];

#pragma omp parallel for if (numel > BL_OMP_MIN) schedule(static)
    for (int64_t w = 0; w < nwork; w++) {
        int64_t r = w / nch, j0 = (w % nch) * BL_CHUNK;
        int64_t len = inner - j0 < BL_CHUNK ? inner - j0 : BL_CHUNK;
        int64_t off[BL_ITER_MAX_SRC] = {0};
        int64_t rem = r;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t i = rem % csh[d];
            rem /= csh[d];
            for (int k = 0; k < n_src; k++) off[k] += i * cst[k][d];
        }
        const bl_real *s[BL_ITER_MAX_SRC];
        for (int k = 0; k < n_src; k++) s[k] = src[k] + off[k] + j0 * ist[k];
        row(dst + r * inner + j0, s, ist, len, param);
    }
}

void bl_bcast_apply(const char *op, bl_real *dst, int ndim, const int64_t *shape, int n_src,
                    const bl_tensor *const *src, bl_row_fn *row, const double *param)
{
    int64_t st[BL_ITER_MAX_SRC][BL_MAX_DIMS];
    const bl_real *data[BL_ITER_MAX_SRC];
    for (int k = 0; k < n_src; k++) {
        bl_bcast_strides(op, src[k], ndim, shape, st[k]);
        data[k] = src[k]->data;
    }
    bl_strided_apply(dst, ndim, shape, n_src, data, (const int64_t(*)[BL_MAX_DIMS])st, row, param);
}

/* row kernels shared between files: STMT uses o[i] and x = the source element at i */

#define BL_ROW1(NAME, STMT)                                                                    \
    void NAME(bl_real *restrict o, const bl_real *const *s, const int64_t *st, int64_t n,    \
              const double *p)                                                                 \
    {                                                                                          \
        const bl_real *restrict A = s[0];                                                      \
        const int64_t sa = st[0];                                                              \
        (void)p;                                                                               \
        if (sa == 1) {                                                                         \
            for (int64_t i = 0; i < n; i++) { const bl_real x = A[i]; STMT; }                 \
        } else if (sa == 0) {                                                                  \
            const bl_real x = A[0];                                                            \
            for (int64_t i = 0; i < n; i++) { STMT; }                                          \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) { const bl_real x = A[i * sa]; STMT; }            \
        }                                                                                      \
    }

BL_ROW1(bl_row_copy, o[i] = x)
BL_ROW1(bl_row_copy_acc, o[i] += x)

bl_tensor bl_ops_grad_view(const bl_tensor *out)
{
    bl_tensor v = *out;
    v.data = out->grad;
    v.grad = NULL;
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* broadcast reduction */

#define BL_BLOCK 8192

/* Offsets of target t (row-major over the kept dims kd[0..nk)) in src and dst. */
static inline void bl_reduce_target(int64_t t, int nk, const int *kd, const int64_t *csh,
                                    const int64_t (*cst)[BL_MAX_DIMS], int64_t *src_off,
                                    int64_t *dst_off)
{
    int64_t s = 0, d = 0;
    for (int q = nk - 1; q >= 0; q--) {
        int64_t i = t % csh[kd[q]];
        t /= csh[kd[q]];
        s += i * cst[0][kd[q]];
        d += i * cst[1][kd[q]];
    }
    *src_off = s;
    *dst_off = d;
}

/* The innermost dim is kept (e.g. sum over dim 1 of (B, C, H, W), or (N, k) -> (k)): rather
 * than walking each target's elements with a large stride, add whole contiguous rows of up to
 * BL_COLUMNS targets into a vector of accumulators, one reduced index at a time. Work items are
 * (outer target, column chunk, block of BL_BLOCK reduced indices); partial sums of the blocks
 * are combined in block order. */
#define BL_COLUMNS 256
#define BL_COLUMNS_MIN 16

static void bl_reduce_columns(bl_ctx *ctx, bl_real *dst, const bl_real *src, int nd,
                              const int64_t *csh, const int64_t (*cst)[BL_MAX_DIMS], int nk,
                              const int *kd, int nr, const int *rd, int64_t T, int64_t R,
                              double scale)
{
    const int64_t L = csh[nd - 1], To = T / L; /* kept dims: (To outer targets, L columns) */
    const int64_t nch = (L + BL_COLUMNS - 1) / BL_COLUMNS, nb = (R + BL_BLOCK - 1) / BL_BLOCK;
    const int64_t nwork = To * nch * nb;
    double *part = nb > 1 ? bl_scratch(ctx, (size_t)nwork * BL_COLUMNS * sizeof(double)) : NULL;
    const int64_t numel = T * R;

#pragma omp parallel for if (numel > BL_OMP_MIN) schedule(static)
    for (int64_t w = 0; w < nwork; w++) {
        const int64_t b = w % nb, tc = w / nb, c = tc % nch, to = tc / nch;
        const int64_t i0 = c * BL_COLUMNS, cw = L - i0 < BL_COLUMNS ? L - i0 : BL_COLUMNS;
        int64_t base, doff;
        bl_reduce_target(to, nk - 1, kd, csh, cst, &base, &doff);
        int64_t r = b * BL_BLOCK, r1 = r + BL_BLOCK < R ? r + BL_BLOCK : R;
        int64_t idx[BL_MAX_DIMS], off = 0, rem = r;
        for (int q = nr - 1; q >= 0; q--) {
            idx[q] = rem % csh[rd[q]];
            rem /= csh[rd[q]];
            off += idx[q] * cst[0][rd[q]];
        }
        double acc[BL_COLUMNS] = {0};
        for (; r < r1; r++) {
            const bl_real *p = src + base + off + i0;
            for (int64_t i = 0; i < cw; i++) acc[i] += p[i];
            off += cst[0][rd[nr - 1]];
            idx[nr - 1]++;
            for (int q = nr - 1; q > 0 && idx[q] == csh[rd[q]]; q--) { /* odometer carry */
                off -= idx[q] * cst[0][rd[q]];
                idx[q] = 0;
                idx[q - 1]++;
                off += cst[0][rd[q - 1]];
            }
        }
        if (nb == 1)
            for (int64_t i = 0; i < cw; i++) dst[doff + i0 + i] += (bl_real)(scale * acc[i]);
        else
            memcpy(part + w * BL_COLUMNS, acc, (size_t)cw * sizeof(double));
    }
    if (nb > 1) {
#pragma omp parallel for if (To * nch > 1 && numel > BL_OMP_MIN) schedule(static)
        for (int64_t tc = 0; tc < To * nch; tc++) {
            const int64_t c = tc % nch, to = tc / nch, i0 = c * BL_COLUMNS;
            const int64_t cw = L - i0 < BL_COLUMNS ? L - i0 : BL_COLUMNS;
            int64_t base, doff;
            bl_reduce_target(to, nk - 1, kd, csh, cst, &base, &doff);
            for (int64_t i = 0; i < cw; i++) {
                double s = 0;
                for (int64_t b = 0; b < nb; b++) s += part[(tc * nb + b) * BL_COLUMNS + i];
                dst[doff + i0 + i] += (bl_real)(scale * s);
            }
        }
    }
}

void bl_reduce_acc(bl_ctx *ctx, bl_real *dst, const bl_tensor *like, const bl_real *src,
                   int ndim, const int64_t *shape, double scale)
{
    int64_t numel = bl_shape_numel(ndim, shape);
    if (numel == 0) return;
    int64_t st[2][BL_MAX_DIMS], csh[BL_MAX_DIMS], cst[2][BL_MAX_DIMS];
    bl_contiguous_strides(ndim, shape, st[0]);
    bl_bcast_strides("bl_reduce_acc", like, ndim, shape, st[1]);
    int nd = bl_iter_coalesce(ndim, shape, 2, (const int64_t(*)[BL_MAX_DIMS])st, csh, cst);

    /* kept dims (dst stride != 0) and reduced dims (dst broadcast along them) */
    int kd[BL_MAX_DIMS], rd[BL_MAX_DIMS], nk = 0, nr = 0;
    int64_t T = 1, R = 1;
    for (int d = 0; d < nd; d++) {
        if (cst[1][d] != 0) {
            kd[nk++] = d;
            T *= csh[d];
        } else if (csh[d] > 1) {
            rd[nr++] = d;
            R *= csh[d];
        }
    }
    if (nr == 0) { /* same layout: nothing to reduce */
#pragma omp parallel for if (numel > BL_OMP_MIN) schedule(static)
        for (int64_t i = 0; i < numel; i++) dst[i] += (bl_real)(scale * src[i]);
        return;
    }

    if (csh[nd - 1] >= BL_COLUMNS_MIN && cst[1][nd - 1] != 0) {
        bl_reduce_columns(ctx, dst, src, nd, csh, (const int64_t(*)[BL_MAX_DIMS])cst, nk, kd, nr,
                          rd, T, R, scale);
        return;
    }

    const int64_t nb = (R + BL_BLOCK - 1) / BL_BLOCK, nwork = T * nb;
    double *part = nb > 1 ? bl_scratch(ctx, (size_t)nwork * sizeof(double)) : NULL;
    const int inner = rd[nr - 1];
    const int64_t rlen = csh[inner], rst = cst[0][inner];

#pragma omp parallel for if (numel > BL_OMP_MIN) schedule(static)
    for (int64_t w = 0; w < nwork; w++) {
        int64_t t = w / nb, b = w % nb, base, doff;
        bl_reduce_target(t, nk, kd, csh, (const int64_t(*)[BL_MAX_DIMS])cst, &base, &doff);
        int64_t r = b * BL_BLOCK, r1 = r + BL_BLOCK < R ? r + BL_BLOCK : R;
        int64_t idx[BL_MAX_DIMS], off = 0, rem = r;
        for (int q = nr - 1; q >= 0; q--) {
            idx[q] = rem % csh[rd[q]];
            rem /= csh[rd[q]];
            off += idx[q] * cst[0][rd[q]];
        }
        double acc = 0;
        while (r < r1) {
            int64_t run = rlen - idx[nr - 1] < r1 - r ? rlen - idx[nr - 1] : r1 - r;
            const bl_real *p = src + base + off;
            if (rst == 1) { /* four independent sums: not latency-bound, still a fixed order */
                double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                int64_t j = 0;
                for (; j + 4 <= run; j += 4) {
                    a0 += p[j];
                    a1 += p[j + 1];
                    a2 += p[j + 2];
                    a3 += p[j + 3];
                }
                for (; j < run; j++) a0 += p[j];
                acc += (a0 + a1) + (a2 + a3);
            } else {
                for (int64_t j = 0; j < run; j++) acc += p[j * rst];
            }
            r += run;
            off += run * rst;
            idx[nr - 1] += run;
            for (int q = nr - 1; q > 0 && idx[q] == csh[rd[q]]; q--) { /* odometer carry */
                off -= idx[q] * cst[0][rd[q]];
                idx[q] = 0;
                idx[q - 1]++;
                off += cst[0][rd[q - 1]];
            }
        }
        if (nb == 1)
            dst[doff] += (bl_real)(scale * acc);
        else
            part[w] = acc;
    }
    if (nb > 1) {
#pragma omp parallel for if (T > 64) schedule(static)
        for (int64_t t = 0; t < T; t++) {
            int64_t base, doff;
            bl_reduce_target(t, nk, kd, csh, (const int64_t(*)[BL_MAX_DIMS])cst, &base, &doff);
            double s = 0;
            for (int64_t b = 0; b < nb; b++) s += part[t * nb + b];
            dst[doff] += (bl_real)(scale * s);
        }
    }
}

void bl_grad_acc(bl_ctx *ctx, bl_tensor *in, const bl_real *contrib, const bl_tensor *out,
                 double scale)
{
    if (!in->requires_grad) return;
    bl_reduce_acc(ctx, bl_grad(ctx, in), in, contrib, out->ndim, out->shape, scale);
}

/* ------------------------------------------------------------------------------------------ */
/* dims */

int bl_ops_dim(const char *op, const bl_tensor *a, int dim)
{
    char s[96];
    int d = dim < 0 ? dim + a->ndim : dim;
    if (d < 0 || d >= a->ndim)
        bl_abort(__FILE__, __LINE__, "%s: dim %d out of range for shape %s", op, dim,
                 bl_shape_str(a, s, sizeof s));
    return d;
}

void bl_ops_split_dims(const bl_tensor *a, int dim, int64_t *outer, int64_t *inner)
{
    *outer = bl_shape_numel(dim, a->shape);
    *inner = bl_shape_numel(a->ndim - dim - 1, a->shape + dim + 1);
}
