#include "tools/dist.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef BL_HAVE_MPI
#include <mpi.h>

static int bl_dist_on, bl_dist_r, bl_dist_n = 1;

void bl_dist_init(int *argc, char ***argv)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_SIZE")) return;
    int provided;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &bl_dist_r);
    MPI_Comm_size(MPI_COMM_WORLD, &bl_dist_n);
    bl_dist_on = 1;
    if (bl_dist_r != 0 && !freopen("/dev/null", "w", stdout))
        fprintf(stderr, "bliss: rank %d: cannot silence stdout\n", bl_dist_r);
}

void bl_dist_finalize(void)
{
    if (bl_dist_on) MPI_Finalize();
    bl_dist_on = 0;
}

int bl_dist_rank(void) { return bl_dist_r; }
int bl_dist_size(void) { return bl_dist_n; }
int bl_dist_available(void) { return 1; }

void bl_dist_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
    if (bl_dist_on && bl_dist_n > 1) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

#ifdef BL_REAL_DOUBLE
#define BL_MPI_REAL MPI_DOUBLE
#else
#define BL_MPI_REAL MPI_FLOAT
#endif

/* MPI counts are int: long buffers go in pieces */
#define BL_MPI_MAX_COUNT (1 << 30)

void bl_dist_sum_double(double *buf, int64_t n)
{
    if (bl_dist_n > 1) MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

void bl_dist_sum_int64(int64_t *buf, int64_t n)
{
    if (bl_dist_n > 1) MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
}

void bl_dist_sum_real(bl_real *buf, int64_t n, int64_t bucket)
{
    if (bl_dist_n <= 1 || n <= 0) return;
    if (bucket <= 0 || bucket > BL_MPI_MAX_COUNT) bucket = BL_MPI_MAX_COUNT;
    int64_t nb = (n + bucket - 1) / bucket;
    MPI_Request *req = bl_malloc((size_t)nb * sizeof *req);
    for (int64_t k = 0; k < nb; k++) {
        int64_t lo = k * bucket, cnt = n - lo < bucket ? n - lo : bucket;
        MPI_Iallreduce(MPI_IN_PLACE, buf + lo, (int)cnt, BL_MPI_REAL, MPI_SUM, MPI_COMM_WORLD, &req[k]);
    }
    MPI_Waitall((int)nb, req, MPI_STATUSES_IGNORE);
    free(req);
}

int bl_dist_max_int(int v)
{
    if (bl_dist_n > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return v;
}

int bl_dist_same_u64(uint64_t v)
{
    if (bl_dist_n <= 1) return 1;
    uint64_t mm[2] = {v, ~v}; /* max of v and max of ~v (= ~min v) */
    MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return mm[0] == v && mm[1] == ~v;
}

void bl_dist_bcast_real(bl_real *buf, int64_t n)
{
    for (int64_t lo = 0; bl_dist_n > 1 && lo < n; lo += BL_MPI_MAX_COUNT) {
        int64_t cnt = n - lo < BL_MPI_MAX_COUNT ? n - lo : BL_MPI_MAX_COUNT;
        MPI_Bcast(buf + lo, (int)cnt, BL_MPI_REAL, 0, MPI_COMM_WORLD);
    }
}

void bl_dist_bcast_double(double *buf, int64_t n)
{
    if (bl_dist_n > 1) MPI_Bcast(buf, (int)n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
}

void bl_dist_barrier(void)
{
    if (bl_dist_n > 1) MPI_Barrier(MPI_COMM_WORLD);
}

#else /* one process */

void bl_dist_init(int *argc, char ***argv) { (void)argc, (void)argv; }
void bl_dist_finalize(void) {}
int bl_dist_rank(void) { return 0; }
int bl_dist_size(void) { return 1; }
int bl_dist_available(void) { return 0; }
void bl_dist_abort(int code)
{
    fflush(stdout);
    exit(code);
}
void bl_dist_sum_double(double *buf, int64_t n) { (void)buf, (void)n; }
void bl_dist_sum_int64(int64_t *buf, int64_t n) { (void)buf, (void)n; }
void bl_dist_sum_real(bl_real *buf, int64_t n, int64_t bucket) { (void)buf, (void)n, (void)bucket; }
int bl_dist_max_int(int v) { return v; }
int bl_dist_same_u64(uint64_t v) { (void)v; return 1; }
void bl_dist_bcast_real(bl_real *buf, int64_t n) { (void)buf, (void)n; }
void bl_dist_bcast_double(double *buf, int64_t n) { (void)buf, (void)n; }
void bl_dist_barrier(void) {}

#endif
