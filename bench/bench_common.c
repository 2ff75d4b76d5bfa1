#include "bench/bench_common.h"

#include <cblas.h>
#include <stdlib.h>
#include <time.h>

#include "lib/tensor.h"

#ifdef BL_REAL_DOUBLE
#define BL_BENCH_GEMM cblas_dgemm
#else
#define BL_BENCH_GEMM cblas_sgemm
#endif

double bl_bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double bl_bench_gemm_gflops(int n, int reps)
{
    const size_t nn = (size_t)n * (size_t)n;
    bl_real *a = bl_malloc(nn * sizeof *a), *b = bl_malloc(nn * sizeof *b), *c = bl_malloc(nn * sizeof *c);
    for (size_t i = 0; i < nn; i++) { /* values in [-0.5, 0.5]: no overflow, no denormals */
        a[i] = (bl_real)((double)(i * 7 % 13) / 13 - 0.5);
        b[i] = (bl_real)((double)(i * 5 % 11) / 11 - 0.5);
    }
    double best = 1e30;
    for (int r = 0; r <= reps; r++) { /* run 0 warms up threads and pages */
        double t = bl_bench_now();
        BL_BENCH_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        t = bl_bench_now() - t;
        if (r > 0 && t < best) best = t;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * (double)nn * n / best / 1e9;
}
