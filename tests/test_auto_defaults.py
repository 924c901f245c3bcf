"""General defaults for any data but the toy set, ``optimizer.lr=auto`` from the data, the
stability bound of the optimizer actually used, convergence said, paths as the README writes
them. References: numpy's ``lstsq`` and ``eigvalsh`` on design matrices built here, optax's own
updates, and the walkthrough's closed form."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from conftest import ROOT, concurrently, make_config, run_train
from omegaconf import OmegaConf

from data.preprocess import split_rows
from data.sources import synthetic
from errors import UserError
from training.cli import quote_for_hydra
from training.config import validate
from training.optim import stable_bound
from training.run import train_and_evaluate

QUIET = ("logger.plots=false", "logger.tensorboard=false", "logger.progress=off")
HOUSING = ROOT / "data" / "housing" / "windsor_house_prices.csv"
HOUSES = """sqft,bedrooms,age,price
1400,3,20,245000
1600,3,15,312000
1700,4,30,279000
1875,4,10,308000
1100,2,40,199000
1550,3,25,219000
2350,4,5,405000
2450,5,8,324000
"""


@pytest.fixture
def houses(tmp_path):
    path = tmp_path / "houses.csv"
    path.write_text(HOUSES)
    return path


def standardized_design(X: np.ndarray) -> np.ndarray:
    """``[Z 1]`` with ``Z`` the columns scaled to mean 0 and (population) deviation 1."""
    X = np.asarray(X, np.float64)
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    return np.column_stack([Z, np.ones(len(Z))])


def r2_of_least_squares(A: np.ndarray, y: np.ndarray) -> float:
    beta = np.linalg.lstsq(A, y, rcond=None)[0]
    r = y - A @ beta
    return 1.0 - (r @ r) / ((y - y.mean()) @ (y - y.mean()))


def extreme_eigenvalues(A: np.ndarray) -> tuple[float, float]:
    """Largest and smallest non-zero eigenvalue of ``2 A^T A / n`` (zero: below 1e-6 of the
    largest)."""
    eig = np.linalg.eigvalsh(2.0 * A.T @ A / len(A))
    return eig[-1], eig[eig > 1e-6 * eig[-1]][0]


@pytest.mark.parametrize(
    "overrides",
    [("data=csv", "data.path=houses.csv", "data.target=price"), ("data=synthetic",)],
)
def test_any_data_but_the_toy_set_starts_from_the_general_defaults(overrides):
    cfg = make_config(*overrides)
    assert (cfg.model.W_init, cfg.model.b_init) == ("zeros", "zeros")
    assert list(cfg.optimizer.freeze) == []
    assert (cfg.optimizer.lr, cfg.optimizer.momentum) == ("auto", "auto")
    assert cfg.trainer.epochs == "auto" and cfg.trainer.tol > 0
    assert not cfg.logger.print_trace
    validate(cfg)
    # the walkthrough's particulars come with its six points, whichever way they are chosen
    for toy in (make_config(), make_config("experiment=seed"), make_config(*overrides, "data=toy")):
        assert (toy.model.W_value, toy.model.b_value, list(toy.optimizer.freeze)) == (8, -1, ["b"])
        assert (toy.optimizer.lr, toy.trainer.epochs, toy.trainer.tol) == (0.01, 50, 0)


@pytest.mark.slow
def test_eight_row_csv_reaches_least_squares(tmp_path, houses, capsys):
    cfg = make_config("data=csv", f"data.path={houses}", "data.target=price", *QUIET)
    metrics = train_and_evaluate(cfg, tmp_path / "run")
    out = capsys.readouterr().out

    df = pd.read_csv(houses)
    train = split_rows(len(df), 0.1, 0.1, seed=0)["train"]
    X, y = df[["sqft", "bedrooms", "age"]].to_numpy()[train], df["price"].to_numpy()[train]
    A = standardized_design(X)
    assert metrics["train"]["r2"] == pytest.approx(r2_of_least_squares(A, y), abs=1e-4)
    assert metrics["stopped"] == "converged"
    # heavy ball with Polyak's tuning on the Hessian 2 A^T A / n (lambda_max raised by 1%)
    L, mu = extreme_eigenvalues(A)
    sL, smu = math.sqrt(1.01 * L), math.sqrt(mu)
    chosen = json.loads((tmp_path / "run" / "metrics.json").read_text())["chosen"]
    assert chosen["optimizer.lr"] == pytest.approx(4 / (sL + smu) ** 2, rel=1e-4)
    assert chosen["optimizer.momentum"] == pytest.approx(((sL - smu) / (sL + smu)) ** 2, rel=1e-4)
    assert "step size from the data: optimizer.lr=" in out
    assert "reached least squares" in out and "warning" not in out
    # the values as printed, given as overrides, train the same run bit for bit (four digits,
    # 0.9999 for 0.99994, did not)
    line = next(ln for ln in out.splitlines() if ln.startswith("step size from the data"))
    given = re.findall(r"(optimizer\.\w+)=([^,\s]+)", line)
    assert [k for k, _ in given] == ["optimizer.lr", "optimizer.momentum"]
    again = make_config(
        "data=csv", f"data.path={houses}", "data.target=price", *QUIET,
        *(f"{k}={v}" for k, v in given),
    )  # fmt: skip
    assert train_and_evaluate(again, tmp_path / "again")["params"] == metrics["params"]


@pytest.mark.slow
def test_too_few_epochs_is_one_warning_with_the_gap_and_what_to_change(tmp_path, houses, capsys):
    cfg = make_config(
        "data=csv", f"data.path={houses}", "data.target=price", "trainer.epochs=3", *QUIET
    )
    metrics = train_and_evaluate(cfg, tmp_path)
    warnings = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, warnings
    gap = f"{metrics['ols_gap']['max_rel_coefficient_diff']:.2e}"
    assert "stopped after 3 epochs" in warnings[0] and gap in warnings[0]
    assert "trainer.epochs=30" in warnings[0]


@pytest.mark.slow
def test_walkthrough_bound_is_over_W_alone(tmp_path, capsys):
    # b is frozen: the Hessian over W is 2 sum(x^2) / 6 = 62 / 6, so the bound is 6 / 31
    bound = 2 / (2 * 31 / 6)
    metrics = train_and_evaluate(
        make_config("optimizer.lr=0.19", "trainer.epochs=300", "logger.print_trace=false", *QUIET),
        tmp_path / "a",
    )
    assert "warning" not in capsys.readouterr().out
    assert metrics["params"]["W"] == pytest.approx(2.0, abs=1e-3)
    assert metrics["stable_lr_bound"] == pytest.approx(bound, rel=1e-5)
    with pytest.raises(UserError, match=r"diverged"):
        train_and_evaluate(
            make_config("optimizer.lr=0.2", "trainer.epochs=400", *QUIET), tmp_path / "b"
        )
    warning = capsys.readouterr().out
    assert f"above {bound:.4g}" in warning and "gradient descent" in warning


@pytest.mark.parametrize(
    ("momentum", "nesterov"), [(None, False), (0.5, False), (0.9, False), (0.5, True), (0.9, True)]
)
def test_bounds_are_those_of_optax_updates(momentum, nesterov):
    """optax's own sgd on f(p) = lam p^2 / 2 converges just below the bound, diverges above."""
    lam = 3.0
    method = "gradient descent" if momentum is None else "Nesterov" if nesterov else "heavy"
    method = {"heavy": "heavy-ball momentum"}.get(method, method)
    bound = stable_bound(method, lam, momentum or 0.0)

    def final(lr):
        tx = optax.sgd(lr, momentum=momentum, nesterov=nesterov)

        def step(carry, _):
            p, state = carry
            updates, state = tx.update(lam * p, state, p)
            return (p + updates, state), None

        p0 = jnp.float32(1.0)
        (p, _), _ = jax.lax.scan(step, (p0, tx.init(p0)), None, length=3000)
        return float(p)

    assert abs(final(0.97 * bound)) < 1e-6
    assert not abs(final(1.03 * bound)) < 1e6


@pytest.mark.slow
def test_divergence_names_the_bound_of_the_optimizer_used(tmp_path):
    # Nesterov with momentum 0.9 below the gradient-descent bound 2 / L still diverges: its own
    # bound is 2 (1 + m) / ((1 + 2 m) L), 0.68 of it
    df = pd.read_csv(HOUSING)
    X = df.drop(columns="price").replace({"yes": 1, "no": 0}).astype(float).to_numpy()
    L, _ = extreme_eigenvalues(standardized_design(X))
    lr = 0.9 * 2 / L
    cfg = make_config(
        "experiment=housing",
        "data.val_fraction=0",
        "data.test_fraction=0",
        f"optimizer.lr={lr}",
        "optimizer.momentum=0.9",
        *QUIET,
    )
    with pytest.raises(UserError, match="diverged") as err:
        train_and_evaluate(cfg, tmp_path)
    message = str(err.value)
    named = float(re.search(r"\) is ([0-9.e-]+);", message).group(1))
    assert named == pytest.approx(2 * 1.9 / (2.8 * L), rel=1e-3)
    assert "Nesterov" in message and "set optimizer.lr=auto or below that" in message


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_auto_reaches_minimum_norm_least_squares_on_a_rank_deficient_design(tmp_path, optimizer):
    rng = np.random.default_rng(7)
    n = 300
    a = rng.integers(0, 100, n)
    d = rng.integers(0, 50, n)
    c = a + rng.integers(-1, 2, n)  # nearly collinear with a: kappa in the thousands
    # b duplicates a and e = 3 d - a: two exact dependencies, rank 4 of 6
    df = pd.DataFrame({"a": a, "b": a, "c": c, "d": d, "e": 3 * d - a})
    df["y"] = 2.0 * a + 0.5 * c - d + rng.normal(0, 3, n) + 50
    path = tmp_path / "ill.csv"
    df.to_csv(path, index=False)
    cfg = make_config(
        "data=csv",
        f"data.path={path}",
        "data.target=y",
        "data.val_fraction=0",
        "data.test_fraction=0",
        f"optimizer={optimizer}",
        *QUIET,
    )
    metrics = train_and_evaluate(cfg, tmp_path / "run")
    assert metrics["stopped"] == "converged" and metrics["steps"] <= 5000

    A = standardized_design(df[list("abcde")].to_numpy())
    y = df["y"].to_numpy()
    assert metrics["train"]["r2"] == pytest.approx(r2_of_least_squares(A, y), abs=1e-4)
    # the minimum-norm solution in the scaled columns: singular values below 1e-3 of the
    # largest (eigenvalues below 1e-6) are the dependencies
    ys = (y - y.mean()) / y.std()
    beta = np.linalg.lstsq(A, ys, rcond=1e-3)[0]
    W = [metrics["params"][f"W/{k}"] for k in "abcde"]
    np.testing.assert_allclose(W, beta[:5], atol=2e-3)
    assert W[0] == pytest.approx(W[1], abs=1e-4)  # the duplicate columns share the weight


@pytest.mark.slow
def test_mini_batch_step_is_from_the_largest_row_norm(tmp_path):
    cfg = make_config(
        "data=synthetic",
        "data.n_samples=200",
        "data.n_features=3",
        "loader=mini_batch",
        "trainer.epochs=2",
        *QUIET,
    )
    metrics = train_and_evaluate(cfg, tmp_path)
    X = np.asarray(synthetic(200, 3, 0.1, 0).X, np.float64)
    top = float(np.max(np.sum(X * X, axis=1))) + 1.0  # the bias's column of ones
    assert metrics["chosen"] == {"optimizer.lr": pytest.approx(1 / (2 * top), rel=1e-5)}


@pytest.mark.slow
def test_momentum_scales_the_stochastic_step_by_one_minus_m(tmp_path):
    """Per-sample steps with momentum m: ``(1 - m) / (2 max ||[x 1]||^2)``, the row step
    whose steady momentum step ``lr / (1 - m)`` is Kaczmarz's projection. The housing
    experiment with per-sample steps (Nesterov, m = 0.9) diverged at step 1197 with the step
    of plain SGD; it now trains."""
    cfg = make_config(
        "data=synthetic",
        "data.n_samples=200",
        "data.n_features=3",
        "loader=per_sample",
        "optimizer=nesterov",
        "trainer.epochs=2",
        *QUIET,
    )
    metrics = train_and_evaluate(cfg, tmp_path / "synthetic")
    X = np.asarray(synthetic(200, 3, 0.1, 0).X, np.float64)
    top = float(np.max(np.sum(X * X, axis=1))) + 1.0  # the bias's column of ones
    assert metrics["chosen"] == {
        "optimizer.lr": pytest.approx((1 - 0.9) / (2 * top), rel=1e-5),
        "optimizer.momentum": 0.9,
    }
    cfg = make_config("experiment=housing", "loader=per_sample", "trainer.epochs=30", *QUIET)
    metrics = train_and_evaluate(cfg, tmp_path / "housing")
    assert metrics["steps"] == 30 * 436 and np.isfinite(metrics["final_loss"])
    assert metrics["train"]["r2"] > 0.5


@pytest.mark.slow
def test_stochastic_tol_compares_epochs_from_the_second_on(tmp_path):
    cfg = make_config(
        "data=synthetic", "data.n_samples=100", "loader=per_sample", "trainer.epochs=3", *QUIET
    )
    metrics = train_and_evaluate(cfg, tmp_path)
    assert cfg.trainer.tol > 0 and metrics["epochs"] >= 2


@pytest.mark.slow
def test_adam_auto_is_kingma_and_bas_default(tmp_path):
    cfg = make_config("data=synthetic", "data.n_samples=100", "optimizer=adam", *QUIET)
    cfg.trainer.epochs = 3
    assert train_and_evaluate(cfg, tmp_path)["chosen"]["optimizer.lr"] == 0.001


def test_a_tilde_path_reaches_hydra_quoted():
    argv = quote_for_hydra(["data=csv", "data.path=~/data/my_houses.csv", "data.target=price"])
    assert make_config(*argv).data.path == "~/data/my_houses.csv"


@pytest.mark.parametrize(
    "value", ["my file (1).csv", "a=b.csv", "${oc.env:HOME}/x=1.csv", 'it\'s "$1" (!).csv']
)
def test_a_value_hydra_cannot_read_names_the_key_and_the_quoted_form(value, capsys):
    with pytest.raises(SystemExit) as exit_:
        quote_for_hydra([f"data.path={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: bad override data.path=")
    # the quoted form, as the shell reads what the line shows after "inside the shell's quotes:"
    shown = err.split("inside the shell's quotes: ", 1)[1]
    word = subprocess.run(
        ["bash", "-c", f"printf '%s' {shown}"], capture_output=True, text=True, check=True
    ).stdout  # as bash reads it: "$" and quotes are the shell's first
    assert word.startswith("data.path='")
    expected = value.replace("${oc.env:HOME}", os.environ["HOME"])  # Hydra's quotes resolve it
    assert make_config("data=csv", word, "data.target=price").data.path == expected


def _pasted(err: str, after: str) -> str:
    """The shell word a one-line error shows after ``after``, as bash reads it pasted."""
    shown = err.split(after, 1)[1]
    return subprocess.run(
        ["bash", "-c", f"printf '%s' {shown}"], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize(
    ("argv", "key", "value"),
    [
        # a list with an item Hydra cannot read bare: its items quoted, not the list (a quoted
        # list is a string: "str is not a ListConfig")
        (
            ["data.features=[Bedrooms,Lot Size (sq ft)]"],
            "data.features",
            ["Bedrooms", "Lot Size (sq ft)"],
        ),
        (["data.drop=[Owner's ID]"], "data.drop", ["Owner's ID"]),
        # the shell split an unquoted value at its space: the whole override, quoted
        (["data.target=Sale", "Price"], "data.target", "Sale Price"),
        (["data.drop=[House", "ID]", "data.target=price"], "data.drop", ["House ID"]),
        (["data.drop=[lot", "size", "(sq", "ft)]"], "data.drop", ["lot size (sq ft)"]),
    ],
)
def test_an_override_hydra_or_the_shell_broke_is_shown_whole_and_quoted(argv, key, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        quote_for_hydra(["data=csv", *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: bad override ")
    split = len(argv) > 1 and "=" not in argv[1]
    word = _pasted(err, "quote the whole override: " if split else "inside the shell's quotes: ")
    got = OmegaConf.select(make_config("data=csv", "data.target=price", word), key)
    assert (OmegaConf.to_object(got) if isinstance(value, list) else got) == value


def test_the_shipped_housing_file_is_found_from_anywhere():
    path = make_config("experiment=housing").data.path
    assert path == str(HOUSING) and HOUSING.is_file()


@pytest.mark.slow
def test_paths_as_the_readme_writes_them(tmp_path):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "my_houses.csv").write_text(HOUSES)
    (tmp_path / "rel.csv").write_text(HOUSES)
    common = ("data=csv", "data.target=price", "logger.plots=false")
    *runs, proc = concurrently(
        *(
            lambda i=i, path=path: run_train(
                *common,
                f"data.path={path}",
                f"hydra.run.dir={tmp_path / f'run{i}'}",
                cwd=tmp_path,
                env={"HOME": str(home)},
            )
            for i, path in enumerate(["~/data/my_houses.csv", "rel.csv"])
        ),
        lambda: run_train(
            "-m",
            "experiment=housing",
            "trainer.epochs=2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            cwd=tmp_path,
        ),  # fmt: skip
    )
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "reached least squares" in run.stdout
    assert proc.returncode == 0 and "error" not in proc.stderr, proc.stderr
