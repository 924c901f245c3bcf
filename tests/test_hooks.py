"""The training loop's hooks and progress record, one at a time, on small real calls."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import optax
import pytest

from data.loaders import make_loader
from training.blocks import Block, plan_blocks
from training.hooks import (
    Call,
    Curves,
    Hooks,
    Progressed,
    Validation,
    checkpoint,
    read_back,
    trace,
)
from training.run import pipelined
from training.step import Runner


def linear(p, x):
    return x @ p["W"] + p["b"]


def one_feature(n=4):
    """y = 2 x - 1 on x = 0, 1, ..., n - 1: full-batch gradient descent has a closed form."""
    X = np.arange(n, dtype=np.float32)[:, None]
    return X, 2 * X[:, 0] - 1


def full_batch_runner(lr=0.1, tol=0.0):
    X, y = one_feature()
    loader = make_loader("full_batch", None, False, False, len(y), seed=0)
    tx = optax.sgd(lr)
    runner = Runner(linear, tx, loader, *jax.device_put((X, y)), record_every=1, tol=tol)
    params = {"W": np.zeros(1, np.float32), "b": np.float32(0)}
    return runner, loader, tx, params, X, y


def calls_of(runner, loader, tx, params, epochs, max_steps):
    blocks = plan_blocks(loader, 0, epochs, max_steps, 0)
    return [
        read_back(runner, b, t0, out, loader.steps_per_epoch)
        for b, t0, out in pipelined(runner, blocks, params, tx.init(params))
    ]


def gd_reference(X, y, lr, steps):
    """Full-batch gradient descent on mean((x W + b - y)^2) in float64: W before each step and
    after the last, and the loss before each step."""
    W, b, Ws, losses = 0.0, 0.0, [], []
    x = X[:, 0].astype(np.float64)
    for _ in range(steps):
        r = x * W + b - y
        Ws.append(W)
        losses.append(np.mean(r * r))
        W, b = W - lr * 2 * np.mean(r * x), b - lr * 2 * np.mean(r)
    return np.array([*Ws, W]), np.array(losses)


def test_read_back_gives_the_calls_losses_and_recorded_parameters():
    runner, loader, tx, params, X, y = full_batch_runner()
    calls = calls_of(runner, loader, tx, params, epochs=6, max_steps=4)
    assert [(c.t0, c.block.epochs) for c in calls] == [(0, 4), (4, 2)]
    W_ref, loss_ref = gd_reference(X, y, 0.1, 6)
    losses = np.concatenate([c.losses for c in calls])
    np.testing.assert_allclose(losses, loss_ref, rtol=1e-5)
    recorded = np.concatenate([c.recorded["W"][:, 0] for c in calls])
    np.testing.assert_allclose(recorded, W_ref[:6], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(calls[-1].params["W"][0], W_ref[6], rtol=1e-5)
    assert all(c.n_valid == c.taken == c.losses.size and not c.stopped for c in calls)
    assert all(c.ends_epoch for c in calls)  # full batch: every call ends an epoch


def test_trace_prints_w_before_and_after_each_step_and_the_loss():
    runner, loader, tx, params, X, y = full_batch_runner()
    calls = calls_of(runner, loader, tx, params, epochs=3, max_steps=2)
    hooks, lines, curves = Hooks(), [], Curves()
    hooks.add(trace(curves, lines.append))
    at = Progressed()
    for c in calls:
        at.advance(c, loader.steps_per_epoch, 0.0)
        hooks(c, at)
    W_ref, loss_ref = gd_reference(X, y, 0.1, 3)
    assert lines[0::4] == ["iteration 1", "iteration 2", "iteration 3"]
    got_old = [float(s.split()[1]) for s in lines[1::4]]
    got_new = [float(s.split()[1]) for s in lines[2::4]]
    got_loss = [float(s.split()[2]) for s in lines[3::4]]
    np.testing.assert_allclose(got_old, W_ref[:3], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got_new, W_ref[1:], rtol=1e-5)
    np.testing.assert_allclose(got_loss, loss_ref, rtol=1e-5)
    np.testing.assert_allclose(np.concatenate(curves.trace_W), W_ref[:3], rtol=1e-5, atol=1e-7)
    assert at.step == 3 and at.epoch == 3 and at.stopped == "epochs"


def test_a_call_that_converges_stops_the_progress_and_logs_its_stopping_step():
    # tol above the first gradient's norm: the first step stops the run, and its loss is logged
    runner, loader, tx, params, X, y = full_batch_runner(tol=1e3)
    (call,) = calls_of(runner, loader, tx, params, epochs=5, max_steps=5)
    assert call.taken == 0 and call.stopped and not call.diverged and call.n_valid == 1
    _, loss_ref = gd_reference(X, y, 0.1, 1)
    np.testing.assert_allclose(call.losses[0], loss_ref[0], rtol=1e-6)
    assert np.isnan(call.losses[1:]).all()
    at = Progressed()
    at.advance(call, loader.steps_per_epoch, 0.0)
    assert (at.step, at.epoch, at.stopped) == (0, 0, "converged")
    assert at.ref_loss == pytest.approx(loss_ref[0], rel=1e-6)


class Out:
    params, opt_state, ref_loss = "params", "opt_state", 1.5


def fake_call(block, losses, ends_epoch=True, taken=None, diverged=False, **fields) -> Call:
    """A call's record with the given losses, as :func:`read_back` makes it."""
    losses = np.asarray(losses, np.float64)
    kwargs = dict(
        block=block,
        t0=0,
        losses=losses,
        taken=losses.size if taken is None else taken,
        diverged=diverged,
        ends_epoch=ends_epoch,
        positions=np.arange(losses.size),
        recorded={},
        epoch_params={},
        out=Out,
    )
    return Call(**{**kwargs, **fields})


def test_hooks_run_every_call_or_every_k_epochs_and_are_closed():
    seen: dict[str, list[int]] = {"all": [], "two": []}
    closed = []

    class Closing:
        def __call__(self, call, at):
            seen["all"].append(at.epoch)

        def close(self):
            closed.append(True)

    hooks = Hooks()
    hooks.add(Closing())
    hooks.add(lambda call, at: seen["two"].append(at.epoch), every=2)
    at = Progressed()
    for e in range(5):
        call = fake_call(Block(e, 1, 0, 1), [1.0])
        at.advance(call, 1, 0.0)
        hooks(call, at)
    half = fake_call(Block(5, 1, 0, 2), [1.0], ends_epoch=False)  # a cut epoch: no epoch end
    at.epoch = 6
    hooks(half, at)
    assert seen == {"all": [1, 2, 3, 4, 5, 6], "two": [2, 4]}
    hooks.close()
    assert closed == [True]
    with pytest.raises(ValueError):
        hooks.add(lambda c, a: None, every=0)


def test_checkpoint_hook_skips_a_call_that_stopped_or_diverged():
    saved = []
    hook = checkpoint(lambda at, p, s: saved.append((at.step, p, s)))
    at = Progressed(step=7)
    block = Block(0, 1, 0, 3)
    hook(fake_call(block, [1.0, 1.0, 1.0]), at)
    hook(fake_call(block, [1.0, np.nan, np.nan], taken=1), at)  # converged inside the call
    hook(fake_call(block, [1.0, np.inf, np.inf], taken=1, diverged=True), at)
    hook(fake_call(block, [1.0, 1.0, 1.0]), Progressed(step=9, stopped="converged"))  # epoch tol
    assert saved == [(7, "params", "opt_state")]


def test_orbax_policy_saves_every_k_epochs_and_forced_steps(tmp_path):
    """``Checkpoints(every_steps=k)``: orbax's FixedIntervalPolicy writes steps that are
    multiples of k; a forced save (a run's end, a stop) writes any step; none goes back."""
    from training.checkpoint import Checkpoints

    ckpt = Checkpoints(tmp_path / "c", keep=10, every_steps=6)  # 2 epochs of 3 steps
    state = {"params": {"W": np.ones(2, np.float32)}}
    written = [t for t in range(1, 16) if ckpt.save(t, state, {}, force=False)]
    assert written == [6, 12]
    assert ckpt.save(14, state, {}) and not ckpt.save(12, state, {}, force=False)  # behind 14
    assert ckpt.steps() == [6, 12, 14]
    assert Checkpoints(tmp_path / "d").save(3, state, {}, force=False) is False  # no interval
    ckpt.close()


@pytest.mark.slow
def test_a_run_checkpoints_the_epochs_orbax_picks_and_its_end(tmp_path):
    from conftest import make_config

    from training.checkpoint import Checkpoints
    from training.run import train_and_evaluate

    cfg = make_config(
        "experiment=housing_minibatch",  # 437 training rows in batches of 32: 14 steps an epoch
        "trainer.epochs=5",
        "trainer.tol=0",
        "trainer.checkpoint_every=2",
        "trainer.keep_checkpoints=10",
        "logger.plots=false",
        "logger.tensorboard=false",
    )
    train_and_evaluate(cfg, tmp_path)
    ckpt = Checkpoints(tmp_path / "checkpoints", create=False)
    assert ckpt.steps() == [2 * 14, 4 * 14, 5 * 14]
    ckpt.close()


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["housing_minibatch", "housing_full_batch"])
def test_a_hook_added_with_every_k_runs_at_each_kth_epoch(tmp_path, monkeypatch, experiment):
    """15 epochs fit in one call; a hook with every=7 still sees epochs 7 and 14: the run's
    calls end where its hooks run."""
    from conftest import make_config

    import training.run
    from training.run import train_and_evaluate

    seen = []
    make_hooks = training.run.make_hooks

    def with_probe(run, traced, *start):
        hooks = make_hooks(run, traced, *start)
        hooks.add(lambda call, at: seen.append((at.epoch, at.step)), every=7)
        return hooks

    monkeypatch.setattr(training.run, "make_hooks", with_probe)
    cfg = make_config(
        f"experiment={experiment}", "trainer.epochs=15", "logger.plots=false", "data.seed=0"
    )
    train_and_evaluate(cfg, tmp_path)
    spe = 14 if experiment == "housing_minibatch" else 1  # 437 training rows, batches of 32
    assert seen == [(7, 7 * spe), (14, 14 * spe)]


def test_every_process_cuts_its_calls_at_the_periods_of_all(monkeypatch):
    """Process 0 alone has the writing hooks; the periods the calls are cut at are the union
    over processes, so the processes' calls still meet (process_allgather, here simulated)."""
    import jax.experimental.multihost_utils as mh

    import training.run

    other = np.zeros(training.run.MAX_PERIODS, np.int64)
    other[:2] = [2, 5]  # another process's periods
    monkeypatch.setattr(training.run.jax, "process_count", lambda: 2)
    monkeypatch.setattr(mh, "process_allgather", lambda mine: np.stack([mine, other]))
    assert training.run.periods_of_every_process((3, 5)) == (2, 3, 5)
    assert training.run.periods_of_every_process(()) == (2, 5)
    monkeypatch.setattr(training.run.jax, "process_count", lambda: 1)
    assert training.run.periods_of_every_process((3,)) == (3,)


def test_epoch_tol_stops_when_the_epochs_mean_loss_changes_by_at_most_tol():
    at = Progressed()
    means = [4.0, 2.0, 1.9]  # changes: none (first epoch), 2.0 / 4.0 = 0.5, 0.1 / 2.0 = 0.05
    for e, mean in enumerate(means):
        for half in (0, 1):  # each epoch of 4 steps in two calls of 2
            t0 = 4 * e + 2 * half
            call = fake_call(Block(e, 1, 2 * half, 2 * half + 2), [mean, mean], half == 1, t0=t0)
            at.advance(call, 4, 0.1)
            if half == 0:
                assert at.epoch_step == 2 and at.epoch_loss_sum == pytest.approx(2 * mean)
        if e < 2:
            assert at.stopped == "epochs" and at.last_epoch_loss == mean and at.epoch_loss_sum == 0
    assert at.stopped == "converged" and (at.epoch, at.step) == (3, 12)


def test_progress_is_stored_as_json_numbers_and_old_repr_strings_still_read():
    fresh = Progressed()
    meta = fresh.meta()
    text = json.dumps(meta, allow_nan=False)  # valid JSON: no NaN, no Infinity
    assert meta["ref_loss"] is None and meta["last_epoch_loss"] is None
    back = Progressed.from_meta(json.loads(text))
    assert math.isnan(back.ref_loss) and back.last_epoch_loss == math.inf
    at = Progressed(step=12, epoch=3, epoch_step=2, ref_loss=0.25, epoch_loss_sum=1.5)
    at.last_epoch_loss = 0.125
    meta = json.loads(json.dumps(at.meta(), allow_nan=False))
    assert meta == {
        "step": 12,
        "epoch": 3,
        "epoch_step": 2,
        "ref_loss": 0.25,
        "epoch_loss_sum": 1.5,
        "last_epoch_loss": 0.125,
    }
    assert Progressed.from_meta(meta) == at
    old = {"step": 5, "epoch": 1, "epoch_step": 0, "ref_loss": "nan", "epoch_loss_sum": "0.5"}
    old["last_epoch_loss"] = "inf"
    got = Progressed.from_meta(old)
    assert math.isnan(got.ref_loss) and got.last_epoch_loss == math.inf
    assert (got.step, got.epoch_loss_sum) == (5, 0.5)


class Scalars:
    def __init__(self):
        self.logged: list[tuple[str, float, int]] = []
        self.writer = object()

    def scalar(self, tag, value, step):
        self.logged.append((tag, float(value), step))

    def scalars(self, tag_values, steps):  # TensorBoardLog.scalars: one event a step
        for i, step in enumerate(steps):
            for tag, values in tag_values.items():
                self.scalar(tag, values[i], int(step))


def test_validation_logs_the_metrics_of_each_epochs_parameters():
    from types import SimpleNamespace

    from training.evaluate import regression_metrics
    from training.plots import History

    X_val = np.array([[0.0], [1.0], [2.0]], np.float32)
    y_val = np.array([1.0, 2.0, 4.0])
    data = SimpleNamespace(
        X={"val": X_val},
        y_raw={"val": y_val},
        to_target_units=lambda pred: np.asarray(pred, np.float64),  # no scaling
    )
    tb, curve = Scalars(), History()
    hook = Validation(linear, data, full_batch=False, tb=tb, curve=curve)
    epoch_params = {
        "W": np.array([[1.0], [1.5]], np.float32),
        "b": np.array([1.0, 0.5], np.float32),
    }
    call = fake_call(Block(0, 2, 0, 10), np.ones(20), epoch_params=epoch_params)
    hook(call, Progressed())
    for k, (W, b) in enumerate([(1.0, 1.0), (1.5, 0.5)]):
        want = regression_metrics(y_val, X_val[:, 0] * W + b)
        got = {tag: v for tag, v, step in tb.logged if step == 10 * (k + 1)}
        assert got == pytest.approx({f"val/{m}": v for m, v in want.items()})
    assert [int(s) for s in curve.arrays()[0]] == [10, 20]
    tb.logged.clear()
    hook(fake_call(Block(0, 1, 0, 5), np.ones(5), ends_epoch=False), Progressed())
    assert tb.logged == []  # a cut epoch's call has no epoch-end parameters
