"""What every estimator shares: validation and the fit driver, on scikit-learn's BaseEstimator.

:class:`_Base` opens the device, binds the model to the data (duhl_cl.models), builds the
coordinate store (duhl_cl.store), runs the solver (duhl_cl.duhl.solver.solve) and sets the
fitted attributes; subclasses (duhl_cl.estimators.regressors, .classifiers) validate y and
make the model from their parameters (``_make_model``); their parameters are declared in
duhl_cl.estimators.params. ``NotFittedError`` is scikit-learn's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from ..device.build import build_seconds
from ..device.discovery import open_device
from ..device.faults import translating
from ..device.profiles import DeviceProfile, parse_budget, resolve_budget
from ..duhl.path import solve_path
from ..duhl.policies import POLICIES
from ..duhl.solver import host_threads, solve
from ..kernels import VARIANTS
from ..projection import project_fit
from ..store import CoordinateStore, check_X
from ..store.disk import DiskData
from ..store.tiered import TieredStore

__all__ = ["NotFittedError", "check_positive", "refuse_dropping_on_disk", "small_for_device"]

# A fit is small for the device where, in a wall time (less kernel builds) under SMALL_FIT
# seconds, its passes took less than SMALL_SHARE of it: the rest is the rounds' fixed costs
# (selection, placement, launches, read-backs, certificates), which a host solver does not
# pay (leukemia's and sms_spam's fits: 5-60 ms, the passes 10-60% of them; scikit-learn and
# liblinear 3-25 ms on the same 2-core machine).
SMALL_FIT = 0.1
SMALL_SHARE = 0.5


def small_for_device(history, seconds) -> tuple[float, str | None]:
    """The share of ``seconds`` (a fit's wall time) the device's passes took (``pass_time``
    of the ``history`` records), and a note when the fit is small for the device (else
    None)."""
    passes = sum(r.get("pass_time", 0.0) for r in history)
    share = passes / seconds if seconds > 0 else 0.0
    if not history or seconds >= SMALL_FIT or share >= SMALL_SHARE:
        return share, None
    return share, (
        f"small for the device: its passes took {share:.0%} of the fit's {seconds * 1e3:.1f} ms "
        f"over {len(history)} rounds, the rest being the rounds' fixed costs (selection, "
        f"launches, read-backs, certificates); a host solver (scikit-learn, liblinear) may be "
        f"faster on a problem this size"
    )


class _Base(BaseEstimator):
    """Validation and the fit driver shared by every estimator (scikit-learn's
    BaseEstimator gives the parameter protocol: get_params, set_params, clone, repr)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.required = True
        return tags

    def data_layout(self) -> str:
        """The layout of an on-disk store this estimator reads (``duhl_cl.store.convert(...,
        layout=est.data_layout())``): "cols" for a model whose coordinates are the features
        (Lasso, ElasticNet, Ridge, l1 logistic regression), "rows" for one whose coordinates
        are the samples (the SVMs, l2 logistic regression)."""
        return "cols" if self._make_model(np.zeros((1, 1))).primal else "rows"

    def _check_fitted(self):
        check_is_fitted(self, "coef_")

    # -- validation
    def _check_common_params(self):
        for name in ("tol",):
            val = getattr(self, name)
            if not isinstance(val, (int, float, np.floating)) or not val >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {val!r}")
        if self.tol == 0:
            # Accepted, as scikit-learn does: a certified gap of exactly 0 is rare in floating
            # point, so such a fit usually runs to max_iter (or max_time); say so up front.
            warnings.warn(
                f"tol=0: the fit stops only at a certified gap of exactly 0, so it will most "
                f"likely run all max_iter={self.max_iter} rounds; pass tol > 0 (e.g. 1e-10) "
                f"to stop at a tolerance",
                UserWarning,
                stacklevel=4,
            )
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if self.max_time is not None and not (
            isinstance(self.max_time, (int, float)) and self.max_time > 0
        ):
            raise ValueError(
                f"max_time must be None or a number of seconds > 0, got {self.max_time!r}"
            )
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.policy!r}")
        ppr = self.passes_per_round
        if ppr != "auto" and (
            isinstance(ppr, bool) or not isinstance(ppr, (int, np.integer)) or ppr < 1
        ):
            raise ValueError(f"passes_per_round must be an integer >= 1 or 'auto', got {ppr!r}")
        if self.kernel_variant not in (None, *VARIANTS):
            raise ValueError(
                f"kernel_variant must be None (the profile's) or one of "
                f"{', '.join(map(repr, VARIANTS))}, got {self.kernel_variant!r}"
            )
        if self.dtype not in (None, "float32", "float64", np.float32, np.float64):
            raise ValueError(f"dtype must be None, 'float32' or 'float64', got {self.dtype!r}")
        # Its form only (a percentage of 1 byte is still valid), before the data is converted;
        # the bytes, and the warnings on what is used, come once the store is built.
        parse_budget(self.memory_budget, 1)
        parse_budget(self.host_budget, 1, "host_budget")

    def _check_X_predict(self, X):
        self._check_fitted()
        X = check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return X

    # -- the fit driver
    def _open(self, X=None):
        """Check the parameters and open the device: (device, dtype, refine); an on-disk
        store's precision is its own (``dtype`` None) or must be it."""
        self._check_common_params()
        if (
            isinstance(self.device, (str, DeviceProfile))
            or self.device is None
            or hasattr(self.device, "__fspath__")
        ):
            device = open_device(self.device, emulate=self.emulate)
        else:
            device = open_device(self.device)
        dtype = self.dtype or device.profile.precision
        if isinstance(X, DiskData) and self.dtype is None:
            dtype = X.dtype
        dtype = np.dtype(dtype)
        if dtype == np.float64 and not device.fp64:
            raise ValueError(
                f"dtype float64 needs a device with cl_khr_fp64, and {device.info.name} has "
                f"none; use dtype='float32'"
            )
        # The default precision (the profile's) finishes in float64 where float32 stalls and
        # the device has fp64; an explicit dtype is kept (and the warning says why it stalled).
        refine = "float64" if self.dtype is None and dtype == np.float32 and device.fp64 else None
        return device, dtype, refine

    def _prepare(self, X, y_model, model, sample_weight=None):
        """Open the device, bind the model, build the store: (device, dtype, store, X, refine,
        keep)."""
        device, dtype, refine = self._open(X)
        s, keep = sample_weight, None
        if s is not None and not model.primal and not np.all(s > 0):
            refuse_dropping_on_disk(X)
            # A dual model's sample of weight 0 has the box [0, 0]: it drops out of the store.
            keep = np.flatnonzero(s > 0)
            X, y_model, s = X[keep], y_model[keep], s[keep]
        model.setup(X, y_model, self.fit_intercept, s)
        labels = y_model if not model.primal else None
        store = self._make_store(X, model.primal, dtype, labels, getattr(model, "bias", 0.0),
                                 s if model.primal else None)  # fmt: skip
        return device, dtype, store, X, refine, keep

    def _make_store(self, X, primal, dtype, labels, bias, row_weights):
        """The fit's store: in memory (duhl_cl.store.CoordinateStore), or over an on-disk
        store with a host cache under ``host_budget`` (duhl_cl.store.tiered)."""
        if isinstance(X, DiskData):
            return TieredStore(
                X, primal=primal, dtype=dtype, labels=labels, bias=bias,
                row_weights=row_weights,
                host_budget=parse_budget(self.host_budget, X.nbytes, "host_budget"),
            )  # fmt: skip
        return CoordinateStore(X, primal=primal, dtype=dtype, labels=labels, bias=bias,
                               row_weights=row_weights)  # fmt: skip

    def _fit(self, X, y_model, model, callback=None, sample_weight=None):
        device, dtype, store, X, refine, keep = self._prepare(X, y_model, model, sample_weight)
        return self._fit_bound(model, store, device, dtype, refine, keep, X, callback)

    def _fit_bound(self, model, store, device, dtype, refine, keep, X, callback):
        """Solve a bound model (or a duhl_cl.duhl.ovr.OneVsRest) and set the fitted
        attributes; ``keep``: the samples a dual model kept (None: all)."""
        alpha0, b00 = None, 0.0
        # A warm start needs the same coordinates: for a dual model, the same samples kept.
        warm = getattr(self, "_warm", None)
        shape = (model.n_coords,)
        if getattr(model, "n_classes", 1) > 1:
            shape = (model.n_classes, model.n_coords)
        if self.warm_start and warm is not None and np.shape(warm[0]) == shape:
            if (warm[2] is None and keep is None) or (
                warm[2] is not None and keep is not None and np.array_equal(warm[2], keep)
            ):
                alpha0, b00 = warm[0], warm[1]
        built = build_seconds()
        try:
            with host_threads(device.profile.host_threads):
                result = self._solve(model, store, device, alpha0, b00, callback, refine)
        finally:
            store.close()  # a disk tier's host cache
        # The kernels are built on first use (once per process): the first fit on a device
        # pays for the compiler, and says how much of its time that was.
        built = build_seconds() - built
        self._warm = (result.alpha, result.intercept, keep)
        # The intercept: b0 (primal), or the bias feature's weight times its value (dual).
        coef = result.alpha.copy() if model.primal else result.shared[..., :-1].copy()
        intercept = np.asarray(result.intercept, dtype=np.float64)
        self._set_solution(coef, intercept if self.fit_intercept else np.zeros_like(intercept))
        one_vs_rest = result.class_gaps is not None
        self.dual_gap_ = result.class_gaps.copy() if one_vs_rest else result.gap
        self.objective_ = result.class_objectives.copy() if one_vs_rest else result.objective
        self.n_iter_ = result.n_iter
        self.history_ = result.history
        self.converged_ = result.converged
        self.device_ = device.label()
        self.stats_ = {
            "bytes_h2d": result.bytes_h2d,
            "bytes_d2h": result.bytes_d2h,
            "ledger_peak": result.ledger_peak,
            "bank_peak": result.bank_peak,
            "time": result.time,
            "kernel_build_time": built,
            "stop_reason": result.stop_reason,
            "gap_target": float(self.tol) * model.scale,
            "dtype": str(dtype),
            "emulated": device.emulated,
            "kernel_variant": result.kernel_variant,
            "pool_in_place": result.pool_in_place,
            "atomics": result.atomics,
            "budget": result.budget,
            "policy": self.policy,
            "entry_bytes": result.entry_bytes,
            "refinement": result.refinement,
            "solver": result.solver,
            "newton_steps": result.newton_steps,
            # An on-disk store (duhl_cl.store.tiered): bytes read from its files, the host
            # ledger's peak and budget, and the incoming coordinates by level.
            "bytes_disk": store.bytes_disk,
            "host_peak": store.host_peak,
            "host_budget": getattr(store, "host_budget", None),
            "in_from_host": store.n_from_host,
            "in_from_disk": store.n_from_disk,
        }
        self.stats_["device_share"], self.stats_["small_for_device"] = small_for_device(
            result.history, result.time - built
        )
        # The same rounds on the profile's bandwidths: a model, labelled as one.
        self.stats_["projected"] = dataclasses.asdict(
            project_fit(result.history, self.stats_, device.profile)
        )
        self.n_features_in_ = X.shape[1]
        if result.error is not None:
            # A callback raised: the model so far is stored (above), then the error goes on.
            raise result.error
        return self

    def _fit_path(self, X, y, model, penalties, coef_init=None, sample_weight=None):
        """The path of ``penalties`` (l1, l2) in one device session (duhl_cl.duhl.path);
        returns its PathPoints."""
        device, _, store, X, refine, _ = self._prepare(X, y, model, sample_weight)
        budget = resolve_budget(self.memory_budget, store.nbytes, device.profile)
        with host_threads(device.profile.host_threads), translating(device, budget), \
                contextlib.closing(store):  # fmt: skip
            points, _ = solve_path(
                model, store, device, penalties, tol=float(self.tol),
                max_iter=int(self.max_iter), budget=budget,
                random_state=self.random_state, alpha0=coef_init, policy=self.policy,
                max_time=self.max_time,
                passes_per_round=self.passes_per_round, kernel_variant=self.kernel_variant,
                refine_dtype=refine, verbose=self.verbose,
            )  # fmt: skip
        return points

    def _solver_for(self, model, store):
        """The solve function for this fit (duhl_cl.duhl.solver.solve's signature); the
        logistic regression's L1 penalty has its own (duhl_cl.duhl.prox_newton)."""
        return solve

    def _set_solution(self, coef, intercept):
        self.coef_, self.intercept_ = coef, float(intercept)

    def _solve(self, model, store, device, alpha0, b00, callback, refine=None):
        return self._solver_for(model, store)(
            model,
            store,
            device,
            tol=float(self.tol),
            max_iter=int(self.max_iter),
            max_time=self.max_time,
            random_state=self.random_state,
            alpha0=alpha0,
            intercept0=b00,
            verbose=self.verbose,
            callback=callback,
            budget=resolve_budget(self.memory_budget, store.nbytes, device.profile),
            policy=self.policy,
            passes_per_round=self.passes_per_round,
            kernel_variant=self.kernel_variant,
            refine_dtype=refine,
        )


def refuse_dropping_on_disk(X):
    """A dual model leaves the samples of weight 0 out of its store: not of an on-disk one."""
    if isinstance(X, DiskData):
        raise ValueError(
            "sample_weight has zeros: a dual model leaves such samples out, which an on-disk "
            "store cannot do in place; drop them when converting, or give them a small "
            "positive weight"
        )


def check_positive(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.number))
        or not value > 0
        or not np.isfinite(value)
    ):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)
