/* scatter.cl -- place coordinates staged in one upload into the working-set pool.
 *
 * What it computes: a round's incoming coordinates arrive in a few uploads (all values, all
 * indices, and their slot entries), then these kernels move them to where they live:
 *   scatter_real / scatter_int: piece k, of len[k] entries, from staged[src[k]...] to
 *     pool[dst[k]...];
 *   scatter_slots: slot[k] receives its offset, length, squared norm, and its coefficient and
 *                  label of each class (one-vs-rest: n_classes regions class_stride apart).
 * The per-piece fields (src, dst, len, slot, ...) come packed in one byte buffer, desc, each
 * field at a byte offset aligned for its type.
 * Launch: global size >= number of pieces (one work-item per piece), any local size.
 * NumPy equivalent: for k: pool[dst[k]:dst[k]+len[k]] = staged[src[k]:src[k]+len[k]]
 */
#include "model.h"

/* The descriptors of a batch arrive in one byte buffer: fields at aligned byte offsets. */
#define FIELD(type, buf, off) ((__global const type *)((buf) + (off)))

/* One kernel per element type: the pool's values (real) and, when sparse, its indices (int). */
#define SCATTER(name, type)                                                                    \
    __kernel void name(__global const type *staged, __global type *pool,                       \
                       __global const uchar *desc, const ulong o_src, const ulong o_dst,       \
                       const ulong o_len, const int n)                                         \
    {                                                                                          \
        const int k = get_global_id(0);                                                        \
        if (k >= n)                                                                            \
            return;                                                                            \
        const ulong src = FIELD(ulong, desc, o_src)[k], dst = FIELD(ulong, desc, o_dst)[k];    \
        const int len = FIELD(int, desc, o_len)[k];                                            \
        for (int t = 0; t < len; ++t)                                                          \
            pool[dst + t] = staged[src + t];                                                   \
    }

SCATTER(scatter_real, real)
SCATTER(scatter_int, int)

__kernel void scatter_slots(__global const uchar *desc, const ulong o_slot, const ulong o_offs,
                            const ulong o_lens, const ulong o_alpha, const ulong o_sqnorm,
                            const ulong o_label, const int n, __global ulong *offs,
                            __global int *lens, __global real *alpha, __global real *sqnorm,
                            __global real *label, const int with_label, const int n_classes,
                            const int class_stride)
{
    const int k = get_global_id(0);
    if (k >= n)
        return;
    const int s = FIELD(int, desc, o_slot)[k];
    offs[s] = FIELD(ulong, desc, o_offs)[k];
    lens[s] = FIELD(int, desc, o_lens)[k];
    sqnorm[s] = FIELD(real, desc, o_sqnorm)[k];
    /* One-vs-rest: class c's coefficient (and label) is field entry c n + k, its slot entry
     * c class_stride + s (each class's region of the buffers, duhl_cl.duhl.working_set). */
    for (int c = 0; c < n_classes; ++c) {
        alpha[c * class_stride + s] = FIELD(real, desc, o_alpha)[c * n + k];
        if (with_label) /* dual models only: a primal model's labels are the vector y */
            label[c * class_stride + s] = FIELD(real, desc, o_label)[c * n + k];
    }
}
