"""Optax optimizers, learning-rate schedules and parameter freezing, built from config; the
step size (and momentum) ``optimizer.lr=auto`` takes from the data, and the stability bound of
each gradient-descent method.

The theory, for a quadratic loss whose Hessian has eigenvalues in ``[mu, L]`` (``mu`` the
smallest non-zero one): each eigen-direction evolves by its own linear recurrence, stable iff
the roots of its characteristic polynomial lie inside the unit circle (Jury's criterion).

- gradient descent ``p <- p - lr g``: stable iff ``lr < 2 / L``; the step that minimises the
  worst contraction is ``2 / (L + mu)`` (Nesterov, *Introductory Lectures on Convex
  Optimization*, 2004, Theorem 2.1.15).
- heavy ball (Polyak 1964), optax ``sgd(lr, momentum=m)``: ``v <- g + m v; p <- p - lr v``,
  i.e. ``p' = p - lr g + m (p - p_prev)``, characteristic ``z^2 - (1 + m - lr lam) z + m``:
  stable iff ``lr < 2 (1 + m) / L``. Optimal (Polyak, *Introduction to Optimization*, 1987,
  section 3.2.1): ``lr = 4 / (sqrt L + sqrt mu)^2``, ``m = ((sqrt L - sqrt mu) /
  (sqrt L + sqrt mu))^2``. For a given ``m``, ``lr = (1 + sqrt m)^2 / L`` makes every
  direction with ``lr lam`` in ``[(1 - sqrt m)^2, (1 + sqrt m)^2]`` contract by ``sqrt m``.
- Nesterov, optax ``sgd(lr, momentum=m, nesterov=True)``: ``f <- g + m f; p <- p - lr (g + m
  f)``. On ``(p_t, f_{t-1})`` the recurrence has trace ``1 + m - a (1 + m)`` and determinant
  ``m (1 - a)`` with ``a = lr lam``; Jury's conditions reduce to ``0 < a < 2 (1 + m) / (1 +
  2 m)``, so it is stable iff ``lr < 2 (1 + m) / ((1 + 2 m) L)`` (tests/test_auto_defaults.py
  runs optax just below and above it). Tuning: ``lr = 1 / L``, ``m = (sqrt kappa - 1) /
  (sqrt kappa + 1)`` with ``kappa = L / mu`` (Nesterov 2004, scheme 2.2.19).

A rank-deficient design has zero eigenvalues; gradient steps from zeros never leave the row
space of ``[X 1]``, so they converge to the minimum-norm least-squares solution (the one
``numpy.linalg.lstsq`` returns), at the rate set by ``mu``, the smallest non-zero eigenvalue.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import optax
from hydra.utils import instantiate
from omegaconf import DictConfig

from errors import UserError, bad_target
from training.stability import Spectrum

GRADIENT_DESCENT, HEAVY_BALL, NESTEROV = "gradient descent", "heavy-ball momentum", "Nesterov"
# optimizer.family (each conf/optimizer/*.yaml names its own) -> the method whose step
# optimizer.lr=auto tunes and whose stability bound is checked. The three gradient-descent
# families' constructors take optax.sgd's `momentum`; `adaptive` (Adam, AdamW, RMSProp, Lion:
# per-parameter steps) has neither a tuned step nor a bound. gradient_descent is heavy ball or
# Nesterov once it has momentum (optimizer.nesterov).
FAMILIES = {
    "gradient_descent": GRADIENT_DESCENT,
    "heavy_ball": HEAVY_BALL,
    "nesterov": NESTEROV,
    "adaptive": None,
}
# optimizer.momentum=auto wherever the data does not set it: optax's customary value
DEFAULT_MOMENTUM = 0.9
# optimizer.lr=auto where the Hessian does not set it, by family: for `adaptive`, Adam's
# published default (Kingma & Ba 2015); 0.01 for gradient descent on a model other than x @ W + b
DEFAULT_LR = {"adaptive": 1e-3}
DEFAULT_LR_OTHER = 0.01
# lambda_max raised by this factor before a step is chosen from it: at the tuned steps the
# direction of lambda_max sits within mu / L of the stability edge, and float32 rounding of the
# Gram matrix must not tip it over
SAFETY = 1.01
# trainer.epochs=auto: full batch stops at convergence (trainer.tol) long before this cap; a
# per-sample or mini-batch run with a constant step only reaches a noise floor, which a few
# passes over the rows find
AUTO_EPOCHS_FULL_BATCH = 100_000
AUTO_EPOCHS_STOCHASTIC = 20


def method_of(cfg: DictConfig) -> str | None:
    """Which gradient-descent method ``cfg`` (the optimizer group) builds: ``GRADIENT_DESCENT``,
    ``HEAVY_BALL``, ``NESTEROV``, or None for the ``adaptive`` family (Adam, AdamW, ...)."""
    method = FAMILIES[cfg.family]
    if method == GRADIENT_DESCENT and momentum_of(cfg):
        method = HEAVY_BALL
    # what optax is given: the transform's own nesterov (optimizer.transform.nesterov=true)
    transform = cfg.get("transform") or {}
    if method == HEAVY_BALL and transform.get("nesterov", cfg.nesterov):
        method = NESTEROV
    return method


def momentum_of(cfg: DictConfig) -> float:
    """The momentum ``build_optimizer`` uses: ``auto`` not chosen from the data is none (0) for
    the ``gradient_descent`` family (``sgd``) and ``DEFAULT_MOMENTUM`` for ``heavy_ball`` and
    ``nesterov`` (``momentum``, ``nesterov``); null is 0 for ``gradient_descent``."""
    m = cfg.momentum
    if m is None or m == "auto":
        return 0.0 if cfg.family == "gradient_descent" else DEFAULT_MOMENTUM
    return float(m)


def stable_bound(method: str, L: float, momentum: float) -> float:
    """The largest stable constant step of ``method`` on a quadratic whose Hessian's largest
    eigenvalue is ``L`` (module docstring): ``2 / L``, ``2 (1 + m) / L`` or ``2 (1 + m) / ((1 +
    2 m) L)``; infinity when ``L`` is 0 (nothing to train)."""
    if L <= 0:
        return math.inf
    if method == HEAVY_BALL:
        return 2.0 * (1.0 + momentum) / L
    if method == NESTEROV:
        return 2.0 * (1.0 + momentum) / ((1.0 + 2.0 * momentum) * L)
    return 2.0 / L


def bound_formula(method: str, momentum: float) -> str:
    """How ``stable_bound`` is computed, for messages."""
    if method == HEAVY_BALL:
        return f"2 (1 + m) / lambda_max with m={momentum:g}"
    if method == NESTEROV:
        return f"2 (1 + m) / ((1 + 2 m) lambda_max) with m={momentum:g}"
    return "2 / lambda_max"


def tuned_step(method: str, spec: Spectrum, momentum: float | None) -> tuple[float, float | None]:
    """The step size (and, for the momentum methods, the momentum) for Hessian eigenvalues in
    ``[spec.mu, spec.L]`` (module docstring). ``momentum`` is the user's fixed value, or None
    to choose it too. Returns ``(lr, momentum)``; the momentum is None for gradient descent."""
    L, mu = spec.L * SAFETY, spec.mu
    if L <= 0:  # nothing trainable, or all-zero columns: any step leaves the loss unchanged
        return 1.0, None if method == GRADIENT_DESCENT else (momentum or 0.0)
    mu = mu if mu > 0 else L
    if method == GRADIENT_DESCENT:
        return 2.0 / (L + mu), None
    sL, smu = math.sqrt(L), math.sqrt(mu)
    if method == HEAVY_BALL:
        if momentum is None:
            return 4.0 / (sL + smu) ** 2, ((sL - smu) / (sL + smu)) ** 2
        return (1.0 + math.sqrt(momentum)) ** 2 / L, momentum
    if momentum is None:
        kappa = L / mu
        momentum = (math.sqrt(kappa) - 1.0) / (math.sqrt(kappa) + 1.0)
    return 1.0 / L, momentum


@dataclass
class StepChoice:
    """What ``auto`` chose: ``chosen`` maps config keys to numbers (``metrics.json``'s
    ``"chosen"``), ``line`` says it once on the terminal."""

    chosen: dict[str, float]
    line: str


def choose_auto(
    cfg: DictConfig,
    linear: bool,
    full_batch: bool,
    spectrum: Callable[[], Spectrum],
    row_norm_sq: Callable[[], float],
    l2: float = 0.0,
) -> StepChoice:
    """Resolve ``optimizer.lr=auto`` and ``optimizer.momentum=auto`` of ``cfg`` (the optimizer
    group; the caller writes the values back).

    - linear model, full batch, gradient descent / heavy ball / Nesterov: :func:`_spectrum_step`
      (``spectrum()`` is computed only then). ``sgd`` with ``momentum=auto`` (the general
      default) is heavy ball there, with Polyak's optimal momentum: it needs about
      ``sqrt(kappa)`` times fewer steps than plain gradient descent; elsewhere ``sgd``'s
      ``auto`` momentum is none.
    - linear model, per-sample or mini-batch: :func:`_row_norm_step` (``row_norm_sq()`` is
      ``max_i ||a_i||^2`` over the rows of ``[X 1]``). Momentum (heavy ball or Nesterov):
      ``DEFAULT_MOMENTUM``.
    - Adam and AdamW: ``DEFAULT_LR``; other models: ``DEFAULT_LR_OTHER``.

    ``l2`` is the ridge penalty's ``(l2 / 2) ||W||^2`` (``training/objectives.py``), the
    caller's: 0 when ``W`` is frozen.
    """
    lr_auto, m_auto = cfg.lr == "auto", cfg.momentum == "auto"
    method = method_of(cfg)
    exact = lr_auto and method is not None and linear and full_batch
    if exact and cfg.family == "gradient_descent" and m_auto:  # the general default: the fastest
        method = NESTEROV if cfg.nesterov else HEAVY_BALL
    chosen: dict[str, float] = {}
    why = ""
    if exact:
        spec = spectrum()
        fixed = None if m_auto or method == GRADIENT_DESCENT else momentum_of(cfg)
        chosen, why = _spectrum_step(method, spec, fixed, m_auto)
    elif lr_auto and method is not None and linear:
        stochastic_m = 0.0 if method == GRADIENT_DESCENT else momentum_of(cfg)
        if m_auto and method in (HEAVY_BALL, NESTEROV):
            stochastic_m = DEFAULT_MOMENTUM
        chosen, why = _row_norm_step(row_norm_sq(), l2, stochastic_m)
    elif lr_auto:
        chosen["optimizer.lr"] = DEFAULT_LR.get(cfg.family, DEFAULT_LR_OTHER)
        why = f"the default of {cfg.name}" + ("" if linear else " for a model other than x W + b")
    if m_auto and "optimizer.momentum" not in chosen and method in (HEAVY_BALL, NESTEROV):
        chosen["optimizer.momentum"] = DEFAULT_MOMENTUM
    if not chosen:
        return StepChoice({}, "")
    # each value as the run uses it, a float32, in the fewest digits that give it back: the
    # line pasted as overrides reruns the same steps (0.9999 for 0.99994 did not)
    values = ", ".join(f"{k}={str(np.float32(v))}" for k, v in chosen.items())
    if not why:
        why = "optax's customary momentum"
    source = "step size from the data" if why.startswith(("Hessian", "1 /", "(1 - m)")) else "auto"
    return StepChoice(chosen, f"{source}: {values} ({why})")


def _spectrum_step(
    method: str, spec: Spectrum, fixed: float | None, m_auto: bool
) -> tuple[dict[str, float], str]:
    """Full batch, linear model: :func:`tuned_step` on the Hessian's spectrum ``spec`` over the
    trainable parameters, with the momentum ``fixed`` (None: the optimal one, reported only when
    ``m_auto``). Returns the chosen config values and the reason.

    The ridge penalty ``(l2 / 2) ||W||^2`` is in the spectrum (``hessian_spectrum(..., l2)``:
    ``l2`` added to every eigenvalue over ``W``). For ``loss=huber`` the spectrum is the squared
    error's, whose ``L`` bounds the Huber Hessian everywhere; its ``mu`` is the Huber loss's own
    only while every residual is within ``delta`` and can be near 0 elsewhere (``l2`` over
    ``W``, 0 over ``b``, when no row is). The steps are kept: gradient descent's
    ``2 / (L + mu)`` is below ``2 / L`` whatever the true ``mu``, and the momentum methods'
    steps are stable for every curvature in ``(0, L]`` (Jury's conditions hold for each
    ``lr lam`` in that range), so a smaller true ``mu`` only slows the run (it stops on
    ``trainer.tol`` all the same).
    """
    lr, m = tuned_step(method, spec, fixed)
    chosen = {"optimizer.lr": lr}
    if m_auto and m is not None:
        chosen["optimizer.momentum"] = m
    why = (
        f"Hessian eigenvalues {spec.mu:.4g}..{spec.L:.4g} over the trainable parameters, "
        f"rank {spec.rank} of {spec.size}; {method}"
    )
    return chosen, why


def _row_norm_step(top: float, l2: float, momentum: float = 0.0) -> tuple[dict[str, float], str]:
    """Per-sample or mini-batch, linear model: ``lr = (1 - m) / (2 max_i ||a_i||^2 + l2)``
    over the rows ``a_i`` of ``[X 1]`` (``top`` is ``max_i ||a_i||^2``; 1 when it and ``l2``
    are 0) with the optimizer's momentum ``m`` (0 without). Returns the chosen config values and
    the reason.

    One row's loss ``(a.p - y)^2`` has Hessian ``2 a a^T``, so the step ``1 / (2 ||a||^2)``
    moves the row's residual exactly to zero (Kaczmarz's projection) and never past it; a
    batch's Hessian has ``lambda_max <= 2 max ||a_i||^2``, so every batch is at most half its
    own stability limit. Momentum ``m`` carries past gradients on: under a steady gradient ``g``
    its steps grow to ``lr ||g|| / (1 - m)`` (Goodfellow, Bengio and Courville, *Deep Learning*,
    2016, section 8.3.2), so ``lr`` is scaled by ``1 - m`` to keep that step the projection's
    (``experiment=housing loader=per_sample``, Nesterov at ``m = 0.9``, diverged at ten times
    it). The ridge penalty ``(l2 / 2) ||W||^2`` adds ``l2`` to a row's Hessian.
    """
    lr = (1.0 - momentum) / (2.0 * top + l2) if top + l2 > 0 else 1.0 - momentum
    ridge = f" + l2), l2={l2:g}" if l2 else ")"
    scaled = f"(1 - m) / (2 max ||[x 1]||^2{ridge} with m={momentum:g}" if momentum else ""
    why = scaled or f"1 / (2 max ||[x 1]||^2{ridge}"
    return {"optimizer.lr": lr}, f"{why}, largest squared row norm {top:.4g}"


def default_epochs(full_batch: bool) -> int:
    """``trainer.epochs=auto``: ``AUTO_EPOCHS_FULL_BATCH`` or ``AUTO_EPOCHS_STOCHASTIC``."""
    return AUTO_EPOCHS_FULL_BATCH if full_batch else AUTO_EPOCHS_STOCHASTIC


# optimizer.schedule -> the learning rate at update t of T = total_steps (optax's schedules);
# lr, end = optimizer.lr, optimizer.end_lr_factor
SCHEDULES: dict[str, Callable[[DictConfig, int], optax.ScalarOrSchedule]] = {
    # lr
    "constant": lambda cfg, T: cfg.lr,
    # lr * (end + (1 - end) * (1 + cos(pi t / T)) / 2)
    "cosine": lambda cfg, T: optax.cosine_decay_schedule(
        cfg.lr, max(T, 1), alpha=cfg.end_lr_factor
    ),
    # lr * decay_rate ** (t / transition_steps)
    "exponential": lambda cfg, T: optax.exponential_decay(
        cfg.lr, cfg.transition_steps, cfg.decay_rate
    ),
    # linear from 0 to lr over warmup_steps, then cosine to lr * end at T
    "warmup_cosine": lambda cfg, T: optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, cfg.warmup_steps, max(T, cfg.warmup_steps + 1), cfg.lr * cfg.end_lr_factor
    ),
}


def build_schedule(cfg: DictConfig, total_steps: int) -> optax.ScalarOrSchedule:
    """The learning rate, or the schedule of it, that ``cfg.schedule`` names in
    :data:`SCHEDULES` over ``total_steps`` updates."""
    if cfg.schedule not in SCHEDULES:
        raise UserError(
            f"bad config value optimizer.schedule={cfg.schedule!r}: allowed one of "
            + ", ".join(SCHEDULES)
        )
    return SCHEDULES[cfg.schedule](cfg, total_steps)


def make_transform(
    cfg: DictConfig, schedule: optax.ScalarOrSchedule
) -> optax.GradientTransformation:
    """optax's optimizer as ``cfg.transform`` names it (``_target_``, called by Hydra's
    ``instantiate`` with ``_partial_: true`` and the node's arguments), given
    ``learning_rate=schedule`` and, for the gradient-descent families, the momentum of
    :func:`momentum_of` (None for ``gradient_descent`` without momentum: no trace at all).

    Raises :class:`~errors.UserError` naming ``optimizer.transform`` when the constructor
    cannot be found or refuses its arguments."""
    extra = {}
    if FAMILIES[cfg.family] is not None:
        m = momentum_of(cfg)
        extra["momentum"] = (m or None) if cfg.family == "gradient_descent" else m
    target = cfg.transform.get("_target_")
    try:
        return instantiate(cfg.transform)(learning_rate=schedule, **extra)
    except Exception as exc:  # a wrong class path or argument in conf/optimizer/*.yaml
        raise bad_target("optimizer.transform._target_", target, exc) from None


def build_optimizer(
    cfg: DictConfig, params: dict, total_steps: int
) -> tuple[optax.GradientTransformation, Callable[[np.ndarray], np.ndarray]]:
    """The optimizer of ``cfg`` (the optimizer group: :func:`make_transform`) with
    ``cfg.freeze`` parameters held constant.

    Returns the transformation and ``lr_at(steps)``, the learning rates used at those steps.
    """
    schedule = build_schedule(cfg, total_steps)
    inner = make_transform(cfg, schedule)

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
