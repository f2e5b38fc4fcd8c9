/* step.h -- one coordinate's step, as every pass variant takes it.
 *
 * What it computes: for slot s with u = a_s^T w(v) (slot.h, slot_dot) and alpha[s] = a_old,
 *   coord_label:  the sample's label y_s (dual); 1 for the primal models, whose ylab holds
 *                 the labels by row and is not read here;
 *   coord_C:      the sample's box C (dual): the model's C, or C w_s with sample weights;
 *   coord_margin: what the model's step sees: u itself (primal), the margin
 *                 mu = y_s (u + bias v[dim]) (dual; v[dim] is the bias feature's weight);
 *   coord_step:   the step a_old -> *a_new (model.h: primal_step, dual_step) with curvature
 *                 q (sqnorm[s], or sigma * sqnorm[s] in the bucketed variant), and returns the
 *                 shared vector's step d = scale (a_new - a_old) (primal) or
 *                 d = scale (a_new - a_old) y_s (dual), scale 1 but in the bucketed variant
 *                 (sigma); the caller then adds d a_s into v (and, dual, d bias into v[dim]);
 *   coord_axpy:   that update for a work-item that owns v (serial and bucketed variants):
 *                 v += d a_s and, dual, v[dim] += d bias. The tpa variant updates v with
 *                 strided atomics in its own kernel.
 * How it is used: included by the pass kernels (cd_pass.cl, cd_pass_bucketed.cl,
 * cd_pass_tpa.cl) after slot.h; not a kernel itself. The shrinking of cd_pass.cl reads the
 * margin between coord_margin and coord_step. Each expression is the one the kernels had
 * inline (scale 1 multiplies exactly), so results are unchanged bit for bit.
 * NumPy equivalent (duhl_cl/models/, Model.step): a_new = model.step(a_old, mu, q);
 *   d = scale * (a_new - a_old) (* y_s, dual); v += d * x_s (v[dim] += d * bias, dual).
 */
#ifndef DUHL_STEP_H
#define DUHL_STEP_H

#include "slot.h"

inline real coord_label(__global const real *ylab, const int s)
{
#if PRIMAL
    (void)ylab;
    (void)s;
    return (real)1;
#else
    return slot_y(ylab[s]);
#endif
}

/* The coordinate's C: the model's, or the sample's C w_s (dual, WEIGHTED). */
inline real coord_C(__global const real *ylab, const int s, const real C)
{
#if PRIMAL
    (void)ylab;
    (void)s;
    return C;
#else
    return slot_C(C, ylab[s]);
#endif
}

inline real coord_margin(const real u, const real yl, __global const real *v, const int dim,
                         const real bias)
{
#if PRIMAL
    (void)yl;
    (void)v;
    (void)dim;
    (void)bias;
    return u;
#else
    return yl * (u + bias * v[dim]);
#endif
}

inline real coord_step(const real a_old, const real mu, const real q, const real yl,
                       const real scale, const real l1, const real l2, const real C,
                       const real inv_m, real *a_new)
{
#if PRIMAL
    (void)yl;
    (void)C;
    *a_new = primal_step(a_old, mu, q, l1, l2, inv_m);
    return scale * (*a_new - a_old);
#else
    (void)l1;
    (void)l2;
    (void)inv_m;
    *a_new = dual_step(a_old, mu, q, C);
    return scale * (*a_new - a_old) * yl;
#endif
}

inline void coord_axpy(__global const real *val, __global const int *idx, const ulong o,
                       const int n, const int dim, const real d, const real bias,
                       __global real *v)
{
    slot_axpy(val, idx, o, n, d, v);
#if PRIMAL
    (void)dim;
    (void)bias;
#else
    v[dim] += d * bias;
#endif
}

#endif /* DUHL_STEP_H */
