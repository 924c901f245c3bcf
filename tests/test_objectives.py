"""Objectives beyond squared error (issue 15, item 3): ``loss=mse|huber`` and the ridge penalty
``loss.l2``. References: numpy formulas, scikit-learn's ``Ridge``, scipy minimisers written
here, numpy's ``eigvalsh``, optax's own updates, and the Windsor data's closed-form ridge."""

from __future__ import annotations

import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from conftest import ROOT, make_config, run_train
from omegaconf import OmegaConf
from scipy.optimize import minimize
from sklearn.linear_model import Ridge

from errors import UserError
from training.config import validate
from training.evaluate import least_squares, least_squares_on_device, objective_minimum
from training.objectives import Objective, build_objective, huber, mse, ridge_penalty
from training.optim import (
    GRADIENT_DESCENT,
    HEAVY_BALL,
    NESTEROV,
    SAFETY,
    choose_auto,
    stable_bound,
    tuned_step,
)
from training.run import train_and_evaluate
from training.stability import hessian_spectrum

QUIET = ("logger.plots=false", "logger.tensorboard=false", "logger.progress=off")
HOUSING = ROOT / "data" / "housing" / "windsor_house_prices.csv"
ALL_ROWS = ("experiment=housing", "data.val_fraction=0", "data.test_fraction=0", *QUIET)


def huber_rho(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber (1964), eq. 7: ``r^2 / 2`` within ``delta``, ``delta |r| - delta^2 / 2`` beyond."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * a - 0.5 * delta * delta)


def windsor() -> tuple[np.ndarray, np.ndarray, list[str]]:
    df = pd.read_csv(HOUSING)
    X = df.drop(columns="price").replace({"yes": 1, "no": 0}).astype(float)
    return X.to_numpy(), df["price"].to_numpy(float), list(X.columns)


def standardised(X: np.ndarray, y: np.ndarray):
    """Columns and target scaled by their mean and population deviation, as the run does."""
    mx, sx, my, sy = X.mean(0), X.std(0), y.mean(), y.std()
    return (X - mx) / sx, (y - my) / sy, (mx, sx, my, sy)


def to_original(beta: np.ndarray, stats) -> np.ndarray:
    """``(W, b)`` of the standardised problem as the coefficients on the raw columns."""
    mx, sx, my, sy = stats
    W = beta[:-1] * sy / sx
    return np.append(W, my + sy * beta[-1] - W @ mx)


def coefficient_vector(metrics: dict, names: list[str], key: str = "coefficients") -> np.ndarray:
    return np.array([metrics[key][k] for k in [*names, "intercept"]])


# --- the objectives against numpy -------------------------------------------------------------


def test_optax_huber_loss_is_hubers_rho():
    r = np.linspace(-5, 5, 101).astype(np.float32)
    for delta in (0.3, 1.0, 2.5):
        got = np.asarray(optax.losses.huber_loss(jnp.asarray(r), delta=delta))
        np.testing.assert_allclose(got, huber_rho(r, delta), rtol=1e-6, atol=1e-7)


def test_mse_and_huber_against_numpy():
    rng = np.random.default_rng(0)
    pred, y = rng.normal(size=50), rng.normal(size=50) * 3
    w = (rng.random(50) < 0.8).astype(float)
    r = pred - y
    f32 = [jnp.asarray(a, jnp.float32) for a in (pred, y, w)]
    assert float(mse(*f32[:2])) == pytest.approx(np.mean(r * r), rel=1e-6)
    assert float(mse(*f32)) == pytest.approx(np.sum(w * r * r) / w.sum(), rel=1e-6)
    for delta in (0.5, 2.0):
        two_rho = 2 * huber_rho(r, delta)
        assert float(huber(*f32[:2], delta=delta)) == pytest.approx(two_rho.mean(), rel=1e-6)
        assert float(huber(*f32, delta=delta)) == pytest.approx(
            np.sum(w * two_rho) / w.sum(), rel=1e-6
        )
    # within delta Huber's loss is the squared error; a very large delta is mse
    assert float(huber(*f32[:2], delta=1e6)) == pytest.approx(float(mse(*f32[:2])), rel=1e-6)
    # one row (per-sample steps): its own loss, no reduction
    assert float(mse(f32[0][3], f32[1][3])) == pytest.approx(r[3] ** 2, rel=1e-6)
    assert float(huber(f32[0][3], f32[1][3], delta=0.5)) == pytest.approx(
        2 * huber_rho(r[3], 0.5), rel=1e-6
    )


def test_ridge_penalty_is_on_W_only_with_gradient_l2_W():
    W = jnp.asarray([1.0, -2.0, 0.5])
    params = {"W": W, "b": jnp.asarray(3.0)}
    assert float(ridge_penalty(W, 0.4)) == pytest.approx(0.2 * 5.25)
    pred, y = jnp.zeros(4), jnp.zeros(4)
    objective = Objective("mse", None, 0.4)
    grads = jax.grad(lambda p: objective(p, pred, y))(params)
    np.testing.assert_allclose(grads["W"], 0.4 * np.asarray(W), rtol=1e-6)
    assert float(grads["b"]) == 0.0  # never on the intercept
    # l2 = 0 adds no term: the program is the plain mean squared error
    assert Objective()(params, pred + 1, y) == mse(pred + 1, y)


def test_delta_is_converted_from_the_targets_units():
    cfg = make_config("loss=huber", "loss.delta=5000", "loss.l2=0.1")
    objective = build_objective(cfg.loss, y_scale=26000.0)
    assert objective == Objective("huber", 5000 / 26000.0, 0.1)
    assert build_objective(make_config().loss, 26000.0) == Objective("mse", None, 0.0)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (("loss.l2=-0.1",), "loss.l2"),
        (("loss=huber",), "loss.delta"),
        (("loss=huber", "loss.delta=0"), "loss.delta"),
        (("loss=huber", "loss.delta=-3"), "loss.delta"),
        (("loss.delta=3",), "loss.delta"),
    ],
)
def test_bad_loss_values_name_the_key(overrides, key):
    with pytest.raises(UserError, match=rf"^bad config value {re_key(key)}=") as err:
        validate(make_config(*overrides))
    assert "\n" not in str(err.value)


def re_key(key: str) -> str:
    return key.replace(".", r"\.")


def test_the_loss_group_is_typed():
    cfg = make_config()
    assert OmegaConf.get_type(cfg.loss).__name__ == "LossConfig"
    assert (cfg.loss.name, cfg.loss.l2, cfg.loss.delta) == ("mse", 0.0, None)
    validate(make_config("loss=huber", "loss.delta=1.5", "loss.l2=1e-3"))


# --- the float64 references -------------------------------------------------------------------


def test_ridge_closed_form_is_sklearns_ridge_with_alpha_n_l2_over_2():
    rng = np.random.default_rng(1)
    n, d, l2 = 200, 5, 0.3
    X = rng.normal(size=(n, d)) * [1, 2, 3, 0.5, 1] + 4
    y = X @ rng.normal(size=d) + rng.normal(size=n) + 7
    W, b = least_squares(X, y, l2=l2)
    sk = Ridge(alpha=n * l2 / 2).fit(X, y)  # ||y - X w - b||^2 + alpha ||w||^2, b unpenalised
    np.testing.assert_allclose(W, sk.coef_, rtol=1e-9)
    assert b == pytest.approx(sk.intercept_, rel=1e-9)
    # the normal equations on device rows, padding rows weighted 0
    Xp = np.vstack([X, np.zeros((7, d))]).astype(np.float32)
    yp = np.concatenate([y, np.full(7, 99.0)]).astype(np.float32)
    w = np.concatenate([np.ones(n), np.zeros(7)]).astype(np.float32)
    Wd, bd = least_squares_on_device(jnp.asarray(Xp), jnp.asarray(yp), jnp.asarray(w), l2)
    np.testing.assert_allclose(Wd, sk.coef_, rtol=2e-4)


def scipy_huber(A: np.ndarray, y: np.ndarray, delta: float, l2: float) -> np.ndarray:
    """An independent minimiser of ``mean(2 rho_delta(A beta - y)) + l2/2 ||beta[:-1]||^2``:
    scipy's trust-region Newton on the (once-differentiable) objective, from zero."""
    n = len(y)

    def f(beta):
        r = A @ beta - y
        return 2 * huber_rho(r, delta).mean() + 0.5 * l2 * beta[:-1] @ beta[:-1]

    def g(beta):
        r = A @ beta - y
        out = A.T @ (2 * np.clip(r, -delta, delta)) / n
        out[:-1] += l2 * beta[:-1]
        return out

    def h(beta):
        inside = np.abs(A @ beta - y) <= delta
        H = 2 * A[inside].T @ A[inside] / n
        H[np.arange(len(beta) - 1), np.arange(len(beta) - 1)] += l2
        return H

    res = minimize(f, np.zeros(A.shape[1]), jac=g, hess=h, method="trust-exact", tol=1e-14)
    return res.x


@pytest.mark.parametrize("l2", [0.0, 0.2])
def test_huber_minimum_is_scipys(l2):
    rng = np.random.default_rng(2)
    n, d = 300, 4
    X = rng.normal(size=(n, d))
    y = X @ [1.0, -2.0, 0.5, 3.0] + 0.3 + rng.standard_t(2, size=n)  # heavy tails
    delta = 0.8
    W, b = objective_minimum(X, y, Objective("huber", delta, l2))
    A = np.column_stack([X, np.ones(n)])
    ref = scipy_huber(A, y, delta, l2)
    np.testing.assert_allclose(np.append(W, b), ref, rtol=1e-8, atol=1e-10)
    # not least squares: the outliers pull least squares away
    assert np.max(np.abs(least_squares(X, y, l2=l2)[0] - W)) > 1e-2
    # the same from device rows: float32 residuals and sums there, so to float32's noise on
    # the objective, well inside the 1e-3 gap that says converged
    Wd, bd = objective_minimum(
        jnp.asarray(X, jnp.float32),
        jnp.asarray(y, jnp.float32),
        Objective("huber", delta, l2),
        on_device=True,
    )
    np.testing.assert_allclose(np.append(Wd, bd), ref, rtol=2e-4, atol=1e-4)


# --- curvature, step sizes and the stability bounds with the penalty ---------------------------


@pytest.mark.parametrize("frozen_b", [False, True])
def test_ridge_adds_l2_to_every_W_eigenvalue(frozen_b):
    rng = np.random.default_rng(3)
    n, d, l2 = 100, 3, 0.7
    X = rng.normal(size=(n, d)) + [0, 2, -1]  # uncentred: W and b coupled
    A = np.column_stack([X, np.ones(n)])
    trainable = list(range(d)) if frozen_b else list(range(d + 1))
    H = 2 * A[:, trainable].T @ A[:, trainable] / n + np.diag([l2] * d + [0.0] * (not frozen_b))
    eig = np.linalg.eigvalsh(H)
    spec = hessian_spectrum(jnp.asarray(X, jnp.float32), None, n, trainable, l2)
    assert spec.L == pytest.approx(eig[-1], rel=1e-5)
    assert spec.mu == pytest.approx(eig[0], rel=1e-4)
    # the jax Hessian of the objective itself
    objective = Objective("mse", None, l2)
    y = jnp.asarray(rng.normal(size=n), jnp.float32)

    def J(beta):
        params = {"W": beta[:d], "b": beta[d] if not frozen_b else 0.0}
        return objective(params, jnp.asarray(X, jnp.float32) @ params["W"] + params["b"], y)

    H_jax = np.asarray(jax.hessian(J)(jnp.zeros(d + 1)))[np.ix_(trainable, trainable)]
    np.testing.assert_allclose(H_jax, H, rtol=1e-4, atol=1e-5)


def _windsor_unscaled():
    """The Windsor design as data.standardize=false feeds it: lot sizes in square feet beside
    counts and 0/1 columns (yes/no as 1/0), float64."""
    df = pd.read_csv(HOUSING)
    X = df.drop(columns="price").replace({"yes": 1, "no": 0}).to_numpy(np.float64)
    return X, df["price"].to_numpy(np.float64)


def test_the_spectrum_of_columns_in_different_units_is_numpys_float64_one():
    # unscaled, the relative cutoff kept only the lot size's direction: "rank 1 of 12", mu = L,
    # and Nesterov's momentum 0.0025 instead of ~0.9999 (R^2 0.05 after 20000 epochs, not 0.57)
    X, _ = _windsor_unscaled()
    n, d = X.shape
    A = np.column_stack([X, np.ones(n)])
    eig = np.linalg.eigvalsh(2 * A.T @ A / n)
    assert eig[-1] / eig[0] > 1e8  # the columns' units, not collinearity
    spec = hessian_spectrum(jnp.asarray(X, jnp.float32), None, n, list(range(d + 1)))
    assert (spec.rank, spec.size) == (d + 1, d + 1)
    assert spec.L == pytest.approx(eig[-1], rel=1e-5)
    assert spec.mu == pytest.approx(eig[0], rel=1e-5)
    _, m = tuned_step(NESTEROV, spec, None)  # Nesterov 2004, scheme 2.2.19
    root_kappa = math.sqrt(eig[-1] * SAFETY / eig[0])
    assert m == pytest.approx((root_kappa - 1) / (root_kappa + 1), rel=1e-6) and m > 0.9999
    # a column that is a combination of others in other units is still found aliased
    aliased = np.column_stack([X, X[:, 0] / 1000 + 2 * X[:, 4]])
    spec = hessian_spectrum(jnp.asarray(aliased, jnp.float32), None, n, list(range(d + 2)))
    assert (spec.rank, spec.size) == (d + 1, d + 2)
    assert spec.mu == pytest.approx(eig[0], rel=0.2)  # the smallest determined direction


def test_the_reference_on_device_fits_columns_in_different_units():
    # several processes' reference (float32 sums, float64 solve) was the lot size's fit alone
    X, y = _windsor_unscaled()
    n = len(y)
    want = np.linalg.lstsq(np.column_stack([X, np.ones(n)]), y, rcond=None)[0]
    W, b = least_squares_on_device(jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32))
    np.testing.assert_allclose(np.append(W, b), want, rtol=1e-4)


def test_stochastic_step_counts_the_penalty():
    cfg = OmegaConf.create(
        {
            "name": "sgd",
            "lr": "auto",
            "momentum": "auto",
            "nesterov": False,
            "family": "gradient_descent",
        }
    )
    choice = choose_auto(cfg, True, False, lambda: None, lambda: 4.0, l2=0.5)
    assert choice.chosen["optimizer.lr"] == pytest.approx(1 / (2 * 4.0 + 0.5))
    assert "+ l2), l2=0.5" in choice.line


@pytest.mark.parametrize(
    ("method", "momentum"),
    [
        (GRADIENT_DESCENT, 0.0),
        (HEAVY_BALL, 0.5),
        (HEAVY_BALL, 0.9),
        (NESTEROV, 0.5),
        (NESTEROV, 0.9),
    ],
)
def test_bounds_hold_with_the_penalty_for_optax_updates(method, momentum):
    """optax's sgd on the ridge objective of a real design converges at 0.97 of the bound
    from ``hessian_spectrum(..., l2)`` and diverges at 1.03 of it; at 0.97 the Huber loss, whose
    Hessian the squared error's bounds, converges too."""
    X, y, _ = windsor()
    Z, ys, _ = standardised(X, y)
    Z, ys = jnp.asarray(Z, jnp.float32), jnp.asarray(ys, jnp.float32)
    n, d, l2 = len(ys), Z.shape[1], 2.0  # l2 of the order of the eigenvalues: it moves the bound
    spec = hessian_spectrum(Z, None, n, list(range(d + 1)), l2)
    assert spec.L > hessian_spectrum(Z, None, n, list(range(d + 1))).L + 1.0
    bound = stable_bound(method, spec.L, momentum)

    def final(lr, objective, steps=3000):
        tx = optax.sgd(lr, momentum=momentum or None, nesterov=method == NESTEROV)
        loss = jax.grad(lambda p: objective(p, Z @ p["W"] + p["b"], ys))

        def step(carry, _):
            p, state = carry
            updates, state = tx.update(loss(p), state, p)
            return (optax.apply_updates(p, updates), state), None

        p0 = {"W": jnp.zeros(d), "b": jnp.float32(0.0)}
        (p, _), _ = jax.lax.scan(step, (p0, tx.init(p0)), None, length=steps)
        return p

    ridge = Objective("mse", None, l2)
    W_ref, b_ref = least_squares(np.asarray(Z), np.asarray(ys), l2=l2)
    p = final(0.97 * bound, ridge)
    np.testing.assert_allclose(p["W"], W_ref, atol=1e-4)
    p = final(1.03 * bound, ridge)
    assert not np.all(np.abs(np.asarray(p["W"])) < 1e6)
    huber_ridge = Objective("huber", 0.5, l2)
    W_h, b_h = objective_minimum(np.asarray(Z), np.asarray(ys), huber_ridge)
    p = final(0.97 * bound, huber_ridge, steps=6000)
    np.testing.assert_allclose(p["W"], W_h, atol=1e-4)


# --- runs on the Windsor data ------------------------------------------------------------------


def ridge_on_windsor(l2: float):
    """The closed-form ridge of the run's objective on all 546 sales, in the raw columns'
    units: ``(Z^T Z + (n l2 / 2) D) beta = Z^T y'`` on ``Z = [standardised X, 1]``."""
    X, y, names = windsor()
    Zx, ys, stats = standardised(X, y)
    Z = np.column_stack([Zx, np.ones(len(ys))])
    D = np.diag([1.0] * X.shape[1] + [0.0])
    beta = np.linalg.solve(Z.T @ Z + len(ys) * l2 / 2 * D, Z.T @ ys)
    return to_original(beta, stats), names, Z


@pytest.mark.slow
def test_ridge_run_reaches_the_closed_form_ridge(tmp_path, capsys):
    l2 = 0.1
    metrics = train_and_evaluate(make_config(*ALL_ROWS, f"loss.l2={l2}"), tmp_path)
    out = capsys.readouterr().out
    ref, names, Z = ridge_on_windsor(l2)
    assert metrics["stopped"] == "converged"
    # the same tolerance as least squares' (tests/test_housing.py): 1e-4 relative
    np.testing.assert_allclose(coefficient_vector(metrics, names), ref, rtol=1e-4)
    # the run's own reference, solved in float64 from its float32 standardised rows
    np.testing.assert_allclose(coefficient_vector(metrics, names, "ols"), ref, rtol=1e-5)
    assert metrics["reference"] == "the ridge minimum"
    assert metrics["ols_gap"]["max_rel_coefficient_diff"] < 1e-4
    # ridge shrinks: every standardised weight is smaller than least squares' in norm
    X, y, _ = windsor()
    ols = np.linalg.lstsq(Z, standardised(X, y)[1], rcond=None)[0]
    assert np.linalg.norm(ref[:-1] * X.std(0)) < np.linalg.norm(ols[:-1] * y.std())
    # the step from the data counts the penalty: Nesterov's 1 / L with L raised by 1%
    H = 2 * Z.T @ Z / len(Z) + l2 * np.diag([1.0] * len(names) + [0.0])
    L = np.linalg.eigvalsh(H)[-1]
    assert metrics["chosen"]["optimizer.lr"] == pytest.approx(1 / (1.01 * L), rel=1e-4)
    assert "reached the ridge minimum" in out and "warning: standard errors:" in out
    assert metrics["standard_errors"]["lotsize"] is None  # least squares' formulas only


@pytest.mark.slow
def test_huber_run_reaches_the_float64_minimiser(tmp_path, capsys):
    delta = 10_000.0  # dollars
    metrics = train_and_evaluate(
        make_config(*ALL_ROWS, "loss=huber", f"loss.delta={delta:g}"), tmp_path
    )
    X, y, names = windsor()
    Zx, ys, stats = standardised(X, y)
    A = np.column_stack([Zx, np.ones(len(ys))])
    ref = to_original(scipy_huber(A, ys, delta / y.std(), 0.0), stats)
    assert metrics["stopped"] == "converged"
    np.testing.assert_allclose(coefficient_vector(metrics, names), ref, rtol=1e-4)
    np.testing.assert_allclose(coefficient_vector(metrics, names, "ols"), ref, rtol=1e-5)
    # Huber's minimum is not least squares': bedrooms 595 against 1832 (Verbeek's OLS)
    assert abs(metrics["coefficients"]["bedrooms"] - 1832.0) > 1000
    # the same minimiser in dollars: delta in the target's own units, no standardising
    # (its gradient there, mean(x_j clip(r, -delta, delta)), vanishes column by column)
    raw = np.column_stack([X, np.ones(len(y))])
    r = raw @ ref - y
    grad = raw.T @ np.clip(r, -delta, delta) / len(y)
    assert np.all(np.abs(grad) <= 1e-8 * delta * np.abs(raw).mean(0))
    assert 0.3 < np.mean(np.abs(r) <= delta) < 0.9  # the rows fall on both pieces of the loss
    assert "reached the Huber minimum" in capsys.readouterr().out


@pytest.mark.slow
def test_huber_with_log_target_takes_delta_in_log_units(tmp_path):
    metrics = train_and_evaluate(
        make_config(
            *ALL_ROWS, "data.log_target=true", "loss=huber", "loss.delta=0.1", "loss.l2=0.01"
        ),
        tmp_path,
    )
    X, y, names = windsor()
    Zx, ys, stats = standardised(X, np.log(y))
    A = np.column_stack([Zx, np.ones(len(ys))])
    ref = to_original(scipy_huber(A, ys, 0.1 / np.log(y).std(), 0.01), stats)
    np.testing.assert_allclose(coefficient_vector(metrics, names), ref, rtol=1e-4)


@pytest.mark.slow
def test_auto_step_with_l2_on_mini_batches_is_from_the_row_norms(tmp_path):
    cfg = make_config(
        "data=synthetic",
        "data.n_samples=200",
        "data.n_features=3",
        "loader=mini_batch",
        "trainer.epochs=2",
        "loss.l2=0.5",
        *QUIET,
    )
    metrics = train_and_evaluate(cfg, tmp_path)
    from data.sources import synthetic

    X = np.asarray(synthetic(200, 3, 0.1, 0).X, np.float64)
    top = float(np.max(np.sum(X * X, axis=1))) + 1.0
    assert metrics["chosen"] == {"optimizer.lr": pytest.approx(1 / (2 * top + 0.5), rel=1e-5)}


@pytest.mark.slow
def test_gradient_descent_bound_with_the_penalty_in_a_run(tmp_path):
    """``sgd`` without momentum at 0.97 of 2 / L (L with the penalty) reaches the ridge minimum;
    at 1.03 it diverges, and the error names that bound."""
    l2 = 3.0
    _, _, Z = ridge_on_windsor(l2)
    L = np.linalg.eigvalsh(2 * Z.T @ Z / len(Z) + l2 * np.diag([1.0] * 11 + [0.0]))[-1]
    bound = 2 / L
    common = (*ALL_ROWS, f"loss.l2={l2}", "optimizer.name=sgd", "optimizer.momentum=null")
    metrics = train_and_evaluate(
        make_config(*common, f"optimizer.lr={0.97 * bound}"), tmp_path / "below"
    )
    assert metrics["stable_lr_bound"] == pytest.approx(bound, rel=1e-5)
    assert metrics["stopped"] == "converged"
    assert metrics["ols_gap"]["max_rel_coefficient_diff"] < 1e-4
    with pytest.raises(UserError, match="diverged") as err:
        train_and_evaluate(make_config(*common, f"optimizer.lr={1.03 * bound}"), tmp_path / "up")
    assert f"is {bound:.4g};" in str(err.value)
    assert math.isfinite(bound)


@pytest.mark.slow
def test_loss_overrides_are_hparams_and_bad_values_exit_2(tmp_path):
    from test_tensorboard_output import session_hparams

    run = tmp_path / "run"
    proc = run_train(
        "experiment=housing",
        "loss=huber",
        "loss.delta=10000",
        "loss.l2=0.01",
        "trainer.epochs=3",
        "logger.plots=false",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr
    h = session_hparams(run)
    assert (h["loss"], h["loss.delta"], h["loss.l2"]) == ("huber", 10000, 0.01)
    proc = run_train("loss=huber", "loss.delta=-1", f"hydra.run.dir={tmp_path / 'bad'}")
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: bad config value loss.delta=-1")


@pytest.mark.slow
def test_a_resume_with_another_loss_is_refused(tmp_path):
    base = ("experiment=housing", "trainer.epochs=5", "trainer.tol=0", *QUIET)
    train_and_evaluate(make_config(*base, "loss.l2=0.1"), tmp_path)
    with pytest.raises(UserError, match=re.escape("(loss.l2: 0.1 there, 0.2 now)")):
        train_and_evaluate(make_config(*base, "loss.l2=0.2", "trainer.resume=true"), tmp_path)


@pytest.mark.slow
def test_two_processes_reach_the_huber_minimum_of_all_their_rows(tmp_path):
    """Each process holds only its own rows: the reference is found from the devices' sums."""
    from conftest import train_on_two_processes

    from data.sources import synthetic

    run = tmp_path / "two"
    procs, outs = train_on_two_processes(
        run,
        "experiment=synthetic",
        "data.n_samples=1001",
        "data.n_features=4",
        "loader=full_batch",
        "optimizer.name=nesterov",
        "optimizer.lr=auto",
        "optimizer.momentum=auto",
        "trainer.epochs=20000",
        "trainer.tol=1e-6",
        "loss=huber",
        "loss.delta=0.05",
        "loss.l2=0.01",
    )
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert "process 1: draws rows 502..1000 of 1001" in outs[1][0]
    metrics = json.loads((run / "metrics.json").read_text())
    data = synthetic(1001, 4, 0.1, 0)
    W, b = objective_minimum(np.asarray(data.X), np.asarray(data.y), Objective("huber", 0.05, 0.01))
    names = [f"x{i}" for i in range(4)]
    np.testing.assert_allclose(coefficient_vector(metrics, names, "ols"), [*W, b], rtol=2e-4)
    np.testing.assert_allclose(coefficient_vector(metrics, names), [*W, b], rtol=1e-4)
    assert "reached the Huber+ridge minimum" in outs[0][0]
