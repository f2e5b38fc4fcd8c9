"""What every estimator shares: scikit-learn's parameter protocol, validation, the fit driver.

:class:`_Base` opens the device, binds the model to the data (duhl_cl.models), builds the
coordinate store (duhl_cl.store), runs the solver (duhl_cl.duhl.solver.solve) and sets the
fitted attributes; subclasses (duhl_cl.estimators.regressors, .classifiers) validate y and
make the model from their parameters (``_make_model``). ``COMMON_DOC`` documents the
parameters and attributes they all have.
"""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np

from ..device.discovery import open_device
from ..device.profiles import DeviceProfile, parse_budget
from ..duhl.policies import POLICIES
from ..duhl.solver import host_threads, solve
from ..kernels import VARIANTS
from ..projection import project_fit
from ..store import CoordinateStore, check_X

__all__ = ["NotFittedError", "COMMON_DOC", "check_positive"]


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit``."""


def _not_fitted(msg):
    # Where scikit-learn is installed, the error is also its NotFittedError, so that code
    # catching scikit-learn's exception (and its estimator checks) sees it.
    try:
        from sklearn.exceptions import NotFittedError as SkNotFitted
    except ImportError:
        return NotFittedError(msg)
    return type("NotFittedError", (NotFittedError, SkNotFitted), {"__module__": __name__})(msg)


class _Base:
    """Parameters, validation and the fit driver shared by every estimator."""

    _estimator_type = None

    # -- scikit-learn protocol without scikit-learn
    @classmethod
    def _get_param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD
        )

    def get_params(self, deep=True):
        return {k: getattr(self, k) for k in self._get_param_names()}

    def set_params(self, **params):
        valid = self._get_param_names()
        for k, v in params.items():
            if k not in valid:
                raise ValueError(
                    f"Invalid parameter {k!r} for estimator {type(self).__name__}; valid "
                    f"parameters are: {', '.join(valid)}"
                )
            setattr(self, k, v)
        return self

    def __repr__(self):
        defaults = {
            k: p.default for k, p in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if not (k in defaults and _same(defaults[k], v))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_is_fitted__(self):
        return hasattr(self, "coef_")

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it here costs nothing otherwise.
        from sklearn.utils import ClassifierTags, InputTags, RegressorTags, Tags, TargetTags

        tags = Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=True),
            input_tags=InputTags(sparse=True),
        )
        if self._estimator_type == "classifier":
            tags.classifier_tags = ClassifierTags(multi_class=False)
        else:
            tags.regressor_tags = RegressorTags()
        return tags

    def _check_fitted(self):
        if not hasattr(self, "coef_"):
            raise _not_fitted(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                f"appropriate arguments before using this estimator."
            )

    # -- validation
    def _check_common_params(self):
        for name in ("tol",):
            val = getattr(self, name)
            if not isinstance(val, (int, float, np.floating)) or not val >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {val!r}")
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
    def _fit(self, X, y_model, model, callback=None):
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
        dtype = np.dtype(dtype)
        if dtype == np.float64 and not device.fp64:
            raise ValueError(
                f"dtype float64 needs a device with cl_khr_fp64, and {device.info.name} has "
                f"none; use dtype='float32'"
            )
        model.setup(X, y_model, self.fit_intercept)
        labels = y_model if not model.primal else None
        store = CoordinateStore(
            X, primal=model.primal, dtype=dtype, labels=labels, bias=getattr(model, "bias", 0.0)
        )
        alpha0, b00 = None, 0.0
        if self.warm_start and hasattr(self, "_alpha") and len(self._alpha) == model.n_coords:
            alpha0, b00 = self._alpha, getattr(self, "_intercept0", 0.0)
        # The default precision (the profile's) finishes in float64 where float32 stalls and
        # the device has fp64; an explicit dtype is kept (and the warning says why it stalled).
        refine = "float64" if self.dtype is None and dtype == np.float32 and device.fp64 else None
        with host_threads(device.profile.host_threads):
            result = self._solve(model, store, device, alpha0, b00, callback, refine)
        self._alpha = result.alpha
        self._intercept0 = result.intercept
        if model.primal:
            coef, intercept = result.alpha.copy(), result.intercept
        else:
            coef, intercept = result.shared[:-1].copy(), float(result.shared[-1] * model.bias)
        self.coef_ = coef
        self.intercept_ = float(intercept) if self.fit_intercept else 0.0
        self.dual_gap_ = result.gap
        self.objective_ = result.objective
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
            "dtype": str(dtype),
            "emulated": device.emulated,
            "kernel_variant": result.kernel_variant,
            "budget": result.budget,
            "policy": self.policy,
            "entry_bytes": result.entry_bytes,
            "refinement": result.refinement,
        }
        # The same rounds on the profile's bandwidths: a model, labelled as one.
        self.stats_["projected"] = dataclasses.asdict(
            project_fit(result.history, self.stats_, device.profile)
        )
        self.n_features_in_ = X.shape[1]
        return self

    def _solve(self, model, store, device, alpha0, b00, callback, refine=None):
        return solve(
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
            budget=parse_budget(self.memory_budget, store.nbytes),
            policy=self.policy,
            passes_per_round=self.passes_per_round,
            kernel_variant=self.kernel_variant,
            refine_dtype=refine,
        )

    def _decision(self, X):
        X = self._check_X_predict(X)
        return np.asarray(X @ self.coef_, dtype=np.float64).ravel() + self.intercept_


def _store_params(est, params):
    """scikit-learn's convention: __init__ stores each parameter under its own name, as given."""
    for k, v in params.items():
        if k != "self":
            setattr(est, k, v)


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:
        return a is b


def check_positive(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.number))
        or not value > 0
        or not np.isfinite(value)
    ):
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


COMMON_DOC = """
    fit_intercept : bool, default=True
    tol : float
        Stop when the certified duality gap <= tol * scale (see the module docstring).
    max_iter : int
        Maximum number of rounds (each: a selection, ``passes_per_round`` passes over it on
        the device, and the gap updates).
    max_time : float or None
        Wall-clock limit in seconds.
    warm_start : bool
        Start from the previous fit's solution.
    random_state : int, Generator or None
        Seeds the shuffled order of the coordinates.
    verbose : int
        Print a line per round when > 0.
    device : str, path, DeviceProfile or Device
        Device profile name, a path to a profile, or an opened device; None: the host's CPU
        ("pocl-cpu", or "intel-cpu" where PoCL cannot compile for this CPU).
    emulate : bool
        Run the profile on the host's CPU device when its own device is absent (outputs say
        "emulated").
    dtype : None, "float32" or "float64"
        Device precision; None takes the profile's (float32 by default).
    memory_budget : None, int, str
        Device memory this fit may use: bytes, a size ("64MiB") or a fraction of the data's
        device bytes ("10%"); None takes the profile's budget.
    policy : "duhl", "sequential", "random" or "full"
        Which coordinates are resident each round (see duhl_cl.duhl.policies).
    passes_per_round : int or "auto"
        Coordinate-descent passes over the visited set per round. "auto" (the default): as
        many as make a round's device work about 2^20 units (Model.pass_cost: an entry of
        the squared loss is one unit), so that a round's fixed host costs (2-3 ms) do not
        dominate a small working set; at least 8 when the selection holds the whole active
        problem, 4 while it rotates, at most 256 (duhl_cl.duhl.local_solver.auto_passes_for).
    kernel_variant : None, "serial", "tpa" or "bucketed"
        The device's coordinate-descent pass; None takes the profile's. "serial": one
        work-item, exact sequential descent; "tpa": a work-group per coordinate, atomic
        updates (GPUs); "bucketed": disjoint buckets with private copies of the shared
        vector, merged safely (multi-core CPUs).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,)
    intercept_ : float
    dual_gap_ : float
        Certified duality gap: objective_ - optimum <= dual_gap_.
    objective_ : float
    n_iter_ : int
        Rounds run.
    history_ : list of dict
        One record per round: round, time, gap (certified, or None), gap_estimate, objective,
        n_resident (on the device), n_visited (the selection the passes visit) and
        nnz_visited (its stored entries), n_swapped_in, bytes_h2d, bytes_d2h, n_gap_refreshes, passes,
        device_time, host_time, cert_time, ledger_peak.
    stats_ : dict
        bytes_h2d, bytes_d2h, ledger_peak, bank_peak (per memory bank), time, dtype,
        emulated, kernel_variant, budget, policy, entry_bytes (device bytes of a stored
        entry), and projected: the time the same rounds
        would take on the profile's device by its bandwidths (duhl_cl.projection; a model).
"""
