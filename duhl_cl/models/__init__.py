"""The models: objective, coordinate step and per-coordinate duality gap, in float64 NumPy.

- :mod:`.base`: :class:`Model`, what the round loop, the working set and the kernels read.
- :mod:`.primal`: :class:`SquaredL1L2` (Lasso, ElasticNet, Ridge), :class:`LogisticL1`;
  coordinates are features.
- :mod:`.dual`: :class:`Hinge`, :class:`SquaredHinge`, :class:`LogisticL2`; coordinates are
  samples.
- :mod:`.table`: the model table (one name per model; what the CLI, the kernel defines and
  the prebuilt binaries derive from).

The same formulas run on the device in ``kernels_cl/model.h``; these are the host's float64
versions, used for the certificate, and the reference the kernel tests compare against.
"""

from .base import Model
from .dual import Hinge, LogisticL2, SquaredHinge
from .primal import LogisticL1, SquaredL1L2
from .table import KERNEL_MODELS, MODELS, ModelSpec, kernel_defines, model_names, model_spec

__all__ = [
    "Model",
    "SquaredL1L2",
    "LogisticL1",
    "Hinge",
    "SquaredHinge",
    "LogisticL2",
    "KERNEL_MODELS",
    "MODELS",
    "ModelSpec",
    "kernel_defines",
    "model_names",
    "model_spec",
]
