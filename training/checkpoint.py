"""Checkpoints with orbax-checkpoint: the training state and the run's metadata, by step."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import jax
import numpy as np

from errors import UserError

log = logging.getLogger(__name__)


_IMPORTING: list[threading.Thread] = []  # the one thread importing orbax, once started


def start_importing_orbax() -> None:
    """Import orbax (about 0.5 s of Python) in a background thread, once per process, so that
    it runs while this process waits (for a CSV read in a second process, for XLA, which
    compiles without Python's lock) rather than when the first checkpoint is written, often at
    the end. Not a daemon: a run that ends early waits for the import instead of killing it
    midway."""
    if not _IMPORTING:
        thread = threading.Thread(target=_import_orbax)
        thread.start()
        _IMPORTING.append(thread)


def _import_orbax() -> None:
    try:
        import orbax.checkpoint  # noqa: F401
    except Exception:  # noqa: BLE001
        # a run that ends before its first checkpoint (a bad CSV) exits while this runs, and
        # Python refuses the import's late atexit registrations; any other failure recurs,
        # with its traceback, where the run imports orbax to use it
        return


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of the checkpoints in ``run_dir/checkpoints`` (orbax names each directory by
    its step), newest first, found without orbax; damaged ones included."""
    found = Path(run_dir) / "checkpoints"
    steps = [int(p.name) for p in found.glob("*") if p.name.isdigit()] if found.is_dir() else []
    return sorted(steps, reverse=True)


def run_in_progress(run_dir: Path) -> bool:
    """Whether a ``train.py`` run is running in ``run_dir`` now: it holds the lock on
    ``run_dir/.run.lock`` (``training.cli.hold_the_run_directory``; the kernel releases it when
    that process ends, however it ends)."""
    import fcntl
    import os

    try:
        fd = os.open(Path(run_dir) / ".run.lock", os.O_RDONLY)
    except OSError:  # no lock file: no run took the directory (or it is not ours)
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken here
    return False


def _placeholders(tree):
    """Zero-size leaves (a model without features has ``W`` of shape (0,)) as one zero each:
    orbax refuses to save arrays of zero size, and an empty array has no values to keep."""
    return jax.tree.map(lambda a: np.zeros((1,), a.dtype) if np.size(a) == 0 else a, tree)


def _abstract(tree):
    """What orbax restores ``tree`` as; a placeholder's shape (1,) is checked like any other."""
    one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    import orbax.checkpoint as ocp

    def leaf(a):
        if np.size(a) == 0:
            return jax.ShapeDtypeStruct((1,), a.dtype, sharding=one)
        return ocp.utils.to_shape_dtype_struct(a)

    return jax.tree.map(leaf, tree)


def shapes_of(tree) -> dict[str, list[int]]:
    """Every leaf's shape by its path: ``{"['W']": [3], "['b']": []}``."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): list(np.shape(a)) for path, a in flat}


def what_orbax_cannot_hold(directory: Path) -> str | None:
    """``"a backslash"`` or ``"a '['"`` when ``directory``'s name holds one (the first found,
    in that order), which orbax's checkpoints cannot hold (:func:`refuse_a_name_orbax_cannot_hold`);
    None otherwise."""
    if "\\" in str(directory):
        return "a backslash"
    return "a '['" if "[" in str(directory) else None


def refuse_a_name_orbax_cannot_hold(directory: Path) -> None:
    """Raise :class:`UserError` if ``directory`` has a backslash or a ``[`` in its name.
    orbax's array writer (TensorStore's file store) takes a backslash for a separator and
    writes a checkpoint's arrays in another directory; orbax finds the arrays' files to merge
    by a glob of the directory, which reads ``[1]`` as a pattern, so none is merged. Either
    way the checkpoint cannot be read back: a resume starts over, ``predict.py`` fails. Hydra
    puts one before each space of a sweep's override in the run's name
    (``data.target=Sale\\ Price``), and a list override its brackets (``data.drop=[id]``)."""
    what = what_orbax_cannot_hold(directory)
    if what:
        raise UserError(
            f"the run directory {directory} has {what} in its name, which orbax's "
            "checkpoints cannot hold (they could not be read back); choose a "
            "hydra.run.dir without one (a sweep names its runs after their overrides, a space "
            "as '\\ ', a list with its brackets: number them with "
            "'hydra.sweep.subdir=${hydra.job.num}')"
        )


class ShapeMismatchError(ValueError):
    """A checkpoint holds arrays of other shapes than those asked for."""


class Checkpoints:
    """``<run dir>/checkpoints/<step>/`` holding one orbax item per entry of the saved state
    (``params``, ``opt_state``) and ``meta`` (JSON: progress, preprocessing, config, run id).
    Each item is restored on its own, so prediction reads the parameters without rebuilding the
    optimizer. Orbax writes each step to a temporary directory and renames it when complete, so
    a half-written step is never taken for one.

    orbax is imported in a background thread (:func:`start_importing_orbax`, here if the run
    has not started it earlier), and the first use waits for it.
    """

    def __init__(
        self, directory: Path, keep: int = 3, create: bool = True, every_steps: int = 0
    ) -> None:
        """``every_steps``: the steps (a multiple of them) at which :meth:`save` without
        ``force`` writes, orbax's ``FixedIntervalPolicy``; 0: only forced saves write."""
        self.directory = Path(directory).absolute()
        self.keep, self.create, self.every_steps = keep, create, every_steps
        self._manager = None
        if create:
            try:  # an unwritable run directory is found now, not after training
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(
                    f"cannot write checkpoints to {self.directory}: {exc.strerror}; "
                    "choose a writable hydra.run.dir"
                ) from None
        start_importing_orbax()

    @property
    def manager(self):
        """orbax's ``CheckpointManager`` for the directory, made on first use."""
        if self._manager is None:
            _IMPORTING[0].join()
            import orbax.checkpoint as ocp

            # orbax decides which steps are saved: every `every_steps`-th, and the forced ones
            # (the end, a stop); no preemption policy, which would sync every process at every
            # query: a SIGTERM is our own forced save
            policy = ocp.checkpoint_managers.FixedIntervalPolicy(max(1, self.every_steps))
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep,
                create=self.create,
                enable_async_checkpointing=False,
                save_decision_policy=policy,
            )
            try:
                self._manager = ocp.CheckpointManager(self.directory, options=options)
            except OSError as exc:
                raise UserError(
                    f"cannot write checkpoints to {self.directory}: {exc.strerror}; "
                    "choose a writable hydra.run.dir"
                ) from None
        return self._manager

    def saves_at(self, step: int, force: bool = True) -> bool:
        """Whether :meth:`save` of ``step`` writes: with ``force``, always; without, if orbax's
        policy (``every_steps``) says so and ``step`` is past the newest checkpoint."""
        return force or bool(self.every_steps and self.manager.should_save(step))

    def save(self, step: int, state: dict, meta: dict, force: bool = True) -> bool:
        """Save each entry of ``state`` (a pytree of arrays) as its own item, with ``meta``,
        if :meth:`saves_at` ``step``. Returns whether it saved. Raises UserError for a failed
        write."""
        manager = self.manager
        import orbax.checkpoint as ocp

        if not self.saves_at(step, force):
            return False

        items = {k: ocp.args.StandardSave(_placeholders(v)) for k, v in state.items()}
        # the true shapes, zero-size ones included, checked before any restore
        meta = {**meta, "shapes": {k: shapes_of(v) for k, v in state.items()}}
        try:
            manager.save(
                step, args=ocp.args.Composite(**items, meta=ocp.args.JsonSave(meta)), force=True
            )
            manager.wait_until_finished()
            return True
        except OSError as exc:
            raise UserError(
                f"cannot write the checkpoint of step {step} to {self.directory}: "
                f"{exc.strerror}; earlier checkpoints are intact"
            ) from None

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def set_aside(self, steps: list[int], writes: bool) -> Path | None:
        """Move the checkpoints of ``steps`` (ones that cannot be read) out of the way, into
        ``checkpoints.damaged/`` beside the directory (process 0, ``writes``, moves; every
        process then sees them gone): orbax writes no step it already holds, so a resumed run
        left the damaged one in place, and ``predict.py`` failed on it, advising a resume that
        changed nothing. Returns where they went (None: nothing to move)."""
        if not steps:
            return None
        aside = self.directory.parent / "checkpoints.damaged"
        if writes:
            aside.mkdir(exist_ok=True)
            for step in steps:
                target, k = aside / str(step), 1
                while target.exists():  # set aside before, by an earlier resume
                    target, k = aside / f"{step}.{k}", k + 1
                (self.directory / str(step)).rename(target)
        if jax.process_count() > 1:
            from jax.experimental.multihost_utils import sync_global_devices

            sync_global_devices("checkpoints set aside")
        self.manager.reload()
        return aside

    def restore(self, step: int, like: dict) -> tuple[dict, dict]:
        """The items of ``step`` named by ``like``'s keys, each in the structure, shapes and
        shardings of its entry in ``like``, and the metadata. Orbax's errors pass through (a
        damaged checkpoint); one of other shapes raises :class:`ShapeMismatchError`."""
        import orbax.checkpoint as ocp

        saved = self.restore_meta(step).get("shapes", {})
        for k, v in like.items():
            if k in saved and saved[k] != shapes_of(v):
                raise ShapeMismatchError(f"{k}: stored {saved[k]}, asked for {shapes_of(v)}")
        items = {k: ocp.args.StandardRestore(_abstract(v)) for k, v in like.items()}
        out = self.manager.restore(
            step, args=ocp.args.Composite(**items, meta=ocp.args.JsonRestore())
        )
        # zero-size leaves were saved as placeholders: the empty arrays of `like` are exact
        state = {
            k: jax.tree.map(lambda got, want: want if np.size(want) == 0 else got, out[k], like[k])
            for k in like
        }
        return state, out["meta"]

    def restore_meta(self, step: int) -> dict:
        import orbax.checkpoint as ocp

        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
