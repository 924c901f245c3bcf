"""The objective a run minimises (``loss=mse|huber``, ``loss.l2``), in the space it trains in.

The engine trains on the standardised target ``y' = (y - y_mean) / y_scale`` (``y_scale`` 1
when ``data.standardize`` is off; with ``data.log_target`` ``y`` is the log of the target), so
with residuals ``r_i = f(x_i) - y'_i`` and row weights ``w_i`` (0 for padding rows,
``n = sum_i w_i``) the objective is

    J(p) = sum_i w_i l(r_i) / n  +  (l2 / 2) ||W||^2

with ``l(r) = r^2`` (``mse``) or ``l(r) = 2 rho_delta'(r)`` (``huber``). ``rho`` is Huber's
(1964, *Ann. Math. Statist.* 35, eq. 7): ``r^2 / 2`` for ``|r| <= delta'``, ``delta' |r| -
delta'^2 / 2`` beyond, which is :func:`optax.losses.huber_loss` exactly (checked in
``tests/test_objectives.py``). Twice it is the squared error on every residual within
``delta'`` and grows linearly beyond, so ``huber`` tends to ``mse`` as ``delta`` grows, and the
two share the Hessian bound ``2 [X 1]^T diag(w) [X 1] / n`` (``training/stability.py``).
``delta' = delta / y_scale``: ``loss.delta`` is in the target's own units (log units with
``data.log_target``).

The ridge penalty ``(l2 / 2) ||W||^2`` is on the weights ``W`` of the standardised columns, never
on the intercept ``b``: its gradient is ``l2 W`` and it adds ``l2`` to every eigenvalue of the
Hessian over ``W`` (the convention of optax's ``add_decayed_weights``). For the linear model
with ``loss=mse`` the minimiser solves ``([X 1]^T diag(w) [X 1] + (n l2 / 2) D) beta = [X 1]^T
diag(w) y'`` with ``D = diag(1, ..., 1, 0)`` (``training/evaluate.py``: ``least_squares``),
scikit-learn's ``Ridge(alpha=n l2 / 2)`` on the same standardised columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

LOSSES = ("mse", "huber")


def mse(pred: jax.Array, y: jax.Array, weight: jax.Array | None = None) -> jax.Array:
    """Mean squared error ``sum_i w_i (pred_i - y_i)^2 / sum_i w_i`` of predictions ``pred``
    and targets ``y`` (both ``(n,)``; a single row ``()`` gives its ``(pred - y)^2``). Without
    weights ``sum((pred - y)^2) / n``, the walkthrough's loss, to the last bit."""
    r = pred - y
    if r.ndim == 0:
        return r * r
    if weight is None:
        return jnp.sum(r * r) / y.shape[0]
    return jnp.sum(weight * r * r) / jnp.sum(weight)


def huber(
    pred: jax.Array, y: jax.Array, weight: jax.Array | None = None, delta: float = 1.0
) -> jax.Array:
    """Mean of ``2 rho_delta(pred_i - y_i)`` weighted by ``w_i``: ``r^2`` for ``|r| <= delta``,
    ``2 delta |r| - delta^2`` beyond (Huber 1964; ``2 * optax.losses.huber_loss``). Shapes and
    weights as :func:`mse`; ``delta`` > 0 in the units of ``y``."""
    e = 2.0 * optax.losses.huber_loss(pred, y, delta=delta)
    if e.ndim == 0:
        return e
    if weight is None:
        return jnp.sum(e) / y.shape[0]
    return jnp.sum(weight * e) / jnp.sum(weight)


def ridge_penalty(W: jax.Array, l2: float) -> jax.Array:
    """``(l2 / 2) ||W||^2`` (Hoerl and Kennard 1970, in the ``1/2`` convention): gradient
    ``l2 W``, Hessian ``l2 I``. ``W`` any shape; ``l2`` >= 0."""
    return 0.5 * l2 * jnp.sum(W * W)


@dataclass(frozen=True)
class Objective:
    """``J(params, pred, y, w)``: the data term of ``name`` plus the ridge penalty on
    ``params["W"]`` (module docstring). ``delta`` is in the trained (standardised) target's
    units. Hashable, so a compiled call can close over it."""

    name: str = "mse"
    delta: float | None = None
    l2: float = 0.0

    def data_loss(self, pred: jax.Array, y: jax.Array, w: jax.Array | None = None) -> jax.Array:
        if self.name == "huber":
            return huber(pred, y, w, self.delta)
        return mse(pred, y, w)

    def __call__(self, params: Any, pred: jax.Array, y: jax.Array, w=None) -> jax.Array:
        loss = self.data_loss(pred, y, w)
        if self.l2 and "W" in params:  # l2 = 0: no term at all, the same program as before
            loss = loss + ridge_penalty(params["W"], self.l2)
        return loss

    @property
    def is_least_squares(self) -> bool:
        return self.name == "mse" and not self.l2

    def reference_label(self) -> str:
        """The float64 reference's short name: a column header of the coefficient table."""
        if self.name == "huber":
            return "Huber+ridge" if self.l2 else "Huber"
        return "ridge" if self.l2 else "least squares"

    def reference_name(self) -> str:
        """The float64 reference in a sentence: ``reached least squares``, ``reached the ridge
        minimum``."""
        label = self.reference_label()
        return label if self.is_least_squares else f"the {label} minimum"


def build_objective(loss_cfg: Any, y_scale: float) -> Objective:
    """The :class:`Objective` of the ``loss`` config group for a target standardised by
    ``y_scale`` (``loss.delta`` is in the target's units, the model trains in units of
    ``y_scale``)."""
    name = loss_cfg.name
    delta = float(loss_cfg.delta) / y_scale if name == "huber" else None
    return Objective(name, delta, float(loss_cfg.l2))
