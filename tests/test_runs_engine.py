"""Runs that never hang or stall: several processes with plots on, prompt stops, a sweep's exit
status, and event files of a size TensorBoard can open (issue 12, items 1, 3, 8, 9)."""

from __future__ import annotations

import pytest
from conftest import run_train


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
