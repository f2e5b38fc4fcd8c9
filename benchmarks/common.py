"""What the benchmark scripts share: the data directory, the synthetic Lasso problem, a
printer that keeps the table for its file, pyplot (when installed), and the estimators'
tolerance scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import duhl_cl as dc

# ../shared/data beside the checkout, when present (tests never need it).
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

_LINES: list = []


def lasso_problem(n, d, seed=0):
    """Dense n x d float32 X (column-major, as a primal solver's host store keeps it: no copy
    inside fit), y from a sparse truth plus noise (not centred), and alpha = 0.05 alpha_max
    of the centred y."""
    rng = np.random.default_rng(seed)
    X = np.asfortranarray(rng.standard_normal((n, d), dtype=np.float32))
    truth = np.zeros(d)
    k = max(10, d // 400)
    truth[rng.choice(d, k, replace=False)] = rng.choice([-1.0, 1.0], k) * rng.uniform(0.5, 2.0, k)
    y = X @ truth + 0.5 * rng.standard_normal(n)
    return X, y, 0.05 * alpha_max(X, y - y.mean())


def alpha_max(X, y):
    """The smallest Lasso alpha with an all-zero solution (no intercept), for centred y."""
    return float(np.max(np.abs(X.T @ y.astype(X.dtype)))) / X.shape[0]


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
