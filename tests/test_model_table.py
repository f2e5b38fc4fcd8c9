"""The model table is the one source of model names and codes: the kernels' defaults, the
command line's choices, the estimators it builds and the prebuilt binaries agree with it."""

import re

import numpy as np
import pytest

from duhl_cl import models
from duhl_cl.cli import build_parser
from duhl_cl.cli.train import _make_estimator
from duhl_cl.kernels import base_defines, programs
from duhl_cl.resources import kernels_dir


def test_model_h_defaults_are_the_table_codes():
    text = (kernels_dir() / "model.h").read_text()
    found = dict(re.findall(r"#define (MODEL_[A-Z0-9_]+) (\d+)", text))
    table = {
        k: v
        for k, v in base_defines(models.Hinge, np.float32, False).items()
        if k.startswith("MODEL_")
    }
    assert {k: int(v) for k, v in found.items()} == table
    assert sorted(table.values()) == sorted(k.code for k in models.KERNEL_MODELS)
    assert len(set(table.values())) == len(models.KERNEL_MODELS)  # one code per kernel model


@pytest.mark.parametrize("spec", models.MODELS, ids=lambda s: s.name)
def test_each_row_builds_its_estimator_and_kernel_model(spec):
    """The CLI builds the row's estimator, whose model is the row's kernel model."""
    for name in (spec.name, *spec.aliases):
        strength = "--alpha" if spec.regularization == "alpha" else "--C"
        args = build_parser().parse_args(["train", "--model", name, strength, "0.5", "--data", "x"])
        est = _make_estimator(args)
        assert type(est).__name__ == spec.estimator
        assert getattr(est, spec.regularization) == 0.5
        X = np.ones((4, 3))
        assert type(est._make_model(X)) is spec.kernel
        assert spec.primal == spec.kernel.primal


def test_names_are_unique_and_the_cli_offers_every_one():
    names = models.model_names(aliases=True)
    assert len(names) == len(set(names))
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    choices = next(a.choices for a in train._actions if a.dest == "model")
    assert tuple(choices) == names
    with pytest.raises(ValueError, match="unknown model 'svm-sqq'.*svm-squared-hinge"):
        models.model_spec("svm-sqq")


def test_binaries_cover_each_kernel_model_once(device):
    listed = list(programs(device, [s.kernel for s in models.MODELS], ["float32"], ["serial"]))
    codes = {d["MODEL"] for _, d in listed}
    assert codes == {k.code for k in models.KERNEL_MODELS}
    # dense and sparse, unweighted and weighted; gap, scatter, pass
    assert len(listed) == len(models.KERNEL_MODELS) * 2 * 2 * 3
