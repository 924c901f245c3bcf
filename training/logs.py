"""What a run writes: TensorBoard scalars and images, the walkthrough's trace, metrics.json, and a
copy of what it prints in Hydra's log file (``train.log``)."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import re
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np


def fmt(value: float) -> str:
    """A float32 in its shortest round-trip form: ``7.38``, not ``7.380000114440918``."""
    return str(np.float32(value))


def flatten_params(params: dict) -> dict[str, np.ndarray]:
    """A nested parameter dict as ``{"a/b": array}``, keys sorted (flax's ``flatten_dict``;
    the path is joined here, as an ``nnx.List`` layer's key is an int)."""
    from flax.traverse_util import flatten_dict

    flat = {
        "/".join(map(str, path)): np.asarray(leaf) for path, leaf in flatten_dict(params).items()
    }
    return dict(sorted(flat.items()))


def param_columns(params: dict, feature_names: list[str], batched: bool = False) -> dict:
    """Name every scalar of the parameters: ``W`` (one feature) or ``W/<feature>``, ``b``.

    With ``batched`` the leaves carry a leading axis (a history) and each value is a column.
    """
    out: dict[str, np.ndarray] = {}
    for key, leaf in flatten_params(params).items():
        width = int(np.prod(leaf.shape[1:] if batched else leaf.shape))
        flat = leaf.reshape((leaf.shape[0] if batched else 1, width))
        if width == 1:
            names = [key]
        elif key == "W" and width == len(feature_names):
            names = [f"W/{f}" for f in feature_names]
        else:
            names = [f"{key}/{i}" for i in range(width)]
        for j, name in enumerate(names):
            out[name] = flat[:, j] if batched else flat[0, j]
    return out


_ILLEGAL_TAG_CHARACTERS = re.compile(r"[^-/\w\.]")


def valid_tag(tag: str) -> str:
    r"""``tag`` with every character TensorBoard does not allow in a summary name replaced by
    ``_`` (tensorboardX's rule, ``[^-/\w.]``, and TensorFlow's): ``params/W/Exterior 1st`` is
    ``params/W/Exterior_1st``. tensorboardX would do the same, with a log line per tag."""
    return _ILLEGAL_TAG_CHARACTERS.sub("_", tag).lstrip("/")


class TensorBoardLog:
    """A tensorboardX writer in the run directory, or nothing when TensorBoard is off. Tags
    are made valid here (:func:`valid_tag`), so tensorboardX has nothing to rename, and kept
    apart: of tags written together, those valid as they are keep them, and one made valid as a
    tag taken already (``Zone B`` beside ``Zone_B``, both ``params/W/Zone_B``) gets the first
    free ``_2``, ``_3``, ... (a resumed run writes its tags in the same order)."""

    def __init__(self, workdir: Path, enabled: bool, purge_step: int | None = None) -> None:
        self.writer = None
        # the step of the last parameters written, per tag ("params/W"'s histogram, the
        # scalars): the report writes the final ones only where training has not (a run that
        # converged recorded the parameters at the step it stopped at: two points there)
        self.params_at: dict[str, int] = {}
        self.tags: dict[str, str] = {}  # each tag given -> the valid one written
        self.taken: set[str] = set()
        if enabled:
            from tensorboardX import SummaryWriter

            # a NaN metric (R^2 of a one-row split) is recorded as NaN; no warning line for it
            logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)

            self.writer = SummaryWriter(str(workdir), purge_step=purge_step, flush_secs=30)

    def tag(self, tag: str) -> str:
        """The valid tag ``tag`` is written under (:func:`valid_tag`, made unique: said in a
        note line when it is not the plain one)."""
        if tag not in self.tags:
            valid = unique = valid_tag(tag)
            k = 2
            while unique in self.taken:
                unique, k = f"{valid}_{k}", k + 1
            self.tags[tag] = unique
            self.taken.add(unique)
            if unique != valid:
                print(f"note: TensorBoard tag {unique} is {tag!r} ({valid} is another's)")
        return self.tags[tag]

    def reserve(self, tags) -> None:
        """Give each of ``tags`` that is valid as it is its own tag first, so that a name made
        valid (``Lot Area``) never takes the tag of another given as it is (``Lot_Area``)."""
        for tag in tags:
            if tag not in self.tags and tag == valid_tag(tag) and tag not in self.taken:
                self.tags[tag] = tag
                self.taken.add(tag)

    def scalars(self, tag_values: dict[str, np.ndarray], steps: np.ndarray) -> None:
        if self.writer is None:
            return
        from tensorboardX.proto.summary_pb2 import Summary

        # one event per step holding every tag's value, which add_scalar would write as one
        # event each (the same float32 simple_value): 274 columns over 105 steps take 0.10 s
        # instead of 1.18 s
        self.reserve(tag_values)
        tags = [self.tag(tag) for tag in tag_values]
        columns = [np.asarray(v, np.float64).tolist() for v in tag_values.values()]
        writer = self.writer._get_file_writer()
        for i, step in enumerate(np.asarray(steps).tolist()):
            values = [
                Summary.Value(tag=t, simple_value=c[i]) for t, c in zip(tags, columns, strict=True)
            ]
            writer.add_summary(Summary(value=values), step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(self.tag(tag), float(value), step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        if self.writer is None:
            return
        values = np.asarray(values, np.float64)
        try:
            self.writer.add_histogram(self.tag(tag), values, step)
        except ValueError:  # values beyond TensorFlow's buckets (about 1e20): numpy's bins
            self.writer.add_histogram(self.tag(tag), values, step, bins="auto")

    def png(self, tag: str, png: bytes, step: int) -> None:
        """An image summary holding the bytes of a PNG file as they are: the figure already
        saved, not drawn and encoded a second time as ``add_figure`` would (a third of the
        plots' time on a 266-column run)."""
        if self.writer is None:
            return
        from tensorboardX.proto.summary_pb2 import Summary

        width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk, first in every PNG
        channels = {0: 1, 2: 3, 4: 2, 6: 4}[png[25]]  # its colour type
        image = Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=png
        )
        summary = Summary(value=[Summary.Value(tag=self.tag(tag), image=image)])
        self.writer._get_file_writer().add_summary(summary, step)

    def hparams(self, hparams: dict, metrics: dict, step: int) -> None:
        """The run's hyperparameters and final metrics for TensorBoard's HPARAMS tab, in this
        run's own event file (``add_hparams`` would start a second run beside it)."""
        if self.writer is None:
            return
        from tensorboardX.summary import hparams as hparams_summary

        for summary in hparams_summary(hparams, metrics):
            self.writer._get_file_writer().add_summary(summary)
        for tag, value in metrics.items():
            self.writer.add_scalar(self.tag(tag), value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


def log_steps(
    tb: TensorBoardLog,
    t0: int,
    positions: np.ndarray,
    losses: np.ndarray,
    recorded: dict,
    feature_names: list[str],
    lr_at: Callable[[np.ndarray], np.ndarray],
) -> dict:
    """Write the recorded steps of one call: step ``t0 + positions[i]`` gets the loss there,
    the learning rate of that update and the parameters ``recorded[i]`` (those before that
    step). Returns the recorded parameters trimmed to ``len(positions)``."""
    steps = t0 + positions
    recorded = jax.tree.map(lambda a: np.asarray(a)[: len(positions)], recorded)
    columns = {f"params/{k}": v for k, v in param_columns(recorded, feature_names, True).items()}
    tb.scalars({"train/loss": losses[positions], "train/lr": lr_at(steps), **columns}, steps)
    if len(steps):
        tb.params_at["scalars"] = int(steps[-1])
    return recorded


class _Copied:
    """A text stream that writes to ``terminal`` and keeps a copy: held in memory until
    :func:`copy_to_run_log` gives it the run's log file, then written there line by line."""

    def __init__(self, terminal, held: list[str]) -> None:
        self.terminal, self.held, self.log = terminal, held, None

    def write(self, text: str) -> int:
        self.terminal.write(text)
        if self.log is not None:
            self.log.write(text)
        elif self.held is not None:
            self.held.append(text)
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()
        if self.log is not None:
            self.log.flush()

    def isatty(self) -> bool:  # a bar or colours go to the terminal, as without the copy
        return self.terminal.isatty()

    def __getattr__(self, name: str):  # encoding, fileno, buffer, ...: the terminal's
        return getattr(self.terminal, name)


# (stdout, stderr, log path, bytes of the log before the run) of the run
_COPIES: list[tuple[_Copied, _Copied, str, int]] = []


@contextlib.contextmanager
def output_copied_for_the_run_log():
    """While a run of ``train.py`` runs, keep a copy of what it prints (stdout and stderr, its
    errors included) for the log file Hydra's job logging opened (``hydra.job.name`` + ``.log``,
    ``train.log``), which otherwise holds logging records only and stayed empty. Nothing is
    written there until the run owns its directory (:func:`copy_to_run_log`): a run refused
    because the directory holds another adds nothing to it. No log file (Hydra's
    ``hydra/job_logging=none``): no copy."""
    files = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.FileHandler) and h.baseFilename != os.devnull
    ]
    if not files:
        yield
        return
    held: list[str] = []
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Copied(out, held), _Copied(err, held)
    path = files[0].baseFilename
    # what the file holds before this run: an earlier attempt's (dropped by a new run)
    earlier = os.path.getsize(path) if os.path.isfile(path) else 0
    _COPIES.append((sys.stdout, sys.stderr, path, earlier))
    try:
        yield
    finally:
        copied_out, copied_err, _, _ = _COPIES.pop()
        sys.stdout, sys.stderr = out, err
        log, copied_out.log, copied_err.log = copied_out.log, None, None
        if log is not None:  # one file, shared
            log.close()


def copy_to_run_log(new_run: bool) -> None:
    """The run owns its directory and this process writes its files: write what it has
    printed so far to the run's log, and from now on each line as it is printed. A
    ``new_run`` (one that will not resume from a checkpoint) drops what the file held before
    the run began, as its TensorBoard events do: an earlier attempt's, which left no
    checkpoint (else the directory would hold a run, and the new run would have been refused).
    A no-op outside :func:`output_copied_for_the_run_log`."""
    if not _COPIES or _COPIES[-1][0].log is not None:
        return
    copied_out, copied_err, path, earlier = _COPIES[-1]
    if new_run and earlier:  # keep the records Hydra's handler has written since the run began
        with open(path, "r+b") as f:
            f.seek(earlier)
            since = f.read()
            f.seek(0)
            f.write(since)
            f.truncate()
    # appended, as Hydra's handler appends its records to the same file: neither overwrites
    log = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    log.write("".join(copied_out.held))
    copied_out.log = copied_err.log = log
    copied_out.held = copied_err.held = None


def to_run_log_only(line: str) -> None:
    """Write ``line`` to the run's log and not to the terminal (what a progress bar showed)."""
    if _COPIES and _COPIES[-1][0].log is not None:
        _COPIES[-1][0].log.write(line + "\n")


def terminal(stream):
    """The terminal behind ``stream`` (``sys.stdout`` while a copy is kept), for what only a
    terminal should get: a progress bar redrawn in place."""
    return getattr(stream, "terminal", stream)


class Progress:
    """Progress of a run: a rich bar on a terminal, else a log line at most every 10 s."""

    def __init__(self, mode: str, epochs: int, batch_size: int) -> None:
        self.epochs, self.start, self.last_line = epochs, time.perf_counter(), 0.0
        self.samples, self.last = 0, ""
        self.bar = None
        if mode == "bar" or (mode == "auto" and sys.stdout.isatty()):
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("epoch {task.completed}/{task.total}"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                transient=False,
                console=Console(file=terminal(sys.stdout)),  # the log gets the last line only
            )
            self.task = self.bar.add_task("train", total=epochs, status="")
            self.bar.start()
        self.quiet = mode == "off"

    def update(self, epoch: int, step: int, loss: float, samples: int) -> None:
        self.samples += samples
        now = time.perf_counter()
        rate = self.samples / max(now - self.start, 1e-9)
        status = f"step {step}  loss {fmt(loss)}  {rate:,.0f} samples/s"
        self.last = f"epoch {epoch}/{self.epochs}  {status}"
        if self.bar is not None:
            self.bar.update(self.task, completed=epoch, status=status)
        elif not self.quiet and (now - self.last_line >= 10 or epoch >= self.epochs):
            self.last_line = now
            print(self.last, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
            if self.last:
                to_run_log_only(self.last)


def print_trace(
    first_step: int, W: np.ndarray, losses: np.ndarray, out: Callable[[str], None] = print
) -> None:
    """The walkthrough's trace: for update ``t`` (1-based), W before and after it and the loss
    at W before it. ``W`` holds ``len(losses) + 1`` values: before each update, then after."""
    for i, loss in enumerate(losses):
        out(f"iteration {first_step + i + 1}")
        out(f"W_old {fmt(W[i])}")
        out(f"W_new {fmt(W[i + 1])}")
        out(f"loss is {fmt(loss)}")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(_jsonable(payload), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


PREDICTIONS = "predictions.csv"
PREDICTION_COLUMNS = ("row", "split", "residual")  # beside the target and its prediction


def write_predictions(
    path: Path, target: str, file_rows: np.ndarray, rows: dict, actual: dict, predicted: dict
) -> None:
    """Write each row's split, target and prediction as CSV, atomically, ordered by row:
    ``row`` (its number in the file, 1 the first under the header, as errors name it),
    ``split`` (``train``, ``val`` or ``test``), the target in its units, ``predicted_<target>``
    and ``residual`` (the target less the prediction); a target named ``row``, ``split`` or
    ``residual`` keeps its name, and that column of ours is ``_row``, ``_split``, ``_residual``.

    ``file_rows``: ``(n,)`` the table's rows' numbers in the file; ``rows``: split -> indices
    into the table; ``actual``, ``predicted``: split -> ``(len(rows[split]),)`` in the target's
    units (a split with no rows may be absent). Floats are written with ``repr`` (the shortest
    text that reads back as the same float64)."""
    parts = [s for s in rows if len(rows[s])]
    table = np.concatenate([file_rows[rows[s]] for s in parts])
    order = np.argsort(table, kind="stable")
    split = np.concatenate([[s] * len(rows[s]) for s in parts])[order]
    y = np.concatenate([np.asarray(actual[s], np.float64) for s in parts])[order]
    pred = np.concatenate([np.asarray(predicted[s], np.float64) for s in parts])[order]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        out = csv.writer(f)
        # a target named as one of this file's own columns keeps its name; ours gets a "_"
        row, part, residual = (f"_{c}" if c == target else c for c in PREDICTION_COLUMNS)
        out.writerow([row, part, target, f"predicted_{target}", residual])
        out.writerows(
            (int(r), s, repr(float(a)), repr(float(p)), repr(float(a - p)))
            for r, s, a, p in zip(table[order], split, y, pred, strict=True)
        )
    os.replace(tmp, path)
