"""duhl_cl.dask: distributed training on a Dask cluster, one DuHL solver per worker and device.

The coordinates are partitioned over the workers (rows for the dual models, columns for the
primal ones); each partition's local solver (duhl_cl.dask.worker, a Dask actor on its worker)
runs DuHL rounds on its CoCoA+ subproblem, and the driver adds the changes and certifies the
global duality gap (duhl_cl.dask.cocoa). The estimators (duhl_cl.dask.estimators) mirror the
single-machine ones. Needs the ``dask`` extra: ``pip install 'duhl-cl[dask]'``.
"""

try:
    import dask.array  # noqa: F401
    import distributed  # noqa: F401
except ImportError as e:  # pragma: no cover -- tested in a subprocess without dask
    raise ImportError(
        f"duhl_cl.dask needs dask[array] and distributed ({e.name} is not installed): "
        f"pip install 'duhl-cl[dask]'"
    ) from e

from .cocoa import NoWorkersError, allreduce
from .estimators import ElasticNet, Lasso, LinearSVC, LogisticRegression, Ridge

__all__ = [
    "Lasso",
    "ElasticNet",
    "Ridge",
    "LinearSVC",
    "LogisticRegression",
    "NoWorkersError",
    "allreduce",
]
