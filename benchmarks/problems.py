"""The problems of the DuHL regime grid (benchmarks/duhl_vs_baselines.py), one place.

Each problem is a function returning a :class:`Problem`: the data (float32, as the device
stores it), the labels or targets, and ``make(**kw)``, the estimator with the problem's model
and regularisation (no intercept, so that a run's objective is the problem's alone). Real data
comes from ../shared/data (absent there: the problem is left out, with a note); the synthetic
text-like problem is generated here.

  lasso-dense        Lasso, dense 8000 x 40000, sparse truth, alpha = 0.05 alpha_max (peers.py)
  svm-dense          hinge SVM, dense 200000 x 1000, rows of unit expected norm, C = 1 (peers.py)
  a9a, w8a           hinge SVM and L2 logistic regression, C = 1
  review-lasso       review_polarity TF-IDF (2000 x 39659): Lasso on the centred +-1 labels,
                     alpha = 0.01 alpha_max (its support, ~1500 words, outgrows small budgets)
  review-svm         the same data, hinge SVM, C = 1
  sms-svm, sms-logistic   sms_spam TF-IDF (5574 x 8713): hinge SVM and L2 logistic, C = 1
  leukemia-lasso     leukemia (72 x 7129, dense), standardised: Lasso on the centred +-1
                     labels at alpha = 0.01 alpha_max; leukemia-logistic-l1: C = 1
  zipf-lasso, zipf-svm   synthetic text: 100000 x 200000 CSR, ~90 words a row (9.1M
                     nonzeros), Zipf column frequencies (frequent "words" in 10^4-10^5 rows,
                     most in a handful), TF-IDF-like rows of unit norm; Lasso at alpha =
                     0.02 alpha_max on a target from 1000 words of all frequencies, and a
                     hinge SVM (C = 1, 5% label noise)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from common import DATA, alpha_max, lasso_problem  # benchmarks/common.py

import duhl_cl as dc
from duhl_cl.io import load_svmlight


@dataclass
class Problem:
    name: str
    X: object  # ndarray (float32) or CSR/CSC float32
    y: np.ndarray
    make: Callable  # make(**estimator kwargs) -> estimator
    note: str = ""

    @property
    def data_bytes(self) -> int:
        X = self.X
        return int(X.data.nbytes + X.indices.nbytes) if sp.issparse(X) else int(X.nbytes)


def _lasso(alpha):
    return lambda **kw: dc.Lasso(alpha=alpha, fit_intercept=False, **kw)


def _svm(C=1.0):
    return lambda **kw: dc.LinearSVC(C=C, loss="hinge", fit_intercept=False, **kw)


def _logistic(C=1.0, penalty="l2"):
    return lambda **kw: dc.LogisticRegression(C=C, penalty=penalty, fit_intercept=False, **kw)


def lasso_dense(quick=False):
    X, y, alpha = lasso_problem(*((1000, 5000) if quick else (8000, 40000)))
    return Problem("lasso-dense", X, y - y.mean(), _lasso(alpha), "dense Lasso of peers.py")


def svm_dense(quick=False):
    n, d = (20000, 200) if quick else (200000, 1000)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, d), dtype=np.float32) * np.float32(1 / np.sqrt(d))
    y = np.where(X @ rng.standard_normal(d) > 0, 1.0, -1.0)
    y[rng.random(n) < 0.05] *= -1
    return Problem("svm-dense", X, y, _svm(), "dense hinge SVM of peers.py")


def _file(name):
    path = DATA / name
    if not path.exists():
        return None
    X, y = load_svmlight(path)
    return X.astype(np.float32).tocsr(), np.where(y > 0, 1.0, -1.0)


def _centred_lasso(name, X, y, frac, note):
    yc = y - y.mean()
    Xc = X.tocsc() if sp.issparse(X) else X
    return Problem(name, Xc, yc, _lasso(frac * alpha_max(Xc, yc)), note)


def file_problems(quick=False):
    """Every problem on ../shared/data that is present."""
    out = []
    for f in ("a9a", "w8a"):
        d = _file(f"{f}.svm.gz")
        if d is not None:
            out.append(Problem(f"{f}-svm", *d, _svm()))
            out.append(Problem(f"{f}-logistic", *d, _logistic()))
    d = _file("review_polarity_tfidf.svm.gz")
    if d is not None:
        out.append(_centred_lasso("review-lasso", *d, 0.01, "alpha = 0.01 alpha_max"))
        out.append(Problem("review-svm", *d, _svm()))
    d = _file("sms_spam_tfidf.svm.gz")
    if d is not None:
        out.append(Problem("sms-svm", *d, _svm()))
        out.append(Problem("sms-logistic", *d, _logistic()))
    d = _file("leukemia.svm.gz")
    if d is not None:
        X = d[0].toarray().astype(np.float64)
        sd = X.std(0)
        X = ((X - X.mean(0)) / np.where(sd > 0, sd, 1)).astype(np.float32)
        X = np.asfortranarray(X)
        out.append(_centred_lasso("leukemia-lasso", X, d[1], 0.01, "standardised"))
        out.append(Problem("leukemia-logistic-l1", X, d[1], _logistic(1.0, "l1"), "C = 1"))
    return out


def zipf_text(n=100000, d=200000, words_per_row=100, seed=7):
    """A TF-IDF-like CSR matrix with Zipf column frequencies, rows of unit norm."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(d) + 10.0) ** 1.1
    p /= p.sum()
    k = rng.poisson(words_per_row, n).clip(1)
    rows = np.repeat(np.arange(n), k)
    cols = rng.choice(d, size=int(k.sum()), p=p)
    X = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(n, d))
    X.sum_duplicates()  # term counts
    df = np.bincount(X.indices, minlength=d)
    idf = np.log((1 + n) / (1 + df)) + 1
    X.data = (np.log1p(X.data) * idf[X.indices]).astype(np.float32)
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.diags((1 / np.maximum(norms, 1e-12)).astype(np.float32)) @ X
    return X.tocsr().astype(np.float32), rng


def zipf_problems(quick=False):
    n, d = (20000, 40000) if quick else (100000, 200000)
    X, rng = zipf_text(n, d)
    # The target: 1000 words spread over all frequencies (log-uniform ranks), so that the
    # support holds frequent (large) and rare (small) columns alike.
    ranks = np.unique(np.exp(rng.uniform(0, np.log(d), 1000)).astype(int).clip(0, d - 1))
    truth = np.zeros(d)
    truth[ranks] = rng.choice([-1.0, 1.0], len(ranks)) * rng.uniform(0.5, 2.0, len(ranks))
    t = X @ truth
    y = t + 0.1 * np.std(t) * rng.standard_normal(n)
    y = y - y.mean()
    Xc = X.tocsc()
    lasso = Problem("zipf-lasso", Xc, y, _lasso(0.02 * alpha_max(Xc, y)), "alpha = 0.02 alpha_max")
    lab = np.where(X @ rng.standard_normal(d) > 0, 1.0, -1.0)
    lab[rng.random(n) < 0.05] *= -1
    return [lasso, Problem("zipf-svm", X, lab, _svm(), "C = 1, 5% label noise")]


MAKERS = {
    "lasso-dense": lambda q: [lasso_dense(q)],
    "svm-dense": lambda q: [svm_dense(q)],
    "files": file_problems,
    "zipf": zipf_problems,
}


def load(names, quick=False):
    """Problems by name (a problem's own name, or a group: lasso-dense, svm-dense, files,
    zipf, all)."""
    want = set(names)
    groups = list(MAKERS) if "all" in want else [g for g in MAKERS if g in want]
    out = []
    for g in MAKERS:
        if g in groups:
            out += MAKERS[g](quick)
    rest = want - set(MAKERS) - {"all"}
    if rest:
        pool = file_problems(quick) + zipf_problems(quick) if rest else []
        out += [p for p in pool if p.name in rest and p.name not in {q.name for q in out}]
        missing = rest - {p.name for p in out}
        if missing:
            raise SystemExit(f"unknown or absent problems: {', '.join(sorted(missing))}")
    return out
