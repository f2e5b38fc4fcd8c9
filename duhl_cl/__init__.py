"""duhl-cl: generalized linear models larger than accelerator memory, on any OpenCL device.

Estimators follow scikit-learn's conventions; every fit reports a certified duality gap
(``dual_gap_``). See docs/architecture.md for the design and the maths, README.md for the quick start.
"""

from .device.discovery import DeviceError, open_device
from .device.ledger import MemoryBudgetError
from .device.profiles import ProfileError, list_profiles, load_profile
from .duhl.solver import ConvergenceWarning
from .estimators import (
    ElasticNet,
    ElasticNetCV,
    Lasso,
    LassoCV,
    LinearSVC,
    LogisticRegression,
    NotFittedError,
    Ridge,
    enet_path,
    lasso_path,
)

__version__ = "0.1.0"

__all__ = [
    "Lasso",
    "ElasticNet",
    "Ridge",
    "LinearSVC",
    "LogisticRegression",
    "LassoCV",
    "ElasticNetCV",
    "lasso_path",
    "enet_path",
    "ConvergenceWarning",
    "DeviceError",
    "MemoryBudgetError",
    "NotFittedError",
    "ProfileError",
    "open_device",
    "load_profile",
    "list_profiles",
]
