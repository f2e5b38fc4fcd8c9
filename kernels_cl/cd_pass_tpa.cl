/* cd_pass_tpa.cl -- one asynchronous pass of coordinate descent, one work-group a coordinate.
 *
 * What it computes ("tpa" variant, TPA-SCD, Parnell et al. 2017): work-group g takes slot
 * s = order[order_start + g]; its WG work-items each sum a strided part of u = a_s^T w(v),
 * reduce the parts in local memory, work-item 0 takes the model's step alpha[s] -> alpha_new
 * (step.h, coord_step), and all of them add their part of (alpha_new - alpha[s]) * a_s into
 * the shared vector v with atomic updates. Work-groups run asynchronously: a coordinate may
 * read v while another's update is still landing (the TPA-SCD trade; the host's float64
 * certificate is what stops the fit). Arguments, storage and model defines as in cd_pass.cl.
 * Launch: global size n_order * WG, local size WG (a power of two), one launch per pass.
 *
 * The update is a compare-and-swap loop on the value's bit pattern (32-bit, or 64-bit with
 * cl_khr_int64_base_atomics), which every device has; NATIVE_ATOMIC_ADD=1 (the host sets it,
 * with -cl-std=CL3.0, where the device reports cl_ext_float_atomics or Intel's
 * cl_intel_global_float_atomics) adds with the device's own float atomic instead, and the
 * build fails where the extension's feature for this precision is missing, so that the
 * host falls back to the loop knowingly.
 *
 * NumPy equivalent (one coordinate; run over the list in any interleaving):
 *     u = X[:, s] @ grad(v); b_new = step(b[s], u); v += (b_new - b[s]) * X[:, s]
 */
#include "step.h"

#ifndef WG
#define WG 64
#endif

#ifndef NATIVE_ATOMIC_ADD
#define NATIVE_ATOMIC_ADD 0
#endif

#if NATIVE_ATOMIC_ADD
/* Where the compiler names the per-precision features, this precision's is required; where
 * it names only the extension (Intel's CPU runtime), a device without the add for this
 * precision fails the build on the builtin's overload. Either way the host then takes the
 * loop, knowingly. Device scope is a feature of its own in OpenCL C 3.0. */
#if defined(__opencl_c_ext_fp32_global_atomic_add) || defined(__opencl_c_ext_fp64_global_atomic_add)
#if USE_DOUBLE && !defined(__opencl_c_ext_fp64_global_atomic_add)
#error "NATIVE_ATOMIC_ADD: no global float64 atomic add (__opencl_c_ext_fp64_global_atomic_add)"
#elif !USE_DOUBLE && !defined(__opencl_c_ext_fp32_global_atomic_add)
#error "NATIVE_ATOMIC_ADD: no global float32 atomic add (__opencl_c_ext_fp32_global_atomic_add)"
#endif
#elif !defined(cl_ext_float_atomics) && !defined(cl_intel_global_float_atomics)
#error "NATIVE_ATOMIC_ADD: the compiler knows no float atomics extension"
#endif
#if __OPENCL_C_VERSION__ >= 300 && !defined(__opencl_c_atomic_scope_device)
#error "NATIVE_ATOMIC_ADD: no device-scope atomics (__opencl_c_atomic_scope_device)"
#endif
#if USE_DOUBLE
typedef atomic_double atomic_real;
#else
typedef atomic_float atomic_real;
#endif

/* *p += x with the device's float atomic (relaxed: only the sum matters, as in the loop). */
inline void atomic_add_real(volatile __global real *p, const real x)
{
    atomic_fetch_add_explicit((volatile __global atomic_real *)p, x, memory_order_relaxed,
                              memory_scope_device);
}
#else

/* The value's bit pattern, and the compare-and-swap on it, for either precision. */
#if USE_DOUBLE
#pragma OPENCL EXTENSION cl_khr_int64_base_atomics : enable
typedef ulong real_bits;
#define CMPXCHG_BITS atom_cmpxchg
#else
typedef uint real_bits;
#define CMPXCHG_BITS atomic_cmpxchg
#endif

/* *p += x, atomically: retry the compare-and-swap until no other update came in between. */
inline void atomic_add_real(volatile __global real *p, const real x)
{
    union { real_bits u; real f; } seen, want;
    seen.f = *p;
    for (;;) {
        want.f = seen.f + x;
        const real_bits prev = CMPXCHG_BITS((volatile __global real_bits *)p, seen.u, want.u);
        if (prev == seen.u)
            break;
        seen.u = prev;
    }
}
#endif /* NATIVE_ATOMIC_ADD */

__kernel void cd_pass_tpa(__global const real *val, __global const int *idx,
                          __global const ulong *offs, __global const int *lens,
                          __global const int *order, const int order_start, const int n_order,
                          __global real *alpha,
                          __global const real *sqnorm, __global const real *ylab,
                          __global real *v, const int dim, const real l1, const real l2,
                          const real C, const real bias, const real inv_m)
{
    __local real part[WG];
    __local real step;
    const int lid = get_local_id(0);
    const int g = get_group_id(0);
    /* The whole group leaves together, so no work-item misses a barrier. */
    if (g >= n_order)
        return;
    const int s = order[order_start + g];
    const ulong o = offs[s];
    const int n = slot_len(lens, s, dim);
    const real u = slot_dot(val, idx, o, n, lid, WG, v, ylab, inv_m, 1, val + o);
    part[lid] = u;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = WG / 2; h > 0; h >>= 1) {
        if (lid < h)
            part[lid] += part[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        const real a_old = alpha[s];
        const real yl = coord_label(ylab, s);
        const real Cs = coord_C(ylab, s, C);
        real a_new;
        step = coord_step(a_old, coord_margin(part[0], yl, v, dim, bias), sqnorm[s], yl,
                          (real)1, l1, l2, Cs, inv_m, &a_new);
#if !PRIMAL
        if (a_new != a_old)
            atomic_add_real(&v[dim], step * bias);
#endif
        alpha[s] = a_new;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const real d = step;
    if (d == (real)0)
        return;
    for (int t = lid; t < n; t += WG)
        atomic_add_real(&v[slot_row(idx, o, t)], d * val[o + t]);
}
