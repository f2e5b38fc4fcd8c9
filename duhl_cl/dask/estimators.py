"""The distributed estimators: duhl_cl's estimators over a Dask cluster, one solver per worker.

Each class takes the parameters of its single-machine class (duhl_cl.estimators) and
``client`` (default: the current distributed client), ``n_partitions`` (default: one per
worker) and ``local_rounds`` ("auto", or local rounds per outer round; see
duhl_cl.dask.cocoa). ``fit(X, y)`` takes a dask array (dense, or of scipy.sparse chunks)
and y as a dask array or an ndarray, or a list of on-disk stores (duhl_cl.store; or a dict
{worker address: [paths]}) with y from the stores. The fitted attributes are the
single-machine ones (coef_, intercept_, dual_gap_, objective_, n_iter_: outer rounds,
history_: one record per outer round, stats_); :meth:`to_local` gives the single-machine
estimator with the same fit. predict, decision_function and score take dask arrays and
return dask arrays (score: a number), or arrays in memory.

history_ has one record per outer round: round, gap and objective (certified, of the state
after the round), time (since the fit began), local_rounds (per partition), round_time (the
outer round's wall time on the driver), work_time (the slowest partition's local rounds),
cert_time (the slowest partition's host passes: its certificate part and its contribution),
overhead_time (round_time - work_time: what local work is sized against), comm_time
(round_time less the slowest partition's work and host passes: messages and the driver's
sums), bytes_to_workers and bytes_from_workers,
device_bytes_h2d and device_ledger_peak (per partition, since its actor started), workers
(each partition's), event (None, or what happened: a worker lost and the partitions started
again). stats_: time, stop_reason, gap_target, n_partitions, partitions (each one's worker,
device, budget, dtype, coordinates), bytes_to_workers, bytes_from_workers, start_gap,
events, local_rounds, policy.

The driver (the client's process) holds y, the sample weights and the coefficients (O(n) +
O(d) floats), never X. Classifiers with more than two classes fit one-vs-rest, one
distributed fit per class in turn.
"""

from __future__ import annotations

import copy
import types

import numpy as np
from scipy.special import expit

from ..estimators import classifiers as _cls
from ..estimators import regressors as _reg
from ..estimators.params import COMMON_DOC, make_init
from ..store import (
    check_sample_weight,
    check_y_classes,
    check_y_regression,
    class_weight_values,
    class_weights,
)
from .cocoa import fit_cocoa
from .partitions import array_partitions, check_dask_X, is_dask_array, store_partitions

__all__ = ["Lasso", "ElasticNet", "Ridge", "LinearSVC", "LogisticRegression"]

DASK_PARAMS = (("client", None), ("n_partitions", None), ("local_rounds", "auto"))
DASK_DOC = """
    client : distributed.Client or None
        The cluster to fit on; None: the current client (distributed.get_client()).
    n_partitions : int or None
        Partitions of the coordinates (rows for the SVMs and l2 logistic regression,
        columns for Lasso, ElasticNet, Ridge and l1 logistic regression); None: one per
        worker. A list of on-disk stores is one partition per store.
    local_rounds : int or "auto"
        Local DuHL rounds per outer round; "auto": as many as take about as long as an
        outer round's communication and certificate (duhl_cl.dask.cocoa).
"""


def _compute(a):
    """A dask collection's values (an O(n) vector: y or weights) on the driver."""
    if a is None:
        return None
    if hasattr(a, "compute") and hasattr(a, "dask"):
        a = a.compute()
    return np.asarray(a)


class _Dask:
    """The distributed fit and the dask-array predictions, over a single-machine class."""

    _local_class = None

    def _get_client(self):
        if self.client is not None:
            return self.client
        try:
            from distributed import get_client

            return get_client()
        except ValueError:
            raise ValueError(
                "no Dask client: pass client=... or create one first (distributed.Client(), "
                "e.g. Client(LocalCluster(n_workers=2)))"
            ) from None

    def _check_dask_params(self):
        lr = self.local_rounds
        if lr != "auto" and (isinstance(lr, bool) or not isinstance(lr, (int, np.integer))
                             or lr < 1):  # fmt: skip
            raise ValueError(f"local_rounds must be an integer >= 1 or 'auto', got {lr!r}")
        k = self.n_partitions
        if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer))
                              or k < 1):  # fmt: skip
            raise ValueError(f"n_partitions must be None or an integer >= 1, got {k!r}")
        if (
            self.device is not None
            and not isinstance(self.device, str)
            and not hasattr(self.device, "__fspath__")
        ):
            raise ValueError(
                "device must be None (each worker's own: its duhl-cl:PROFILE resource or "
                "$DUHL_CL_DEVICE), a profile name or a path; an opened device cannot be sent "
                "to the workers"
            )

    def _inputs(self, X, y, sample_weight):
        """(kind, X, shape, y, sample_weight, store dtype): X a dask array or stores."""
        self._check_common_params()
        self._check_dask_params()
        if is_dask_array(X):
            X, _ = check_dask_X(X)
            return "array", X, X.shape, _compute(y), _compute(sample_weight), None
        if isinstance(X, (list, tuple, dict)):
            return "stores", X, None, _compute(y), _compute(sample_weight), None
        raise TypeError(
            f"{type(self).__name__} (duhl_cl.dask) fits a dask array (dask.array.from_array, "
            f"or a collection read on the workers) or a list of on-disk stores, got "
            f"{type(X).__name__}; for data in this process's memory use duhl_cl."
            f"{type(self).__name__}"
        )

    def _partitions(self, client, kind, X, primal):
        if kind == "array":
            K = self.n_partitions or max(len(client.scheduler_info().get("workers", {})), 1)
            return array_partitions(client, X, primal, int(K)), X.shape, None, None
        return store_partitions(client, X, primal)

    def _fit_binary(self, client, parts, shape, model, y_model, s, callback, warm=None):
        """One distributed fit of ``model`` (not set up) on y_model (+-1 or real)."""
        stub = types.SimpleNamespace(shape=shape)
        dm = copy.deepcopy(model)
        if s is not None and not dm.primal and not np.all(s > 0):
            raise ValueError(
                "sample_weight has zeros: a dual model leaves such samples out, which a "
                "distributed fit does not do; drop them from X and y, or give them a small "
                "positive weight"
            )
        dm.setup(stub, y_model, self.fit_intercept, s)
        for p in parts:
            if dm.primal:
                p.extra = {"y": y_model, "sample_weight": s}
            else:
                p.extra = {"y": y_model[p.first : p.end],
                           "sample_weight": None if s is None else s[p.first : p.end]}  # fmt: skip
        rs = self.random_state
        seed = rs if isinstance(rs, (int, np.integer)) or rs is None else int(
            np.random.default_rng(rs).integers(2**31)
        )  # fmt: skip
        spec = {
            "model": model, "fit_intercept": self.fit_intercept,
            "dtype": self.dtype, "device": None if self.device is None else str(self.device),
            "emulate": self.emulate, "memory_budget": self.memory_budget,
            "host_budget": self.host_budget, "policy": self.policy,
            "passes_per_round": self.passes_per_round, "kernel_variant": self.kernel_variant,
            "seed": None if seed is None else int(seed),
        }  # fmt: skip
        alpha0, b00 = (None, 0.0) if warm is None else warm
        res = fit_cocoa(
            dm, client, parts, spec, tol=float(self.tol), max_iter=int(self.max_iter),
            max_time=self.max_time, local_rounds=self.local_rounds, callback=callback,
            verbose=self.verbose, alpha0=alpha0, intercept0=b00,
        )  # fmt: skip
        return dm, res

    def _store_fit(self, results, n_features):
        """The fitted attributes from one result per problem (one, or one per class)."""
        dms = [dm for dm, _ in results]
        rs = [r for _, r in results]
        coefs = [r.alpha.copy() if dm.primal else r.shared[:-1].copy() for dm, r in results]
        icpt = [r.intercept if self.fit_intercept else 0.0 for r in rs]
        multi = len(rs) > 1
        self._set_solution(np.array(coefs) if multi else coefs[0],
                           np.array(icpt) if multi else icpt[0])  # fmt: skip
        self.dual_gap_ = np.array([r.gap for r in rs]) if multi else rs[0].gap
        self.objective_ = np.array([r.objective for r in rs]) if multi else rs[0].objective
        self.n_iter_ = max(r.n_iter for r in rs)
        hist = []
        for k, r in enumerate(rs):
            for rec in r.history:
                hist.append(dict(rec, **({"class": k} if multi else {})))
        self.history_ = hist
        self.converged_ = all(r.converged for r in rs)
        reasons = [r.stop_reason for r in rs]
        self.stats_ = {
            "time": sum(r.time for r in rs),
            "stop_reason": "converged" if self.converged_ else next(
                x for x in reasons if x != "converged"),
            "gap_target": float(self.tol) * max(dm.scale for dm in dms),
            "n_partitions": len(rs[0].workers),
            "partitions": rs[0].workers,
            "bytes_to_workers": sum(r.bytes_to_workers for r in rs),
            "bytes_from_workers": sum(r.bytes_from_workers for r in rs),
            "start_gap": rs[0].start_gap,
            "events": [e for r in rs for e in r.events],
            "local_rounds": self.local_rounds,
            "policy": self.policy,
        }  # fmt: skip
        self._warm = [(r.alpha, r.intercept) for r in rs]
        self.n_features_in_ = n_features
        return self

    def _warm_for(self, k, shape):
        warm = getattr(self, "_warm", None)
        if not self.warm_start or warm is None or k >= len(warm):
            return None
        return warm[k] if np.shape(warm[k][0]) == shape else None

    # -- predictions over dask arrays
    def _dask_X(self, X):
        self._check_fitted()
        X, _ = check_dask_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        if len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        return X

    def _linear(self, X):
        """X @ coef_.T + intercept_ block by block: (n,) or (n, K), a dask array."""
        coef = np.atleast_2d(self.coef_)
        icpt = np.atleast_1d(np.asarray(self.intercept_, dtype=np.float64))
        if coef.shape[0] == 1:
            return X.map_blocks(_block_linear, coef[0], icpt[0], drop_axis=1, dtype=np.float64)
        return X.map_blocks(_block_linear, coef.T, icpt, chunks=(X.chunks[0], (coef.shape[0],)),
                            dtype=np.float64)  # fmt: skip

    def to_local(self):
        """The single-machine estimator (duhl_cl's) with these parameters and this fit."""
        names = {n for n, _ in DASK_PARAMS}
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in names}
        est = self._local_class(**params)
        for k, v in self.__dict__.items():
            if k.endswith("_") and not k.startswith("_"):
                setattr(est, k, copy.deepcopy(v))
        return est

    def __sklearn_clone__(self):
        # The same client, by reference: a client does not copy (scikit-learn's clone
        # deep-copies the parameters; GridSearchCV clones).
        client, self.client = self.client, None
        try:
            new = super().__sklearn_clone__()
        finally:
            self.client = client
        new.client = client
        return new

    def __getstate__(self):
        # A client does not pickle (joblib and pickle copy estimators): it is left out.
        state = super().__getstate__()
        state["client"] = None
        return state


def _block_linear(block, coef, icpt):
    return np.asarray(block @ coef, dtype=np.float64) + icpt


class _DaskRegressor(_Dask):
    def fit(self, X, y=None, sample_weight=None, callback=None):
        """Fit on a dask array X (n_samples, n_features) and y (n_samples,), or on a list of
        on-disk stores (y from the stores unless given); see the module docstring."""
        kind, X, shape, y, s, _ = self._inputs(X, y, sample_weight)
        client = self._get_client()
        parts, shape, y_st, _ = self._partitions(client, kind, X, True)
        if y is None:
            y = y_st
        if y is None:
            raise ValueError("y is required (the stores hold no labels)")
        y = check_y_regression(y, shape[0])
        s = check_sample_weight(s, shape[0])
        stub = types.SimpleNamespace(shape=shape)
        model = self._make_model(stub, s)
        res = self._fit_binary(client, parts, shape, model, y, s, callback,
                               self._warm_for(0, (shape[1],)))  # fmt: skip
        return self._store_fit([res], shape[1])

    def predict(self, X):
        """Predictions (n_samples,): a dask array for a dask array X."""
        if is_dask_array(X):
            return self._linear(self._dask_X(X))
        return super().predict(X)

    def score(self, X, y, sample_weight=None):
        """R^2 of the predictions (a float), computed on the workers for dask arrays."""
        if not is_dask_array(X):
            return super().score(X, y, sample_weight)
        import dask.array as da

        p = self.predict(X)
        y = da.asarray(y).rechunk(p.chunks) if is_dask_array(y) else da.from_array(
            np.asarray(y, dtype=np.float64), chunks=p.chunks)  # fmt: skip
        w = 1.0 if sample_weight is None else da.asarray(sample_weight).rechunk(p.chunks)
        sw = (w * da.ones_like(y)).sum()
        mean = (w * y).sum() / sw
        u, v = ((w * (y - p) ** 2).sum(), (w * (y - mean) ** 2).sum())
        u, v = da.compute(u, v)
        return float(1 - u / v) if v > 0 else (1.0 if u == 0 else 0.0)


class _DaskClassifier(_Dask):
    def fit(self, X, y=None, sample_weight=None, callback=None):
        """Fit on a dask array X and labels y, or a list of on-disk stores (y from the
        stores unless given). Two classes: one problem; more: one-vs-rest, a fit per class."""
        kind, X, shape, y, s, _ = self._inputs(X, y, sample_weight)
        client = self._get_client()
        primal = self._make_model(types.SimpleNamespace(shape=(1, 1)), None).primal
        parts, shape, y_st, _ = self._partitions(client, kind, X, primal)
        if y is None:
            y = y_st
        if y is None:
            raise ValueError("y is required (the stores hold no labels)")
        stub = types.SimpleNamespace(shape=shape)
        classes, y_idx = check_y_classes(y, shape[0])
        s = check_sample_weight(s, shape[0])
        shape_a = (shape[1],) if primal else (shape[0],)
        if len(classes) == 2:
            cw = class_weights(self.class_weight, classes, y_idx, s)
            sk = s if cw is None else (cw if s is None else s * cw)
            ypm = np.where(y_idx == 1, 1.0, -1.0)
            results = [self._fit_binary(client, parts, shape, self._make_model(stub, sk), ypm,
                                        sk, callback, self._warm_for(0, shape_a))]  # fmt: skip
        else:
            cw = class_weight_values(self.class_weight, classes, y_idx, s)
            results = []
            for k in range(len(classes)):
                yk, sk = _cls.ovr_problem(y_idx, k, s, cw)
                results.append(self._fit_binary(client, parts, shape, self._make_model(stub, sk),
                                                yk, sk, callback, self._warm_for(k, shape_a)))  # fmt: skip
        self.classes_ = classes
        return self._store_fit(results, shape[1])

    def decision_function(self, X):
        """Signed distances (n_samples,) or (n_samples, n_classes): a dask array for a
        dask array X."""
        if is_dask_array(X):
            return self._linear(self._dask_X(X))
        return super().decision_function(X)

    def predict(self, X):
        """Predicted labels (n_samples,): a dask array for a dask array X."""
        if not is_dask_array(X):
            return super().predict(X)
        f = self.decision_function(X)
        classes = self.classes_
        if f.ndim == 2:
            return f.map_blocks(lambda b: classes[np.argmax(b, axis=1)], drop_axis=1,
                                dtype=classes.dtype)  # fmt: skip
        return f.map_blocks(lambda b: classes[(b > 0).astype(int)], dtype=classes.dtype)

    def score(self, X, y, sample_weight=None):
        """Accuracy (a float), computed on the workers for dask arrays."""
        if not is_dask_array(X):
            return super().score(X, y, sample_weight)
        import dask.array as da

        p = self.predict(X)
        y = da.asarray(y).rechunk(p.chunks) if is_dask_array(y) else da.from_array(
            np.asarray(y), chunks=p.chunks)  # fmt: skip
        hit = (p == y).astype(np.float64)
        if sample_weight is None:
            return float(hit.mean().compute())
        w = da.asarray(sample_weight).rechunk(p.chunks)
        return float(((hit * w).sum() / w.sum()).compute())


_PARAMS = "\n\n    Parameters\n    ----------\n"


def _doc(local, extra):
    head = local.__doc__.split(_PARAMS)[0]
    return (f"{head} Distributed over a Dask cluster (duhl_cl.dask)." + _PARAMS + extra
            + DASK_DOC.strip("\n").replace("\n", "\n", 1) + "\n" + COMMON_DOC)  # fmt: skip


class _DaskProba:
    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes): a dask array for a dask array X."""
        if not is_dask_array(X):
            return super().predict_proba(X)
        f = self.decision_function(X)
        k = len(self.classes_)
        chunks = (f.chunks[0], (k,))
        if f.ndim == 1:
            return f.map_blocks(_binary_proba, new_axis=1, chunks=chunks, dtype=np.float64)
        return f.map_blocks(_ovr_proba, chunks=chunks, dtype=np.float64)


def _binary_proba(f):
    p = expit(f)
    return np.column_stack([1 - p, p])


def _ovr_proba(f):
    p = expit(f)
    return p / p.sum(axis=1, keepdims=True)


class Lasso(_DaskRegressor, _reg.Lasso):
    __doc__ = _doc(_reg.Lasso, "    alpha : float > 0\n")
    __init__ = make_init([("alpha", 1.0)], DASK_PARAMS)
    _local_class = _reg.Lasso


class ElasticNet(_DaskRegressor, _reg.ElasticNet):
    __doc__ = _doc(_reg.ElasticNet, "    alpha : float > 0\n    l1_ratio : float in [0, 1]\n")
    __init__ = make_init([("alpha", 1.0)], [("l1_ratio", 0.5), *DASK_PARAMS])
    _local_class = _reg.ElasticNet


class Ridge(_DaskRegressor, _reg.Ridge):
    __doc__ = _doc(_reg.Ridge, "    alpha : float > 0\n")
    __init__ = make_init([("alpha", 1.0)], DASK_PARAMS)
    _local_class = _reg.Ridge


class LinearSVC(_DaskClassifier, _cls.LinearSVC):
    __doc__ = _doc(_cls.LinearSVC, "    C : float > 0\n    loss : 'hinge' or 'squared_hinge'\n"
                   "    intercept_scaling : float > 0\n    class_weight : None, 'balanced' or dict\n")  # fmt: skip
    __init__ = make_init(
        [("C", 1.0)],
        [("loss", "squared_hinge"), ("intercept_scaling", 1.0), ("class_weight", None),
         *DASK_PARAMS],
    )  # fmt: skip
    _local_class = _cls.LinearSVC


class LogisticRegression(_DaskProba, _DaskClassifier, _cls.LogisticRegression):
    __doc__ = _doc(_cls.LogisticRegression, "    penalty : 'l2' or 'l1'\n    C : float > 0\n"
                   "    intercept_scaling : float > 0\n    class_weight : None, 'balanced' or dict\n")  # fmt: skip
    __init__ = make_init(
        [("penalty", "l2")],
        [("C", 1.0), ("intercept_scaling", 1.0), ("class_weight", None), *DASK_PARAMS],
    )
    _local_class = _cls.LogisticRegression
