"""The Windsor house prices: the published least-squares equation, metrics, prediction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, make_config, read_scalars, run_script, run_train
from sklearn.linear_model import LinearRegression as SkLinear
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from data.preprocess import split_rows
from predict import predict
from training.run import train_and_evaluate

HOUSING = ROOT / "data" / "housing" / "windsor_house_prices.csv"
# Verbeek, A Guide to Modern Econometrics, Table 3.3 (OLS on all 546 sales)
VERBEEK = {
    "intercept": -4038.35,
    "lotsize": 3.546,
    "bedrooms": 1832.0,
    "bathrooms": 14335.56,
    "stories": 6556.95,
    "driveway": 6687.78,
    "recreation": 4511.28,
    "fullbase": 5452.39,
    "gasheat": 12831.41,
    "aircon": 12632.89,
    "garage": 4244.83,
    "prefer": 9369.51,
}


@pytest.fixture(scope="module")
def housing_all_rows(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("housing")
    cfg = make_config("experiment=housing", "data.val_fraction=0", "data.test_fraction=0")
    return workdir, train_and_evaluate(cfg, workdir)


@pytest.mark.slow
def test_learns_the_published_price_equation(housing_all_rows):
    _, metrics = housing_all_rows
    assert metrics["stopped"] == "converged"
    coefs = metrics["coefficients"]
    for name, published in VERBEEK.items():
        # the published figures carry 4-6 significant digits: within 1e-3 of each
        assert coefs[name] == pytest.approx(published, rel=1e-3), name
    assert metrics["train"]["r2"] == pytest.approx(0.6731, abs=5e-5)
    assert metrics["ols"]["r2"] == pytest.approx(0.6731, abs=5e-5)
    assert metrics["ols_gap"]["max_rel_coefficient_diff"] < 1e-4


@pytest.mark.slow
def test_least_squares_reference_is_sklearns(housing_all_rows):
    _, metrics = housing_all_rows
    df = pd.read_csv(HOUSING)
    X = df.drop(columns="price").replace({"yes": 1, "no": 0}).astype(float)
    sk = SkLinear().fit(X, df["price"])
    ols = metrics["ols"]
    np.testing.assert_allclose([ols[c] for c in X.columns], sk.coef_, rtol=1e-6)
    assert ols["intercept"] == pytest.approx(sk.intercept_, rel=1e-6)


@pytest.mark.slow
def test_metrics_match_sklearn_on_every_split(tmp_path):
    cfg = make_config("experiment=housing", "seed=3")
    metrics = train_and_evaluate(cfg, tmp_path)
    df = pd.read_csv(HOUSING)
    rows = split_rows(len(df), 0.1, 0.1, seed=3)
    assert [len(rows[s]) for s in ("train", "val", "test")] == [436, 55, 55]
    pred, _, _ = predict(tmp_path, HOUSING)
    for split in ("train", "val", "test"):
        truth, guess = df["price"].to_numpy()[rows[split]], pred[rows[split]]
        m = metrics[split]
        assert m["mse"] == pytest.approx(mean_squared_error(truth, guess), rel=1e-5)
        assert m["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, guess)), rel=1e-5)
        assert m["mae"] == pytest.approx(mean_absolute_error(truth, guess), rel=1e-5)
        assert m["r2"] == pytest.approx(r2_score(truth, guess), abs=1e-5)
    # predictions.csv: every row once, by its number in the file, with its split, price and
    # prediction (predict.py's on the same file, to float32's rounding of the scaled
    # prediction); its splits' errors are metrics.json's
    written = pd.read_csv(tmp_path / "predictions.csv")
    assert list(written.columns) == ["row", "split", "price", "predicted_price", "residual"]
    assert written["row"].tolist() == list(range(1, len(df) + 1))
    for split in ("train", "val", "test"):
        assert (written["split"] == split).sum() == len(rows[split])
        assert (written["split"].to_numpy()[rows[split]] == split).all()
    np.testing.assert_array_equal(written["price"], df["price"])
    np.testing.assert_allclose(written["predicted_price"], pred, rtol=1e-6)
    np.testing.assert_array_equal(
        written["residual"], written["price"] - written["predicted_price"]
    )
    for split, part in written.groupby("split"):
        assert np.mean(part["residual"] ** 2) == pytest.approx(metrics[split]["mse"], rel=1e-6)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["val"]) == {"mse", "rmse", "mae", "r2"}
    assert saved["coefficients"].keys() == saved["ols"].keys() - {"r2"}
    # TensorBoard's validation curves end on the final parameters' validation metrics, each
    # logged step of the run once, in order
    scalars = read_scalars(tmp_path)
    steps = [step for step, _ in scalars["train/loss"]]
    for k in ("mse", "rmse", "mae", "r2"):
        assert [step for step, _ in scalars[f"val/{k}"]][-1] == metrics["steps"]
        assert scalars[f"val/{k}"][-1][1] == pytest.approx(metrics["val"][k], rel=1e-6)
    val_steps = [step for step, _ in scalars["val/rmse"]]
    assert val_steps == sorted(set(val_steps)) and set(val_steps) <= set(steps) | {steps[-1] + 1}


def test_split_is_reproducible_and_follows_the_seed():
    a, b, c = (
        split_rows(546, 0.1, 0.1, 0),
        split_rows(546, 0.1, 0.1, 0),
        split_rows(546, 0.1, 0.1, 1),
    )
    for s in a:
        np.testing.assert_array_equal(a[s], b[s])
    assert not np.array_equal(a["val"], c["val"])
    assert (len(a["val"]), len(a["test"]), len(a["train"])) == (55, 55, 436)
    everything = np.sort(np.concatenate(list(a.values())))
    np.testing.assert_array_equal(everything, np.arange(546))


@pytest.mark.slow
def test_prediction_round_trips_through_the_saved_run(housing_all_rows, tmp_path):
    workdir, metrics = housing_all_rows
    new = pd.read_csv(HOUSING).drop(columns="price").head(20)
    new.to_csv(tmp_path / "new.csv", index=False)
    pred, _, _ = predict(workdir, tmp_path / "new.csv")
    c = metrics["coefficients"]
    by_hand = c["intercept"] + sum(
        c[k] * new[k].replace({"yes": 1, "no": 0}).astype(float) for k in new.columns
    )
    np.testing.assert_allclose(pred, by_hand, rtol=1e-5)
    proc = run_predict(workdir, tmp_path / "new.csv", "-o", tmp_path / "out.csv")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(out["predicted_price"], pred, rtol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (
            lambda df: df.assign(driveway=["maybe"] + list(df.driveway[1:])),
            "column 'driveway' row 1: 'maybe'",
        ),
        (lambda df: df.assign(lotsize=[None] + list(df.lotsize[1:])), "column 'lotsize' row 1"),
    ],
)
@pytest.mark.slow
def test_prediction_refuses_unseen_values_and_gaps(housing_all_rows, tmp_path, edit, needle):
    workdir, _ = housing_all_rows
    new = edit(pd.read_csv(HOUSING).drop(columns="price").head(5))
    new.to_csv(tmp_path / "new.csv", index=False)
    proc = run_predict(workdir, tmp_path / "new.csv")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr


def run_predict(*args):
    return run_script("predict.py", *args, timeout=120)


@pytest.mark.slow
def test_train_py_housing_end_to_end(tmp_path):
    proc = run_train(
        "experiment=housing",
        "data.val_fraction=0",
        "data.test_fraction=0",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    assert "largest relative coefficient difference" in proc.stdout
    assert "driveway: yes/no as 1/0" in proc.stdout
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["coefficients"]["bathrooms"] == pytest.approx(14335.56, rel=1e-3)
    prep = json.loads((tmp_path / "preprocessing.json").read_text())
    assert prep["encoding"]["target"] == "price" and len(prep["scaling"]["x_mean"]) == 11
