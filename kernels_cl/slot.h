/* slot.h -- a resident coordinate's entries: its dot product with a vector, and an update.
 *
 * What it computes: slot s holds its entries at val[o .. o + n) (o = offs[s]); sparse slots
 * (SPARSE=1) hold n = lens[s] (row index, value) pairs, dense ones n = dim values in row order.
 *   slot_dot:  (next: the slot the caller visits after this one, for PREFETCH; dense only)
 *              sum over t = t0, t0 + dt, ... < n of val[o + t] * w_j, j the entry's row, where
 *              w_j = grad f(v)_j (model.h, datafit_grad) for the primal models when GRAD is 1
 *              (the pass kernels keep v, not w), and v_j itself otherwise;
 *   slot_axpy: v_j += d * val[o + t] for every entry (one work-item owns v: no atomics).
 * How it is used: included by the kernel files after model.h; not a kernel itself.
 * NumPy equivalent: rows, x = store.coordinate(s); x @ (grad(v[rows]) if GRAD else v[rows]);
 *   v[rows] += d * x.
 *
 * Dense slots read and update VW contiguous entries at a time (VW in 2, 4, 8, 16; 1 = scalar
 * loops): a work-item walking a whole slot (serial, bucketed, gap kernels) otherwise runs one
 * strict-order scalar sum, which the compiler may not reassociate into SIMD lanes. On PoCL
 * (AVX2), with the prefetches below, a pass over a resident dense 4000 x 8000 float32 set went
 * from 3.1 GB/s to 15-17 GB/s (README, "Speed"). The sums are then taken in another order:
 * equal to the scalar loop's to rounding.
 */
#ifndef DUHL_SLOT_H
#define DUHL_SLOT_H

#include "model.h"

/* VW: entries per vector access of a dense slot; default one 256-bit vector (8 floats or 4
 * doubles), the AVX2 width: a wider vector passed between functions changes the x86 ABI. */
#ifndef VW
#if USE_DOUBLE
#define VW 4
#else
#define VW 8
#endif
#endif
#if VW == 2 || VW == 4 || VW == 8 || VW == 16
#define SLOT_VEC 1
#define SLOT_CAT_(a, b) a##b
#define SLOT_CAT(a, b) SLOT_CAT_(a, b)
typedef SLOT_CAT(REAL_T, VW) realv;
/* Slots start wherever the previous one ended, so vector accesses are unaligned. On a CPU
 * (Clang's x86-64 or AArch64 target: PoCL) vloadn/vstoren are out-of-line calls, a loop's
 * whole cost, so an under-aligned vector type makes them plain unaligned loads and stores
 * (Clang honours alignment lowered by a typedef). Elsewhere (GPUs, FPGAs, the Oclgrind
 * simulator's SPIR target) the builtins. */
/* HOST_CPU (set by the package for a CPU device other than Oclgrind, duhl_cl.kernels
 * device_defines): Intel's CPU runtime compiles for SPIR64, where __x86_64__ is not defined,
 * yet its Clang honours the typedef as well: a pass over a resident dense 4000 x 8000 float32
 * set went from 9-13 GB/s (vload8, no prefetch) to 19 GB/s on the 2-core test VM. */
#ifndef HOST_CPU
#define HOST_CPU 0
#endif
#if defined(__clang__) && (defined(__x86_64__) || defined(__aarch64__) || HOST_CPU)
#define SLOT_CPU 1
typedef realv realv_u __attribute__((aligned(sizeof(real))));
#define VLOAD(i, p) (*(const __global realv_u *)(p))
#define VSTORE(x, i, p) (*(__global realv_u *)(p) = (x))
#else
#define SLOT_CPU 0
#define VLOAD SLOT_CAT(vload, VW)
#define VSTORE SLOT_CAT(vstore, VW)
#endif

inline real vsum(const realv *pa)
{
    const realv a = *pa;
#if !SLOT_CPU
    /* Oclgrind's uninitialised-value check crashed on the halving shuffles below. */
    real lanes[VW];
    VSTORE(a, 0, lanes);
    real s = 0;
    for (int i = 0; i < VW; ++i)
        s += lanes[i];
    return s;
#else
#if VW == 16
    const SLOT_CAT(REAL_T, 8) a8 = a.lo + a.hi;
#elif VW == 8
    const SLOT_CAT(REAL_T, 8) a8 = a;
#endif
#if VW >= 8
    const SLOT_CAT(REAL_T, 4) a4 = a8.lo + a8.hi;
#elif VW == 4
    const SLOT_CAT(REAL_T, 4) a4 = a;
#endif
#if VW >= 4
    const SLOT_CAT(REAL_T, 2) a2 = a4.lo + a4.hi;
#else
    const SLOT_CAT(REAL_T, 2) a2 = a;
#endif
    return a2.x + a2.y;
#endif
}
#elif VW == 1
#define SLOT_VEC 0
#define SLOT_CPU 0
#else
#error "VW must be 1, 2, 4, 8 or 16"
#endif

/* PREFETCH (0|1): while one dense slot is summed, ask for the next slot's lines. The visit
 * order is a shuffle, so every slot starts a fresh stream the hardware prefetcher has yet to
 * learn; on PoCL a pass over a resident dense 4000 x 8000 float32 set in shuffled order ran
 * at 8-10 GB/s against 18-20 GB/s in storage order. OpenCL's prefetch() is a no-op on PoCL,
 * Clang's __builtin_prefetch is not; CPU targets get it by default. */
#ifndef PREFETCH
#define PREFETCH SLOT_CPU
#endif
#if PREFETCH
#define SLOT_PREFETCH(p) __builtin_prefetch(p, 0, 1)
#else
#define SLOT_PREFETCH(p) ((void)(p))
#endif

inline int slot_len(__global const int *lens, const int s, const int dim)
{
#if SPARSE
    (void)dim;
    return lens[s];
#else
    (void)lens;
    (void)s;
    return dim;
#endif
}

inline int slot_row(__global const int *idx, const ulong o, const int t)
{
#if SPARSE
    return idx[o + t];
#else
    (void)idx;
    (void)o;
    return t;
#endif
}

inline real slot_dot(__global const real *val, __global const int *idx, const ulong o,
                     const int n, const int t0, const int dt, __global const real *v,
                     __global const real *ylab, const real inv_m, const int grad,
                     __global const real *next)
{
    (void)next;
    real u = 0;
    int t0v = t0;
#if SLOT_VEC && !SPARSE
    /* The logistic gradient's exp on vectors crashed PoCL 3.0 (segmentation fault in the
     * pass): that model sums its gradient terms in the scalar loop. */
#if MODEL == MODEL_LOGISTIC_L1
    const int vec = dt == 1 && !grad;
#else
    const int vec = dt == 1;
#endif
    if (vec) {
        /* Two accumulators: consecutive vector adds do not wait on each other. */
        realv acc0 = (realv)(0), acc1 = (realv)(0);
        __global const real *x = val + o;
        int t = t0;
        for (; t + 2 * VW <= n; t += 2 * VW) {
            SLOT_PREFETCH(next + t);
#if PRIMAL && WEIGHTED
            /* the squared loss's gradient, weighted: ylab holds the rows' weights */
            const realv v0 = VLOAD(0, v + t), v1 = VLOAD(0, v + t + VW);
            acc0 += VLOAD(0, x + t) * (grad ? v0 * VLOAD(0, ylab + t) * inv_m : v0);
            acc1 += VLOAD(0, x + t + VW) * (grad ? v1 * VLOAD(0, ylab + t + VW) * inv_m : v1);
#elif PRIMAL
            const realv v0 = VLOAD(0, v + t), v1 = VLOAD(0, v + t + VW);
            acc0 += VLOAD(0, x + t) * (grad ? v0 * inv_m : v0);
            acc1 += VLOAD(0, x + t + VW) * (grad ? v1 * inv_m : v1);
#else
            acc0 += VLOAD(0, x + t) * VLOAD(0, v + t);
            acc1 += VLOAD(0, x + t + VW) * VLOAD(0, v + t + VW);
#endif
        }
        acc0 += acc1;
        u = vsum(&acc0);
        t0v = t;
    }
#endif
    for (int t = t0v; t < n; t += dt) {
        const int j = slot_row(idx, o, t);
#if PRIMAL
        u += val[o + t] * (grad ? datafit_grad(v[j], ylab[j], inv_m) : v[j]);
#else
        (void)ylab;
        (void)inv_m;
        (void)grad;
        u += val[o + t] * v[j];
#endif
    }
    return u;
}

inline void slot_axpy(__global const real *val, __global const int *idx, const ulong o,
                      const int n, const real d, __global real *v)
{
    int t = 0;
#if SLOT_VEC && !SPARSE
    const realv dv = (realv)(d);
    for (; t + VW <= n; t += VW)
        VSTORE(VLOAD(0, v + t) + dv * VLOAD(0, val + o + t), 0, v + t);
#endif
    for (; t < n; ++t)
        v[slot_row(idx, o, t)] += d * val[o + t];
}

#endif /* DUHL_SLOT_H */
