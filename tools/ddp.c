#include "tools/ddp.h"

#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#include "autograd/ops.h"

static void bl_ddp_bn_reduce(void *user, double *buf, int64_t n)
{
    (void)user;
    bl_dist_sum_double(buf, n);
}

bl_ddp *bl_ddp_alloc(bl_params *params, int sync_batchnorm)
{
    if (bl_dist_size() <= 1) return NULL;
    bl_ddp *d = bl_calloc(1, sizeof *d);
    d->params = params;
    d->bucket = (int64_t)(BL_DDP_BUCKET_MB * 1e6 / sizeof(bl_real));
    for (int i = 0; i < params->n; i++) {
        if (params->t[i]->requires_grad)
            d->n_grads += params->t[i]->numel;
        else
            d->n_bufs += params->t[i]->numel;
    }
    d->grads = bl_malloc((size_t)(d->n_grads > 0 ? d->n_grads : 1) * sizeof(bl_real));
    d->bufs = bl_malloc((size_t)(d->n_bufs > 0 ? d->n_bufs : 1) * sizeof(bl_real));
    if (sync_batchnorm) bl_batchnorm_set_reducer(bl_ddp_bn_reduce, NULL, bl_dist_rank() == 0);
    return d;
}

void bl_ddp_free(bl_ddp *d)
{
    if (!d) return;
    bl_batchnorm_set_reducer(NULL, NULL, 0);
    for (int k = 0; k < d->n_buckets; k++) bl_dist_wait(d->req[k]);
    free(d->grads);
    free(d->bufs);
    free(d->offset);
    free(d->order);
    free(d->final_node);
    free(d->ready);
    free(d->pending);
    free(d->req);
    free(d);
}

static double bl_ddp_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const bl_params *bl_ddp_sort_params;

static int bl_ddp_cmp_addr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)bl_ddp_sort_params->t[*(const int *)a];
    uintptr_t y = (uintptr_t)bl_ddp_sort_params->t[*(const int *)b];
    return x < y ? -1 : x > y;
}

/* index of tensor t among the parameters, or -1 */
static int bl_ddp_find(const bl_ddp *d, const bl_tensor *t)
{
    int lo = 0, hi = d->params->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const bl_tensor *m = d->params->t[d->order[mid]];
        if (m == t) return d->order[mid];
        if ((uintptr_t)m < (uintptr_t)t)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* buckets [b0, b1] that parameter i's values overlap */
static void bl_ddp_span(const bl_ddp *d, int i, int *b0, int *b1)
{
    *b0 = (int)(d->offset[i] / d->bucket);
    *b1 = (int)((d->offset[i] + d->params->t[i]->numel - 1) / d->bucket);
}

/* every parameter not ready, every bucket waiting for all of them */
static void bl_ddp_step_reset(bl_ddp *d)
{
    memset(d->ready, 0, (size_t)d->params->n);
    memset(d->pending, 0, (size_t)d->n_buckets * sizeof *d->pending);
    for (int i = 0; i < d->params->n; i++) {
        if (d->offset[i] < 0 || d->params->t[i]->numel == 0) continue;
        int b0, b1;
        bl_ddp_span(d, i, &b0, &b1);
        for (int k = b0; k <= b1; k++) d->pending[k]++;
    }
    d->next = d->n_buckets - 1;
    d->scanned = 0;
}

/* parameter i's gradient is final: into the packed buffer; start the buckets that are complete,
 * in descending order only */
static void bl_ddp_ready(bl_ddp *d, int i)
{
    const bl_tensor *t = d->params->t[i];
    d->ready[i] = 1;
    if (t->numel == 0) return;
    memcpy(d->grads + d->offset[i], t->grad, (size_t)t->numel * sizeof(bl_real));
    int b0, b1;
    bl_ddp_span(d, i, &b0, &b1);
    for (int k = b0; k <= b1; k++) d->pending[k]--;
    while (d->next >= 0 && d->pending[d->next] == 0) {
        const int64_t lo = (int64_t)d->next * d->bucket;
        const int64_t n = d->n_grads - lo < d->bucket ? d->n_grads - lo : d->bucket;
        d->req[d->next] = bl_dist_isum_real(d->grads + lo, n);
        d->next--;
    }
}

/* the backward hook: after `node`, the parameters whose earliest use it is are final */
static void bl_ddp_node_done(void *user, const bl_node *node)
{
    bl_ddp *d = user;
    if (!d->scanned) { /* the first node of the walk: the tape is whole, find each earliest use */
        memset(d->final_node, 0, (size_t)d->params->n * sizeof *d->final_node);
        for (const bl_node *n = node; n; n = n->prev)
            for (int j = 0; j < n->n_in; j++) {
                int i = n->in[j] && n->in[j]->persistent ? bl_ddp_find(d, n->in[j]) : -1;
                if (i >= 0) d->final_node[i] = n;
            }
        d->scanned = 1;
    }
    for (int j = 0; j < node->n_in; j++) {
        int i = node->in[j] && node->in[j]->persistent ? bl_ddp_find(d, node->in[j]) : -1;
        if (i >= 0 && d->offset[i] >= 0 && !d->ready[i] && d->final_node[i] == node) bl_ddp_ready(d, i);
    }
    for (int k = d->n_buckets - 1; k > d->next; k--) /* let MPI advance what is in flight */
        if (d->req[k]) bl_dist_test(d->req[k]);
}

void bl_ddp_overlap(bl_ddp *d, bl_ctx *ctx)
{
    if (!d) return;
    const bl_params *p = d->params;
    d->overlap = 1;
    d->n_buckets = d->n_grads > 0 ? (int)((d->n_grads + d->bucket - 1) / d->bucket) : 0;
    d->offset = bl_malloc((size_t)p->n * sizeof *d->offset);
    d->order = bl_malloc((size_t)p->n * sizeof *d->order);
    d->final_node = bl_calloc((size_t)p->n, sizeof *d->final_node);
    d->ready = bl_malloc((size_t)p->n);
    d->pending = bl_malloc((size_t)(d->n_buckets + 1) * sizeof *d->pending);
    d->req = bl_calloc((size_t)(d->n_buckets + 1), sizeof *d->req);
    for (int64_t i = 0, o = 0; i < p->n; i++) {
        d->offset[i] = p->t[i]->requires_grad ? o : -1;
        if (p->t[i]->requires_grad) o += p->t[i]->numel;
        d->order[i] = (int)i;
    }
    bl_ddp_sort_params = p;
    qsort(d->order, (size_t)p->n, sizeof *d->order, bl_ddp_cmp_addr);
    bl_ddp_step_reset(d);
    bl_ctx_set_backward_hook(ctx, bl_ddp_node_done, d);
}

void bl_ddp_after_backward(void *ddp, bl_params *params)
{
    bl_ddp *d = ddp;
    if (!d) return;
    BL_ASSERT(params == d->params, "bl_ddp_after_backward: parameters differ from bl_ddp_alloc's");
    const double t0 = bl_ddp_clock();
    int64_t o = 0, ob = 0;
    if (d->overlap) d->early += d->n_buckets - 1 - d->next;
    for (int i = 0; i < params->n; i++) {
        const bl_tensor *t = params->t[i];
        if (!t->requires_grad) {
            memcpy(d->bufs + ob, t->data, (size_t)t->numel * sizeof(bl_real));
            ob += t->numel;
        } else if (d->overlap) {
            if (!d->ready[i]) bl_ddp_ready(d, i); /* not reached by the walk: zero or unchanged */
        } else {
            memcpy(d->grads + o, t->grad, (size_t)t->numel * sizeof(bl_real));
            o += t->numel;
        }
    }
    if (d->overlap) {
        for (int k = d->n_buckets - 1; k >= 0; k--) {
            bl_dist_wait(d->req[k]);
            d->req[k] = NULL;
        }
        bl_ddp_step_reset(d);
    } else {
        bl_dist_sum_real(d->grads, d->n_grads, d->bucket);
    }
    d->comm_seconds += bl_ddp_clock() - t0;
    d->n_reduces++;
    bl_dist_bcast_real(d->bufs, d->n_bufs);
    const bl_real inv = (bl_real)(1.0 / (double)bl_dist_size());
    o = ob = 0;
    for (int i = 0; i < params->n; i++) {
        bl_tensor *t = params->t[i];
        if (t->requires_grad) {
            for (int64_t k = 0; k < t->numel; k++) t->grad[k] = d->grads[o + k] * inv;
            o += t->numel;
        } else {
            memcpy(t->data, d->bufs + ob, (size_t)t->numel * sizeof(bl_real));
            ob += t->numel;
        }
    }
}

uint64_t bl_params_checksum(const bl_params *p)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (int i = 0; i < p->n; i++) {
        const unsigned char *b = (const unsigned char *)p->t[i]->data;
        for (size_t k = 0; k < (size_t)p->t[i]->numel * sizeof(bl_real); k++)
            h = (h ^ b[k]) * UINT64_C(1099511628211);
    }
    return h;
}

bl_status bl_ddp_check(const bl_ddp *d, int64_t step)
{
    if (!d) return BL_OK;
    uint64_t h = bl_params_checksum(d->params);
    if (bl_dist_same_u64(h)) return BL_OK;
    return bl_error(BL_ERR_RANGE,
                    "data-parallel training: after step %lld the parameters of rank %d (checksum %016llx) "
                    "differ from another rank's; the ranks no longer train the same model",
                    (long long)step, bl_dist_rank(), (unsigned long long)h);
}
