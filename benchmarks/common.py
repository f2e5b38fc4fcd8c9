"""What the benchmark scripts share: the data directory, a printer that keeps the table for
its file, pyplot (when installed), and the estimators' tolerance scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import duhl_cl as dc

# ../shared/data beside the checkout, when present (tests never need it).
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

_LINES: list = []


def say(*args, **kw):
    """Print, and keep the line for the table file (:func:`write_table`)."""
    kw.pop("flush", None)
    text = " ".join(str(x) for x in args)
    _LINES.append(text)
    print(text, flush=True)


def write_table(path):
    Path(path).write_text("\n".join(_LINES) + "\n")


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None (with a note) when not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no plots: matplotlib is not installed; pip install '.[bench]')")
        return None
    return plt


def tol_scale(est, X, y):
    """The estimator's tol scale (duhl_cl.estimators), to turn a gap target into tol:
    C n for the SVMs, C n log 2 for dual logistic regression, ||y - y_mean||^2 / n for the
    Lasso (||y||^2 / n without an intercept)."""
    n = X.shape[0]
    if isinstance(est, dc.LinearSVC):
        return est.C * n
    if isinstance(est, dc.LogisticRegression):
        return est.C * n * np.log(2)
    yc = np.asarray(y, dtype=np.float64)
    if est.fit_intercept:
        yc = yc - yc.mean()
    return float(yc @ yc) / n
