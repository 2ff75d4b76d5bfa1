/* Data-parallel training over the processes of tools/dist.h (docs/scaling.md).
 *
 * Every process holds the whole model and trains on its slice of the global batch; after
 * backward, bl_ddp_after_backward (the trainer's after_backward hook) replaces each gradient
 * by its mean over the processes (one in-place MPI all-reduce of all gradients packed into one
 * buffer, sent in buckets) and gives every process rank 0's buffers (BatchNorm running
 * statistics, as PyTorch's DDP broadcasts buffers), so Adam then does the same update
 * everywhere. With sync_batchnorm, BatchNorm takes its training statistics over the global
 * batch (bl_batchnorm_set_reducer). */
#ifndef BL_TOOLS_DDP_H
#define BL_TOOLS_DDP_H

#include "autograd/params.h"
#include "lib/error.h"

typedef struct bl_ddp {
    bl_params *params;       /* not owned */
    bl_real *grads, *bufs;   /* packed trainable gradients / non-trainable tensors */
    int64_t n_grads, n_bufs;
    int64_t bucket;          /* elements per all-reduce message */
    double comm_seconds;     /* time spent in the gradient all-reduce, summed */
    int64_t n_reduces;
} bl_ddp;

/* NULL when there is one process (nothing to do). sync_batchnorm: install the BatchNorm
 * reducer (removed by bl_ddp_free). */
bl_ddp *bl_ddp_alloc(bl_params *params, int sync_batchnorm);
void bl_ddp_free(bl_ddp *d);
/* The trainer hook: gradients := mean over processes; buffers := rank 0's. */
void bl_ddp_after_backward(void *ddp, bl_params *params);
/* FNV-1a hash of every tensor's bytes (parameters and buffers), in registration order. */
uint64_t bl_params_checksum(const bl_params *p);
/* BL_ERR_RANGE naming the step and this rank when the parameters differ between processes
 * (a collective: every process must call it at the same step). */
bl_status bl_ddp_check(const bl_ddp *d, int64_t step);

#endif
