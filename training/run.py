"""``train_and_evaluate(cfg, workdir)``: the whole run, readable top to bottom.

The model is split once into a graph definition and a pure dict of parameters; every compiled
call (see ``training/loop.py``) works on that dict. Calls are queued one ahead, so the host
shuffles the next block and writes TensorBoard while the device trains.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from hydra.utils import instantiate
from omegaconf import DictConfig

from data.loaders import make_loader
from data.preprocess import Prepared, prepare
from data.sources import Table, load_table
from training import plots
from training.config import validate
from training.errors import DivergenceError, UserError
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


def train_and_evaluate(cfg: DictConfig, workdir: str | Path) -> dict:
    """Train the configured model; write TensorBoard events, plots and ``metrics.json``."""
    validate(cfg)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    device = pick_device(cfg.trainer.device)
    print(
        f"platform {device.platform}, {jax.device_count()} device(s), "
        f"{jax.process_count()} process(es)"
    )

    table: Table = load_table(cfg.data, device)
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

    model = instantiate(cfg.model, in_features=len(names), rngs=nnx.Rngs(cfg.seed))
    graphdef, state = nnx.split(model)
    params = jax.device_put(nnx.to_pure_dict(state), device)

    def apply_fn(p, x):
        return nnx.merge(graphdef, p)(x)

    lc = cfg.loader
    loader = make_loader(
        lc.name, lc.batch_size, lc.shuffle, lc.drop_last, len(data.rows["train"]), cfg.seed
    )
    total_steps = cfg.trainer.epochs * loader.steps_per_epoch
    tx, lr_at = build_optimizer(cfg.optimizer, params, total_steps)
    opt_state = tx.init(params)
    # the training rows move to the device; the host forgets them (a 10^7-row table is GBs)
    X, y = jax.device_put((data.X.pop("train"), data.y.pop("train")), device)
    table.X = table.y = None

    every = cfg.logger.every_n_steps
    trace = cfg.logger.print_trace and len(names) == 1
    if trace and every != 1:
        raise UserError(
            "bad config value logger.print_trace=true: the trace needs logger.every_n_steps=1"
        )
    tb = TensorBoardLog(workdir, cfg.logger.tensorboard)

    runner = Runner(
        apply_fn, tx, loader, X, y, every, cfg.trainer.tol, cfg.trainer.divergence_factor
    )
    # an epoch-level tol test needs each epoch to end a call
    max_steps = cfg.trainer.max_steps_per_call
    if cfg.trainer.tol > 0 and not loader.full_batch:
        max_steps = min(max_steps, loader.steps_per_epoch)
    blocks = plan_blocks(
        loader, 0, cfg.trainer.epochs, max_steps, cfg.trainer.checkpoint_every, align=every
    )
    t, epoch, stopped = 0, 0, "epochs"
    epoch_loss_sum, last_epoch_loss = 0.0, math.inf
    trace_W, trace_loss = [], []
    progress = Progress(
        "off" if trace else cfg.logger.progress, cfg.trainer.epochs, loader.batch_size
    )
    try:
        for block, t0, out in pipelined(runner, blocks, params, opt_state):
            losses = np.asarray(out.losses)  # the one host sync of this call
            taken, diverged = int(out.taken), bool(out.diverged)
            if not loader.full_batch and not np.isfinite(losses).all():
                taken, diverged = int(np.argmin(np.isfinite(losses))), True
            stop = taken < losses.size  # converged or diverged inside the call
            n_valid = taken + 1 if stop and not diverged else taken
            positions = record_positions(runner.spec(block))
            positions = positions[positions < n_valid]
            lr_log = lr_at if cfg.optimizer.schedule != "constant" else None
            recorded = log_steps(tb, t0, positions, losses, out.recorded, names, lr_log)
            if trace:
                W = np.concatenate([recorded["W"].reshape(-1), np.ravel(out.params["W"])])
                print_trace(t0, W[: n_valid + 1], losses[:n_valid])
                trace_W.append(W[:n_valid])
                trace_loss.append(losses[:n_valid])
            if diverged:
                raise DivergenceError(
                    f"training diverged at step {t0 + taken}: the loss became "
                    f"{fmt(losses[taken])} with optimizer.lr={cfg.optimizer.lr}; "
                    "lower optimizer.lr"
                )
            params, opt_state, t = out.params, out.opt_state, t0 + taken
            ends_epoch = block.stop == loader.steps_per_epoch
            epoch = block.epoch + (taken // block.steps if stop else block.epochs * ends_epoch)
            progress.update(epoch, t, float(losses[n_valid - 1]), n_valid * loader.batch_size)
            if stop:
                stopped = "converged"
                break
            if cfg.trainer.tol > 0 and not loader.full_batch:
                epoch_loss_sum += float(losses.sum(dtype=np.float64))
                if ends_epoch:  # stop when the epoch's mean loss changes by less than tol
                    mean = epoch_loss_sum / loader.steps_per_epoch
                    if abs(last_epoch_loss - mean) <= cfg.trainer.tol * abs(last_epoch_loss):
                        stopped = "converged"
                        break
                    epoch_loss_sum, last_epoch_loss = 0.0, mean

        final = jax.device_get(params)
        for tag, value in param_columns(final, names).items():
            tb.scalar(f"params/{tag}", value, t)
        final_loss = float(mse(apply_fn(params, X), y))
        tb.scalar("train/final_loss", final_loss, t)

        if cfg.logger.plots and len(names) == 1 and trace_W:
            figs = plots.walkthrough_plots(
                workdir,
                np.asarray(X),
                np.asarray(y),
                float(np.ravel(final["b"])[0]),
                np.concatenate(trace_W),
                np.concatenate(trace_loss),
            )
            tb.figure("plots/loss_vs_W", figs[0], t)
            tb.figure("plots/trajectory", figs[1], t)
            plots.close(*figs)

        metrics = {
            "final_loss": final_loss,
            "params": param_columns(final, names),
            "steps": t,
            "epochs": epoch,
            "stopped": stopped,
            "wall_time_s": time.perf_counter() - t_start,
            "platform": device.platform,
            "device_count": jax.device_count(),
            "process_count": jax.process_count(),
        }
        write_json(workdir / "metrics.json", metrics)
        progress.close()
        shown = list(metrics["params"].items())[:8]
        print(
            f"done: {t} steps, {epoch} epochs ({stopped}), final loss {fmt(final_loss)}"
            + "".join(f", {k} {fmt(v)}" for k, v in shown)
        )
        return metrics
    finally:
        tb.close()
