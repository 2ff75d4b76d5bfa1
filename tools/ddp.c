#include "tools/ddp.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/ops.h"
#include "tools/dist.h"

/* 4 Mi elements (16 MB of float32) per message: a few messages for the full encoder */
#define BL_DDP_BUCKET (INT64_C(1) << 22)

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
    d->bucket = BL_DDP_BUCKET;
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
    free(d->grads);
    free(d->bufs);
    free(d);
}

static double bl_ddp_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bl_ddp_after_backward(void *ddp, bl_params *params)
{
    bl_ddp *d = ddp;
    if (!d) return;
    BL_ASSERT(params == d->params, "bl_ddp_after_backward: parameters differ from bl_ddp_alloc's");
    int64_t o = 0, ob = 0;
    for (int i = 0; i < params->n; i++) {
        const bl_tensor *t = params->t[i];
        if (t->requires_grad) {
            memcpy(d->grads + o, t->grad, (size_t)t->numel * sizeof(bl_real));
            o += t->numel;
        } else {
            memcpy(d->bufs + ob, t->data, (size_t)t->numel * sizeof(bl_real));
            ob += t->numel;
        }
    }
    const double t0 = bl_ddp_clock();
    bl_dist_sum_real(d->grads, d->n_grads, d->bucket);
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
