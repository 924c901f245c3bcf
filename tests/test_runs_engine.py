"""Runs that never hang or stall: several processes with plots on, prompt stops, a sweep's exit
status, and event files of a size TensorBoard can open (issue 12, items 1, 3, 8, 9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, read_scalars, run_train

from training.errors import Interrupted
from training.loop import LOG_POINTS
from training.run import stop_on_signals


@pytest.mark.slow
def test_a_sweep_with_a_failed_run_ends_with_a_line_naming_it_and_exit_1(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m",
        "experiment=housing",
        "trainer.epochs=3",
        "optimizer.lr=0.01,-1",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 of 2 runs failed: ")
    failed = sweep / "experiment=housing,optimizer.lr=-1,trainer.epochs=3"
    assert f"failed: {failed} (" in last and "lr=0.01" not in last
    assert (
        sweep / "experiment=housing,optimizer.lr=0.01,trainer.epochs=3" / "metrics.json"
    ).exists()


@pytest.mark.slow
def test_a_sweep_whose_runs_all_finish_exits_0(tmp_path):
    proc = run_train(
        "-m", "experiment=seed", "trainer.epochs=2,3", f"hydra.sweep.dir={tmp_path / 'sweep'}"
    )
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
    explicit = run_train(
        *HOUSING_LONG, "trainer.epochs=12000", "logger.every_n_steps=1", f"hydra.run.dir={tmp_path}"
    )
    assert explicit.returncode == 0, explicit.stderr[-2000:]
    assert [s for s, _ in read_scalars(tmp_path)["train/loss"]] == list(range(12000))
    # housing plans 20000 epochs and stops on trainer.tol: every step it took is logged
    early = run_train("experiment=housing", "logger.plots=false", f"hydra.run.dir={tmp_path / 'e'}")
    assert early.returncode == 0, early.stderr[-2000:]
    steps = json.loads((tmp_path / "e" / "metrics.json").read_text())["steps"]
    assert 100 < steps < 1000
    assert [s for s, _ in read_scalars(tmp_path / "e")["train/loss"]] == list(range(steps + 1))


def start_train(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for_training(proc: subprocess.Popen) -> None:
    """Until the run prints its first progress line: the first call has returned."""
    for line in proc.stdout:
        if line.startswith("epoch "):
            return
    raise AssertionError(proc.communicate())


@pytest.mark.slow
def test_sigterm_stops_a_long_full_batch_run_within_seconds_and_resume_is_exact(tmp_path):
    # 200000 full-batch steps on 437 rows; a call used to pack up to 2^27 rows x epochs
    args = (*HOUSING_LONG, "trainer.epochs=200000")
    proc = start_train(*args, f"hydra.run.dir={tmp_path / 'stopped'}")
    wait_for_training(proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.count("\n") == 1 and "trainer.resume=true" in err
    resumed = run_train(*args, "trainer.resume=true", f"hydra.run.dir={tmp_path / 'stopped'}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    whole = run_train(*args, f"hydra.run.dir={tmp_path / 'whole'}")
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
    proc = start_train(*HOUSING_LONG, "trainer.epochs=3000000", f"hydra.run.dir={tmp_path}")
    wait_for_training(proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 130 and err.count("\n") == 1, err[-2000:]
    assert "trainer.resume=true" in err
    assert len(read_scalars(tmp_path)["train/loss"]) >= 5000  # flushed: the first call's steps
