"""``duhl-cl convert``: a data file (or a directory of them) into an on-disk store.

The store (duhl_cl.store.disk) is what ``fit`` streams from disk when the data is larger
than host memory; :func:`duhl_cl.store.convert` writes it. On a terminal a progress line
is drawn on stderr; a summary line ends every conversion (stdout). An interrupted
conversion (Ctrl-C, 130) or a failed one (2) leaves nothing at STORE_DIR (an existing
store that ``--overwrite`` would have replaced stays as it was).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .train import _header_arg

__all__ = ["add_convert", "cmd_convert"]


def add_convert(sub):
    q = sub.add_parser(
        "convert",
        help="write a data file as an on-disk store that fit streams from disk",
        description="Write a data file (or a directory of them) as an on-disk store, the "
        "coordinates in the layout the model reads, for fit to stream from disk.",
    )
    q.add_argument(
        "input",
        metavar="INPUT",
        help="svmlight (.svm, .svm.gz, .libsvm, .txt), CSV (.csv, .csv.gz), .npy (labels in "
        "<stem>_y.npy or y.npy beside it), .h5 or .zarr (arrays X and y), or a directory of "
        "such files of one kind (rows concatenated in name order)",
    )
    q.add_argument(
        "store_dir",
        metavar="STORE_DIR",
        help="the store's directory (written; must not exist, unless --overwrite)",
    )
    q.add_argument(
        "--layout",
        required=True,
        choices=("rows", "cols"),
        help="rows: one coordinate per sample, for the dual models (svm-hinge, "
        "svm-squared-hinge, logistic-l2); cols: one per feature, for the primal models "
        "(lasso, elasticnet, ridge, logistic-l1)",
    )
    q.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="precision of the stored values (default float32)",
    )
    q.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing STORE_DIR (only once the new store is complete)",
    )
    q.add_argument("--target", help="CSV: name of the target column (default: the last)")
    _header_arg(q)
    q.set_defaults(func=cmd_convert)


class _Bar:
    """``converting INPUT: 42.0% 3.1 s`` redrawn on a terminal (at most 10 times a second)."""

    def __init__(self, label, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.label, self.t0, self.last, self.open = label, time.perf_counter(), 0.0, False

    def __call__(self, done, total):
        if not self.tty:
            return
        now = time.perf_counter()
        if now - self.last < 0.1 and done < total:
            return
        self.last = now
        pct = 100.0 * done / total if total else 100.0
        line = f"converting {self.label}: {pct:5.1f}%  {now - self.t0:.1f} s"
        self.stream.write("\r\033[K" + line[:160])
        self.stream.flush()
        self.open = True

    def end(self):
        if self.open:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.open = False


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # (not reached)


def summary(data, seconds):
    """``wrote DIR: 123 rows x 45 features, dense float32, cols layout, 1.2 MiB, 0.3 s``."""
    on_disk = sum(p.stat().st_size for p in Path(data.path).iterdir() if p.is_file())
    n, d = data.shape
    kind = (
        f"sparse {data.dtype.name} ({data.nnz} entries)"
        if data.sparse
        else (f"dense {data.dtype.name}")
    )
    return (f"wrote {data.path}: {n} rows x {d} features, {kind}, {data.layout} layout, "
            f"{_size(on_disk)}, {seconds:.1f} s")  # fmt: skip


def cmd_convert(args):
    """Convert; 0, or 130 on Ctrl-C (nothing written). Input errors raise to main (2)."""
    from ..store import convert

    bar = _Bar(args.input)
    t0 = time.perf_counter()
    try:
        data = convert(args.input, args.store_dir, layout=args.layout, dtype=args.dtype,
                       overwrite=args.overwrite, target=args.target, header=args.header,
                       progress=bar)  # fmt: skip
    except KeyboardInterrupt:
        bar.end()
        print(f"interrupted: the conversion is removed; {args.store_dir} is as it was",
              file=sys.stderr)  # fmt: skip
        return 130
    finally:
        bar.end()
    print(summary(data, time.perf_counter() - t0), flush=True)
    return 0
