"""The plan of a run's compiled calls: its epochs cut into :class:`Block` s, each one call.

A block's size is a deterministic work budget (:func:`call_cap`), so a resumed run cuts its
calls where an uninterrupted one did; calls end on checkpoint epochs, and the logging period
(:func:`log_period`) says which steps' parameters a call records. ``fit`` (``training/run.py``)
iterates the blocks; :class:`training.step.Runner` turns each into one call.
"""

from __future__ import annotations

from dataclasses import dataclass

from data.loaders import Loader


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
    ``trainer.tol`` (housing: 20000 planned, 148 run) logging every step it took. Shuffled
    loaders record from each epoch's first step: their period is the epoch's steps over the
    points an epoch may have, at least one (a run of more epochs than ``LOG_POINTS // 2`` logs
    one point an epoch). Both depend only on the config, so a resumed run records the steps an
    uninterrupted one did."""
    if every != "auto":
        return int(every), 0
    if total_steps <= LOG_POINTS:
        return 1, 0
    dense = (LOG_POINTS // 2) // steps_per_epoch
    if steps_per_epoch == 1:  # full batch: the period runs over each call's steps
        return -(-total_steps // (LOG_POINTS // 2)), dense
    # each epoch records from its first step, so the period is fitted to the epoch: a
    # 436-step epoch at period 262 recorded 2 points, 10,774 in all; at most one an epoch
    # when the epochs outnumber the points
    rest = max(total_steps // steps_per_epoch - dense, 1)
    per_epoch = max(1, (LOG_POINTS // 2) // rest)
    return -(-steps_per_epoch // per_epoch), dense


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
    end_every: int | tuple[int, ...],
    align: int = 1,
    first_step: int = 0,
    n_features: int = 1,
    dense_epochs: int = 0,
):
    """Cut epochs ``first_epoch .. epochs - 1`` into calls that end on every multiple of each
    period in ``end_every`` (epochs; 0: none): the checkpoint epochs and the epochs a hook added
    with ``every=k`` runs at. Each call runs at most :func:`call_cap` steps.

    Full batch packs as many epochs as the budget allows into a call. Shuffled loaders take
    several small epochs, or a large epoch cut into blocks of steps whose starts are multiples
    of ``align`` (the recording period). Epochs before ``dense_epochs`` record every step
    (``Block.every`` 1) and end their own calls; the others every ``align``-th.
    ``first_step`` resumes inside a cut epoch."""
    n_steps = loader.steps_per_epoch
    cap = call_cap(loader, n_features, max_steps)
    per_call = cap // n_steps
    periods = [k for k in ((end_every,) if isinstance(end_every, int) else end_every) if k]
    e = first_epoch
    while e < epochs:
        bound = min([epochs] + [(e // k + 1) * k for k in periods])
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
