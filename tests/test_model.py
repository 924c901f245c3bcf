"""The Flax module: its output and gradient against values computed by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.linear import LinearRegression
from training.loop import mse


def test_output_is_x_at_W_plus_b():
    m = LinearRegression(
        3, rngs=nnx.Rngs(0), W_init="constant", W_value=2.0, b_init="constant", b_value=-1.0
    )
    x = jnp.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    np.testing.assert_array_equal(m(x), [2 * 6 - 1, 2 * -0.5 - 1])


def test_gradient_of_mse_by_hand():
    # L(W) = sum((W x - 1 - y)^2) / 6 on the walkthrough; dL/dW = 2/6 sum(x (W x - 1 - y)).
    x = jnp.array([-1.0, 0, 1, 2, 3, 4])[:, None]
    y = 2 * x[:, 0] - 1
    m = LinearRegression(
        1, rngs=nnx.Rngs(0), W_init="constant", W_value=8.0, b_init="constant", b_value=-1.0
    )
    graphdef, state = nnx.split(m)
    params = nnx.to_pure_dict(state)
    loss, grads = jax.value_and_grad(lambda p: mse(nnx.merge(graphdef, p)(x), y))(params)
    assert float(loss) == 186.0  # 36 * 31 / 6
    assert float(grads["W"][0]) == 62.0  # 2 * 6 * 31 / 6
    assert float(grads["b"]) == 18.0  # 2/6 * sum(6 x), sum(x) = 9


def test_weighted_mse_ignores_zero_weight_rows():
    pred, y = jnp.array([1.0, 2.0, 100.0]), jnp.array([0.0, 0.0, 0.0])
    assert float(mse(pred, y, jnp.array([1.0, 1.0, 0.0]))) == 2.5
    assert float(mse(pred[:2], y[:2])) == 2.5


@pytest.mark.parametrize("init", ["zeros", "normal", "constant"])
def test_initialisers(init):
    m = LinearRegression(4, rngs=nnx.Rngs(1), W_init=init, W_value=3.0, init_scale=0.5)
    W = np.asarray(m.W[...])
    assert W.shape == (4,) and W.dtype == np.float32
    if init == "zeros":
        assert not W.any()
    elif init == "constant":
        assert (W == 3.0).all()
    else:
        assert W.std() > 0 and abs(W).max() < 5
        same = LinearRegression(4, rngs=nnx.Rngs(1), W_init=init, init_scale=0.5)
        np.testing.assert_array_equal(W, same.W[...])
