"""``train_and_evaluate(cfg, workdir)``: the whole run, readable top to bottom.

The model is split once into a graph definition and a pure dict of parameters; every compiled
call (``training/loop.py``) works on that dict. Calls are queued one ahead, so the host shuffles
the next block and writes TensorBoard while the device trains. Checkpoints are written at call
boundaries, which are the same in a resumed run as in an uninterrupted one. With several
devices or processes the training rows are sharded over a ``data`` mesh (``training/devices.py``)
and only process 0 writes files other than checkpoints.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from omegaconf import DictConfig, OmegaConf

from data.loaders import Loader, make_loader
from data.preprocess import Prepared, prepare_table
from data.sources import load_table
from errors import DivergenceError, Interrupted, UserError
from models.build import build_model
from training import plots
from training.checkpoint import Checkpoints
from training.cli import other_settings, refuse_another_run, run_differences
from training.compilation_cache import enable_compilation_cache
from training.config import validate
from training.devices import (
    init_distributed,
    local_rows,
    make_mesh,
    place_rows,
    replicate,
    replicated,
    to_host,
)
from training.evaluate import (
    coefficient_gap,
    coefficients,
    linear_inference,
    objective_minimum,
    regression_metrics,
    residual_moments,
)
from training.logs import (
    Progress,
    TensorBoardLog,
    fmt,
    log_steps,
    param_columns,
    print_trace,
    write_json,
)
from training.loop import Runner, log_period, pipelined, plan_blocks, record_positions
from training.objectives import build_objective
from training.optim import (
    GRADIENT_DESCENT,
    bound_formula,
    build_optimizer,
    choose_auto,
    default_epochs,
    method_of,
    momentum_of,
    stable_bound,
)
from training.stability import hessian_spectrum, max_row_norm_sq, trainable_indices

SPLITS = ("train", "val", "test")
CONVERGED_GAP = 1e-3  # the largest relative coefficient gap to least squares of a converged fit


def pick_device(name: str) -> jax.Device:
    if name == "auto":
        return jax.devices()[0]
    try:
        return jax.devices(name)[0]
    except RuntimeError:
        have = sorted({d.platform for d in jax.devices()})
        raise UserError(
            f"bad config value trainer.device={name!r}: no {name} device here; "
            f"this machine has {', '.join(have)} (use trainer.device=auto)"
        ) from None


@dataclass
class Progressed:
    """Where training stands: what a checkpoint saves besides the arrays."""

    step: int = 0
    epoch: int = 0
    epoch_step: int = 0  # steps of `epoch` already done (an epoch cut into several calls)
    ref_loss: float = math.nan
    epoch_loss_sum: float = 0.0
    last_epoch_loss: float = math.inf
    stopped: str = "epochs"
    trace_W: list = field(default_factory=list)
    trace_loss: list = field(default_factory=list)

    SAVED = ("step", "epoch", "epoch_step", "ref_loss", "epoch_loss_sum", "last_epoch_loss")

    def meta(self) -> dict:  # floats as repr: JSON has no NaN or infinity
        return {
            k: repr(v) if isinstance(v, float) else v
            for k, v in ((k, getattr(self, k)) for k in self.SAVED)
        }

    @classmethod
    def from_meta(cls, meta: dict) -> Progressed:
        return cls(
            **{k: float(v) if isinstance(v, str) else v for k, v in meta.items() if k in cls.SAVED}
        )


@dataclass
class Session:
    """Everything one run holds fixed while it trains."""

    cfg: DictConfig
    workdir: Path
    device: jax.Device
    mesh: Any  # a 1-D data mesh, or None on one device
    data: Prepared
    names: list[str]
    X: jax.Array  # the training rows on the device(s), scaled
    y: jax.Array
    w: jax.Array | None  # 0 for the padding rows of a sharded X
    n_train: int
    apply_fn: Any
    tx: Any
    lr_at: Any
    loader: Loader
    tb: TensorBoardLog
    ckpt: Checkpoints
    preprocessing: dict
    bound: Any  # Bound: the optimizer's stability bound (linear, full batch), or None
    ols: tuple[np.ndarray, float]  # the objective's minimum on the training rows, scaled
    linear: bool  # x @ W + b: the stability bound, coefficients and loss surface apply
    chosen: dict  # what optimizer.lr=auto (and momentum, epochs) chose: config key -> number
    calls: Any = None  # the compiled calls by shape, shared by cross-validation folds
    curves: dict = field(default_factory=lambda: {k: plots.History() for k in ("loss", "W", "val")})
    copies: bool = False  # per-sample on several processes: every device holds all the rows
    objective: Any = None  # training/objectives.py: the loss trained, in the scaled units

    @property
    def writes(self) -> bool:  # only process 0 writes TensorBoard, plots and metrics
        return jax.process_index() == 0


@contextlib.contextmanager
def stop_on_signals(at_once: str = "stopped by a second SIGINT"):
    """SIGTERM and SIGINT set a flag that the loop reads after each call, so the call in flight
    (about a second at most, ``training/loop.py`` ``call_cap``) finishes and a checkpoint is
    written before the run exits. A second SIGINT (Ctrl-C again) raises :class:`Interrupted`
    with the message ``at_once`` and exit status 130 where the run is, without a checkpoint;
    the callers' ``finally`` still flushes TensorBoard."""
    asked: list[int] = []

    def handler(signum, frame):
        if signum == signal.SIGINT and signal.SIGINT in asked:
            now = Interrupted(at_once)
            now.exit_code, now.at_once = 128 + signal.SIGINT, True
            raise now
        asked.append(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield asked
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def train_and_evaluate(cfg: DictConfig, workdir: str | Path) -> dict:
    """Train the configured model; write TensorBoard events, checkpoints, plots, the saved
    preprocessing and ``metrics.json`` to ``workdir``. Returns the metrics."""
    validate(cfg)
    enable_compilation_cache(cfg.trainer.compilation_cache)
    if not cfg.trainer.resume:  # before any process writes: no process has connected yet
        refuse_another_run(Path(workdir))
    init_distributed(cfg.trainer.distributed)
    t_start = time.perf_counter()
    s, params, opt_state = setup(cfg, Path(workdir))
    try:
        at, run_id = Progressed(), None
        if cfg.trainer.resume:
            params, opt_state, at, run_id = resume(s, params, opt_state)
        # the run's id, in preprocessing.json and every checkpoint, ties the two together
        s.preprocessing["run_id"] = run_id or new_run_id()
        if s.writes:
            write_json(s.workdir / "preprocessing.json", s.preprocessing)
        # a resumed run drops every point an earlier attempt logged past its checkpoint (from
        # step 0 when none was written), so TensorBoard shows each step once
        s.tb = TensorBoardLog(
            s.workdir,
            cfg.logger.tensorboard and s.writes,
            purge_step=at.step if cfg.trainer.resume else None,
        )
        params, opt_state, at = fit(s, params, opt_state, at)
        metrics = evaluate(s, params, at)
        if cfg.data.folds:
            from training.crossval import cross_validate

            n = sum(len(r) for r in s.data.rows.values())
            metrics["cv"] = cross_validate(cfg, s.workdir, n)
        metrics.update(
            wall_time_s=time.perf_counter() - t_start,
            platform=s.device.platform,
            device_count=jax.device_count(),
            process_count=jax.process_count(),
            stable_lr_bound=s.bound.lr if s.bound else None,
            chosen=s.chosen,
        )
        if s.writes:
            write_json(s.workdir / "metrics.json", metrics)
        s.tb.hparams(
            hparams_of(cfg, metrics.get("chosen", {})),
            {f"hparams/{k}": v for k, v in flat_metrics(metrics).items()},
            at.step,
        )
        return metrics
    finally:
        s.tb.close()
        s.ckpt.close()


def setup(cfg: DictConfig, workdir: Path, rows: dict | None = None) -> tuple[Session, Any, Any]:
    """Data on the device(s), the model split into arrays, the optimizer, the output files.
    ``rows``: the train / val / test row indices of a cross-validation fold."""
    workdir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.trainer.device)
    per_sample = cfg.loader.name == "per_sample"
    # several processes must all take part in every compiled call: each device runs the
    # sequential per-sample SGD on its own copy of the rows (one process: on one device)
    copies = per_sample and jax.process_count() > 1
    mesh = make_mesh(device.platform, sharded=not per_sample or copies)
    say = print if jax.process_index() == 0 else (lambda *a, **k: None)
    say(
        f"platform {device.platform}, {jax.device_count()} device(s), "
        f"{jax.process_count()} process(es)"
    )
    if copies:
        say("per-sample SGD is sequential: every device runs it on a copy of the rows")
    elif per_sample and len(jax.devices(device.platform)) > 1:
        say("per-sample SGD is sequential: it runs on one device")

    # data: split, scaled on the training rows, the training rows moved to the device(s)
    single = mesh is None and jax.process_count() == 1
    d = cfg.data
    # several processes, synthetic rows used as drawn: each process draws only its own shard
    mine = None
    if (
        jax.process_count() > 1
        and d.name == "synthetic"
        and not d.standardize
        and d.val_fraction == 0
        and d.test_fraction == 0
        and not copies
        and rows is None
    ):
        mine = local_rows(mesh, d.n_samples)
        print(
            f"process {jax.process_index()}: draws rows {mine[0]}..{mine[1] - 1} of {d.n_samples}"
        )
    table = load_table(d, device if single else None, rows=mine, seed=cfg.seed)
    if table.encoding:
        from data.csv_source import Encoding

        described = Encoding.from_dict(table.encoding).describe()
        # no feature columns: b alone, the mean-price baseline
        described = described or "no feature columns; the model predicts the mean target"
        say(f"encoding of {table.source}: {described}")
    data = prepare_table(table, cfg.data, cfg.seed, rows)
    if cfg.data.folds and rows is None:  # too many folds: said before anything is trained
        from data.preprocess import fold_rows

        n_rows = sum(len(r) for r in data.rows.values())
        fold_rows(n_rows, cfg.data.folds, d.val_fraction, d.test_fraction, cfg.seed)
    names = table.feature_names
    X_train, y_train = data.X.pop("train"), data.y.pop("train")
    n_train = d.n_samples if mine else len(data.rows["train"])
    if copies:
        (X, y), w = replicate(mesh, device, (X_train, y_train)), None
    else:
        X, y, w = place_rows(mesh, device, X_train, y_train, n_train if mine else None)
    objective = build_objective(cfg.loss, data.scaling.y_scale)
    if mine:  # least squares and the training metrics need every process's rows
        ols = objective_minimum(X, y, objective, w, on_device=True)
        data.y_raw["train"] = to_host(jax.jit(lambda a: a, out_shardings=replicated(mesh))(y))
        data.y_raw["train"] = data.y_raw["train"][:n_train]
    else:
        ols = objective_minimum(X_train, y_train, objective)
    del X_train, y_train
    table.X = table.y = None  # the host forgets the training rows (10^7 of them are GBs)
    preprocessing = {
        "source": table.source,
        "target": table.target_name,
        "feature_names": names,
        "encoding": table.encoding,
        "scaling": data.scaling.to_dict(),
        "log_target": data.log_target,
    }  # written with the run's id once resume has said which run this is

    # model and optimizer: split once, then plain dicts of arrays
    model = build_model(cfg.model, len(names), cfg.seed)
    graphdef, state = nnx.split(model)
    params = replicate(mesh, device, nnx.to_pure_dict(state))

    def apply_fn(p, x):
        return nnx.merge(graphdef, p)(x)

    lc = cfg.loader
    loader = make_loader(lc.name, lc.batch_size, lc.shuffle, lc.drop_last, n_train, cfg.seed)
    if mesh is not None and not copies and not loader.full_batch and loader.batch_size % mesh.size:
        raise UserError(
            f"bad config value loader.batch_size={loader.batch_size}: it must be a "
            f"multiple of the {mesh.size} devices, which share every batch"
        )
    o, linear = cfg.optimizer, is_linear(params, names)
    frozen = list(o.freeze)
    l2 = 0.0 if "W" in frozen else objective.l2  # the ridge penalty's curvature, over W
    spectrum = functools.cache(
        lambda: hessian_spectrum(X, w, n_train, trainable_indices(len(names), frozen), l2)
    )
    chosen = resolve_auto(cfg, loader, linear, spectrum, X, mesh, say, l2)
    tx, lr_at = build_optimizer(cfg.optimizer, params, cfg.trainer.epochs * loader.steps_per_epoch)
    opt_state = tx.init(params)
    bound = stability(cfg, linear, loader.full_batch, spectrum)
    if bound and o.lr > bound.lr:
        say(
            f"warning: optimizer.lr={o.lr} is above {bound.lr:.4g}, {bound.what}; expect "
            "divergence (optimizer.lr=auto takes a stable step from the data)"
        )
    if cfg.logger.plots and jax.process_index() == 0:
        plots.preload()
    ckpt = Checkpoints(workdir / "checkpoints", cfg.trainer.keep_checkpoints)
    session = Session(
        cfg,
        workdir,
        device,
        mesh,
        data,
        names,
        X,
        y,
        w,
        n_train,
        apply_fn,
        tx,
        lr_at,
        loader,
        TensorBoardLog(workdir, False),
        ckpt,
        preprocessing,
        bound,
        ols,
        linear,
        chosen,
        copies=copies,
        objective=objective,
    )
    return session, params, opt_state


@dataclass
class Bound:
    """The largest stable constant step of the optimizer used, and how to say what it is."""

    lr: float
    what: str


def stability(cfg: DictConfig, linear: bool, full_batch: bool, spectrum) -> Bound | None:
    """The stability bound of the configured gradient-descent method over the trainable
    parameters of a linear model trained full batch (``training/optim.py``); None otherwise."""
    o = cfg.optimizer
    method = method_of(o)
    if not (linear and full_batch and method):
        return None
    spec, m = spectrum(), momentum_of(o)
    frozen = f", {', '.join(o.freeze)} frozen" if o.freeze else ""
    return Bound(
        stable_bound(method, spec.L, m),
        f"the largest stable full-batch learning rate of {method} on this data "
        f"({bound_formula(method, m)}, lambda_max={spec.L:.4g} the largest eigenvalue of the "
        f"loss's Hessian over the trainable parameters{frozen})",
    )


def resolve_auto(
    cfg: DictConfig, loader: Loader, linear: bool, spectrum, X, mesh, say, l2: float = 0.0
) -> dict:
    """Replace ``trainer.epochs=auto``, ``optimizer.lr=auto`` and ``optimizer.momentum=auto`` in
    ``cfg`` by the values chosen for these data (``training/optim.py``), print them once, and
    return them as ``{config key: number}`` for ``metrics.json``."""
    o = cfg.optimizer
    frozen = list(o.freeze)
    choice = choose_auto(
        o,
        linear,
        loader.full_batch,
        spectrum,
        lambda: max_row_norm_sq(X, mesh, "W" not in frozen, "b" not in frozen),
        l2,
    )
    chosen = dict(choice.chosen)
    if o.momentum == "auto" and "optimizer.momentum" not in chosen:
        o.momentum = None  # sgd's auto momentum where the Hessian does not choose one: none
    if cfg.trainer.epochs == "auto":
        chosen["trainer.epochs"] = default_epochs(loader.full_batch)
    for key, value in chosen.items():
        OmegaConf.update(cfg, key, value)
    if choice.line:
        say(choice.line)
    return chosen


def is_linear(params: dict, names: list[str]) -> bool:
    """Whether the parameters are those of ``x @ W + b``: a weight per feature and a bias."""
    return set(params) == {"W", "b"} and np.shape(params["W"]) == (len(names),)


def new_run_id() -> str:
    """A fresh random id (uuid4, hex), the same in every process: process 0's."""
    raw = np.frombuffer(uuid.uuid4().bytes, np.uint8)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        raw = np.asarray(multihost_utils.broadcast_one_to_all(raw), np.uint8)
    return uuid.UUID(bytes=raw.tobytes()).hex


def resume(s: Session, params, opt_state):
    """The newest complete checkpoint that can be read (a corrupt one is skipped, warned of):
    parameters, optimizer state, progress and the run's id (None before any checkpoint).

    Raises :class:`UserError` when the checkpoint is of another run: other data (columns,
    target, transforms) or other settings under :data:`RUN_DEFINING`."""
    ckpt = s.ckpt

    def unreadable(step: int, exc: Exception) -> None:  # a damaged one: try the one before
        print(
            f"warning: checkpoint {ckpt.directory / str(step)} cannot be read "
            f"({type(exc).__name__}); trying an earlier one"
        )

    for step in reversed(ckpt.steps()):
        try:
            meta = ckpt.restore_meta(step)
        except Exception as exc:  # noqa: BLE001 - any damage looks the same to a user
            unreadable(step, exc)
            continue
        refuse_another_runs_checkpoint(s, meta)  # outside the try: a mismatch is an error
        try:
            state, meta = ckpt.restore(step, {"params": params, "opt_state": opt_state})
        except Exception as exc:  # noqa: BLE001 - any damage looks the same to a user
            unreadable(step, exc)
            continue
        at = Progressed.from_meta(meta["progress"])
        print(f"resuming from {ckpt.directory / str(step)}: epoch {at.epoch}, step {at.step}")
        run_id = meta.get("preprocessing", {}).get("run_id")
        return state["params"], state["opt_state"], at, run_id
    print(f"trainer.resume=true but no checkpoint in {ckpt.directory}: starting from scratch")
    return params, opt_state, Progressed(), None


def refuse_another_runs_checkpoint(s: Session, meta: dict) -> None:
    """Raise :class:`UserError` naming the first difference between the run in ``s.workdir``
    (its checkpoint's ``meta``) and this one, in settings (:func:`training.cli.run_differences`)
    or in the data they made (columns, target, transforms, scaling): everything in a run
    directory belongs to one run, so a resume with other data or settings would mix two."""
    saved_prep = {k: v for k, v in meta.get("preprocessing", {}).items() if k != "run_id"}
    mine_prep = {k: v for k, v in s.preprocessing.items() if k != "run_id"}
    differences = run_differences(
        meta.get("config", {}), OmegaConf.to_container(s.cfg, resolve=True)
    )
    if not differences and saved_prep != mine_prep:
        first = next(
            k
            for k in sorted(set(saved_prep) | set(mine_prep))
            if saved_prep.get(k) != mine_prep.get(k)
        )
        differences = [(f"the data's {first}", "its own", "another")]
    if differences:
        raise other_settings(s.workdir, *differences[0])


def fit(s: Session, params, opt_state, at: Progressed):
    """The training loop: one compiled call per block, logged and checkpointed after it."""
    cfg, loader = s.cfg, s.loader
    tr, every = cfg.trainer, cfg.logger.every_n_steps
    # decided from the config alone: every process must plan the same calls
    traced = cfg.logger.print_trace and len(s.names) == 1
    if traced and every not in (1, "auto"):
        raise UserError(
            "bad config value logger.print_trace=true: the trace needs logger.every_n_steps=1"
        )
    trace = traced and s.writes
    # the trace needs every step; `auto` thins only runs of more than LOG_POINTS steps
    every, dense_epochs = log_period(
        1 if traced else every, tr.epochs * loader.steps_per_epoch, loader.steps_per_epoch
    )
    runner = Runner(
        s.apply_fn,
        s.tx,
        loader,
        s.X,
        s.y,
        every,
        tr.tol,
        tr.divergence_factor,
        s.w,
        s.mesh,
        shard_batches=not s.copies,
        objective=s.objective,
    )
    if s.calls is not None:  # a fold of the same shapes: no recompiling
        runner.compiled = s.calls
    s.calls = runner.compiled
    max_steps = tr.max_steps_per_call
    if tr.tol > 0 and not loader.full_batch:  # the epoch-level tol test needs epoch-end calls
        max_steps = min(max_steps, loader.steps_per_epoch)
    blocks = plan_blocks(
        loader,
        at.epoch,
        tr.epochs,
        max_steps,
        tr.checkpoint_every,
        align=every,
        first_step=at.epoch_step,
        n_features=int(np.prod(s.X.shape[1:])),
        dense_epochs=dense_epochs,
    )
    val = ValLog(s)
    mode = "off" if trace or not s.writes else cfg.logger.progress
    progress = Progress(mode, tr.epochs, loader.batch_size)
    with stop_on_signals(
        "stopped at once by a second SIGINT, without a checkpoint; to continue from the newest "
        f"checkpoint in {s.ckpt.directory} (if there is none, from the start), run the same "
        f"command with trainer.resume=true hydra.run.dir={s.workdir}"
    ) as asked:
        for block, t0, out in pipelined(
            runner, blocks, params, opt_state, at.step, np.float32(at.ref_loss)
        ):
            # the one host sync of this call: its per-step values, read back together
            res = to_host(out._replace(params=None, opt_state=None))
            losses, taken, diverged = res.losses, int(res.taken), bool(res.diverged)
            stop = taken < losses.size  # converged or diverged inside the call
            n_valid = taken + 1 if stop and not diverged else taken
            positions = record_positions(runner.spec(block))
            positions = positions[positions < n_valid]
            end = to_host(out.params)
            recorded = log_block(s, t0, positions, res, end, n_valid, t0 + taken, at, trace)
            if diverged:
                raise divergence(s, t0 + taken, losses[taken])
            params, opt_state = out.params, out.opt_state
            at.step, at.ref_loss = t0 + taken, float(res.ref_loss)
            ends_epoch = block.stop == loader.steps_per_epoch
            if stop:
                at.epoch += taken // block.steps
            elif ends_epoch:
                at.epoch, at.epoch_step = block.epoch + block.epochs, 0
            else:
                at.epoch, at.epoch_step = block.epoch, block.stop
            val.log_block(block, t0, res, positions, recorded)
            progress.update(
                at.epoch, at.step, float(losses[n_valid - 1]), n_valid * loader.batch_size
            )
            if stop:
                at.stopped = "converged"
                break
            if tr.tol > 0 and not loader.full_batch:
                at.epoch_loss_sum += float(losses.sum(dtype=np.float64))
                if ends_epoch:  # stop when the epoch's mean loss changes by less than tol
                    mean = at.epoch_loss_sum / loader.steps_per_epoch
                    # the first epoch has no previous loss to compare (inf - x <= tol * inf)
                    change = abs(at.last_epoch_loss - mean)
                    if math.isfinite(change) and change <= tr.tol * abs(at.last_epoch_loss):
                        at.stopped = "converged"
                        break
                    at.epoch_loss_sum, at.last_epoch_loss = 0.0, mean
            if tr.checkpoint_every and ends_epoch and at.epoch % tr.checkpoint_every == 0 or asked:
                save(s, at, params, opt_state)
            if asked:
                interrupted = Interrupted(
                    f"stopped by {signal.Signals(asked[0]).name} at step {at.step}; checkpoint "
                    f"saved in {s.ckpt.directory}; to continue, run the same command with "
                    f"trainer.resume=true hydra.run.dir={s.workdir}"
                )
                interrupted.exit_code = 128 + asked[0]
                raise interrupted
    save(s, at, params, opt_state)
    progress.close()
    return params, opt_state, at


def log_block(
    s: Session,
    t0: int,
    positions,
    res,
    params_end: dict,
    n_valid: int,
    end_step: int,
    at: Progressed,
    trace: bool,
) -> dict:
    """TensorBoard, the plots' histories and the walkthrough's trace for one call's steps."""
    losses = res.losses
    recorded = log_steps(s.tb, t0, positions, losses, res.recorded, s.names, s.lr_at)
    s.curves["loss"].add(t0 + positions, losses[positions])
    W_end = params_end.get("W")
    if np.ndim(recorded.get("W")) == 2:
        s.curves["W"].add(t0 + positions, recorded["W"])
    # a call that diverged ends on non-finite parameters: nothing to draw
    if np.ndim(W_end) == 1 and np.size(W_end) > 1 and np.isfinite(W_end).all():
        s.tb.histogram("params/W", W_end, end_step)
    if trace:
        W = np.concatenate([recorded["W"].reshape(-1), np.ravel(W_end)])
        print_trace(t0, W[: n_valid + 1], losses[:n_valid])
        at.trace_W.append(W[:n_valid])
        at.trace_loss.append(losses[:n_valid])
    return recorded


def divergence(s: Session, step: int, loss: float) -> DivergenceError:
    lr = s.cfg.optimizer.lr
    if s.bound:
        advice = f"{s.bound.what} is {s.bound.lr:.4g}; set optimizer.lr=auto or below that"
    else:
        advice = f"set optimizer.lr below {lr:.4g}"
    return DivergenceError(
        f"training diverged at step {step}: the loss became {fmt(loss)} with "
        f"optimizer.lr={lr:.4g}; {advice}"
    )


def save(s: Session, at: Progressed, params, opt_state) -> None:
    """Checkpoint the state at ``at.step`` (every process takes part; orbax coordinates)."""
    if at.step in s.ckpt.steps():
        return
    s.ckpt.save(
        at.step,
        {"params": params, "opt_state": opt_state},
        {
            "progress": at.meta(),
            "preprocessing": s.preprocessing,
            "config": OmegaConf.to_container(s.cfg, resolve=True),
        },
    )


class ValLog:
    """Validation metrics in the target's units, logged as training goes: at each epoch's end
    (full batch: at the recorded steps)."""

    MAX_POINTS = 1000  # per call, so a long full-batch call does not flood TensorBoard

    def __init__(self, s: Session) -> None:
        self.data, self.tb, self.loader, self.curve = s.data, s.tb, s.loader, s.curves["val"]
        self.X = s.data.X.get("val")
        self.enabled = self.X is not None and len(self.X) > 0 and s.tb.writer is not None
        self.predict = jax.jit(jax.vmap(s.apply_fn, in_axes=(0, None)))

    def log_block(self, block, t0: int, res, positions, recorded) -> None:
        if not self.enabled:
            return
        if self.loader.full_batch:
            stack, steps = recorded, t0 + positions
        elif block.stop == self.loader.steps_per_epoch:
            stack = res.epoch_params
            steps = t0 + block.steps * np.arange(1, block.epochs + 1)
        else:
            return
        pick = np.unique(
            np.linspace(0, len(steps) - 1, min(len(steps), self.MAX_POINTS)).astype(int)
        )
        preds = np.asarray(self.predict(jax.tree.map(lambda a: a[pick], stack), self.X))
        for row, step in zip(preds, np.asarray(steps)[pick], strict=True):
            m = regression_metrics(self.data.y_raw["val"], self.data.to_target_units(row))
            for k, v in m.items():
                self.tb.scalar(f"val/{k}", v, int(step))
            self.curve.add([int(step)], [m["mse"]])


def evaluate(s: Session, params, at: Progressed) -> dict:
    """Final metrics per split in the target's units, the coefficients in the user's units and
    the least-squares reference on the same rows."""
    data, names, tb = s.data, s.names, s.tb
    final = to_host(params)
    for tag, value in param_columns(final, names).items():
        tb.scalar(f"params/{tag}", value, at.step)
    if np.ndim(final.get("W")) == 1 and np.size(final["W"]) > 1:
        tb.histogram("params/W", final["W"], at.step)
    # the training rows' predictions, gathered from every device and process, padding dropped
    everywhere = replicated(s.mesh)
    pred_train = to_host(jax.jit(s.apply_fn, out_shardings=everywhere)(params, s.X))[: s.n_train]
    final_loss = float(
        to_host(
            jax.jit(
                lambda p, X, y, w: s.objective(p, s.apply_fn(p, X), y, w), out_shardings=everywhere
            )(params, s.X, s.y, s.w)
        )
    )
    tb.scalar("train/final_loss", final_loss, at.step)

    metrics: dict = {
        "final_loss": final_loss,
        "params": param_columns(final, names),
        "steps": at.step,
        "epochs": at.epoch,
        "stopped": at.stopped,
    }
    predicted = {}  # split -> predictions in the target's units, for the diagnostic plots
    for split in SPLITS:
        if len(data.rows[split]) == 0:
            continue
        pred = pred_train if split == "train" else np.asarray(s.apply_fn(final, data.X[split]))
        predicted[split] = data.to_target_units(pred)
        metrics[split] = regression_metrics(data.y_raw[split], predicted[split])
        for k, v in metrics[split].items():
            tb.scalar(f"metrics/{split}/{k}", v, at.step)

    if s.linear:
        coefs = coefficients(final["W"], final["b"], data.scaling, names)
        W_ols, b_ols = s.ols
        ols = coefficients(W_ols, b_ols, data.scaling, names)
        # least squares' weights in the same model, on the same (device) rows
        pred_ols = to_host(
            jax.jit(s.apply_fn, out_shardings=everywhere)(
                replicate(
                    s.mesh, s.device, {"W": W_ols.astype(np.float32), "b": np.float32(b_ols)}
                ),
                s.X,
            )
        )[: s.n_train]
        ols["r2"] = regression_metrics(data.y_raw["train"], data.to_target_units(pred_ols))["r2"]
        metrics.update(
            coefficients=coefs,
            reference=s.objective.reference_name(),  # what `ols` is: the trained objective's
            ols=ols,
            ols_gap={
                "max_rel_coefficient_diff": coefficient_gap(coefs, ols),
                "r2_diff": metrics["train"]["r2"] - ols["r2"],
            },
        )
        # every process: the training rows may be sharded over all of them
        G, H = residual_moments(params["W"], params["b"], s.X, s.y, s.w)
        converged = metrics["ols_gap"]["max_rel_coefficient_diff"] < CONVERGED_GAP
        metrics.update(
            linear_inference(
                G,
                H,
                s.n_train,
                coefs,
                data.scaling,
                names,
                converged=converged,
                estimator=s.objective.reference_label(),
            )
        )
        if len(names) > 1 and s.writes:
            print_coefficients(coefs, ols, metrics, s.objective.reference_label())
        # the walkthrough's trace is its own report (and stays as the README prints it)
        if s.writes and not (s.cfg.logger.print_trace and len(names) == 1):
            say_convergence(s.cfg, metrics, at, s.chosen, s.objective.reference_name())
    else:
        metrics.update(
            standard_errors=None,
            inference={"note": "standard errors are for the linear model x @ W + b only"},
        )

    if s.cfg.logger.plots:
        # what the plots need from the sharded rows is a collective: every process computes
        # it, process 0 draws (a call only process 0 makes waits for the others for ever)
        needs = plot_inputs(s, final)
        if s.writes:
            split = "val" if "val" in predicted else "train"
            draw_plots(s, final, at, needs, (split, data.y_raw[split], predicted[split]))

    if s.writes:
        shown = list(metrics["params"].items())[:8] if len(names) <= 8 else []
        print(
            f"done: {at.step} steps, {at.epoch} epochs ({at.stopped}), final loss "
            f"{fmt(final_loss)}" + "".join(f", {k} {fmt(v)}" for k, v in shown)
        )
    return metrics


R2_REACHED = 1e-4  # |R^2 - R^2 of least squares| at most this: least squares reached


def say_convergence(
    cfg: DictConfig, metrics: dict, at: Progressed, chosen: dict, ref: str = "least squares"
) -> None:
    """One line: whether the linear model reached least squares (``ref``: the reference of
    the objective trained, ``training/objectives.py``) on the training rows (their R^2 within
    ``R2_REACHED`` and, on a design of full rank, every coefficient within ``CONVERGED_GAP``
    relative); if not, a ``warning:`` with the gap and what to change."""
    r2, r2_ols = metrics["train"]["r2"], metrics["ols"]["r2"]
    if not (np.isfinite(r2) and np.isfinite(r2_ols)):
        return
    coef = metrics["ols_gap"]["max_rel_coefficient_diff"]
    gap = (
        f"R^2 {r2:.6f} against {ref}'s {r2_ols:.6f}, largest relative coefficient "
        f"difference {coef:.2e}"
    )
    # on a design of full rank the coefficients are unique and must agree too; on a
    # rank-deficient one only the fit is (the coefficients' gap is along aliased columns)
    aliased = bool(metrics.get("inference", {}).get("aliased"))
    if abs(r2 - r2_ols) <= R2_REACHED and (aliased or coef < CONVERGED_GAP):
        print(f"reached {ref}: {gap}")
        return
    o, tr = cfg.optimizer, cfg.trainer
    if o.freeze:  # least squares over every parameter is not this model's optimum
        print(f"{ref} over every parameter, with {', '.join(o.freeze)} frozen: {gap}")
        return
    if at.stopped == "converged":
        tol = (
            "trainer.tol=0" if cfg.loader.name != "full_batch" else f"trainer.tol={tr.tol / 100:g}"
        )
        print(
            f"warning: stopped by trainer.tol={tr.tol:g} before reaching {ref}: {gap}; "
            f"rerun with {tol}"
        )
        return
    more = f"trainer.epochs={10 * tr.epochs}"
    if cfg.loader.name != "full_batch":
        advice = (
            f"a constant step on {cfg.loader.name} batches ends in noise around it, of a size "
            f"in proportion to the step: rerun with loader=full_batch, or with "
            f"optimizer.lr={o.lr / 10:.3g} {more}"
        )
    elif method_of(o) == GRADIENT_DESCENT:
        advice = (
            f"rerun with {more}, or with optimizer=nesterov (optimizer.lr=auto and "
            "optimizer.momentum=auto take both from the data)"
        )
    else:
        auto = "" if "optimizer.lr" in chosen else " or optimizer.lr=auto"
        advice = f"rerun with {more}{auto}"
    print(f"warning: stopped after {at.epoch} epochs before reaching {ref}: {gap}; {advice}")


def plot_inputs(s: Session, final: dict) -> dict:
    """The device values the plots read, computed on every process: the walkthrough's rows
    (gathered whole) and the loss surface's two weights and moments."""
    needs: dict = {}
    if len(s.names) == 1 and s.cfg.logger.print_trace:  # the walkthrough's plots
        whole = jax.jit(lambda a: a, out_shardings=replicated(s.mesh))
        needs["X"], needs["y"] = (to_host(whole(a))[: s.n_train] for a in (s.X, s.y))
    W = final.get("W")
    if s.linear and len(W) >= 2:
        chosen = list(s.cfg.logger.plot_weights)
        unknown = [c for c in chosen if c not in s.names]
        if len(chosen) != 2 or unknown:
            if chosen and s.writes:
                print(
                    f"warning: logger.plot_weights={chosen} needs two of {s.names}; "
                    "plotting the two largest weights"
                )
            chosen = [s.names[k] for k in np.argsort(-np.abs(W))[:2]]
        i, j = (s.names.index(c) for c in chosen)
        needs["surface"] = (chosen, i, j, surface_moments(s, final, i, j))
    return needs


def draw_plots(s: Session, final: dict, at: Progressed, needs: dict, diagnostics=None) -> None:
    """PNGs in the run directory, the same figures as TensorBoard images (``plots/*``), from
    host values only (``needs``: :func:`plot_inputs`), so that process 0 alone can draw.
    ``diagnostics``: ``(split, actual, predicted)`` in the target's units for the predicted
    against actual and residual plots."""
    figs = {}
    if diagnostics is not None:
        split, actual, pred = diagnostics
        figs["predicted_vs_actual"], figs["residuals"] = plots.diagnostic_plots(
            s.workdir,
            actual,
            pred,
            "validation" if split == "val" else "training",
            s.preprocessing["target"] or "target",
        )
    if "X" in needs and at.trace_W:  # the walkthrough's two plots
        figs["loss_vs_W"], figs["trajectory"] = plots.walkthrough_plots(
            s.workdir,
            needs["X"],
            needs["y"],
            float(np.ravel(final["b"])[0]),
            np.concatenate(at.trace_W),
            np.concatenate(at.trace_loss),
        )
    if s.curves["loss"].steps:
        figs["loss_curves"] = plots.loss_curves(s.workdir, s.curves["loss"], s.curves["val"])
    W = final.get("W")
    if "surface" in needs:
        chosen, i, j, moments = needs["surface"]
        _, path = s.curves["W"].arrays()
        path = path[:, [i, j]] if len(path) else np.zeros((0, 2))
        figs["loss_surface"] = plots.loss_surface(
            s.workdir, moments, (chosen[0], chosen[1]), (float(W[i]), float(W[j])), path
        )
    for name in figs:  # each figure was drawn once, into its PNG: TensorBoard gets those bytes
        s.tb.png(f"plots/{name}", (s.workdir / f"{name}.png").read_bytes(), at.step)


def surface_moments(s: Session, final: dict, i: int, j: int) -> dict:
    """The six moments of the training rows that give the loss over (W_i, W_j) exactly."""

    def moments(p, X, y, w):
        r = X @ p["W"] + p["b"] - y
        wt = jnp.ones_like(y) if w is None else w
        n = jnp.sum(wt)
        xi, xj = X[:, i], X[:, j]
        return {
            k: jnp.sum(wt * v) / n
            for k, v in (
                ("rr", r * r),
                ("ri", r * xi),
                ("rj", r * xj),
                ("ii", xi * xi),
                ("jj", xj * xj),
                ("ij", xi * xj),
            )
        }

    everywhere = replicated(s.mesh)
    p = replicate(s.mesh, s.device, {k: np.asarray(v, np.float32) for k, v in final.items()})
    out = jax.jit(moments, out_shardings=everywhere)(p, s.X, s.y, s.w)
    return {k: float(v) for k, v in to_host(out).items()}


def print_coefficients(coefs: dict, ols: dict, metrics: dict, ref: str = "least squares") -> None:
    """The coefficient table: gradient descent beside least squares, with the classical and
    HC1 (White) standard errors, the classical t statistic and its two-sided p-value."""
    width = max(len(k) for k in coefs)
    se, t, pv = metrics["standard_errors"], metrics["t_statistics"], metrics["p_values"]
    print(
        f"{'coefficient':<{width}}  {'gradient descent':>16}  {ref:>14}  rel diff"
        f"  {'std error':>10}  {'HC1 s.e.':>10}  {'t':>7}  {'P>|t|':>8}"
    )
    for k, v in coefs.items():
        rel = abs(v - ols[k]) / max(abs(ols[k]), 1e-300)
        stats = "  (n/a)"
        if se[k] is not None:
            stats = (
                f"  {se[k]['classical']:>10.6g}  {se[k]['hc1']:>10.6g}  "
                f"{t[k]['classical']:>7.3f}  {pv[k]['classical']:>8.2g}"
            )
        print(f"{k:<{width}}  {v:>16.6g}  {ols[k]:>14.6g}  {rel:.2e}{stats}")
    gap = metrics["ols_gap"]
    print(
        f"largest relative coefficient difference {gap['max_rel_coefficient_diff']:.2e}; "
        f"R^2 {metrics['train']['r2']:.6f} ({ref} {ols['r2']:.6f})"
    )
    info = metrics["inference"]
    if info["note"] and info["note"].startswith("gradient descent has not converged"):
        # not converged: the run's one warning line (say_convergence) says what to change
        print(f"standard errors: {info['note']}")
    elif info["note"]:
        print(f"warning: standard errors: {info['note']}")
    else:
        print(
            f"standard errors from {info['n']} training rows, {info['df_resid']} residual "
            "degrees of freedom; p-values from the t distribution"
        )


def objective(metrics: dict | None) -> float:
    """What a hyperparameter search minimises: the folds' mean validation RMSE with
    ``data.folds``, else the validation RMSE, in the target's units; infinity for a failed run
    (``None``) or one with no validation rows, which Optuna ranks last without stopping."""
    if metrics is None:
        return math.inf
    if "cv" in metrics:
        value = metrics["cv"]["rmse"]["mean"]
    else:
        value = metrics.get("val", {}).get("rmse", math.inf)
    return float(value) if math.isfinite(value) else math.inf


def hparams_of(cfg: DictConfig, chosen: dict | None = None) -> dict:
    """The run's hyperparameters, flat, for TensorBoard's HPARAMS tab: a few core keys, every
    key the command line or the sweep overrides (as Hydra records them, with the config's
    resolved value), and the values chosen automatically (``chosen``: key -> value)."""
    core = (
        "data.name",
        "loader.name",
        "loader.batch_size",
        "optimizer.name",
        "optimizer.lr",
        "optimizer.schedule",
        "trainer.epochs",
        "seed",
    )
    out = {key: OmegaConf.select(cfg, key) for key in core}
    for text in command_line_overrides():
        key, _, value = text.lstrip("+~").partition("=")
        if key.startswith("hydra") or not key:
            continue
        resolved = OmegaConf.select(cfg, key, default=None)
        # a config group (`optimizer=adam`) selects a whole node: its name is the value
        out[key] = value if OmegaConf.is_config(resolved) or resolved is None else resolved
    out.update(chosen or {})
    return {k: _hparam_value(v) for k, v in out.items()}


def command_line_overrides() -> list[str]:
    """The overrides Hydra composed this run with (a sweep's job: its own values); none when
    the run was not started by Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def _hparam_value(v) -> bool | int | float | str:
    """TensorBoard's hparams take numbers, strings and booleans only."""
    if v is None:  # a knob left off (no momentum, full batch): 0 keeps the column numeric
        return 0
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if OmegaConf.is_config(v):
        v = OmegaConf.to_container(v, resolve=True)
    return str(v)


def flat_metrics(metrics: dict) -> dict:
    out = {"final_loss": metrics["final_loss"]}
    for k, v in metrics.get("cv", {}).items():
        if np.isfinite(v["mean"]):
            out[f"cv/{k}"] = v["mean"]
    for split in SPLITS:
        for k, v in metrics.get(split, {}).items():
            if np.isfinite(v):
                out[f"{split}/{k}"] = v
    return out
