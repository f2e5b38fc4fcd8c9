"""The partitions of a distributed fit: blocks of coordinates, each on one worker.

Coordinates are rows for the dual models and columns for the primal ones
(:func:`duhl_cl.dask.cocoa.fit_cocoa`'s partitions). :func:`array_partitions` cuts a dask
array into K near-equal blocks of coordinates, rechunking it once so that each block is one
chunk holding all of the other axis (a dask array chunked by rows, the usual layout, is
moved between workers once for a primal model: that is the rechunk's cost; the data never
passes through the client). :func:`store_partitions` takes on-disk stores
(duhl_cl.store), one partition each, already in the model's layout on the workers' disks.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .cocoa import Partition

__all__ = ["array_partitions", "coordinate_cuts", "is_dask_array", "store_partitions"]


def is_dask_array(X) -> bool:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover
        return False
    return isinstance(X, da.Array)


def coordinate_cuts(n_coords: int, K: int) -> list:
    """K near-equal blocks ``(first, end)`` of ``n_coords`` coordinates."""
    edges = np.linspace(0, n_coords, K + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def check_dask_X(X):
    """A 2-D dask array of numbers with known chunk sizes; returns (X, sparse)."""
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D dask array, got {X.ndim} dimensions")
    if any(np.isnan(c) for cs in X.chunks for c in cs):
        raise ValueError(
            "X has chunks of unknown size (a dask array made from a dataframe or a filter); "
            "call X.compute_chunk_sizes() first, or make it with known chunks"
        )
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"X must have at least one sample and one feature, got {X.shape}")
    sparse = sp.issparse(X._meta) or type(X._meta).__module__.startswith("scipy.sparse")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    return X, sparse


def array_partitions(client, X, primal: bool, K: int) -> list:
    """K partitions of the dask array X (rows: dual; columns: primal), computed on the
    workers as Dask futures (never on the client)."""
    n_coords = X.shape[1] if primal else X.shape[0]
    if K > n_coords:
        raise ValueError(
            f"n_partitions={K} is more than the {n_coords} coordinates "
            f"({'features' if primal else 'samples'}) of X; use at most {n_coords}"
        )
    cuts = coordinate_cuts(n_coords, K)
    sizes = tuple(b - a for a, b in cuts)
    ax = 1 if primal else 0
    Xr = X.rechunk({ax: sizes, 1 - ax: -1})
    blocks = Xr.to_delayed().ravel()
    futures = client.compute(list(blocks))
    return [Partition(k, a, b, f) for k, ((a, b), f) in enumerate(zip(cuts, futures, strict=True))]


def _store_meta(path):
    """(shape, layout, dtype, has_y) of the store at ``path`` (run on a worker)."""
    from ..store.disk import open_store

    s = open_store(path)
    return s.shape, s.layout, str(s.dtype), s.y is not None


def _store_y(path):
    from ..store.disk import open_store

    return open_store(path).y


def store_partitions(client, stores, primal: bool):
    """One partition per on-disk store: ``stores`` a list of paths (readable by any
    worker: a shared file system) or a dict {worker address: [paths]} (each read on its
    worker). Returns (partitions, shape, y or None): y gathered from the stores (O(n)),
    None when a store has none."""
    if isinstance(stores, dict):
        items = [(w, p) for w, ps in stores.items() for p in ([ps] if _pathlike(ps) else ps)]
    else:
        items = [(None, p) for p in stores]
    if not items:
        raise ValueError("the list of on-disk stores is empty")
    paths = []
    for w, p in items:
        if not _pathlike(p):
            raise TypeError(
                f"an on-disk store is given by its path (str or os.PathLike), got "
                f"{type(p).__name__}; or pass a dask array"
            )
        paths.append((w, os.fspath(getattr(p, "path", p))))
    metas = [
        client.submit(_store_meta, p, workers=[w] if w else None, pure=False) for w, p in paths
    ]
    metas = [m.result() for m in metas]
    layout = "cols" if primal else "rows"
    for (_, p), (_, lay, _, _) in zip(paths, metas, strict=True):
        if lay != layout:
            raise ValueError(
                f"store {p} holds {lay} and this model needs the {layout} layout; convert "
                f"it with --layout {layout}"
            )
    dtypes = {m[2] for m in metas}
    if len(dtypes) > 1:
        raise ValueError(f"the stores hold different dtypes ({', '.join(sorted(dtypes))})")
    other = {m[0][0 if primal else 1] for m in metas}
    if len(other) > 1:
        what = "samples" if primal else "features"
        raise ValueError(f"the stores hold different numbers of {what}: {sorted(other)}")
    parts, first = [], 0
    for k, ((w, p), (shape, _, _, _)) in enumerate(zip(paths, metas, strict=True)):
        n = shape[1] if primal else shape[0]
        parts.append(Partition(k, first, first + n, p, worker=w))
        first += n
    n_other = other.pop()
    full = (n_other, first) if primal else (first, n_other)
    y = None
    if all(m[3] for m in metas):
        targets = paths[:1] if primal else paths  # primal stores each hold all of y
        ys = [client.submit(_store_y, p, workers=[w] if w else None, pure=False)
              for w, p in targets]  # fmt: skip
        y = np.concatenate([f.result() for f in ys])
    return parts, full, y, dtypes.pop()


def _pathlike(p) -> bool:
    return isinstance(p, (str, os.PathLike, Path)) or hasattr(p, "path")
