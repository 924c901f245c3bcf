"""Runs that never hang or stall: several processes with plots on, prompt stops, a sweep's exit
status, and event files of a size TensorBoard can open (issue 12, items 1, 3, 8, 9)."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CONF,
    ROOT,
    communicate,
    concurrently,
    read_scalars,
    run_train,
    spawn,
    train_on_two_processes,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from data.loaders import make_loader
from errors import Interrupted
from training.blocks import (
    FULL_BATCH_STEP_COST,
    LOG_POINTS,
    WORK_PER_CALL,
    call_cap,
    log_period,
    plan_blocks,
)
from training.run import stop_on_signals


@pytest.mark.slow
def test_a_sweep_with_a_failed_run_ends_with_a_line_naming_it_and_exit_1(sweep_with_failed_runs):
    sweep, proc = sweep_with_failed_runs  # six runs; the two of optimizer.lr=-1 fail
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 6 runs failed: ")
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    failed = [r for r in runs if "optimizer.lr=-1," in r.name]
    assert len(runs) == 6 and len(failed) == 2
    assert any(f"failed: {a}, {b} (" in last for a, b in (failed, failed[::-1])), last
    for run in runs:
        if run not in failed:  # named by nobody, and finished
            assert run.name not in last and (run / "metrics.json").exists()


@pytest.mark.slow
def test_a_sweep_whose_runs_all_finish_exits_0(momentum_sweep):
    _, proc = momentum_sweep  # two runs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "runs failed" not in proc.stderr


HOUSING_LONG = (
    "experiment=housing",
    "trainer.tol=0",
    "optimizer.lr=0.001",
    "logger.plots=false",
    "data.val_fraction=0",
    "data.test_fraction=0",
)


@pytest.mark.slow
def test_a_long_run_logs_about_ten_thousand_points_a_tag_every_step_of_the_first(tmp_path):
    epochs = 30000  # full batch: steps; auto: every step up to 5000, then every 6th
    proc = run_train(*HOUSING_LONG, f"trainer.epochs={epochs}", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    loss = [s for s, _ in read_scalars(tmp_path)["train/loss"]]
    assert len(loss) <= LOG_POINTS
    assert loss[:5000] == list(range(5000))
    assert np.diff(loss[5000:]).max() == -(-epochs // 5000)
    assert loss[-1] >= epochs - 6


@pytest.mark.slow
def test_an_explicit_period_wins_and_a_run_that_stops_early_logs_every_step(tmp_path):
    # the shortest run that auto would thin (every 3rd step after the first 5000)
    epochs = LOG_POINTS + 1
    assert log_period("auto", epochs, 1) != (1, 0)
    explicit, early = concurrently(
        lambda: run_train(
            *HOUSING_LONG,
            f"trainer.epochs={epochs}",
            "logger.every_n_steps=1",
            f"hydra.run.dir={tmp_path / 'x'}",
        ),
        # housing plans 20000 epochs and stops on trainer.tol: every step it took is logged
        lambda: run_train(
            "experiment=housing",
            "optimizer.lr=0.05",  # not auto: Nesterov with these stops after a few hundred steps
            "optimizer.momentum=0.9",
            "logger.plots=false",
            f"hydra.run.dir={tmp_path / 'e'}",
        ),
    )
    assert explicit.returncode == 0, explicit.stderr[-2000:]
    assert [s for s, _ in read_scalars(tmp_path / "x")["train/loss"]] == list(range(epochs))
    assert early.returncode == 0, early.stderr[-2000:]
    steps = json.loads((tmp_path / "e" / "metrics.json").read_text())["steps"]
    assert 100 < steps < 1000
    assert [s for s, _ in read_scalars(tmp_path / "e")["train/loss"]] == list(range(steps + 1))


def start_train(*args: str) -> AbstractContextManager[subprocess.Popen]:
    """``train.py ARGS`` with its output in unbuffered byte pipes (:func:`wait_for_training` reads
    them by the chunk), killed with its children when the block ends."""
    return spawn(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_training(proc: subprocess.Popen, timeout: float = 180) -> None:
    """Until the run prints its first progress line: the first call has returned. Fails if the
    run ends first or prints none within ``timeout`` s (a hung child cannot hang the suite)."""
    out = b""
    deadline = time.monotonic() + timeout
    while not re.search(rb"^epoch ", out, re.M):
        left = deadline - time.monotonic()
        assert left > 0, f"no progress line within {timeout} s: {out[-2000:]!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            assert chunk, f"the run ended before its first progress line: {out[-2000:]!r}"
            out += chunk


@pytest.mark.slow
def test_sigterm_stops_a_long_full_batch_run_within_seconds_and_resume_is_exact(tmp_path):
    # 200000 full-batch steps on 437 rows; a call used to pack up to 2^27 rows x epochs
    args = (*HOUSING_LONG, "trainer.epochs=200000")
    with start_train(*args, f"hydra.run.dir={tmp_path / 'stopped'}") as proc:
        wait_for_training(proc)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        err = communicate(proc, timeout=60)[1].decode()
        took = time.monotonic() - sent
    assert took < 10
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.count("\n") == 1 and "trainer.resume=true" in err
    # no clock runs from here: the resumed and the whole run may share the cores
    resumed, whole = concurrently(
        lambda: run_train(*args, "trainer.resume=true", f"hydra.run.dir={tmp_path / 'stopped'}"),
        lambda: run_train(*args, f"hydra.run.dir={tmp_path / 'whole'}"),
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert whole.returncode == 0, whole.stderr[-2000:]
    params = [
        json.loads((tmp_path / d / "metrics.json").read_text())["params"]
        for d in ("stopped", "whole")
    ]
    assert params[0] == params[1]


def test_a_second_sigint_raises_at_once_with_exit_130():
    with pytest.raises(Interrupted, match="second SIGINT") as raised:
        with stop_on_signals("stopped by a second SIGINT") as asked:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # the handler runs in the main thread between bytecodes
            assert asked == [signal.SIGINT]
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
    assert raised.value.exit_code == 130


def test_one_sigterm_only_asks_to_stop():
    with stop_on_signals() as asked:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
    assert asked == [signal.SIGTERM, signal.SIGTERM]


@pytest.mark.slow
def test_ctrl_c_twice_ends_a_run_within_seconds_with_readable_events(tmp_path):
    with start_train(*HOUSING_LONG, "trainer.epochs=3000000", f"hydra.run.dir={tmp_path}") as proc:
        wait_for_training(proc)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        err = communicate(proc, timeout=60)[1].decode()
        took = time.monotonic() - sent
    assert took < 10
    assert proc.returncode == 130 and err.count("\n") == 1, err[-2000:]
    assert "trainer.resume=true" in err
    assert len(read_scalars(tmp_path)["train/loss"]) >= 5000  # flushed: the first call's steps


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def two_processes(run_dir: Path, *args: str, timeout: float = 240) -> list[tuple[str, str]]:
    """``train.py ARGS`` as two processes of two CPU devices each on 127.0.0.1; both must end
    (a hang is killed with its children and fails the test)."""
    procs, outs = train_on_two_processes(run_dir, *args, timeout=timeout)
    codes = [p.returncode for p in procs]
    assert codes == [0, 0], (codes, outs[0][1][-2000:], outs[1][1][-2000:])
    return outs


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_with_its_plots_runs_on_two_processes_like_one(tmp_path, name):
    args = (f"experiment={name}", "trainer.epochs=3")
    outs, one = concurrently(
        lambda: two_processes(tmp_path / "two", *args),
        lambda: run_train(*args, f"hydra.run.dir={tmp_path / 'one'}"),
    )
    assert "2 process(es)" in outs[0][0]
    assert one.returncode == 0, one.stderr[-2000:]
    two, single = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("two", "one"))
    assert two["process_count"] == 2 and two["steps"] == single["steps"]
    keys = sorted(single["params"])
    np.testing.assert_allclose(
        [two["params"][k] for k in keys], [single["params"][k] for k in keys], rtol=1e-5, atol=1e-7
    )
    drawn = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    assert sorted(p.name for p in (tmp_path / "two").glob("*.png")) == drawn


@pytest.mark.slow
def test_the_issues_synthetic_mini_batch_run_with_plots_ends_on_two_processes(tmp_path):
    args = ("data=synthetic", "data.n_samples=4096", "data.n_features=8", "loader=mini_batch")
    outs = two_processes(tmp_path, *args, "loader.batch_size=64", "trainer.epochs=3")
    assert "done: " in outs[0][0]
    assert (tmp_path / "loss_surface.png").exists()


@pytest.mark.parametrize(("n", "features"), [(6, 1), (437, 11), (10**6, 16), (10**7, 32)])
def test_a_full_batch_call_is_within_the_work_budget_whatever_the_rows(n, features):
    loader = make_loader("full_batch", None, False, False, n, 0)
    cap = call_cap(loader, features, 1 << 20)
    per_step = n * features + FULL_BATCH_STEP_COST
    assert cap * per_step <= WORK_PER_CALL or cap == 1
    assert (cap + 1) * per_step > WORK_PER_CALL or cap == 1 << 20
    if n == 437:  # the housing data: the old 2^27 rows a call were 307,143 steps
        assert cap == WORK_PER_CALL // (437 * 11 + FULL_BATCH_STEP_COST) == 165_203


def test_log_period_auto_keeps_short_runs_whole_and_long_ones_near_ten_thousand_points():
    assert log_period("auto", 50, 1) == (1, 0)  # the walkthrough
    assert log_period("auto", LOG_POINTS, 1) == (1, 0)
    assert log_period("auto", 3_000_000, 1) == (600, 5000)
    assert log_period("auto", 200 * 14, 14) == (1, 0)  # housing_minibatch: 14 steps an epoch
    assert log_period("auto", 10**6, 39063) == (196, 0)  # epochs larger than the dense start
    assert log_period(7, 3_000_000, 1) == (7, 0)


@settings(max_examples=200, deadline=None)
@given(steps_per_epoch=st.integers(2, 10**6), epochs=st.integers(1, 50_000))
def test_log_period_auto_keeps_a_tag_within_its_points(steps_per_epoch, epochs):
    # each epoch records from its first step: a 436-step epoch at period 262 recorded 2
    # points, 10,774 over 3000 epochs against a cap of 10^4
    total = steps_per_epoch * epochs
    period, dense = log_period("auto", total, steps_per_epoch)
    rest = max(0, epochs - dense)
    points = min(dense, epochs) * steps_per_epoch + rest * -(-steps_per_epoch // period)
    if total <= LOG_POINTS:
        assert (period, points) == (1, total)
    elif rest <= LOG_POINTS // 2:
        assert points <= LOG_POINTS
    else:  # more epochs than points: one an epoch
        assert period == steps_per_epoch and points == dense * steps_per_epoch + rest


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 120),
    bs=st.integers(1, 40),
    epochs=st.integers(1, 40),
    max_steps=st.integers(1, 300),
    every=st.integers(0, 7),
    period=st.integers(1, 9),
    dense=st.integers(0, 45),
    stop=st.integers(0, 40),
)
def test_blocks_with_a_dense_start_cover_every_step_once_and_resume_where_they_were_cut(
    n, bs, epochs, max_steps, every, period, dense, stop
):
    loader = make_loader("mini_batch", bs, True, False, n, 0)
    blocks = list(plan_blocks(loader, 0, epochs, max_steps, every, period, dense_epochs=dense))
    seen = []
    for b in blocks:
        assert b.every == (1 if b.epoch < dense else period)
        assert b.epoch >= dense or b.epoch + b.epochs <= dense  # the dense start ends a call
        assert b.start % b.every == 0
        seen.extend(
            (e, s) for e in range(b.epoch, b.epoch + b.epochs) for s in range(b.start, b.stop)
        )
    assert seen == [(e, s) for e in range(epochs) for s in range(loader.steps_per_epoch)]
    # a run stopped after any call plans the rest exactly as the uninterrupted run did
    b = blocks[min(stop, len(blocks) - 1)]
    ends = b.stop == loader.steps_per_epoch
    first, step = (b.epoch + b.epochs, 0) if ends else (b.epoch, b.stop)
    rest = list(plan_blocks(loader, first, epochs, max_steps, every, period, step, 1, dense))
    assert rest == blocks[blocks.index(b) + 1 :]
