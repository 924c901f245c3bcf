"""Training that loses nothing: kill and resume, SIGTERM, corrupt checkpoints, divergence, disks."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import (
    ROOT,
    concurrently,
    kill_group,
    make_config,
    read_scalars,
    resumed_step,
    run_train,
    signal_at_checkpoint,
)

from errors import UserError
from training.checkpoint import Checkpoints
from training.run import train_and_evaluate

pytestmark = pytest.mark.slow  # every test here starts train.py processes

EPOCHS = 12
RUN = (
    "experiment=synthetic",
    "data.n_samples=40000",
    "data.n_features=4",
    "loader=mini_batch",
    "loader.batch_size=8",
    f"trainer.epochs={EPOCHS}",
    "trainer.checkpoint_every=1",
    "logger.every_n_steps=50",
)
STEPS_PER_EPOCH = 5000
FINAL_STEP = EPOCHS * STEPS_PER_EPOCH


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    """``train.py RUN`` in its own process group, its output in files beside the run (a pipe
    nobody reads could fill and stall it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *RUN, *extra, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=(run_dir.parent / f"{run_dir.name}.out").open("w"),
        stderr=(run_dir.parent / f"{run_dir.name}.err").open("w"),
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )


def params_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["params"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Iterator[Callable[[], Path]]:
    """The run directory of ``train.py RUN`` run whole, as a call that waits for it.

    The run starts in the background when the first test asks for it, and runs while that
    test's own run does: a test calls it only when it compares.
    """
    run_dir = tmp_path_factory.mktemp("whole")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(run_train, *RUN, f"hydra.run.dir={run_dir}")

        def finished() -> Path:
            proc = pending.result()
            assert proc.returncode == 0, proc.stderr
            return run_dir

        yield finished


@pytest.mark.parametrize("seed", [1, 5, 7])
def test_sigkill_at_a_random_moment_then_resume_is_exact(tmp_path, uninterrupted, seed):
    # the moment: when the k-th epoch's checkpoint appears, k drawn from the seed in the first
    # half of the run, so that steps remain whatever the machine's speed
    k = random.Random(seed).randint(1, EPOCHS // 2)
    run_dir, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    proc = start(run_dir)
    try:
        on_disk = signal_at_checkpoint(proc, ckpts, k * STEPS_PER_EPOCH, signal.SIGKILL)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL  # it was running and the signal ended it
    assert k * STEPS_PER_EPOCH <= max(on_disk) < FINAL_STEP  # steps remained
    assert not (run_dir / "metrics.json").exists()
    resumed = run_train(*RUN, "trainer.resume=true", f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_step(resumed.stdout, ckpts) == max(on_disk)
    assert params_of(run_dir) == params_of(uninterrupted())


def test_sigterm_checkpoints_then_resume_is_exact_and_tensorboard_has_each_step_once(
    tmp_path, uninterrupted
):
    run_dir, ckpts = tmp_path / "run", tmp_path / "run" / "checkpoints"
    proc = start(run_dir)
    try:
        on_disk = signal_at_checkpoint(proc, ckpts, 2 * STEPS_PER_EPOCH, signal.SIGTERM)
    finally:
        kill_group(proc)
    assert proc.returncode == 128 + signal.SIGTERM
    err = (tmp_path / "run.err").read_text()
    assert "trainer.resume=true" in err and err.count("\n") == 1
    # the call in flight finished, its end was checkpointed, and steps remained
    assert f"stopped by SIGTERM at step {max(on_disk)};" in err
    assert max(on_disk) < FINAL_STEP and not (run_dir / "metrics.json").exists()
    resumed = run_train(*RUN, "trainer.resume=true", f"hydra.run.dir={run_dir}")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed_step(resumed.stdout, ckpts) == max(on_disk)
    assert params_of(run_dir) == params_of(uninterrupted())
    ours, theirs = read_scalars(run_dir), read_scalars(uninterrupted())
    for tag in ("train/loss", "params/W/x0", "params/b"):
        steps = [s for s, _ in ours[tag]]
        assert len(steps) == len(set(steps)), tag  # no duplicate points past the checkpoint
        assert ours[tag] == theirs[tag], tag


def test_a_resumed_run_keeps_the_validation_point_of_its_checkpoints_epoch(tmp_path):
    # the resumed writer purges from the checkpoint's step on, and the validation point of the
    # epoch ending there was logged by the earlier run alone: one point short (2999 of 3000)
    run = ("experiment=housing_minibatch", "logger.plots=false", "optimizer.lr=0.001")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run_train(*run, "trainer.epochs=6", f"hydra.run.dir={whole}").returncode == 0
    assert run_train(*run, "trainer.epochs=3", f"hydra.run.dir={parts}").returncode == 0
    resumed = run_train(*run, "trainer.epochs=6", "trainer.resume=true", f"hydra.run.dir={parts}")
    assert resumed.returncode == 0, resumed.stderr
    ours, theirs = read_scalars(parts), read_scalars(whole)
    for tag in ("val/mse", "val/r2", "train/loss"):
        assert [s for s, _ in ours[tag]] == [s for s, _ in theirs[tag]], tag
        np.testing.assert_allclose(
            [v for _, v in ours[tag]], [v for _, v in theirs[tag]], rtol=1e-6
        )


def test_corrupt_or_half_written_newest_checkpoint_is_skipped(tmp_path, uninterrupted):
    proc = run_train(*RUN, "trainer.epochs=10", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    ckpts = tmp_path / "checkpoints"
    newest = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    for item in ("params", "opt_state"):
        for f in (ckpts / str(newest) / item).rglob("*"):
            if f.is_file():
                f.write_bytes(b"\x00garbage")
    half = ckpts / f"{newest + 5}.orbax-checkpoint-tmp-1"
    (half / "state").mkdir(parents=True)
    (half / "state" / "manifest.ocdbt").write_bytes(b"half")
    resumed = run_train(*RUN, "trainer.resume=true", f"hydra.run.dir={tmp_path}")
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint {ckpts / str(newest)} cannot be read" in resumed.stdout
    assert f"resuming from {ckpts / str(newest - STEPS_PER_EPOCH)}" in resumed.stdout
    assert params_of(tmp_path) == params_of(uninterrupted())
    # set aside, and written again: orbax writes no step it holds, so the damaged one had
    # stayed, and predict.py failed on it advising a resume that changed nothing (helper-45)
    aside = tmp_path / "checkpoints.damaged"
    assert f"moved the checkpoints that cannot be read ({newest}) to {aside}" in resumed.stdout
    assert (aside / str(newest) / "params").is_dir()
    rewritten = [f for f in (ckpts / str(newest)).rglob("*") if f.is_file()]
    assert rewritten and not any(f.read_bytes() == b"\x00garbage" for f in rewritten)


def test_a_resume_forgets_the_report_of_the_steps_before(tmp_path, monkeypatch):
    # a resume with more epochs stopped before its end left the shorter run's metrics.json:
    # the run looked finished and predict.py priced with the newer checkpoint, no note; with
    # the plots off, the shorter run's figures and curves.npz stayed beside the longer's
    # metrics (helper-45)
    first = run_train("logger.print_trace=false", f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "loss_curves.png").is_file() and (tmp_path / "curves.npz").is_file()
    from training.run import forget_the_report

    forget_the_report(tmp_path, keep_curves=True)  # as a resume begins, stopped right after
    assert not (tmp_path / "metrics.json").exists() and not list(tmp_path.glob("*.png"))
    assert (tmp_path / "curves.npz").is_file()  # the plots of the resumed run draw from it
    resumed = run_train(
        "logger.print_trace=false", "trainer.resume=true", "trainer.epochs=80",
        "logger.plots=false", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert not list(tmp_path.glob("*.png")) and not (tmp_path / "curves.npz").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 80
    # fewer epochs than ran: it trained nothing, and .hydra/config.yaml said 30 of the 80
    config = (tmp_path / ".hydra" / "config.yaml").read_text()
    fewer = run_train(
        "logger.print_trace=false", "trainer.resume=true", "trainer.epochs=30",
        f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    assert fewer.returncode == 2 and fewer.stderr.strip() == (
        f"error: {tmp_path}: its newest checkpoint is at epoch 80, past trainer.epochs=30; "
        "resume with trainer.epochs=80 or more"
    )
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == config
    assert (tmp_path / "metrics.json").is_file()


def test_a_shuffled_run_that_diverges_says_what_trains(tmp_path):
    # "set optimizer.lr below 5" was followed with 4.9, which diverged again; then "a tenth of
    # this one" was offered whatever the step the data allow, and a tenth may diverge too
    run = ("experiment=housing_minibatch", "logger.plots=false", "trainer.epochs=20")
    proc = run_train(*run, "optimizer.lr=5", f"hydra.run.dir={tmp_path / 'a'}")
    assert proc.returncode == 3, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith("error: training diverged at step ") and "\n" not in line
    again = run_train(*run, "optimizer.lr=auto", f"hydra.run.dir={tmp_path / 'b'}")
    assert again.returncode == 0, again.stderr
    safe = float(re.search(r"step size from the data: optimizer.lr=([0-9.e-]+)", again.stdout)[1])
    assert f"; set optimizer.lr=auto (a step the data allow, {safe:.4g} here), in " in line
    assert 0.5 > safe and "a tenth" not in line  # 0.5 would diverge as well
    tenth = run_train(*run, "optimizer.lr=0.5", f"hydra.run.dir={tmp_path / 'c'}")
    assert tenth.returncode == 3, tenth.stderr


def test_a_tenth_is_offered_when_it_is_below_the_step_the_data_allow(tmp_path):
    # the walkthrough per sample, b frozen: auto's step is 1 / (2 max x^2) = 1 / 32
    run = ("loader=per_sample", "logger.plots=false")
    proc = run_train(*run, "optimizer.lr=0.2", f"hydra.run.dir={tmp_path / 'a'}")
    assert proc.returncode == 3, proc.stderr
    assert (
        f"; set optimizer.lr=auto (a step the data allow, {1 / 32:.4g} here) or a tenth of this "
        "one, optimizer.lr=0.02, in another run directory" in proc.stderr
    )
    followed = run_train(*run, "optimizer.lr=0.02", f"hydra.run.dir={tmp_path / 'b'}")
    assert followed.returncode == 0, followed.stderr
    assert "final loss 0.0, W 2.0, b -1.0" in followed.stdout


def test_a_resume_that_turns_plots_and_tensorboard_on_says_where_they_begin(tmp_path):
    # the trajectory marked its start where the resumed part began, silently
    off = ("logger.plots=false", "logger.tensorboard=false")
    assert run_train("trainer.epochs=20", *off, f"hydra.run.dir={tmp_path}").returncode == 0
    resumed = run_train("trainer.epochs=50", "trainer.resume=true", f"hydra.run.dir={tmp_path}")
    assert resumed.returncode == 0, resumed.stderr
    notes = [ln for ln in resumed.stdout.splitlines() if ln.startswith("note: ")]
    assert notes == [
        "note: the plots draw the steps from 20 on: the steps before were trained with "
        "logger.plots=false",
        "note: TensorBoard's events begin at step 20: the steps before were trained with "
        "logger.tensorboard=false",
    ]
    again = run_train("trainer.epochs=60", "trainer.resume=true", f"hydra.run.dir={tmp_path}")
    assert "note: " not in again.stdout  # from then on both were kept


def test_divergence_stops_with_exit_3_and_no_non_finite_checkpoint(tmp_path):
    housing = ("experiment=housing", "trainer.checkpoint_every=1")
    proc = run_train(*housing, "optimizer.lr=10", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 3, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in proc.stderr
    assert line.startswith("error: training diverged at step ")
    assert "optimizer.lr=10" in line and "largest stable full-batch learning rate" in line
    # the directory named here holds this run's files: the advice names another one, free
    beside = f"{tmp_path}-2"
    assert line.endswith(
        f"; set optimizer.lr=auto or below that, in another run directory such as "
        f"hydra.run.dir={beside} ({tmp_path} keeps this run's files)"
    )
    ckpt = Checkpoints(tmp_path / "checkpoints")
    try:
        assert ckpt.steps(), "the epochs before the divergence were checkpointed"
        for step in ckpt.steps():
            meta = ckpt.restore_meta(step)
            assert meta["progress"]["step"] == step
            like = {"params": _params(), "opt_state": _nesterov_state()}
            state, _ = ckpt.restore(step, like)
            leaves = [np.asarray(v) for v in jax.tree.leaves(state)]
            assert leaves and all(np.isfinite(v).all() for v in leaves)
    finally:
        ckpt.close()
    # the advice, followed as written, trains
    again = run_train(*housing, "optimizer.lr=auto", f"hydra.run.dir={beside}")
    assert again.returncode == 0, again.stderr


def test_a_directory_beside_a_run_is_one_that_does_not_exist(tmp_path):
    from training.run import directory_beside

    run = tmp_path / "run"
    assert directory_beside(run) == tmp_path / "run-2"
    (tmp_path / "run-2").mkdir()
    (tmp_path / "run-3").write_text("")
    assert directory_beside(run) == tmp_path / "run-4"


def _params():
    return {"W": np.zeros(11, np.float32), "b": np.zeros((), np.float32)}


def _nesterov_state():
    import optax

    return optax.sgd(0.1, momentum=0.9, nesterov=True).init(_params())


def test_lr_above_the_stability_bound_is_warned_before_training(tmp_path):
    proc = run_train(
        "experiment=housing",
        "optimizer.name=sgd",
        "optimizer.momentum=null",
        "optimizer.lr=0.9",
        "trainer.epochs=3",
        f"hydra.run.dir={tmp_path}",
    )
    assert "warning: optimizer.lr=0.9 is above" in proc.stdout


def test_two_runs_are_bit_identical(tmp_path):
    a, b = concurrently(
        *(
            # fresh processes: each its own seed of str hashes, as two runs of a user's have
            lambda d=d: run_train(*RUN, "trainer.epochs=3", f"hydra.run.dir={d}", fresh=True)
            for d in (tmp_path / "a", tmp_path / "b")
        )
    )
    assert a.returncode == b.returncode == 0
    assert params_of(tmp_path / "a") == params_of(tmp_path / "b")
    assert read_scalars(tmp_path / "a")["train/loss"] == read_scalars(tmp_path / "b")["train/loss"]


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optimizer.lr=-0.1", "optimizer.lr"),
        ("optimizer.name=rmsprop", "optimizer.name"),
        ("optimizer=rmsprop", "'optimizer'"),
    ],
)
def test_bad_optimizer_config_is_exit_2(tmp_path, override, key):
    proc = run_train(override, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and key in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_disk_is_a_clear_error_and_keeps_earlier_checkpoints(
    tmp_path, monkeypatch, code
):
    import orbax.checkpoint as ocp

    real_save = ocp.CheckpointManager.save
    calls = []

    def failing_save(self, step, *args, **kwargs):
        calls.append(step)
        if len(calls) == 3:
            raise OSError(code, os.strerror(code), str(tmp_path))
        return real_save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", failing_save)
    cfg = make_config(*RUN, "trainer.epochs=5", "logger.tensorboard=false")
    with pytest.raises(UserError, match=f"cannot write the checkpoint of step {3 * 5000}"):
        train_and_evaluate(cfg, tmp_path)
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    ckpt = Checkpoints(tmp_path / "checkpoints")
    try:
        assert ckpt.steps() == [5000, 10000]
        assert ckpt.restore_meta(10000)["progress"]["epoch"] == 2
    finally:
        ckpt.close()


BEFORE_THE_FIRST_STEP = (
    "stopped by SIGINT before training began (nothing was trained and no checkpoint changed); "
    "to start it, run the same command with trainer.resume=true hydra.run.dir={run}"
)
IN_THE_REPORT = (
    "stopped by {sig} while writing the report, after step 5; the trained parameters are "
    "in {run}/checkpoints; to write the report, run the same command with "
    "trainer.resume=true hydra.run.dir={run}"
)
CTRL_C_OUTSIDE_THE_FIT = {
    ("build", signal.SIGINT): BEFORE_THE_FIRST_STEP,
    ("start", signal.SIGINT): BEFORE_THE_FIRST_STEP,
    ("evaluate", signal.SIGINT): IN_THE_REPORT,
    ("evaluate", signal.SIGTERM): IN_THE_REPORT,
}


@pytest.mark.parametrize(("where", "sig"), sorted(CTRL_C_OUTSIDE_THE_FIT))
def test_ctrl_c_outside_the_fit_is_one_line_whose_advice_finishes_the_run(
    tmp_path, monkeypatch, where, sig
):
    """Ctrl-C while the run reads its data and builds (``build``), opens its logs (``start``)
    or writes its report (``evaluate``: the plots, least squares, metrics.json), and SIGTERM in
    the report (train.py raises it as :class:`errors.Stop`, a KeyboardInterrupt; it used to
    kill the run silently there), stop it as one in the fit does: Interrupted, status 128 + the
    signal, one line; the command it gives (the run directory resumed: from the first step
    where it holds no checkpoint, else with nothing left to train) ends with the parameters of
    a run never stopped."""
    import training.run
    from errors import Interrupted, Stop

    real = getattr(training.run, where)

    def interrupted(*args, **kwargs):
        if where != "evaluate":  # what it writes is left as a real Ctrl-C would leave it
            real(*args, **kwargs)
        raise Stop(sig) if sig == signal.SIGTERM else KeyboardInterrupt

    monkeypatch.setattr(training.run, where, interrupted)
    run_dir, settings = tmp_path / "run", ("trainer.epochs=5", "logger.plots=false")
    with pytest.raises(Interrupted) as stop:
        train_and_evaluate(make_config(*settings), run_dir)
    assert stop.value.exit_code == 128 + sig
    assert str(stop.value) == CTRL_C_OUTSIDE_THE_FIT[where, sig].format(run=run_dir, sig=sig.name)
    assert not (run_dir / "metrics.json").exists()
    monkeypatch.setattr(training.run, where, real)
    metrics = train_and_evaluate(make_config(*settings, "trainer.resume=true"), run_dir)
    plain = train_and_evaluate(make_config(*settings), tmp_path / "plain")
    assert metrics["params"] == plain["params"] and metrics["steps"] == plain["steps"] == 5
    assert (run_dir / "metrics.json").exists()


def catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler of its own for ``sig`` (``/proc``'s SigCgt)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_train_py_imports_is_one_line(tmp_path, sig):
    """Ctrl-C (or SIGTERM) in the first second, while train.py imports JAX, ends it with one
    line and 128 + the signal's number, not a KeyboardInterrupt traceback; running the
    command again, as the line says, trains."""
    run_dir = tmp_path / "run"
    args = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        # Python catches SIGINT by itself, SIGTERM only once train.py's first lines ran
        while not catches(proc.pid, signal.SIGTERM) and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        kill_group(proc)
    assert proc.returncode == 128 + sig, err
    assert err.splitlines() == [
        f"error: stopped by {sig.name} before training began (nothing was trained and no "
        "checkpoint changed); to start it, run the command again"
    ], err
    assert not run_dir.exists()
    again = run_train(f"hydra.run.dir={run_dir}")
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    "settings",
    [
        (),
        ("experiment=housing", "loader=mini_batch", "optimizer=sgd", "optimizer.lr=0.01"),
        # full batch with validation rows: the resumed call logs its first step again
        (
            "data=csv",
            f"data.path={ROOT / 'data/housing/windsor_house_prices.csv'}",
            "data.target=price",
        ),
    ],
    ids=["walkthrough", "housing", "csv"],
)
def test_a_resumed_run_draws_the_plots_of_the_whole_run(tmp_path, settings):
    """A run stopped after 20 epochs and resumed to 50 draws the same PNGs, byte for byte, as
    one run of 50 (the walkthrough's trace and path, the loss curves, the loss surface's path):
    the plots' histories are saved beside each checkpoint (``curves.npz``) and restored with it.
    Before, the resumed walkthrough drew 2 of its 5 figures."""
    whole = train_and_evaluate(make_config(*settings, "trainer.epochs=50"), tmp_path / "whole")
    train_and_evaluate(make_config(*settings, "trainer.epochs=20"), tmp_path / "resumed")
    resumed = make_config(*settings, "trainer.epochs=50", "trainer.resume=true")
    assert train_and_evaluate(resumed, tmp_path / "resumed")["params"] == whole["params"]
    pngs = sorted(p.name for p in (tmp_path / "whole").glob("*.png"))
    assert len(pngs) >= 4, pngs
    assert sorted(p.name for p in (tmp_path / "resumed").glob("*.png")) == pngs
    for name in pngs:
        drawn = (tmp_path / "resumed" / name).read_bytes()
        assert drawn == (tmp_path / "whole" / name).read_bytes(), name


# the Stop raised in the test's own weak reference callback is lost, as the test means it to
# be, and pytest reports what Python printed of it
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_run_s_handler_raises_each_signal_and_defers_one_in_a_gc_callback():
    """Once train.py's run trains, SIGINT and SIGTERM raise :class:`errors.Stop` naming the
    signal; one that arrives inside a garbage collector's callback (JAX has one), where
    Python would print the exception as ignored and lose it, is raised after the callback,
    and one lost elsewhere (a weak reference's callback) is sent again until caught."""
    import gc
    import weakref

    from errors import Stop
    from training.cli import stop_at_once_until_the_run, stop_caught, the_run_begins

    class Anything:
        pass

    fired = []

    def callback(phase, info):
        if phase == "start" and not fired:
            fired.append(phase)
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(1000))  # Python runs the handler here, inside the callback

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop_at_once_until_the_run()
        the_run_begins()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with pytest.raises(Stop) as stop:
                os.kill(os.getpid(), sig)
                time.sleep(1)
            stop_caught()
            assert stop.value.signum == sig
        gc.callbacks.append(callback)
        with pytest.raises(Stop) as stop:
            gc.collect()
            assert fired  # the signal came inside the callback, and was not raised there
            time.sleep(2)
        stop_caught()
        assert stop.value.signum == signal.SIGINT

        def lost(ref):  # Python prints what is raised here as ignored
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))

        thing = Anything()
        ref = weakref.ref(thing, lost)
        with pytest.raises(Stop) as stop:
            del thing  # the callback runs, and the Stop raised in it is lost
            assert ref() is None
            time.sleep(2)
        stop_caught()
        assert stop.value.signum == signal.SIGTERM
    finally:
        if callback in gc.callbacks:
            gc.callbacks.remove(callback)
        for s, handler in old.items():
            signal.signal(s, handler)


def test_the_resume_command_of_a_sweep_s_run_resumes_that_run(tmp_path):
    """A sweep's run is continued by its own overrides without ``-m`` (the sweep's command
    would start a new sweep), its directory (``optimizer.lr=0.02,trainer.epochs=3``: Hydra
    reads an unquoted ``=`` as an error, a comma as a sweep) in Hydra's quotes inside the
    shell's: what a stop in a sweep's run, and predict.py for a run that did not finish,
    advise, followed as written."""
    from errors import resume_command
    from predict import run_overrides

    sweep = tmp_path / "sweep"
    proc = run_train("-m", "optimizer.lr=0.01,0.02", "trainer.epochs=3", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    job = sweep / "optimizer.lr=0.02,trainer.epochs=3"  # Hydra's name: a sweep's list
    before = json.loads((job / "metrics.json").read_text())
    (job / "metrics.json").unlink()
    command = resume_command(job, *run_overrides(job))
    assert command.endswith(
        f"train.py optimizer.lr=0.02 trainer.epochs=3 trainer.resume=true \"hydra.run.dir='{job}'\""
    ), command
    again = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads((job / "metrics.json").read_text())["params"] == before["params"]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == [
        "optimizer.lr=0.01,trainer.epochs=3",
        "optimizer.lr=0.02,trainer.epochs=3",
    ]


def test_a_run_stopped_in_its_report_then_resumed_draws_the_plots_of_one_run(tmp_path, monkeypatch):
    """Full batch with validation rows, stopped while the report is written and resumed as
    the stop says: the resumed call logs again the step it resumes at, which the restored
    histories hold (the validation curve's last point was drawn twice, a darker marker)."""
    import training.report
    import training.run
    from errors import Interrupted

    settings = ("data=csv", f"data.path={ROOT / 'data/housing/windsor_house_prices.csv'}")
    settings += ("data.target=price",)
    train_and_evaluate(make_config(*settings), tmp_path / "whole")

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(training.run, "evaluate", ctrl_c)
    with pytest.raises(Interrupted):
        train_and_evaluate(make_config(*settings), tmp_path / "resumed")
    monkeypatch.setattr(training.run, "evaluate", training.report.evaluate)
    train_and_evaluate(make_config(*settings, "trainer.resume=true"), tmp_path / "resumed")
    pngs = sorted(p.name for p in (tmp_path / "whole").glob("*.png"))
    assert "loss_curves.png" in pngs
    for name in pngs:
        drawn = (tmp_path / "resumed" / name).read_bytes()
        assert drawn == (tmp_path / "whole" / name).read_bytes(), name


@pytest.mark.slow
def test_predict_s_resume_advice_works_from_another_directory_with_hydra_s_own_overrides(
    tmp_path,
):
    """A run started in one directory with a relative hydra.run.dir and hydra.job.chdir=true,
    advised from another (predict.py's note for a run that did not finish): the command cds to
    where the run started, names the run's directory from there and keeps hydra.job.chdir
    (without it the relative data.path meant another file and the resume was refused; the
    directory, relative to the wrong place, started a new run)."""
    from errors import resume_command
    from predict import run_overrides

    start = tmp_path / "start"
    start.mkdir()
    shutil.copy(ROOT / "data/housing/windsor_house_prices.csv", start / "houses.csv")
    args = ("data=csv", "data.path=houses.csv", "data.target=price", "trainer.epochs=3")
    args += ("logger.plots=false", "hydra.job.chdir=true", "hydra.run.dir=runs/x")
    first = run_train(*args, cwd=start)
    assert first.returncode == 0, first.stderr
    job = start / "runs" / "x"
    before = json.loads((job / "metrics.json").read_text())
    (job / "metrics.json").unlink()  # as if it had stopped after its last checkpoint
    given = Path(os.path.relpath(job))  # as predict.py is given it, from here
    command = resume_command(given, *run_overrides(given))
    assert command.startswith(f"cd {start} && ") and "hydra.job.chdir=true" in command
    assert command.endswith("trainer.resume=true hydra.run.dir=runs/x"), command
    again = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "starting from scratch" not in again.stdout
    assert json.loads((job / "metrics.json").read_text())["params"] == before["params"]
    assert sorted(p.name for p in start.iterdir()) == ["houses.csv", "runs"]
