"""Checkpoints with orbax-checkpoint: the training state and the run's metadata, by step."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from training.errors import UserError

log = logging.getLogger(__name__)


def _import_orbax() -> None:
    import orbax.checkpoint  # noqa: F401


class Checkpoints:
    """``<run dir>/checkpoints/<step>/`` holding ``state`` (parameters and optimizer state) and
    ``meta`` (JSON: epoch, step, preprocessing, ...). Orbax writes each step to a temporary
    directory and renames it when complete, so a half-written step is never taken for one.

    orbax takes about 0.2 s to import and a run first needs it at its first checkpoint, often its
    end: the import starts in a background thread here, while the run compiles and trains (XLA
    compiles without Python's lock), and the first use waits for it.
    """

    def __init__(self, directory: Path, keep: int = 3) -> None:
        self.directory = Path(directory).absolute()
        self.keep = keep
        self._manager = None
        try:  # an unwritable run directory is found now, not after training
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"cannot write checkpoints to {self.directory}: {exc.strerror}; "
                "choose a writable hydra.run.dir"
            ) from None
        # not a daemon: a run that ends early waits for the import instead of killing it midway
        self._importing = threading.Thread(target=_import_orbax)
        self._importing.start()

    @property
    def manager(self):
        """orbax's ``CheckpointManager`` for the directory, made on first use."""
        if self._manager is None:
            if self._importing.is_alive():
                self._importing.join()
            import orbax.checkpoint as ocp

            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, create=True, enable_async_checkpointing=False
            )
            try:
                self._manager = ocp.CheckpointManager(self.directory, options=options)
            except OSError as exc:
                raise UserError(
                    f"cannot write checkpoints to {self.directory}: {exc.strerror}; "
                    "choose a writable hydra.run.dir"
                ) from None
        return self._manager

    def save(self, step: int, state: dict, meta: dict) -> None:
        manager = self.manager
        import orbax.checkpoint as ocp

        try:
            manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
            manager.wait_until_finished()
        except OSError as exc:
            raise UserError(
                f"cannot write the checkpoint of step {step} to {self.directory}: "
                f"{exc.strerror}; earlier checkpoints are intact"
            ) from None

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, step: int, like: dict) -> tuple[dict, dict]:
        """The state of ``step`` in the structure of ``like``, and its metadata."""
        import jax

        manager = self.manager
        import orbax.checkpoint as ocp

        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return out["state"], out["meta"]

    def restore_meta(self, step: int) -> dict:
        import orbax.checkpoint as ocp

        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
