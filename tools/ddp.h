/* Data-parallel training over the processes of tools/dist.h (docs/scaling.md).
 *
 * Every process holds the whole model and trains on its slice of the global batch; after
 * backward, bl_ddp_after_backward (the trainer's after_backward hook) replaces each gradient
 * by its mean over the processes (in-place MPI all-reduces of all gradients packed into one
 * buffer, in buckets of `bucket` elements) and gives every process rank 0's buffers (BatchNorm
 * running statistics, as PyTorch's DDP broadcasts buffers), so Adam then does the same update
 * everywhere. With sync_batchnorm, BatchNorm takes its training statistics over the global
 * batch (bl_batchnorm_set_reducer).
 *
 * Overlap (bl_ddp_overlap, off by default): a backward hook on the trainer's ctx notes when a
 * parameter's gradient is final (after the earliest node of the tape that uses it has run its
 * backward) and starts a bucket's non-blocking all-reduce as soon as all of its parameters are
 * final, while backward goes on; bl_ddp_after_backward then starts what is left and waits.
 * Buckets start in a fixed order (the last one first: the last layers' gradients are final
 * first), the same on every process whatever the order in which gradients become final, so
 * the processes always issue the same collectives in the same order. */
#ifndef BL_TOOLS_DDP_H
#define BL_TOOLS_DDP_H

#include "autograd/params.h"
#include "autograd/tape.h"
#include "experiment/settings.h" /* BL_DDP_BUCKET_MB */
#include "lib/error.h"
#include "tools/dist.h"


typedef struct bl_ddp {
    bl_params *params;       /* not owned */
    bl_real *grads, *bufs;   /* packed trainable gradients / non-trainable tensors */
    int64_t n_grads, n_bufs;
    int64_t bucket;          /* elements per all-reduce message (set before the first step) */
    double comm_seconds;     /* time in bl_ddp_after_backward's gradient all-reduce (with overlap:
                              * the part not hidden behind backward), summed */
    int64_t n_reduces;
    /* overlap (bl_ddp_overlap) */
    int overlap;
    int n_buckets, next;     /* buckets start in descending order; `next` starts next */
    int64_t *offset;         /* per tensor: offset in grads, -1 for buffers */
    int *order;              /* tensor indices sorted by address (lookup of node inputs) */
    const bl_node **final_node; /* per tensor: the earliest node of this step's tape using it */
    unsigned char *ready;    /* per tensor: gradient final and copied into grads */
    int *pending;            /* per bucket: overlapping parameters not ready yet */
    bl_dist_req **req;       /* per bucket: the all-reduce in flight, or NULL */
    int scanned;             /* this step's tape has been scanned */
    int64_t early;           /* buckets started during backward (before after_backward), summed */
} bl_ddp;

/* NULL when there is one process (nothing to do). sync_batchnorm: install the BatchNorm
 * reducer (removed by bl_ddp_free). The bucket is BL_DDP_BUCKET_MB. */
bl_ddp *bl_ddp_alloc(bl_params *params, int sync_batchnorm);
void bl_ddp_free(bl_ddp *d);
/* Start the buckets during backward: installs the backward hook on ctx (the trainer's; d may be
 * NULL: nothing). bl_ddp_free does not remove it: free the ctx first or reset the hook. */
void bl_ddp_overlap(bl_ddp *d, bl_ctx *ctx);
/* The trainer hook: gradients := mean over processes; buffers := rank 0's. */
void bl_ddp_after_backward(void *ddp, bl_params *params);
/* FNV-1a hash of every tensor's bytes (parameters and buffers), in registration order. */
uint64_t bl_params_checksum(const bl_params *p);
/* BL_ERR_RANGE naming the step and this rank when the parameters differ between processes
 * (a collective: every process must call it at the same step). */
bl_status bl_ddp_check(const bl_ddp *d, int64_t step);

#endif
