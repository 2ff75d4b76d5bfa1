/* Shared by the benchmarks: a monotonic clock and the machine's GEMM throughput, the
 * reference every "% of sgemm" column is measured against. */
#ifndef BL_BENCH_COMMON_H
#define BL_BENCH_COMMON_H

/* seconds, CLOCK_MONOTONIC */
double bl_bench_now(void);
/* GFLOP/s of an n x n x n GEMM of bl_real (sgemm, dgemm in the double build) with all
 * OpenBLAS threads: best of `reps` timed runs after one warm-up run. */
double bl_bench_gemm_gflops(int n, int reps);

#endif
