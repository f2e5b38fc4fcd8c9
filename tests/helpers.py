"""Helpers the test modules share (not fixtures)."""

import numpy as np

import duhl_cl as dc
from duhl_cl.device.discovery import host_cpu_profile


def edited_profile(directory, replacements, name="edited.toml", base=None):
    """A copy of a shipped profile (default: the host CPU's, pocl-cpu or intel-cpu) with each
    (old, new) text replaced, written to ``directory / name``; every ``old`` must be in the
    profile (so an edit cannot silently miss)."""
    text = open(dc.load_profile(base or host_cpu_profile()).path).read()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = directory / name
    path.write_text(text)
    return path


def housing_like(m=2000, seed=0):
    """Correlated standardised features and a target of order 1e6 (cal_housing's dollars
    x 10), where a float32 Lasso with a small alpha meets its floor (float32 coefficients
    cannot make |X^T r / m| meet alpha) while float64 converges in a few rounds."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.standard_normal((m, 4))
    mixed = base[:, :2] @ [[1.0, 0.2], [0.1, 1.0]] + 0.2 * rng.standard_normal((m, 2))
    X = np.column_stack([base, mixed, 3 * base[:, 2:] + 0.6 * rng.standard_normal((m, 2))])
    y = 2e6 + 8e5 * (X @ rng.standard_normal(8)) / 3 + 5e5 * rng.standard_normal(m)
    return (X - X.mean(0)) / X.std(0), y


def repeated_margin_svm(n0=2048, d=128, k=32, seed=0):
    """A separable problem with a margin (the rows nearest the boundary dropped, so that the
    support vectors are a small part), its rows repeated ``k`` times: the repeated problem
    with C / k has the small one's optimum, and its copies give a hinge SVM a degenerate
    dual that a rotating working set keeps moving. Returns (X0, y0, X, y)."""
    rng = np.random.default_rng(seed)
    # (float32 values: the default precision's store holds X exactly)
    X0 = (rng.standard_normal((8 * n0, d)) / np.sqrt(d)).astype(np.float32).astype(np.float64)
    s = X0 @ rng.standard_normal(d)
    keep = np.sort(np.argsort(-np.abs(s))[:n0])
    X0, y0 = X0[keep], np.where(s[keep] > 0, 1, 0)
    return X0, y0, np.tile(X0, (k, 1)), np.tile(y0, k)
