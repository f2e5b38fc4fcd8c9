/* model.h -- the coordinate models shared by cd_pass.cl and gap.cl.
 *
 * What it computes: for one coordinate i, the datafit gradient element, the exact coordinate
 * step and the per-coordinate duality gap gap_i = alpha_i u_i + g_i(alpha_i) + g_i*(-u_i)
 * (docs/architecture.md, "The maths"), for every model:
 *   MODEL 1  squared loss + l1/l2 penalty (Lasso, ElasticNet, Ridge)   primal, columns of X
 *   MODEL 2  logistic loss + l1 penalty                                primal, columns of X
 *   MODEL 3  hinge loss (SVM)                                          dual, rows of X
 *   MODEL 4  squared hinge loss (SVM)                                  dual, rows of X
 *   MODEL 5  logistic loss + l2 penalty                                dual, rows of X
 * How it is used: included by the kernel files (the builder inlines it); not a kernel itself.
 * NumPy equivalent: duhl_cl/models/ (primal.py, dual.py), which holds the same formulas in float64.
 *
 * Specialised only through -D defines, each with a default so that every file compiles alone:
 *   USE_DOUBLE (0|1) precision of data, coefficients and the shared vector
 *   MODEL      (1..5) as above, compared against MODEL_SQUARED ... MODEL_LOGISTIC_L2
 *   SPARSE     (0|1) dense slots (dim contiguous values) or sparse slots (index, value pairs)
 *   INNER_ITERS       cap on the Newton iterations of the dual logistic step
 *   WEIGHTED   (0|1) sample weights (fit(..., sample_weight)): primal, the row vector ylab
 *              holds s_j (squared loss) or y_j s_j (logistic) and the datafit gradient is
 *              weighted; dual, each slot's label holds y_j s_j (s_j > 0: samples of weight 0
 *              are not in the store) and the sample's box is C s_j (slot_y, slot_C)
 */
#ifndef DUHL_MODEL_H
#define DUHL_MODEL_H

#ifndef USE_DOUBLE
#define USE_DOUBLE 0
#endif
#ifndef MODEL
#define MODEL 1
#endif
#ifndef SPARSE
#define SPARSE 0
#endif
#ifndef INNER_ITERS
#define INNER_ITERS 50
#endif
#ifndef WEIGHTED
#define WEIGHTED 0
#endif

#if USE_DOUBLE
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#define REAL_T double
#define INNER_EPS 1e-12
#define INNER_RTOL 2.8421709430404007e-14 /* 2^-45 */
#define INNER_ZMIN 8.8817841970012523e-16 /* 2^-50 */
#define INNER_ZLOW INNER_ZMIN
#else
#define REAL_T float
#define INNER_EPS 1e-6f
#define INNER_RTOL 9.53674316e-7f /* 2^-20 */
#define INNER_ZMIN 2.38418579e-7f /* 2^-22 */
#define INNER_ZLOW 5.42101086e-20f /* 2^-64 */
#endif
typedef REAL_T real;

/* The logarithms of the dual logistic step and gap. In float32 they are the native ones:
 * libclc's log (log2, log1p) reads tables of constants through an implicit kernel argument,
 * and the step calls it inside the pass's loops and branches, which Mesa's llvmpipe
 * (Rusticl) compiles with a warning ("Treating load_kernel_arg in control flow as uniform,
 * results may be incorrect"); native_log reads none. A few ulps more do not matter here: the
 * device's steps and gaps steer the descent, the host's float64 certificate decides. float64
 * (no native functions; no float64 on llvmpipe) keeps the library's. */
#if USE_DOUBLE
#define LOG log
#define LOG1P log1p
#else
#define LOG native_log
/* log(1 + t) for t in [0, 1] (t = e^-|mu|): the series below 2^-10, where 1 + t would lose
 * t's digits, native_log(1 + t) above. */
#define LOG1P(t) ((t) < 9.765625e-4f ? (t) * (1.0f - (t) * (0.5f - (t) * 0.33333333f)) \
                                     : native_log(1.0f + (t)))
#endif

/* The model codes: the host passes them from its model table (duhl_cl/models/table.py,
 * kernel_defines); these defaults, which a test keeps equal to the table, let a file
 * compile alone. */
#ifndef MODEL_SQUARED
#define MODEL_SQUARED 1
#endif
#ifndef MODEL_LOGISTIC_L1
#define MODEL_LOGISTIC_L1 2
#endif
#ifndef MODEL_HINGE
#define MODEL_HINGE 3
#endif
#ifndef MODEL_SQUARED_HINGE
#define MODEL_SQUARED_HINGE 4
#endif
#ifndef MODEL_LOGISTIC_L2
#define MODEL_LOGISTIC_L2 5
#endif
#define PRIMAL (MODEL == MODEL_SQUARED || MODEL == MODEL_LOGISTIC_L1)
#if !PRIMAL && MODEL != MODEL_HINGE && MODEL != MODEL_SQUARED_HINGE && MODEL != MODEL_LOGISTIC_L2
#error "MODEL must be 1 (squared), 2 (logistic-l1), 3 (hinge), 4 (squared hinge) or 5 (logistic-l2)"
#endif

/* Primal models: element j of w = grad f(v). For the squared loss the device keeps
 * v = X b + b0 - y (the residual's negative) so that y need not be read in the inner loop. */
inline real datafit_grad(const real v, const real y, const real inv_m)
{
#if MODEL == MODEL_LOGISTIC_L1 && WEIGHTED
    /* y holds y_j s_j: sign(y) v is y_j v, and a weight of 0 gives 0. */
    return -y * inv_m / ((real)1 + exp(sign(y) * v));
#elif MODEL == MODEL_LOGISTIC_L1
    return -y * inv_m / ((real)1 + exp(y * v));
#elif WEIGHTED
    return y * v * inv_m; /* y holds s_j */
#else
    (void)y;
    return v * inv_m;
#endif
}

/* Dual models: a slot's label is y_s, or y_s w_s with WEIGHTED (w_s > 0); slot_y is the
 * sign the margin and the update take, slot_C the sample's box C w_s. */
inline real slot_y(const real label)
{
#if WEIGHTED
    return label > (real)0 ? (real)1 : (real)-1;
#else
    return label;
#endif
}

inline real slot_C(const real C, const real label)
{
#if WEIGHTED
    return C * fabs(label);
#else
    (void)label;
    return C;
#endif
}

/* Primal exact (squared) or majorised (logistic, curvature <= ||x_i||^2 / 4m) step:
 * b <- S(q b - u, l1) / (q + l2). Every squared-loss model is this with its own l1, l2. */
inline real primal_step(const real b, const real u, const real sqnorm, const real l1,
                        const real l2, const real inv_m)
{
#if MODEL == MODEL_LOGISTIC_L1
    const real q = sqnorm * inv_m * (real)0.25;
#else
    const real q = sqnorm * inv_m;
#endif
    const real den = q + l2;
    if (den <= (real)0)
        return (real)0; /* an all-zero column: only the penalty depends on b */
    const real z = q * b - u;
    /* Comparisons, not fabs/copysign: PoCL calls those out of line, once per coordinate. */
    if (z > l1)
        return (z - l1) / den;
    if (z < -l1)
        return (z + l1) / den;
    return (real)0;
}

/* gap_i = b u + l1|b| + l2/2 b^2 + g*(-u); with l2 = 0 the l1 term is Lipschitzed with the
 * bound B = f(0)/l1 (Duenner et al., ICML 2016), so g*(s) = B [|s| - l1]_+. */
inline real primal_gap(const real b, const real u, const real l1, const real l2,
                       const real bound)
{
    const real t = fmax(fabs(u) - l1, (real)0);
    real g = b * u + l1 * fabs(b);
    if (l2 > (real)0)
        g += (real)0.5 * l2 * b * b + t * t / ((real)2 * l2);
    else
        g += bound * t;
    return g;
}

/* Shrinking (hinge and squared hinge duals, liblinear's solve_l2r_l1l2_svc): the projected
 * gradient of the dual objective at a sample's bound, and whether the sample may be left
 * out of a launch's later passes: at a bound, with a gradient pointing out of the box by
 * more than the largest violation (pg_hi, pg_lo) of the previous pass. */
#if MODEL == MODEL_HINGE || MODEL == MODEL_SQUARED_HINGE
#define DUAL_SHRINK 1
inline real dual_grad(const real a, const real mu, const real C)
{
#if MODEL == MODEL_HINGE
    (void)a;
    (void)C;
    return mu - (real)1;
#else
    return mu - (real)1 + a * (real)0.5 / C;
#endif
}

/* 1: leave out; otherwise *pg is the projected gradient (0 when the step cannot move). */
inline int dual_shrinks(const real a, const real G, const real C, const real pg_hi,
                        const real pg_lo, real *pg)
{
    *pg = G;
    if (a == (real)0) {
        if (G > pg_hi)
            return 1;
        *pg = G < (real)0 ? G : (real)0;
    }
#if MODEL == MODEL_HINGE
    else if (a == C) {
        if (G < pg_lo)
            return 1;
        *pg = G > (real)0 ? G : (real)0;
    }
#else
    (void)C;
    (void)pg_lo;
#endif
    return 0;
}
#else
#define DUAL_SHRINK 0
#endif

/* Dual step for sample j: mu = y_j x_j^T w is its margin, Q = ||x_j||^2 (+ bias^2). */
inline real dual_step(const real a, const real mu, const real Q, const real C)
{
#if MODEL == MODEL_HINGE
    if (Q <= (real)0)
        return mu < (real)1 ? C : (real)0;
    const real t = a - (mu - (real)1) / Q;
    return t < (real)0 ? (real)0 : (t > C ? C : t); /* clamp, inline (see primal_step) */
#elif MODEL == MODEL_SQUARED_HINGE
    const real D = (real)0.5 / C;
    const real t = a - (mu - (real)1 + a * D) / (Q + D);
    return t > (real)0 ? t : (real)0;
#else
    /* Logistic: minimise Q/2 (z-a)^2 + mu (z-a) + z log z + (C-z) log(C-z) over 0 < z < C
     * by Newton's method in whichever of z, C-z is nearer zero (liblinear, Yu et al. 2011).
     * C - z stays at least C INNER_ZMIN (a few units of the precision): in float32 an alpha
     * within C's rounding of C made zold = C - a 0, log(0) -inf and every later step NaN (w8a,
     * 8 passes a round). z itself only needs to stay off 0 where it is alpha (sgn 1), whose
     * float32 value may be far below C's rounding: at C INNER_ZMIN there, the samples whose
     * optimal alpha is smaller kept gaps of ~1e-6 each (leukemia at tol 1e-7: a gap of 7e-6
     * against a target of 5e-6 for 50 rounds, until float64 took over). */
    const real zmax = C - C * INNER_ZMIN;
    real zold = a, sgn = (real)1, zmin = C * INNER_ZLOW;
    if ((real)0.5 * Q * ((C - a) - a) + mu < (real)0) {
        zold = C - a;
        sgn = (real)-1;
        zmin = C * INNER_ZMIN;
    }
    zold = zold < zmin ? zmin : zold;
    real z = zold;
    if (C - z < (real)0.5 * C)
        z *= (real)0.1;
    z = z < zmin ? zmin : (z > zmax ? zmax : z);
    real gp = Q * (z - zold) + sgn * mu + LOG(z / (C - z));
    for (int it = 0; it < INNER_ITERS && fabs(gp) >= INNER_EPS; ++it) {
        const real gpp = Q + C / ((C - z) * z);
        const real tz = z - gp / gpp;
        real zn = tz <= (real)0 ? z * (real)0.1 : tz;
        zn = zn < zmin ? zmin : (zn > zmax ? zmax : zn);
        /* Also stop once a step moves z by less than its precision (INNER_RTOL z): in float32
         * |gp|, a sum of terms rounded to ~1e-7 of their size, often never reached INNER_EPS
         * and every step took all INNER_ITERS iterations (w8a: 3x the time of the pass). */
        const int settled = fabs(zn - z) <= INNER_RTOL * z;
        z = zn;
        if (settled)
            break;
        gp = Q * (z - zold) + sgn * mu + LOG(z / (C - z));
    }
    return sgn > (real)0 ? z : C - z;
#endif
}

inline real xlogx(const real x) { return x > (real)0 ? x * LOG(x) : (real)0; }

inline real dual_gap(const real a, const real mu, const real C)
{
#if MODEL == MODEL_HINGE
    return C * fmax((real)1 - mu, (real)0) + a * (mu - (real)1);
#elif MODEL == MODEL_SQUARED_HINGE
    const real h = fmax((real)1 - mu, (real)0);
    return C * h * h + a * a * (real)0.25 / C + a * (mu - (real)1);
#else
    /* log(1 + e^-mu) computed without overflow */
    const real t = exp(-fabs(mu));
    const real lse = fmax(-mu, (real)0) + LOG1P(t);
    return C * lse + a * mu + xlogx(a) + xlogx(C - a) - xlogx(C);
#endif
}

#endif /* DUHL_MODEL_H */
