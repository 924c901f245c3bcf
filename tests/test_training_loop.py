"""The compiled loop against a plain Python loop, and the loaders' equivalences, step by step."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_config, read_scalars

from data.loaders import make_loader
from data.sources import synthetic
from training.run import train_and_evaluate

SMALL = (
    "experiment=synthetic",
    "data.n_samples=100",
    "data.n_features=3",
    "data.seed=3",
    "optimizer.lr=0.05",
    "logger.plots=false",
)


def run(tmp_path, name, *overrides):
    workdir = tmp_path / name
    metrics = train_and_evaluate(make_config(*SMALL, *overrides), workdir)
    scalars = read_scalars(workdir)
    losses = np.array([v for _, v in scalars["train/loss"]], np.float32)
    steps = [s for s, _ in scalars["train/loss"]]
    features = sum(key.startswith("params/W/x") for key in scalars)
    W = np.stack([[v for _, v in scalars[f"params/W/x{j}"]] for j in range(features)], axis=1)
    return metrics, steps, losses, W.astype(np.float32)


def reference_sgd(X, y, lr, loader, epochs):
    """Mini-batch SGD on y = X W + b in a plain Python loop (float32 numpy).

    Also returns, per step, how far two correct float32 evaluations of the loss may differ: the
    residual ``r = x.W + b - y`` is a sum of d + 2 terms whose rounding depends on the order of
    the additions and on whether the CPU fuses multiply and add, so ``|dr| <= (d + 2) eps S``
    with ``S = sum |terms|``, and ``|d mean(r^2)| <= 2 mean(|r| |dr|)``. A residual that cancels
    (``|r|`` much smaller than ``S``) makes that more than 1e-6 of the loss."""
    W, b = np.zeros(X.shape[1], np.float32), np.float32(0)
    losses, Ws, slack = [], [], []
    eps = np.finfo(np.float32).eps
    lr = np.float32(lr)
    for epoch in range(epochs):
        idx, counts = loader.batches(epoch)
        for rows, c in zip(idx, counts, strict=True):
            xb, yb = X[rows[:c]], y[rows[:c]]
            r = (xb * W).sum(axis=1) + b - yb  # the model's multiply-and-sum for small batches
            losses.append(np.mean(r * r))
            S = np.abs(xb * W).sum(axis=1) + abs(b) + np.abs(yb)
            slack.append(2 * np.mean(np.abs(r) * (X.shape[1] + 2) * eps * S))
            Ws.append(W)
            W = W - lr * (np.float32(2) * (xb.T @ r) / np.float32(c))
            b = b - lr * (np.float32(2) * r.mean())
    return W, b, np.array(losses), np.array(Ws), np.array(slack)


@pytest.mark.slow
def test_compiled_loop_equals_a_python_loop(tmp_path):
    # 100 rows in batches of 8: 12 full batches and a real batch of 4; 30 epochs = 390 steps
    metrics, steps, losses, W = run(tmp_path, "mb", "loader.batch_size=8", "trainer.epochs=30")
    table = synthetic(100, 3, 0.1, seed=3)
    loader = make_loader("mini_batch", 8, True, False, 100, seed=0)
    W_ref, b_ref, loss_ref, W_hist, slack = reference_sgd(table.X, table.y, 0.05, loader, 30)
    assert steps == list(range(390))
    assert np.all(np.abs(losses - loss_ref) <= 1e-6 * loss_ref + slack)
    np.testing.assert_allclose(W[:390], W_hist, rtol=1e-6, atol=1e-7)
    final = metrics["params"]
    np.testing.assert_allclose([final[f"W/x{j}"] for j in range(3)], W_ref, rtol=1e-6)
    np.testing.assert_allclose(final["b"], b_ref, rtol=1e-6)
    # and it learned the rule that made the data
    np.testing.assert_allclose(W_ref, table.true_params["W"], atol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("features", [3, 20, 100])  # one sum; interleaved; more than 64
def test_per_sample_equals_mini_batch_of_one(tmp_path, features):
    f = f"data.n_features={features}", f"optimizer.lr={0.05 if features < 100 else 0.005}"
    a = run(tmp_path, "ps", "loader=per_sample", "trainer.epochs=3", *f)
    b = run(tmp_path, "mb1", "loader=mini_batch", "loader.batch_size=1", "trainer.epochs=3", *f)
    assert a[1] == b[1] == list(range(300)) and a[3].shape == (301, features)
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])
    assert a[0]["params"] == b[0]["params"]


@pytest.mark.slow
@pytest.mark.parametrize("n", [40, 100, 1 << 14])  # multiply-and-sum, one product, row blocks
def test_mini_batch_of_n_without_shuffle_equals_full_batch(tmp_path, n):
    full = run(tmp_path, "full", f"data.n_samples={n}", "loader=full_batch", "trainer.epochs=25")
    mb = run(
        tmp_path,
        "mb",
        f"data.n_samples={n}",
        "loader=mini_batch",
        f"loader.batch_size={n}",
        "loader.shuffle=false",
        "trainer.epochs=25",
    )
    np.testing.assert_allclose(full[2], mb[2], rtol=1e-6)
    np.testing.assert_allclose(full[3], mb[3], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_same_seed_same_run_other_seed_other_shuffle(tmp_path):
    a = run(tmp_path, "a", "loader.batch_size=8", "trainer.epochs=3", "seed=5")
    b = run(tmp_path, "b", "loader.batch_size=8", "trainer.epochs=3", "seed=5")
    c = run(tmp_path, "c", "loader.batch_size=8", "trainer.epochs=3", "seed=6")
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])
    assert not np.array_equal(a[2], c[2])


@pytest.mark.slow
@pytest.mark.parametrize("every", [3, 5])
def test_every_n_steps_thins_what_is_written_not_what_is_computed(tmp_path, every):
    full = run(tmp_path, "all", "loader.batch_size=8", "trainer.epochs=4")
    thin = run(
        tmp_path, "thin", "loader.batch_size=8", "trainer.epochs=4", f"logger.every_n_steps={every}"
    )
    per_epoch = [s for s in range(13) if s % every == 0]
    expected = [e * 13 + s for e in range(4) for s in per_epoch]
    assert thin[1] == expected
    np.testing.assert_array_equal(thin[2], full[2][expected])
    np.testing.assert_array_equal(thin[3][: len(expected)], full[3][expected])
    assert thin[0]["params"] == full[0]["params"]


@pytest.mark.slow
def test_epoch_cut_into_blocks_of_steps_equals_one_call(tmp_path):
    one = run(tmp_path, "one", "loader=per_sample", "trainer.epochs=2")
    cut = run(
        tmp_path, "cut", "loader=per_sample", "trainer.epochs=2", "trainer.max_steps_per_call=30"
    )
    np.testing.assert_array_equal(one[2], cut[2])
    assert one[0]["params"] == cut[0]["params"]


@pytest.mark.slow
def test_per_sample_rows_change_nothing(tmp_path, monkeypatch):
    # per-sample steps feed the linear model one (features,) row at a time; the same steps on
    # (1, features) batches give the same losses and parameters
    from training.step import Runner

    rows = run(tmp_path, "rows", "loader=per_sample", "trainer.epochs=3")
    monkeypatch.setattr(Runner, "_takes_rows", lambda self, params: False)
    batches = run(tmp_path, "batches", "loader=per_sample", "trainer.epochs=3")
    np.testing.assert_allclose(rows[2], batches[2], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(rows[3], batches[3], rtol=1e-6, atol=1e-9)
    table = synthetic(100, 3, 0.1, seed=3)
    loader = make_loader("per_sample", None, True, False, 100, seed=0)
    W_ref, b_ref, _, _, _ = reference_sgd(table.X, table.y, 0.05, loader, 3)
    np.testing.assert_allclose([rows[0]["params"][f"W/x{j}"] for j in range(3)], W_ref, rtol=1e-5)


def test_a_model_that_needs_batches_still_trains_per_sample():
    import jax
    import optax
    from flax import nnx

    from models.linear import LinearRegression
    from training.blocks import Block
    from training.step import Runner

    class BatchOnly(LinearRegression):
        def __call__(self, x):
            assert x.ndim == 2, "this model takes batches only"
            return super().__call__(x)

    table = synthetic(50, 3, 0.1, seed=3)
    graphdef, state = nnx.split(BatchOnly(3, rngs=nnx.Rngs(0)))
    params = nnx.to_pure_dict(state)
    loader = make_loader("per_sample", None, True, False, 50, seed=0)
    tx = optax.sgd(0.01)
    runner = Runner(
        lambda p, x: nnx.merge(graphdef, p)(x), tx, loader, *jax.device_put((table.X, table.y))
    )
    out = runner(Block(0, 1, 0, 50), params, tx.init(params), np.float32(np.nan))
    assert runner.rows is False and np.isfinite(np.asarray(out.losses)).all()
    _, _, loss_ref, _, slack = reference_sgd(table.X, table.y, 0.01, loader, 1)
    assert np.all(np.abs(np.asarray(out.losses) - loss_ref) <= 1e-6 * loss_ref + slack)


def test_pipelined_calls_equal_calls_made_one_by_one(monkeypatch):
    # many small calls queued ahead give what calls made and read one by one give
    import jax
    import optax
    from flax import nnx

    import training.run
    from models.linear import LinearRegression
    from training.blocks import plan_blocks
    from training.run import pipelined
    from training.step import Runner

    monkeypatch.setattr(training.run, "ROWS_IN_FLIGHT", 40)  # several calls in flight
    table = synthetic(100, 3, 0.1, seed=3)
    graphdef, state = nnx.split(LinearRegression(3, rngs=nnx.Rngs(0)))
    params = nnx.to_pure_dict(state)
    loader = make_loader("mini_batch", 4, True, False, 100, seed=0)
    tx = optax.sgd(0.05)
    runner = Runner(
        lambda p, x: nnx.merge(graphdef, p)(x), tx, loader, *jax.device_put((table.X, table.y))
    )
    blocks = list(plan_blocks(loader, 0, 4, 5, 0))  # 4 epochs of 25 steps, 5 a call
    assert len(blocks) == 20
    p, s, ref = params, tx.init(params), np.float32(np.nan)
    one_by_one = []
    for block in blocks:
        out = runner(block, p, s, ref)
        p, s, ref = out.params, out.opt_state, out.ref_loss
        one_by_one.append(np.asarray(out.losses))
    got = [
        (b, t, np.asarray(o.losses))
        for b, t, o in pipelined(runner, blocks, params, tx.init(params))
    ]
    assert [b for b, _, _ in got] == blocks and [t for _, t, _ in got] == list(range(0, 100, 5))
    np.testing.assert_array_equal(
        np.concatenate([x for _, _, x in got]), np.concatenate(one_by_one)
    )


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["mini_batch", "per_sample"])
def test_a_shuffled_run_that_diverges_stops_at_its_first_non_finite_loss(tmp_path, loader):
    # found inside the compiled call: the losses before it are logged, none after
    import re

    from errors import DivergenceError

    cfg = make_config(*SMALL, f"loader={loader}", "optimizer.lr=100", "trainer.epochs=5")
    with pytest.raises(DivergenceError) as err:
        train_and_evaluate(cfg, tmp_path)
    step = int(re.search(r"diverged at step (\d+): the loss became (inf|nan)", str(err.value))[1])
    losses = read_scalars(tmp_path)["train/loss"]
    assert step > 0 and [s for s, _ in losses] == list(range(step))
    assert np.isfinite([v for _, v in losses]).all()
