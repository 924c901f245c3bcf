"""One compiled call of training: a block of epochs, each a ``lax.scan`` over its batches.

Everything here is a pure function of plain pytrees of arrays. The host builds the batch indices
of a block (the shuffle), makes one call, and reads back per-step losses, the parameters recorded
every ``record_every`` steps and the parameters at the end of each epoch: one sync per call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

Params = Any  # a pytree of arrays, e.g. {"W": (d,), "b": ()}
ApplyFn = Callable[[Params, jax.Array], jax.Array]


def mse(pred: jax.Array, y: jax.Array, weight: jax.Array | None = None) -> jax.Array:
    """Mean squared error ``sum_i w_i (pred_i - y_i)^2 / sum_i w_i``.

    Without weights this is ``sum((pred - y)**2) / n``. A weight of 0 marks a padding row of a
    short last batch, so that batch's loss and gradient are its own mean over its real rows.
    """
    r = pred - y
    if weight is None:
        return jnp.sum(r * r) / y.shape[0]
    return jnp.sum(weight * r * r) / jnp.sum(weight)


@dataclass(frozen=True)
class CallSpec:
    """The static shape of one compiled call: ``epochs`` epochs of ``steps`` steps each."""

    epochs: int
    steps: int
    full_batch: bool
    masked: bool  # some batch in the block is short: weight its rows
    record_every: int  # record the parameters every n global steps
    tol: float  # full batch: stop when |grad| < tol or the relative loss change < tol
    divergence_factor: float  # full batch: a loss above factor * the first loss diverges

    @property
    def n_slots(self) -> int:
        # at most ceil(S / k) recorded steps in S consecutive steps, plus one slot that
        # absorbs the writes of unrecorded steps
        return (self.epochs * self.steps) // self.record_every + 2


class CallResult(NamedTuple):
    params: Params  # after the last applied step
    opt_state: Any
    losses: jax.Array  # (epochs, steps): loss at the parameters before each step
    recorded: Params  # (n_slots, ...): parameters before steps first_record + j * record_every
    epoch_params: Params  # (epochs, ...): parameters at the end of each epoch
    taken: jax.Array  # steps applied before the run stopped (converged or diverged)
    diverged: jax.Array  # a loss was non-finite (or exploded, full batch)
    ref_loss: jax.Array  # the run's first loss, the reference for divergence
    last_loss: jax.Array  # the last finite loss, for the next call's relative-change test


class Carry(NamedTuple):
    params: Params
    opt_state: Any
    recorded: Params
    t: jax.Array  # step index within the call
    taken: jax.Array
    done: jax.Array
    diverged: jax.Array
    ref_loss: jax.Array
    last_loss: jax.Array


def make_train_call(apply_fn: ApplyFn, tx: optax.GradientTransformation, spec: CallSpec):
    """Build ``call(params, opt_state, X, y, idx, counts, first_record, ref_loss, last_loss)``.

    ``idx`` is ``(epochs, steps, batch)`` row indices (``None`` for full batch), ``counts`` the
    real rows of each batch (used when ``spec.masked``), ``first_record`` the index within the
    call of the first step to record, ``ref_loss`` NaN on a run's first call.
    """
    k = spec.record_every

    def loss_fn(params, x, y, w):
        return mse(apply_fn(params, x), y, w)

    def call(params, opt_state, X, y, idx, counts, first_record, ref_loss, last_loss):
        def step(c: Carry, batch) -> tuple[Carry, jax.Array]:
            x, yb, w = batch
            loss, grads = jax.value_and_grad(loss_fn)(c.params, x, yb, w)
            rel = c.t - first_record
            slot = jnp.where((rel >= 0) & (rel % k == 0), rel // k, spec.n_slots - 1)
            recorded = jax.tree.map(
                lambda h, p: jax.lax.dynamic_update_index_in_dim(h, p, slot, 0),
                c.recorded,
                c.params,
            )
            ref = jnp.where(jnp.isnan(c.ref_loss), loss, c.ref_loss)
            bad = ~jnp.isfinite(loss)
            stop = bad
            if spec.full_batch:
                bad = bad | (loss > spec.divergence_factor * ref)
                # the walkthrough stops at an exact fit; tol stops on a flat loss or gradient
                stop = bad | (loss == 0)
                if spec.tol > 0:
                    flat = jnp.abs(c.last_loss - loss) <= spec.tol * jnp.abs(c.last_loss)
                    stop = stop | (optax.global_norm(grads) < spec.tol) | flat
            stay = c.done | stop
            updates, new_opt = tx.update(grads, c.opt_state, c.params)
            new_params = optax.apply_updates(c.params, updates)
            keep = functools.partial(jax.tree.map, lambda old, new: jnp.where(stay, old, new))
            c = Carry(
                params=keep(c.params, new_params),
                opt_state=keep(c.opt_state, new_opt),
                recorded=recorded,
                t=c.t + 1,
                taken=c.taken + jnp.where(stay, 0, 1),
                done=c.done | stop,
                diverged=c.diverged | (bad & ~c.done),
                ref_loss=ref,
                last_loss=jnp.where(bad | c.done, c.last_loss, loss),
            )
            return c, loss

        def epoch(c: Carry, block):
            if spec.full_batch:
                return jax.lax.scan(lambda c, _: step(c, (X, y, None)), c, None, length=spec.steps)
            ix, cnt = block
            xb, yb = X[ix], y[ix]  # this epoch's shuffled batches, gathered once per epoch
            w = None
            if spec.masked:
                w = (jnp.arange(ix.shape[1])[None, :] < cnt[:, None]).astype(yb.dtype)
            return jax.lax.scan(step, c, (xb, yb, w))

        def epoch_with_params(c, block):
            c, losses = epoch(c, block)
            return c, (losses, c.params)

        recorded = jax.tree.map(lambda p: jnp.zeros((spec.n_slots, *p.shape), p.dtype), params)
        c = Carry(
            params,
            opt_state,
            recorded,
            jnp.int32(0),
            jnp.int32(0),
            jnp.bool_(False),
            jnp.bool_(False),
            jnp.asarray(ref_loss, jnp.float32),
            jnp.asarray(last_loss, jnp.float32),
        )
        blocks = None if spec.full_batch else (idx, counts)
        c, (losses, epoch_params) = jax.lax.scan(epoch_with_params, c, blocks, length=spec.epochs)
        return CallResult(
            c.params,
            c.opt_state,
            losses,
            c.recorded,
            epoch_params,
            c.taken,
            c.diverged,
            c.ref_loss,
            c.last_loss,
        )

    return jax.jit(call)
