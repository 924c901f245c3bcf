"""The user's experience: experiments, sweeps, optimizers and schedules, progress, TensorBoard."""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optax
import pytest
from conftest import CONF, ROOT, kill_group, make_config, read_scalars, run_train, spawn

from training.run import train_and_evaluate

EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


def test_the_experiments_are_the_documented_ones():
    assert {
        "seed",
        "housing",
        "housing_full_batch",
        "housing_sgd",
        "housing_minibatch",
        "synthetic",
    } <= set(EXPERIMENTS)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_with_a_tiny_budget(tmp_path, name):
    metrics = train_and_evaluate(make_config(f"experiment={name}", "trainer.epochs=2"), tmp_path)
    assert metrics["epochs"] == 2 and np.isfinite(metrics["final_loss"])
    assert (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_a_sweep_runs_the_grid_reports_a_failed_run_and_compares_in_tensorboard(
    sweep_with_failed_runs,
):
    sweep, proc = sweep_with_failed_runs
    assert proc.returncode == 1, proc.stderr[-3000:]  # a run failed: see test_runs_engine.py
    runs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(runs) == 6  # each run's directory is named by its overrides
    assert sum("loader=mini_batch,optimizer.lr=0.1," in r for r in runs) == 1
    assert proc.stderr.count("error: this run failed: bad config value optimizer.lr=-1.0") == 2
    finished = sorted(p.parent.name for p in sweep.rglob("metrics.json"))
    assert finished == [r for r in runs if "lr=-1" not in r]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in finished:  # every run is a TensorBoard run of the sweep, with its hparams
        acc = EventAccumulator(str(sweep / run))
        acc.Reload()
        assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
        assert "train/loss" in acc.Tags()["scalars"]


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw"])
def test_optimizer_groups_are_optax_optimizers(name):
    from training.optim import build_optimizer

    cfg = make_config(f"optimizer={name}", "optimizer.freeze=[]").optimizer
    params = {"W": np.array([1.0, -2.0], np.float32), "b": np.zeros((), np.float32)}
    tx, _ = build_optimizer(cfg, params, 100)
    expected = {
        "sgd": optax.sgd(cfg.lr),
        "momentum": optax.sgd(cfg.lr, momentum=0.9),
        "nesterov": optax.sgd(cfg.lr, momentum=0.9, nesterov=True),
        "adam": optax.adam(cfg.lr, b1=0.9, b2=0.999, eps=1e-8),
        "adamw": optax.adamw(cfg.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4),
    }[name]
    grads = {"W": np.array([0.5, 0.25], np.float32), "b": np.float32(1.0)}
    ours, theirs = tx.init(params), expected.init(params)
    for _ in range(3):
        u1, ours = tx.update(grads, ours, params)
        u2, theirs = expected.update(grads, theirs, params)
        for k in params:
            np.testing.assert_allclose(u1[k], u2[k], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("schedule", "reference"),
    [
        ("cosine", lambda: optax.cosine_decay_schedule(0.05, 30, alpha=0.0)),
        ("exponential", lambda: optax.exponential_decay(0.05, 10, 0.5)),
        ("warmup_cosine", lambda: optax.warmup_cosine_decay_schedule(0.0, 0.05, 5, 30, 0.0)),
    ],
)
def test_schedules_are_logged_as_train_lr(tmp_path, schedule, reference):
    train_and_evaluate(
        make_config(
            "experiment=housing",
            "optimizer.name=sgd",
            "optimizer.lr=0.05",
            "trainer.epochs=30",
            "trainer.tol=0",
            f"optimizer.schedule={schedule}",
            "optimizer.warmup_steps=5",
            "optimizer.transition_steps=10",
        ),
        tmp_path,
    )
    lr = read_scalars(tmp_path)["train/lr"]
    assert [s for s, _ in lr] == list(range(30))
    np.testing.assert_allclose(
        [v for _, v in lr], [reference()(s) for s in range(30)], rtol=1e-6, atol=1e-9
    )


TOY_X = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0])
TOY_Y = 2 * TOY_X - 1


# W starts at 8 and b at 3, far from the data's slope 2 and intercept -1: neither gradient is 0
W0, B0 = 8.0, 3.0


@pytest.mark.slow
@pytest.mark.parametrize("frozen", ["b", "W"])
def test_freezing_holds_a_parameter(tmp_path, frozen):
    lr, epochs = 0.01, 20
    metrics = train_and_evaluate(
        make_config(
            "data=toy",
            "loader=full_batch",
            "model.W_init=constant",
            f"model.W_value={W0}",
            "model.b_init=constant",
            f"model.b_value={B0}",
            "optimizer.name=sgd",
            f"optimizer.lr={lr}",
            f"optimizer.freeze=[{frozen}]",
            f"trainer.epochs={epochs}",
            "trainer.tol=0",
            "logger.print_trace=false",
            "logger.plots=false",
        ),
        tmp_path,
    )
    # the other parameter follows gradient descent on L = mean((W x + b - y)^2) in float64
    W, b = W0, B0
    trace = {"W": [W], "b": [b]}
    for _ in range(epochs):
        r = W * TOY_X + b - TOY_Y
        if frozen != "W":
            W = W - lr * 2 * np.mean(r * TOY_X)
        if frozen != "b":
            b = b - lr * 2 * np.mean(r)
        trace["W"].append(W)
        trace["b"].append(b)
    scalars = read_scalars(tmp_path)
    held = {"W": W0, "b": B0}[frozen]
    assert metrics["params"][frozen] == held  # exactly, after every one of the updates
    assert [v for _, v in scalars[f"params/{frozen}"]] == [held] * (epochs + 1)
    moving = "b" if frozen == "W" else "W"
    assert abs(trace[moving][-1] - trace[moving][0]) > 1  # it moved, and as computed
    np.testing.assert_allclose(
        [v for _, v in scalars[f"params/{moving}"]], trace[moving], rtol=1e-5
    )


@pytest.mark.slow
def test_freezing_holds_a_parameter_that_adamw_would_decay(tmp_path):
    # AdamW shrinks every parameter it updates: a frozen one must get no update at all
    metrics = train_and_evaluate(
        make_config(
            "data=toy",
            "model.W_init=constant",
            "model.W_value=8",
            "model.b_init=constant",
            "model.b_value=3",
            "optimizer=adamw",
            "optimizer.lr=0.1",
            "optimizer.weight_decay=0.5",
            "optimizer.freeze=[b]",
            "trainer.epochs=20",
            "logger.print_trace=false",
            "logger.plots=false",
        ),
        tmp_path,
    )
    assert metrics["params"]["b"] == 3.0 and abs(metrics["params"]["W"] - 8.0) > 1


@pytest.mark.slow
def test_plain_progress_lines_when_not_on_a_terminal(tmp_path):
    proc = run_train("experiment=synthetic", "trainer.epochs=3", f"hydra.run.dir={tmp_path}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("epoch ")]
    assert lines and lines[-1].startswith("epoch 3/3") and "samples/s" in lines[-1]


@pytest.mark.slow
@pytest.mark.parametrize(("loader", "epochs"), [("per_sample", 2), ("mini_batch", 20)])
def test_the_progress_line_of_stochastic_steps_shows_the_latest_epoch_s_mean_loss(
    tmp_path, loader, epochs
):
    # it showed the last row's own loss: 0.032 beside a final loss of 0.39 over every row
    # (twenty epochs of mini-batches: a call may hold several)
    proc = run_train(
        "experiment=housing", f"loader={loader}", f"trainer.epochs={epochs}",
        "logger.plots=false", "logger.every_n_steps=1", "logger.progress=lines",
        f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    end = f"epoch {epochs}/{epochs}"
    last = [ln for ln in proc.stdout.splitlines() if ln.startswith(end)][-1]
    step, shown = re.fullmatch(rf"{end}  step (\d+)  loss (\S+)  .* samples/s", last).groups()
    losses = dict(read_scalars(tmp_path)["train/loss"])
    per_epoch = int(step) // epochs
    latest = [losses[t] for t in range(int(step) - per_epoch, int(step))]
    assert float(shown) == np.float32(np.mean(np.float64(latest)))


@pytest.mark.slow
def test_a_progress_bar_on_a_terminal(tmp_path):
    master, slave = pty.openpty()  # train.py's output goes to a pseudo-terminal
    proc = subprocess.Popen(
        [
            sys.executable,
            "train.py",
            "experiment=synthetic",
            "trainer.epochs=3",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=ROOT,
        stdout=slave,
        stderr=slave,
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 120
    try:
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"train.py still running after 120 s: {out[-2000:]!r}"
            ready, _, _ = select.select([master], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed: the run ended
                break
            if not chunk:
                break
            out += chunk
        proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        kill_group(proc)
        os.close(master)
    text = out.decode(errors="replace")
    assert proc.returncode == 0
    assert "epoch 3/3" in text and "━" in text and "samples/s" in text
    # train.log gets the bar's last state as a line, none of its redrawing
    log = (tmp_path / "train.log").read_text()
    assert "\x1b" not in log and "━" not in log
    assert [ln for ln in log.splitlines() if ln.startswith("epoch ")][-1].startswith("epoch 3/3")
    assert log.rstrip().splitlines()[-1].startswith("done: ")


@pytest.mark.parametrize("new_run", [True, False])
def test_the_run_log_copy_keeps_log_records_in_order(tmp_path, capsys, new_run):
    # the copy appends beside the log handler: opened to write, it wrote over the records
    from training.logs import copy_to_run_log, output_copied_for_the_run_log

    path = tmp_path / "train.log"
    path.write_text("an earlier attempt\n")
    handler = logging.FileHandler(path)  # as Hydra's job logging opens it: appending
    handler.setFormatter(logging.Formatter("[record] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with output_copied_for_the_run_log():
            logging.getLogger("test").warning("one")
            print("before the run owns its directory")
            copy_to_run_log(new_run=new_run)
            print("two", file=sys.stderr)
            logging.getLogger("test").warning("three")
            print("four")
    finally:
        root.removeHandler(handler)
        handler.close()
    lines = path.read_text().splitlines()
    earlier = [] if new_run else ["an earlier attempt"]
    want = ["[record] one", "before the run owns its directory", "two", "[record] three", "four"]
    assert lines == earlier + want
    out = capsys.readouterr()
    assert out.out == "before the run owns its directory\nfour\n" and out.err == "two\n"


@pytest.mark.slow
def test_train_log_holds_what_the_run_printed(tmp_path):
    # Hydra's train.log holds logging records only, and stayed empty beside the run's printout
    first = run_train(
        "experiment=housing", "trainer.epochs=3", "logger.plots=false", f"hydra.run.dir={tmp_path}"
    )
    assert first.returncode == 0 and not first.stderr, first.stderr
    assert (tmp_path / "train.log").read_text() == first.stdout
    # a resumed run adds its printout to the first part's
    more = run_train(
        "experiment=housing",
        "trainer.epochs=5",
        "trainer.resume=true",
        "logger.plots=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert more.returncode == 0 and not more.stderr, more.stderr
    assert (tmp_path / "train.log").read_text() == first.stdout + more.stdout
    # a run that fails ends its log with its error line; a run refused because the directory
    # holds another writes nothing there
    failed = tmp_path / "failed"
    diverged = run_train("optimizer.lr=10", f"hydra.run.dir={failed}")
    assert diverged.returncode == 3
    log = (failed / "train.log").read_text().splitlines()
    assert log[-1] == diverged.stderr.strip().splitlines()[-1]
    assert log[-1].startswith("error: training diverged")
    # a run that fails before training (its data) has its printout and error line there too
    missing = tmp_path / "missing"
    no_file = run_train(
        "data=csv", f"data.path={tmp_path / 'nope.csv'}", "data.target=price",
        f"hydra.run.dir={missing}",
    )  # fmt: skip
    assert no_file.returncode == 2 and "no such file" in no_file.stderr
    assert (missing / "train.log").read_text() == no_file.stdout + no_file.stderr
    # resumed where that run left no checkpoint, a run starts from scratch, and its log too
    again = run_train("optimizer.lr=0.01", "trainer.resume=true", f"hydra.run.dir={failed}")
    assert again.returncode == 0 and not again.stderr, again.stderr
    assert "starting from scratch" in again.stdout
    assert (failed / "train.log").read_text() == again.stdout
    before = (tmp_path / "train.log").read_bytes()
    refused = run_train("experiment=housing", "logger.plots=false", f"hydra.run.dir={tmp_path}")
    assert refused.returncode == 2 and "already holds a run" in refused.stderr
    assert (tmp_path / "train.log").read_bytes() == before


@pytest.mark.slow
def test_a_real_tensorboard_server_serves_the_run(tmp_path):
    train_and_evaluate(make_config(), tmp_path)  # the walkthrough
    # --port 0: the server binds a port the system chooses, then says which; no port can be
    # taken by another program between our choosing it and the server binding it
    log = tmp_path / "tensorboard.err"
    with spawn(
        [
            str(Path(sys.executable).with_name("tensorboard")),
            "--logdir",
            str(tmp_path),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    ) as server:
        deadline = time.monotonic() + 90
        while not (said := re.search(r"at http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert server.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "TensorBoard did not say where it serves"
            time.sleep(0.2)
        port = int(said.group(1))
        base = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?run=.&tag="
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(base + "train/loss", timeout=5) as r:
                    loss = json.loads(r.read())
                if len(loss) == 50:
                    break
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, "TensorBoard did not serve the run"
            time.sleep(0.5)
        with urllib.request.urlopen(base + "params/W", timeout=5) as r:
            W = json.loads(r.read())
    assert [step for _, step, _ in loss] == list(range(50))
    assert loss[0][2] == 186.0
    assert np.float32(W[1][2]) == np.float32(7.38) and np.float32(W[50][2]) == np.float32(2.0256863)


HOUSING_CSV = ROOT / "data" / "housing" / "windsor_house_prices.csv"


def least_squares_r2(X: np.ndarray, y: np.ndarray) -> float:
    """R^2 of numpy's least-squares fit of ``y`` on the columns of ``X`` and an intercept."""
    A = np.column_stack([X, np.ones(len(X))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    residual = y - A @ coef
    return float(1 - residual @ residual / np.sum((y - y.mean()) ** 2))


@pytest.mark.slow
def test_a_model_of_ones_own_trains_logs_and_predicts(tmp_path):
    import pandas as pd

    from data.preprocess import split_rows
    from predict import predict

    metrics = train_and_evaluate(
        make_config(
            "experiment=housing",
            "model=quadratic",
            "optimizer.name=nesterov",
            "optimizer.momentum=0.9",
            "optimizer.lr=0.005",
            "trainer.epochs=300",
        ),
        tmp_path,
    )
    assert {"W/lotsize", "V/0", "b"} <= set(metrics["params"])
    assert "coefficients" not in metrics  # the linear read-out is for the linear model
    # the squares' weights start at 0 and moved; with them the fit is the least-squares fit on
    # [x, x^2] and beats the best linear one (0.6913 against 0.6836 on these training rows)
    V = np.array([metrics["params"][f"V/{j}"] for j in range(11)])
    assert np.abs(V).max() > 0.01
    train = split_rows(546, 0.1, 0.1, seed=0)["train"]
    houses = pd.read_csv(HOUSING_CSV)
    X = houses.drop(columns="price").replace({"yes": 1.0, "no": 0.0}).to_numpy(float)[train]
    price = houses["price"].to_numpy(float)
    linear, quadratic = (
        least_squares_r2(X, price[train]),
        least_squares_r2(np.column_stack([X, X**2]), price[train]),
    )
    assert metrics["train"]["r2"] == pytest.approx(quadratic, abs=1e-6)
    assert metrics["train"]["r2"] > linear + 0.005
    scalars = read_scalars(tmp_path)
    assert "params/V/3" in scalars
    pred, df, _ = predict(tmp_path, HOUSING_CSV)
    from sklearn.metrics import r2_score

    assert df["price"].astype(float).to_numpy()[train] == pytest.approx(price[train])
    assert r2_score(price[train], pred[train]) == pytest.approx(metrics["train"]["r2"], abs=1e-5)


@pytest.mark.slow
def test_a_frozen_weight_converges_on_the_trainable_gradient(tmp_path):
    """``optimizer.freeze=[W]``: ``trainer.tol`` reads ``b``'s gradient only (``W``'s is not
    zero at the constrained minimum). With ``W = 8`` held, ``b* = mean(y - 8 x) = -10`` and
    ``b + 10`` shrinks by ``1 - 2 lr`` a step from ``b = -1``: ``|g_b| = 18 * 0.98^k`` falls
    below 1e-4 first at ``k = 599`` (float32's rounding of ``b`` near -10 slows the last
    steps: 602 in numpy's float32, 603 here), not the 5000 epochs of a norm over ``W``'s too.
    The least-squares standard errors, over every parameter, do not apply; the note says so."""
    metrics = train_and_evaluate(
        make_config(
            "data=toy",
            "optimizer.freeze=[W]",
            "trainer.tol=1e-4",
            "trainer.epochs=5000",
            "logger.print_trace=false",
            "logger.plots=false",
        ),
        tmp_path,
    )
    k = int(np.ceil(np.log(1e-4 / 18) / np.log(0.98)))
    assert k == 599
    assert metrics["stopped"] == "converged" and k <= metrics["steps"] <= k + 5
    assert metrics["params"]["W"] == 8.0
    assert metrics["params"]["b"] == pytest.approx(-10.0, abs=1e-4)
    assert set(metrics["standard_errors"].values()) == {None}
    assert metrics["inference"]["note"].endswith("standard errors need optimizer.freeze=[])")
