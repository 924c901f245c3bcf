"""Side work of the training loop as hooks: what runs on the host after each compiled call.

``fit`` (``training/run.py``) runs a call, reads its result back into a :class:`Call`, updates
the progress record and calls the :class:`Hooks`; what each hook does (TensorBoard, the
walkthrough's trace, validation, the progress line, checkpoints, the plots' histories) lives
here, each in a function or small class of its own. Adding a behaviour means adding a hook,
not editing ``fit``. The idea is levanter's ``add_hook(fn, every=N)``; our calls run many
steps each, so ``every`` counts epochs, not steps.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from training import plots
from training.blocks import Block
from training.devices import to_host
from training.evaluate import regression_metrics
from training.logs import Progress, TensorBoardLog, log_steps, print_trace
from training.step import CallResult, Runner, record_positions


@dataclass(frozen=True, kw_only=True)
class Call:
    """What one compiled call did, read back to the host (numpy), plus its device outputs.

    ``losses``: (epochs * steps,), the loss before each step of the call; ``taken``: the steps
    applied (fewer than ``losses.size`` when a full-batch call stopped, converged or diverged,
    inside it); ``positions``: the call's steps (0-based) whose parameters were recorded, each
    before ``n_valid``; ``recorded``: those parameters, a leading axis of ``len(positions)``;
    ``epoch_params``: the parameters at the end of each epoch."""

    block: Block
    t0: int  # the call's first global step
    losses: np.ndarray
    taken: int
    diverged: bool
    ends_epoch: bool  # the call ends on the last step of an epoch
    positions: np.ndarray
    recorded: dict
    epoch_params: dict
    out: CallResult  # on the device(s): the parameters and optimizer state to continue from

    @functools.cached_property
    def params(self) -> dict:
        """The parameters at the call's end, on the host (read once, when a hook asks)."""
        return to_host(self.out.params)

    @property
    def stopped(self) -> bool:
        """Converged or diverged inside the call (full batch)."""
        return self.taken < self.losses.size

    @property
    def n_valid(self) -> int:
        """The steps with a loss to log: those applied, and the step a convergence stopped at."""
        return self.taken + 1 if self.stopped and not self.diverged else self.taken


def read_back(runner: Runner, block: Block, t0: int, out: CallResult, steps_per_epoch: int) -> Call:
    """The one host sync of a call: its per-step values, read back together."""
    res = to_host(out._replace(params=None, opt_state=None))
    taken, diverged = int(res.taken), bool(res.diverged)
    call = Call(
        block=block,
        t0=t0,
        losses=res.losses,
        taken=taken,
        diverged=diverged,
        ends_epoch=block.stop == steps_per_epoch,
        positions=record_positions(runner.spec(block)),
        recorded=res.recorded,
        epoch_params=res.epoch_params,
        out=out._replace(ref_loss=float(res.ref_loss)),
    )
    positions = call.positions[call.positions < call.n_valid]
    recorded = jax.tree.map(lambda a: np.asarray(a)[: len(positions)], res.recorded)
    return dataclasses.replace(call, positions=positions, recorded=recorded)


Hook = Callable[[Call, Any], None]  # (the call, the progress record after it)


@dataclass
class Hooks:
    """The hooks of a run, called in the order they were added.

    ``add(fn, every=None)``: ``fn(call, at)`` after every call; ``every=k``: after each call
    that ends an epoch whose number (1-based, ``at.epoch``) is a multiple of ``k``."""

    hooks: list[tuple[Hook, int | None]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def add(self, fn: Hook, every: int | None = None) -> None:
        """Register ``fn``; a ``close()`` method of ``fn`` is called by :meth:`close`. With
        ``every=k`` the run's calls end on every k-th epoch (:attr:`periods`), so ``fn`` sees
        each of them however many epochs a call could hold."""
        if every is not None and every < 1:
            raise ValueError(f"every={every}: a hook runs every k >= 1 epochs, or None")
        self.hooks.append((fn, every))
        if callable(getattr(fn, "close", None)):
            self.closers.append(fn.close)

    @property
    def periods(self) -> tuple[int, ...]:
        """The ``every`` of the hooks that have one: the run's calls end on their multiples
        (``training/blocks.py`` ``plan_blocks``), so each such hook sees its epochs."""
        return tuple(sorted({every for _, every in self.hooks if every is not None}))

    def __call__(self, call: Call, at) -> None:
        for fn, every in self.hooks:
            if every is None or (call.ends_epoch and not call.stopped and at.epoch % every == 0):
                fn(call, at)

    def close(self) -> None:
        for close in self.closers:
            close()


@dataclass
class Curves:
    """What the plots draw at the end, gathered as training goes (process 0 only). Saved
    beside each checkpoint (:meth:`save`, ``curves.npz`` in the run directory) and restored
    with it (:meth:`restore`), so a resumed run draws the whole run, not the part after it."""

    loss: plots.History = field(default_factory=plots.History)
    W: plots.History = field(default_factory=plots.History)  # the weights' path (linear)
    val: plots.History = field(default_factory=plots.History)
    trace_W: list = field(default_factory=list)  # the walkthrough's W before each step
    trace_loss: list = field(default_factory=list)

    FILE = "curves.npz"
    HISTORIES = ("loss", "W", "val")

    def save(self, workdir: Path) -> None:
        """Write every history to ``workdir / FILE`` (numpy's ``.npz``), whole or not at all
        (a temporary file renamed)."""
        arrays = {}
        for name in self.HISTORIES:
            steps, values = getattr(self, name).arrays()
            arrays[f"{name}_steps"], arrays[f"{name}_values"] = steps, values
        for name in ("trace_W", "trace_loss"):
            parts = getattr(self, name)
            arrays[name] = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        path = Path(workdir) / self.FILE
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as f:
            np.savez(f, **arrays)
        os.replace(partial, path)

    def restore(self, workdir: Path, step: int) -> bool:
        """Take the histories of ``workdir / FILE`` before ``step`` (the step a resumed run
        continues from: a file written for a newer checkpoint, which could not be read, holds
        more). Returns False, changing nothing, when there is no such file."""
        path = Path(workdir) / self.FILE
        if not path.is_file():
            return False
        with np.load(path) as saved:
            for name in self.HISTORIES:
                steps, values = saved[f"{name}_steps"], saved[f"{name}_values"]
                # a point of `step` itself, logged again by the resumed run, is drawn once
                # (plots.History.add); the trace's entries are the steps before `step`
                before = steps <= step
                history = getattr(self, name)
                history.steps, history.values = [], []
                if before.any():
                    history.add(steps[before], values[before])
            # the trace holds every step from the first: step t is its entry t
            self.trace_W = [saved["trace_W"][:step]] if len(saved["trace_W"]) else []
            self.trace_loss = [saved["trace_loss"][:step]] if len(saved["trace_loss"]) else []
        return True


def tensorboard(tb: TensorBoardLog, names: list[str], lr_at) -> Hook:
    """Loss, learning rate and parameters at the recorded steps; W's histogram at the end."""

    def hook(call: Call, at) -> None:
        log_steps(tb, call.t0, call.positions, call.losses, call.recorded, names, lr_at)
        W_end = call.params.get("W")
        # a call that diverged ends on non-finite parameters: nothing to draw
        if np.ndim(W_end) == 1 and np.size(W_end) > 1 and np.isfinite(W_end).all():
            tb.histogram("params/W", W_end, call.t0 + call.taken)
            tb.params_at["histogram"] = call.t0 + call.taken

    return hook


def loss_curve(curves: Curves) -> Hook:
    """The training loss at the recorded steps, for ``loss_curves.png``."""

    def hook(call: Call, at) -> None:
        curves.loss.add(call.t0 + call.positions, call.losses[call.positions])

    return hook


def weights_path(curves: Curves) -> Hook:
    """The weights at the recorded steps, for the loss surface's path (linear models)."""

    def hook(call: Call, at) -> None:
        if np.ndim(call.recorded.get("W")) == 2:
            curves.W.add(call.t0 + call.positions, call.recorded["W"])

    return hook


def trace(curves: Curves, out: Callable[[str], None] = print) -> Hook:
    """The walkthrough's trace (one feature, every step recorded): W before and after each
    step and the loss before it, printed and kept for the walkthrough's plots."""

    def hook(call: Call, at) -> None:
        n = call.n_valid
        W = np.concatenate([call.recorded["W"].reshape(-1), np.ravel(call.params["W"])])
        print_trace(call.t0, W[: n + 1], call.losses[:n], out)
        curves.trace_W.append(W[:n])
        curves.trace_loss.append(call.losses[:n])

    return hook


class Validation:
    """Validation metrics in the target's units, logged as training goes: at each epoch's end
    (full batch: at the recorded steps), at most ``MAX_POINTS`` a call."""

    MAX_POINTS = 1000  # per call, so a long full-batch call does not flood TensorBoard

    def __init__(self, apply_fn, data, full_batch: bool, tb: TensorBoardLog, curve) -> None:
        self.data, self.full_batch, self.tb, self.curve = data, full_batch, tb, curve
        self.X = data.X["val"]
        self.predict = jax.jit(jax.vmap(apply_fn, in_axes=(0, None)))

    def __call__(self, call: Call, at) -> None:
        if call.diverged:
            return
        if self.full_batch:
            stack, steps = call.recorded, call.t0 + call.positions
        elif call.ends_epoch:
            b = call.block
            stack, steps = call.epoch_params, call.t0 + b.steps * np.arange(1, b.epochs + 1)
        else:
            return
        pick = np.unique(
            np.linspace(0, len(steps) - 1, min(len(steps), self.MAX_POINTS)).astype(int)
        )
        steps = np.asarray(steps)[pick]
        rows = self._logged(jax.tree.map(lambda a: a[pick], stack), steps)
        self.curve.add(steps.astype(int).tolist(), [m["mse"] for m in rows])

    def log_at(self, params, step: int) -> None:
        """TensorBoard's validation point of ``params`` at ``step`` (the curve has its own).
        ``params`` are read on this process alone (process 0 writes; nothing here may wait on
        the others)."""
        self._logged(jax.tree.map(lambda a: a[None], to_host(params)), np.array([step]))

    def _logged(self, stack, steps: np.ndarray) -> list[dict]:
        """The validation metrics of each of the stacked parameters ``stack``, written to
        TensorBoard at ``steps``."""
        preds = np.asarray(self.predict(stack, self.X))
        rows = [
            regression_metrics(self.data.y_raw["val"], self.data.to_target_units(p)) for p in preds
        ]
        # one TensorBoard event a step holding every metric: an event each queues and waits on
        # tensorboardX's writer thread (about 1 ms apiece)
        self.tb.scalars({f"val/{k}": np.array([m[k] for m in rows]) for k in rows[0]}, steps)
        return rows


class ProgressLine:
    """The progress bar or line (``logger.progress``): epoch, step, loss, samples a second.

    The loss: full batch, the last step's (the loss over every training row); per-sample and
    mini-batch, the mean of the batch losses of the latest epoch (of its latest call, when an
    epoch takes several), since one batch's loss (a single row's, per sample) jumps by orders
    of magnitude from step to step."""

    def __init__(self, mode: str, epochs: int, batch_size: int, full_batch: bool) -> None:
        self.progress, self.batch_size = Progress(mode, epochs, batch_size), batch_size
        self.full_batch = full_batch

    def __call__(self, call: Call, at) -> None:
        if call.diverged:
            return
        n = call.n_valid
        per_epoch = call.block.stop - call.block.start  # the steps of each epoch in the call
        latest = call.losses[max(n - per_epoch, 0) : n]
        loss = latest[-1] if self.full_batch else latest.mean(dtype=np.float64)
        self.progress.update(at.epoch, at.step, float(loss), n * self.batch_size)

    def close(self) -> None:
        self.progress.close()


def checkpoint(save: Callable[[Any, Any, Any], None]) -> Hook:
    """``save(at, params, opt_state)`` after every call (``save`` asks orbax's policy whether
    the step is a checkpoint step). A call that diverged is not saved; a run that converged is
    saved once, after the loop."""

    def hook(call: Call, at) -> None:
        if not (call.diverged or call.stopped or at.stopped == "converged"):
            save(at, call.out.params, call.out.opt_state)

    return hook


@dataclass
class Progressed:
    """Where training stands: what a checkpoint saves besides the arrays."""

    step: int = 0
    epoch: int = 0
    epoch_step: int = 0  # steps of `epoch` already done (an epoch cut into several calls)
    ref_loss: float = math.nan  # the run's first loss (NaN: none yet), for divergence
    epoch_loss_sum: float = 0.0  # shuffled loaders with trainer.tol: this epoch's losses
    last_epoch_loss: float = math.inf  # the last epoch's mean loss (inf: none yet)
    stopped: str = "epochs"

    SAVED = ("step", "epoch", "epoch_step", "ref_loss", "epoch_loss_sum", "last_epoch_loss")

    def meta(self) -> dict:
        """The saved fields as JSON numbers. JSON has no NaN or infinity: a non-finite float
        (``ref_loss`` NaN before the first step, ``last_epoch_loss`` inf before the first epoch
        ends: "none yet") is stored as ``null`` and read back as the field's default."""
        return {
            k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in ((k, getattr(self, k)) for k in self.SAVED)
        }

    @classmethod
    def from_meta(cls, meta: dict) -> Progressed:
        """The inverse of :meth:`meta`; also reads older checkpoints' ``repr`` strings
        (``"nan"``, ``"inf"``, ``"0.25"``)."""
        known = {k: v for k, v in meta.items() if k in cls.SAVED and v is not None}
        return cls(**{k: float(v) if isinstance(v, str) else v for k, v in known.items()})

    def advance(self, call: Call, steps_per_epoch: int, epoch_tol: float) -> None:
        """Move past ``call``: step, epoch, the divergence reference, and with ``epoch_tol > 0``
        (``trainer.tol`` of a shuffled loader; full batch tests its ``tol`` inside the call) the
        epoch test: the epoch's mean loss changed by at most ``epoch_tol`` relative to the one
        before. Sets ``stopped`` on convergence."""
        b = call.block
        self.step, self.ref_loss = call.t0 + call.taken, float(call.out.ref_loss)
        if call.stopped:
            self.epoch += call.taken // b.steps
            if not call.diverged:
                self.stopped = "converged"
            return
        if call.ends_epoch:
            self.epoch, self.epoch_step = b.epoch + b.epochs, 0
        else:
            self.epoch, self.epoch_step = b.epoch, b.stop
        if epoch_tol > 0:
            self.epoch_loss_sum += float(call.losses.sum(dtype=np.float64))
            if call.ends_epoch:
                mean = self.epoch_loss_sum / steps_per_epoch
                # the first epoch has no previous loss to compare (inf - x is not finite)
                change = abs(self.last_epoch_loss - mean)
                if math.isfinite(change) and change <= epoch_tol * abs(self.last_epoch_loss):
                    self.stopped = "converged"
                    return
                self.epoch_loss_sum, self.last_epoch_loss = 0.0, mean
