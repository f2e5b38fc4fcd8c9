/* slot.h -- a resident coordinate's entries: its dot product with a vector, and an update.
 *
 * What it computes: slot s holds its entries at val[o .. o + n) (o = offs[s]); sparse slots
 * (SPARSE=1) hold n = lens[s] (row index, value) pairs, dense ones n = dim values in row order.
 *   slot_dot:  sum over t = t0, t0 + dt, ... < n of val[o + t] * w_j, j the entry's row, where
 *              w_j = grad f(v)_j (model.h, datafit_grad) for the primal models when GRAD is 1
 *              (the pass kernels keep v, not w), and v_j itself otherwise;
 *   slot_axpy: v_j += d * val[o + t] for every entry (one work-item owns v: no atomics).
 * How it is used: included by the kernel files after model.h; not a kernel itself.
 * NumPy equivalent: rows, x = store.coordinate(s); x @ (grad(v[rows]) if GRAD else v[rows]);
 *   v[rows] += d * x.
 */
#ifndef DUHL_SLOT_H
#define DUHL_SLOT_H

#include "model.h"

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
                     __global const real *ylab, const real inv_m, const int grad)
{
    real u = 0;
    for (int t = t0; t < n; t += dt) {
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
    for (int t = 0; t < n; ++t)
        v[slot_row(idx, o, t)] += d * val[o + t];
}

#endif /* DUHL_SLOT_H */
