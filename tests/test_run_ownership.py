"""Everything in a run directory belongs to one run (issue 12, item 2): a new run refuses a
directory that holds another before writing anything, and predict.py refuses a checkpoint of
another run."""

from __future__ import annotations

import json
import logging
import re
import shutil

import pytest
from conftest import ROOT, concurrently, make_config, read_scalars, run_train
from test_predict import one_error_line, run_predict

from errors import UserError
from training.logs import output_copied_for_the_run_log
from training.run import train_and_evaluate

HOUSING = ROOT / "data" / "housing" / "windsor_house_prices.csv"
# the issue's command, shortened to 50 epochs without a tolerance
ISSUE = ("experiment=housing", "trainer.tol=0", "trainer.epochs=50")


def snapshot(run_dir) -> dict:
    """Every file under ``run_dir``: path -> bytes."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_second_run_into_the_same_directory_is_refused_before_writing(tmp_path):
    first = run_train(*ISSUE, "optimizer.lr=0.001", f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path)
    assert "metrics.json" in before and any(k.startswith("checkpoints/50") for k in before)

    second = run_train(*ISSUE, "optimizer.lr=0.05", f"hydra.run.dir={tmp_path}")
    line = one_error_line(second)
    assert line.startswith(f"error: {tmp_path} already holds a run")
    assert "trainer.resume=true" in line and "another hydra.run.dir" in line
    assert snapshot(tmp_path) == before  # not a byte of the first run changed, nothing added


@pytest.mark.slow
def test_a_directory_left_by_a_run_that_failed_before_training_is_used(tmp_path):
    """Hydra's ``.hydra/`` and ``train.log`` of a run that failed before training (a sweep's
    bad value, a bad file), and the empty ``checkpoints/`` of one stopped while it built, are
    no run."""
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("earlier: true\n")
    (tmp_path / "train.log").write_text("")
    (tmp_path / "checkpoints").mkdir()
    proc = run_train("experiment=housing", "trainer.epochs=3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "metrics.json").is_file()
    assert "earlier" not in (tmp_path / ".hydra" / "config.yaml").read_text()


@pytest.mark.slow
def test_train_and_evaluate_refuses_a_directory_holding_a_run(tmp_path):
    """The same rule where Hydra has already made the directory (a sweep's job, a caller of
    ``train_and_evaluate``), before the run writes anything."""
    cfg = make_config("experiment=housing", "trainer.epochs=2", "logger.plots=false")
    train_and_evaluate(cfg, tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="already holds a run .*trainer.resume=true"):
        train_and_evaluate(cfg, tmp_path)
    assert snapshot(tmp_path) == before
    resumed = make_config("experiment=housing", "trainer.epochs=3", "trainer.resume=true")
    metrics = train_and_evaluate(resumed, tmp_path)  # continuing it is allowed
    assert metrics["epochs"] == 3


@pytest.mark.slow
def test_predict_refuses_a_checkpoint_of_another_run(tmp_path):
    """The issue's second case: runs with different features; the second run's checkpoint
    under the first run's preprocessing.json."""
    a, b = tmp_path / "a", tmp_path / "b"
    drop = "data.drop=[prefer]"
    ran = concurrently(
        lambda: run_train(*ISSUE, "optimizer.lr=0.001", f"hydra.run.dir={a}"),
        lambda: run_train(*ISSUE, "optimizer.lr=0.05", drop, f"hydra.run.dir={b}"),
    )
    assert [proc.returncode for proc in ran] == [0, 0], [proc.stderr for proc in ran]
    shutil.rmtree(a / "checkpoints")
    shutil.copytree(b / "checkpoints", a / "checkpoints")
    line = one_error_line(run_predict(a, HOUSING))
    assert f"{a / 'checkpoints' / '50'}: the checkpoint belongs to another run" in line
    assert "new hydra.run.dir" in line


QUIET = ("logger.plots=false", "trainer.tol=0", "trainer.epochs=20")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("data.log_target=true", "data.log_target: False there, True now"),
        ("optimizer.lr=0.01", "optimizer.lr: "),
        ("data.drop=[garage]", "data.drop: [] there, ['garage'] now"),
    ],
)
def test_a_resume_with_other_data_or_settings_is_refused(tmp_path, change, named):
    base = ("experiment=housing", *QUIET)
    train_and_evaluate(make_config(*base), tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=re.escape(named)) as err:
        train_and_evaluate(make_config(*base, change, "trainer.resume=true"), tmp_path)
    assert "holds a run of other settings" in str(err.value)
    assert snapshot(tmp_path) == before  # nothing of the run was touched
    # its own settings (and more epochs, another log period) resume it
    train_and_evaluate(
        make_config(*base[:-1], "trainer.epochs=30", "trainer.resume=true"), tmp_path
    )


@pytest.mark.slow
def test_a_resume_that_finds_no_checkpoint_drops_the_earlier_attempts_points(tmp_path):
    from tensorboardX import SummaryWriter

    stale = SummaryWriter(str(tmp_path))  # an attempt stopped by a second Ctrl-C: no checkpoint
    for step in range(500):
        stale.add_scalar("train/loss", 123.0, step)
    stale.close()
    metrics = train_and_evaluate(
        make_config("experiment=housing", *QUIET, "trainer.resume=true"), tmp_path
    )
    steps = [s for s, _ in read_scalars(tmp_path)["train/loss"]]
    assert steps == list(range(metrics["steps"]))  # each step once, none of the stale ones
    assert 123.0 not in {v for _, v in read_scalars(tmp_path)["train/loss"]}


@pytest.mark.slow
def test_a_refused_resume_writes_nothing_not_even_hydras_record(tmp_path):
    first = run_train("experiment=housing", *QUIET, f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr
    before = snapshot(tmp_path)
    other = run_train(
        "experiment=housing", *QUIET, "seed=3", "trainer.resume=true", f"hydra.run.dir={tmp_path}"
    )
    line = one_error_line(other)
    assert "holds a run of other settings (seed: 0 there, 3 now)" in line
    assert snapshot(tmp_path) == before  # .hydra/config.yaml and overrides.yaml included


@pytest.mark.parametrize(
    ("mode", "key"), [("MULTIRUN", "hydra.sweep.dir"), ("RUN", "hydra.run.dir")]
)
def test_the_advice_names_the_directory_key_of_the_mode(tmp_path, mode, key):
    """A sweep rerun into the same ``hydra.sweep.dir``: each run's directory is chosen by that
    key, which the line names (``hydra.run.dir`` does nothing in a multirun)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from training.cli import CONF_DIR, refuse_another_run

    (tmp_path / "metrics.json").write_text("{}")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        HydraConfig.instance().set_config(
            compose("config", overrides=[f"hydra.mode={mode}"], return_hydra_config=True)
        )
    try:
        with pytest.raises(UserError) as err:
            refuse_another_run(tmp_path)
    finally:
        HydraConfig.instance().cfg = None
    assert str(err.value) == (
        f"{tmp_path} already holds a run (metrics.json); continue it with trainer.resume=true "
        f"or choose another {key}"
    )


@pytest.mark.parametrize("named", ["{dir}/${{seed}}", "~/${{data.name}}"])
def test_a_run_directory_named_through_the_config_is_checked_before_hydra_writes(
    tmp_path, monkeypatch, capsys, named
):
    # Hydra resolves hydra.run.dir (an interpolation, Hydra's ${now:...}); `~` is the home
    # directory. A refused run wrote its .hydra/ over the earlier run's record before
    from training.cli import check_overrides

    monkeypatch.setenv("HOME", str(tmp_path))
    held = tmp_path / ("0" if "seed" in named else "toy")
    (held / ".hydra").mkdir(parents=True)
    (held / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.01\n")
    (held / "metrics.json").write_text("{}")
    before = snapshot(held)
    with pytest.raises(SystemExit) as exit_:
        check_overrides([f"hydra.run.dir={named.format(dir=tmp_path)}", "optimizer.lr=0.5"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {held} already holds a run (metrics.json)")
    assert snapshot(held) == before


def test_a_run_directory_with_a_backslash_is_refused_before_anything_is_written(tmp_path, capsys):
    # orbax's array writer took the backslash for a separator: the checkpoint's arrays went to
    # another directory, and a resume found no readable checkpoint and started over
    from test_config import refusal

    named = tmp_path / "data.target=Sale\\ Price"  # a sweep's run named after its override
    advice = (
        f"the run directory {named} has a backslash in its name, which orbax's checkpoints "
        "cannot hold (they could not be read back); choose a hydra.run.dir without one (a "
        "sweep names its runs after their overrides, a space as '\\ ', a list with its "
        "brackets: number them with 'hydra.sweep.subdir=${hydra.job.num}')"
    )
    assert refusal(capsys, [f"hydra.run.dir='{named}'"]) == f"error: {advice}\n"
    with pytest.raises(UserError) as exc:  # a sweep's run: the sweep goes on
        train_and_evaluate(make_config(), named)
    assert str(exc.value) == advice
    assert not any(tmp_path.iterdir())


def test_a_run_directory_with_a_bracket_is_refused_before_anything_is_written(tmp_path, capsys):
    # orbax globs the directory for the arrays' files to merge, and '[1]' is a pattern there:
    # the run ended with exit 0, its checkpoints unreadable, predict.py failed, and a resume
    # (as its error advised) started over every time (helper-65)
    from test_config import refusal

    named = tmp_path / "data.drop=[id]"  # a sweep's run named after a list override
    advice = (
        f"the run directory {named} has a '[' in its name, which orbax's checkpoints cannot "
        "hold (they could not be read back); choose a hydra.run.dir without one (a sweep names "
        "its runs after their overrides, a space as '\\ ', a list with its brackets: number "
        "them with 'hydra.sweep.subdir=${hydra.job.num}')"
    )
    assert refusal(capsys, [f"hydra.run.dir='{named}'"]) == f"error: {advice}\n"
    with pytest.raises(UserError) as exc:
        train_and_evaluate(make_config(), named)
    assert str(exc.value) == advice
    assert not any(tmp_path.iterdir())


def test_a_run_directory_another_run_is_writing_is_refused(tmp_path):
    # two runs started at once into one directory (two runs started in the same second share
    # the default outputs/<date>/<time>) both passed the check before either wrote, and broke
    # each other's checkpoints: a run holds its directory's lock while it runs
    import fcntl
    import os

    from test_predict import one_error_line

    tmp_path.mkdir(exist_ok=True)
    lock = os.open(tmp_path / ".run.lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the other run holds it
        line = one_error_line(run_train("logger.plots=false", f"hydra.run.dir={tmp_path}"))
    finally:
        os.close(lock)
    assert line == (
        f"error: {tmp_path} is in use by another run, which has not ended; wait for it, or "
        "choose another hydra.run.dir"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock"]  # nothing written


@pytest.mark.slow
def test_a_run_still_training_is_named_so_not_advised_to_be_resumed(tmp_path):
    # a run training in the directory has written its files: a second run was told the
    # directory "already holds a run; continue it with trainer.resume=true", and predict.py
    # that it "did not finish (continue it with ...)": each refused while the run holds it
    import fcntl
    import os

    from training.cli import refuse_another_run

    done = run_train("logger.plots=false", f"hydra.run.dir={tmp_path / 'done'}")
    assert done.returncode == 0, done.stderr
    run = tmp_path / "run"  # as a run has left it while it compiles its first call
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "done" / "preprocessing.json", run)
    (tmp_path / "rows.csv").write_text("x\n1\n")
    lock = os.open(run / ".run.lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running run holds it
        with pytest.raises(UserError) as refused:
            refuse_another_run(run)
        predicted = one_error_line(run_predict(run, tmp_path / "rows.csv"))
    finally:
        os.close(lock)
    assert str(refused.value) == (
        f"{run} is in use by another run, which has not ended; wait for it, or choose "
        "another hydra.run.dir"
    )
    assert predicted == (
        f"error: {run}: no checkpoint; the run did not finish (it is still training; wait "
        "for it to end)"
    )
    # once it has ended (the lock released), the advice is to resume it
    with pytest.raises(UserError, match="already holds a run .*; continue it with trainer.resume"):
        refuse_another_run(run)


@pytest.mark.slow
def test_a_resume_on_a_file_that_changed_names_what_changed(tmp_path):
    # it said "(the data's encoding: 'its own' there, 'another' now)"
    import pandas as pd

    houses = pd.read_csv(HOUSING)
    path = tmp_path / "houses.csv"
    houses.to_csv(path, index=False)
    args = ("data=csv", f"data.path={path}", "data.target=price", "optimizer.lr=0.1", *QUIET)
    train_and_evaluate(make_config(*args), tmp_path / "run")
    houses.loc[4, "driveway"] = "maybe"  # a yes/no column with a third answer: one-hot
    houses.to_csv(path, index=False)
    log = tmp_path / "run" / "train.log"  # as train.py runs it: its printout copied there
    log.write_text("the run's printout\n")
    handler = logging.FileHandler(log)
    logging.getLogger().addHandler(handler)
    try:
        with output_copied_for_the_run_log(), pytest.raises(UserError) as exc:
            train_and_evaluate(make_config(*args, "trainer.resume=true"), tmp_path / "run")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert log.read_text() == "the run's printout\n"  # the refused resume's lines are not its
    assert str(exc.value) == (
        f"{tmp_path / 'run'} holds a run of other data (its encoding.columns['driveway'].kind: "
        "'boolean' there, 'onehot' now: the file changed?); resume it with the file it trained "
        "on, or start a new run in another hydra.run.dir"
    )


def trained_on_a_copy(tmp_path, houses, *args: str):
    """Train 3 epochs on ``houses`` (a DataFrame) written to ``tmp_path/houses.csv`` into
    ``tmp_path/run``; the file's path, the config of a resume to 6 epochs and the indices of
    each split's rows."""
    from data.preprocess import prepare_table
    from data.sources import load_table

    path = tmp_path / "houses.csv"
    houses.to_csv(path, index=False)
    args = ("data=csv", f"data.path={path}", "data.target=price", *QUIET, *args)
    train_and_evaluate(make_config(*args, "trainer.epochs=3"), tmp_path / "run")
    cfg = make_config(*args, "trainer.epochs=6", "trainer.resume=true")
    rows = prepare_table(load_table(cfg.data, seed=cfg.seed), cfg.data, cfg.seed).rows
    return path, cfg, rows


def resume_refusal(cfg, tmp_path) -> str:
    """The one line a resume of ``tmp_path/run`` with ``cfg`` is refused with."""
    with pytest.raises(UserError) as exc:
        train_and_evaluate(cfg, tmp_path / "run")
    return str(exc.value)


@pytest.mark.parametrize("change", ["a validation row", "two training rows swapped"])
def test_a_resume_on_a_file_whose_rows_changed_is_refused(tmp_path, change):
    # the training rows' statistics alone were compared: a validation row's new price went
    # into the resumed run's metrics without a word (helper-44), and two training rows' prices
    # swapped (the same statistics) were trained on as the same run (helper-50)
    import pandas as pd

    houses = pd.read_csv(HOUSING)
    path, cfg, rows = trained_on_a_copy(tmp_path, houses)
    if change == "a validation row":
        houses.loc[rows["val"][0], "price"] += 1000
    else:
        a, b = rows["train"][:2]
        houses.loc[[a, b], "price"] = houses.loc[[b, a], "price"].to_numpy()
    houses.to_csv(path, index=False)
    line = resume_refusal(cfg, tmp_path)
    assert line.startswith(
        f"{tmp_path / 'run'} holds a run of other data (its rows, of the same columns and "
        "statistics (their SHA-256): '"
    )
    assert line.endswith(
        "now: the file changed?); resume it with the file it trained on, or start a new run "
        "in another hydra.run.dir"
    )


def test_a_resume_on_the_same_rows_written_another_way_continues(tmp_path):
    # a ';' file with decimal commas, a title line and pandas' index column, of the same rows:
    # "holds a run of other data (its encoding.decimal: '.' there, ',' now ...)" (helper-49)
    import pandas as pd

    houses = pd.read_csv(HOUSING)
    houses["lot_acres"] = houses["lotsize"] / 43560
    path, cfg, _ = trained_on_a_copy(tmp_path, houses)
    text = houses.to_csv(sep=";", decimal=",")  # the index too: a nameless first column
    path.write_text("Windsor house sales, 1987\n" + text)
    assert train_and_evaluate(cfg, tmp_path / "run")["steps"] == 6


def test_a_resume_on_a_changed_training_row_names_its_column(tmp_path):
    # "its scaling.x_max[6]: -122.20050048828125 there, ..." (helper-49)
    import pandas as pd

    houses = pd.read_csv(HOUSING)
    path, cfg, rows = trained_on_a_copy(tmp_path, houses, "optimizer.lr=0.1")
    houses.loc[rows["train"][0], "lotsize"] = 99999
    houses.to_csv(path, index=False)
    assert resume_refusal(cfg, tmp_path).startswith(
        f"{tmp_path / 'run'} holds a run of other data (its training rows' greatest value of "
        "'lotsize': 16200.0 there, 99999.0 now: the file changed?)"
    )


def test_a_resume_on_the_same_columns_in_another_order_says_so(tmp_path):
    # "its encoding.columns[0].kind: 'date' there, 'numeric' now" (helper-50): the weights
    # follow the columns' order, so it is another run, said in words
    import pandas as pd

    houses = pd.read_csv(HOUSING)
    path, cfg, _ = trained_on_a_copy(tmp_path, houses, "optimizer.lr=0.1")
    names = [c for c in houses.columns if c != "price"]
    houses[["price", names[1], names[0], *names[2:]]].to_csv(path, index=False)  # target moved
    assert resume_refusal(cfg, tmp_path) == (
        f"{tmp_path / 'run'} holds a run of the same columns in another order "
        f"({', '.join(names)} there, {', '.join([names[1], names[0], *names[2:]])} now: the "
        "model's weights follow it); resume it with the columns in the order it trained on, or "
        "start a new run in another hydra.run.dir"
    )


def test_a_run_saved_without_its_rows_digest_resumes():
    from data.preprocess import ROWS_DIGEST
    from training.cli import refuse_another_runs_meta

    old = {"config": {}, "preprocessing": {"target": "price"}}
    mine = {"target": "price", ROWS_DIGEST: "00ff"}
    refuse_another_runs_meta(ROOT, old, {}, mine)  # nothing to compare it with
    changed = {"config": {}, "preprocessing": {**mine, ROWS_DIGEST: "ff00"}}
    with pytest.raises(UserError, match=r"statistics \(their SHA-256\): 'ff00' there, '00ff' now"):
        refuse_another_runs_meta(ROOT, changed, {}, mine)


def test_a_resume_on_the_same_file_moved_continues(tmp_path):
    # the same bytes under another name: 'holds a run of other data (its source: ... there,
    # ... now: the file changed?)', and the run could not be continued (helper-45)
    import pandas as pd

    houses = pd.read_csv(HOUSING)
    path, moved = tmp_path / "houses.csv", tmp_path / "moved" / "sales 1987.csv"
    houses.to_csv(path, index=False)
    args = ("data=csv", "data.target=price", "optimizer.lr=0.1", "logger.plots=false")
    train_and_evaluate(make_config(*args, f"data.path={path}", "trainer.epochs=3"), tmp_path / "r")
    moved.parent.mkdir()
    path.rename(moved)
    cfg = make_config(*args, f"data.path={moved}", "trainer.epochs=6", "trainer.resume=true")
    metrics = train_and_evaluate(cfg, tmp_path / "r")
    assert metrics["steps"] == 6
    saved = json.loads((tmp_path / "r" / "preprocessing.json").read_text())
    assert saved["source"] == str(moved)


@pytest.mark.slow
def test_a_resume_on_a_file_that_changed_is_refused_before_hydra_writes(tmp_path):
    # refused by the run itself, after Hydra had rewritten the run's .hydra/ (and train.py's
    # config record) for the resume it refused
    import pandas as pd

    houses = pd.read_csv(HOUSING)
    path = tmp_path / "houses.csv"
    houses.to_csv(path, index=False)
    args = ("data=csv", f"data.path={path}", "data.target=price", "trainer.epochs=3",
            "logger.plots=false", f"hydra.run.dir={tmp_path / 'run'}")  # fmt: skip
    assert run_train(*args).returncode == 0
    before = snapshot(tmp_path / "run")
    houses.loc[4, "driveway"] = "maybe"
    houses.to_csv(path, index=False)
    resumed = run_train(*args, "trainer.resume=true")
    assert resumed.returncode == 2 and not resumed.stdout.strip(), resumed.stdout
    assert one_error_line(resumed) == (
        f"error: {tmp_path / 'run'} holds a run of other data (its encoding.columns"
        "['driveway'].kind: 'boolean' there, 'onehot' now: the file changed?); resume it with "
        "the file it trained on, or start a new run in another hydra.run.dir"
    )
    assert snapshot(tmp_path / "run") == before


@pytest.mark.parametrize("schedule", ["cosine", "warmup_cosine", "constant"])
def test_a_resume_may_not_stretch_a_schedule_laid_over_the_runs_epochs(tmp_path, schedule):
    # a finished 3000-epoch cosine run resumed with 3500: the step size jumped from 3e-11
    # back to 5e-05 and the fit ended further from least squares, without a word
    from training.cli import refuse_another_runs_meta

    def config(epochs):
        return {"optimizer": {"schedule": schedule}, "trainer": {"epochs": epochs}}

    meta = {"config": config(3000)}
    refuse_another_runs_meta(tmp_path, meta, config(3000), None)  # the same: resumed
    if schedule == "constant":  # nothing laid over the epochs: more of them may follow
        refuse_another_runs_meta(tmp_path, meta, config(3500), None)
        return
    with pytest.raises(UserError) as err:
        refuse_another_runs_meta(tmp_path, meta, config(3500), None)
    assert str(err.value) == (
        f"{tmp_path} holds a run whose optimizer.schedule={schedule} is laid over its "
        "trainer.epochs=3000: with trainer.epochs=3500 every step size from its checkpoint on "
        "would change; resume it with trainer.epochs=3000, or train 3500 epochs in a new run "
        "in another hydra.run.dir"
    )


@pytest.mark.slow
def test_a_sweep_run_again_into_its_directory_is_refused_before_hydra_writes(tmp_path):
    # Hydra wrote every run's .hydra/ before the run could refuse it (the earlier runs'
    # configs rewritten), then each run failed, saying the directory was "in use by another
    # run" (its own lock); now one line first, and its advice, followed, continues the runs
    sweep = ["-m", "trainer.epochs=2,3", "logger.plots=false", f"hydra.sweep.dir={tmp_path}"]
    assert run_train(*sweep).returncode == 0
    runs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    before = {name: snapshot(tmp_path / name) for name in runs}
    again = run_train(*sweep)
    first = tmp_path / "logger.plots=False,trainer.epochs=2"
    assert again.returncode == 2 and not again.stdout.strip(), again.stdout
    assert one_error_line(again) == (
        f"error: {first} already holds a run (checkpoints, "
        f"{next(first.glob('events.out.tfevents.*')).name}, metrics.json, ...); continue it "
        "with trainer.resume=true or choose another hydra.sweep.dir"
    )
    assert {name: snapshot(tmp_path / name) for name in runs} == before
    resumed = run_train(*sweep, "trainer.resume=true")  # the same runs, not new directories
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("resuming from") == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == runs
    # new values into the same sweep directory are other runs: they run
    assert run_train(*sweep[:1], "trainer.epochs=4", *sweep[2:]).returncode == 0


@pytest.mark.slow
def test_a_sweep_naming_its_optimizer_is_continued_as_its_advice_says(tmp_path):
    # optimizer.name=adam on the sgd group: the sweep's check compared the run's family
    # ('adaptive', from adam.yaml) with the group's ('gradient_descent'), so the same sweep
    # run again was "a run of other settings" and could never be continued
    sweep = ["-m", "optimizer.name=adam", "trainer.epochs=2", f"hydra.sweep.dir={tmp_path}"]
    assert run_train(*sweep, "logger.plots=false").returncode == 0
    [run] = [p for p in tmp_path.iterdir() if p.is_dir()]
    again = run_train(*sweep, "logger.plots=false")
    assert again.returncode == 2
    assert one_error_line(again).startswith(f"error: {run} already holds a run (")
    resumed = run_train(*sweep, "logger.plots=false", "trainer.resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("resuming from") == 1


@pytest.mark.slow
def test_a_sweep_into_runs_of_other_settings_or_sharing_a_directory_is_refused(tmp_path):
    # numbered runs with new values: resumed as the advice said, each run was refused only
    # after Hydra had written the new settings into the earlier run's .hydra/
    numbered = [
        "logger.plots=false",
        f"hydra.sweep.dir={tmp_path}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]  # noqa: E501
    assert run_train("-m", "trainer.epochs=2", "seed=0,1", *numbered).returncode == 0
    before = snapshot(tmp_path)
    for extra in ([], ["trainer.resume=true"]):
        again = run_train("-m", "trainer.epochs=2", "seed=2,3", *numbered, *extra)
        assert again.returncode == 2 and not again.stdout.strip(), again.stdout
        assert one_error_line(again) == (
            f"error: {tmp_path / '0'} holds a run of other settings (seed: 0 there, 2 now); "
            "resume it with its own settings, or start a new run in another hydra.sweep.dir"
        )
        assert snapshot(tmp_path) == before
    # one directory for every run: the second would have found the first's
    same = tmp_path / "same"
    shared = run_train("-m", "seed=0,1", f"hydra.sweep.dir={same}", "hydra.sweep.subdir=run")
    assert shared.returncode == 2 and not same.exists()
    assert one_error_line(shared) == (
        f"error: bad override: the sweep's runs with seed=0 and with seed=1 would both write into "
        f"{same / 'run'}; give each run a directory of its own with hydra.sweep.subdir (the "
        "default names it after the run's overrides)"
    )


@pytest.mark.slow
def test_a_search_run_again_into_its_directory_is_refused_before_hydra_writes(tmp_path):
    # each trial failed in turn and the study wrote best_value: .inf over the first search's
    search = [
        "-m", "hparams_search=optuna", "experiment=housing_minibatch", "hydra.sweeper.n_trials=2",
        "trainer.epochs=2", "logger.plots=false", f"hydra.sweep.dir={tmp_path}",
    ]  # fmt: skip
    assert run_train(*search).returncode == 0
    before = snapshot(tmp_path)
    again = run_train(*search)
    assert again.returncode == 2
    assert one_error_line(again).startswith(f"error: {tmp_path / '0'} already holds a run (")
    assert snapshot(tmp_path) == before  # optimization_results.yaml included
    # resumed with another sampler seed: each trial drew other values and was refused, and
    # Optuna wrote a failed trial as the best, value inf, over the first search's (helper-45)
    results = (tmp_path / "optimization_results.yaml").read_bytes()
    other = run_train(*search, "trainer.resume=true", "hydra.sweeper.sampler.seed=7")
    assert other.returncode == 1, other.stderr
    assert other.stderr.rstrip().endswith(
        f"(each run's own error is above); {tmp_path / 'optimization_results.yaml'} is left as "
        "the earlier search wrote it"
    )
    assert (tmp_path / "optimization_results.yaml").read_bytes() == results


def test_a_directory_this_process_holds_is_not_in_use_by_another_run(tmp_path):
    # the lock this process took made its own run look like another, still running
    from training.cli import HELD, hold_the_run_directory

    cfg = make_config("trainer.epochs=2", "logger.plots=false")
    train_and_evaluate(cfg, tmp_path)
    with pytest.raises(UserError, match="already holds a run"):
        hold_the_run_directory(tmp_path, cfg)
    assert tmp_path.resolve() not in HELD  # released with the refusal
    with pytest.raises(UserError, match="already holds a run"):
        hold_the_run_directory(tmp_path, cfg)


def test_a_sweep_s_run_into_a_directory_another_run_is_writing_fails_alone(tmp_path):
    # two sweeps started in the same second share multirun/<date>/<time>: one died with
    # orbax's traceback
    import fcntl
    import os

    job = tmp_path / "job"
    job.mkdir()
    lock = os.open(job / ".run.lock", os.O_CREAT | os.O_RDWR)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the other sweep's run holds it
        proc = run_train(
            "-m", "logger.plots=false", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=job"
        )
    finally:
        os.close(lock)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: this run failed: {job} is in use by another run, which has not ended; wait for "
        "it, or choose another hydra.sweep.dir",
        f"error: 1 of 1 runs failed: {job} (each run's own error is above)",
    ]
    assert not (job / "checkpoints").exists()
