"""``train_and_evaluate(cfg, workdir)``: the whole run, readable top to bottom.

The model is split once into a graph definition and a pure dict of parameters; every compiled
call (see ``training/loop.py``) works on that dict. Calls are queued one ahead, so the host
shuffles the next block and writes TensorBoard while the device trains.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hydra.utils import instantiate
from omegaconf import DictConfig

from data.loaders import Loader, make_loader
from data.preprocess import Prepared, prepare
from data.sources import Table, load_table
from training import plots
from training.config import validate
from training.errors import DivergenceError, UserError
from training.logs import TensorBoardLog, fmt, param_columns, print_trace, write_json
from training.loop import CallSpec, make_train_call, mse
from training.optim import build_optimizer


@dataclass(frozen=True)
class Block:
    """One compiled call: epochs ``epoch .. epoch + epochs - 1``, steps ``start:stop`` of each."""

    epoch: int
    epochs: int
    start: int
    stop: int

    @property
    def steps(self) -> int:
        return self.stop - self.start


def plan_blocks(
    loader: Loader, first_epoch: int, epochs: int, max_steps: int, checkpoint_every: int
):
    """Cut the run into calls of at most ``max_steps`` steps that end on checkpoint epochs."""
    n_steps = loader.steps_per_epoch
    e = first_epoch
    while e < epochs:
        bound = (
            epochs
            if not checkpoint_every
            else min(epochs, (e // checkpoint_every + 1) * checkpoint_every)
        )
        if n_steps <= max_steps:
            count = min(bound - e, max(1, max_steps // n_steps))
            yield Block(e, count, 0, n_steps)
            e += count
        else:  # a huge epoch: blocks of steps
            chunks = -(-n_steps // max_steps)
            size = -(-n_steps // chunks)
            for s in range(0, n_steps, size):
                yield Block(e, 1, s, min(n_steps, s + size))
            e += 1


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

    table: Table = load_table(cfg.data)
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
        lc.name, lc.batch_size, lc.shuffle, lc.drop_last, len(data.y["train"]), cfg.seed
    )
    total_steps = cfg.trainer.epochs * loader.steps_per_epoch
    tx, lr_at = build_optimizer(cfg.optimizer, params, total_steps)
    opt_state = tx.init(params)
    X, y = jax.device_put((data.X["train"], data.y["train"]), device)

    every = cfg.logger.every_n_steps
    trace = cfg.logger.print_trace and len(names) == 1
    if trace and every != 1:
        raise UserError(
            "bad config value logger.print_trace=true: the trace needs logger.every_n_steps=1"
        )
    tb = TensorBoardLog(workdir, cfg.logger.tensorboard)

    @functools.cache
    def compiled(spec: CallSpec):
        return make_train_call(apply_fn, tx, spec)

    def dispatch(block: Block, params, opt_state, ref_loss, last_loss, t: int):
        idx = counts = None
        if not loader.full_batch:
            parts = [
                loader.batches(e, block.start, block.stop)
                for e in range(block.epoch, block.epoch + block.epochs)
            ]
            idx, counts = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
        spec = CallSpec(
            block.epochs,
            block.steps,
            loader.full_batch,
            masked=counts is not None and bool((counts < loader.batch_size).any()),
            record_every=every,
            tol=cfg.trainer.tol,
            divergence_factor=cfg.trainer.divergence_factor,
        )
        return compiled(spec)(
            params, opt_state, X, y, idx, counts, (-t) % every, ref_loss, last_loss
        )

    blocks = list(
        plan_blocks(
            loader,
            0,
            cfg.trainer.epochs,
            cfg.trainer.max_steps_per_call,
            cfg.trainer.checkpoint_every,
        )
    )
    t, epoch, stopped = 0, 0, "epochs"
    ref_loss = last_loss = jnp.float32(jnp.nan)
    history_W, history_loss = [], []
    try:
        pending = dispatch(blocks[0], params, opt_state, ref_loss, last_loss, t)
        for i, block in enumerate(blocks):
            out = pending
            if i + 1 < len(blocks):  # queue the next call before reading this one
                pending = dispatch(
                    blocks[i + 1],
                    out.params,
                    out.opt_state,
                    out.ref_loss,
                    out.last_loss,
                    t + block.epochs * block.steps,
                )
            losses = np.asarray(out.losses).reshape(-1)  # the one host sync of this call
            taken, diverged = int(out.taken), bool(out.diverged)
            done = taken < losses.size
            n_logged = taken + 1 if done and not diverged else taken
            steps = t + np.arange(n_logged)
            keep = steps % every == 0
            n_rec = int(keep.sum())
            recorded = jax.tree.map(lambda a, n=n_rec: np.asarray(a)[:n], out.recorded)
            columns = {f"params/{k}": v for k, v in param_columns(recorded, names, True).items()}
            tb.scalars({"train/loss": losses[:n_logged][keep], **columns}, steps[keep])
            if cfg.optimizer.schedule != "constant":
                tb.scalars({"train/lr": [lr_at(int(s)) for s in steps[keep]]}, steps[keep])
            if trace:
                W_after = np.asarray(out.params["W"]).reshape(-1)
                W_hist = np.concatenate([recorded["W"].reshape(-1)[:n_logged], W_after])
                print_trace(t, W_hist, losses[:n_logged])
                history_W.append(W_hist[:-1])
                history_loss.append(losses[:n_logged])
            if diverged:
                raise DivergenceError(
                    f"training diverged at step {t + taken}: the loss became "
                    f"{fmt(losses[taken])} with optimizer.lr={cfg.optimizer.lr}; lower "
                    f"optimizer.lr"
                )
            params, opt_state = out.params, out.opt_state
            t += taken
            epoch = block.epoch + (block.epochs if not done else taken // max(block.steps, 1))
            if done:
                stopped = "converged"
                break
            if not trace:
                print(
                    f"epoch {epoch}/{cfg.trainer.epochs}  step {t}  loss {fmt(losses[-1])}",
                    flush=True,
                )

        final = jax.device_get(params)
        for tag, value in param_columns(final, names).items():
            tb.scalar(f"params/{tag}", value, t)
        final_loss = float(mse(apply_fn(params, X), y))
        tb.scalar("train/final_loss", final_loss, t)

        if cfg.logger.plots and len(names) == 1 and history_W:
            figs = plots.walkthrough_plots(
                workdir,
                data.X["train"],
                data.y["train"],
                float(np.ravel(final["b"])[0]),
                np.concatenate(history_W),
                np.concatenate(history_loss),
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
        print(
            f"done: {t} steps, final loss {fmt(final_loss)}, "
            + ", ".join(
                f"{k} {fmt(v)}" for k, v in metrics["params"].items() if len(metrics["params"]) <= 8
            )
        )
        return metrics
    finally:
        tb.close()
