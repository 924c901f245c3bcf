"""Which rows each step sees: full batch, per sample, or mini-batches, shuffled per epoch.

The shuffle of epoch ``e`` is ``numpy.random.default_rng([seed, e]).permutation(n)``: a pure
function of (seed, epoch), so a run is reproducible and a resumed run sees the same order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from errors import UserError

LOADERS = ("full_batch", "per_sample", "mini_batch")
# the loaders that read no loader.batch_size: the batch each step takes (None: every row)
FIXED_BATCH = {"per_sample": 1, "full_batch": None}


@dataclass(frozen=True)
class Loader:
    name: str
    n: int  # training rows
    batch_size: int
    shuffle: bool
    drop_last: bool
    seed: int

    @property
    def full_batch(self) -> bool:
        return self.name == "full_batch"

    @property
    def steps_per_epoch(self) -> int:
        if self.drop_last:
            return self.n // self.batch_size
        return -(-self.n // self.batch_size)

    @property
    def last_count(self) -> int:
        """Rows in the epoch's last batch (``batch_size`` unless a short batch is kept)."""
        if self.drop_last or self.n % self.batch_size == 0:
            return self.batch_size
        return self.n % self.batch_size

    def order(self, epoch: int) -> np.ndarray:
        """The row order of ``epoch``: a fresh permutation when shuffling, else 0..n-1."""
        return _order(self.n, self.shuffle, self.seed, epoch)

    def batches(self, epoch: int, start: int = 0, stop: int | None = None):
        """Row indices ``(steps, batch_size)`` and real-row counts ``(steps,)`` of steps
        ``start:stop`` of ``epoch``. A short last batch is padded with row 0 and its count says
        how many rows are real; the loss weights the padding by zero."""
        bs = self.batch_size
        stop = self.steps_per_epoch if stop is None else stop
        idx = self.order(epoch)[start * bs : stop * bs]
        if idx.size < (stop - start) * bs:  # pad the short last batch
            idx = np.concatenate([idx, np.zeros((stop - start) * bs - idx.size, np.int32)])
        counts = np.full(stop - start, bs, np.int32)
        if stop == self.steps_per_epoch and stop > start:
            counts[-1] = self.last_count
        return idx.reshape(stop - start, bs), counts


@functools.lru_cache(maxsize=2)  # an epoch cut into several calls shuffles once
def _order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    if not shuffle:
        return np.arange(n, dtype=np.int32)
    # numpy shuffles 8-byte items a third faster than 4-byte ones (its shuffle has a fast path
    # for them); the int32 copy the device takes holds the same order
    order = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)
    order.flags.writeable = False
    return order


def make_loader(
    name: str, batch_size: int | None, shuffle: bool, drop_last: bool, n: int, seed: int
) -> Loader:
    """Check the loader config against ``n`` training rows and build the :class:`Loader`."""
    if name not in LOADERS:
        raise UserError(
            f"bad config value loader.name={name!r}: allowed one of {', '.join(LOADERS)}"
        )
    if name == "full_batch":
        return Loader(name, n, n, False, False, seed)
    if name == "per_sample":
        return Loader(name, n, 1, shuffle, False, seed)
    if (
        batch_size is None
        or isinstance(batch_size, bool)
        or int(batch_size) != batch_size
        or batch_size < 1
    ):
        raise UserError(
            f"bad config value loader.batch_size={batch_size!r}: allowed an integer >= 1"
        )
    if drop_last and batch_size > n:
        raise UserError(
            f"bad config value loader.batch_size={batch_size}: with loader.drop_last=true it must "
            f"be <= the {n} training rows, or every batch is dropped"
        )
    return Loader(name, n, min(int(batch_size), n), shuffle, drop_last, seed)
