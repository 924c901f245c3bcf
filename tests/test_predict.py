"""predict.py as a user runs it: predictions that agree with least squares, and one line for
every mismatch between the new rows and the run (issue 12, item 4)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, concurrently, run_script, run_train

pytestmark = pytest.mark.slow

# the issue's eight sales: a run on sqft, bedrooms and age
HOUSES = pd.DataFrame(
    {
        "sqft": [1400, 1600, 1700, 1875, 1100, 1550, 2350, 2450],
        "bedrooms": [3, 3, 4, 4, 2, 3, 4, 5],
        "age": [20, 15, 30, 8, 40, 22, 5, 12],
        "price": [245000, 312000, 279000, 308000, 199000, 219000, 405000, 324000],
    }
)
FEATURES = ["sqft", "bedrooms", "age"]


def run_predict(*args, fresh: bool = False):
    """``python predict.py ARGS`` in a process of its own, as a user would (killed, with
    anything it started, after 300 s); ``fresh``: a fresh ``python``, not forked with its
    libraries imported (conftest.run_script)."""
    return run_script("predict.py", *args, fresh=fresh)


def one_error_line(proc) -> str:
    """The single ``error: ...`` line of a failed command (asserts there is nothing else)."""
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def train_on(houses: pd.DataFrame, tmp: Path, *overrides: str) -> Path:
    """The run directory of a finished run on ``houses`` (every row trains), in ``tmp``."""
    houses.to_csv(tmp / "houses.csv", index=False)
    run_dir = tmp / "run"
    proc = run_train(
        "experiment=housing",
        f"data.path={tmp / 'houses.csv'}",
        "data.target=price",
        "data.val_fraction=0",
        "data.test_fraction=0",
        *overrides,
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr
    return run_dir


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished run on the eight sales (every row trains, converged to tol 1e-6)."""
    return train_on(HOUSES, tmp_path_factory.mktemp("predict"))


def least_squares_prices(rows: pd.DataFrame) -> np.ndarray:
    """The reference: numpy's least squares on the eight sales, applied to ``rows``."""
    A = np.column_stack([HOUSES[FEATURES].to_numpy(float), np.ones(len(HOUSES))])
    beta = np.linalg.lstsq(A, HOUSES["price"].to_numpy(float), rcond=None)[0]
    return rows[FEATURES].to_numpy(float) @ beta[:-1] + beta[-1]


def test_extra_reordered_and_target_columns_keep_working(run, tmp_path):
    new = pd.DataFrame({"note": ["a", "b"], "age": [10, 25], "price": [1, 2], "bedrooms": [3, 4]})
    new["sqft"] = [1500, 2000]  # columns in another order, an extra one, the target present
    new.to_csv(tmp_path / "new.csv", index=False)
    # a fresh python, as every user's: its own imports, and the interpreter's teardown
    proc = run_predict(run, tmp_path / "new.csv", "-o", tmp_path / "out.csv", fresh=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"wrote 2 predictions to {tmp_path / 'out.csv'}\n"
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == [*new.columns, "predicted_price"]
    # gradient descent stopped at a gradient norm of 1e-6 on standardised columns
    np.testing.assert_allclose(out["predicted_price"], least_squares_prices(new), rtol=1e-4)


def test_the_output_lines_up_row_for_row_with_the_file(run, tmp_path):
    # a blank line and a spreadsheet's empty row (',,,') were left out of the output, so its
    # predictions no longer lined up with the file's rows (helper-54); a DOS end-of-file mark
    # turned the column it ended in to floats ('1500.0'); a line of a tab was written as a
    # cell, and a cell's CR line break unquoted, which split its row in two (helper-56)
    lines = ["sqft,bedrooms,age,note", '1500,3,10,"a\rb"', "", ",,,", " \t", "2000,4,25,x"]
    (tmp_path / "new.csv").write_text("\n".join([*lines, "1800,3,30,y", "", ""]) + "\x1a")
    proc = run_predict(run, tmp_path / "new.csv", "-o", tmp_path / "out.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"note: {tmp_path / 'new.csv'}: 3 row(s) with every cell empty (row 2, 3, 4 under the "
        "header) are kept without a prediction, so the output's rows line up with the file's",
        f"wrote 3 predictions to {tmp_path / 'out.csv'}",
    ]
    out = pd.read_csv(tmp_path / "out.csv", skip_blank_lines=False, dtype={"note": str})
    assert out["sqft"].tolist()[:1] + out["sqft"].tolist()[4:] == [1500, 2000, 1800]
    assert out.iloc[1:4].isna().all(axis=None)  # the three empty rows, in their places
    assert out["note"].tolist()[0] == "a\rb"  # one cell, as written
    rows = out.iloc[[0, 4, 5]][FEATURES].astype(int)
    np.testing.assert_allclose(
        out["predicted_price"].iloc[[0, 4, 5]], least_squares_prices(rows), rtol=1e-4
    )


def test_the_issues_missing_column_is_one_line(run, tmp_path):
    (tmp_path / "new.csv").write_text("sqft,bedrooms\n1500,3\n")
    line = one_error_line(run_predict(run, tmp_path / "new.csv", fresh=True))
    assert "no column 'age'" in line and str(run) in line
    assert "sqft, bedrooms, age" in line  # what the run takes


def test_values_far_outside_the_training_rows_are_warned(run, tmp_path):
    # a ',' file's '1.5' for the 1,500 square feet a ';' file wrote '1.500': priced, silently,
    # as a house of 1.5 square feet (helper-44)
    (tmp_path / "new.csv").write_text("sqft,bedrooms,age\n1.5,3,20\n1500,3,20\n")
    proc = run_predict(run, tmp_path / "new.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"warning: {tmp_path / 'new.csv'}: column 'sqft': 1 of 2 rows hold values (1.5 to 1.5) "
        "far outside the training rows' 1100 to 2450; the model extrapolates there (if the "
        "column is written in other units or with another decimal mark than the training file, "
        "write it as that file did)"
    ]


def test_every_missing_column_is_listed(run, tmp_path):
    (tmp_path / "new.csv").write_text("bedrooms,note\n3,x\n")
    line = one_error_line(run_predict(run, tmp_path / "new.csv"))
    assert "no columns 'sqft', 'age'" in line and str(run) in line


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such file"),
        ("dir", "a directory, not a file; give a CSV of rows"),
        (b"", "the file is empty"),
        (b"sqft,bedrooms,age\n", "no data rows"),
        (b"sqft,bedrooms,age\n1500,3,\xff\xfe\n", "not UTF-8"),
        # predict.py takes no data.* setting: the advice is to write the cell (helper-49: it
        # advised data.decimal, which predict.py refuses, and data.drop)
        (
            b"sqft,bedrooms,age\n1500,3,old\n",
            "column 'age' row 1: 'old' is not a number; write a number there (the run was "
            "trained on numbers in this column) (the run in",
        ),
        (
            b'sqft,bedrooms,age\n"1500,5",3,20\n',
            "column 'sqft' row 1: '1500,5' is not a number; this file's numbers are read with "
            "'.' as the decimal mark and ',' between thousands: write the cell so (the run in",
        ),
        (b"sqft,bedrooms,age\n1500,,20\n", "column 'bedrooms' row 1 is empty"),
    ],
    ids=["missing", "directory", "empty", "header-only", "not-utf8", "wrong-type", "mark", "gap"],
)
def test_a_bad_file_is_one_line_naming_the_run(run, tmp_path, content, needle):
    path = tmp_path / "new.csv"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    line = one_error_line(run_predict(run, path))
    assert needle in line and str(path) in line and str(run) in line, line


def test_a_directory_that_is_not_a_run(tmp_path):
    line = one_error_line(run_predict(tmp_path, ROOT / "data" / "housing" / "nothing.csv"))
    assert f"{tmp_path}: not a finished run" in line


@pytest.mark.slow
def test_an_empty_cell_of_a_column_the_run_filled_is_filled_the_same_way(run, tmp_path):
    # a run under data.missing=mean filled its empty cells with the training rows' mean; new
    # rows with an empty cell were refused ("prediction needs every feature") with no advice
    houses = HOUSES.astype({"age": float})
    houses.loc[2, "age"] = np.nan
    run_dir = train_on(houses, tmp_path, "data.missing=mean")
    mean_age = float(HOUSES["age"].drop(index=2).mean())  # the training rows', SimpleImputer's
    (tmp_path / "rows.csv").write_text("sqft,bedrooms,age\n1500,3,\n1500,3,20\n")
    done = run_predict(run_dir, tmp_path / "rows.csv")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        f"warning: {tmp_path / 'rows.csv'}: 1 empty cell in column 'age' filled with "
        f"{mean_age:.6g}, the training rows' mean, as the run filled its own (data.missing=mean)"
    )
    filled = pd.read_csv(io.StringIO(done.stdout))["predicted_price"]
    (tmp_path / "same.csv").write_text(f"sqft,bedrooms,age\n1500,3,{mean_age!r}\n")
    same = pd.read_csv(io.StringIO(run_predict(run_dir, tmp_path / "same.csv").stdout))
    np.testing.assert_allclose(filled[0], same["predicted_price"][0], rtol=1e-6)
    # a column with no empty cell in the training file is filled too, as the run's val/test
    # rows would have been (it was refused: "the run filled none of these")
    (tmp_path / "gap.csv").write_text("sqft,bedrooms,age\n1500,,20\n")
    gap = run_predict(run_dir, tmp_path / "gap.csv")
    assert gap.returncode == 0, gap.stderr
    mean_bedrooms = float(HOUSES["bedrooms"].mean())
    assert f"column 'bedrooms' filled with {mean_bedrooms:.6g}, the training rows' mean" in (
        gap.stderr
    )
    (tmp_path / "as_filled.csv").write_text(f"sqft,bedrooms,age\n1500,{mean_bedrooms!r},20\n")
    as_filled = run_predict(run_dir, tmp_path / "as_filled.csv").stdout
    assert gap.stdout.splitlines()[1].split(",")[-1] == as_filled.splitlines()[1].split(",")[-1]
    # a run that filled nothing (data.missing=error) refuses it, with what to do
    line = one_error_line(run_predict(run, tmp_path / "gap.csv"))
    assert (
        "column 'bedrooms' row 1 is empty" in line and "fill the cells, or drop those rows" in line
    )


def test_a_note_below_the_new_rows_is_priced_as_no_house(tmp_path):
    # a run under data.missing=mean filled every feature of 'Notes: asking prices,,,' with the
    # training rows' means and priced the note as a house: "wrote 3 predictions" for 2 (helper-65)
    houses = HOUSES.assign(town=["a", "b"] * 4).astype({"age": float})
    houses.loc[2, "age"] = np.nan
    run_dir = train_on(houses, tmp_path, "data.missing=mean")
    rows = "town,sqft,bedrooms,age\na,1500,3,20\nb,1700,4,NA\nNotes: asking prices,,,\n"
    (tmp_path / "rows.csv").write_text(rows)
    done = run_predict(run_dir, tmp_path / "rows.csv", "-o", tmp_path / "out.csv")
    assert done.returncode == 0, done.stderr
    assert (
        f"note: {tmp_path / 'rows.csv'}: 1 row(s) with no cell in any of the run's columns (row 3 "
        "under the header; a note below the table?) are kept without a prediction"
    ) in done.stderr
    assert done.stderr.strip().endswith(f"wrote 2 predictions to {tmp_path / 'out.csv'}")
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["predicted_price"].isna().tolist() == [False, False, True]
    (tmp_path / "two.csv").write_text(rows.rsplit("Notes", 1)[0])
    two = pd.read_csv(io.StringIO(run_predict(run_dir, tmp_path / "two.csv").stdout))
    np.testing.assert_array_equal(out["predicted_price"][:2], two["predicted_price"])


def test_an_empty_text_cell_is_priced_as_the_runs_own_rows_were(tmp_path):
    # data.missing=mean makes an empty text cell a level of its own; prediction refused it
    # ("the run filled none of these") even where the run had learned that level's coefficient
    hood = ["east", "west", "", "east", "west", "", "east", "west"]
    houses = HOUSES.assign(hood=hood)
    run_dir = train_on(houses, tmp_path, "data.missing=mean", "data.min_level_count=1")
    (tmp_path / "rows.csv").write_text("sqft,bedrooms,age,hood\n1500,3,20,\n1500,3,20,west\n")
    done = run_predict(run_dir, tmp_path / "rows.csv")
    assert done.returncode == 0, done.stderr
    priced = pd.read_csv(io.StringIO(done.stdout))["predicted_price"].to_numpy()
    # least squares on the run's design: the empty cells a level, 'east' the reference
    A = np.column_stack(
        [
            houses[FEATURES].to_numpy(float),
            houses["hood"] == "west",
            houses["hood"] == "",
            np.ones(len(houses)),
        ]
    ).astype(float)
    beta = np.linalg.lstsq(A, houses["price"].to_numpy(float), rcond=None)[0]
    rows = np.array([[1500, 3, 20, 0, 1, 1], [1500, 3, 20, 1, 0, 1]], float)
    np.testing.assert_allclose(priced, rows @ beta, rtol=1e-4)
    # a run whose training rows had no empty cell there counts it as 'other', as its own
    # val/test rows were: here the reference level, with the warning line
    (tmp_path / "full").mkdir()
    full = train_on(houses.assign(hood=np.where(houses["hood"] == "", "east", houses["hood"])),
                    tmp_path / "full", "data.missing=mean", "data.min_level_count=1")  # fmt: skip
    (tmp_path / "east.csv").write_text("sqft,bedrooms,age,hood\n1500,3,20,east\n")
    empty = run_predict(full, tmp_path / "rows.csv")
    assert empty.returncode == 0, empty.stderr
    assert (
        "1 cell(s) in the new rows with a level not seen in the training rows (an empty cell) "
        "counted as 'other', which here is the reference level 'east'" in empty.stderr
    )  # it named the empty cell '(missing)', a level the user never wrote
    east = pd.read_csv(io.StringIO(run_predict(full, tmp_path / "east.csv").stdout))
    first = pd.read_csv(io.StringIO(empty.stdout))["predicted_price"][0]
    assert first == east["predicted_price"][0]


def test_a_checkpoint_given_as_the_run_names_the_run_to_give(run, tmp_path):
    (tmp_path / "rows.csv").write_text("sqft,bedrooms,age\n1500,3,20\n")
    newest = max((run / "checkpoints").iterdir(), key=lambda p: int(p.name))
    for given in (newest, run / "checkpoints"):
        line = one_error_line(run_predict(given, tmp_path / "rows.csv"))
        assert line == (
            f"error: {given}: inside the checkpoints of the run in {run}; give the run "
            f"directory {run} (predict.py reads its newest checkpoint)"
        )
    # followed as written, it predicts
    assert run_predict(run, tmp_path / "rows.csv").returncode == 0


def test_a_run_without_a_checkpoint(run, tmp_path):
    (tmp_path / "rows.csv").write_text("sqft,bedrooms,age\n1500,3,20\n")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "preprocessing.json", bare)
    line = one_error_line(run_predict(bare, tmp_path / "rows.csv"))
    assert f"{bare}: no checkpoint" in line and "trainer.resume=true" in line
    assert not (bare / "checkpoints").exists()  # predicting writes nothing into a run


def test_a_run_that_did_not_finish_predicts_with_a_note(run, tmp_path):
    """A run killed after a checkpoint has no metrics.json (written last): its newest
    checkpoint predicts, and a note says the run did not finish; a finished run's does not."""
    (tmp_path / "rows.csv").write_text("sqft,bedrooms,age\n1500,3,20\n")
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    (cut / "metrics.json").unlink()
    proc = run_predict(cut, tmp_path / "rows.csv", "-o", tmp_path / "out.csv")
    assert proc.returncode == 0, proc.stderr
    step = max(int(p.name) for p in (cut / "checkpoints").iterdir() if p.name.isdigit())
    note = re.fullmatch(
        rf"note: {re.escape(str(cut))} has no metrics.json, so the run did not finish; "
        rf"predicting with its newest checkpoint, step {step} \(continue it with (.*) to "
        r"finish it\)",
        proc.stderr.splitlines()[0],
    )
    assert note, proc.stderr
    # the advice, followed as written, where predict.py ran: the run's own overrides (another
    # file than the walkthrough's), from the directory the run was started in, and the resume
    elsewhere = run_script("predict.py", cut, tmp_path / "rows.csv", cwd=tmp_path)
    command = elsewhere.stderr.splitlines()[0].split("(continue it with ")[1]
    command = command.removesuffix(" to finish it)")
    assert command == f"cd {ROOT} && {note.group(1)}", command
    finished = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert "trainer.resume=true" in note.group(1) and (cut / "metrics.json").is_file()
    (cut / "metrics.json").unlink()
    whole = run_predict(run, tmp_path / "rows.csv", "-o", tmp_path / "whole.csv")
    assert "note:" not in whole.stderr
    np.testing.assert_array_equal(
        pd.read_csv(tmp_path / "out.csv")["predicted_price"],
        pd.read_csv(tmp_path / "whole.csv")["predicted_price"],
    )


def test_a_run_whose_record_is_damaged_or_gone_is_advised_the_resume_that_writes_it(run, tmp_path):
    # "cannot be read (...); train the run again", which is refused (the directory holds a
    # run); and a finished run without its preprocessing.json was "not a finished run"
    (tmp_path / "rows.csv").write_text("sqft,bedrooms,age\n1500,3,20\n")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    # another run's record of the same data (its id alone differs): a resume writes it again
    record = json.loads((copy / "preprocessing.json").read_text())
    (copy / "preprocessing.json").write_text(json.dumps({**record, "run_id": "another"}))
    line = one_error_line(run_predict(copy, tmp_path / "rows.csv"))
    assert "the checkpoint belongs to another run" in line
    assert line.endswith(" to write preprocessing.json again"), line
    (copy / "preprocessing.json").write_text("{bad")
    line = one_error_line(run_predict(copy, tmp_path / "rows.csv"))
    assert line.startswith(f"error: {copy / 'preprocessing.json'}: cannot be read (")
    command = re.fullmatch(r".*; continue it with (.*) to write it again", line)[1]
    (copy / "preprocessing.json").unlink()
    assert one_error_line(run_predict(copy, tmp_path / "rows.csv")) == (
        f"error: {copy}: no preprocessing.json; continue it with {command} to write it again"
    )
    followed = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True)
    assert followed.returncode == 0, followed.stderr
    assert run_predict(copy, tmp_path / "rows.csv").returncode == 0


def test_a_sweep_directory_or_a_diverged_run_is_named_so(tmp_path):
    # a sweep's directory was "not a finished run"; a diverged run was advised a resume,
    # which diverged again (helper-45)
    (tmp_path / "rows.csv").write_text("x\n1\n")
    sweep = tmp_path / "sweep"
    (sweep / "optimizer.lr=0.5").mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    (sweep / "optimizer.lr=0.5" / "preprocessing.json").write_text("{}")
    assert one_error_line(run_predict(sweep, tmp_path / "rows.csv")) == (
        f"error: {sweep}: the directory of a sweep, not of a run; give one of its runs, such as "
        f"{sweep / 'optimizer.lr=0.5'}"
    )
    # a search's (no multirun.yaml), its runs nested by a path in an override (helper-46)
    search = tmp_path / "search" / "data.path=" / "d" / "f.csv,optimizer.lr=0.1"
    search.mkdir(parents=True)
    (search / "preprocessing.json").write_text("{}")
    line = one_error_line(run_predict(tmp_path / "search", tmp_path / "rows.csv"))
    assert line.endswith(f"give one of its runs, such as {search}")
    diverged = tmp_path / "diverged"
    proc = run_train("optimizer.lr=0.5", "logger.plots=false", f"hydra.run.dir={diverged}")
    assert proc.returncode == 3, proc.stderr
    error = proc.stderr.strip().removeprefix("error: ")
    assert one_error_line(run_predict(diverged, tmp_path / "rows.csv")) == (
        f"error: {diverged}: the run diverged, so there is no model to predict with ({error})"
    )


def test_a_checkpoint_of_another_shape(run, tmp_path):
    """Another run's checkpoint (two features) under this run's preprocessing.json, its id
    forged to match: the shapes still tell them apart."""
    HOUSES.drop(columns="age").to_csv(tmp_path / "two.csv", index=False)
    other = tmp_path / "other"
    proc = run_train(
        "experiment=housing",
        f"data.path={tmp_path / 'two.csv'}",
        "data.target=price",
        "data.val_fraction=0",
        "data.test_fraction=0",
        "trainer.epochs=3",
        f"hydra.run.dir={other}",
    )
    assert proc.returncode == 0, proc.stderr
    mixed = tmp_path / "mixed"
    shutil.copytree(run, mixed)
    shutil.rmtree(mixed / "checkpoints")
    shutil.copytree(other / "checkpoints", mixed / "checkpoints")
    (tmp_path / "rows.csv").write_text("sqft,bedrooms,age\n1500,3,20\n")

    line = one_error_line(run_predict(mixed, tmp_path / "rows.csv"))
    assert "belongs to another run" in line and str(mixed) in line

    prep = json.loads((mixed / "preprocessing.json").read_text())
    prep["run_id"] = json.loads((other / "preprocessing.json").read_text())["run_id"]
    (mixed / "preprocessing.json").write_text(json.dumps(prep))
    line = one_error_line(run_predict(mixed, tmp_path / "rows.csv"))
    assert "another shape" in line and "W (3,)" in line and str(mixed) in line


def test_new_rows_may_use_another_separator(run, tmp_path):
    (tmp_path / "comma.csv").write_text('sqft,bedrooms,age\n"1,500.5",3,020\n')
    (tmp_path / "semi.csv").write_text("sqft;bedrooms;age\n1.500,5;3;020\n")
    comma, semi = concurrently(
        *(lambda f=f: run_predict(run, tmp_path / f) for f in ("comma.csv", "semi.csv"))
    )
    assert comma.returncode == 0 and semi.returncode == 0, comma.stderr + semi.stderr
    # the user's cells come back as written, in the file's own separator and decimal mark
    assert comma.stdout.splitlines()[1].startswith('"1,500.5",3,020,')
    assert semi.stdout.splitlines()[1].startswith("1.500,5;3;020;")
    a = float(comma.stdout.splitlines()[1].rsplit(",", 1)[1])
    b = float(semi.stdout.splitlines()[1].rsplit(";", 1)[1].replace(",", "."))
    assert a == b


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("new.csv", "-o {out} is the file of new rows itself; write the predictions elsewhere"),
        (".", "cannot write -o {out}: Is a directory; choose another file"),
        (
            "nowhere/out.csv",
            "cannot write -o {out}: Cannot save file into a non-existent directory: "
            "'{out.parent}'; choose another file",
        ),
    ],
)
def test_an_output_that_cannot_be_written_is_one_line(run, tmp_path, where, line):
    new = tmp_path / "new.csv"
    new.write_text("sqft,bedrooms,age\n1500,3,20\n")
    out = tmp_path / where
    assert one_error_line(run_predict(run, new, "-o", out)) == "error: " + line.format(out=out)
    assert new.read_text() == "sqft,bedrooms,age\n1500,3,20\n"  # the rows are left as they were


def test_a_file_given_as_the_run_is_named_as_one(tmp_path):
    (tmp_path / "run").write_text("")
    line = one_error_line(run_predict(tmp_path / "run", tmp_path / "new.csv"))
    assert line == (
        f"error: {tmp_path / 'run'}: a file, not a directory; give the directory a train.py "
        "run wrote"
    )


def test_an_output_onto_the_rows_through_a_link_or_into_the_run_is_refused(run, tmp_path):
    new = tmp_path / "new.csv"
    new.write_text("sqft,bedrooms,age\n1500,3,20\n")
    os.link(new, tmp_path / "hard.csv")  # the same file under another name
    line = one_error_line(run_predict(run, new, "-o", tmp_path / "hard.csv"))
    assert line == (
        f"error: -o {tmp_path / 'hard.csv'} is the file of new rows itself; write the "
        "predictions elsewhere"
    )
    before = (run / "preprocessing.json").read_bytes()
    line = one_error_line(run_predict(run, new, "-o", run / "preprocessing.json"))
    assert line == (
        f"error: -o {run / 'preprocessing.json'} is inside the run directory {run}, whose files "
        "belong to the run; write the predictions elsewhere"
    )
    assert (run / "preprocessing.json").read_bytes() == before
    assert new.read_text() == "sqft,bedrooms,age\n1500,3,20\n"


@pytest.mark.slow
def test_new_rows_are_read_with_the_marks_the_run_was_given(tmp_path):
    # a run trained with data.decimal=. (the ';' file writes US thousands, 4,327) read the new
    # rows' 4,327 as 4.327 and priced them ten times low; with Excel's sep= line predict.py
    # computed the prices, then failed writing them out (a traceback)
    rng = np.random.default_rng(0)
    area = rng.integers(500, 5000, 60)
    beds = rng.integers(1, 6, 60)
    price = 10 * area + 1000 * beds + rng.normal(0, 50, 60).round()
    rows = "".join(f"{a:,};{b};{p:.0f}\n" for a, b, p in zip(area, beds, price, strict=True))
    path = tmp_path / "us.csv"
    path.write_text("sep=;\narea;beds;price\n" + rows)
    run = tmp_path / "run"
    trained = run_train(
        "experiment=housing",
        f"data.path={path}",
        "data.target=price",
        "data.decimal=.",
        "logger.plots=false",
        f"hydra.run.dir={run}",
    )
    assert trained.returncode == 0, trained.stderr
    out = run_predict(str(run), str(path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "area;beds;price;predicted_price" and len(lines) == 61
    predicted = np.array([float(ln.rsplit(";", 1)[1]) for ln in lines[1:]])
    np.testing.assert_allclose(predicted, price, rtol=0.05)


def test_title_lines_above_new_rows_are_skipped_with_a_note(run, tmp_path):
    # skipped silently: the user could not tell which line was taken as the header
    (tmp_path / "rows.csv").write_text("New listings, December\n\nsqft,bedrooms,age\n1500,3,20\n")
    (tmp_path / "plain.csv").write_text("sqft,bedrooms,age\n1500,3,20\n")
    titled, plain = (run_predict(run, tmp_path / name) for name in ("rows.csv", "plain.csv"))
    assert titled.returncode == 0, titled.stderr
    assert titled.stderr.strip() == (
        f"note: {tmp_path / 'rows.csv'}: skipped 2 line(s) above the header "
        "('New listings, December')"
    )
    last = [out.stdout.splitlines()[-1].split(",")[-1] for out in (titled, plain)]
    assert last[0] == last[1]


def test_new_rows_whose_numbers_decide_no_mark_are_read_with_the_runs(tmp_path):
    # a run on a ',' file given its new rows as a ';' file of '26.648'-like numbers read them
    # with ',' (a ';' file's default): '.' a thousands separator, prices 1000x, silently
    rng = np.random.default_rng(0)
    a = np.round(rng.uniform(10, 99, 30), 3)
    houses = pd.DataFrame({"a": a, "price": np.round(3 * a + 7 + rng.normal(0, 0.1, 30), 3)})
    run_dir = train_on(houses, tmp_path)
    (tmp_path / "plain.csv").write_text("a\n26.648\n")
    (tmp_path / "semi.csv").write_text("a;b\n26.648;1\n")
    plain, semi = (run_predict(run_dir, tmp_path / f) for f in ("plain.csv", "semi.csv"))
    assert semi.returncode == 0, semi.stderr
    price = float(plain.stdout.splitlines()[1].split(",")[-1])
    assert abs(price - (3 * 26.648 + 7)) < 1
    assert semi.stdout.splitlines()[1].split(";")[-1] == plain.stdout.splitlines()[1].split(",")[-1]
    # said, since a ';' file of the other convention means 26648 (helper-42: silent)
    assert semi.stderr.strip() == (
        f"note: {tmp_path / 'semi.csv'}: column 'a': every value with '.' is written like "
        "'26.648', read with '.' as the decimal mark, as the run's own file wrote its numbers; "
        "if '.' separates thousands there, write them without it (26648)"
    )
    assert plain.stderr == ""


def test_new_rows_written_by_r_keep_every_column_in_the_output(run, tmp_path):
    # R's write.table header is one name short: the output dropped the last column's cells
    # under pandas' ParserWarning ("loss of data")
    rows = '"sqft"\t"bedrooms"\t"age"\n"1"\t1500\t3\t20\n"2"\t1600\t3\t15\n'
    (tmp_path / "r.txt").write_text(rows)
    (tmp_path / "plain.csv").write_text("sqft,bedrooms,age\n1500,3,20\n1600,3,15\n")
    r, plain = (run_predict(run, tmp_path / f) for f in ("r.txt", "plain.csv"))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Unnamed: 0\tsqft\tbedrooms\tage\tpredicted_price"
    assert lines[1].split("\t")[:4] == ["1", "1500", "3", "20"]
    priced = [ln.split(",")[-1] for ln in plain.stdout.splitlines()[1:]]
    assert [ln.split("\t")[-1] for ln in lines[1:]] == priced


def test_a_new_rows_value_without_a_logarithm_is_advised_a_value_not_a_setting():
    # predict.py said "remove 'lot' from data.log_features", which retrains (helper-49)
    import pandas as pd

    from data.csv_source import ColumnCode, Encoding
    from errors import UserError

    encoding = Encoding("price", [ColumnCode("lot", "numeric", log=True)])
    rows = pd.DataFrame({"lot": ["0.25", "0"]})
    with pytest.raises(UserError) as exc:
        encoding.transform(rows, "new.csv", missing="predict")
    assert str(exc.value) == (
        "new.csv: column 'lot' row 2: 0 has no logarithm; the run trained on the logarithm of "
        "'lot' (data.log_features): give it a value above 0"
    )
    with pytest.raises(UserError, match="remove 'lot' from data.log_features"):
        encoding.transform(rows, "train.csv")  # a run's own rows: its setting


def test_rows_past_float32_are_refused_never_priced_infinite(tmp_path):
    # helper-53: 3e38 in a column whose training rows spread by 0.006 scaled past float32, and
    # predict.py wrote prices of inf and -inf after a numpy warning; so did a log price's exp
    houses = HOUSES.assign(lat=42.3 + np.linspace(-0.003, 0.003, len(HOUSES)))
    run_dir = train_on(houses, tmp_path, "data.log_target=true")
    (tmp_path / "new.csv").write_text("sqft,bedrooms,age,lat\n1500,3,20,42.3\n1500,3,20,3e38\n")
    line = one_error_line_after_warnings(run_predict(run_dir, tmp_path / "new.csv"))
    assert line == (
        f"error: {tmp_path / 'new.csv'}: column 'lat' row 2: 3.00000001e+38 is too far from the "
        "training rows' values for the model's float32 arithmetic (scaled by their spread it is "
        "beyond 3.4e+38); check the cell"
    )
    (tmp_path / "big.csv").write_text("sqft,bedrooms,age,lat\n1500,3,20,42.3\n3e37,3,20,42.3\n")
    line = one_error_line_after_warnings(run_predict(run_dir, tmp_path / "big.csv"))
    assert line == (
        f"error: {tmp_path / 'big.csv'}: row 2: its predicted 'price' is not finite: its values "
        "lie too far from the training rows' (the warnings above name them); check the row"
    )
    # helper-54: a log price's exp underflowed to a price of 0.0, which it can never be
    (tmp_path / "low.csv").write_text("sqft,bedrooms,age,lat\n1500,3,20,42.3\n-3e37,3,20,42.3\n")
    line = one_error_line_after_warnings(run_predict(run_dir, tmp_path / "low.csv"))
    assert line == (
        f"error: {tmp_path / 'low.csv'}: row 2: its predicted 'price' is 0, out of reach: its "
        "values lie too far from the training rows' (the warnings above name them); check the row"
    )


def one_error_line_after_warnings(proc) -> str:
    """The ``error: ...`` line a failed command ends with, after its warnings, and no traceback."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert all(ln.startswith("warning: ") for ln in lines[:-1]), proc.stderr
    return lines[-1]


def test_the_resume_command_keeps_an_escaped_dollar_brace_as_typed(tmp_path):
    # helper-54: iterating .hydra/overrides.yaml resolved '\${x}' to '${x}', and the pasted
    # "continue it with ..." command failed on an interpolation
    from predict import run_overrides

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(
        "- data=csv\n- data.path=\\${x}.csv\n- data.drop=['\\${seed}']\n"
    )
    overrides, _ = run_overrides(tmp_path)
    assert overrides == ["data=csv", "data.path=\\${x}.csv", "data.drop=['\\${seed}']"]


def test_a_predicted_column_already_there_is_replaced_with_a_note(run, tmp_path):
    # helper-54: a file priced before was priced again and its column replaced silently
    (tmp_path / "new.csv").write_text("sqft,bedrooms,age,predicted_price\n1500,3,20,1.0\n")
    proc = run_predict(run, tmp_path / "new.csv", "-o", tmp_path / "out.csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        f"note: {tmp_path / 'new.csv'}: its column 'predicted_price' is replaced by this run's "
        "predictions"
    )
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["sqft", "bedrooms", "age", "predicted_price"]
    np.testing.assert_allclose(out["predicted_price"], least_squares_prices(out), rtol=1e-4)
