#include "tools/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

struct bl_dist_req {
    MPI_Request r;
    int done;
};

bl_dist_req *bl_dist_isum_real(bl_real *buf, int64_t n)
{
    BL_ASSERT(n >= 0 && n <= BL_MPI_MAX_COUNT, "bl_dist_isum_real: %lld values in one message", (long long)n);
    bl_dist_req *q = bl_calloc(1, sizeof *q);
    if (bl_dist_n > 1)
        MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, BL_MPI_REAL, MPI_SUM, MPI_COMM_WORLD, &q->r);
    else
        q->done = 1;
    return q;
}

int bl_dist_test(bl_dist_req *q)
{
    if (!q->done) MPI_Test(&q->r, &q->done, MPI_STATUS_IGNORE);
    return q->done;
}

void bl_dist_wait(bl_dist_req *q)
{
    if (!q) return;
    if (!q->done) MPI_Wait(&q->r, MPI_STATUS_IGNORE);
    free(q);
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

/* counts and displacements of the ranks' shares of n items of `item` values */
static void bl_dist_counts(int64_t n, int64_t item, int *counts, int *displs)
{
    const int64_t N = bl_dist_n, q = n / N, extra = n % N;
    for (int64_t r = 0, lo = 0; r < N; r++) {
        const int64_t cnt = (q + (r < extra)) * item;
        BL_ASSERT(lo + cnt <= BL_MPI_MAX_COUNT, "bl_dist_gather: %lld values exceed an MPI count",
                  (long long)(lo + cnt));
        counts[r] = (int)cnt;
        displs[r] = (int)lo;
        lo += cnt;
    }
}

static void bl_dist_gather(const void *mine, void *all, int64_t n, int64_t item, MPI_Datatype type)
{
    int *counts = bl_malloc((size_t)bl_dist_n * sizeof *counts), *displs = bl_malloc((size_t)bl_dist_n * sizeof *displs);
    bl_dist_counts(n, item, counts, displs);
    MPI_Gatherv(mine, counts[bl_dist_r], type, all, counts, displs, type, 0, MPI_COMM_WORLD);
    free(counts);
    free(displs);
}

void bl_dist_gather_real(const bl_real *mine, bl_real *all, int64_t n, int64_t item)
{
    if (bl_dist_n > 1)
        bl_dist_gather(mine, all, n, item, BL_MPI_REAL);
    else if (all != mine)
        memcpy(all, mine, (size_t)(n * item) * sizeof *all);
}

void bl_dist_gather_int32(const int32_t *mine, int32_t *all, int64_t n, int64_t item)
{
    if (bl_dist_n > 1)
        bl_dist_gather(mine, all, n, item, MPI_INT32_T);
    else if (all != mine)
        memcpy(all, mine, (size_t)(n * item) * sizeof *all);
}

void bl_dist_sum_metrics(bl_metrics *m)
{
    if (bl_dist_n <= 1) return;
    int64_t ints[BL_METRICS_STATE_INTS];
    double sums[BL_METRICS_STATE_SUMS];
    bl_metrics_get_state(m, ints, sums);
    bl_dist_sum_int64(ints, BL_METRICS_STATE_INTS);
    bl_dist_sum_double(sums, BL_METRICS_STATE_SUMS);
    bl_metrics_set_state(m, ints, sums);
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
void bl_dist_gather_real(const bl_real *mine, bl_real *all, int64_t n, int64_t item)
{
    if (all != mine) memcpy(all, mine, (size_t)(n * item) * sizeof *all);
}
void bl_dist_gather_int32(const int32_t *mine, int32_t *all, int64_t n, int64_t item)
{
    if (all != mine) memcpy(all, mine, (size_t)(n * item) * sizeof *all);
}
void bl_dist_sum_metrics(bl_metrics *m) { (void)m; }
struct bl_dist_req {
    int done;
};
bl_dist_req *bl_dist_isum_real(bl_real *buf, int64_t n)
{
    (void)buf, (void)n;
    bl_dist_req *q = bl_calloc(1, sizeof *q);
    q->done = 1;
    return q;
}
int bl_dist_test(bl_dist_req *q) { return q->done; }
void bl_dist_wait(bl_dist_req *q) { free(q); }

#endif

void bl_dist_share(int64_t n, int64_t *lo, int64_t *hi)
{
    const int64_t r = bl_dist_rank(), N = bl_dist_size(), q = n / N, extra = n % N;
    *lo = r * q + (r < extra ? r : extra);
    *hi = *lo + q + (r < extra);
}

void bl_dist_keep_share(bl_tensor **t)
{
    if (bl_dist_size() <= 1) return;
    bl_tensor *old = *t;
    int64_t lo, hi, shape[BL_MAX_DIMS];
    bl_dist_share(old->shape[0], &lo, &hi);
    memcpy(shape, old->shape, sizeof shape);
    shape[0] = hi - lo;
    *t = bl_tensor_alloc(old->name, old->ndim, shape, 0);
    const int64_t row = old->shape[0] > 0 ? old->numel / old->shape[0] : 0;
    memcpy((*t)->data, old->data + lo * row, (size_t)((hi - lo) * row) * sizeof(bl_real));
    bl_tensor_free(old);
}

void bl_dist_gather_tile_catalog(bl_tile_catalog **cat, int64_t B)
{
    if (bl_dist_size() <= 1) return;
    int64_t lo, hi;
    bl_dist_share(B, &lo, &hi);
    bl_tile_catalog *part = *cat;
    BL_ASSERT(part ? part->B == hi - lo : hi == lo, "bl_dist_gather_tile_catalog: a part of %lld images for "
              "a share of %lld", (long long)(part ? part->B : 0), (long long)(hi - lo));
    /* rank 0 holds image 0 and so a part (B >= 1): its layout is the reference; a rank without
     * images sends nothing but takes part in every gather */
    const int nf = bl_dist_max_int(part ? part->n_fields : 0);
    bl_tile_catalog *all = NULL;
    if (bl_dist_rank() == 0) {
        BL_ASSERT(part, "bl_dist_gather_tile_catalog: rank 0 has none of the %lld images", (long long)B);
        all = bl_tile_catalog_alloc(B, part->ht, part->wt, part->S, part->tile_slen, part->n_bands);
    }
    bl_dist_gather_int32(part ? part->n_sources : NULL, all ? all->n_sources : NULL, B,
                         part ? part->ht * part->wt : 0);
    for (int f = 0; f < nf; f++) {
        bl_tensor *dst = all ? bl_tile_catalog_add(all, part->fields[f].name) : NULL;
        bl_dist_gather_real(part ? part->fields[f].t->data : NULL, dst ? dst->data : NULL, B,
                            part ? part->fields[f].t->numel / part->B : 0);
    }
    if (all) {
        bl_tile_catalog_free(part);
        *cat = all;
    }
}
