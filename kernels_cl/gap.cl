/* gap.cl -- per-coordinate duality gaps for a list of coordinates, and the datafit gradient.
 *
 * coord_gap: for k in [list_start, list_start + n_list), slot s = list[k]: u = a_s^T w (primal) or the margin
 *   mu = y_s (x_s^T w + bias w[dim]) (dual), and gap_s (model.h). Writes u_out[k], gap_out[k].
 *   Launch: global size >= n_list (one work-item per coordinate, any local size).
 * datafit_gradient: w[j] = grad f(v)_j for the primal models. Launch: global size >= dim.
 *
 * NumPy equivalent (primal, dense): u = X[:, slots].T @ w;
 *     gap = b*u + l1*|b| + l2/2*b**2 + g*(-u)        (duhl_cl/models/, Model.gaps)
 */
#include "step.h"

__kernel void datafit_gradient(__global const real *v, __global const real *y,
                               __global real *w, const int dim, const real inv_m)
{
    const int j = get_global_id(0);
    if (j < dim)
        w[j] = datafit_grad(v[j], y[j], inv_m);
}

__kernel void coord_gap(__global const real *val, __global const int *idx,
                        __global const ulong *offs, __global const int *lens,
                        __global const int *list, const int list_start, const int n_list,
                        __global const real *alpha, __global const real *ylab,
                        __global const real *w, const int dim, const real l1, const real l2,
                        const real bound, const real C, const real bias,
                        __global real *u_out, __global real *gap_out)
{
    const int k = list_start + (int)get_global_id(0);
    if (k >= list_start + n_list)
        return;
    const int s = list[k];
    const ulong o = offs[s];
    __global const real *next = val + offs[list[k + 1 < list_start + n_list ? k + 1 : k]];
    /* w is already the gradient here (datafit_gradient ran first): a plain dot product. */
    const real u = slot_dot(val, idx, o, slot_len(lens, s, dim), 0, 1, w, ylab, (real)0, 0, next);
#if PRIMAL
    u_out[k] = u;
    gap_out[k] = primal_gap(alpha[s], u, l1, l2, bound);
#else
    /* The margin and the box as the pass kernels take them (step.h). */
    const real mu = coord_margin(u, coord_label(ylab, s), w, dim, bias);
    u_out[k] = mu;
    gap_out[k] = dual_gap(alpha[s], mu, coord_C(ylab, s, C));
#endif
}
