/* The processes of one job under mpirun (docs/scaling.md): rank, size and the few collective
 * operations the CLI needs. Everything MPI is in tools/dist.c; without MPI (meson -Dmpi=disabled)
 * or when the program was not started by mpirun, there is one process of rank 0 and every
 * collective is the identity, so the callers need no #ifdef.
 *
 * Errors: a collective that fails (a peer died) makes MPI end the job (MPI_ERRORS_ARE_FATAL);
 * bl_dist_abort ends every process of the job after the caller printed its message. */
#ifndef BL_TOOLS_DIST_H
#define BL_TOOLS_DIST_H

#include <stdint.h>

#include "lib/catalog.h"
#include "lib/eval/metrics.h"
#include "lib/tensor.h"

/* MPI_Init when started by mpirun (OMPI_COMM_WORLD_SIZE / PMIX_RANK / PMI_SIZE set), else
 * nothing. Non-zero ranks send stdout to /dev/null (rank 0 alone prints; stderr stays). */
void bl_dist_init(int *argc, char ***argv);
void bl_dist_finalize(void);
int bl_dist_rank(void);
int bl_dist_size(void);
/* 1 when this build can use MPI at all */
int bl_dist_available(void);
/* End every process of the job with `code` (a single process: exit(code)). */
void bl_dist_abort(int code) __attribute__((noreturn));

/* In-place sums over all ranks. */
void bl_dist_sum_double(double *buf, int64_t n);
void bl_dist_sum_int64(int64_t *buf, int64_t n);
/* In-place sum of a bl_real buffer in messages of at most `bucket` elements, all in flight at
 * once (0: one message). */
void bl_dist_sum_real(bl_real *buf, int64_t n, int64_t bucket);
/* A non-blocking in-place sum of buf[0 .. n) (n < 2^30) over all ranks: every rank must start
 * the same sums in the same order. bl_dist_test lets MPI advance it (1 when done);
 * bl_dist_wait completes it and frees the request (NULL: nothing). One process: done at once. */
typedef struct bl_dist_req bl_dist_req;
bl_dist_req *bl_dist_isum_real(bl_real *buf, int64_t n);
int bl_dist_test(bl_dist_req *r);
void bl_dist_wait(bl_dist_req *r);
/* The maximum of `v` over all ranks. */
int bl_dist_max_int(int v);
/* 1 when `v` is the same on every rank. */
int bl_dist_same_u64(uint64_t v);
/* Rank 0's buffer to every rank. */
void bl_dist_bcast_real(bl_real *buf, int64_t n);
void bl_dist_bcast_double(double *buf, int64_t n);
void bl_dist_barrier(void);

/* Work split over the ranks (evaluate, predict). This rank's share [*lo, *hi) of n items:
 * contiguous, in rank order, sizes differing by at most one (the first n mod N ranks take one
 * more; ranks beyond n get none). */
void bl_dist_share(int64_t n, int64_t *lo, int64_t *hi);
/* *t (B, ...) replaced by its rows [lo, hi) of this rank's share of B (possibly none); one
 * process: nothing. */
void bl_dist_keep_share(bl_tensor **t);
/* Every rank sends `mine`, its share (bl_dist_share(n)) of n items of `item` values; rank 0
 * receives all n items into `all`, in rank order (`all` is not used on the other ranks). */
void bl_dist_gather_real(const bl_real *mine, bl_real *all, int64_t n, int64_t item);
void bl_dist_gather_int32(const int32_t *mine, int32_t *all, int64_t n, int64_t item);
/* Rank 0: *cat (this rank's share of B images, NULL when the share is empty) replaced by the
 * catalog of all B images, the ranks' shares in rank order; the fields, geometry and values are
 * those of the parts. The other ranks keep *cat. One process: nothing. */
void bl_dist_gather_tile_catalog(bl_tile_catalog **cat, int64_t B);
/* Metrics accumulated by every rank over its share of the data, summed into every rank's m. */
void bl_dist_sum_metrics(bl_metrics *m);

#endif
