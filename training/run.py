"""``train_and_evaluate(cfg, workdir)``: the whole run, readable top to bottom.

The model is split once into a graph definition and a pure dict of parameters; every compiled
call (``training/loop.py``) works on that dict. Calls are queued one ahead, so the host shuffles
the next block and writes TensorBoard while the device trains. Checkpoints are written at call
boundaries, which are the same in a resumed run as in an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from data.loaders import Loader, make_loader
from data.preprocess import Prepared, prepare
from data.sources import load_table
from training import plots
from training.checkpoint import Checkpoints
from training.config import validate
from training.errors import DivergenceError, Interrupted, UserError
from training.evaluate import coefficient_gap, coefficients, least_squares, regression_metrics
from training.logs import (
    Progress,
    TensorBoardLog,
    fmt,
    log_steps,
    param_columns,
    print_trace,
    write_json,
)
from training.loop import Runner, mse, pipelined, plan_blocks, record_positions
from training.optim import build_optimizer
from training.stability import largest_stable_lr

SPLITS = ("train", "val", "test")


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
    last_loss: float = math.nan
    epoch_loss_sum: float = 0.0
    last_epoch_loss: float = math.inf
    stopped: str = "epochs"
    trace_W: list = field(default_factory=list)
    trace_loss: list = field(default_factory=list)

    def meta(self) -> dict:
        keys = (
            "step",
            "epoch",
            "epoch_step",
            "ref_loss",
            "last_loss",
            "epoch_loss_sum",
            "last_epoch_loss",
        )
        return {
            k: (repr(v) if isinstance(v, float) else v)
            for k, v in ((k, getattr(self, k)) for k in keys)
        }

    @classmethod
    def from_meta(cls, meta: dict) -> Progressed:
        return cls(
            **{
                k: (float(v) if isinstance(v, str) else v)
                for k, v in meta.items()
                if k in cls.__dataclass_fields__
            }
        )


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM and SIGINT set a flag that the loop reads after each call, so the call in flight
    finishes and a checkpoint is written before the run exits."""
    asked: list[int] = []

    def handler(signum, frame):
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
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    device = pick_device(cfg.trainer.device)
    print(
        f"platform {device.platform}, {jax.device_count()} device(s), "
        f"{jax.process_count()} process(es)"
    )

    # data: split, scaled on the training rows, the training rows moved to the device
    table = load_table(cfg.data, device)
    d = cfg.data
    data: Prepared = prepare(
        table.X,
        table.y,
        table.feature_names,
        standardize=d.standardize,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=cfg.seed,
        source=table.source,
        log_target=d.log_target,
    )
    names = table.feature_names
    X, y = jax.device_put((data.X.pop("train"), data.y.pop("train")), device)
    table.X = table.y = None  # the host forgets the training rows (10^7 of them are GBs)
    preprocessing = {
        "source": table.source,
        "target": table.target_name,
        "feature_names": names,
        "encoding": table.encoding,
        "scaling": data.scaling.to_dict(),
        "log_target": data.log_target,
    }
    write_json(workdir / "preprocessing.json", preprocessing)

    # model and optimizer: split once, then plain dicts of arrays
    model = instantiate(cfg.model, in_features=len(names), rngs=nnx.Rngs(cfg.seed))
    graphdef, state = nnx.split(model)
    params = jax.device_put(nnx.to_pure_dict(state), device)

    def apply_fn(p, x):
        return nnx.merge(graphdef, p)(x)

    lc = cfg.loader
    loader = make_loader(
        lc.name, lc.batch_size, lc.shuffle, lc.drop_last, len(data.rows["train"]), cfg.seed
    )
    tx, lr_at = build_optimizer(cfg.optimizer, params, cfg.trainer.epochs * loader.steps_per_epoch)
    opt_state = tx.init(params)
    bound = largest_stable_lr(X)
    if (
        loader.full_batch
        and cfg.optimizer.name == "sgd"
        and not cfg.optimizer.momentum
        and cfg.optimizer.lr > bound
    ):
        print(
            f"warning: optimizer.lr={cfg.optimizer.lr} is above {bound:.4g}, the largest "
            "stable learning rate of full-batch gradient descent on this data "
            "(2 / the largest eigenvalue of 2 X^T X / n); expect divergence"
        )

    ckpt = Checkpoints(workdir / "checkpoints", cfg.trainer.keep_checkpoints)
    at = Progressed()
    if cfg.trainer.resume:
        params, opt_state, at = resume(ckpt, params, opt_state, cfg)

    tb = TensorBoardLog(workdir, cfg.logger.tensorboard, purge_step=at.step or None)
    try:
        params, opt_state, at = fit(
            cfg,
            apply_fn,
            tx,
            lr_at,
            loader,
            X,
            y,
            data,
            names,
            params,
            opt_state,
            at,
            tb,
            ckpt,
            preprocessing,
            bound,
        )
        metrics = evaluate(cfg, workdir, apply_fn, params, X, y, data, names, at, tb)
        metrics.update(
            wall_time_s=time.perf_counter() - t_start,
            platform=device.platform,
            device_count=jax.device_count(),
            process_count=jax.process_count(),
            stable_lr_bound=bound,
        )
        write_json(workdir / "metrics.json", metrics)
        tb.hparams(
            hparams_of(cfg), {f"hparams/{k}": v for k, v in flat_metrics(metrics).items()}, at.step
        )
        return metrics
    finally:
        tb.close()
        ckpt.close()


def resume(ckpt: Checkpoints, params, opt_state, cfg: DictConfig):
    """The newest complete checkpoint that can be read; a corrupt one is skipped, warned of."""
    for step in reversed(ckpt.steps()):
        try:
            state, meta = ckpt.restore(step, {"params": params, "opt_state": opt_state})
        except Exception as exc:  # a damaged checkpoint: fall back to the one before
            print(
                f"warning: checkpoint {ckpt.directory / str(step)} cannot be read "
                f"({type(exc).__name__}); trying an earlier one"
            )
            continue
        at = Progressed.from_meta(meta["progress"])
        print(f"resuming from {ckpt.directory / str(step)}: epoch {at.epoch}, step {at.step}")
        return state["params"], state["opt_state"], at
    print(f"trainer.resume=true but no checkpoint in {ckpt.directory}: starting from scratch")
    return params, opt_state, Progressed()


def fit(
    cfg,
    apply_fn,
    tx,
    lr_at,
    loader: Loader,
    X,
    y,
    data: Prepared,
    names,
    params,
    opt_state,
    at: Progressed,
    tb: TensorBoardLog,
    ckpt: Checkpoints,
    preprocessing: dict,
    bound: float,
):
    """The training loop: one compiled call per block, logged and checkpointed after it."""
    tr, every = cfg.trainer, cfg.logger.every_n_steps
    trace = cfg.logger.print_trace and len(names) == 1
    if trace and every != 1:
        raise UserError(
            "bad config value logger.print_trace=true: the trace needs logger.every_n_steps=1"
        )
    runner = Runner(apply_fn, tx, loader, X, y, every, tr.tol, tr.divergence_factor)
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
    )
    val = ValLog(apply_fn, data, tb)
    progress = Progress("off" if trace else cfg.logger.progress, tr.epochs, loader.batch_size)
    lr_log = lr_at if cfg.optimizer.schedule != "constant" else None
    with stop_on_signals() as asked:
        for block, t0, out in pipelined(
            runner,
            blocks,
            params,
            opt_state,
            at.step,
            np.float32(at.ref_loss),
            np.float32(at.last_loss),
        ):
            losses = np.asarray(out.losses)  # the one host sync of this call
            taken, diverged = int(out.taken), bool(out.diverged)
            if not loader.full_batch and not np.isfinite(losses).all():
                taken, diverged = int(np.argmin(np.isfinite(losses))), True
            stop = taken < losses.size  # converged or diverged inside the call
            n_valid = taken + 1 if stop and not diverged else taken
            positions = record_positions(runner.spec(block))
            positions = positions[positions < n_valid]
            recorded = log_steps(tb, t0, positions, losses, out.recorded, names, lr_log)
            if np.ndim(out.params.get("W")) == 1 and np.size(out.params["W"]) > 1:
                tb.histogram("params/W", np.asarray(out.params["W"]), t0 + taken)
            if trace:
                W = np.concatenate([recorded["W"].reshape(-1), np.ravel(out.params["W"])])
                print_trace(t0, W[: n_valid + 1], losses[:n_valid])
                at.trace_W.append(W[:n_valid])
                at.trace_loss.append(losses[:n_valid])
            if diverged:
                raise DivergenceError(
                    f"training diverged at step {t0 + taken}: the loss became "
                    f"{fmt(losses[taken])} with optimizer.lr={cfg.optimizer.lr}; the largest "
                    f"stable full-batch learning rate for this data is {bound:.4g}; lower "
                    "optimizer.lr"
                )
            params, opt_state = out.params, out.opt_state
            at.step = t0 + taken
            at.ref_loss, at.last_loss = float(out.ref_loss), float(out.last_loss)
            ends_epoch = block.stop == loader.steps_per_epoch
            if stop:
                at.epoch += taken // block.steps
            elif ends_epoch:
                at.epoch, at.epoch_step = block.epoch + block.epochs, 0
            else:
                at.epoch, at.epoch_step = block.epoch, block.stop
            val.log_block(block, loader, t0, out, positions, recorded)
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
                    if abs(at.last_epoch_loss - mean) <= tr.tol * abs(at.last_epoch_loss):
                        at.stopped = "converged"
                        break
                    at.epoch_loss_sum, at.last_epoch_loss = 0.0, mean
            if tr.checkpoint_every and ends_epoch and at.epoch % tr.checkpoint_every == 0 or asked:
                save(ckpt, at, params, opt_state, preprocessing, cfg)
            if asked:
                interrupted = Interrupted(
                    f"stopped by {signal.Signals(asked[0]).name} at step {at.step}; checkpoint "
                    f"saved in {ckpt.directory}; to continue, run the same command with "
                    f"trainer.resume=true hydra.run.dir={ckpt.directory.parent}"
                )
                interrupted.exit_code = 128 + asked[0]
                raise interrupted
    save(ckpt, at, params, opt_state, preprocessing, cfg)
    progress.close()
    return params, opt_state, at


def save(ckpt: Checkpoints, at: Progressed, params, opt_state, preprocessing, cfg) -> None:
    if at.step in ckpt.steps():
        return
    ckpt.save(
        at.step,
        {"params": params, "opt_state": opt_state},
        {
            "progress": at.meta(),
            "preprocessing": preprocessing,
            "config": OmegaConf.to_container(cfg, resolve=True),
        },
    )


class ValLog:
    """Validation metrics in the target's units, logged as training goes: at each epoch's end
    (full batch: at the recorded steps)."""

    MAX_POINTS = 1000  # per call, so a long full-batch call does not flood TensorBoard

    def __init__(self, apply_fn, data: Prepared, tb: TensorBoardLog) -> None:
        self.data, self.tb = data, tb
        self.X = data.X.get("val")
        self.enabled = self.X is not None and len(self.X) > 0 and tb.writer is not None
        if self.enabled:
            self.predict = jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))

    def log_block(self, block, loader: Loader, t0: int, out, positions, recorded) -> None:
        if not self.enabled:
            return
        if loader.full_batch:
            stack, steps = recorded, t0 + positions
        elif block.stop == loader.steps_per_epoch:
            stack = out.epoch_params
            steps = t0 + block.steps * np.arange(1, block.epochs + 1)
        else:
            return
        pick = np.unique(
            np.linspace(0, len(steps) - 1, min(len(steps), self.MAX_POINTS)).astype(int)
        )
        stack = jax.tree.map(lambda a: np.asarray(a)[pick], stack)
        preds = np.asarray(self.predict(stack, self.X))
        for row, step in zip(preds, np.asarray(steps)[pick], strict=True):
            m = regression_metrics(self.data.y_raw["val"], self.data.to_target_units(row))
            for k, v in m.items():
                self.tb.scalar(f"val/{k}", v, int(step))


def evaluate(
    cfg,
    workdir: Path,
    apply_fn,
    params,
    X,
    y,
    data: Prepared,
    names,
    at: Progressed,
    tb: TensorBoardLog,
) -> dict:
    """Final metrics per split in the target's units, the coefficients in the user's units and
    the least-squares reference on the same rows."""
    final = jax.device_get(params)
    for tag, value in param_columns(final, names).items():
        tb.scalar(f"params/{tag}", value, at.step)
    if final.get("W") is not None and np.ndim(final["W"]) == 1 and np.size(final["W"]) > 1:
        tb.histogram("params/W", final["W"], at.step)
    final_loss = float(mse(apply_fn(params, X), y))
    tb.scalar("train/final_loss", final_loss, at.step)

    metrics: dict = {
        "final_loss": final_loss,
        "params": param_columns(final, names),
        "steps": at.step,
        "epochs": at.epoch,
        "stopped": at.stopped,
    }
    split_X = {"train": X, **data.X}
    for split in SPLITS:
        if len(data.rows[split]) == 0:
            continue
        pred = data.to_target_units(np.asarray(apply_fn(params, split_X[split])))
        metrics[split] = regression_metrics(data.y_raw[split], pred)
        for k, v in metrics[split].items():
            tb.scalar(f"metrics/{split}/{k}", v, at.step)

    linear = set(final) == {"W", "b"} and np.shape(final["W"]) == (len(names),)
    if linear:
        coefs = coefficients(final["W"], final["b"], data.scaling, names)
        W_ols, b_ols = least_squares(X, y)
        ols = coefficients(W_ols, b_ols, data.scaling, names)
        pred = data.to_target_units(np.asarray(X @ W_ols.astype(np.float32) + np.float32(b_ols)))
        ols["r2"] = regression_metrics(data.y_raw["train"], pred)["r2"]
        metrics.update(
            coefficients=coefs,
            ols=ols,
            ols_gap={
                "max_rel_coefficient_diff": coefficient_gap(coefs, ols),
                "r2_diff": metrics["train"]["r2"] - ols["r2"],
            },
        )
        if len(names) > 1:
            print_coefficients(coefs, ols, metrics)

    if cfg.logger.plots and len(names) == 1 and at.trace_W:
        figs = plots.walkthrough_plots(
            workdir,
            np.asarray(X),
            np.asarray(y),
            float(np.ravel(final["b"])[0]),
            np.concatenate(at.trace_W),
            np.concatenate(at.trace_loss),
        )
        tb.figure("plots/loss_vs_W", figs[0], at.step)
        tb.figure("plots/trajectory", figs[1], at.step)
        plots.close(*figs)

    shown = list(metrics["params"].items())[:8] if len(names) <= 8 else []
    print(
        f"done: {at.step} steps, {at.epoch} epochs ({at.stopped}), final loss "
        f"{fmt(final_loss)}" + "".join(f", {k} {fmt(v)}" for k, v in shown)
    )
    return metrics


def print_coefficients(coefs: dict, ols: dict, metrics: dict) -> None:
    width = max(len(k) for k in coefs)
    print(f"{'coefficient':<{width}}  {'gradient descent':>16}  {'least squares':>14}  rel diff")
    for k, v in coefs.items():
        rel = abs(v - ols[k]) / max(abs(ols[k]), 1e-300)
        print(f"{k:<{width}}  {v:>16.6g}  {ols[k]:>14.6g}  {rel:.2e}")
    gap = metrics["ols_gap"]
    print(
        f"largest relative coefficient difference {gap['max_rel_coefficient_diff']:.2e}; "
        f"R^2 {metrics['train']['r2']:.6f} (least squares {ols['r2']:.6f})"
    )


def hparams_of(cfg: DictConfig) -> dict:
    """The knobs a sweep varies, flat, for TensorBoard's HPARAMS tab."""
    return {
        "data": cfg.data.name,
        "loader": cfg.loader.name,
        "batch_size": cfg.loader.batch_size or 0,
        "optimizer": cfg.optimizer.name,
        "lr": cfg.optimizer.lr,
        "schedule": cfg.optimizer.schedule,
        "epochs": cfg.trainer.epochs,
        "seed": cfg.seed,
    }


def flat_metrics(metrics: dict) -> dict:
    out = {"final_loss": metrics["final_loss"]}
    for split in SPLITS:
        for k, v in metrics.get(split, {}).items():
            if np.isfinite(v):
                out[f"{split}/{k}"] = v
    return out
