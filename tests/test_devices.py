"""Several simulated CPU devices and several processes train like one device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import (
    ROOT,
    concurrently,
    reserved_port,
    resumed_step,
    run_train,
    signal_at_checkpoint,
    spawn,
    train_on_two_processes,
)

pytestmark = pytest.mark.slow  # every test here starts train.py processes

DATA = ("experiment=synthetic", "data.n_samples=1001", "data.n_features=4")


def devices(n: int) -> dict:
    return {"XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}


def params(run_dir) -> np.ndarray:
    p = json.loads((run_dir / "metrics.json").read_text())["params"]
    return np.array([p[k] for k in sorted(p)])


@pytest.mark.parametrize(
    "loader",
    [
        ("loader=full_batch", "trainer.epochs=40"),
        ("loader=mini_batch", "loader.batch_size=8", "trainer.epochs=3"),
    ],
)
def test_four_devices_end_where_one_does(tmp_path, loader):
    one, four = concurrently(
        lambda: run_train(*DATA, *loader, f"hydra.run.dir={tmp_path / 'one'}", env=devices(1)),
        lambda: run_train(*DATA, *loader, f"hydra.run.dir={tmp_path / 'four'}", env=devices(4)),
    )
    assert one.returncode == four.returncode == 0, four.stderr
    assert "platform cpu, 4 device(s), 1 process(es)" in four.stdout
    saved = json.loads((tmp_path / "four" / "metrics.json").read_text())
    assert saved["device_count"] == 4 and saved["process_count"] == 1
    np.testing.assert_allclose(params(tmp_path / "four"), params(tmp_path / "one"), rtol=1e-6)


def test_per_sample_runs_on_one_device_and_says_so(tmp_path):
    args = (*DATA, "loader=per_sample", "trainer.epochs=1")
    one, four = concurrently(
        lambda: run_train(*args, f"hydra.run.dir={tmp_path / 'one'}", env=devices(1)),
        lambda: run_train(*args, f"hydra.run.dir={tmp_path / 'four'}", env=devices(4)),
    )
    assert one.returncode == four.returncode == 0
    assert four.stdout.count("per-sample SGD is sequential: it runs on one device") == 1
    np.testing.assert_array_equal(params(tmp_path / "four"), params(tmp_path / "one"))


def test_batch_the_devices_do_not_divide_is_an_error(tmp_path):
    proc = run_train(
        *DATA,
        "loader=mini_batch",
        "loader.batch_size=6",
        f"hydra.run.dir={tmp_path}",
        env=devices(4),
    )
    assert proc.returncode == 2
    assert "loader.batch_size=6" in proc.stderr and "the 4 devices" in proc.stderr


@pytest.mark.parametrize(
    "loader",
    [
        ("loader=mini_batch", "loader.batch_size=8", "trainer.epochs=3"),
        ("loader=full_batch", "trainer.epochs=40"),
    ],
)
def test_two_processes_train_together_like_one(tmp_path, loader):
    args = (*DATA, *loader)
    run_dir = tmp_path / "two"
    (procs, outs), one = concurrently(
        lambda: train_on_two_processes(run_dir, *args),
        lambda: run_train(*args, f"hydra.run.dir={tmp_path / 'one'}", env=devices(1)),
    )
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert "platform cpu, 4 device(s), 2 process(es)" in outs[0][0]
    # each process draws only its own rows: 1001 rows padded to 1004, 502 a process
    assert "process 0: draws rows 0..501 of 1001" in outs[0][0]
    assert "process 1: draws rows 502..1000 of 1001" in outs[1][0]
    assert one.returncode == 0
    np.testing.assert_allclose(params(run_dir), params(tmp_path / "one"), rtol=1e-6)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert len(list(run_dir.rglob("metrics.json"))) == 1
    assert json.loads((run_dir / "metrics.json").read_text())["process_count"] == 2


def test_kill_and_resume_on_four_devices_is_exact(tmp_path):
    args = (
        *DATA,
        "data.n_samples=20000",
        "loader=mini_batch",
        "loader.batch_size=8",
        "trainer.epochs=10",
        "trainer.checkpoint_every=1",
        "logger.every_n_steps=100",
    )
    run_dir, ckpts = tmp_path / "killed", tmp_path / "killed" / "checkpoints"

    def killed() -> tuple[subprocess.Popen, list[int]]:
        with spawn(
            [sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={run_dir}"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **devices(4)},
        ) as proc:
            # killed when the third of ten epochs' checkpoints appears: steps remain
            return proc, signal_at_checkpoint(proc, ckpts, 3 * 2500, signal.SIGKILL)

    # the moment of the kill is a checkpoint, not a time: the whole run may share the cores
    whole, (proc, on_disk) = concurrently(
        lambda: run_train(*args, f"hydra.run.dir={tmp_path / 'whole'}", env=devices(4)), killed
    )
    assert whole.returncode == 0, whole.stderr
    assert proc.returncode == -signal.SIGKILL
    assert 3 * 2500 <= max(on_disk) < 10 * 2500 and not (run_dir / "metrics.json").exists()
    resumed = run_train(*args, "trainer.resume=true", f"hydra.run.dir={run_dir}", env=devices(4))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_step(resumed.stdout, ckpts) == max(on_disk)
    np.testing.assert_array_equal(params(run_dir), params(tmp_path / "whole"))


def test_unreachable_coordinator_is_a_clear_error_in_bounded_time(tmp_path):
    start = time.monotonic()
    with reserved_port(share=False) as port:  # bound, never listening: connections are refused
        proc = run_train(
            *DATA,
            f"trainer.distributed.coordinator=127.0.0.1:{port}",
            "trainer.distributed.num_processes=2",
            "trainer.distributed.process_id=1",
            "trainer.distributed.initialization_timeout=3",
            f"hydra.run.dir={tmp_path}",
        )
    assert time.monotonic() - start < 60
    assert proc.returncode == 2
    assert "cannot reach the coordinator 127.0.0.1:" in proc.stderr
    assert proc.stderr.count("\n") == 1
