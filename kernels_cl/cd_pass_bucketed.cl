/* cd_pass_bucketed.cl -- one pass of coordinate descent in disjoint buckets, merged safely.
 *
 * What it computes ("bucketed" variant, CoCoA+ with adding, Ma et al. 2015): the visit list
 * [order_start, order_start + n_order) is cut into B = number of work-groups consecutive
 * buckets. Bucket b copies the shared vector into its private copy vb = vcopy[b], then runs
 * exact sequential coordinate descent over its slots on the local subproblem
 * (1/sigma) f(v + sigma X_b d_b) + penalty: the step sees curvature sigma * q and the copy
 * moves by sigma * d * a_s (step.h: coord_step with q = sigma * sqnorm[s] and scale sigma,
 * then coord_axpy into the copy). merge_buckets then sets v += sum_b (vb - v) / sigma. With
 * sigma = B this is safe for any convex datafit (Jensen: f(v + sum_b X_b d_b) <=
 * (1/B) sum_b f(v + B X_b d_b)), so the objective never rises; no atomics, no races.
 * Arguments, storage and model defines as in cd_pass.cl.
 * Launch: cd_pass_bucketed global size B, local size 1 (one work-item per bucket);
 *   merge_buckets global size >= vdim, any local size.
 *
 * NumPy equivalent:
 *     for b, slots in enumerate(np.array_split(order, B)):
 *         vb = v.copy()
 *         for s in slots: u = X[:, s] @ grad(vb); b_new = step(b[s], u, sigma * q[s])
 *                         vb += sigma * (b_new - b[s]) * X[:, s]
 *     v += sum(vb - v for each b) / sigma
 */
#include "step.h"

__kernel void cd_pass_bucketed(__global const real *val, __global const int *idx,
                               __global const ulong *offs, __global const int *lens,
                               __global const int *order, const int order_start,
                               const int n_order, __global real *alpha,
                               __global const real *sqnorm, __global const real *ylab,
                               __global const real *v, const int dim, const real l1,
                               const real l2, const real C, const real bias, const real inv_m,
                               __global real *vcopy, const int vdim, const real sigma)
{
    if (get_local_id(0) != 0)
        return;
    const int b = get_group_id(0), nb = get_num_groups(0);
    const int lo = order_start + (int)(((long)n_order * b) / nb);
    const int hi = order_start + (int)(((long)n_order * (b + 1)) / nb);
    __global real *vb = vcopy + (size_t)b * (size_t)vdim;
    for (int j = 0; j < vdim; ++j)
        vb[j] = v[j];
    for (int k = lo; k < hi; ++k) {
        const int s = order[k];
        const ulong o = offs[s];
        const int n = slot_len(lens, s, dim);
        __global const real *next = val + offs[order[k + 1 < hi ? k + 1 : k]];
        const real u = slot_dot(val, idx, o, n, 0, 1, vb, ylab, inv_m, 1, next);
        const real a_old = alpha[s];
        const real yl = coord_label(ylab, s);
        const real Cs = coord_C(ylab, s, C);
        real a_new;
        const real d = coord_step(a_old, coord_margin(u, yl, vb, dim, bias), sigma * sqnorm[s],
                                  yl, sigma, l1, l2, Cs, inv_m, &a_new);
        if (a_new == a_old)
            continue;
        alpha[s] = a_new;
        coord_axpy(val, idx, o, n, dim, d, bias, vb);
    }
}

__kernel void merge_buckets(__global real *v, __global const real *vcopy, const int vdim,
                            const int nb, const real inv_sigma)
{
    const int j = get_global_id(0);
    if (j >= vdim)
        return;
    const real v0 = v[j];
    real acc = 0;
    for (int b = 0; b < nb; ++b)
        acc += vcopy[(size_t)b * (size_t)vdim + j] - v0;
    v[j] = v0 + acc * inv_sigma;
}
