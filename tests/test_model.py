"""The Flax module: its output and gradient against values computed by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.linear import LinearRegression
from training.objectives import mse


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
        # init_scale * N(0, 1): 10^4 draws have mean 0 and deviation 0.5 within 6 standard
        # errors (0.5 / sqrt(n) for the mean, about 0.5 / sqrt(2 n) for the deviation)
        n = 10_000
        big = LinearRegression(n, rngs=nnx.Rngs(1), W_init=init, init_scale=0.5).W[...]
        big = np.asarray(big, np.float64)
        assert abs(big.mean()) < 6 * 0.5 / np.sqrt(n)
        assert abs(big.std() - 0.5) < 6 * 0.5 / np.sqrt(2 * n)


def test_normal_draws_use_the_module_s_two_keys_and_constants_compile_nothing(caplog):
    """A normal initialiser draws from the first of ``rngs.params()``'s keys for ``W``, the
    second for ``b``, whichever the other initialiser is (the same draws as ever); constants
    are placed from numpy: building such a model compiles no program (a run's start-up pays
    each eager JAX operation's compilation)."""
    rngs = nnx.Rngs(1)
    k_W, k_b = rngs.params(), rngs.params()
    m = LinearRegression(4, rngs=nnx.Rngs(1), W_init="zeros", b_init="normal", init_scale=0.5)
    np.testing.assert_array_equal(m.b[...], 0.5 * jax.random.normal(k_b, (), jnp.float32))
    m = LinearRegression(4, rngs=nnx.Rngs(1), W_init="normal", init_scale=0.5)
    np.testing.assert_array_equal(m.W[...], 0.5 * jax.random.normal(k_W, (4,), jnp.float32))
    rngs = nnx.Rngs(0)
    jax.clear_caches()
    with jax.log_compiles(), caplog.at_level("WARNING"):
        m = LinearRegression(3, rngs=rngs, W_init="constant", W_value=0.1, b_value=-1.0)
    assert not [r for r in caplog.records if "Compiling" in r.getMessage()]
    assert m.W[...].dtype == np.float32
    np.testing.assert_array_equal(m.W[...], jnp.full((3,), 0.1, jnp.float32))


@pytest.mark.parametrize("d", [1, 3, 8, 16, 20, 64, 100])
def test_feature_sum_is_the_sum_to_float32_rounding(d):
    from models.kernels import feature_sum

    v = np.random.default_rng(d).standard_normal((5, d)).astype(np.float32)
    exact = v.astype(np.float64).sum(-1)
    bound = d * np.finfo(np.float32).eps * np.abs(v).sum(-1)  # any order of d additions
    assert np.all(np.abs(np.asarray(feature_sum(jnp.asarray(v))) - exact) <= bound)
    # its gradient passes through the barrier: d/dW sum(x * W) = x
    x = jnp.asarray(v[0])
    np.testing.assert_array_equal(jax.grad(lambda W: feature_sum(x * W))(jnp.ones(d)), x)


def test_a_row_and_a_batch_of_one_give_the_same_value():
    # per-sample steps feed one (features,) row; a batch of one row takes the same sums
    m = LinearRegression(20, rngs=nnx.Rngs(0), W_init="normal", init_scale=1.0)
    x = np.random.default_rng(0).standard_normal((7, 20)).astype(np.float32)
    rows = np.array([np.asarray(m(jnp.asarray(r))) for r in x])
    assert rows.shape == (7,)
    batch = [np.asarray(m(jnp.asarray(r[None])))[0] for r in x]
    np.testing.assert_allclose(rows, batch, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [1 << 14, (1 << 14) + 1, 3 * (1 << 14) + 2])  # k = 64, 1, 2
def test_row_blocks_give_x_at_W_and_its_gradient(n):
    from models.kernels import row_blocked_matvec

    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    W = rng.standard_normal(5).astype(np.float32)
    r = rng.standard_normal(n).astype(np.float32)
    eps = np.finfo(np.float32).eps
    exact = x.astype(np.float64) @ W.astype(np.float64)
    got = np.asarray(row_blocked_matvec(jnp.asarray(x), jnp.asarray(W)))
    assert np.all(np.abs(got - exact) <= 5 * eps * (np.abs(x) @ np.abs(W)))
    # the gradient sum_i r_i x_i: k block sums of n/k terms, then a sum of k; the worst-case
    # error of that order of additions is (n/k + k) eps sum_i |r_i x_i|
    grad = jax.grad(lambda w: jnp.sum(row_blocked_matvec(jnp.asarray(x), w) * r))(jnp.asarray(W))
    exact = r.astype(np.float64) @ x.astype(np.float64)
    k = np.gcd(n, 64)
    bound = (n // k + k) * eps * (np.abs(r) @ np.abs(x))
    assert np.all(np.abs(np.asarray(grad) - exact) <= bound)


def test_a_model_that_is_not_a_flax_module_is_one_line():
    from omegaconf import OmegaConf

    from errors import UserError
    from models.build import build_model

    cfg = OmegaConf.create({"_target_": "collections.OrderedDict"})  # takes any keywords
    with pytest.raises(UserError) as err:
        build_model(cfg, 3, 0)
    assert str(err.value) == (
        "bad config value model._target_='collections.OrderedDict': it built a OrderedDict, not "
        "a flax.nnx.Module; subclass nnx.Module, as models/linear.py does"
    )


@pytest.mark.parametrize("seed", [0, 1, 42, 123456789, 2**31 - 1, -1, -(2**31), 2**31, 2**40])
def test_rngs_from_a_seed_hold_the_key_of_jax_random_key(seed):
    from models.build import rngs_from_seed

    # (2**31 and 2**40, outside 32 bits, are nnx.Rngs(seed) itself)
    ours, theirs = rngs_from_seed(seed), nnx.Rngs(seed)
    for _ in range(2):  # the same stream: each call's key, then a draw from it
        k1, k2 = ours.params(), theirs.params()
        np.testing.assert_array_equal(jax.random.key_data(k1), jax.random.key_data(k2))
        np.testing.assert_array_equal(jax.random.normal(k1, (3,)), jax.random.normal(k2, (3,)))


def test_rngs_from_a_seed_compile_only_the_stream_s_counter(caplog):
    from models.build import rngs_from_seed

    jax.clear_caches()
    with jax.log_compiles(), caplog.at_level("WARNING"):
        rngs_from_seed(7)
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert len(compiled) <= 1 and all("convert_element_type" in m for m in compiled)
