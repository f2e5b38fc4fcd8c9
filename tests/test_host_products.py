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
