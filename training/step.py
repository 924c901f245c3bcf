"""One training step, and the compiled calls that run many of them.

Read top to bottom:

- :func:`loss_fn`: the weighted mean squared error of a model on a batch;
- :func:`train_step`: one per-sample or mini-batch update, ``value_and_grad`` then the optimizer;
- :func:`full_batch_step`: one gradient-descent step on all rows, with the stopping rules (an
  exact fit, ``tol`` on the gradient's norm, divergence) and nothing computed once stopped;
- :func:`full_batch_call` and :func:`shuffled_call`: ``lax.scan`` over those steps in one
  ``jax.jit`` call, recording the parameters every ``k`` steps (:func:`scan_recording`);
- :func:`make_train_call`: the call a :class:`CallSpec` describes;
- :class:`Runner`: the host's entry point: a block's batch indices (the shuffle) and its call,
  dispatched without waiting; ``fit`` (``training/run.py``) reads back a :class:`CallResult`,
  one sync per call.

Everything but the runner is a pure function of pytrees of arrays.

The objective is a seam: every step and builder takes ``objective(params, pred, y, w) ->
scalar`` (``training/objectives.py``: Huber, the ridge penalty), None for the mean squared error.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from data.loaders import Loader
from training.blocks import Block
from training.devices import replicate
from training.objectives import mse

Params = Any  # a pytree of arrays, e.g. {"W": (d,), "b": ()}
ApplyFn = Callable[[Params, jax.Array], jax.Array]
Batch = tuple[jax.Array, jax.Array, jax.Array | None]  # x, y, w: a batch and its row weights
Objective = Callable[[Params, jax.Array, jax.Array, jax.Array | None], jax.Array]  # (p, pred, y, w)


def loss_fn(
    params: Params,
    apply_fn: ApplyFn,
    x: jax.Array,
    y: jax.Array,
    w: jax.Array | None = None,
    objective: Objective | None = None,
) -> jax.Array:
    """The loss ``L(theta) = sum_i w_i (f_theta(x_i) - y_i)^2 / sum_i w_i`` (:func:`mse`), or
    ``objective(theta, f_theta(x), y, w)``.

    ``x``: ``(n, features)`` with ``y``, ``w``: ``(n,)`` (``w`` None: every row counts 1); or
    one row, ``x``: ``(features,)`` and a scalar ``y``, whose squared error ``(f(x) - y)^2`` is
    the same value with no reductions to run (a per-sample step is that much shorter)."""
    pred = apply_fn(params, x)
    if objective is None:
        return mse(pred, y, w)
    return objective(params, pred, y, w)


class TrainState(NamedTuple):
    """What a per-sample or mini-batch step carries from one step to the next."""

    params: Params
    opt_state: optax.OptState


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    objective: Objective | None = None,
) -> tuple[TrainState, jax.Array]:
    """One update ``theta <- theta + tx(grad L(theta))`` on ``batch``; returns the new state and
    ``L(theta)`` before the update (plain SGD: ``theta - lr * grad L(theta)``).

    Nothing else runs in the step: on a CPU every extra op in the loop body costs as much as the
    arithmetic. Non-finite losses are found after the loop (:func:`shuffled_call`)."""
    value, grads = jax.value_and_grad(loss_fn)(state.params, apply_fn, *batch, objective)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), value


class Carry(NamedTuple):
    """What a full-batch step carries: the state, and whether and why it stopped."""

    params: Params
    opt_state: optax.OptState
    taken: jax.Array  # int32: steps applied so far in this call
    done: jax.Array  # bool: stopped (converged or diverged); later steps do nothing
    diverged: jax.Array  # bool: stopped because the loss diverged
    ref_loss: jax.Array  # float32: the run's first loss (NaN until the first step)


def full_batch_step(
    c: Carry,
    batch: Batch,
    *,
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    tol: float = 0.0,
    divergence_factor: float = 1e6,
    objective: Objective | None = None,
    frozen: tuple[str, ...] = (),
) -> tuple[Carry, jax.Array]:
    """One gradient-descent step on all rows, unless an earlier one stopped; returns the new
    carry and the loss before the step (NaN for a skipped step).

    The step computes ``L(theta)`` and ``g = grad L(theta)`` and stops, keeping ``theta``, when

    - ``L`` is not finite or ``L > divergence_factor * L_0``, ``L_0`` the run's first loss
      (diverged);
    - ``L == 0`` (an exact fit: the walkthrough stops there);
    - ``||g||_2 < tol`` (``tol > 0``): the gradient, not the loss, since near the minimum a
      float32 loss stops changing long before the parameters do. ``g`` of the trainable
      parameters only: ``frozen`` names the top-level parameters ``optimizer.freeze`` holds,
      whose gradient is not zero at the constrained minimum.

    A step after the stop computes nothing (``lax.cond``), rather than computing a gradient to
    discard it: a 3,000 x 270 file converged at step 102 of a call of 55,924 steps, whose
    gradients took 10 s of a 15 s fit."""

    def descend(c: Carry, batch: Batch) -> tuple[Carry, jax.Array]:
        value, grads = jax.value_and_grad(loss_fn)(c.params, apply_fn, *batch, objective)
        ref = jnp.where(jnp.isnan(c.ref_loss), value, c.ref_loss)
        bad = ~jnp.isfinite(value) | (value > divergence_factor * ref)
        stop = bad | (value == 0)
        if tol > 0:
            trained = {k: g for k, g in grads.items() if k not in frozen} if frozen else grads
            stop = stop | (optax.tree.norm(trained) < tol)
        # c.done is False whenever this branch runs; spelling it out anyway keeps the fusion XLA
        # chose before, without which Adam's moments differed in the last bit (measured)
        stay = c.done | stop
        updates, opt_state = tx.update(grads, c.opt_state, c.params)
        params = optax.apply_updates(c.params, updates)
        keep = functools.partial(jax.tree.map, lambda old, new: jnp.where(stay, old, new))
        return Carry(
            params=keep(c.params, params),
            opt_state=keep(c.opt_state, opt_state),
            taken=c.taken + jnp.where(stay, 0, 1),
            done=stay,
            diverged=c.diverged | (bad & ~c.done),
            ref_loss=ref,
        ), value

    def skip(c: Carry, batch: Batch) -> tuple[Carry, jax.Array]:
        return c, jnp.full((), jnp.nan, batch[1].dtype)

    return jax.lax.cond(c.done, skip, descend, c, batch)


@dataclass(frozen=True)
class CallSpec:
    """What shapes one compiled call (one is compiled per distinct spec): ``epochs`` epochs of
    ``steps`` steps each."""

    epochs: int
    steps: int
    full_batch: bool
    masked: bool  # some batch in the block is short: weight its rows
    record_every: int  # record the parameters before every k-th step of each epoch
    tol: float  # full batch: stop when the gradient's norm falls below tol
    divergence_factor: float  # full batch: a loss above factor * the first loss diverges
    rows: bool = False  # per-sample steps feed the model one row (features,), not (1, features)


class CallResult(NamedTuple):
    params: Params  # after the last applied step
    opt_state: Any
    losses: jax.Array  # (epochs * steps,): the loss at the parameters before each step (full
    # batch: NaN after the step it stopped at, which were skipped)
    recorded: Params  # (records, ...): parameters before steps 0, k, 2k, ... of each epoch
    # (a per-sample call of one epoch: one row more, which the host drops)
    epoch_params: Params  # (epochs, ...): parameters at the end of each epoch
    taken: jax.Array  # full batch: steps applied before it stopped (converged or diverged)
    diverged: jax.Array  # full batch: a loss was non-finite or exploded
    ref_loss: jax.Array  # the run's first loss, the reference for divergence


def record_positions(spec: CallSpec) -> np.ndarray:
    """Which steps of a call (0-based, within the call) have recorded parameters: every k-th
    step of each epoch, counted from its first step (full batch: of the whole call)."""
    if spec.full_batch:
        return np.arange(0, spec.epochs * spec.steps, spec.record_every)
    per_epoch = np.arange(0, spec.steps, spec.record_every)
    return (np.arange(spec.epochs)[:, None] * spec.steps + per_epoch[None, :]).reshape(-1)


def scan_recording(
    step: Callable[[Any, Any], tuple[Any, jax.Array]],
    carry: Any,
    batches: Callable[[int, int], Any],
    length: int,
    every: int,
    *,
    one_scan: bool = False,
) -> tuple[Any, jax.Array, Params]:
    """``length`` steps of ``step`` in ``lax.scan``; returns the final carry, the ``(length,)``
    losses and the parameters (``carry.params``) before steps ``0, every, 2 every, ...``:
    ``ceil(length / every)`` rows, one more with ``one_scan`` (:func:`scan_writing_after`).

    ``batches(start, stop)`` gives the inputs of steps ``start:stop`` stacked on a leading
    axis. ``one_scan`` suits steps XLA compiles into one machine-code loop (per-sample);
    otherwise, for steps that run op by op anyway, where a record at every step costs more,
    each step records the parameters before it (``every == 1``), or the steps run in groups of
    ``every`` (:func:`scan_in_groups`)."""
    if one_scan:
        return scan_writing_after(step, carry, batches(0, length), length, every)
    if every == 1:

        def recording(c, b):
            before = c.params
            c, loss = step(c, b)
            return c, (loss, before)

        carry, (losses, before) = jax.lax.scan(recording, carry, batches(0, length), length=length)
        return carry, losses, before
    return scan_in_groups(step, carry, batches, length, every)


def scan_writing_after(step, carry, inputs, length: int, every: int):
    """One scan whose step ``t`` writes the parameters it produced into row
    ``(t + every) // every`` of a carried buffer whose row 0 holds the first; the last step to
    write row ``r``, ``t = r every - 1``, leaves there the parameters before step ``r every``,
    and the steps after the last recorded one write the extra last row (the parameters after
    step ``length - 1`` or before it: callers drop it).

    Recording the parameters before a step instead keeps the old ones alive past the update,
    and XLA then copies the carried parameters every step; a scan of groups of ``every`` steps
    runs its outer loop op by op. One scan whose body is one per-sample step stays one compiled
    loop: at 16 features 50 ns a step against 36 with ``every = 1``, 54 against 41 with
    ``every = 64`` (bench/per_sample_formulations.py)."""
    buf = jax.tree.map(
        lambda p: jnp.zeros((-(-length // every) + 1, *p.shape), p.dtype).at[0].set(p),
        carry.params,
    )

    def recording_step(cbt, b):
        c, buf, t = cbt
        c, loss = step(c, b)
        row = t + 1 if every == 1 else (t + every) // every
        buf = jax.tree.map(
            lambda r, p: jax.lax.dynamic_update_index_in_dim(r, p, row, 0), buf, c.params
        )
        return (c, buf, t + 1), loss

    (carry, buf, _), losses = jax.lax.scan(
        recording_step, (carry, buf, jnp.int32(0)), inputs, length=length
    )
    return carry, losses, buf


def scan_in_groups(step, carry, batches, length: int, every: int):
    """The steps of each group of ``every`` in an inner scan whose body is only the step, the
    parameters recorded before each group, and the last ``length % every`` steps apart;
    ``batches`` is asked for the whole groups and the rest separately, so no slice of the
    batches is ever copied."""
    groups, rest = divmod(length, every)
    losses, records = [], []
    if groups:
        head = jax.tree.map(
            lambda a: a.reshape(groups, every, *a.shape[1:]), batches(0, groups * every)
        )

        def group(c, b):
            before = c.params
            c, loss = jax.lax.scan(step, c, b, length=every)
            return c, (loss, before)

        carry, (loss, before) = jax.lax.scan(group, carry, head, length=groups)
        losses.append(loss.reshape(-1))
        records.append(before)
    if rest:
        records.append(jax.tree.map(lambda p: p[None], carry.params))
        carry, loss = jax.lax.scan(step, carry, batches(groups * every, length), length=rest)
        losses.append(loss)
    return carry, jnp.concatenate(losses), jax.tree.map(lambda *r: jnp.concatenate(r), *records)


def full_batch_call(
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    *,
    steps: int,
    record_every: int = 1,
    tol: float = 0.0,
    divergence_factor: float = 1e6,
    objective: Objective | None = None,
    frozen: tuple[str, ...] = (),
):
    """``jit(call)``: ``call(params, opt_state, X, y, w, idx, counts, ref_loss)`` runs ``steps``
    :func:`full_batch_step` (``frozen``: the parameters held constant) on all rows ``X``:
    ``(n, features)``, ``y``: ``(n,)`` and returns a :class:`CallResult` (``epoch_params``
    holds the final parameters once).

    ``w``: ``(n,)`` zero for the padding rows of a sharded ``X`` (None: every row counts);
    ``idx`` and ``counts`` are unused (the shuffled call's signature); ``ref_loss`` is the run's
    first loss, NaN on its first call."""
    step = functools.partial(
        full_batch_step,
        apply_fn=apply_fn,
        tx=tx,
        tol=tol,
        divergence_factor=divergence_factor,
        objective=objective,
        frozen=frozen,
    )

    def call(params, opt_state, X, y, w, idx, counts, ref_loss) -> CallResult:
        del idx, counts
        false = jnp.bool_(False)
        c = Carry(params, opt_state, jnp.int32(0), false, false, jnp.asarray(ref_loss, jnp.float32))
        c, losses, recorded = scan_recording(
            lambda c, _: step(c, (X, y, w)), c, lambda start, stop: None, steps, record_every
        )
        final = jax.tree.map(lambda p: p[None], c.params)
        return CallResult(
            c.params, c.opt_state, losses, recorded, final, c.taken, c.diverged, c.ref_loss
        )

    return jax.jit(call)


def gather_batches(
    X: jax.Array,
    y: jax.Array,
    idx: jax.Array,
    counts: jax.Array,
    start: int,
    stop: int,
    *,
    masked: bool,
    rows: bool,
    mesh: Mesh | None,
) -> Batch:
    """Batches ``start:stop`` of an epoch's row indices ``idx``: ``(steps, batch)``, gathered
    from ``X``, ``y``: ``x``: ``(stop - start, batch, features)``, ``y``, ``w``: ``(stop -
    start, batch)``.

    ``masked``: ``w`` is 1 for the first ``counts[s]`` rows of batch ``s`` and 0 for its padding
    (else None). ``rows``: batches of one row are fed as ``(features,)`` rows. ``mesh``: each
    device trains on its slice of every batch."""
    i = idx[start:stop]
    if rows:
        return X[i[:, 0]], y[i[:, 0]], None
    xb, yb, wb = X[i], y[i], None
    if masked:
        wb = (jnp.arange(i.shape[1])[None, :] < counts[start:stop, None]).astype(y.dtype)
    if mesh is not None:
        sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
        xb, yb, wb = jax.tree.map(
            lambda a: jax.lax.with_sharding_constraint(a, sharding), (xb, yb, wb)
        )
    return xb, yb, wb


def shuffled_call(
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    *,
    steps: int,
    record_every: int = 1,
    masked: bool = False,
    rows: bool = False,
    mesh: Mesh | None = None,
    objective: Objective | None = None,
):
    """``jit(call)``: ``call(params, opt_state, X, y, w, idx, counts, ref_loss)`` runs epochs
    of ``steps`` :func:`train_step` each over shuffled batches and returns a :class:`CallResult`.

    ``idx``: ``(epochs, steps, batch)`` row indices of ``X``: ``(n, features)`` and ``y``:
    ``(n,)``, and ``counts``: ``(epochs, steps)`` the real rows of each batch (read when
    ``masked``); ``w`` is unused and ``ref_loss`` passed through. Each epoch gathers its batches
    once (:func:`gather_batches`) and scans over them. ``taken`` is the number of steps before
    the first non-finite loss, ``diverged`` whether there was one (the steps after it still
    ran: the host discards them)."""
    step = functools.partial(train_step, apply_fn=apply_fn, tx=tx, objective=objective)
    gather = functools.partial(gather_batches, masked=masked, rows=rows, mesh=mesh)
    # per-sample steps at any period; mini-batches keep the records before each step or group:
    # at k = 1 the buffer measured no faster for 32-row steps (bench/call_time.py: 32-48 ns a
    # row against 34-45, alternating, on 2 shared cores)
    one_scan = rows

    def call(params, opt_state, X, y, w, idx, counts, ref_loss) -> CallResult:
        del w

        def epoch(state: TrainState, block):
            batches = functools.partial(gather, X, y, *block)
            state, losses, recorded = scan_recording(
                step, state, batches, steps, record_every, one_scan=one_scan
            )
            return state, (losses, recorded, state.params)

        state = TrainState(params, opt_state)
        state, (losses, recorded, epoch_params) = jax.lax.scan(epoch, state, (idx, counts))
        if one_scan and idx.shape[0] > 1:  # drop each epoch's extra row before joining them
            recorded = jax.tree.map(lambda r: r[:, : -(-steps // record_every)], recorded)
        recorded = jax.tree.map(lambda r: r.reshape(-1, *r.shape[2:]), recorded)
        # This pass over all of the call's losses also makes the call work the CPU client can
        # see: it runs a call it costs under 1000 flops (a loop counts once) inline in the
        # caller, which would serialize the device with the host's shuffle of the next blocks.
        # One fused reduction (the first non-finite loss's step, or the count): an all() and an
        # argmin() were two passes, the argmin's a slow (value, index) reduction.
        losses = losses.reshape(-1)
        steps_run = jnp.arange(losses.size, dtype=jnp.int32)
        taken = jnp.min(jnp.where(jnp.isfinite(losses), losses.size, steps_run))
        diverged = taken < losses.size
        ref_loss = jnp.asarray(ref_loss, jnp.float32)
        return CallResult(*state, losses, recorded, epoch_params, taken, diverged, ref_loss)

    return jax.jit(call)


def make_train_call(
    apply_fn: ApplyFn,
    tx: optax.GradientTransformation,
    spec: CallSpec,
    mesh: Mesh | None = None,
    objective: Objective | None = None,
    frozen: tuple[str, ...] = (),
):
    """The compiled call ``spec`` describes, ``call(params, opt_state, X, y, w, idx, counts,
    ref_loss) -> CallResult``: :func:`full_batch_call` of ``epochs * steps`` steps (``frozen``:
    the parameters ``optimizer.freeze`` holds, left out of its ``tol`` test), or
    :func:`shuffled_call` (``mesh``: shard every batch's rows over its ``data`` axis)."""
    if spec.full_batch:
        return full_batch_call(
            apply_fn,
            tx,
            steps=spec.epochs * spec.steps,
            record_every=spec.record_every,
            tol=spec.tol,
            divergence_factor=spec.divergence_factor,
            objective=objective,
            frozen=frozen,
        )
    return shuffled_call(
        apply_fn,
        tx,
        steps=spec.steps,
        record_every=spec.record_every,
        masked=spec.masked,
        rows=spec.rows,
        mesh=mesh,
        objective=objective,
    )


class Runner:
    """Queues compiled calls of one loader over device-resident ``X``, ``y``.

    ``runner(block, params, opt_state, ref_loss)`` builds the block's batch indices on the host
    (the shuffle) and dispatches its compiled call without waiting for it. One function is
    compiled per distinct block shape. With a ``mesh``, ``X``/``y``/``w`` are sharded by rows
    and the indices are replicated to every device; with ``shard_batches=False`` the rows are
    replicated too and every device runs the same steps on its own copy (per-sample SGD on
    several processes, which must all take part in every call).
    """

    def __init__(
        self,
        apply_fn: ApplyFn,
        tx: optax.GradientTransformation,
        loader: Loader,
        X: jax.Array,
        y: jax.Array,
        *,
        record_every: int = 1,
        tol: float = 0.0,
        divergence_factor: float = 1e6,
        w: jax.Array | None = None,
        mesh=None,
        shard_batches: bool = True,
        objective=None,
        frozen: tuple[str, ...] = (),
    ) -> None:
        self.loader, self.X, self.y, self.w, self.mesh = loader, X, y, w, mesh
        self.record_every, self.tol, self.divergence_factor = record_every, tol, divergence_factor
        batch_mesh = mesh if shard_batches else None  # False: every device trains on a copy
        self.compiled = functools.cache(
            lambda spec: make_train_call(apply_fn, tx, spec, batch_mesh, objective, frozen)
        )
        self.apply_fn, self.rows = apply_fn, None

    def _takes_rows(self, params) -> bool:
        """Per-sample steps on one device can feed the model a single row, which XLA runs
        about half again as fast, when the model maps a (features,) row to a scalar."""
        if self.loader.batch_size != 1 or self.loader.full_batch or self.mesh is not None:
            return False
        row = jax.ShapeDtypeStruct(self.X.shape[1:], self.X.dtype)
        try:
            return jax.eval_shape(self.apply_fn, params, row).shape == ()
        except (TypeError, ValueError, IndexError, AssertionError):  # a model for batches only
            return False

    def spec(self, block: Block, counts: np.ndarray | None = None) -> CallSpec:
        """The static shape of ``block``'s call (``counts``: its batches' real rows)."""
        short = counts is not None and bool((counts < self.loader.batch_size).any())
        return CallSpec(
            block.epochs,
            block.steps,
            self.loader.full_batch,
            masked=short,
            record_every=block.every or self.record_every,
            tol=self.tol,
            divergence_factor=self.divergence_factor,
            rows=bool(self.rows),
        )

    def __call__(self, block: Block, params, opt_state, ref_loss) -> CallResult:
        if self.rows is None:
            self.rows = self._takes_rows(params)
        loader = self.loader
        idx = counts = None
        if not loader.full_batch:
            parts = [
                loader.batches(e, block.start, block.stop)
                for e in range(block.epoch, block.epoch + block.epochs)
            ]
            idx, counts = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
        spec = self.spec(block, counts)
        if self.mesh is not None:
            idx, counts, ref_loss = replicate(self.mesh, None, (idx, counts, np.float32(ref_loss)))
        return self.compiled(spec)(params, opt_state, self.X, self.y, self.w, idx, counts, ref_loss)
