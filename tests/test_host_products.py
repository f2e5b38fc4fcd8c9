"""The host's float64 products over float32 data (certificates, start points) against NumPy
in float64: column- and row-ordered X, dense and sparse weights (the sparse-weight paths
visit only the columns or rows with a nonzero weight), and an all-zero weight."""

import numpy as np
import pytest

from duhl_cl.data import matvec, rmatvec


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
