"""Predict with a finished run: ``python predict.py RUN_DIR NEW_ROWS.csv [-o OUT.csv]``.

The new rows go through the run's own encoding and scaling (``RUN_DIR/preprocessing.json``),
the model takes its parameters from the run's newest checkpoint, and the predictions, in the
target's own units, are written as a ``predicted_<target>`` column after the input's columns.
Every mismatch between the rows and the run is one line naming the columns and the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from errors import UserError, fail, printable, resume_command


def _run_record(run_dir: Path) -> dict:
    """The run's ``preprocessing.json``; a directory train.py did not finish is a UserError."""
    prep_path = run_dir / "preprocessing.json"
    if not run_dir.is_dir():
        what = "a file, not a directory" if run_dir.exists() else "no such directory"
        raise UserError(f"{run_dir}: {what}; give the directory a train.py run wrote")
    if not prep_path.is_file():
        # a run's checkpoints/ or one checkpoint in it: the run is the directory above
        for run in (run_dir.parent, run_dir.parent.parent):
            if (
                run_dir.resolve().is_relative_to((run / "checkpoints").resolve())
                and (run / "preprocessing.json").is_file()
            ):
                raise UserError(
                    f"{run_dir}: inside the checkpoints of the run in {run}; give the run "
                    f"directory {run} (predict.py reads its newest checkpoint)"
                )
        # a sweep's or a search's directory: its runs below (a path in an override, as
        # data.path=/d/f.csv, nests them), the files of their checkpoints left out
        runs = sorted(
            p.parent
            for p in run_dir.glob("**/preprocessing.json")
            if "checkpoints" not in p.relative_to(run_dir).parts
        )
        if runs or (run_dir / "multirun.yaml").is_file():
            example = f", such as {runs[0]}" if runs else ""
            raise UserError(
                f"{run_dir}: the directory of a sweep, not of a run; give one of its runs{example}"
            )
        if (run_dir / "checkpoints").is_dir():  # a run, its record deleted
            advice = _resume_advice(run_dir, diverged=_divergence_of(run_dir))
            raise UserError(f"{run_dir}: no preprocessing.json; {advice} to write it again")
        raise UserError(
            f"{run_dir}: not a finished run (no preprocessing.json); give the "
            f"directory a train.py run wrote"
        )
    try:
        return json.loads(prep_path.read_text())
    except (ValueError, OSError) as exc:
        advice = _resume_advice(run_dir, diverged=_divergence_of(run_dir))
        raise UserError(
            f"{prep_path}: cannot be read ({exc}); {advice} to write it again"
        ) from None


def _resume_advice(run_dir: Path, running: bool | None = None, diverged: str | None = None) -> str:
    """How to go on with the run in ``run_dir``: wait for it while it trains (``running``;
    None: found out here), give another step where it diverged (``diverged``, its error: a
    resume would diverge again), else resume it."""
    from training.checkpoint import run_in_progress

    if run_in_progress(run_dir) if running is None else running:  # a resume would be refused
        return "it is still training; wait for it to end"
    if diverged:
        return f"it diverged, and a resume would too ({diverged})"
    return f"continue it with {resume_command(run_dir, *run_overrides(run_dir))}"


def _divergence_of(run_dir: Path) -> str | None:
    """The divergence error the run in ``run_dir`` ended with, as its ``train.log`` holds it
    (what it printed), without ``error: ``; None if it did not end so."""
    try:
        lines = (run_dir / "train.log").read_text(errors="replace").splitlines()
    except OSError:
        return None
    ends = [ln for ln in lines if ln.startswith("error: ")]
    if ends and ends[-1].startswith("error: training diverged"):
        return ends[-1].removeprefix("error: ")
    return None


def run_overrides(run_dir: Path) -> tuple[list[str], str | None]:
    """The overrides the run in ``run_dir`` was made with (Hydra's ``.hydra/overrides.yaml``,
    then Hydra's own from ``.hydra/hydra.yaml``) and the directory it was started from
    (``hydra.runtime.cwd``); ``[]`` and None where they are not there."""
    from omegaconf import OmegaConf

    try:
        # as typed: iterating the list would resolve a literal \${ to ${
        saved = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
        overrides = [str(a) for a in OmegaConf.to_container(saved, resolve=False)]
    except Exception:  # noqa: BLE001 - no such file, or not Hydra's: advice without overrides
        overrides = []
    try:
        hydra = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra
        cwd = str(hydra.runtime.cwd)
        # hydra.job.chdir=true, ...
        overrides += [str(a) for a in OmegaConf.to_container(hydra.overrides.hydra, resolve=False)]
    except Exception:  # noqa: BLE001 - as above: the command is run where predict.py is
        cwd = None
    return overrides, cwd


def needed_columns(prep: dict) -> list[str]:
    """The CSV columns a run reads (before encoding), in the training file's order: those
    with an output the model takes (a column constant in the training rows has none)."""
    if prep["encoding"]:
        from data.csv_source import Encoding

        return [c.name for c in Encoding.from_dict(prep["encoding"]).used_columns]
    return list(prep["feature_names"])  # toy or synthetic data: the columns by feature name


def features(prep: dict, rows_csv: str | Path, run_dir: Path) -> tuple[np.ndarray, object]:
    """The rows of ``rows_csv`` as the run's scaled model inputs, float32 ``(n, features)``,
    and the rows as read. Raises UserError naming the run's columns on any mismatch."""
    from data.csv_source import (
        ColumnCode,
        Encoding,
        empty_rows_note,
        read_csv,
        undecided_notes,
    )
    from data.preprocess import Scaling, far_outside

    needed = needed_columns(prep)
    takes = (
        f"the run in {run_dir} takes columns {printable(', '.join(needed))}"
        if needed
        else f"the run in {run_dir} takes no feature columns"
    )
    path = Path(rows_csv).expanduser()
    if not path.is_file():
        what = "a directory, not a file" if path.is_dir() else "no such file"
        raise UserError(f"{rows_csv}: {what}; give a CSV of rows ({takes})")
    enc = prep["encoding"]
    sep, decimal = _marks_the_run_was_given(run_dir)
    try:  # the new rows' separator and decimal mark: the run's, if given, else their file's
        # numbers that decide no decimal mark ('26.648' in a ';' file) are read as the run's
        undecided = enc.get("decimal") if enc else None
        df, source = read_csv(
            path, key="rows", min_columns=1, sep=sep, decimal=decimal, undecided=undecided
        )
    except UserError as exc:
        raise UserError(f"{exc} ({takes})") from None
    notes = [n for n in df.attrs["notes"] if n != empty_rows_note(df.attrs["empty_rows"])]
    for note in [*notes, *undecided_notes(df, needed)]:  # titles, 4.350; empty rows: main's
        print(f"note: {source}: {note}", file=sys.stderr)
    absent = [c for c in needed if c not in df.columns]
    if absent:
        listed = ", ".join(repr(c) for c in absent)
        raise UserError(
            f"{source}: no column{'s' * (len(absent) > 1)} {listed}; {takes} "
            f"(the target {prep['target']!r} may be left out)"
        )
    try:
        if enc:
            encoding = Encoding.from_dict(enc)
            # the new rows' numbers are written in their own file's decimal mark
            encoding.decimal = df.attrs.get("decimal", encoding.decimal)
        else:  # toy or synthetic data: every column a number, written with a '.'
            encoding = Encoding(prep["target"], [ColumnCode(n, "numeric") for n in needed])
        X = encoding.transform(df, source, missing="predict")
        for line in encoding.warnings:  # levels never seen in training: counted as `other`
            print(f"warning: {line}", file=sys.stderr)
    except UserError as exc:
        raise UserError(f"{exc} ({takes})") from None
    X = np.asarray(X, np.float64).reshape(len(df), len(prep["feature_names"]))
    scaling = Scaling(**prep["scaling"])
    kinds = [
        "log" if c.log else c.kind if c.kind == "date" else "number"
        for c in encoding.used_columns
        for _ in c.outputs
    ]
    for line in far_outside(X, scaling, prep["feature_names"], kinds):
        print(f"warning: {source}: {line}", file=sys.stderr)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.asarray(scaling.apply_X(X.astype(np.float32)), np.float32)
    beyond = np.argwhere(~np.isfinite(scaled))
    if len(beyond):  # 3e38 over a spread of 0.001: past float32, and its price infinite
        i, j = beyond[0]
        raise UserError(
            f"{source}: column {prep['feature_names'][j]!r} row {int(df.index[i]) + 1}: "
            f"{X[i, j]:.9g} is too far from the training rows' values for the model's float32 "
            f"arithmetic (scaled by their spread it is beyond 3.4e+38); check the cell"
        )
    return scaled, df


def _marks_the_run_was_given(run_dir: Path) -> tuple[str | None, str | None]:
    """``(data.sep, data.decimal)`` as the run's command line or config gave them (None:
    detected). New rows are read the same way: a run trained with ``data.decimal=.`` on
    ``3,231`` square feet read the new rows' ``3,231`` as 3.231 and priced them ten times low."""
    from omegaconf import OmegaConf

    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.is_file():
        return None, None
    data = OmegaConf.load(saved).get("data", {})
    return data.get("sep"), data.get("decimal")


def parameters(run_dir: Path, prep: dict) -> tuple[object, dict]:
    """The model of the run's newest checkpoint: its graph definition and parameters (the
    optimizer state is not read). Raises UserError for a run without a readable checkpoint,
    one of another run, or one of another shape."""
    from flax import nnx
    from omegaconf import OmegaConf

    from models import build_model
    from training.checkpoint import Checkpoints, ShapeMismatchError, run_in_progress

    running = run_in_progress(run_dir)  # resuming it now would be refused
    diverged = None if (run_dir / "metrics.json").is_file() else _divergence_of(run_dir)
    if diverged:  # continued, it would diverge again
        raise UserError(f"{run_dir}: the run diverged, so there is no model to predict with "
                        f"({diverged})")  # fmt: skip
    resume = _resume_advice(run_dir, running)  # not diverged: said above
    if not (run_dir / "checkpoints").is_dir():
        raise UserError(f"{run_dir}: no checkpoint; the run did not finish ({resume})")
    ckpt = Checkpoints(run_dir / "checkpoints", create=False)
    try:
        steps = ckpt.steps()
        if not steps:
            raise UserError(f"{run_dir}: no checkpoint; the run did not finish ({resume})")
        step = steps[-1]
        where = ckpt.directory / str(step)
        if not (run_dir / "metrics.json").is_file():  # written last, once the run finished
            print(
                f"note: {run_dir} has no metrics.json, so the run did not finish; predicting "
                f"with its newest checkpoint, step {step} ({resume}"
                + ("" if running else " to finish it")
                + ")",
                file=sys.stderr,
            )
        try:
            meta = ckpt.restore_meta(step)
        except Exception as exc:  # orbax's errors for a damaged step: one line
            raise UserError(
                f"{where}: cannot be read ({type(exc).__name__}); {resume} to write it again"
            ) from None
        ours, theirs = prep.get("run_id"), meta.get("preprocessing", {}).get("run_id")
        if ours != theirs:
            from data.preprocess import the_data_itself  # as the resume compares them

            others = [the_data_itself(p) for p in (prep, meta.get("preprocessing", {}))]
            # the same data but the id: a resume writes preprocessing.json again, of the
            # checkpoint's run; else the checkpoints are another run's, which no resume mends
            mend = (
                f"{resume} to write preprocessing.json again"
                if others[0] == others[1]
                else "train again into a new hydra.run.dir"
            )
            raise UserError(
                f"{where}: the checkpoint belongs to another run (id {theirs}) than "
                f"{run_dir / 'preprocessing.json'} (id {ours}); {mend}"
            )
        n = len(prep["feature_names"])
        model = build_model(OmegaConf.create(meta["config"]).model, n, 0)
        graphdef, state = nnx.split(model)
        like = nnx.to_pure_dict(state)
        shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in sorted(like.items()))
        try:
            restored, _ = ckpt.restore(step, {"params": like})
        except ShapeMismatchError as exc:
            raise UserError(
                f"{where}: holds parameters of another shape than this run's model ({shapes}, "
                f"for {n} features; {exc}); train again into a new hydra.run.dir"
            ) from None
        except Exception as exc:  # orbax's errors for a damaged step: one line
            raise UserError(
                f"{where}: the parameters cannot be read ({type(exc).__name__}); {resume} "
                "to write them again"
            ) from None
    finally:
        ckpt.close()
    return graphdef, restored["params"]


def predict(run_dir: str | Path, rows_csv: str | Path) -> tuple[np.ndarray, object, dict]:
    """Predictions for ``rows_csv`` in the target's units, shape ``(rows,)`` (NaN for a row
    with no cell in any column the run reads), the rows read (a DataFrame) and the run's
    preprocessing record. Raises UserError (one line naming the
    run and the columns) for every mismatch between the rows and the run."""
    import jax
    from flax import nnx

    from data.preprocess import Scaling

    run_dir = Path(run_dir)
    prep = _run_record(run_dir)
    X, df = features(prep, rows_csv, run_dir)
    graphdef, params = parameters(run_dir, prep)
    pred = np.asarray(jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))(params, X))
    out = Scaling(**prep["scaling"]).invert_y(pred)
    if prep["log_target"]:
        with np.errstate(over="ignore", under="ignore"):
            out = np.exp(out)
    # a line with no cell in any column the run reads (a note below the table): the run's
    # fill-ins for every feature would price it as a house (helper-65)
    featureless = _featureless(df, needed_columns(prep))
    out[featureless] = np.nan
    impossible = ~np.isfinite(out) & ~featureless
    if prep["log_target"]:
        impossible |= ~(out > 0)  # a log price's exp is above 0: 0 is an underflow
    if impossible.any():  # never a price of inf, or a log model's 0, written as if it were one
        first = np.flatnonzero(impossible)[0]
        what = "0, out of reach" if np.isfinite(out[first]) else "not finite"
        raise UserError(
            f"{rows_csv}: row {int(df.index[first]) + 1}: its predicted "
            f"{prep['target']!r} is {what}: its values lie too far from the training rows' "
            "(the warnings above name them); check the row"
        )
    return out, df, prep


def _featureless(df, columns: list[str]) -> np.ndarray:
    """Which rows of ``df`` have no cell in any of ``columns``: each empty, blank or a
    missing-value word (``NA``). ``(len(df),)`` bool."""
    from data.csv_source import NA_TOKENS

    if not columns:
        return np.zeros(len(df), bool)
    cells = df[columns].astype(object)
    missing = cells.isna() | cells.apply(lambda c: c.astype(str).str.strip().isin(["", *NA_TOKENS]))
    return missing.all(axis=1).to_numpy()


def _with_predictions(df, column: str, pred: np.ndarray) -> tuple[object, list[int]]:
    """The file's rows ``df`` (every line under the header, blank ones as rows of missing cells)
    with ``column`` holding ``pred``, one prediction for each row with a cell, in order; rows
    with every cell empty keep an empty prediction, so that the output lines up row for row with
    the file (empty rows after the last one with a cell are left out). Returns the table and the
    empty rows' numbers (1 = the first line under the header)."""
    from data.csv_source import every_cell_empty

    empty = every_cell_empty(df.drop(columns=column, errors="ignore"))
    rows = np.flatnonzero(~empty)
    if len(rows) != len(pred):  # read_csv and cells_as_written disagree on the rows: our bug
        raise RuntimeError(f"{len(pred)} predictions for {len(rows)} rows with a cell")
    df = df.iloc[: rows[-1] + 1 if len(rows) else 0].copy()
    blank = np.flatnonzero(empty[: len(df)])
    df.iloc[blank, :] = np.nan  # a line of spaces or tabs: blank
    values = np.full(len(df), np.nan)
    values[rows] = pred
    df[column] = values
    return df, (blank + 1).tolist()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run_dir", help="a directory train.py wrote (hydra.run.dir)")
    p.add_argument("rows", help="CSV of new rows: the feature columns, target column optional")
    p.add_argument("-o", "--output", help="where to write (default: print CSV to stdout)")
    args = p.parse_args(argv)
    out = Path(args.output).expanduser() if args.output else None
    rows, run_dir = Path(args.rows).expanduser(), Path(args.run_dir).expanduser().resolve()
    if out is not None and out.exists() and rows.exists() and os.path.samefile(out, rows):
        fail(f"-o {args.output} is the file of new rows itself; write the predictions elsewhere")
    if out is not None and out.resolve().is_relative_to(run_dir):
        fail(
            f"-o {args.output} is inside the run directory {args.run_dir}, whose files belong "
            "to the run; write the predictions elsewhere"
        )
    try:
        pred, read, prep = predict(args.run_dir, args.rows)
    except UserError as exc:
        fail(str(exc), exc.exit_code)
    # the user's own cells as they wrote them ("1,250", 02134), then the predictions, in the
    # file's own separator and decimal mark
    sep, decimal = read.attrs.get("sep", ","), read.attrs.get("decimal", ".")
    # as read: Excel's `sep=;` line and title lines skipped, R's row names in their column
    from data.csv_source import cells_as_written

    df = cells_as_written(Path(args.rows), sep, keep_empty_rows=True)
    column = f"predicted_{prep['target']}"
    if column in df.columns:  # a file priced before, priced again
        print(
            f"note: {args.rows}: its column {column!r} is replaced by this run's predictions",
            file=sys.stderr,
        )
    unpriced = np.flatnonzero(np.isnan(pred))
    if len(unpriced):
        rows_ = ", ".join(str(int(r) + 1) for r in read.index[unpriced[:5]]) + (
            ", ..." if len(unpriced) > 5 else ""
        )
        print(
            f"note: {args.rows}: {len(unpriced)} row(s) with no cell in any of the run's columns "
            f"(row {rows_} under the header; a note below the table?) are kept without a "
            "prediction",
            file=sys.stderr,
        )
    df, empty = _with_predictions(df, column, pred)
    if empty:
        print(
            f"note: {args.rows}: {len(empty)} row(s) with every cell empty (row "
            f"{', '.join(map(str, empty[:5]))}{', ...' if len(empty) > 5 else ''} under the "
            "header) are kept without a prediction, so the output's rows line up with the file's",
            file=sys.stderr,
        )
    fmt = {"sep": sep, "decimal": decimal, "index": False}
    if any(df[c].astype(str).str.contains("\r", regex=False).any() for c in df.columns):
        # Python's csv quotes a cell holding its line end's characters only: a cell of an old
        # Mac file's CR line break, unquoted at "\n", split its row in two
        fmt["lineterminator"] = "\r\n"
    if out is not None:
        try:
            df.to_csv(out, **fmt)
        except OSError as exc:  # a directory, a missing or read-only place, a full disk
            fail(f"cannot write -o {args.output}: {exc.strerror or exc}; choose another file")
        written = int(np.isfinite(pred).sum())
        print(f"wrote {written} predictions to {args.output}", file=sys.stderr)
        return
    try:
        df.to_csv(sys.stdout, **fmt)
        sys.stdout.flush()
    except BrokenPipeError:  # `predict.py ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    main()
