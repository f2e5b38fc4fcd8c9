"""The model table: every model a user can fit, by one name, and what each is made of.

One row per user-facing model (``duhl-cl train --model NAME``, ``build-kernels --model``,
the tests): its kernel model (the class whose ``code`` is the ``MODEL`` define of
``kernels_cl/model.h``), primal or dual, datafit, penalty, and the estimator and arguments
that fit it. The CLI's choices, the estimator the CLI builds, the binaries' model codes and
the ``MODEL_*`` defines of every kernel build are all read from here.

    name               code  coordinates  datafit        penalty  estimator
    lasso                 1  primal       squared        l1       Lasso
    elasticnet            1  primal       squared        l1 + l2  ElasticNet
    ridge                 1  primal       squared        l2       Ridge
    logistic-l1           2  primal       logistic       l1       LogisticRegression(penalty="l1")
    svm-hinge             3  dual         hinge          l2       LinearSVC(loss="hinge")
    svm-squared-hinge     4  dual         squared-hinge  l2       LinearSVC(loss="squared_hinge")
    logistic-l2           5  dual         logistic       l2       LogisticRegression(penalty="l2")

Short names the command line also takes: ``svm`` (svm-hinge), ``svm-sq`` (svm-squared-hinge),
``logistic`` (logistic-l2). Parameter values that scikit-learn defines (``loss="squared_hinge"``)
keep scikit-learn's spelling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Model
from .dual import Hinge, LogisticL2, SquaredHinge
from .primal import LogisticL1, SquaredL1L2

__all__ = ["ModelSpec", "MODELS", "KERNEL_MODELS", "model_spec", "model_names", "kernel_defines"]

# The kernel models, one per MODEL code (a class's ``code`` is its only home).
KERNEL_MODELS: tuple[type[Model], ...] = (SquaredL1L2, LogisticL1, Hinge, SquaredHinge, LogisticL2)


@dataclass(frozen=True)
class ModelSpec:
    """One row of the table.

    Attributes
    ----------
    name : str
        The model's one name.
    kernel : type[Model]
        Its kernel model (``kernel.code`` is the ``MODEL`` define).
    datafit, penalty : str
        What the objective is made of (for people; the maths is in ``kernel``).
    estimator : str
        The class in :mod:`duhl_cl.estimators` that fits it, with ``params``.
    regularization : {"alpha", "C"}
        The estimator's strength argument (regressors: alpha; classifiers: C).
    aliases : tuple of str
        Short names the command line also accepts.
    """

    name: str
    kernel: type[Model]
    datafit: str
    penalty: str
    estimator: str
    regularization: str
    params: dict = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def code(self) -> int:
        return self.kernel.code

    @property
    def primal(self) -> bool:
        return self.kernel.primal

    @property
    def regressor(self) -> bool:
        """A regression model (R^2 scores), else a binary classifier (accuracy)."""
        return self.datafit == "squared"


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("lasso", SquaredL1L2, "squared", "l1", "Lasso", "alpha"),
    ModelSpec("elasticnet", SquaredL1L2, "squared", "l1 + l2", "ElasticNet", "alpha"),
    ModelSpec("ridge", SquaredL1L2, "squared", "l2", "Ridge", "alpha"),
    ModelSpec("logistic-l1", LogisticL1, "logistic", "l1", "LogisticRegression", "C",
              {"penalty": "l1"}),
    ModelSpec("svm-hinge", Hinge, "hinge", "l2", "LinearSVC", "C", {"loss": "hinge"},
              ("svm",)),
    ModelSpec("svm-squared-hinge", SquaredHinge, "squared-hinge", "l2", "LinearSVC", "C",
              {"loss": "squared_hinge"}, ("svm-sq",)),
    ModelSpec("logistic-l2", LogisticL2, "logistic", "l2", "LogisticRegression", "C",
              {"penalty": "l2"}, ("logistic",)),
)  # fmt: skip


def model_names(aliases: bool = False) -> tuple[str, ...]:
    """The table's names, in its order; with ``aliases``, the short names after them."""
    names = tuple(s.name for s in MODELS)
    return names + tuple(a for s in MODELS for a in s.aliases) if aliases else names


def model_spec(name: str) -> ModelSpec:
    """The row of ``name`` (or one of its aliases)."""
    for s in MODELS:
        if name == s.name or name in s.aliases:
            return s
    raise ValueError(f"unknown model {name!r}; the models are {', '.join(model_names(True))}")


def kernel_defines(kernel: type[Model]) -> dict:
    """The model defines of one build: ``MODEL`` and the code of every kernel model by name
    (``MODEL_SQUARED=1`` ...), which ``kernels_cl/model.h`` compares ``MODEL`` against."""
    codes = {"MODEL_" + k.name.upper().replace("-", "_"): k.code for k in KERNEL_MODELS}
    return {"MODEL": kernel.code, **codes}
