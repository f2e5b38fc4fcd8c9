"""The disk tier: a fit's store over an on-disk store, with a host cache under a host budget.

:class:`TieredStore` implements :class:`duhl_cl.store.base.Store` over a
:class:`duhl_cl.store.disk.DiskData`: the coordinates stay in the store's files, their
metadata (offsets, lengths, squared norms) and the labels in memory. Three kinds of reads:

- :meth:`TieredStore.fetch`: given coordinates (those entering the device, a refresh
  block), from the host cache where held there, else from disk in runs of consecutive
  coordinates; counted per level (``n_from_host``, ``n_from_disk``).
- the streaming passes (:meth:`TieredStore.project` of every coordinate, :meth:`combine`
  of many): block after block, sequentially, one block read ahead on a thread while the
  previous one is multiplied, each block verified against its checksum the first time.
- :meth:`TieredStore.rank`: after each certificate, the host cache takes the coordinates
  the fresh gap memory ranks next after the device's (duhl_cl.store.host.HostCache).

Every buffer of coordinate data is counted by the host ledger against ``host_budget``: the
cache gets what is left after a reserve for the passes' buffers (:meth:`reserve_bytes`).
With a cache of size 0 the tier reads everything through the operating system's page cache
(the "page cache only" baseline); the host refresh then walks the store block by block.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from .base import Store
from .disk import StoreError, block_matrix, layout_for
from .host import HostCache, HostLedger, default_host_budget

__all__ = ["TieredStore"]


class _Coords:
    """Fetched coordinates, renumbered 0..k-1, in the in-memory store's form (``val``,
    ``idx``, ``offs``, ``lens``, ``dim``): what duhl_cl.duhl.pool_writes copies from."""

    def __init__(self, val, idx, lens, dim, sparse, n_coords):
        self.val, self.idx, self.dim, self.sparse = val, idx, dim, sparse
        self.lens = lens.astype(np.int32)
        self.n_coords = n_coords
        if sparse:
            self.offs = np.concatenate([[0], np.cumsum(lens, dtype=np.int64)[:-1]]).astype(
                np.uint64
            )
        else:
            self.offs = np.arange(n_coords, dtype=np.uint64) * np.uint64(dim)

    def matrix(self):
        """(k, dim): one coordinate per row (dense ndarray or CSR)."""
        if not self.sparse:
            return self.val.reshape(self.n_coords, self.dim)
        ptr = np.concatenate([[0], np.cumsum(self.lens, dtype=np.int64)])
        return sp.csr_matrix((self.val, self.idx, ptr), shape=(self.n_coords, self.dim))


# Entries of a dense float32 block upcast to float64 at a time by the certificate's products:
# 1 MiB, which stays in cache. Upcasting a whole 16 MiB block first (a 4M-row column) made a
# 16 GiB certificate take about 20 s on 2 cores against the disk's 6 s.
CHUNK = 1 << 17

# What one more separate read costs, in bytes of a sequential one: on this machine's disk
# under a 1 GiB memory group, 6.3% of a 4 GiB store's 4 KiB rows, scattered, took 4.1 s
# as reads of their own (63 us each) against 2.4 s for a stream of the whole store (2.3-3.2
# GB/s): about 150 KB. Where a block's selected coordinates cost more than the block as
# reads, it is read whole (TieredStore._plan).
SEEK_BYTES = 128 << 10

# The longest span a fetch reads through its holes at once (TieredStore._read_spans).
SPAN_BYTES = 4 << 20


def _pieces(coords, lens, block_entries):
    """``coords`` cut into pieces of about ``block_entries`` stored entries."""
    if not len(coords):
        return []
    ends = np.cumsum(np.maximum(lens[coords].astype(np.int64), 1))
    cuts = np.searchsorted(ends, np.arange(block_entries, ends[-1], block_entries))
    return [p for p in np.split(coords, np.unique(cuts)) if len(p)]


class TieredStore(Store):
    """A fit's store over an on-disk store (see module docstring).

    Parameters
    ----------
    data : duhl_cl.store.disk.DiskData
    primal : bool -- the model's coordinates are columns (True: a "cols" store) or rows
    dtype : numpy dtype or None -- must be the store's (None: the store's)
    labels, bias, row_weights : as :class:`duhl_cl.store.CoordinateStore`
    host_budget : int or None -- bytes of host memory for coordinate data (None: see
        :func:`duhl_cl.store.host.default_host_budget`)
    """

    tiered = True

    def __init__(self, data, *, primal, dtype=None, labels=None, bias=0.0, row_weights=None,
                 host_budget=None):  # fmt: skip
        need = layout_for(primal)
        if data.layout != need:
            kind = "columns (the primal models': Lasso, ElasticNet, Ridge)" if data.layout == "cols" \
                else "rows (the dual models': the SVMs, LogisticRegression)"  # fmt: skip
            raise StoreError(
                f"store {data.path} holds {kind}, and this model needs the {need} layout; "
                f"convert it with --layout {need}"
            )
        if dtype is not None and np.dtype(dtype) != data.dtype:
            raise StoreError(
                f"store {data.path} holds {data.dtype} values and the fit asks for "
                f"{np.dtype(dtype)}; fit with dtype='{data.dtype}' (or None), or convert "
                f"again with --dtype {np.dtype(dtype)}"
            )
        self.data = data
        self.primal, self.sparse, self.dtype = primal, data.sparse, data.dtype
        self.n_coords, self.dim = data.n_coords, data.dim
        self.offs, self.lens = data.offs, data.lens
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float64)
        self.entry = data.entry_bytes()
        self.block_max = max(
            (data.block_entries(i) for i in range(len(data.blocks) - 1)), default=1
        )
        reserve = self.reserve_bytes()
        if host_budget is None:
            host_budget = default_host_budget(data.nbytes, reserve)
        host_budget = int(host_budget)
        if host_budget < reserve:
            raise ValueError(
                f"host_budget {host_budget} bytes is below the {reserve} bytes the disk tier "
                f"needs for its reads (blocks of {self.block_max} entries of store "
                f"{data.path}); raise host_budget to at least that"
            )
        self.host_budget = host_budget
        self.host = HostLedger(host_budget)
        self.cache = HostCache(data, self.host, host_budget - reserve)
        self.n_from_host = self.n_from_disk = 0
        # Bytes of uncached coordinates the host refresh may read from disk a round (see
        # refresh_blocks); the local solver sets it to the device budget.
        self.refresh_window = host_budget
        self._window = 0
        self._pool = None
        # Bounds on every coordinate's product with the last certificate's point
        # (duhl_cl.duhl.bounds.ProductBounds), set by the certificates.
        self.product_bounds = None
        # Whether a certificate's stream offers its blocks' rows to the host cache
        # (duhl_cl.duhl.bounds): the single-problem local solver's, not one-vs-rest's
        # classes, whose stores share the data under different labels.
        self.fills_from_streams = False
        self._norms = {}
        sq = data.sqnorm
        if row_weights is not None and primal:
            sq = self._weighted_sqnorms(np.asarray(row_weights, dtype=np.float64))
        self.sqnorm = sq + (bias * bias if not primal else 0.0)

    # -- sizes
    def reserve_bytes(self) -> int:
        """Host bytes the reads need besides the cache: two blocks in flight (one read ahead)
        and a float64 copy of one, or one fetch of that size and the device's staging copy
        of it (duhl_cl.duhl.pool_writes)."""
        b = self.block_max
        bufs = min(2, len(self.data.blocks) - 1)
        return int(max(bufs, 1) * b * self.entry + b * (8 + (4 if self.sparse else 0)))

    @property
    def fetch_entries(self) -> int:
        """Entries one :meth:`fetch` may return (the callers cut larger sets)."""
        return self.block_max

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    @property
    def bytes_disk(self) -> int:
        return self.data.bytes_read

    def coordinate(self, s):
        c = self.fetch(np.array([s]))
        try:
            if self.sparse:
                return c.idx.copy(), c.val.copy()
            return slice(0, self.dim), c.val.copy()
        finally:
            self.release(c)

    # -- fetching given coordinates
    def chunk_bounds(self, entries):
        """Cuts of pieces with ``entries`` device entries each into runs of at most
        :attr:`fetch_entries` entries (at least one piece each): a list of (a, b)."""
        ends = np.cumsum(np.asarray(entries, dtype=np.int64))
        cuts, a = [], 0
        while a < len(ends):
            base = ends[a - 1] if a else 0
            b = int(np.searchsorted(ends, base + self.fetch_entries, side="right"))
            b = min(max(b, a + 1), len(ends))
            cuts.append((a, b))
            a = b
        return cuts

    def chunks(self, coords):
        """``coords`` cut into pieces of at most :attr:`fetch_entries` entries (at least one
        coordinate each)."""
        coords = np.asarray(coords, dtype=np.int64)
        entries = np.maximum(self.lens[coords].astype(np.int64), 1)
        return [coords[a:b] for a, b in self.chunk_bounds(entries)]

    def fetch(self, coords, incoming=False) -> _Coords:
        """Coordinates ``coords`` (in this order) from the host cache or disk, counted by the
        host ledger until :meth:`release`; ``incoming``: they are entering the device (counted
        in ``n_from_host`` / ``n_from_disk`` by the level they came from)."""
        coords = np.asarray(coords, dtype=np.int64)
        d, cache, k = self.data, self.cache, len(coords)
        lens = self.lens[coords].astype(np.int64)
        n = int(lens.sum()) if self.sparse else k * self.dim
        val = self.host.empty(n, self.dtype, "coordinates read for the device")
        idx = (
            self.host.empty(n, np.int32, "coordinates read for the device") if self.sparse else None
        )
        hit = cache.coord_slot[coords] >= 0
        if incoming:
            self.n_from_host += int(hit.sum())
            self.n_from_disk += int(k - hit.sum())
        out = _Coords(val, idx, lens, self.dim, self.sparse, k)
        starts = out.offs.astype(np.int64)
        if hit.any():
            if not self.sparse:
                val.reshape(k, self.dim)[hit] = cache.slab[cache.coord_slot[coords[hit]]]
            else:
                for j in np.flatnonzero(hit).tolist():
                    i, v = cache.pieces[int(coords[j])]
                    val[starts[j] : starts[j] + len(v)] = v
                    idx[starts[j] : starts[j] + len(v)] = i
        miss = np.flatnonzero(~hit)
        if len(miss) and not self.sparse:
            self._read_spans(coords[miss], val.reshape(k, self.dim), miss)
        elif len(miss):
            # Runs of consecutive coordinates at consecutive places: one read each, into place.
            c = coords[miss]
            brk = np.flatnonzero((np.diff(c) != 1) | (np.diff(miss) != 1)) + 1
            for a, b in zip(np.r_[0, brk], np.r_[brk, len(c)], strict=True):
                o = int(starts[miss[a]])
                d.read_run(int(c[a]), int(c[b - 1]) + 1, val[o:], idx[o:] if self.sparse else None)
        return out

    def _read_spans(self, c, rows, at):
        """Dense coordinates ``c`` into ``rows[at]``: ascending ones whose holes between
        them are shorter than :data:`SEEK_BYTES` as one read of the span through a small
        counted buffer (a hole costs less than one more read), the others each in place
        (runs of consecutive ones, at consecutive places, as one read)."""
        d, row = self.data, self.dim * self.entry
        hole = (np.diff(c) - 1) * row
        # (Within the reserve: no more than a block, whose float64 copy it stands in for.)
        span_rows = max(1, min(SPAN_BYTES, self.block_max * self.entry) // max(row, 1))
        brk = np.flatnonzero((hole < 0) | (hole >= SEEK_BYTES)) + 1
        cuts = []
        for a, b in zip(np.r_[0, brk], np.r_[brk, len(c)], strict=True):
            # (A span no longer than the buffer.)
            s = a
            while s < b:
                e = int(np.searchsorted(c[s:b], c[s] + span_rows)) + s
                cuts.append((s, max(e, s + 1)))
                s = max(e, s + 1)
        buf = None
        try:
            for a, b in cuts:
                lo, hi = int(c[a]), int(c[b - 1]) + 1
                if hi - lo == b - a and np.all(np.diff(at[a:b]) == 1):
                    d.read_run(lo, hi, rows[at[a] : at[a] + (b - a)].reshape(-1))
                    continue
                if buf is None:
                    n = max(int(c[y - 1]) + 1 - int(c[x]) for x, y in cuts)
                    buf = self.host.empty((n, self.dim), self.dtype, "a read span")
                d.read_run(lo, hi, buf[: hi - lo].reshape(-1))
                rows[at[a:b]] = buf[c[a:b] - lo]
        finally:
            self.host.free(buf)

    def release(self, c):
        """Free the buffers of a :meth:`fetch`."""
        self.host.free(c.val)
        self.host.free(c.idx)

    # -- streaming
    def _blocks(self, which=None):
        """(a, b, matrix) of every block (or of blocks ``which``, in order), read ahead by
        one on a thread; the buffers are returned to the ledger as the next block is taken."""
        d = self.data
        which = range(len(d.blocks) - 1) if which is None else list(which)
        nb = len(which)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1)
        bufs = [
            (self.host.empty(self.block_max, self.dtype, "a streamed block"),
             self.host.empty(self.block_max, np.int32, "a streamed block") if self.sparse else None)
            for _ in range(min(2, nb))
        ]  # fmt: skip

        def read(j):
            val, idx = bufs[j % len(bufs)]
            i = which[j]
            a, b = int(d.blocks[i]), int(d.blocks[i + 1])
            if d.verified(i) and self.cache.holds(a, b):
                self.cache.copy_block(a, b, val, idx)  # no disk read for a cached block
            else:
                d.read_block(i, val, idx)
            return a, b, block_matrix(d, a, b, val, idx)

        try:
            ahead = self._pool.submit(read, 0) if nb else None
            for i in range(nb):
                a, b, B = ahead.result()
                # (The next read goes into the other buffer while this one is used.)
                ahead = self._pool.submit(read, i + 1) if i + 1 < nb else None
                yield a, b, B
        finally:
            if ahead is not None:
                try:
                    ahead.result()
                except Exception:  # noqa: BLE001 -- the pass is ending on another error
                    pass
            for val, idx in bufs:
                self.host.free(val)
                self.host.free(idx)

    def _dot64(self, B, p, transpose=False):
        """``B @ p`` (``B.T @ p`` with ``transpose``) in float64 for a block or fetched piece
        B (k, dim): a dense float32 B is upcast :data:`CHUNK` entries at a time into one
        counted buffer, along its coordinates when they are long (a column store's), else
        by groups of whole coordinates."""
        if sp.issparse(B) or B.dtype == np.float64:
            B64, tmp = self._as64(B)
            try:
                return np.asarray((B64.T if transpose else B64) @ p, dtype=np.float64)
            finally:
                self.host.free(tmp)
        k, n = B.shape
        # (No more than the block: the reserve holds a float64 copy of one, reserve_bytes.)
        buf = self.host.empty(max(min(CHUNK, k * n), 1), np.float64, "a float64 piece")
        try:
            if n >= CHUNK:
                cuts = [(a, a + 1, s, min(s + CHUNK, n)) for a in range(k)
                        for s in range(0, n, CHUNK)]  # fmt: skip
            else:
                r = max(1, CHUNK // n)
                cuts = [(a, min(a + r, k), 0, n) for a in range(0, k, r)]
            out = np.zeros((n if transpose else k,) + np.shape(p)[1:])
            for a, b, s, e in cuts:
                piece = buf[: (b - a) * (e - s)].reshape(b - a, e - s)
                np.copyto(piece, B[a:b, s:e])
                if transpose:
                    out[s:e] += piece.T @ p[a:b]
                else:
                    out[a:b] += piece @ p[s:e]
            return out
        finally:
            self.host.free(buf)

    def _as64(self, B):
        """A block in float64, counted (the certificate's products are float64)."""
        if B.dtype == np.float64:
            return B, None
        if sp.issparse(B):
            tmp = self.host.empty(B.nnz, np.float64, "a float64 block")
            tmp[:] = B.data
            return sp.csr_matrix((tmp, B.indices, B.indptr), shape=B.shape), tmp
        tmp = self.host.empty(B.shape, np.float64, "a float64 block")
        tmp[...] = B
        return tmp, tmp

    def _plan(self, coords):
        """How to read sorted ``coords``: (blocks read whole, the positions in ``coords``
        that those cover, the positions left to :meth:`fetch`). A block is read whole when
        its selected uncached coordinates would cost more as separate reads, each counted
        as :data:`SEEK_BYTES` besides its bytes, than the block's bytes in one sequential
        read; a block the host cache holds whole is read from it."""
        d, n = self.data, len(coords)
        if n == 0 or np.any(np.diff(coords) <= 0):
            return [], np.zeros(0, np.int64), np.arange(n)
        blk = np.searchsorted(d.blocks, coords, side="right") - 1
        uncached = self.cache.coord_slot[coords] < 0
        lens = self.lens[coords].astype(np.int64) if self.sparse else np.full(n, self.dim)
        cost = np.where(uncached, lens * self.entry, 0)
        # A new read starts at an uncached coordinate that does not follow the one before.
        starts = uncached & np.r_[True, (np.diff(coords) != 1) | ~uncached[:-1]]
        cost = cost + starts * SEEK_BYTES
        ids, first = np.unique(blk, return_index=True)
        fetch_cost = np.add.reduceat(cost, first)
        whole = [int(i) for i, c in zip(ids, fetch_cost, strict=True)
                 if c > self.data.block_entries(int(i)) * self.entry]  # fmt: skip
        covered = np.isin(blk, whole)
        return whole, np.flatnonzero(covered), np.flatnonzero(~covered)

    def project(self, p, sel=None, on_block=None):
        """``c_i . p`` of coordinates ``sel`` (None: all, streamed in float64; a slice or an
        index array: in ``p``'s precision, read as :meth:`_plan` says). ``p``: (dim,) or
        (dim, K); returns float64 (n,) or (n, K). ``on_block(a, b, out[a:b], B)``: called
        with each streamed block while it is in hand (the host cache's fill,
        duhl_cl.duhl.bounds)."""
        if sel is None:
            p = np.asarray(p, dtype=np.float64)
            out = np.empty((self.n_coords,) + p.shape[1:])
            for a, b, B in self._blocks():
                out[a:b] = self._dot64(B, p)
                if on_block is not None:
                    on_block(a, b, out[a:b], B)
            return out
        coords = np.arange(sel.start, sel.stop) if isinstance(sel, slice) else np.asarray(sel)
        exact = np.asarray(p).dtype == np.float64
        p = p if exact else np.asarray(p, dtype=self.dtype)
        out = np.empty((len(coords),) + np.shape(p)[1:])

        def dot(M):
            # (A float64 point: the pieces in float64 too, counted, as the streamed ones.)
            return self._dot64(M, p) if exact else np.asarray(M @ p, dtype=np.float64)

        whole, covered, rest = self._plan(coords)
        if whole:
            at = iter(np.split(covered, np.searchsorted(coords[covered], [
                int(self.data.blocks[i + 1]) for i in whole[:-1]])))  # fmt: skip
            for a, _, B in self._blocks(whole):
                j = next(at)
                out[j] = dot(B)[coords[j] - a]
        entries = np.maximum(self.lens[coords[rest]].astype(np.int64), 1)
        for a, b in self.chunk_bounds(entries) if len(rest) else []:
            part = rest[a:b]
            c = self.fetch(coords[part])
            try:
                out[part] = dot(c.matrix())
            finally:
                self.release(c)
        return out

    def combine(self, x):
        """``sum_i x_i c_i`` in float64, (dim,): only the coordinates where x is not 0 are
        read (a Lasso's support, an SVM's support vectors), fetched (from the cache where
        there), or with the blocks they are many in read whole (:meth:`_plan`)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros(self.dim)
        nz = np.flatnonzero(x)
        whole, _, rest = self._plan(nz)
        for a, b, B in self._blocks(whole) if whole else []:
            out += self._dot64(B, x[a:b], transpose=True)  # (zeros where x is 0)
        for part in self.chunks(nz[rest]) if len(rest) else []:
            c = self.fetch(part)
            try:
                out += self._dot64(c.matrix(), x[part], transpose=True)
            finally:
                self.release(c)
        return out

    def _weighted_sqnorms(self, s):
        out = np.empty(self.n_coords)
        for a, b, B in self._blocks():
            B64, tmp = self._as64(B)
            out[a:b] = (
                (B64.multiply(B64) @ s)
                if sp.issparse(B64)
                else np.einsum("ij,ij,j->i", B64, B64, s)
            )
            self.host.free(tmp)
        return out

    def run_length(self) -> int:
        """Consecutive coordinates whose bytes are about one more read's cost
        (:data:`SEEK_BYTES`): the run a device's draw takes at once (duhl_cl.duhl.policies)."""
        mean = self.nbytes / max(self.n_coords, 1)
        return int(max(1, SEEK_BYTES // max(mean, 1)))

    # -- what a certificate needs to bound the coordinates it does not read
    def coordinate_norms(self, bias=0.0):
        """``||(c_i, bias)||`` of every coordinate, float64: the factor of the bound
        ``|c_i . (p - p')| <= ||c_i|| ||p - p'||`` (duhl_cl.duhl.bounds). Rounded up
        by 1e-5 relative: a sparse store's squares were summed in its values' precision
        (scipy keeps float32; 7e-8 off over 2e6 entries, measured). Computed once per
        bias (the cache's key asks for them block by block)."""
        got = self._norms.get(bias)
        if got is None:
            got = np.sqrt(self.data.sqnorm + bias * bias) * (1.0 + 1e-5)
            got.flags.writeable = False
            self._norms = {bias: got}
        return got

    @property
    def cached_mask(self) -> np.ndarray:
        """(n_coords,) bool: the coordinates the host cache holds."""
        return self.cache.coord_slot >= 0

    def disk_bytes(self, coords) -> int:
        """Bytes a :meth:`fetch` of ``coords`` would read from disk (the uncached ones)."""
        coords = np.asarray(coords, dtype=np.int64)
        return self.coordinate_bytes(coords[self.cache.coord_slot[coords] < 0])

    def coordinate_bytes(self, coords) -> int:
        """Bytes of the coordinates ``coords`` on disk, cached or not."""
        coords = np.asarray(coords, dtype=np.int64)
        if self.sparse:
            return int(self.lens[coords].astype(np.int64).sum()) * self.entry
        return len(coords) * self.dim * self.entry

    # -- the host cache
    def rank(self, z, exclude=None) -> int:
        """The host cache takes the highest gaps outside ``exclude`` (the device's
        coordinates); returns the bytes read from disk for it."""
        return self.cache.rank(z, exclude, chunk_entries=self.fetch_entries)

    def refresh_blocks(self, block_entries):
        """What the host refresh (unit A) walks this round: the cached coordinates in pieces
        of about ``block_entries`` entries (index arrays); without a cache, every coordinate
        in contiguous slices (read through the page cache).

        When the cache has not held every coordinate with a positive gap for two
        certificates in a row (an active set larger than the host budget), a window of the
        others is refreshed from disk too, :attr:`refresh_window` bytes a round (the device
        budget: what sequential streaming reads a round), rotating, so that a gap that
        opens there is seen before the next certificate: with a cache of 17% and a device
        budget of 20% under an SVM whose support vectors were half the rows, refreshing the
        cache alone left the estimate at 0.5 against a certified 87, and 1000 rounds did
        not converge (730 with the rest refreshed). The first certificates' active sets
        (a Lasso's at 0) are not yet that: refreshing half the store from disk each round
        then read 200 GB in 160 s of a 16 GiB fit.
        """
        if self.cache.capacity <= 0:
            return super().refresh_blocks(block_entries)
        pieces = _pieces(self.cache.cached, self.lens, block_entries)
        if self.cache.short_ranks >= 2:
            rest = np.flatnonzero(self.cache.coord_slot < 0)
            if len(rest):
                cost = np.maximum(self.lens[rest].astype(np.int64), 1) * self.entry
                start = self._window % len(rest)
                order = np.r_[start : len(rest), 0:start]
                k = int(np.searchsorted(np.cumsum(cost[order]), self.refresh_window, "right"))
                take = np.sort(rest[order[: max(k, 1)]])
                self._window = start + max(k, 1)
                pieces += _pieces(take, self.lens, block_entries)
        return pieces

    def close(self):
        """Free the cache and stop the read-ahead thread (the store's files stay open)."""
        self.cache.release()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def host_peak(self) -> int:
        return self.host.peak
