"""One training step on its own (training/step.py), tested as optax tests a transform: the loss
against numpy, one update against the hand-computed SGD step, the full-batch stopping rules on
a problem whose every iterate is exact in float32, and the compiled scans against Python loops
of the same step."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from data.loaders import make_loader
from models.linear import LinearRegression
from training.objectives import Objective
from training.step import (
    CallSpec,
    Carry,
    TrainState,
    full_batch_call,
    full_batch_step,
    loss_fn,
    make_train_call,
    record_positions,
    shuffled_call,
    train_step,
)


def linear(p, x):
    return x @ p["W"] + p["b"]


def test_loss_fn_is_the_weighted_mean_squared_error():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 3)).astype(np.float32)
    y = rng.normal(size=9).astype(np.float32)
    w = (rng.random(9) < 0.6).astype(np.float32)
    p = {"W": np.float32([0.5, -1.0, 2.0]), "b": np.float32(0.25)}
    r = x.astype(np.float64) @ p["W"] + p["b"] - y
    assert float(loss_fn(p, linear, x, y)) == pytest.approx(np.mean(r**2), rel=1e-6)
    assert float(loss_fn(p, linear, x, y, w)) == pytest.approx(
        np.sum(w * r**2) / np.sum(w), rel=1e-6
    )
    # weight 0 is a padding row: the same as leaving it out
    assert float(loss_fn(p, linear, x, y, w)) == pytest.approx(
        float(loss_fn(p, linear, x[w > 0], y[w > 0])), rel=1e-6
    )
    # one row (features,) with a scalar target: the squared residual itself
    assert float(loss_fn(p, linear, x[4], y[4])) == pytest.approx(r[4] ** 2, rel=1e-6)


def test_one_train_step_is_the_hand_computed_sgd_update():
    # every number is exact in float32: r = X W + b - y = (0.5, -1.5, 2.5, 0.5)
    X = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])
    y = jnp.array([1.0, 4.0, 1.0, 0.0])
    p = {"W": jnp.array([1.0, 2.0]), "b": jnp.float32(0.5)}
    tx = optax.sgd(0.125)
    step = jax.jit(functools.partial(train_step, apply_fn=linear, tx=tx))
    state, loss = step(TrainState(p, tx.init(p)), (X, y, None))
    # L = mean(r^2) = (0.25 + 2.25 + 6.25 + 0.25) / 4; dL/dW = 2/4 X^T r = 2/4 (4, 0.5);
    # dL/db = 2/4 sum(r) = 1; W <- W - lr dL/dW, b <- b - lr dL/db
    assert float(loss) == 2.25
    np.testing.assert_array_equal(state.params["W"], [1 - 0.125 * 2.0, 2 - 0.125 * 0.25])
    assert float(state.params["b"]) == 0.5 - 0.125 * 1.0
    # with weights the padding row (the last) takes no part: r = (0.5, -1.5, 2.5)
    state, loss = step(TrainState(p, tx.init(p)), (X, y, jnp.array([1.0, 1.0, 1.0, 0.0])))
    assert float(loss) == pytest.approx(8.75 / 3, rel=1e-7)
    np.testing.assert_allclose(
        state.params["W"], [1 - 0.125 * 2 * 3 / 3, 2 - 0.125 * 2 * 1 / 3], rtol=1e-7
    )
    assert float(state.params["b"]) == pytest.approx(0.5 - 0.125 * 2 * 1.5 / 3, rel=1e-7)


def halving(lr: float, steps: int, tol: float = 0.0, factor: float = 1e6, ref=np.nan):
    """``steps`` full-batch steps on ``L(w) = mean((w - 0)^2) = w^2`` from ``w = 1``:
    ``w <- (1 - 2 lr) w``, every iterate a power of two (or of three) and exact in float32.
    Returns the final carry, the losses and the parameters before each step."""
    X, y = jnp.ones((4, 1)), jnp.zeros(4)
    p, tx = {"w": jnp.float32(1.0)}, optax.sgd(lr)
    step = functools.partial(
        full_batch_step,
        apply_fn=lambda p, x: x[:, 0] * p["w"],
        tx=tx,
        tol=tol,
        divergence_factor=factor,
    )
    false = jnp.bool_(False)
    c = Carry(p, tx.init(p), jnp.int32(0), false, false, jnp.float32(ref))

    def body(c, _):
        before = c.params["w"]
        c, loss = step(c, (X, y, None))
        return c, (loss, before)

    c, (losses, before) = jax.jit(lambda c: jax.lax.scan(body, c, length=steps))(c)
    return c, np.asarray(losses), np.asarray(before)


def test_full_batch_step_stops_at_tol_and_keeps_that_steps_parameters():
    # lr 1/4 halves w: g_k = 2 w_k = 2^(1-k) < 0.01 first at k = 8, which is not applied
    c, losses, before = halving(0.25, 20, tol=0.01)
    assert int(c.taken) == 8 and bool(c.done) and not bool(c.diverged)
    assert float(c.params["w"]) == 2.0**-8
    np.testing.assert_array_equal(losses[:9], 4.0 ** -np.arange(9))
    assert np.isnan(losses[9:]).all()
    np.testing.assert_array_equal(before[:9], 2.0 ** -np.arange(9))
    assert (before[9:] == 2.0**-8).all()
    assert float(c.ref_loss) == 1.0  # the first loss
    # tol 0 runs every step
    c, losses, _ = halving(0.25, 20)
    assert int(c.taken) == 20 and not bool(c.done) and float(c.params["w"]) == 2.0**-20
    np.testing.assert_array_equal(losses, 4.0 ** -np.arange(20))


def test_full_batch_step_stops_at_an_exact_fit():
    # lr 1/2: w_1 = (1 - 1) w_0 = 0, whose loss is 0
    c, losses, _ = halving(0.5, 10)
    assert int(c.taken) == 1 and bool(c.done) and not bool(c.diverged)
    assert float(c.params["w"]) == 0.0
    np.testing.assert_array_equal(losses[:2], [1.0, 0.0])
    assert np.isnan(losses[2:]).all()


def test_full_batch_step_stops_on_divergence_against_the_first_loss():
    # lr 2: w <- -3 w, L_k = 9^k; 729 > 100 * L_0 at k = 3
    c, losses, _ = halving(2.0, 10, factor=100.0)
    assert int(c.taken) == 3 and bool(c.done) and bool(c.diverged)
    assert float(c.params["w"]) == -27.0
    np.testing.assert_array_equal(losses[:4], [1.0, 9.0, 81.0, 729.0])
    assert np.isnan(losses[4:]).all()
    # a later call compares with the run's first loss, not its own: 1 > 8 * 0.1
    c, losses, _ = halving(2.0, 10, factor=8.0, ref=0.1)
    assert int(c.taken) == 0 and bool(c.diverged) and float(c.params["w"]) == 1.0
    # a non-finite loss diverges whatever the factor
    c, losses, _ = halving(np.inf, 10)
    assert bool(c.diverged) and int(c.taken) == 1 and np.isnan(losses[2:]).all()


def test_steps_after_the_stop_compute_nothing():
    evaluated = []

    def counted(p, x):
        jax.debug.callback(lambda: evaluated.append(1))
        return x[:, 0] * p["w"]

    X, y, p, tx = jnp.ones((4, 1)), jnp.zeros(4), {"w": jnp.float32(1.0)}, optax.sgd(0.25)
    step = functools.partial(full_batch_step, apply_fn=counted, tx=tx, tol=0.01)
    false = jnp.bool_(False)
    c = Carry(p, tx.init(p), jnp.int32(0), false, false, jnp.float32(np.nan))
    c, _ = jax.jit(lambda c: jax.lax.scan(lambda c, _: step(c, (X, y, None)), c, length=50))(c)
    jax.effects_barrier()
    assert int(c.taken) == 8
    assert len(evaluated) == 9  # steps 0..8: the eight applied and the one that stopped


def model(d: int):
    graphdef, state = nnx.split(LinearRegression(d, rngs=nnx.Rngs(0), W_init="normal"))
    return (lambda p, x: nnx.merge(graphdef, p)(x)), nnx.to_pure_dict(state)


@pytest.mark.parametrize(
    ("batch_size", "optimizer"),
    [(1, "sgd"), (4, "sgd"), (5, "sgd"), (1, "adam"), (4, "adam"), (5, "adam")],
)
def test_the_shuffled_call_is_a_python_loop_of_train_step(batch_size, optimizer):
    # the same permutation, batch by batch; batch 1 feeds rows (features,), batch 5 of 24 rows
    # ends each epoch on a short batch of 4 (masked)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(24, 3)).astype(np.float32)
    y = (X @ np.float32([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=24)).astype(np.float32)
    apply_fn, params = model(3)
    tx = optax.sgd(0.05) if optimizer == "sgd" else optax.adam(0.05)
    loader = make_loader("per_sample" if batch_size == 1 else "mini_batch", batch_size, True,
                         False, 24, seed=0)  # fmt: skip
    epochs, every = 2, 3
    parts = [loader.batches(e) for e in range(epochs)]
    idx, counts = np.stack([i for i, _ in parts]), np.stack([c for _, c in parts])
    rows, masked = batch_size == 1, bool((counts < batch_size).any())
    assert masked == (batch_size == 5)
    call = shuffled_call(
        apply_fn, tx, steps=idx.shape[1], record_every=every, masked=masked, rows=rows
    )
    out = call(params, tx.init(params), X, y, None, idx, counts, np.float32(7.0))

    step = jax.jit(functools.partial(train_step, apply_fn=apply_fn, tx=tx))
    state, losses, recorded, ends = TrainState(params, tx.init(params)), [], [], []
    for e in range(epochs):
        for s, (i, c) in enumerate(zip(idx[e], counts[e], strict=True)):
            if s % every == 0:
                recorded.append(state.params)
            if rows:
                batch = (X[i[0]], y[i[0]], None)
            else:
                w = (np.arange(batch_size) < c).astype(np.float32) if masked else None
                batch = (X[i], y[i], w)
            state, loss = step(state, batch)
            losses.append(loss)
        ends.append(state.params)
    stack = functools.partial(jax.tree.map, lambda *a: np.stack(a))
    spec = CallSpec(epochs, idx.shape[1], False, masked, every, 0.0, 1e6, rows)
    assert len(recorded) == len(record_positions(spec))
    # bit for bit, except Adam on single rows: XLA compiles the step otherwise inside the scan
    # than in a call of its own, and the first difference (2 ulps of the loss, at step 9) grows
    # through Adam's normalisation to 1.2e-5 of a loss and 2e-6 of a parameter by step 48
    same = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6)
    if not (rows and optimizer == "adam"):
        same = np.testing.assert_array_equal
    same(np.asarray(out.losses), np.array(losses))
    for got, want in [
        (out.params, state.params),
        (out.opt_state, state.opt_state),
        (out.recorded, stack(*recorded)),
        (out.epoch_params, stack(*ends)),
    ]:
        jax.tree.map(same, jax.device_get(got), jax.device_get(want))
    assert int(out.taken) == epochs * idx.shape[1] and not bool(out.diverged)
    assert float(out.ref_loss) == 7.0


@pytest.mark.parametrize("bad", [np.nan, 1e30])  # 1e30: a finite row whose loss overflows
def test_the_shuffled_call_counts_the_steps_before_the_first_non_finite_loss(bad):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(24, 3)).astype(np.float32)
    y = rng.normal(size=24).astype(np.float32)
    y[17] = bad
    apply_fn, params = model(3)
    tx = optax.sgd(1e-3)
    loader = make_loader("per_sample", 1, True, False, 24, seed=0)
    idx = np.stack([loader.batches(e)[0] for e in range(2)])
    counts = np.ones(idx.shape[:2], np.int32)
    call = shuffled_call(apply_fn, tx, steps=24, rows=True)
    out = call(params, tx.init(params), X, y, None, idx, counts, np.float32(1.0))
    first = int(np.flatnonzero(idx.reshape(-1) == 17)[0])  # the step that reads row 17
    losses = np.asarray(out.losses)
    assert np.isfinite(losses[:first]).all() and not np.isfinite(losses[first])
    assert int(out.taken) == first and bool(out.diverged)


@pytest.mark.parametrize("every", [1, 5, 64])
def test_per_sample_recording_at_any_period_is_a_python_loop_of_train_step(every):
    # per-sample steps run as one scan that writes each step's result into row (t + k) // k of
    # a carried buffer: the rows must be the parameters before steps 0, k, 2k, ... of each
    # epoch, bit for bit; 70 steps an epoch leave a partial last group for k = 64 and k = 5
    rng = np.random.default_rng(3)
    n, epochs = 70, 2
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = (X @ np.float32([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=n)).astype(np.float32)
    apply_fn, params = model(4)
    tx = optax.sgd(0.02)
    loader = make_loader("per_sample", 1, True, False, n, seed=0)
    idx = np.stack([loader.batches(e)[0] for e in range(epochs)])
    counts = np.ones(idx.shape[:2], np.int32)
    step = jax.jit(functools.partial(train_step, apply_fn=apply_fn, tx=tx))
    state, losses, recorded = TrainState(params, tx.init(params)), [], []
    for e in range(epochs):
        for s in range(n):
            if s % every == 0:
                recorded.append(state.params)
            i = idx[e, s, 0]
            state, loss = step(state, (X[i], y[i], None))
            losses.append(loss)
    records = len(record_positions(CallSpec(epochs, n, False, False, every, 0.0, 1e6, True)))
    assert len(recorded) == records == epochs * -(-n // every)
    want = jax.tree.map(lambda *a: np.stack(a), *recorded)

    call = shuffled_call(apply_fn, tx, steps=n, record_every=every, rows=True)
    out = call(params, tx.init(params), X, y, None, idx, counts, np.float32(1.0))
    np.testing.assert_array_equal(np.asarray(out.losses), np.array(losses))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(out.recorded), want)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(out.params), state.params)
    # a call of one epoch keeps the buffer's extra last row (the host reads the first rows)
    one = call(params, tx.init(params), X, y, None, idx[:1], counts[:1], np.float32(1.0))
    first = jax.tree.map(lambda a: a[: records // epochs], want)
    got = jax.device_get(one.recorded)
    assert got["W"].shape[0] == records // epochs + 1
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda a: a[:-1], got), first)


def test_the_full_batch_call_is_a_python_loop_of_full_batch_step():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = (X @ np.float32([1.0, -2.0, 0.5]) + 0.3).astype(np.float32)
    apply_fn, params = model(3)
    tx = optax.sgd(0.2)
    call = full_batch_call(apply_fn, tx, steps=400, record_every=7, tol=1e-3)
    out = call(params, tx.init(params), X, y, None, None, None, np.float32(np.nan))
    assert 0 < int(out.taken) < 399

    step = jax.jit(functools.partial(full_batch_step, apply_fn=apply_fn, tx=tx, tol=1e-3))
    false = jnp.bool_(False)
    c = Carry(params, tx.init(params), jnp.int32(0), false, false, jnp.float32(np.nan))
    losses, recorded = [], []
    for s in range(400):
        if s % 7 == 0:
            recorded.append(c.params)
        c, loss = step(c, (X, y, None))
        losses.append(loss)
    np.testing.assert_array_equal(np.asarray(out.losses), np.array(losses))
    assert int(out.taken) == int(c.taken) and float(out.ref_loss) == float(c.ref_loss)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(out.params), c.params)
    want = jax.tree.map(lambda *a: np.stack(a), *recorded)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(out.recorded), want)


def test_make_train_call_passes_the_objective_through():
    # the seam for other objectives (training/objectives.py): objective(params, pred, y, w)
    # replaces the squared error; here the mean absolute error plus (1/2) ||W||^2
    def absolute_ridge(params, pred, y, w=None):
        return jnp.mean(jnp.abs(pred - y)) + 0.5 * jnp.sum(params["W"] ** 2)

    X, y = jnp.array([[1.0], [2.0]]), jnp.array([3.0, 3.0])
    p, tx = {"W": jnp.array([1.0]), "b": jnp.float32(0.0)}, optax.sgd(0.5)
    spec = CallSpec(1, 1, True, False, 1, 0.0, 1e6)
    out = make_train_call(linear, tx, spec, objective=absolute_ridge)(
        p, tx.init(p), X, y, None, None, None, np.float32(np.nan)
    )
    # r = (-2, -1): L = 1.5 + 0.5; dL/dW = -mean(x) + W = -0.5, dL/db = -1
    assert float(out.losses[0]) == 2.0
    assert float(out.params["W"][0]) == 1.25 and float(out.params["b"]) == 0.5
    # and the loss of an Objective, through loss_fn
    huber = Objective("huber", delta=1.0)
    # twice Huber's rho: 2 delta |r| - delta^2 for |r| = 2 > delta, r^2 for |r| = 1
    assert float(loss_fn(p, linear, X, y, None, huber)) == (3.0 + 1.0) / 2


def test_the_tol_test_reads_the_trainable_parameters_gradient_only():
    """``optimizer.freeze=[W]``: at the minimum over ``b`` alone the frozen ``W``'s gradient is
    not zero, so a norm over every gradient never fell below ``tol``. ``L = (b^2 + (2 W +
    b)^2) / 2`` on ``x = (0, 2)``, ``y = 0``, ``W = 1`` held: ``g_b = 2 (b + 1)``, and lr 1/4
    halves ``b + 1`` from ``b = 0``: ``g_b = 2^(1-k) < 0.01`` first at ``k = 8``, where
    ``g_W = 2 (2 + b) = 2 + 2^(1-k)``."""
    X, y = jnp.array([[0.0], [2.0]]), jnp.zeros(2)
    p = {"W": jnp.ones(1), "b": jnp.float32(0.0)}
    labels = {"W": "frozen", "b": "train"}
    tx = optax.partition({"train": optax.sgd(0.25), "frozen": optax.set_to_zero()}, labels)
    for frozen, taken in ((("W",), 8), ((), 20)):
        call = full_batch_call(linear, tx, steps=20, tol=0.01, frozen=frozen)
        out = call(p, tx.init(p), X, y, None, None, None, np.nan)
        assert int(out.taken) == taken and not bool(out.diverged)
        assert float(out.params["W"][0]) == 1.0
        assert float(out.params["b"]) == -1.0 + 2.0**-taken
