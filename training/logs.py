"""What a run writes: TensorBoard scalars and images, the walkthrough's trace, metrics.json."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np


def fmt(value: float) -> str:
    """A float32 in its shortest round-trip form: ``7.38``, not ``7.380000114440918``."""
    return str(np.float32(value))


def flatten_params(params: dict) -> dict[str, np.ndarray]:
    """A nested parameter dict as ``{"a/b": array}``, keys sorted."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        flat["/".join(str(getattr(k, "key", k)) for k in path)] = np.asarray(leaf)
    return dict(sorted(flat.items()))


def param_columns(params: dict, feature_names: list[str], batched: bool = False) -> dict:
    """Name every scalar of the parameters: ``W`` (one feature) or ``W/<feature>``, ``b``.

    With ``batched`` the leaves carry a leading axis (a history) and each value is a column.
    """
    out: dict[str, np.ndarray] = {}
    for key, leaf in flatten_params(params).items():
        flat = leaf.reshape((leaf.shape[0], -1) if batched else (1, -1))
        width = flat.shape[1]
        if width == 1:
            names = [key]
        elif key == "W" and width == len(feature_names):
            names = [f"W/{f}" for f in feature_names]
        else:
            names = [f"{key}/{i}" for i in range(width)]
        for j, name in enumerate(names):
            out[name] = flat[:, j] if batched else flat[0, j]
    return out


class TensorBoardLog:
    """A tensorboardX writer in the run directory, or nothing when TensorBoard is off."""

    def __init__(self, workdir: Path, enabled: bool, purge_step: int | None = None) -> None:
        self.writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(str(workdir), purge_step=purge_step, flush_secs=30)

    def scalars(self, tag_values: dict[str, np.ndarray], steps: np.ndarray) -> None:
        if self.writer is None:
            return
        for i, step in enumerate(np.asarray(steps).tolist()):
            for tag, values in tag_values.items():
                self.writer.add_scalar(tag, float(values[i]), step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, float(value), step)

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_histogram(tag, np.asarray(values, np.float64), step)

    def figure(self, tag: str, fig, step: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, fig, step, close=False)

    def hparams(self, hparams: dict, metrics: dict) -> None:
        if self.writer is not None:
            self.writer.add_hparams(hparams, metrics, name=".", global_step=None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


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
