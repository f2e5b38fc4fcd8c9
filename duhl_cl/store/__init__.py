"""The host store: the data as coordinates (slots), its input checks and host products.

- :mod:`.base`: :class:`Store`, what the device working set and the round loop read;
- :mod:`.memory`: :class:`CoordinateStore`, the in-memory store;
- :mod:`.checks`: what a fit accepts as X and y;
- :mod:`.products`: the host's threaded float64 products (X x, X^T y, squared norms).
"""

from .base import Store
from .checks import (
    DataConversionWarning,
    check_sample_weight,
    check_X,
    check_y_binary,
    check_y_classes,
    check_y_regression,
    class_weight_values,
    class_weights,
)
from .convert import convert
from .disk import DiskData, StoreError
from .disk import open_store as open  # (store.open; the builtin is not used here)
from .memory import CoordinateStore
from .products import matvec, rmatvec, sqnorms

__all__ = [
    "Store",
    "CoordinateStore",
    "DataConversionWarning",
    "check_X",
    "check_sample_weight",
    "class_weights",
    "check_y_binary",
    "check_y_classes",
    "class_weight_values",
    "check_y_regression",
    "matvec",
    "rmatvec",
    "sqnorms",
    "convert",
    "open",
    "DiskData",
    "StoreError",
]
