"""Bad inputs: each is a clear error that names the problem and the fix."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from helpers import edited_profile

import duhl_cl as dc


@pytest.fixture
def Xy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4))
    return X, X[:, 0] + 0.1 * rng.standard_normal(30)


def test_nan_and_inf(device, Xy):
    X, y = Xy
    for bad, word in ((np.nan, "NaN"), (np.inf, "infinity")):
        Xb = X.copy()
        Xb[3, 1] = bad
        with pytest.raises(ValueError, match=f"contains {word}.*impute"):
            dc.Lasso(device=device).fit(Xb, y)
        with pytest.raises(ValueError, match=f"contains {word}"):
            dc.Lasso(device=device).fit(sp.csr_matrix(Xb), y)
    for dtype in (np.float32, np.float64):
        # Dense data is checked through its squared norms, rows (dual) and columns (primal).
        Xb = X.astype(dtype)
        Xb[3, 1] = np.nan
        with pytest.raises(ValueError, match="contains NaN.*impute"):
            dc.LinearSVC(device=device).fit(Xb, y > 0)
        Xb[3, 1] = -np.inf
        with pytest.raises(ValueError, match="contains infinity.*impute"):
            dc.Lasso(device=device).fit(Xb, y)
    yb = y.copy()
    yb[0] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        dc.Lasso(device=device).fit(X, yb)


def test_huge_entries(device, Xy):
    """Squares that overflow float32 are redone in float64; beyond float64, a clear error."""
    from duhl_cl.store import CoordinateStore

    X, y = Xy
    X32 = X.astype(np.float32)
    X32[3, 1] = 1e25  # finite in float32, its square is not
    for primal in (True, False):
        store = CoordinateStore(X32, primal=primal, dtype=np.float32, labels=np.ones(30))
        ref = (X32.astype(np.float64) ** 2).sum(axis=0 if primal else 1)
        np.testing.assert_allclose(store.sqnorm, ref, rtol=1e-5)
    X64 = X.copy()
    X64[3, 1] = 1e200
    for Xin in (X64, sp.csr_matrix(X64)):
        with pytest.raises(ValueError, match="beyond the range of float32.*dtype='float64'"):
            dc.Lasso(device=device, dtype="float32").fit(Xin, y)
    for Xin in (X64, sp.csr_matrix(X64)):
        with pytest.raises(
            ValueError,
            match=r"largest \|x\| = 1e\+200\) that their squared norms overflow float64.*"
            r"column norm is beyond float64's 1\.8e\+308.*rescale X",
        ):
            dc.Lasso(device=device, dtype="float64").fit(Xin, y)
    with pytest.raises(ValueError, match="squared norms overflow float64.*squared row norm"):
        dc.LinearSVC(device=device, dtype="float64").fit(sp.csr_matrix(X64), y > 0)


def test_squares_beyond_float32_are_refused(device, Xy):
    """Entries finite in float32 whose squares are not: the device's step curvatures would
    be infinite and every step 0 (it returned all-zero coefficients): refused at fit."""
    X, y = Xy
    Xb = X * 1e20  # |x| <= 2.3e20: squares up to 5e40, float32 holds 3.4e38
    msg = (
        r"X has entries so large \(largest \|x\| = 2\.33e\+20\) that their squared norms "
        r"overflow float32, the device precision: the largest squared {} norm is \S+e\+4\d, "
        r"beyond float32's 3\.4e\+38; .*every step 0.*StandardScaler or MaxAbsScaler\)"
        r"{}"
    )
    fp64 = " or fit with dtype='float64'" if device.fp64 else "$"
    for Xin in (Xb, Xb.astype(np.float32), sp.csr_matrix(Xb)):
        with pytest.raises(ValueError, match=msg.format("column", fp64)):
            dc.Lasso(device=device, dtype="float32").fit(Xin, y)
        with pytest.raises(ValueError, match=msg.format("row", fp64)):
            dc.LinearSVC(device=device, dtype="float32").fit(Xin, y > 0)
    # Weighted squares too (they overflowed float32 to infinity: redone in float64).
    with pytest.raises(ValueError, match=msg.format("column", fp64)):
        dc.Lasso(device=device, dtype="float32").fit(Xb, y, sample_weight=np.ones(30))
    # The profile's precision (float32, refined in float64 where it stalls) is refused alike:
    # its float32 rounds would all be zeros.
    if device.profile.precision == "float32":
        with pytest.raises(ValueError, match=msg.format("column", fp64)):
            dc.Lasso(device=device).fit(Xb, y)
    if device.fp64:
        est = dc.Lasso(alpha=0.1, device=device, dtype="float64", max_iter=3)
        with pytest.warns(UserWarning, match="Stopped after 3 rounds"):
            est.fit(Xb, y)  # (ill-conditioned at this scale: it converges slowly)
        assert np.abs(est.coef_).max() > 0


def test_squares_times_buckets_beyond_float32_are_refused(device, Xy):
    """The bucketed kernel's steps take sigma * |x|^2 (sigma = its buckets, >= 2): a squared
    norm that fits float32 but not times sigma is refused, naming the variant."""
    from duhl_cl.store.checks import check_norms_fit

    top = float(np.finfo(np.float32).max)
    sq = np.array([1.0, 0.3 * top])
    check_norms_fit(sq, np.ones(3), np.float32, primal=True, buckets=3)  # 0.9 of the range
    with pytest.raises(
        ValueError,
        match=r"column norm is 1\.02e\+38 \(times the 4 buckets of kernel_variant 'bucketed'\), "
        r"beyond float32's 3\.4e\+38; .*, fit with dtype='float64' or use kernel_variant='serial'",
    ):
        check_norms_fit(sq, np.ones(3), np.float32, primal=True, buckets=4)
    X, y = Xy
    Xb = X.astype(np.float32)
    Xb[:, 1] *= np.sqrt(0.75 * top / float((X[:, 1].astype(np.float64) ** 2).sum()))
    with pytest.raises(ValueError, match=r"\(times the \d+ buckets of kernel_variant 'bucketed'"):
        dc.Lasso(device=device, dtype="float32", kernel_variant="bucketed").fit(Xb, y)


def test_shape_mismatch(device, Xy):
    X, y = Xy
    with pytest.raises(
        ValueError, match="inconsistent numbers of samples: X has 30 rows, y has 29"
    ):
        dc.Lasso(device=device).fit(X, y[:-1])
    with pytest.raises(ValueError, match="Expected a 2D array"):
        dc.Lasso(device=device).fit(X[:, 0], y)
    est = dc.Lasso(alpha=0.1, device=device).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but Lasso is expecting 4 features"):
        est.predict(X[:, :3])


def test_empty(device, Xy):
    X, y = Xy
    with pytest.raises(ValueError, match="0 sample"):
        dc.Lasso(device=device).fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="0 feature"):
        dc.Lasso(device=device).fit(X[:, :0], y)


def test_labels(device, Xy):
    X, _ = Xy
    with pytest.raises(ValueError, match="only one class.*two classes"):
        dc.LinearSVC(device=device).fit(X, np.ones(30))
    # Three classes: one-vs-rest (tests/test_multiclass.py checks the solutions).
    est = dc.LogisticRegression(device=device).fit(X, np.arange(30) % 3)
    assert list(est.classes_) == [0, 1, 2] and est.coef_.shape == (3, X.shape[1])
    with pytest.raises(ValueError, match="continuous"):
        dc.LinearSVC(device=device).fit(X, np.linspace(0, 1, 30))
    # Any two labels work, strings included; classes_ keeps them.
    est = dc.LinearSVC(device=device).fit(X, np.where(X[:, 0] > 0, "yes", "no"))
    assert list(est.classes_) == ["no", "yes"]
    assert set(est.predict(X)) <= {"no", "yes"}


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: dc.Lasso(alpha=0, device=d), "alpha must be a number > 0, got 0"),
        (lambda d: dc.Ridge(alpha=-1.0, device=d), "alpha must be a number > 0, got -1.0"),
        (
            lambda d: dc.ElasticNet(alpha=0.1, l1_ratio=1.5, device=d),
            r"l1_ratio must be in \[0, 1\], got 1.5",
        ),
        (
            lambda d: dc.ElasticNet(alpha=0.1, l1_ratio=-0.1, device=d),
            r"l1_ratio must be in \[0, 1\]",
        ),
        (lambda d: dc.LinearSVC(C=0, device=d), "C must be a number > 0, got 0"),
        (lambda d: dc.LogisticRegression(C=-2, device=d), "C must be a number > 0"),
        (lambda d: dc.LinearSVC(loss="log", device=d), "loss must be 'hinge' or 'squared_hinge'"),
        (lambda d: dc.LogisticRegression(penalty="l3", device=d), "penalty must be 'l2' or 'l1'"),
        (lambda d: dc.Lasso(max_iter=0, device=d), "max_iter must be an integer >= 1"),
        (
            lambda d: dc.Lasso(passes_per_round="many", device=d),
            "passes_per_round must be an integer >= 1 or 'auto', got 'many'",
        ),
        (
            lambda d: dc.Lasso(passes_per_round=0, device=d),
            "passes_per_round must be an integer >= 1 or 'auto', got 0",
        ),
        (
            lambda d: dc.Lasso(dtype="float16", device=d),
            "dtype must be None, 'float32' or 'float64'",
        ),
        # A number without a unit is not read as a fraction of the data: the message says
        # which spellings mean what.
        (
            lambda d: dc.Lasso(memory_budget="0.5", device=d),
            r"memory_budget '0.5' is a string without a unit and not a whole number of bytes; "
            r"for a fraction of the data write a percentage \('50%'\), for a size a string "
            r"with a unit \(e.g. '0.5 GiB'\), or pass a whole number of bytes \(an int\)",
        ),
        (
            lambda d: dc.Lasso(memory_budget=0.25, device=d),
            r"memory_budget 0.25 is a float and not a whole number of bytes; .*'25%'",
        ),
        (
            lambda d: dc.Lasso(memory_budget="0%", device=d),
            r"memory_budget: cannot read '0%'; write a percentage above 0",
        ),
    ],
)
def test_bad_parameters(device, Xy, make, match):
    X, y = Xy
    yy = (
        y
        if "Lasso" in repr(make(device))
        or "Ridge" in repr(make(device))
        or "Elastic" in repr(make(device))
        else (y > 0)
    )
    with pytest.raises(ValueError, match=match):
        make(device).fit(X, yy)


def test_unknown_device(Xy):
    X, y = Xy
    with pytest.raises(
        dc.ProfileError, match="unknown device profile 'no-such-gpu'; shipped profiles: .*pocl-cpu"
    ):
        dc.Lasso(device="no-such-gpu").fit(X, y)


def test_absent_device_lists_devices_and_suggests_emulation(Xy):
    X, y = Xy
    with pytest.raises(
        dc.DeviceError,
        match=r"(?s)no OpenCL device matches profile 'gpu-8gb'.*Devices present:.*emulate",
    ):
        dc.Lasso(device="gpu-8gb").fit(X, y)


def test_float64_on_a_device_without_fp64(device, Xy):
    X, y = Xy
    no_fp64 = dataclasses.replace(device, info=dataclasses.replace(device.info, fp64=False))
    with pytest.raises(
        ValueError, match="float64 needs a device with cl_khr_fp64.*use dtype='float32'"
    ):
        dc.Lasso(device=no_fp64, dtype="float64").fit(X, y)
    dc.Lasso(device=no_fp64, dtype="float32", alpha=0.1).fit(X, y)  # float32 still runs


def test_complex_and_object(device, Xy):
    X, y = Xy
    with pytest.raises(ValueError, match="Complex data not supported"):
        dc.Lasso(device=device).fit(X.astype(complex), y)
    Xo = X.astype(object)
    dc.Lasso(alpha=0.1, device=device).fit(Xo, y)  # numbers stored as objects are fine
    Xo[0, 0] = "a"
    with pytest.raises(ValueError, match="could not convert"):
        dc.Lasso(device=device).fit(Xo, y)


def test_memory_budget_refused_with_the_amount_needed(device, Xy, tmp_path):
    X, y = Xy
    p = edited_profile(tmp_path, [('budget = "2 GiB"', "budget = 500")], name="tiny.toml")
    with pytest.raises(
        dc.MemoryBudgetError,
        match=r"a memory budget of 500 B cannot hold the shared vectors \(\d+ B\) plus one "
        r"coordinate .*(pocl|intel)-cpu needs at least (\d+) B \((\d+) bytes\)",
    ) as err:
        dc.Lasso(device=str(p)).fit(X, y)
    need = int(str(err.value).rsplit("(", 1)[1].split()[0])
    # The minimum it names does train (under DuHL, a few coordinates at a time).
    est = dc.Lasso(alpha=0.1, device=device, memory_budget=need, random_state=0).fit(X, y)
    assert est.converged_ and est.stats_["ledger_peak"] <= need
    with pytest.raises(
        dc.MemoryBudgetError, match="policy 'full' needs all 4 coordinates resident"
    ):
        dc.Lasso(alpha=0.1, device=device, memory_budget=need, policy="full").fit(X, y)


def test_tol_zero_warns_that_the_fit_runs_to_max_iter(device, Xy):
    X, y = Xy
    with pytest.warns(UserWarning, match="tol=0: the fit stops only at a certified gap of"):
        est = dc.Ridge(tol=0, max_iter=3, device=device).fit(X, y)
    assert est.n_iter_ <= 3


def test_memory_budget_above_the_profile_or_the_data_warns(device, Xy):
    """A budget above the profile's is cut to the profile's (the device ledger's limit);
    one above all of the data is kept as given: each says so, with the bytes used."""
    import warnings

    from duhl_cl.device.profiles import format_size

    X, y = Xy
    top = device.profile.budget
    with pytest.warns(
        UserWarning,
        match=rf"memory_budget {top + 1} \(.*, {top + 1} bytes\) is above the budget of "
        rf"device profile .*: using the profile's {format_size(top)} \({top} bytes\); to "
        r"allow more, raise memory.budget in the profile",
    ) as rec:
        est = dc.Lasso(alpha=0.1, device=device, memory_budget=top + 1).fit(X, y)
    assert est.converged_ and est.stats_["budget"] == top
    assert rec[0].filename == __file__  # points at the caller's fit, not the package
    # 30 x 4 float32 entries: 480 B of data; 1000% of it is what the fit's budget is.
    with pytest.warns(
        UserWarning,
        match=r"memory_budget '1000%' is more than all of the data \(480 B of device bytes\): "
        r"the budget is 1000% of it, as given: 4\.7 KiB \(4800 bytes\); .*pass at most '100%'",
    ):
        est = dc.Lasso(alpha=0.1, device=device, dtype="float32", memory_budget="1000%")
        est.fit(X, y)
    assert est.converged_ and est.stats_["budget"] == 4800
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the profile and the data: no warning
        dc.Lasso(alpha=0.1, device=device, memory_budget="64 KiB").fit(X, y)
