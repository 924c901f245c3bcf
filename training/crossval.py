"""Cross-validation (``data.folds=k``): k fits, each with one fold of the rows held out.

The folds cut the rows the run trains and validates on (every row but the test rows) in the
order of the seed's permutation, the one :func:`data.preprocess.split_rows` draws. Each fold is
a run of its own in ``folds/<i>/`` (TensorBoard events, checkpoint, ``preprocessing.json``,
``metrics.json``), scaled on its own training rows. The folds' training rows are padded to one
row count with rows of weight 0, which no loss or gradient counts, so every fold runs the
compiled calls of the first: same shapes, no recompiling.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from omegaconf import DictConfig, OmegaConf

from data.preprocess import fold_rows
from errors import Interrupted
from training.devices import padded_rows
from training.logs import TensorBoardLog, write_json

METRICS = ("mse", "rmse", "mae", "r2")


def _pad(s, rows: int) -> None:
    """Pad the session's training rows to ``rows`` with rows of weight 0 (``w`` always set, so
    every fold's compiled call takes the same arguments). Runs on every process: the rows may
    be sharded over all of them."""
    sharding = None if s.mesh is None else s.X.sharding

    def pad(X, y, w):
        extra = rows - X.shape[0]
        w = jnp.ones(X.shape[0], X.dtype) if w is None else w
        return (
            jnp.pad(X, ((0, extra), (0, 0))),
            jnp.pad(y, (0, extra)),
            jnp.pad(w, (0, extra)),
        )

    out = None if sharding is None else (sharding, s.y.sharding, s.y.sharding)
    s.X, s.y, s.w = jax.jit(pad, out_shardings=out)(s.X, s.y, s.w)


def cross_validate(cfg: DictConfig, workdir: Path, n: int) -> dict:
    """Train and evaluate ``cfg.data.folds`` folds of the ``n`` rows of the data in
    ``workdir/folds/<i>/``; return
    ``{metric: {"mean", "std", "folds": [...]}}`` of the validation rows' ``mse``, ``rmse``,
    ``mae`` and ``r2`` in the target's units (``std`` over folds with ``ddof=0``)."""
    from training.run import Progressed, evaluate, fit, setup

    k = cfg.data.folds
    fold_cfg = OmegaConf.merge(
        cfg,
        {
            "data": {"folds": 0},
            "logger": {"plots": False, "progress": "off", "print_trace": False},
            "trainer": {"resume": False, "checkpoint_every": 0},
        },
    )
    say = print if jax.process_index() == 0 else (lambda *a, **kw: None)
    d = cfg.data
    splits = fold_rows(n, k, d.val_fraction, d.test_fraction, cfg.seed)
    n_rows = max(len(f["train"]) for f in splits)
    scores: dict[str, list[float]] = {m: [] for m in METRICS}
    calls = shape = None
    for i, rows in enumerate(splits):
        fold_dir = workdir / "folds" / str(i)
        # a fold is trained afresh each time, so nothing of an earlier one may stay beside it
        if jax.process_index() == 0 and fold_dir.exists():
            shutil.rmtree(fold_dir)
        if jax.process_count() > 1:  # no process writes the fold before it is gone
            multihost_utils.sync_global_devices(f"cross-validation fold {i}")
        with contextlib.redirect_stdout(io.StringIO()):  # the main run printed the same
            s, params, opt_state = setup(fold_cfg, fold_dir, rows)
        try:
            # a fold's directory is a run of its own, which predict.py can read
            from training.run import new_run_id

            s.preprocessing["run_id"] = new_run_id()
            if s.writes:
                write_json(fold_dir / "preprocessing.json", s.preprocessing)
            _pad(s, n_rows if s.mesh is None else padded_rows(s.mesh, n_rows))
            loader = s.loader  # a full batch's size is its fold's rows: not a shape
            this = (s.X.shape, loader.steps_per_epoch, loader.full_batch or loader.batch_size)
            this += (s.objective,)  # Huber's delta is in each fold's own scaled units
            if this == shape:  # the same shapes and optimizer schedule as the first fold
                s.calls = calls
            s.tb = TensorBoardLog(fold_dir, cfg.logger.tensorboard and s.writes)
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    params, opt_state, at = fit(s, params, opt_state, Progressed())
                    m = evaluate(s, params, at)
            except Interrupted as exc:
                # the folds are trained afresh: the run to continue is the whole one
                stopped = Interrupted(
                    f"stopped by a signal in cross-validation fold {i}; to finish, run the same "
                    f"command with trainer.resume=true hydra.run.dir={workdir} (the main run "
                    "resumes from its checkpoint, the folds are trained again)"
                )
                stopped.exit_code = exc.exit_code
                stopped.at_once = getattr(exc, "at_once", False)
                raise stopped from None
            if calls is None:
                calls, shape = s.calls, this
            if s.writes:
                write_json(fold_dir / "metrics.json", m)
        finally:
            s.tb.close()
            s.ckpt.close()
        for metric in METRICS:
            scores[metric].append(m["val"][metric])
        say(
            f"fold {i + 1}/{k} (folds/{i}): {len(rows['train'])} training rows, "
            f"{len(rows['val'])} held out; "
            f"validation rmse {m['val']['rmse']:.6g}, r2 {m['val']['r2']:.4f} ({at.stopped})"
        )
    out = {
        metric: {
            "mean": float(np.mean(v)),
            "std": float(np.std(v)),
            "folds": [float(x) for x in v],
        }
        for metric, v in scores.items()
    }
    say(
        f"cross-validation over {k} folds: rmse {out['rmse']['mean']:.6g} "
        f"(std {out['rmse']['std']:.3g}), r2 {out['r2']['mean']:.4f} (std {out['r2']['std']:.3g})"
    )
    return out
