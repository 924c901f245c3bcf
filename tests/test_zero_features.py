"""A model with no features is the mean-price baseline (issue 12, item 5): it trains with ``W``
of shape (0,), checkpoints, resumes and predicts the training rows' mean."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_config, run_train
from test_predict import run_predict

from training.run import train_and_evaluate

PRICES = np.array([108, 136, 148, 104, 116, 107, 131, 148, 128, 130, 141, 124], float)


def write_ids_and_prices(path) -> list[str]:
    pd.DataFrame({"id": np.arange(len(PRICES)), "price": PRICES}).to_csv(path, index=False)
    return ["experiment=housing", f"data.path={path}", "data.target=price", "data.drop=[id]"]


@pytest.mark.slow
def test_the_issues_id_and_price_file_trains_and_predicts_the_mean(tmp_path):
    args = write_ids_and_prices(tmp_path / "prices.csv")
    run_dir = tmp_path / "run"
    proc = run_train(
        *args, "data.val_fraction=0", "data.test_fraction=0", f"hydra.run.dir={run_dir}"
    )
    assert proc.returncode == 0, proc.stderr
    assert "no feature columns" in proc.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    mean = PRICES.mean()  # least squares on a column of ones
    assert metrics["coefficients"] == {"intercept": pytest.approx(mean, rel=1e-6)}
    assert metrics["ols"]["intercept"] == pytest.approx(mean, rel=1e-7)  # float32 rows
    # R^2 of the mean is 0 by definition: SS_res = SS_tot
    assert metrics["train"]["r2"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["train"]["mse"] == pytest.approx(PRICES.var(), rel=1e-6)

    (tmp_path / "new.csv").write_text("id\n100\n101\n")  # rows without a feature column
    proc = run_predict(run_dir, tmp_path / "new.csv", "-o", tmp_path / "out.csv")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(out["predicted_price"], [mean, mean], rtol=1e-6)


@pytest.mark.slow
def test_resuming_a_run_without_features_is_exact(tmp_path):
    """Momentum keeps a zero-size trace of W: the checkpoint round-trips it."""
    args = write_ids_and_prices(tmp_path / "prices.csv")
    common = (*args, "optimizer=momentum", "optimizer.momentum=0.9", "optimizer.lr=0.01")
    common = (*common, "trainer.tol=0", "trainer.checkpoint_every=2", "logger.plots=false")
    common = (*common, "data.standardize=false")  # b moves from 0 towards the mean price
    whole = train_and_evaluate(make_config(*common, "trainer.epochs=6"), tmp_path / "whole")
    train_and_evaluate(make_config(*common, "trainer.epochs=4"), tmp_path / "cut")
    resumed = train_and_evaluate(
        make_config(*common, "trainer.epochs=6", "trainer.resume=true"), tmp_path / "cut"
    )
    assert set(whole["params"]) == {"b"} and whole["params"]["b"] > 10
    assert resumed["params"] == whole["params"]
    assert resumed["steps"] == 6
