"""The host's float64 products over float32 data (certificates, start points) against NumPy
in float64: column- and row-ordered X, dense and sparse weights (the sparse-weight paths
visit only the columns or rows with a nonzero weight), and an all-zero weight."""

import numpy as np
import pytest

from duhl_cl.store import matvec, rmatvec


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("density", [1.0, 0.3, 0.0])
def test_products_match_numpy_float64(order, density):
    rng = np.random.default_rng(0)
    X = np.asarray(rng.standard_normal((700, 90)), dtype=np.float32, order=order)
    X64 = X.astype(np.float64)
    x = rng.standard_normal(90) * (rng.random(90) < density)
    y = rng.standard_normal(700) * (rng.random(700) < density)
    # Small blocks: many pieces, spread over the host's threads.
    np.testing.assert_allclose(matvec(X, x, block=1000), X64 @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rmatvec(X, y, block=1000), X64.T @ y, rtol=1e-12, atol=1e-12)


def test_refresher_takes_at_most_half_the_coordinates_a_round():
    """Unit A left running (a slow device): it refreshes whole blocks, cyclically, at most
    half of the coordinates a round (at least one block), each with the gaps NumPy gives
    for the coefficients and shared vector it was handed."""
    import time

    from duhl_cl import models
    from duhl_cl.duhl.refresh import HostRefresher
    from duhl_cl.store import CoordinateStore

    rng = np.random.default_rng(2)
    X = rng.standard_normal((1000, 16))
    y = np.where(rng.random(1000) < 0.5, 1.0, -1.0)
    model = models.Hinge(1.0, 1.0)
    model.setup(X, y, True)
    store = CoordinateStore(X, primal=False, dtype=np.float64, labels=y, bias=1.0)
    z, u_mem = np.full(1000, np.inf), np.full(1000, np.nan)
    ref = HostRefresher(model, store, z, u_mem, block_entries=16 * 100)  # blocks of 100 rows
    alpha = rng.uniform(0, 1, 1000)
    w = rng.standard_normal(17)
    seen = []
    try:
        for _ in range(3):
            ref.start(alpha, w)
            time.sleep(0.2)  # far longer than refreshing everything takes
            count, _ = ref.stop()
            seen.append(count)
    finally:
        ref.close()
    assert seen == [500, 500, 500]  # 5 blocks of 100 a round, then the next 5, cyclically
    mu = y * (X @ w[:-1] + w[-1])
    np.testing.assert_allclose(z, model.gaps(alpha, mu), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("src,dst", [(np.float32, np.float32), (np.float64, np.float32),
                                     (np.float32, np.float64)])  # fmt: skip
def test_relayout_is_numpys_copy_with_the_norms(order, src, dst):
    """The tiled transpose gives NumPy's copy exactly, on shapes that are no multiple of the
    tile, and the squared norms of the coordinates against float64 NumPy."""
    from duhl_cl.store.layout import relayout

    rng = np.random.default_rng(3)
    X = np.asarray(rng.standard_normal((700, 530)), dtype=src, order="C" if order == "F" else "F")
    M, sq = relayout(X, order, dst)
    ref = np.asfortranarray(X, dtype=dst) if order == "F" else np.ascontiguousarray(X, dtype=dst)
    assert M.dtype == dst and (M.flags.f_contiguous if order == "F" else M.flags.c_contiguous)
    np.testing.assert_array_equal(M, ref)
    X64 = ref.astype(np.float64)
    sq_ref = (X64 * X64).sum(axis=0 if order == "F" else 1)
    np.testing.assert_allclose(sq, sq_ref, rtol=1e-5 if dst == np.float32 else 1e-12)


@pytest.mark.parametrize("primal", [True, False])
def test_store_from_the_other_order_equals_the_store_from_its_own(primal, monkeypatch):
    """A store built from X in the other order than its layout (the tiled transpose) holds the
    same slots and norms as from X in its own order; squares beyond float32 are redone in
    float64, and a non-finite entry is refused as before."""
    from duhl_cl.store import CoordinateStore, layout

    monkeypatch.setattr(layout, "MIN_ENTRIES", 0)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 270))
    X[5, 7] = 1e30  # its square overflows float32
    own = np.asfortranarray(X) if primal else np.ascontiguousarray(X)
    other = np.ascontiguousarray(X) if primal else np.asfortranarray(X)
    assert layout.wants_relayout(other, primal) and not layout.wants_relayout(own, primal)
    a = CoordinateStore(own, primal=primal, dtype=np.float32)
    b = CoordinateStore(other, primal=primal, dtype=np.float32)
    np.testing.assert_array_equal(a.val, b.val)
    assert np.isfinite(b.sqnorm).all()
    np.testing.assert_allclose(b.sqnorm, a.sqnorm, rtol=1e-5)
    other[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CoordinateStore(other, primal=primal, dtype=np.float32)
