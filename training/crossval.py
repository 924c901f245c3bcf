"""Cross-validation (``data.folds=k``): k fits, each with one fold of the rows held out.

The folds cut the rows the run trains and validates on (every row but the test rows) in the
order of the seed's permutation, the one :func:`data.preprocess.split_rows` draws. Each fold is
a run of its own in ``folds/<i>/`` (TensorBoard events, checkpoint, ``preprocessing.json``,
``metrics.json``), encoded (a CSV's levels, pooling, fills) and scaled on its own training
rows. The folds' training rows are padded to one
row count with rows of weight 0, which no loss or gradient counts, so every fold runs the
compiled calls of the first: same shapes, no recompiling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from omegaconf import DictConfig, OmegaConf

from data.preprocess import fold_rows
from errors import Interrupted
from training.cli import resume_advice, stop_caught
from training.devices import padded_rows
from training.hooks import Progressed
from training.logs import TensorBoardLog, write_json

if TYPE_CHECKING:
    from training.build import Rows

METRICS = ("mse", "rmse", "mae", "r2")


def _pad(on_device: Rows, rows: int) -> Rows:
    """The training rows padded to ``rows`` with rows of weight 0 (``w`` always set, so
    every fold's compiled call takes the same arguments). Runs on every process: the rows may
    be sharded over all of them."""
    X, y = on_device.X, on_device.y
    sharding = None if on_device.mesh is None else X.sharding

    def pad(X, y, w):
        extra = rows - X.shape[0]
        w = jnp.ones(X.shape[0], X.dtype) if w is None else w
        return (
            jnp.pad(X, ((0, extra), (0, 0))),
            jnp.pad(y, (0, extra)),
            jnp.pad(w, (0, extra)),
        )

    out = None if sharding is None else (sharding, y.sharding, y.sharding)
    X, y, w = jax.jit(pad, out_shardings=out)(X, y, on_device.w)
    return dataclasses.replace(on_device, X=X, y=y, w=w)


def cross_validate(cfg: DictConfig, workdir: Path, n: int, fit: Callable) -> dict:
    """Train and evaluate ``cfg.data.folds`` folds of the ``n`` rows of the data in
    ``workdir/folds/<i>/``; return
    ``{metric: {"mean", "std", "folds": [...]}}`` of the validation rows' ``mse``, ``rmse``,
    ``mae`` and ``r2`` in the target's units (``std`` over folds with ``ddof=0``). ``fit``: the
    training loop (``training.run.fit``), passed in so that this module imports no run.py.
    Raises :class:`errors.Interrupted` (saying how to resume) when a signal stops a fold."""
    k = cfg.data.folds
    fold_cfg = _fold_config(cfg)
    say = print if jax.process_index() == 0 else (lambda *a, **kw: None)
    d = cfg.data
    splits = fold_rows(n, k, d.val_fraction, d.test_fraction, cfg.seed)
    n_rows = max(len(f["train"]) for f in splits)
    scores: dict[str, list[float]] = {m: [] for m in METRICS}
    calls: dict = {}  # the compiled calls of each shape, shared by the folds of that shape
    for i, rows in enumerate(splits):
        fold_dir = workdir / "folds" / str(i)
        _clear_fold_dir(fold_dir, i)
        try:
            m, stopped = train_fold(fold_cfg, fold_dir, rows, n_rows, calls, fit)
        except (Interrupted, KeyboardInterrupt) as exc:  # in the fold's fit, or around it
            stop_caught()
            raise _interrupted_in_fold(exc, i, workdir) from None
        for metric in METRICS:
            scores[metric].append(m["val"][metric])
        say(
            f"fold {i + 1}/{k} (folds/{i}): {len(rows['train'])} training rows, "
            f"{len(rows['val'])} held out; "
            f"validation rmse {m['val']['rmse']:.6g}, r2 {m['val']['r2']:.4f} ({stopped})"
        )
    out = _summary(scores)
    say(
        f"cross-validation over {k} folds: rmse {out['rmse']['mean']:.6g} "
        f"(std {out['rmse']['std']:.3g}), r2 {out['r2']['mean']:.4f} (std {out['r2']['std']:.3g})"
    )
    return out


def _fold_config(cfg: DictConfig) -> DictConfig:
    """The run's config for one fold: no folds of its own, no plots, progress or trace, trained
    afresh with a checkpoint only at the end."""
    return OmegaConf.merge(
        cfg,
        {
            "data": {"folds": 0},
            "logger": {"plots": False, "progress": "off", "print_trace": False},
            "trainer": {"resume": False, "checkpoint_every": 0},
        },
    )


def _clear_fold_dir(fold_dir: Path, i: int) -> None:
    """Remove fold ``i``'s directory of an earlier run (process 0), all processes waiting."""
    # a fold is trained afresh each time, so nothing of an earlier one may stay beside it
    if jax.process_index() == 0 and fold_dir.exists():
        shutil.rmtree(fold_dir)
    if jax.process_count() > 1:  # no process writes the fold before it is gone
        multihost_utils.sync_global_devices(f"cross-validation fold {i}")


def _interrupted_in_fold(
    exc: Interrupted | KeyboardInterrupt, i: int, workdir: Path
) -> Interrupted:
    """``exc`` (a signal in fold ``i``: the fold's fit stopped, or a KeyboardInterrupt around
    it, :class:`~errors.Stop` naming its signal; a bare one is SIGINT) as the error to raise:
    it says to resume the whole run in ``workdir``, with the signal's exit code and ``exc``'s
    ``at_once``."""
    import signal

    signum = getattr(exc, "signum", signal.SIGINT)
    # the folds are trained afresh: the run to continue is the whole one
    return Interrupted(
        f"stopped by {signal.Signals(signum).name} in cross-validation fold {i}; to finish, "
        f"{resume_advice(workdir)} (the main run resumes from its checkpoint, the folds are "
        "trained again)",
        signum,
        getattr(exc, "at_once", False),
    )


def _summary(scores: dict[str, list[float]]) -> dict:
    """``{metric: {"mean", "std" (ddof=0), "folds"}}`` of each metric's per-fold values."""
    return {
        metric: {
            "mean": float(np.mean(v)),
            "std": float(np.std(v)),
            "folds": [float(x) for x in v],
        }
        for metric, v in scores.items()
    }


def train_fold(
    fold_cfg: DictConfig, fold_dir: Path, rows: dict, n_rows: int, calls: dict, fit: Callable
) -> tuple[dict, str]:
    """One fold as a run of its own in ``fold_dir`` (which predict.py can read), its training
    rows padded to ``n_rows``: its metrics and why it stopped. ``calls``: the compiled calls
    by shape, shared with the other folds."""
    from training.build import build, new_run_id
    from training.report import evaluate

    with contextlib.redirect_stdout(io.StringIO()):  # the main run printed the same
        run, params, opt_state = build(fold_cfg, fold_dir, rows)
    try:
        run.out.preprocessing["run_id"] = new_run_id()
        if run.settings.writes:
            write_json(fold_dir / "preprocessing.json", run.out.preprocessing)
        mesh = run.rows.mesh
        padded = _pad(run.rows, n_rows if mesh is None else padded_rows(mesh, n_rows))
        tb = TensorBoardLog(fold_dir, fold_cfg.logger.tensorboard and run.settings.writes)
        run = dataclasses.replace(run, rows=padded, out=dataclasses.replace(run.out, tb=tb))
        loader = run.settings.loader  # a full batch's size is its fold's rows: not a shape
        shape = (padded.X.shape, loader.steps_per_epoch, loader.full_batch or loader.batch_size)
        shape += (run.model.objective,)  # Huber's delta is in each fold's own scaled units
        with contextlib.redirect_stdout(io.StringIO()):
            params, opt_state, at = fit(
                run, params, opt_state, Progressed(), calls.setdefault(shape, {})
            )
            m = evaluate(run, params, at)
        if run.settings.writes:
            write_json(fold_dir / "metrics.json", m)
        return m, at.stopped
    finally:
        run.out.tb.close()
        run.out.ckpt.close()
