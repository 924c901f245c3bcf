"""What a house-price user reads after a fit: standard errors against the published table and
statsmodels, the diagnostic plots, cross-validation against scikit-learn, the Optuna search."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import ROOT, make_config, run_train
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from data.preprocess import Scaling, fold_rows, split_rows
from errors import UserError
from training import plots
from training.evaluate import aliased_columns, linear_inference
from training.run import objective, train_and_evaluate

HOUSING = ROOT / "data" / "housing" / "windsor_house_prices.csv"
# Verbeek, A Guide to Modern Econometrics (2004), Table 3.3: standard errors of the OLS price
# equation on all 546 sales
VERBEEK_SE = {
    "intercept": 3409.47,
    "lotsize": 0.3503,
    "bedrooms": 1047.00,
    "bathrooms": 1489.92,
    "stories": 925.29,
    "driveway": 2045.25,
    "recreation": 1899.96,
    "fullbase": 1588.02,
    "gasheat": 3217.60,
    "aircon": 1555.02,
    "garage": 840.54,
    "prefer": 1669.09,
}


def housing_design(df: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.Series]:
    df = pd.read_csv(HOUSING) if df is None else df
    X = df.drop(columns="price").replace({"yes": 1, "no": 0}).astype(float)
    return X, df["price"].astype(float)


def statsmodels_fit(cov_type: str = "nonrobust"):
    X, y = housing_design()
    return sm.OLS(y, sm.add_constant(X)).fit(cov_type=cov_type, use_t=True)


@pytest.fixture(scope="module")
def housing_all_rows(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("housing_se")
    cfg = make_config(
        "experiment=housing", "data.val_fraction=0", "data.test_fraction=0", "logger.plots=false"
    )
    return workdir, train_and_evaluate(cfg, workdir)


def sm_name(name: str) -> str:
    return "const" if name == "intercept" else name


@pytest.mark.slow
def test_classical_standard_errors_are_the_published_table(housing_all_rows):
    workdir, metrics = housing_all_rows
    assert metrics["inference"]["note"] is None
    assert metrics["inference"]["df_resid"] == 546 - 12
    se = json.loads((workdir / "metrics.json").read_text())["standard_errors"]
    assert se.keys() == VERBEEK_SE.keys()
    for name, published in VERBEEK_SE.items():
        assert se[name]["classical"] == pytest.approx(published, rel=1e-3), name


@pytest.mark.slow
@pytest.mark.parametrize("cov_type", ["nonrobust", "HC1"])
def test_standard_errors_t_p_and_intervals_are_statsmodels(housing_all_rows, cov_type):
    _, metrics = housing_all_rows
    kind = "classical" if cov_type == "nonrobust" else "hc1"
    ref = statsmodels_fit(cov_type)
    ci = ref.conf_int(0.05)
    for name in VERBEEK_SE:
        k = sm_name(name)
        # float32 sums at a float32 fit (coefficients within 6e-6 of least squares)
        assert metrics["standard_errors"][name][kind] == pytest.approx(ref.bse[k], rel=1e-4)
        assert metrics["t_statistics"][name][kind] == pytest.approx(ref.tvalues[k], rel=1e-4)
        assert metrics["p_values"][name][kind] == pytest.approx(ref.pvalues[k], rel=2e-3)
        np.testing.assert_allclose(
            metrics["confidence_intervals_95"][name][kind], ci.loc[k], rtol=1e-4
        )
    # HC1 differs from the classical errors: the test above could not pass with one for both
    assert metrics["standard_errors"]["gasheat"]["hc1"] > 1.3 * VERBEEK_SE["gasheat"]


@pytest.mark.parametrize("n", [640, 1000])
def test_weighted_normal_equations_in_blocks_of_rows_are_the_whole_sums(n):
    """``[X 1]^T diag(w) [X 1]`` summed over blocks of 64 rows (n = 1000: a last block that
    starts early, its rows summed before weighing 0) against float64 numpy: the same matrix
    to float32 rounding; so is the one-pass form the blocks replace on one device above
    ``ROWS_PER_BLOCK`` rows (where diag(w) X made whole was a copy of X)."""
    import jax

    from training.evaluate import ROWS_PER_BLOCK, _normal_equations, normal_equations

    def assert_float32_sums(G, X, w):
        # float32 rounding of each sum: a few units of 2^-24 of the sum of its terms' sizes
        A = np.column_stack([X.astype(np.float64), np.ones(len(X))])
        w = w.astype(np.float64)[:, None]
        size = np.abs(A).T @ (np.abs(A) * w)
        assert np.all(np.abs(np.asarray(G, np.float64) - A.T @ (A * w)) <= 1e-5 * size)

    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    w = rng.random(n).astype(np.float32)
    for block in (64, 0):
        G, _ = _normal_equations(jax.device_put(X), None, jax.device_put(w), block=block)
        assert_float32_sums(G, X, w)
    X_big = np.tile(X, (-(-(ROWS_PER_BLOCK + 1) // n), 1))
    w_big = np.resize(w, len(X_big))
    G, _ = normal_equations(jax.device_put(X_big), None, jax.device_put(w_big))
    assert_float32_sums(G, X_big, w_big)


@pytest.mark.parametrize("standardize", [True, False])
def test_inference_maps_scaled_moments_to_the_users_units(standardize):
    # a log target and a subset of rows, computed without training: the exact least squares
    # of the scaled problem, its moments, and statsmodels on the unscaled columns
    X, y = housing_design()
    X, y = X.iloc[::3], np.log(y.iloc[::3])
    names = list(X.columns)
    Xa, ya = X.to_numpy(), y.to_numpy()
    scaling = Scaling.fit(Xa, ya, names, "test") if standardize else Scaling.identity(len(names))
    Xs, ys = (Xa - scaling.x_mean) / scaling.x_scale, (ya - scaling.y_mean) / scaling.y_scale
    A = np.column_stack([Xs, np.ones(len(ys))])
    beta = np.linalg.lstsq(A, ys, rcond=None)[0]
    e = ys - A @ beta
    W_o, b_o = scaling.to_original(beta[:-1], beta[-1])
    coefs = {**dict(zip(names, W_o, strict=True)), "intercept": b_o}
    out = linear_inference(A.T @ A, (A.T * e**2) @ A, len(ys), coefs, scaling, names)
    for cov_type, kind in (("nonrobust", "classical"), ("HC1", "hc1")):
        ref = sm.OLS(ya, sm.add_constant(Xa)).fit(cov_type=cov_type, use_t=True)
        got = [out["standard_errors"][k][kind] for k in [*names, "intercept"]]
        np.testing.assert_allclose(got, [*ref.bse[1:], ref.bse[0]], rtol=1e-9)
        got = [out["p_values"][k][kind] for k in [*names, "intercept"]]
        np.testing.assert_allclose(got, [*ref.pvalues[1:], ref.pvalues[0]], rtol=1e-7)


def test_aliased_columns_are_named_the_later_of_each_combination():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    X = np.column_stack([X, X[:, 1] - 2 * X[:, 3], 3 + 0 * X[:, 0]])  # a combination, a constant
    A = np.column_stack([X, np.ones(50)])
    names = ["a", "b", "c", "d", "b_minus_2d", "three"]
    assert aliased_columns(A.T @ A, names) == ["b_minus_2d", "three"]
    assert aliased_columns(A[:, [0, 1, 2, 3, 6]].T @ A[:, [0, 1, 2, 3, 6]], names[:4]) == []


@pytest.mark.parametrize("unscaled", [True, False])
def test_a_date_in_years_beside_the_intercept_is_said_to_need_centred_columns(unscaled):
    # data.standardize=false: a sale date around 2019 is all but constant beside the
    # intercept, aliased as float32 sees it; "drop it" was the only advice, and the fit on
    # standardised columns tells the two apart
    from data.preprocess import Scaling
    from training.evaluate import linear_inference

    rng = np.random.default_rng(0)
    date = 2019 + rng.uniform(0, 3, 300)
    A = np.column_stack([date, rng.normal(size=300), np.ones(300)])
    scaling = Scaling.identity(2) if unscaled else Scaling([1.0, 0.0], [2.0, 1.0], 0.0, 1.0)
    coefs = {"sale_date": 1.0, "x": 1.0, "intercept": 0.0}
    out = linear_inference(A.T @ A, A.T @ A, 300, coefs, scaling, ["sale_date", "x"])
    note = out["inference"]["note"]
    assert note.startswith("rank-deficient design: sale_date is a linear combination")
    assert ("set data.standardize=true, whose centred columns tell them apart" in note) == unscaled


@pytest.mark.slow
def test_a_rank_deficient_design_names_the_aliased_column(tmp_path):
    df = pd.read_csv(HOUSING)
    df["lotsize_sqm"] = df["lotsize"] * 0.09290304  # the same size in square metres
    df.to_csv(tmp_path / "houses.csv", index=False)
    cfg = make_config(
        "experiment=housing",
        f"data.path={tmp_path / 'houses.csv'}",
        "data.val_fraction=0",
        "data.test_fraction=0",
        "logger.plots=false",
        "logger.tensorboard=false",
        "trainer.epochs=300",
    )
    metrics = train_and_evaluate(cfg, tmp_path / "run")
    assert metrics["inference"]["aliased"] == ["lotsize_sqm"]
    assert "lotsize_sqm" in metrics["inference"]["note"]
    assert "data.drop" in metrics["inference"]["note"]
    assert all(v is None for v in metrics["standard_errors"].values())


@pytest.mark.slow
def test_a_fit_that_has_not_converged_says_so(tmp_path, capsys):
    cfg = make_config(
        "experiment=housing",
        "data.val_fraction=0",
        "data.test_fraction=0",
        "logger.plots=false",
        "logger.tensorboard=false",
        "trainer.epochs=5",
    )
    metrics = train_and_evaluate(cfg, tmp_path)
    assert metrics["ols_gap"]["max_rel_coefficient_diff"] > 1e-3
    assert "not converged" in metrics["inference"]["note"]
    out = capsys.readouterr().out
    assert "\nstandard errors: gradient descent has not converged" in out
    # one warning line, the run's own, says what to change
    assert [ln for ln in out.splitlines() if ln.startswith("warning:")] == [
        next(ln for ln in out.splitlines() if ln.startswith("warning: stopped after 5 epochs"))
    ]
    assert metrics["standard_errors"]["lotsize"]["classical"] > 0


@pytest.mark.parametrize(
    "optimizer, method",
    [("sgd", "gradient descent"), ("nesterov", "gradient descent"), ("adam", "Adam")],
)
def test_the_coefficient_table_names_the_method_that_trained_it(
    tmp_path, capsys, optimizer, method
):
    cfg = make_config(
        "experiment=housing",
        f"optimizer={optimizer}",
        "logger.plots=false",
        "logger.tensorboard=false",
        "trainer.epochs=3",
    )
    train_and_evaluate(cfg, tmp_path)
    header = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("coefficient"))
    assert f"  {method:>16}   least squares  rel diff" in header


@pytest.mark.slow
def test_a_model_that_is_not_linear_has_no_standard_errors(tmp_path):
    cfg = make_config(
        "experiment=housing",
        "model=quadratic",
        "optimizer.lr=0.005",
        "trainer.epochs=5",
        "logger.plots=false",
        "logger.tensorboard=false",
    )
    metrics = train_and_evaluate(cfg, tmp_path)
    assert metrics["standard_errors"] is None
    assert "linear model" in metrics["inference"]["note"]


def test_diagnostic_plots_draw_the_values_they_are_given(tmp_path):
    rng = np.random.default_rng(1)
    actual = rng.normal(1e5, 2e4, 300)
    pred = actual + rng.normal(0, 5e3, 300)
    fig1, fig2 = plots.diagnostic_plots(tmp_path, actual, pred, "validation", "price")
    np.testing.assert_allclose(fig1.axes[0].collections[0].get_offsets(), np.c_[actual, pred])
    np.testing.assert_allclose(
        fig2.axes[0].collections[0].get_offsets(), np.c_[pred, actual - pred]
    )
    assert fig2.axes[0].get_ylabel() == "residual (actual - predicted price)"
    assert "300 validation rows" in fig1.axes[0].get_title()
    # many rows: a fixed sample, drawn from the rows given
    big = rng.normal(size=50_000)
    fig3, _ = plots.diagnostic_plots(tmp_path, big, 2 * big, "training", "price", max_points=1000)
    drawn = fig3.axes[0].collections[0].get_offsets()
    assert len(drawn) == 1000 and np.isin(drawn[:, 0], big).all()
    np.testing.assert_array_equal(drawn[:, 1], 2 * drawn[:, 0])
    assert "1000 of 50000 training rows" in fig3.axes[0].get_title()
    assert (tmp_path / "predicted_vs_actual.png").stat().st_size > 0
    assert (tmp_path / "residuals.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("val_fraction", "rows", "split"), [("0.1", 55, "val"), ("0", 546, "train")]
)
def test_a_run_plots_the_validation_rows_else_the_training_rows(
    tmp_path, monkeypatch, val_fraction, rows, split
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    drawn = {}
    real = plots.diagnostic_plots

    def spy(workdir, actual, pred, which, target, **kw):
        drawn.update(actual=np.asarray(actual), pred=np.asarray(pred), which=which, target=target)
        return real(workdir, actual, pred, which, target, **kw)

    monkeypatch.setattr(plots, "diagnostic_plots", spy)
    cfg = make_config(
        "experiment=housing",
        f"data.val_fraction={val_fraction}",
        "data.test_fraction=0",
        "trainer.epochs=300",
    )
    metrics = train_and_evaluate(cfg, tmp_path)
    assert len(drawn["actual"]) == rows and drawn["target"] == "price"
    assert drawn["which"] == ("validation" if split == "val" else "training")
    # the drawn values are those the metrics were computed from, in dollars
    rmse = np.sqrt(np.mean((drawn["actual"] - drawn["pred"]) ** 2))
    assert rmse == pytest.approx(metrics[split]["rmse"], rel=1e-9)
    assert 1e4 < rmse < 3e4
    for name in ("predicted_vs_actual", "residuals"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    assert {"plots/predicted_vs_actual", "plots/residuals"} <= set(acc.Tags()["images"])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 400),
    folds=st.integers(2, 12),
    val=st.sampled_from([0.0, 0.1, 0.25]),
    test=st.sampled_from([0.0, 0.1, 0.2]),
    seed=st.integers(0, 2**31 - 1),
)
def test_folds_partition_the_non_test_rows(n, folds, val, test, seed):
    split = split_rows(n, val, test, seed)  # these fractions always leave training rows
    rest = n - len(split["test"])
    assume(rest >= 2 * folds)  # else refused: the next test
    parts = fold_rows(n, folds, val, test, seed)
    held = np.concatenate([p["val"] for p in parts])
    np.testing.assert_array_equal(np.sort(held), np.setdiff1d(np.arange(n), split["test"]))
    sizes = [len(p["val"]) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and len(parts) == folds
    for p in parts:
        np.testing.assert_array_equal(p["test"], split["test"])
        assert not set(p["train"]) & set(p["val"])
        assert len(p["train"]) + len(p["val"]) == rest
        assert all(np.all(np.diff(p[k]) > 0) for k in p)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 400),
    more=st.integers(1, 10),
    val=st.sampled_from([0.0, 0.1, 0.25]),
    test=st.sampled_from([0.0, 0.1, 0.2]),
    seed=st.integers(0, 2**31 - 1),
)
def test_more_folds_than_half_the_rows_outside_the_test_rows_is_refused(n, more, val, test, seed):
    rest = n - round(n * test)
    folds = rest // 2 + more  # a fold validates on two rows at least
    with pytest.raises(UserError, match=f"data.folds={folds}: only {rest} rows") as err:
        fold_rows(n, folds, val, test, seed)
    if rest >= 4:  # the advice, followed, cuts the folds
        at_most = int(str(err.value).rsplit("data.folds=", 1)[1])
        assert at_most == rest // 2 and len(fold_rows(n, at_most, val, test, seed)) == at_most


@pytest.fixture(scope="module")
def housing_cv(tmp_path_factory):
    import training.step

    made = []
    real = training.step.make_train_call

    def spy(apply_fn, tx, spec, *args, **kwargs):
        made.append((id(tx), spec, real(apply_fn, tx, spec, *args, **kwargs)))
        return made[-1][-1]

    workdir = tmp_path_factory.mktemp("housing_cv")
    cfg = make_config(
        "experiment=housing",
        "data.val_fraction=0",
        "data.test_fraction=0",
        "data.folds=5",
        "logger.plots=false",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.step, "make_train_call", spy)
        metrics = train_and_evaluate(cfg, workdir)
    return workdir, metrics, made


@pytest.mark.slow
def test_cross_validation_agrees_with_scikit_learn(housing_cv):
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_score

    workdir, metrics, _ = housing_cv
    X, y = housing_design()
    reference = cross_val_score(LinearRegression(), X, y, cv=KFold(5, shuffle=True, random_state=0))
    cv = json.loads((workdir / "metrics.json").read_text())["cv"]
    assert cv["r2"]["mean"] == pytest.approx(reference.mean(), abs=0.02)
    # our folds exactly: least squares on each fold's training rows, scored on its held-out rows
    for i, rows in enumerate(fold_rows(546, 5, 0.0, 0.0, seed=0)):
        fit = LinearRegression().fit(X.iloc[rows["train"]], y.iloc[rows["train"]])
        pred = fit.predict(X.iloc[rows["val"]])
        truth = y.iloc[rows["val"]]
        assert cv["r2"]["folds"][i] == pytest.approx(r2_score(truth, pred), abs=1e-5)
        assert cv["rmse"]["folds"][i] == pytest.approx(np.sqrt(np.mean((truth - pred) ** 2)), 1e-5)
        saved = json.loads((workdir / "folds" / str(i) / "metrics.json").read_text())
        assert saved["val"]["r2"] == cv["r2"]["folds"][i]
    for metric in ("mse", "rmse", "mae", "r2"):
        assert cv[metric]["mean"] == pytest.approx(np.mean(cv[metric]["folds"]))
        assert cv[metric]["std"] == pytest.approx(np.std(cv[metric]["folds"]))


@pytest.mark.slow
def test_folds_reuse_one_compiled_call(housing_cv):
    _, metrics, made = housing_cv
    # the main run's calls (every step logged for the first 5000, then every 4th: two shapes)
    # and one set shared by all five folds, each compiled for one shape only
    optimizers = sorted({tx for tx, _, _ in made}, key=[tx for tx, _, _ in made].index)
    assert len(optimizers) == 2
    main, folds = ([spec for tx, spec, _ in made if tx == o] for o in optimizers)
    assert folds == main and len(set(main)) == len(main)
    assert [f._cache_size() for _, _, f in made] == [1] * len(made)
    assert metrics["cv"]["r2"]["folds"][0] != metrics["cv"]["r2"]["folds"][1]


def test_the_search_objective_is_the_validation_rmse():
    assert objective(None) == math.inf  # a failed trial: ranked last, the study goes on
    assert objective({"val": {"rmse": 12.5}, "train": {"rmse": 1.0}}) == 12.5
    assert objective({"train": {"rmse": 1.0}}) == math.inf
    cv = {"rmse": {"mean": 11.0, "std": 1.0, "folds": [10.0, 12.0]}}
    assert objective({"val": {"rmse": 12.5}, "cv": cv}) == 11.0
    assert objective({"val": {"rmse": math.nan}}) == math.inf


@pytest.mark.slow
def test_optuna_search_ends_with_the_best_trial(tmp_path):
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m",
        "hparams_search=optuna",
        "experiment=housing_minibatch",
        "hydra.sweeper.n_trials=4",
        "trainer.epochs=3",
        f"hydra.sweep.dir={sweep}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {
        "optimizer.lr",
        "loader.batch_size",
        "optimizer.name",
        "optimizer.momentum",
        "loss.l2",
    }
    trials = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(trials) == 4
    rmse = [json.loads((t / "metrics.json").read_text())["val"]["rmse"] for t in trials]
    assert result["best_value"] == pytest.approx(min(rmse), rel=1e-12)
    # trials are numbered (conf/hparams_search/optuna.yaml): the best one's overrides are in
    # its .hydra/overrides.yaml
    best = trials[int(np.argmin(rmse))]
    assert best.name in {"0", "1", "2", "3"}
    overrides = yaml.safe_load((best / ".hydra" / "overrides.yaml").read_text())
    assert f"loader.batch_size={result['best_params']['loader.batch_size']}" in overrides
    for trial in trials:  # every trial in TensorBoard's HPARAMS tab
        acc = EventAccumulator(str(trial))
        acc.Reload()
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")


@pytest.mark.slow
def test_failed_trials_do_not_stop_the_search(tmp_path):

    sweep = tmp_path / "sweep"
    proc = run_train(
        "-m",
        "hparams_search=optuna",
        "experiment=housing_minibatch",
        "hydra.sweeper.n_trials=2",
        "data.target=no_such_column",
        f"hydra.sweep.dir={sweep}",
    )
    # the search ends, and like any sweep with failed runs it says so and exits 1
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.count("error: this run failed:") == 2
    assert proc.stderr.splitlines()[-1].startswith("error: 2 of 2 runs failed:")
    # no best of value inf, as Optuna wrote it: no trial finished
    assert proc.stderr.splitlines()[-1].endswith(
        "; no run finished, so there is no optimization_results.yaml"
    )
    assert not (sweep / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_a_fold_keeps_nothing_of_an_earlier_one(tmp_path):
    stale = tmp_path / "folds" / "1" / "events.out.tfevents.stale"
    stale.parent.mkdir(parents=True)
    stale.write_text("an earlier run's events")
    cfg = make_config(
        "experiment=housing",
        "data.folds=2",
        "trainer.epochs=3",
        "logger.plots=false",
        "logger.tensorboard=false",
    )
    metrics = train_and_evaluate(cfg, tmp_path)
    assert not stale.exists()
    assert len(metrics["cv"]["rmse"]["folds"]) == 2
    trained = []
    for i in range(2):
        saved = json.loads((tmp_path / "folds" / str(i) / "metrics.json").read_text())
        assert saved["val"]["rmse"] == metrics["cv"]["rmse"]["folds"][i]
        trained.append(saved["inference"]["n"])
    assert trained == [245, 246]  # 546 rows less the 55 test rows: 246 and 245 held out
    assert metrics["cv"]["rmse"]["folds"][0] != metrics["cv"]["rmse"]["folds"][1]


def test_zero_standard_errors_give_infinite_t_without_a_warning():
    """An exact fit: every standard error is 0, t is +-inf (nan where beta is 0), p is 0."""
    import warnings

    from training.evaluate import _t_table

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = _t_table(np.array([2.0, -1.0, 0.0]), {"hc1": np.zeros((3, 3))}, 5, list("abc"))
    t = {k: v["hc1"] for k, v in table["t_statistics"].items()}
    assert t["a"] == math.inf and t["b"] == -math.inf and math.isnan(t["c"])
    assert table["p_values"]["a"]["hc1"] == 0.0
    assert table["confidence_intervals_95"]["b"]["hc1"] == [-1.0, -1.0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "weights", [["lotsize", "lotsize"], ["lotsize", "nope"], ["lotsize"]], ids=str
)
def test_plot_weights_that_are_not_two_different_names_are_warned_of(tmp_path, capsys, weights):
    """The loss surface needs two different weights: a name twice drew a surface of W_lotsize
    against itself, silently; such a choice is warned of and the two largest are drawn."""
    cfg = make_config(
        "experiment=housing", "trainer.epochs=50", f"logger.plot_weights=[{','.join(weights)}]"
    )
    metrics = train_and_evaluate(cfg, tmp_path)
    out = capsys.readouterr().out
    names = [k[2:] for k in metrics["params"] if k.startswith("W/")]  # the features' weights
    assert f"warning: logger.plot_weights={weights} needs two different names of {names}; " in out
    assert (tmp_path / "loss_surface.png").stat().st_size > 0


@pytest.mark.parametrize("sig", [2, 15])
def test_a_stop_in_a_fold_names_its_signal_and_the_whole_run_to_resume(sig, tmp_path):
    """A signal in fold i (the fold's fit stopped, or one raised around it as errors.Stop):
    the line names the signal and the fold, says to resume the whole run, and keeps the exit
    status 128 + the signal and whether it was a second Ctrl-C."""
    import signal

    from errors import Interrupted, Stop
    from training.crossval import _interrupted_in_fold

    name = signal.Signals(sig).name
    for exc, at_once in ((Stop(sig), False), (Interrupted("in the fit", sig, at_once=True), True)):
        error = _interrupted_in_fold(exc, 3, tmp_path)
        assert str(error) == (
            f"stopped by {name} in cross-validation fold 3; to finish, run the same command "
            f"with trainer.resume=true hydra.run.dir={tmp_path} (the main run resumes from its "
            "checkpoint, the folds are trained again)"
        )
        assert (error.exit_code, error.at_once) == (128 + sig, at_once)


def test_least_squares_on_unscaled_columns_is_least_squares():
    # data.standardize=false: the lot size (thousands) beside 0/1 columns put every direction
    # but one under the cutoff, and the reference was a fit of the lot size alone (R^2 0.04);
    # it is statsmodels' OLS on the same float32 columns
    from data.csv_source import load_csv
    from training.evaluate import least_squares

    cfg = make_config("experiment=housing").data
    table = load_csv(cfg, seed=0)
    W, b = least_squares(table.X, table.y)
    ols = sm.OLS(np.asarray(table.y, np.float64), sm.add_constant(table.X.astype(np.float64)))
    np.testing.assert_allclose([*W, b], [*ols.fit().params[1:], ols.fit().params[0]], rtol=1e-8)
    names = table.feature_names
    assert names[0] == "lotsize" and abs(W[0] - 3.546) < 1e-3  # Anglin and Gencay's 3.546


@pytest.mark.parametrize("rows", [200, (1 << 20) + 8])
def test_collinear_unscaled_columns_give_the_least_norm_solution(rows):
    # c = 3a - 2b + 1 with columns of scales 100 and 0.01 (data.standardize=false): the
    # reference was the least norm in Jacobi's scaled units, 379 % from the fit gradient
    # descent reached, which is numpy's least-norm solution in the columns' own units
    from training.evaluate import least_squares, solve_normal_equations

    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 100, rows), rng.normal(0, 0.01, rows)
    X = np.column_stack([a, b, 3 * a - 2 * b + 1])
    y = 2 * a + 5 * b + rng.normal(size=rows)
    A = np.column_stack([X, np.ones(rows)])
    want = np.linalg.lstsq(A, y, rcond=1e-10)[0]
    W, intercept = least_squares(X, y)  # above 2^20 rows: the normal equations
    np.testing.assert_allclose([*W, intercept], want, rtol=1e-7)
    np.testing.assert_allclose(solve_normal_equations(A.T @ A, A.T @ y), want, rtol=1e-7)


@pytest.mark.slow
def test_per_sample_advice_followed_as_written_reaches_least_squares(tmp_path):
    # the advice was optimizer.lr / 10 with 10x the epochs, each time: a constant step ends
    # in noise around the minimum (0.61 from it after 30000 epochs), and the epoch-loss
    # tolerance stopped it early; a step that decays to 0 settles on it
    run = ("experiment=housing", "loader=per_sample", "trainer.epochs=3000", "logger.plots=false")
    first = run_train(*run, f"hydra.run.dir={tmp_path / 'first'}")
    assert first.returncode == 0, first.stderr
    warning = next(ln for ln in first.stdout.splitlines() if ln.startswith("warning: stopped"))
    given = re.search(r"rerun with loader=full_batch .+?, or with (.+?) \(the step", warning)
    assert given and given.group(1) == "optimizer.schedule=cosine trainer.tol=0", warning
    again = run_train(*run, *given.group(1).split(), f"hydra.run.dir={tmp_path / 'again'}")
    assert again.returncode == 0, again.stderr
    assert "reached least squares" in again.stdout and "warning" not in again.stdout


@pytest.mark.slow
def test_synthetic_advice_followed_as_written_reaches_least_squares(tmp_path):
    # experiment=synthetic (N(0, 1) columns, 5 mini-batch epochs) was advised
    # data.standardize=true, which changed nothing, and then loader=full_batch, five steps
    run = ("experiment=synthetic", "logger.plots=false")
    first = run_train(*run, f"hydra.run.dir={tmp_path / 'first'}")
    assert first.returncode == 0, first.stderr
    warning = next(ln for ln in first.stdout.splitlines() if ln.startswith("warning: stopped"))
    assert "standardize" not in warning
    metrics = json.loads((tmp_path / "first" / "metrics.json").read_text())
    kappa = metrics["conditioning"]
    assert kappa["gram"] < 10 * kappa["gram_standardized"]  # already on one scale
    given = re.search(r"rerun with (.+?), or with (.+?) \(the step", warning)
    assert given, warning
    for k, overrides in enumerate(given.groups()):
        again = run_train(*run, *overrides.split(), f"hydra.run.dir={tmp_path / str(k)}")
        assert again.returncode == 0, again.stderr
        if k == 0:  # full batch, the Hessian's step: stops on trainer.tol at least squares
            assert "reached least squares" in again.stdout, again.stdout
    # the decaying step's five epochs come near; its own advice, followed, reaches it
    if "reached least squares" not in again.stdout:
        more = re.search(r", or with (trainer.epochs=\d+ trainer.tol=0)\n", again.stdout)
        assert more, again.stdout
        last = run_train(*run, *given.group(2).split(), *more.group(1).split(),
                         f"hydra.run.dir={tmp_path / 'last'}")  # fmt: skip
        assert "reached least squares" in last.stdout, last.stdout


@pytest.mark.parametrize(
    ("given", "advice"),
    [
        (
            ["data.standardize=false"],
            "rerun with data.standardize=true, which puts every column on one scale",
        ),
        (  # optimizer.name on the command line wins over the group: the advice names the key
            ["optimizer.name=sgd", "optimizer.lr=0.001", "optimizer.momentum=0"],
            "rerun with trainer.epochs=2000, or with optimizer.name=nesterov optimizer.lr=auto "
            "optimizer.momentum=auto (both taken from the data)",
        ),
    ],
)
def test_a_fit_short_of_least_squares_advises_what_reaches_it(capsys, given, advice):
    from training.config import validate
    from training.hooks import Progressed
    from training.report import say_convergence

    cfg = make_config("experiment=housing", "loader=full_batch", "trainer.epochs=200", *given)
    validate(cfg, list(given), {})  # reads optimizer.name's file, as a run does
    metrics = {
        "train": {"r2": 0.57},
        "ols": {"r2": 0.68},
        "ols_gap": {"max_rel_coefficient_diff": 11},
    }
    say_convergence(cfg, metrics, Progressed(step=200, epoch=200), {})
    line = capsys.readouterr().out
    assert line.startswith("warning: stopped after 200 epochs before reaching least squares")
    assert advice in line
    if "optimizer.name=nesterov" in advice:  # followed: the run is Nesterov's, its step auto
        overrides = advice.split(", or with ")[1].split(" (")[0].split()
        followed = make_config("experiment=housing", *given, *overrides)
        assert followed.optimizer.name == "nesterov" and followed.optimizer.lr == "auto"


def test_more_epochs_are_advised_from_the_epochs_done(capsys):
    # a 3500-epoch run resumed with trainer.epochs=100 was advised trainer.epochs=1000
    from training.config import validate
    from training.hooks import Progressed
    from training.report import say_convergence

    given = ["optimizer.name=adam", "trainer.epochs=100"]
    cfg = make_config("experiment=housing", "loader=full_batch", *given)
    validate(cfg, given, {})
    metrics = {"train": {"r2": 0.57}, "ols": {"r2": 0.68}}
    metrics["ols_gap"] = {"max_rel_coefficient_diff": 11}
    say_convergence(cfg, metrics, Progressed(step=3500, epoch=3500), {})
    assert "rerun with trainer.epochs=35000" in capsys.readouterr().out  # far from it: more


def test_an_adaptive_step_circling_the_minimum_is_advised_a_step_that_decays(capsys):
    # the README's Lion file (sign steps, a constant step size) was advised 10x the epochs after
    # 20,000, which never reach least squares: its R^2 is there, its coefficients circle it
    from training.config import validate
    from training.hooks import Progressed
    from training.report import say_convergence

    given = ["optimizer.name=adam", "trainer.epochs=400"]
    cfg = make_config("experiment=housing", "loader=full_batch", *given)
    validate(cfg, given, {})
    metrics = {"train": {"r2": 0.683640}, "ols": {"r2": 0.683649}}
    metrics["ols_gap"] = {"max_rel_coefficient_diff": 8.0e-02}
    say_convergence(cfg, metrics, Progressed(step=400, epoch=400), {})
    line = capsys.readouterr().out
    assert line.endswith(
        "; rerun with optimizer.schedule=cosine trainer.tol=0 (a step that does not decay to 0 "
        "moves the weights about as far at each step near the minimum as away from it)\n"
    )


@pytest.mark.slow
def test_lions_advice_followed_as_written_reaches_least_squares(
    capsys, tmp_path, conf_with_new_optimizers
):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    base = ["experiment=housing", "optimizer=lion", "optimizer.lr=1e-4", "logger.plots=false"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_with_new_optimizers), version_base="1.3"):
        train_and_evaluate(compose("config", overrides=base), tmp_path / "constant")
        out = capsys.readouterr().out
        advice = re.search(r"rerun with (optimizer.schedule=cosine trainer.tol=0) \(", out)
        assert advice, out
        cfg = compose("config", overrides=[*base, *advice.group(1).split()])
        train_and_evaluate(cfg, tmp_path / "cosine")
    assert "reached least squares" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("given", "epochs", "alternatives"),
    [
        (["loader=mini_batch", "optimizer=adam"], 5, ["optimizer.schedule=cosine "
         "trainer.epochs=50 trainer.tol=0 (the step"]),  # no full batch: Adam's step is its own
        (["loader=mini_batch"], 5, ["loader=full_batch optimizer.lr=auto trainer.epochs=auto "
         "trainer.tol=1e-06", "optimizer.schedule=cosine trainer.epochs=50 trainer.tol=0 (the"]),
        (["loader=per_sample", "trainer.epochs=3000"], 3000, ["loader=full_batch optimizer.lr="
         "auto trainer.epochs=auto trainer.tol=1e-06",
         "optimizer.schedule=cosine trainer.tol=0 ("]),
    ],
)  # fmt: skip
def test_the_advice_of_a_shuffled_run_lists_what_reaches_least_squares(
    capsys, given, epochs, alternatives
):
    # Adam's advice read "rerun with or with ..."; a 5-epoch run told to decay its step over the
    # same 5 epochs ended further from least squares (2.23 -> 3.89)
    from training.config import validate
    from training.hooks import Progressed
    from training.report import say_convergence

    cfg = make_config("experiment=housing", f"trainer.epochs={epochs}", *given)
    validate(cfg, list(given), {})
    metrics = {"train": {"r2": 0.57}, "ols": {"r2": 0.68}}
    metrics["ols_gap"] = {"max_rel_coefficient_diff": 2.23}
    say_convergence(cfg, metrics, Progressed(step=epochs, epoch=epochs), {})
    line = capsys.readouterr().out
    assert "rerun with " + ", or with ".join(alternatives) in line, line


@pytest.mark.parametrize(
    ("gap", "floor", "advice"),
    [
        # the gap falls with the gradient: 5e-3 to 1e-3 at a fifth of the tol, halved
        (5e-3, None, "rerun with trainer.tol=1e-07"),
        (2.85e-2, None, "rerun with trainer.tol=1e-08"),  # 1.75e-08, one digit down
        (5e-3, 4.6e-08, "rerun with trainer.tol=1e-07"),  # 1e-08 was never met: 100,000 epochs
        (5e-3, 6e-07, "rerun with trainer.tol=0 trainer.epochs=110"),  # none below 1e-06 can be
        # 4e-07, twice float32's floor, was advised and stopped 1.1e-02 apart: 1.75e-08 is needed
        (2.85e-2, 1.59e-07, "rerun with trainer.tol=0 trainer.epochs=110"),
    ],
)
def test_a_smaller_tol_is_one_float32_can_meet(capsys, gap, floor, advice):
    from training.hooks import Progressed
    from training.report import say_convergence

    cfg = make_config("experiment=housing", "loader=full_batch", "trainer.tol=1e-6")
    metrics = {"train": {"r2": 0.68}, "ols": {"r2": 0.68}, "gradient_at_minimum": floor}
    metrics["ols_gap"] = {"max_rel_coefficient_diff": gap}
    say_convergence(cfg, metrics, Progressed(step=11, epoch=11, stopped="converged"), {})
    assert capsys.readouterr().out.strip().endswith(advice)


@pytest.mark.parametrize(
    ("final", "at_reference", "resolution", "floor"),
    [
        (1.0e-2, 1.0e-2, 1e-14, True),  # no higher than at the minimum's own coefficients
        # a fit to float32's last digit (helper-46: 3.43e-03 after 40, 400, 4000 epochs)
        (6.639e-14, 6.574e-14, 1.4e-14, True),
        # 4e-06 above a loss far from the floor: an ill-conditioned run still on its way
        (1.1011913e-05, 1.10118735e-05, 1.4e-14, False),
    ],
)
def test_a_fit_float32_cannot_improve_is_not_advised_more_epochs(
    capsys, final, at_reference, resolution, floor
):
    from training.hooks import Progressed
    from training.report import say_convergence

    cfg = make_config("experiment=housing", "loader=full_batch", "trainer.tol=0")
    metrics = {"train": {"r2": 1.0}, "ols": {"r2": 1.0}, "final_loss": final}
    metrics.update(loss_at_reference=at_reference, float32_loss_resolution=resolution)
    metrics["ols_gap"] = {"max_rel_coefficient_diff": 4.83e-3}
    say_convergence(cfg, metrics, Progressed(step=40, epoch=40, stopped="epochs"), {})
    out = capsys.readouterr().out
    assert out.startswith("reached least squares as closely as float32 allows: ") == floor, out
    assert out.startswith("warning: stopped after 40 epochs") != floor, out


@pytest.mark.slow
def test_a_tol_float32_cannot_meet_is_not_advised(tmp_path):
    # helper-44's file: price beside Price, its thousands (condition number 7661). Stopped by
    # trainer.tol=1e-06 with the coefficients 2.85e-02 apart, it was advised trainer.tol=4e-07
    # (twice float32's gradient at the minimum), which stopped 1.1e-02 apart, advised again.
    # Their gap falls with the gradient: 1e-03 needs 1.75e-08, below float32's floor
    path = ROOT / "tests" / "data" / "price_and_thousands.csv"
    run = (f"data.path={path}", "data=csv", "data.target=price", "logger.plots=false")
    run += ("data.val_fraction=0", "data.test_fraction=0")
    first = run_train(*run, f"hydra.run.dir={tmp_path / 'first'}")
    assert first.returncode == 0, first.stderr
    warning = next(ln for ln in first.stdout.splitlines() if ln.startswith("warning: stopped"))
    metrics = json.loads((tmp_path / "first" / "metrics.json").read_text())
    gap, floor = metrics["ols_gap"]["max_rel_coefficient_diff"], metrics["gradient_at_minimum"]
    assert 1e-6 * 1e-3 / gap / 2 < 2 * floor  # no tol float32 can meet would do
    epochs = re.search(r"^done: (\d+) steps", first.stdout, re.M)[1]
    assert warning.endswith(f"rerun with trainer.tol=0 trainer.epochs={10 * int(epochs)}")
    again = run_train(*run, "trainer.tol=0", f"trainer.epochs={10 * int(epochs)}",
                      f"hydra.run.dir={tmp_path / 'again'}")  # fmt: skip
    assert "reached least squares" in again.stdout, again.stdout


def test_the_smaller_tol_advised_is_met_when_followed(tmp_path):
    # a newcomer's file (helper-41: 15 columns on scales from 0.01 to 1000) stopped on
    # trainer.tol=1e-06 short of least squares; the advised 1e-08 reached it but was never met
    # (float32's gradient at the minimum is 4.5e-08), so the run went on for 100,000 epochs
    data = ("data=csv", f"data.path={ROOT / 'tests' / 'data' / 'fifteen_scales.csv'}")
    run = (*data, "data.target=target", "logger.plots=false")
    first = run_train(*run, f"hydra.run.dir={tmp_path / 'first'}")
    assert first.returncode == 0, first.stderr
    warning = next(ln for ln in first.stdout.splitlines() if ln.startswith("warning: stopped"))
    tol = re.search(r"rerun with (trainer\.tol=\S+)$", warning)[1]
    floor = json.loads((tmp_path / "first" / "metrics.json").read_text())["gradient_at_minimum"]
    assert float(tol.split("=")[1]) >= 2 * floor
    again = run_train(*run, tol, f"hydra.run.dir={tmp_path / 'again'}")
    assert "reached least squares" in again.stdout, again.stdout
    assert "epochs (converged)" in again.stdout  # the tol was met


def test_an_aliased_level_is_dropped_by_its_column():
    # helper-47: "Type_other is a linear combination ...; drop it with data.drop", and
    # data.drop=[Type_other] was refused: a one-hot level is no column of the file
    from data.preprocess import Scaling
    from training.evaluate import linear_inference

    rng = np.random.default_rng(0)
    sqft = rng.normal(size=40)
    level = (rng.random(40) < 0.5).astype(float)
    A = np.column_stack([sqft, level, level, np.ones(40)])  # Type_other a copy of Type_B
    G = A.T @ A
    names = ["sqft", "Type_B", "Type_other"]
    coefs = {"sqft": 1.0, "Type_B": 0.5, "Type_other": 0.5, "intercept": 0.0}
    sources = {"sqft": "sqft", "Type_B": "Type", "Type_other": "Type"}
    scaled = Scaling([0.1, 0.2, 0.3], [1.1, 1.2, 1.3], 0.0, 1.0)  # data.standardize=true
    out = linear_inference(G, G, 40, coefs, scaled, names, sources=sources)
    assert out["inference"]["aliased"] == ["Type_other"]
    assert out["inference"]["note"].endswith(
        "drop it with \"data.drop=[Type]\" (Type_other of column 'Type')"  # quoted for the shell
    )
    # data from no file keep the plain advice; a file's own columns are named to paste
    plain = linear_inference(G, G, 40, coefs, scaled, names)
    assert plain["inference"]["note"].endswith("drop it with data.drop")
    itself = {n: n for n in names}
    note = linear_inference(G, G, 40, coefs, scaled, names, sources=itself)["inference"]["note"]
    assert note.endswith('drop it with "data.drop=[Type_other]"')
    # a column named as Hydra cannot read it bare: quoted, so the advice works as written
    # ("data.drop=[Zone (2020)]" was refused, helper-51)
    odd = {"sqft": "sqft", "Type_B": "Zone (2020)", "Type_other": "Zone (2020)"}
    note = linear_inference(G, G, 40, coefs, scaled, names, sources=odd)["inference"]["note"]
    assert note.endswith(
        "drop it with \"data.drop=['Zone (2020)']\" (Type_other of column 'Zone (2020)')"
    )
