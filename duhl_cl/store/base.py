"""What the round loop and the device working set read from a host store.

:class:`Store` is the seam for the tiers under the device: the in-memory store
(:class:`duhl_cl.store.CoordinateStore`) implements it today; a disk tier implements the same
attributes over memory-mapped or chunked files. Each coordinate (a column for a primal
model, a row for a dual one) is a *slot*: ``lens[i]`` entries, stored from ``offs[i]`` in
``val`` (and ``idx`` when sparse).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["Store"]


class Store(ABC):
    """The coordinates of one problem, as the device's pool and the host's products read them.

    Attributes every store sets
    ---------------------------
    primal : bool -- coordinates are columns (True) or rows (False)
    sparse : bool
    dtype : numpy dtype -- device precision (float32 or float64)
    n_coords : int -- number of coordinates
    dim : int -- length of a dense coordinate (n_samples primal, n_features dual)
    offs : ndarray (uint64, n_coords) -- where each slot starts in ``val``/``idx``
    lens : ndarray (int32, n_coords) -- stored entries of each slot (dim when dense)
    val : array-like (dtype,) -- every stored value, slot after slot (may be a memmap)
    idx : array-like (int32,) or None -- sparse row/column indices, like ``val``
    sqnorm : ndarray (float64, n_coords) -- squared norm of each coordinate
    labels : ndarray (float64, n_samples) or None -- dual models: +-1 labels
    matrix : ndarray or sparse matrix -- X in the coordinates' layout, for the host's products
    """

    primal: bool
    sparse: bool
    dtype: np.dtype
    n_coords: int
    dim: int

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes of the stored entries (values, and indices when sparse)."""

    # Stores of data in host memory read nothing from disk (duhl_cl.store.tiered does).
    tiered = False
    bytes_disk = 0
    n_from_host = 0
    n_from_disk = 0
    host_peak = 0

    @abstractmethod
    def coordinate(self, s):
        """(indices, values) of coordinate ``s``; indices is a slice for dense storage."""

    @abstractmethod
    def combine(self, x):
        """``sum_i x_i c_i`` over the coordinates c_i, float64 (dim,): primal ``X x``, dual
        ``X^T x``."""

    @abstractmethod
    def project(self, p, sel=None):
        """``c_i . p`` of the coordinates ``sel`` (None: all, in float64; a slice or index
        array: in ``p``'s precision), float64; ``p`` of shape (dim,) or (dim, K)."""

    def refresh_blocks(self, block_entries):
        """The pieces the host refresh walks (duhl_cl.duhl.refresh): contiguous slices of
        about ``block_entries`` stored entries."""
        n = self.n_coords
        csum = np.concatenate([[0], np.cumsum(self.lens, dtype=np.int64)])
        cuts = np.searchsorted(
            csum, np.arange(0, csum[-1] + block_entries, block_entries), side="left"
        )
        bounds = np.unique(np.concatenate([[0], np.clip(cuts, 0, n), [n]]))
        return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def rank(self, z, exclude=None) -> int:
        """A host tier ranks what it holds by the gap memory ``z`` (here: nothing to do);
        returns the bytes read from disk."""
        return 0

    def close(self):  # noqa: B027 -- in-memory stores hold nothing more
        """Free what the store holds beyond its data (a host cache)."""
