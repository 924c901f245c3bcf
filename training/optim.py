"""Optax optimizers, learning-rate schedules and parameter freezing, built from config."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import DictConfig

from training.errors import UserError


def build_schedule(cfg: DictConfig, total_steps: int) -> optax.ScalarOrSchedule:
    """``constant``: lr. ``cosine``: lr * (end + (1 - end) * (1 + cos(pi t / T)) / 2).
    ``exponential``: lr * decay_rate ** (t / transition_steps). ``warmup_cosine``: linear from 0
    to lr over ``warmup_steps``, then cosine to ``lr * end_lr_factor`` at ``T = total_steps``."""
    lr, end = cfg.lr, cfg.end_lr_factor
    if cfg.schedule == "constant":
        return lr
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, max(total_steps, 1), alpha=end)
    if cfg.schedule == "exponential":
        return optax.exponential_decay(lr, cfg.transition_steps, cfg.decay_rate)
    if cfg.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, lr, cfg.warmup_steps, max(total_steps, cfg.warmup_steps + 1), lr * end
        )
    raise UserError(f"bad config value optimizer.schedule={cfg.schedule!r}")


def build_optimizer(
    cfg: DictConfig, params: dict, total_steps: int
) -> tuple[optax.GradientTransformation, Callable[[np.ndarray], np.ndarray]]:
    """The optimizer named by ``cfg.name`` with ``cfg.freeze`` parameters held constant.

    Returns the transformation and ``lr_at(steps)``, the learning rates used at those steps.
    """
    schedule = build_schedule(cfg, total_steps)
    if cfg.name == "sgd":
        inner = optax.sgd(schedule, momentum=cfg.momentum, nesterov=cfg.nesterov)
    elif cfg.name in ("momentum", "nesterov"):
        momentum = 0.9 if cfg.momentum is None else cfg.momentum
        inner = optax.sgd(schedule, momentum=momentum, nesterov=cfg.name == "nesterov")
    elif cfg.name == "adam":
        inner = optax.adam(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    elif cfg.name == "adamw":
        inner = optax.adamw(
            schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    else:
        raise UserError(
            f"bad config value optimizer.name={cfg.name!r}: allowed one of "
            "sgd, momentum, nesterov, adam, adamw"
        )

    unknown = [name for name in cfg.freeze if name not in params]
    if unknown:
        raise UserError(
            f"bad config value optimizer.freeze={list(cfg.freeze)}: no parameter "
            f"named {unknown[0]!r}; the model has {', '.join(sorted(params))}"
        )
    tx = inner
    if cfg.freeze:
        labels = {name: "frozen" if name in cfg.freeze else "train" for name in params}
        tx = optax.partition({"train": inner, "frozen": optax.set_to_zero()}, labels)

    def lr_at(steps: np.ndarray) -> np.ndarray:
        """The learning rate of updates ``steps`` (optax counts updates from 0)."""
        steps = np.asarray(steps)
        if callable(schedule):
            return np.asarray(schedule(jnp.asarray(steps)), np.float64)
        return np.full(steps.shape, float(schedule))

    return tx, lr_at
