/* cd_pass.cl -- passes of coordinate descent over a list of resident coordinates.
 *
 * What it computes: n_passes passes; in each, for k in [order_start, order_start + n_order),
 * coordinate s = order[k] (a slot of the device's working-set storage): u = a_s^T w(v), the
 * model's step alpha[s] -> alpha_new, and v += (alpha_new - alpha[s]) * a_s. Exact sequential
 * coordinate descent ("serial" variant). With seed != 0, each pass first shuffles its list
 * in place (Fisher-Yates driven by a 32-bit xorshift started at seed), so that a round's
 * passes are one launch: on PoCL a launch costs about 0.2 ms, the whole of a pass over a few
 * hundred sparse rows. With seed 0 every pass takes the list as given.
 * Shrinking (SHRINK=1, the default; hinge and squared-hinge duals): from the second pass of
 * a launch on, a sample at a bound whose gradient points out of the box by more than the
 * previous pass's largest violation is left out of the launch's later passes (liblinear's
 * shrinking; its list entry is stored as ~s, and the host re-uploads the list before the next
 * use). Dense 200000 x 1000 hinge SVM at a 10% budget, 8 passes a launch, tol 1e-5: device
 * time 2.15 s without, 1.73-1.89 s with (one run each).
 * Launch: global size 1, local size 1 (one work-item walks the list; FPGA single-work-item
 * pipelines and small CPUs; on PoCL a private loop is the fast shape).
 *
 * Storage: slot s holds a column (primal) or a row (dual) starting at offs[s] in val (and idx
 * when SPARSE, with lens[s] entries); dense slots hold dim contiguous values. A working-set
 * pool split over several buffers runs one launch per buffer, each over its own slots.
 * ylab: primal, the labels y (length dim, read by the logistic datafit); dual, one label per
 * slot. v: primal, length dim (Xb + b0 - y for the squared loss, Xb + b0 for logistic); dual,
 * the weight vector w of length dim + 1, the last entry for the bias feature (value bias).
 * Scalars: l1, l2 (primal penalty), C (dual models), bias (the bias feature's value),
 * inv_m = 1/m; no l1 bound B, which only gap.cl's gaps use. The step and v's update are
 * step.h's coord_step and coord_axpy, shared with the other pass variants.
 *
 * NumPy equivalent (primal, squared loss, dense):
 *     for order in duhl_cl.duhl.working_set.device_orders(order, n_passes, seed):
 *         for s in order:
 *             u = X[:, s] @ (v / m)
 *             b_new = soft(q[s] * b[s] - u, l1) / (q[s] + l2);  v += (b_new - b[s]) * X[:, s]
 * (duhl_cl/testing.py: reference_pass, and reference_passes with the shrinking, are the exact
 * references used in the tests.)
 */
#include "step.h"

#ifndef SHRINK
#define SHRINK 1
#endif
#define SHRINKING (SHRINK && !PRIMAL && DUAL_SHRINK)

/* A list entry's slot: shrunk entries are stored as ~slot. */
inline int slot_of(const int e) { return e < 0 ? ~e : e; }

inline uint xorshift32(uint x)
{
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

__kernel void cd_pass(__global const real *val, __global const int *idx,
                      __global const ulong *offs, __global const int *lens,
                      __global int *order, const int order_start, const int n_order,
                      __global real *alpha,
                      __global const real *sqnorm, __global const real *ylab, __global real *v,
                      const int dim, const real l1, const real l2, const real C,
                      const real bias, const real inv_m, const int n_passes, const uint seed)
{
    if (get_global_id(0) != 0)
        return;
    const int end = order_start + n_order;
    uint state = seed;
#if SHRINKING
    real pg_hi = INFINITY, pg_lo = -INFINITY; /* the first pass shrinks nothing */
#endif
    for (int pass = 0; pass < n_passes; ++pass) {
        if (seed != 0) {
            for (int i = n_order - 1; i > 0; --i) {
                state = xorshift32(state);
                const int j = (int)(state % (uint)(i + 1));
                const int t = order[order_start + i];
                order[order_start + i] = order[order_start + j];
                order[order_start + j] = t;
            }
        }
#if SHRINKING
        real pg_max = -INFINITY, pg_min = INFINITY;
#endif
        for (int k = order_start; k < end; ++k) {
            const int s = order[k];
#if SHRINKING
            if (s < 0)
                continue;
#endif
            const ulong o = offs[s];
            const int n = slot_len(lens, s, dim);
            __global const real *next = val + offs[slot_of(order[k + 2 < end ? k + 2 : k])];
            if (k + 3 < end) {
                /* The slot after next: its descriptors, so that finding its data does not wait. */
                const int s2 = slot_of(order[k + 3]);
                SLOT_PREFETCH(offs + s2);
                SLOT_PREFETCH(alpha + s2);
                SLOT_PREFETCH(sqnorm + s2);
#if !PRIMAL
                SLOT_PREFETCH(ylab + s2);
#endif
            }
            const real u = slot_dot(val, idx, o, n, 0, 1, v, ylab, inv_m, 1, next);
            const real a_old = alpha[s];
            const real yl = coord_label(ylab, s);
            const real Cs = coord_C(ylab, s, C);
            const real mu = coord_margin(u, yl, v, dim, bias);
#if SHRINKING
            real pg;
            if (dual_shrinks(a_old, dual_grad(a_old, mu, Cs), Cs, pg_hi, pg_lo, &pg)) {
                order[k] = ~s;
                continue;
            }
            pg_max = pg > pg_max ? pg : pg_max;
            pg_min = pg < pg_min ? pg : pg_min;
#endif
            real a_new;
            const real d = coord_step(a_old, mu, sqnorm[s], yl, (real)1, l1, l2, Cs, inv_m, &a_new);
            if (a_new == a_old)
                continue;
            alpha[s] = a_new;
            coord_axpy(val, idx, o, n, dim, d, bias, v);
        }
#if SHRINKING
        /* liblinear: a pass without violations of one sign shrinks nothing at that bound. */
        pg_hi = pg_max > (real)0 ? pg_max : INFINITY;
        pg_lo = pg_min < (real)0 ? pg_min : -INFINITY;
#endif
    }
}
