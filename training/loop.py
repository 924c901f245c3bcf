"""The host half of training: blocks of epochs planned into calls, and the calls queued.

The host builds the batch indices of a block (the shuffle), makes one compiled call
(``training/step.py``), and reads back per-step losses, the parameters recorded before every
``record_every``-th step of each epoch and the parameters at the end of each epoch: one sync per
call.
"""

from __future__ import annotations

import collections
import functools
import itertools
from dataclasses import dataclass

import jax
import numpy as np
import optax

from data.loaders import Loader
from training.devices import replicate
from training.step import ApplyFn, CallResult, CallSpec, make_train_call


@dataclass(frozen=True)
class Block:
    """One compiled call: epochs ``epoch .. epoch + epochs - 1``, steps ``start:stop`` of each,
    recording the parameters before every ``every``-th step (None: the runner's period)."""

    epoch: int
    epochs: int
    start: int
    stop: int
    every: int | None = None

    @property
    def steps(self) -> int:
        return self.stop - self.start


ROWS_PER_CALL = 1 << 16  # shuffled loaders: about this many rows per call. Small calls reuse
# the same few output buffers, warm in cache; one call per 10^6 rows spends about a third of
# its time faulting in fresh pages for its gathered rows and per-step records.
ROWS_IN_FLIGHT = 1 << 20  # rows of calls queued ahead of the one being read back, so the
# host's shuffle of the next epoch overlaps the device's work instead of stalling it
WORK_PER_CALL = 1 << 31  # the most work in one call, in row-features (one multiply-add of a
# feature of a row): 0.36 s at the 6e9 a second a full-batch step reaches on this 2-core CPU
# (bench/loaders.py), about a second while the machine is shared, so a stop is acted on within
# seconds; 10^6 x 16 rows still run 134 steps a call, as with the 2^27 rows a call before
FULL_BATCH_STEP_COST = 8192  # a full-batch step's fixed cost in row-features: on 437 rows x 11
# features a step takes 6-7 us, of which 4807 row-features explain about 3 (measured)
STEP_COST = 64  # a shuffled step's fixed cost: a per-sample step on 16 features takes 40 ns


LOG_POINTS = 10_000  # logger.every_n_steps=auto: about this many points per TensorBoard tag


def log_period(every: int | str, total_steps: int, steps_per_epoch: int) -> tuple[int, int]:
    """``(period, dense_epochs)`` for ``logger.every_n_steps``: a number is the period from
    the first step; ``auto`` is every step for runs of up to ``LOG_POINTS`` planned steps, and
    beyond that every step of the epochs within the first ``LOG_POINTS // 2`` steps, then the
    period that leaves ``LOG_POINTS // 2`` points for the rest: at most ``LOG_POINTS`` a tag.

    The dense start is what keeps a run that plans many steps but stops early on
    ``trainer.tol`` (housing: 20000 planned, 148 run) logging every step it took. Both depend
    only on the config, so a resumed run records the steps an uninterrupted one did."""
    if every != "auto":
        return int(every), 0
    if total_steps <= LOG_POINTS:
        return 1, 0
    return -(-total_steps // (LOG_POINTS // 2)), (LOG_POINTS // 2) // steps_per_epoch


def call_cap(loader: Loader, n_features: int, max_steps: int) -> int:
    """The most steps one call runs: a deterministic work budget (so a resumed run cuts its
    calls where an uninterrupted one did) of ``WORK_PER_CALL`` row-features, each step costing
    its rows x ``n_features`` plus a fixed overhead; shuffled loaders also gather at most
    ``ROWS_PER_CALL`` rows a call."""
    if loader.full_batch:
        per_step = loader.n * n_features + FULL_BATCH_STEP_COST
        return max(1, min(max_steps, WORK_PER_CALL // per_step))
    per_step = loader.batch_size * n_features + STEP_COST
    rows = ROWS_PER_CALL // loader.batch_size
    return max(1, min(max_steps, rows, WORK_PER_CALL // per_step))


def plan_blocks(
    loader: Loader,
    first_epoch: int,
    epochs: int,
    max_steps: int,
    checkpoint_every: int,
    align: int = 1,
    first_step: int = 0,
    n_features: int = 1,
    dense_epochs: int = 0,
):
    """Cut epochs ``first_epoch .. epochs - 1`` into calls that end on checkpoint epochs (every
    ``checkpoint_every``; 0: none) and run at most :func:`call_cap` steps.

    Full batch packs as many epochs as the budget allows into a call. Shuffled loaders take
    several small epochs, or a large epoch cut into blocks of steps whose starts are multiples
    of ``align`` (the recording period). Epochs before ``dense_epochs`` record every step
    (``Block.every`` 1) and end their own calls; the others every ``align``-th.
    ``first_step`` resumes inside a cut epoch."""
    n_steps = loader.steps_per_epoch
    cap = call_cap(loader, n_features, max_steps)
    per_call = cap // n_steps
    e = first_epoch
    while e < epochs:
        bound = epochs
        if checkpoint_every:
            bound = min(epochs, (e // checkpoint_every + 1) * checkpoint_every)
        every = 1 if e < dense_epochs else align
        if e < dense_epochs:
            bound = min(bound, dense_epochs)
        if per_call >= 1:
            count = min(bound - e, per_call)
            yield Block(e, count, 0, n_steps, every)
            e += count
        else:  # a large epoch: blocks of about `cap` steps
            size = max(every, cap // every * every)
            for s in range(first_step if e == first_epoch else 0, n_steps, size):
                yield Block(e, 1, s, min(n_steps, s + size), every)
            e += 1


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
        except Exception:  # noqa: BLE001 - a model written for batches only
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


def pipelined(runner: Runner, blocks, params, opt_state, t: int = 0, ref_loss=None):
    """Run ``blocks`` in order, yielding ``(block, t, result)`` with ``t`` the block's first
    global step; stop iterating to stop training.

    Calls are dispatched ahead of the one yielded (at least one, and up to ``ROWS_IN_FLIGHT``
    rows of shuffled batches) without waiting for them, so the device works through the queue
    while the host shuffles the next blocks and the caller logs. Calls already queued when the
    caller stops still run."""
    ref_loss = np.float32(np.nan) if ref_loss is None else ref_loss
    queued: collections.deque = collections.deque()  # (block, result) not yet yielded

    def ahead() -> int:  # rows of the calls queued behind the oldest
        steps = sum(b.epochs * b.steps for b, _ in itertools.islice(queued, 1, None))
        return steps * runner.loader.batch_size

    def oldest():
        nonlocal t
        block, out = queued.popleft()
        first, t = t, t + block.epochs * block.steps
        return block, first, out

    for block in blocks:
        if queued:  # continue from what the last queued call will return
            last = queued[-1][1]
            params, opt_state, ref_loss = last.params, last.opt_state, last.ref_loss
        queued.append((block, runner(block, params, opt_state, ref_loss)))
        if len(queued) > 1 and ahead() >= ROWS_IN_FLIGHT:
            yield oldest()
    while queued:
        yield oldest()
