"""The walkthrough's published trace: learn W in y = W x - 1 from six points, W0 = 8, lr 0.01."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import make_config, read_scalars, run_train

from training.run import train_and_evaluate

pytestmark = pytest.mark.slow  # every test here reads a whole run (train_and_evaluate, train.py)

F = np.float32
W_AFTER_FIRST_3 = [F(7.38), F(6.8240666), F(6.3255796)]
W_BEFORE_LAST_3 = [F(2.0356295), F(2.0319479), F(2.0286465)]
W_FINAL = F(2.0256863)
LOSS_FIRST_3 = [186.0, 149.54607, 120.236694]
LOSS_LAST_3 = [0.0065588956, 0.005273429, 0.004239871]


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("walkthrough")
    metrics = train_and_evaluate(make_config(), workdir)
    return workdir, metrics


def test_metrics_json_holds_the_final_W(walkthrough):
    workdir, metrics = walkthrough
    saved = json.loads((workdir / "metrics.json").read_text())
    assert F(saved["params"]["W"]) == W_FINAL
    assert F(saved["params"]["b"]) == F(-1.0)  # frozen
    assert saved["steps"] == 50
    assert saved["final_loss"] == pytest.approx(metrics["final_loss"])
    assert saved["wall_time_s"] > 0


def test_tensorboard_holds_the_published_trace(walkthrough):
    workdir, _ = walkthrough
    scalars = read_scalars(workdir)
    W = dict(scalars["params/W"])
    loss = dict(scalars["train/loss"])
    assert sorted(W) == list(range(51)) and sorted(loss) == list(range(50))
    # params/W at step t is W before update t, so W after update t is at step t
    assert [F(W[t]) for t in (1, 2, 3)] == W_AFTER_FIRST_3
    assert [F(W[t]) for t in (47, 48, 49)] == W_BEFORE_LAST_3
    assert F(W[50]) == W_FINAL
    assert F(W[0]) == F(8.0)
    assert all(F(b) == F(-1.0) for _, b in scalars["params/b"])
    np.testing.assert_allclose([loss[t] for t in (0, 1, 2)], LOSS_FIRST_3, rtol=1e-6)
    np.testing.assert_allclose([loss[t] for t in (47, 48, 49)], LOSS_LAST_3, rtol=1e-6)


def test_plots_are_written_as_png_and_tensorboard_images(walkthrough):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    workdir, _ = walkthrough
    for name in ("loss_vs_W.png", "trajectory.png"):
        assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = EventAccumulator(str(workdir), size_guidance={"images": 0})
    acc.Reload()
    assert {"plots/loss_vs_W", "plots/trajectory"} <= set(acc.Tags()["images"])


def test_loss_curve_matches_the_loss_at_W(walkthrough):
    from training.plots import loss_curve

    X = np.array([[-1.0], [0], [1], [2], [3], [4]])
    y = 2 * X[:, 0] - 1
    curve = loss_curve(X, y, -1.0, np.array([8.0, 2.0, -8.0]))
    np.testing.assert_allclose(curve, [186.0, 0.0, 100 * 31 / 6])


def test_train_py_prints_the_trace(tmp_path):
    proc = run_train(f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.split("iteration ")[1:]
    assert len(blocks) == 50
    first = blocks[0].splitlines()
    assert first == ["1", "W_old 8.0", "W_new 7.38", "loss is 186.0"]
    assert blocks[-1].splitlines()[:3] == ["50", "W_old 2.0286465", "W_new 2.0256863"]
    assert (tmp_path / ".hydra" / "config.yaml").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 50
    assert "Traceback" not in proc.stderr


def test_predict_with_the_walkthrough(walkthrough, tmp_path):
    from predict import predict

    workdir, _ = walkthrough
    (tmp_path / "x.csv").write_text("x\n5\n-2\n")
    pred, _, prep = predict(workdir, tmp_path / "x.csv")
    np.testing.assert_allclose(pred, [W_FINAL * 5 - 1, W_FINAL * -2 - 1], rtol=1e-6)
    assert prep["target"] == "y"
