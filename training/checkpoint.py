"""Checkpoints with orbax-checkpoint: the training state and the run's metadata, by step."""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from training.errors import UserError

log = logging.getLogger(__name__)


class Checkpoints:
    """``<run dir>/checkpoints/<step>/`` holding ``state`` (parameters and optimizer state) and
    ``meta`` (JSON: epoch, step, preprocessing, ...). Orbax writes each step to a temporary
    directory and renames it when complete, so a half-written step is never taken for one."""

    def __init__(self, directory: Path, keep: int = 3) -> None:
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False
        )
        try:
            self.manager = ocp.CheckpointManager(self.directory, options=options)
        except OSError as exc:
            raise UserError(
                f"cannot write checkpoints to {self.directory}: {exc.strerror}; "
                "choose a writable hydra.run.dir"
            ) from None

    def save(self, step: int, state: dict, meta: dict) -> None:
        try:
            self.manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
                force=True,
            )
            self.manager.wait_until_finished()
        except OSError as exc:
            raise UserError(
                f"cannot write the checkpoint of step {step} to {self.directory}: "
                f"{exc.strerror}; earlier checkpoints are intact"
            ) from None

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def restore(self, step: int, like: dict) -> tuple[dict, dict]:
        """The state of ``step`` in the structure of ``like``, and its metadata."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return out["state"], out["meta"]

    def restore_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]

    def close(self) -> None:
        self.manager.close()
