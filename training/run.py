"""``train_and_evaluate(cfg, workdir)``: the whole run, readable top to bottom: build, fit,
evaluate.

``build`` (``training/build.py``) splits the model once into a graph definition and a pure dict
of parameters and returns small records: the rows on the device(s), the model, the optimizer,
the settings and the outputs. ``fit`` runs the compiled calls (``training/step.py``: the step,
the call that scans it, and the ``Runner`` that shuffles and dispatches); after each it reads
the call's result back, updates the progress record, calls the hooks (``training/hooks.py``:
TensorBoard, validation, the progress line, the walkthrough's trace, checkpoints) and checks the
stopping rules. Calls are queued ahead (``pipelined``), so the host shuffles the next block and
writes TensorBoard while the device trains. Checkpoints are written at call boundaries
(``training/blocks.py`` plans them), which are the same in a resumed run as in an
uninterrupted one. With several devices or processes the training rows are sharded over a
``data`` mesh (``training/devices.py``) and only process 0 writes files other than checkpoints.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import itertools
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from data.loaders import FIXED_BATCH
from errors import DivergenceError, Interrupted, UserError, hydra_value, stopped_before_the_run
from training.blocks import Block, log_period, plan_blocks
from training.build import Run, Settings, auto_step, build, new_run_id, say
from training.checkpoint import Checkpoints, checkpoint_steps, refuse_a_name_orbax_cannot_hold
from training.cli import (
    refuse_another_run,
    refuse_another_runs_meta,
    refuse_fewer_epochs,
    resume_advice,
    stop_caught,
    the_run_begins,
    the_run_ends,
    validation_rows_for_a_search,
)
from training.compilation_cache import enable_compilation_cache
from training.config import command_line_overrides, validate
from training.devices import init_distributed, keep_freed_host_memory, one_blas_thread
from training.hooks import (
    Curves,
    Hooks,
    Progressed,
    ProgressLine,
    Validation,
    checkpoint,
    loss_curve,
    read_back,
    tensorboard,
    trace,
    weights_path,
)
from training.logs import PREDICTIONS, TensorBoardLog, copy_to_run_log, fmt, write_json
from training.report import SPLITS, evaluate
from training.step import Runner


def train_and_evaluate(cfg: DictConfig, workdir: str | Path) -> dict:
    """Train the configured model; write TensorBoard events, checkpoints, plots, the saved
    preprocessing and ``metrics.json`` to ``workdir``. Returns the metrics. Raises
    :class:`UserError` for a config or data the run cannot use, :class:`DivergenceError`,
    :class:`Interrupted` on SIGINT / SIGTERM."""

    def before(signum: int) -> Interrupted:
        return stopped_before_the_run(signum, resume_advice(Path(workdir)))

    with ctrl_c_says(before):
        validate(cfg)
        enable_compilation_cache(cfg.trainer.compilation_cache)
        keep_freed_host_memory()
        one_blas_thread()
        refuse_a_name_orbax_cannot_hold(Path(workdir).absolute())
        if not cfg.trainer.resume:  # before any process writes: no process has connected yet
            refuse_another_run(Path(workdir))
        init_distributed(cfg.trainer.distributed)
        # the directory is this run's (a resumed one's once its checkpoint is found to be of
        # this run's settings, below): train.log gets its printout
        resuming = cfg.trainer.resume and checkpoint_steps(Path(workdir))
        if jax.process_index() == 0 and not resuming:
            copy_to_run_log(new_run=True)
        record_the_config(cfg, Path(workdir))
        t_start = time.perf_counter()
        run, params, opt_state = build(cfg, Path(workdir))
        validation_rows_for_a_search(cfg, run.data.rows)
    try:
        with ctrl_c_says(before):
            run, params, opt_state, at = start(run, params, opt_state)
        if run.settings.writes:
            copy_to_run_log(new_run=at.step == 0)  # resumed from no usable checkpoint: afresh
        with ctrl_c_says(lambda signum: in_the_run(run, signum)):  # where below says no more
            the_run_begins()  # train.py's handler until now ended the process at once
            params, opt_state, at = fit(run, params, opt_state, at)
            with ctrl_c_says(lambda signum: in_the_report(run, at, signum)):
                metrics = evaluate(run, params, at)
            if cfg.data.folds:
                from training.crossval import cross_validate

                n = sum(len(r) for r in run.data.rows.values())
                metrics["cv"] = cross_validate(cfg, run.settings.workdir, n, fit)
            with ctrl_c_says(lambda signum: in_the_report(run, at, signum)):
                finish(run, metrics, at, time.perf_counter() - t_start)
        return metrics
    finally:
        the_run_ends()  # the files are written, or a stop closes them: no signal breaks that
        run.out.plots.close()
        run.out.tb.close()
        run.out.ckpt.close()


def record_the_config(cfg: DictConfig, workdir: Path) -> None:
    """Hydra saves the composed config to ``.hydra/config.yaml`` before the run; ``validate``
    then sets ``optimizer.family`` and ``optimizer.transform`` from the file ``optimizer.name``
    names. The saved config is replaced by the validated one (process 0), so it records the
    optimizer that trains."""
    saved = workdir / ".hydra" / "config.yaml"
    if saved.is_file() and jax.process_index() == 0:
        OmegaConf.save(cfg, saved)


def start(run: Run, params, opt_state) -> tuple[Run, object, object, Progressed]:
    """Resume from the newest checkpoint (``trainer.resume``), give the run its id (in
    ``preprocessing.json`` and every checkpoint, it ties the two together) and open
    TensorBoard."""
    settings, out = run.settings, run.out
    resuming = settings.cfg.trainer.resume
    at, run_id = Progressed(), None
    if resuming:
        params, opt_state, at, run_id = resume(
            out.ckpt, settings, out.preprocessing, params, opt_state
        )
        refuse_fewer_epochs(settings.workdir, at.epoch, settings.cfg.trainer.epochs)  # auto's
        if settings.writes and at.step:  # the plots draw the whole run, not the part after it
            cfg = settings.cfg
            if not out.curves.restore(settings.workdir, at.step) and cfg.logger.plots:
                say(  # the histories are kept only while logger.plots=true
                    f"note: the plots draw the steps from {at.step} on: the steps before were "
                    "trained with logger.plots=false"
                )
            if cfg.logger.tensorboard and not any(settings.workdir.glob("events.out.tfevents.*")):
                say(
                    f"note: TensorBoard's events begin at step {at.step}: the steps before were "
                    "trained with logger.tensorboard=false"
                )
    if resuming and settings.writes:
        forget_the_report(settings.workdir, keep_curves=bool(settings.cfg.logger.plots))
    out.preprocessing["run_id"] = run_id or new_run_id()
    if settings.writes:
        write_json(settings.workdir / "preprocessing.json", out.preprocessing)
    # a resumed run drops every point an earlier attempt logged past its checkpoint (from
    # step 0 when none was written), so TensorBoard shows each step once
    tb = TensorBoardLog(
        settings.workdir,
        settings.cfg.logger.tensorboard and settings.writes,
        purge_step=at.step if resuming else None,
    )
    return dataclasses.replace(run, out=dataclasses.replace(out, tb=tb)), params, opt_state, at


def forget_the_report(workdir: Path, keep_curves: bool) -> None:
    """Delete what the end of an earlier attempt at this run wrote (``metrics.json``, the
    figures) as a resumed run begins, and the plots' histories (``curves.npz``, restored
    already) unless the run keeps them (``keep_curves``: ``logger.plots=true``): each is of
    the steps before. A resume that added epochs and was stopped had left the old run's
    metrics.json, so the run looked finished, and predict.py priced with the newer checkpoint
    without its note; one with the plots off left figures of the shorter run beside metrics
    of the longer."""
    stale = [workdir / "metrics.json", workdir / PREDICTIONS, *workdir.glob("*.png")]
    if not keep_curves:
        stale.append(workdir / Curves.FILE)
    for path in stale:
        path.unlink(missing_ok=True)


def finish(run: Run, metrics: dict, at: Progressed, wall_time_s: float) -> None:
    """Add the run's facts to ``metrics``; write ``metrics.json`` and TensorBoard's hparams."""
    settings, bound = run.settings, run.optimizer.bound
    metrics.update(
        wall_time_s=wall_time_s,
        platform=run.rows.device.platform,
        device_count=jax.device_count(),
        process_count=jax.process_count(),
        stable_lr_bound=bound.lr if bound else None,
        chosen=run.optimizer.chosen,
    )
    if settings.writes:
        write_json(settings.workdir / "metrics.json", metrics)
    run.out.tb.hparams(
        hparams_of(settings.cfg, metrics.get("chosen", {})),
        {f"hparams/{k}": v for k, v in flat_metrics(metrics).items()},
        at.step,
    )


def fit(run: Run, params, opt_state, at: Progressed, calls: dict | None = None):
    """The training loop. For each compiled call (``training/step.py``: ``full_batch_call``
    steps ``full_batch_step``, ``shuffled_call`` steps ``train_step``; ``Runner`` makes the
    shuffle and dispatches): read its result back, update the progress record ``at``, call the
    hooks, check the stopping rules (divergence, convergence, a signal). ``calls``: a cache of
    compiled calls shared by cross-validation folds of the same shapes. Returns the parameters,
    optimizer state and progress at the end."""
    loader, tr = run.settings.loader, run.settings.cfg.trainer
    traced = is_traced(run)
    hooks = make_hooks(run, traced, at, params)
    runner, blocks = plan(run, at, calls, traced, periods_of_every_process(hooks.periods))
    epoch_tol = 0.0 if loader.full_batch else tr.tol  # full batch: tested inside the call
    first = (at.step, np.float32(at.ref_loss))
    try:
        with stop_on_signals(second_signal(run.settings, run.out.ckpt)) as asked:
            for block, t0, out in pipelined(runner, blocks, params, opt_state, *first):
                call = read_back(runner, block, t0, out, loader.steps_per_epoch)
                at.advance(call, loader.steps_per_epoch, epoch_tol)
                hooks(call, at)
                if call.diverged:
                    raise divergence(run, t0 + call.taken, call.losses[call.taken])
                params, opt_state = out.params, out.opt_state
                if at.stopped == "converged":
                    break
                if asked:
                    save(run, at, params, opt_state)
                    raise interrupted(run.settings, run.out.ckpt, asked[0], at.step)
            save(run, at, params, opt_state)
            if asked:  # during the last call (it may have converged) or the final save
                raise interrupted(run.settings, run.out.ckpt, asked[0], at.step)
    finally:  # a divergence or a stop also ends the progress line
        hooks.close()
    return params, opt_state, at


ROWS_IN_FLIGHT = 1 << 20  # rows of calls queued ahead of the one being read back, so the
# host's shuffle of the next epoch overlaps the device's work instead of stalling it


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


MAX_PERIODS = 8  # hooks with their own `every`, as many as a run may have


def periods_of_every_process(periods: tuple[int, ...]) -> tuple[int, ...]:
    """The hooks' ``every`` periods of all processes together. Writing hooks exist on process 0
    only, and every process must cut its calls at the same epochs, or the processes' compiled
    calls would no longer meet; one process: ``periods`` as they are."""
    if jax.process_count() == 1:
        return periods
    if len(periods) > MAX_PERIODS:
        raise ValueError(f"{len(periods)} hook periods: at most {MAX_PERIODS}")
    from jax.experimental.multihost_utils import process_allgather

    mine = np.zeros(MAX_PERIODS, np.int64)
    mine[: len(periods)] = periods
    every = np.asarray(process_allgather(mine)).reshape(-1)
    return tuple(sorted({int(k) for k in every if k > 0}))


def is_traced(run: Run) -> bool:
    """Whether the walkthrough's trace is printed (``logger.print_trace``, one parameter
    array). Raises UserError for a trace that cannot see every step."""
    cfg = run.settings.cfg
    traced = cfg.logger.print_trace and len(run.model.names) == 1
    if traced and cfg.logger.every_n_steps not in (1, "auto"):
        raise UserError(
            "bad config value logger.print_trace=true: the trace needs logger.every_n_steps=1"
        )
    return traced


def plan(
    run: Run, at: Progressed, calls: dict | None, traced: bool, periods: tuple[int, ...] = ()
) -> tuple[Runner, list[Block]]:
    """The runner of the compiled calls and the blocks (calls) from ``at`` to the last epoch,
    ending on checkpoint epochs and on the multiples of the hooks' ``periods``; decided from
    the config alone, so every process plans the same calls."""
    cfg, loader, rows = run.settings.cfg, run.settings.loader, run.rows
    tr, every = cfg.trainer, cfg.logger.every_n_steps
    # the trace needs every step; `auto` thins only runs of more than LOG_POINTS steps
    spe = loader.steps_per_epoch
    every, dense_epochs = log_period(1 if traced else every, tr.epochs * spe, spe)
    runner = Runner(
        run.model.apply_fn,
        run.optimizer.tx,
        loader,
        rows.X,
        rows.y,
        record_every=every,
        tol=tr.tol,
        divergence_factor=tr.divergence_factor,
        w=rows.w,
        mesh=rows.mesh,
        shard_batches=not rows.copies,
        objective=run.model.objective,
        frozen=tuple(cfg.optimizer.freeze),  # the tol test reads the trainable gradient only
    )
    if calls is not None:  # a fold of the same shapes: no recompiling
        runner.compiled = calls.setdefault("compiled", runner.compiled)
    max_steps = tr.max_steps_per_call
    if tr.tol > 0 and not loader.full_batch:  # the epoch-level tol test needs epoch-end calls
        max_steps = min(max_steps, spe)
    blocks = plan_blocks(
        loader,
        at.epoch,
        tr.epochs,
        max_steps,
        (tr.checkpoint_every, *periods),
        align=every,
        first_step=at.epoch_step,
        n_features=int(np.prod(rows.X.shape[1:])),
        dense_epochs=dense_epochs,
    )
    return runner, blocks


def make_hooks(run: Run, traced: bool, at: Progressed | None = None, params=None) -> Hooks:
    """The run's hooks: writing ones on process 0 only, the weights' path (the loss surface's)
    for linear models only, checkpoints every ``trainer.checkpoint_every`` epochs. ``at`` and
    ``params``: where a resumed run starts (its validation point there is logged again)."""
    settings, out, cfg = run.settings, run.out, run.settings.cfg
    hooks = Hooks()
    if settings.writes:
        hooks.add(tensorboard(out.tb, run.model.names, run.optimizer.lr_at))
        if cfg.logger.plots:
            hooks.add(loss_curve(out.curves))
            if run.model.linear:
                hooks.add(weights_path(out.curves))
        if traced:
            hooks.add(trace(out.curves))
        X_val = run.data.X.get("val")
        if X_val is not None and len(X_val) > 0 and out.tb.writer is not None:
            full_batch = settings.loader.full_batch
            curve = out.curves.val
            validation = Validation(run.model.apply_fn, run.data, full_batch, out.tb, curve)
            hooks.add(validation)
            if at is not None and at.step and not full_batch:
                # the checkpoint's epoch end: its point went with the points the resumed writer
                # purged (from the checkpoint's step on), and no later call ends that epoch
                validation.log_at(params, at.step)
        if not traced and cfg.logger.progress != "off":
            hooks.add(
                ProgressLine(
                    cfg.logger.progress,
                    cfg.trainer.epochs,
                    settings.loader.batch_size,
                    settings.loader.full_batch,
                )
            )
    if cfg.trainer.checkpoint_every:  # orbax's interval policy picks the checkpoint epochs
        hooks.add(checkpoint(functools.partial(save, run, force=False)))
    return hooks


@contextlib.contextmanager
def stop_on_signals(at_once: str = "stopped by a second SIGINT"):
    """SIGTERM and SIGINT set a flag that the loop reads after each call, so the call in flight
    (about a second at most, ``training/blocks.py`` ``call_cap``) finishes and a checkpoint is
    written before the run exits. A second SIGINT (Ctrl-C again) raises :class:`Interrupted`
    with the message ``at_once`` and exit status 130 where the run is, without a checkpoint;
    the callers' ``finally`` still flushes TensorBoard."""
    asked: list[int] = []

    def handler(signum, frame):
        # not inside a checkpoint's write (raised in orbax's event loop, it broke that loop's
        # thread): the run stops once the checkpoint is written, as after a first Ctrl-C
        if signum == signal.SIGINT and signal.SIGINT in asked and not _WRITING_CHECKPOINT:
            raise Interrupted(at_once, signal.SIGINT, at_once=True)
        asked.append(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield asked
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def second_signal(settings: Settings, ckpt: Checkpoints) -> str:
    """What a second Ctrl-C says: stopped without a checkpoint, and how to continue."""
    return (
        "stopped at once by a second SIGINT, without a checkpoint; to continue from the newest "
        f"checkpoint in {ckpt.directory} (if there is none, from the start), "
        f"{resume_advice(settings.workdir)}"
    )


def interrupted(settings: Settings, ckpt: Checkpoints, signum: int, step: int) -> Interrupted:
    """The error of a run stopped by ``signum`` at ``step``, its checkpoint saved; exit
    status 128 + the signal's number."""
    return Interrupted(
        f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint "
        f"saved in {ckpt.directory}; to continue, {resume_advice(settings.workdir)}",
        signum,
    )


@contextlib.contextmanager
def ctrl_c_says(message: Callable[[int], Interrupted | str]):
    """A Ctrl-C in the block (a KeyboardInterrupt; :class:`~errors.Stop` says which signal,
    SIGTERM too in a ``train.py`` run) ends the run as :class:`Interrupted`:
    ``message(signum)``'s one line (an :class:`Interrupted` of its own, or its text) and
    status 128 + the signal's number. For the parts of a run outside the fit's own handler
    (:func:`stop_on_signals`): before its first step, around the fit, in the report."""
    try:
        yield
    except KeyboardInterrupt as exc:
        stop_caught()
        signum = getattr(exc, "signum", signal.SIGINT)
        said = message(signum)
        raise (said if isinstance(said, Interrupted) else Interrupted(said, signum)) from None


def in_the_run(run: Run, signum: int) -> str:
    """What a stop around the fit (planning its calls, closing its progress line, setting up a
    cross-validation fold) says."""
    return (
        f"stopped by {signal.Signals(signum).name}; to continue from the newest checkpoint in "
        f"{run.out.ckpt.directory} (if there is none, from the start), "
        f"{resume_advice(run.settings.workdir)}"
    )


def in_the_report(run: Run, at: Progressed, signum: int) -> str:
    """What a stop after the fit (the report, the plots, metrics.json) says: the last
    checkpoint holds the trained parameters."""
    return (
        f"stopped by {signal.Signals(signum).name} while writing the report, after step "
        f"{at.step}; the trained parameters are in {run.out.ckpt.directory}; to write the "
        f"report, {resume_advice(run.settings.workdir)}"
    )


def divergence(run: Run, step: int, loss: float) -> DivergenceError:
    """The error of a run whose loss became non-finite or exploded at ``step``."""
    lr, bound = run.settings.cfg.optimizer.lr, run.optimizer.bound
    if bound:
        advice = f"{bound.what} is {bound.lr:.4g}; set optimizer.lr=auto or below that"
    else:  # "below 5" was followed with 4.9, which diverged again; a tenth may diverge too
        safe = auto_step(run)
        advice = f"set optimizer.lr=auto (a step the data allow, {safe:.4g} here)"
        if lr / 10 <= safe:
            advice += f" or a tenth of this one, {hydra_value('optimizer.lr', f'{lr / 10:.4g}')}"
    if _run_dir_named_on_the_command_line():  # the next run would find this one there
        workdir = Path(run.settings.workdir).absolute()
        beside = hydra_value("hydra.run.dir", directory_beside(workdir))
        advice += f", in another run directory such as {beside} ({workdir} keeps this run's files)"
    return DivergenceError(
        f"training diverged at step {step}: the loss became {fmt(loss)} with "
        f"optimizer.lr={lr:.4g}; {advice}"
    )


def directory_beside(workdir: Path) -> Path:
    """The first of ``W-2``, ``W-3``, ... beside the run directory ``W`` that does not exist:
    a directory a new run can be given (``hydra.run.dir``)."""
    k = 2
    while Path(f"{workdir}-{k}").exists():
        k += 1
    return Path(f"{workdir}-{k}")


def _run_dir_named_on_the_command_line() -> bool:
    """Whether a single run's directory is ``hydra.run.dir=...`` of the command line (else
    Hydra names a new one for each run, by the time it starts)."""
    from hydra.core.hydra_config import HydraConfig

    from training.config import in_a_sweep

    if not HydraConfig.initialized() or in_a_sweep():
        return False
    return any(str(o).startswith("hydra.run.dir=") for o in HydraConfig.get().overrides.hydra)


_WRITING_CHECKPOINT: list[bool] = []  # non-empty while save() writes a checkpoint


def save(run: Run, at: Progressed, params, opt_state, force: bool = True) -> None:
    """Checkpoint the state at ``at.step`` (every process takes part; orbax coordinates);
    without ``force``, only at orbax's interval, every ``trainer.checkpoint_every`` epochs."""
    ckpt = run.out.ckpt
    if at.step in ckpt.steps() or not ckpt.saves_at(at.step, force):
        return
    if run.settings.writes and run.settings.cfg.logger.plots:
        # first: a checkpoint never lacks the histories a resumed run draws its plots from
        run.out.curves.save(run.settings.workdir)
    _WRITING_CHECKPOINT.append(True)
    try:
        ckpt.save(
            at.step,
            {"params": params, "opt_state": opt_state},
            {
                "progress": at.meta(),
                "preprocessing": run.out.preprocessing,
                "config": OmegaConf.to_container(run.settings.cfg, resolve=True),
            },
            force=force,
        )
    finally:
        _WRITING_CHECKPOINT.clear()


def resume(ckpt: Checkpoints, settings: Settings, preprocessing: dict, params, opt_state):
    """The newest complete checkpoint that can be read (a corrupt one is skipped, warned of):
    parameters, optimizer state, progress and the run's id (None before any checkpoint).

    Raises :class:`UserError` when the checkpoint is of another run: other data (columns,
    target, transforms) or other settings under :data:`RUN_DEFINING`."""

    damaged: list[int] = []

    def unreadable(step: int, exc: Exception) -> None:  # a damaged one: try the one before
        print(
            f"warning: checkpoint {ckpt.directory / str(step)} cannot be read "
            f"({type(exc).__name__}); trying an earlier one"
        )
        damaged.append(step)

    def set_aside() -> None:  # the run writes those steps again
        aside = ckpt.set_aside(damaged, settings.writes)
        if aside is not None:
            say(f"moved the checkpoints that cannot be read ({', '.join(map(str, damaged))}) to "
                f"{aside}")  # fmt: skip

    for step in reversed(ckpt.steps()):
        try:
            meta = ckpt.restore_meta(step)
        except Exception as exc:  # noqa: BLE001 - any damage looks the same to a user
            unreadable(step, exc)
            continue
        refuse_another_runs_checkpoint(settings, preprocessing, meta)  # a mismatch is an error
        try:
            state, meta = ckpt.restore(step, {"params": params, "opt_state": opt_state})
        except Exception as exc:  # noqa: BLE001 - any damage looks the same to a user
            unreadable(step, exc)
            continue
        at = Progressed.from_meta(meta["progress"])
        print(f"resuming from {ckpt.directory / str(step)}: epoch {at.epoch}, step {at.step}")
        set_aside()
        run_id = meta.get("preprocessing", {}).get("run_id")
        return state["params"], state["opt_state"], at, run_id
    readable = "no checkpoint that can be read" if damaged else "no checkpoint"
    print(f"trainer.resume=true but {readable} in {ckpt.directory}: starting from scratch")
    set_aside()
    return params, opt_state, Progressed(), None


def refuse_another_runs_checkpoint(settings: Settings, preprocessing: dict, meta: dict) -> None:
    """Raise :class:`UserError` if the checkpoint's ``meta`` is of a run of other settings or
    data than this one (:func:`training.cli.refuse_another_runs_meta`, every value compared)."""
    config = OmegaConf.to_container(settings.cfg, resolve=True)
    refuse_another_runs_meta(settings.workdir, meta, config, preprocessing)


def objective(metrics: dict | None) -> float:
    """What a hyperparameter search minimises: the folds' mean validation RMSE with
    ``data.folds``, else the validation RMSE, in the target's units; infinity for a failed run
    (``None``) or one with no validation rows, which Optuna ranks last without stopping."""
    if metrics is None:
        return math.inf
    if "cv" in metrics:
        value = metrics["cv"]["rmse"]["mean"]
    else:
        value = metrics.get("val", {}).get("rmse", math.inf)
    return float(value) if math.isfinite(value) else math.inf


def hparams_of(cfg: DictConfig, chosen: dict | None = None) -> dict:
    """The run's hyperparameters, flat, for TensorBoard's HPARAMS tab: a few core keys, every
    key the command line or the sweep overrides (as Hydra records them, with the config's
    resolved value; ``trainer.resume`` left out), and the values chosen automatically
    (``chosen``: key -> value)."""
    core = (
        "data.name",
        "loader.name",
        "loader.batch_size",
        "optimizer.name",
        "optimizer.lr",
        "optimizer.schedule",
        "trainer.epochs",
        "seed",
    )
    out = {key: OmegaConf.select(cfg, key) for key in core}
    for text in command_line_overrides():
        key, _, value = text.lstrip("+~").partition("=")
        # trainer.resume says how the run was started, not what it is: a resumed run lines
        # up with the runs never stopped
        if key.startswith("hydra") or not key or key == "trainer.resume":
            continue
        resolved = OmegaConf.select(cfg, key, default=None)
        # a config group (`optimizer=adam`) selects a whole node: its name is the value
        out[key] = value if OmegaConf.is_config(resolved) or resolved is None else resolved
    # the batch the loader takes: per-sample and full-batch steps read no loader.batch_size
    out["loader.batch_size"] = FIXED_BATCH.get(cfg.loader.name, cfg.loader.batch_size)
    out.update(chosen or {})
    return {k: _hparam_value(v) for k, v in out.items()}


def _hparam_value(v) -> bool | int | float | str:
    """TensorBoard's hparams take numbers, strings and booleans only."""
    if v is None:  # a knob left off (no momentum, full batch): 0 keeps the column numeric
        return 0
    if isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if OmegaConf.is_config(v):
        v = OmegaConf.to_container(v, resolve=True)
    return str(v)


def flat_metrics(metrics: dict) -> dict:
    out = {"final_loss": metrics["final_loss"]}
    for k, v in metrics.get("cv", {}).items():
        if np.isfinite(v["mean"]):
            out[f"cv/{k}"] = v["mean"]
    for split in SPLITS:
        for k, v in metrics.get(split, {}).items():
            if np.isfinite(v):
                out[f"{split}/{k}"] = v
    return out
