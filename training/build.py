"""What a run is built from: small frozen records, made once by :func:`build`.

``Rows`` (the training rows on the device(s)), ``Model`` (apply function and what it is),
``Optimizer`` (the optax transform, its schedule, the stability bound), ``Settings`` (the
config, the run directory, the loader) and ``Outputs`` (TensorBoard, checkpoints, the saved
preprocessing, the plots' histories), gathered in a :class:`Run`. Each function of the engine
takes the records it reads.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from omegaconf import DictConfig, OmegaConf

from data.loaders import FIXED_BATCH, Loader, make_loader
from data.preprocess import ROWS_DIGEST, Prepared, prepare_table, rows_digest
from data.sources import load_table
from errors import UserError
from models.build import build_model
from training.checkpoint import Checkpoints, start_importing_orbax
from training.config import in_a_search
from training.devices import local_rows, make_mesh, place_rows, replicate
from training.evaluate import objective_minimum
from training.hooks import Curves
from training.logs import TensorBoardLog
from training.objectives import build_objective
from training.optim import (
    bound_formula,
    build_optimizer,
    choose_auto,
    default_epochs,
    method_of,
    momentum_of,
    stable_bound,
)
from training.plot_process import Plots
from training.stability import hessian_spectrum, max_row_norm_sq, trainable_indices


@dataclass(frozen=True, kw_only=True)
class Rows:
    """The training rows on the device(s), scaled: ``X`` (n, features), ``y`` (n,)."""

    X: jax.Array
    y: jax.Array
    w: jax.Array | None  # 0 for the padding rows of a sharded X; None: every row counts
    n: int  # the real rows (X may hold padding rows beyond them)
    mesh: Any  # a 1-D ``data`` mesh, or None on one device
    device: jax.Device
    copies: bool = False  # per-sample on several processes: every device holds all the rows
    ols: tuple[np.ndarray, float]  # the objective's minimum (W, b) on these rows, scaled


@dataclass(frozen=True, kw_only=True)
class Model:
    """``apply_fn(params, x)``: x (n, features) -> predictions (n,); ``names``: the features."""

    apply_fn: Any
    names: list[str]
    linear: bool  # x @ W + b: the stability bound, coefficients and loss surface apply
    objective: Any  # training/objectives.py: the loss trained, in the scaled units


@dataclass(frozen=True)
class Bound:
    """The largest stable constant step of the optimizer used, and how to say what it is."""

    lr: float
    what: str


@dataclass(frozen=True, kw_only=True)
class Optimizer:
    """The optax transform, its learning rate by step, and what ``auto`` chose."""

    tx: Any
    lr_at: Any  # steps (array) -> learning rates
    bound: Bound | None  # the stability bound (linear, full batch), or None
    chosen: dict  # what optimizer.lr=auto (and momentum, epochs) chose: config key -> number


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The run's config (auto values resolved), its directory, and its loader."""

    cfg: DictConfig
    workdir: Path
    loader: Loader
    writes: bool  # process 0: TensorBoard, plots, metrics and the trace are its to write


@dataclass(frozen=True, kw_only=True)
class Outputs:
    """What the run writes besides metrics.json."""

    tb: TensorBoardLog
    ckpt: Checkpoints
    preprocessing: dict  # written to preprocessing.json and into every checkpoint
    curves: Curves
    plots: Plots


@dataclass(frozen=True, kw_only=True)
class Run:
    """Everything one run holds fixed while it trains."""

    settings: Settings
    rows: Rows
    data: Prepared  # the splits on the host: val / test rows, targets in their units, scaling
    model: Model
    optimizer: Optimizer
    out: Outputs


def say(*args, **kwargs) -> None:
    """``print`` on process 0, nothing on the others (their lines would repeat it)."""
    if jax.process_index() == 0:
        print(*args, **kwargs)


def pick_device(name: str) -> jax.Device:
    """The first device of platform ``name`` (``auto``: JAX's default). Raises UserError."""
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


def build(cfg: DictConfig, workdir: Path, rows: dict | None = None) -> tuple[Run, Any, Any]:
    """Data on the device(s), the model split into arrays, the optimizer, the output files:
    the :class:`Run` and the initial parameters and optimizer state. ``rows``: the train /
    val / test row indices of a cross-validation fold."""
    workdir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.trainer.device)
    start_importing_orbax()  # while the data is read (a CSV: this process waits for it)
    rows_on_device, data, preprocessing, objective = place_data(cfg, device, rows)
    plotter = Plots(bool(cfg.logger.plots) and jax.process_index() == 0)
    names = preprocessing["feature_names"]
    graphdef, state = nnx.split(build_model(cfg.model, len(names), cfg.seed))
    params = replicate(rows_on_device.mesh, device, nnx.to_pure_dict(state))

    def apply_fn(p, x):
        return nnx.merge(graphdef, p)(x)

    refuse_other_output_shapes(apply_fn, params, len(names), cfg.model.get("_target_"))
    linear = is_linear(params, names)
    model = Model(apply_fn=apply_fn, names=names, linear=linear, objective=objective)
    loader = make_run_loader(cfg, rows_on_device)
    optimizer = make_optimizer(cfg, loader, model, rows_on_device, params)
    out = Outputs(
        tb=TensorBoardLog(workdir, False),
        ckpt=Checkpoints(
            workdir / "checkpoints",
            cfg.trainer.keep_checkpoints,
            every_steps=cfg.trainer.checkpoint_every * loader.steps_per_epoch,
        ),
        preprocessing=preprocessing,
        curves=Curves(),
        plots=plotter,
    )
    writes = jax.process_index() == 0
    settings = Settings(cfg=cfg, workdir=workdir, loader=loader, writes=writes)
    run = Run(
        settings=settings,
        rows=rows_on_device,
        data=data,
        model=model,
        optimizer=optimizer,
        out=out,
    )
    return run, params, optimizer.tx.init(params)


def place_data(cfg: DictConfig, device, rows: dict | None) -> tuple[Rows, Prepared, dict, Any]:
    """Load, split and scale (on the training rows) the data; move the training rows to the
    device(s). Returns them, the host's splits, the preprocessing to save and the objective
    (``training/objectives.py``, in the scaled units)."""
    d = cfg.data
    mesh, copies = choose_mesh(cfg, device)
    single = mesh is None and jax.process_count() == 1
    # several processes, synthetic rows used as drawn: each process draws only its own shard
    drawn = d.name == "synthetic" and not d.standardize and d.val_fraction == d.test_fraction == 0
    mine = None
    if jax.process_count() > 1 and drawn and not copies and rows is None:
        mine = local_rows(mesh, d.n_samples)
        print(
            f"process {jax.process_index()}: draws rows {mine[0]}..{mine[1] - 1} of {d.n_samples}"
        )
    fold = None if rows is None else rows["train"]  # a fold's encoding: its training rows'
    table = load_table(d, device if single else None, rows=mine, seed=cfg.seed, train_rows=fold)
    if table.description:
        say(f"encoding of {table.source}: {table.description}")
    data = prepare_table(table, cfg.data, cfg.seed, rows)
    if cfg.data.folds and rows is None:  # too many folds: said before anything is trained
        from data.preprocess import fold_rows

        n_rows = sum(len(r) for r in data.rows.values())
        fold_rows(n_rows, cfg.data.folds, d.val_fraction, d.test_fraction, cfg.seed)
    n_train = d.n_samples if mine else len(data.rows["train"])
    objective = build_objective(cfg.loss, data.scaling.y_scale)
    digest = rows_digest(data) if table.encoding else None  # a file's rows, while all here
    on_device = training_rows(data, mesh, device, copies, n_train, objective, bool(mine))
    table.X = table.y = None  # the host forgets the training rows (10^7 of them are GBs)
    preprocessing = preprocessing_of(table, data, digest)  # the run's id once resume says
    return on_device, data, preprocessing, objective


def preprocessing_of(table, data, digest: str | None = None) -> dict:
    """What a run records of its data (``preprocessing.json``, every checkpoint): the source,
    target, feature names, encoding, the scaling fitted on the training rows, the target's
    transform; for a file's data, ``digest``, the SHA-256 of its rows (``rows_digest``, taken
    before the training rows leave the host), which the statistics do not pin down: a resume
    on a file whose rows changed would train one run on two sets of rows."""
    record = {
        "source": table.source,
        "target": table.target_name,
        "feature_names": table.feature_names,
        "encoding": table.encoding,
        "scaling": data.scaling.to_dict(),
        "log_target": data.log_target,
    }
    if digest is not None:
        record[ROWS_DIGEST] = digest
    return record


def choose_mesh(cfg: DictConfig, device) -> tuple[Any, bool]:
    """The ``data`` mesh (None: one device) and whether every device trains on a copy of the
    rows; says which on process 0."""
    per_sample = cfg.loader.name == "per_sample"
    # several processes must all take part in every compiled call: each device runs the
    # sequential per-sample SGD on its own copy of the rows (one process: on one device)
    copies = per_sample and jax.process_count() > 1
    mesh = make_mesh(device.platform, sharded=not per_sample or copies)
    say(
        f"platform {device.platform}, {jax.device_count()} device(s), "
        f"{jax.process_count()} process(es)"
    )
    if copies:
        say("per-sample SGD is sequential: every device runs it on a copy of the rows")
    elif per_sample and len(jax.devices(device.platform)) > 1:
        say("per-sample SGD is sequential: it runs on one device")
    return mesh, copies


def training_rows(
    data: Prepared, mesh, device, copies: bool, n_train: int, objective, sharded_on_load: bool
) -> Rows:
    """Move the training rows out of ``data`` onto the device(s), with the objective's minimum
    on them. ``sharded_on_load``: each process holds only its own shard of the ``n_train``
    rows."""
    X_train, y_train = data.X.pop("train"), data.y.pop("train")
    if copies:
        (X, y), w = replicate(mesh, device, (X_train, y_train)), None
    else:
        n = n_train if sharded_on_load else None
        X, y, w = place_rows(mesh, device, X_train, y_train, n)
    if sharded_on_load:  # least squares and the training metrics need every process's rows
        ols = objective_minimum(X, y, objective, w, on_device=True)
        data.y_raw["train"] = multihost_utils.process_allgather(y, tiled=True)[:n_train]
    else:
        ols = objective_minimum(X_train, y_train, objective)
    return Rows(X=X, y=y, w=w, n=n_train, mesh=mesh, device=device, copies=copies, ols=ols)


def refuse_other_output_shapes(apply_fn, params, n_features: int, target: str) -> None:
    """The model must map inputs ``(n, features)`` to predictions ``(n,)``: an ``(n, 1)``
    output would broadcast against the targets into an ``(n, n)`` loss and train on it.
    Checked on shapes alone (``jax.eval_shape``, nothing computed). Raises UserError."""
    x = jax.ShapeDtypeStruct((3, n_features), jnp.float32)
    shape = tuple(jax.eval_shape(apply_fn, params, x).shape)
    if shape != (3,):
        fix = "; return its last axis dropped, e.g. y[:, 0]" if shape == (3, 1) else ""
        raise UserError(
            f"bad config value model._target_={target!r}: it maps 3 rows of {n_features} "
            f"features to an output of shape {shape}, not (3,), one prediction a row{fix}"
        )


def make_run_loader(cfg: DictConfig, rows: Rows) -> Loader:
    """The configured loader over the training rows; a warning when ``loader.batch_size`` is
    set for a loader that reads none, outside a search (its trials draw one whatever the loader).
    Raises UserError for a batch that the devices cannot share evenly."""
    lc = cfg.loader
    loader = make_loader(lc.name, lc.batch_size, lc.shuffle, lc.drop_last, rows.n, cfg.seed)
    # a search's trials draw a batch size whatever the loader: a line each was noise
    if lc.name in FIXED_BATCH and lc.batch_size != FIXED_BATCH[lc.name] and not in_a_search():
        size = "one row" if lc.name == "per_sample" else "all the training rows"
        say(
            f"warning: loader.batch_size={lc.batch_size} is not read by loader={lc.name}, "
            f"whose every step takes {size}; loader=mini_batch loader.batch_size="
            f"{lc.batch_size} trains on batches of {lc.batch_size}"
        )
    mesh = rows.mesh
    if mesh is not None and not rows.copies and not loader.full_batch:
        if loader.batch_size % mesh.size:
            raise UserError(
                f"bad config value loader.batch_size={loader.batch_size}: it must be a "
                f"multiple of the {mesh.size} devices, which share every batch"
            )
    return loader


def make_optimizer(cfg: DictConfig, loader: Loader, model: Model, rows: Rows, params) -> Optimizer:
    """The optimizer, after the ``auto`` values are chosen from the data; warns of a learning
    rate above the stability bound."""
    o = cfg.optimizer
    frozen = list(o.freeze)
    l2 = 0.0 if "W" in frozen else model.objective.l2  # the ridge penalty's curvature, over W
    trainable = trainable_indices(len(model.names), frozen)
    spectrum = functools.cache(lambda: hessian_spectrum(rows.X, rows.w, rows.n, trainable, l2))
    chosen = resolve_auto(cfg, loader, model.linear, spectrum, rows, l2)
    tx, lr_at = build_optimizer(cfg.optimizer, params, cfg.trainer.epochs * loader.steps_per_epoch)
    bound = stability(cfg, model.linear, loader.full_batch, spectrum)
    if bound and o.lr > bound.lr:
        say(
            f"warning: optimizer.lr={o.lr} is above {bound.lr:.4g}, {bound.what}; expect "
            "divergence (optimizer.lr=auto takes a stable step from the data)"
        )
    return Optimizer(tx=tx, lr_at=lr_at, bound=bound, chosen=chosen)


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
    cfg: DictConfig, loader: Loader, linear: bool, spectrum, rows: Rows, l2: float = 0.0
) -> dict:
    """Replace ``trainer.epochs=auto``, ``optimizer.lr=auto`` and ``optimizer.momentum=auto`` in
    ``cfg`` by the values chosen for these data (``training/optim.py``), print them once, and
    return them as ``{config key: number}`` for ``metrics.json``."""
    o = cfg.optimizer
    choice = choose_auto(o, linear, loader.full_batch, spectrum, _row_norm_sq(o, rows), l2)
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


def _row_norm_sq(o: DictConfig, rows: Rows):
    """``max_i ||a_i||^2`` over the rows of ``[X 1]``'s trainable columns, when called."""
    frozen = list(o.freeze)
    return lambda: max_row_norm_sq(rows.X, "W" not in frozen, "b" not in frozen)


def auto_step(run: Run) -> float:
    """The step size ``optimizer.lr=auto`` takes for ``run``'s data, loader, optimizer and
    momentum (``training/optim.py`` ``choose_auto``): what a run that diverged is advised. A
    full-batch run's step comes from the Hessian's spectrum, a shuffled run's from the largest
    row norm (a step at which no row's update overshoots), Adam's is its published default."""
    cfg = run.settings.cfg
    o = OmegaConf.merge(cfg.optimizer, {"lr": "auto"})  # the momentum as the run had it
    l2 = 0.0 if "W" in o.freeze else run.model.objective.l2
    trainable = trainable_indices(len(run.model.names), list(o.freeze))
    rows = run.rows

    def spectrum():
        return hessian_spectrum(rows.X, rows.w, rows.n, trainable, l2)

    full_batch = run.settings.loader.full_batch
    choice = choose_auto(o, run.model.linear, full_batch, spectrum, _row_norm_sq(o, rows), l2)
    return float(choice.chosen["optimizer.lr"])


def is_linear(params: dict, names: list[str]) -> bool:
    """Whether the parameters are those of ``x @ W + b``: a weight per feature and a bias."""
    return set(params) == {"W", "b"} and np.shape(params["W"]) == (len(names),)


def new_run_id() -> str:
    """A fresh random id (uuid4, hex), the same in every process: process 0's."""
    raw = np.frombuffer(uuid.uuid4().bytes, np.uint8)
    if jax.process_count() > 1:
        raw = np.asarray(multihost_utils.broadcast_one_to_all(raw), np.uint8)
    return uuid.UUID(bytes=raw.tobytes()).hex
