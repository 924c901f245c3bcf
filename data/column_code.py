"""How one column of a CSV becomes the model's inputs (:class:`ColumnCode`), apart from the
reader (:mod:`data.csv_source`) so that a run which took its table from the read ahead can
name the file's columns without importing pandas (about 0.2 s)."""

from __future__ import annotations

from dataclasses import dataclass, field

OTHER = "other"  # the one-hot column of a column's rare and unseen levels
MISSING = "(missing)"  # the level of an empty text cell under data.missing=mean


@dataclass
class ColumnCode:
    """How one source column becomes model inputs.

    ``kind``: ``numeric`` | ``date`` | ``boolean`` | ``onehot``. ``levels`` (onehot): the levels
    kept, sorted, :data:`MISSING` last; the first is the reference and has no column. ``pooled``:
    the rare training levels counted as :data:`OTHER`; ``other``: whether an ``other`` column
    exists. ``fill``: numeric/date under ``data.missing=mean``, the training rows' mean.
    ``dropped``: output names constant in the training rows, left out of the model."""

    name: str
    kind: str
    levels: list[str] = field(default_factory=list)
    pooled: list[str] = field(default_factory=list)
    other: bool = False
    log: bool = False
    fill: float | None = None
    date_format: str | None = None
    dropped: list[str] = field(default_factory=list)
    # the column's own decimal mark where its cells contradict the file's (see _column_decimal)
    decimal: str | None = None
    # a date of two-digit years: the full year the earliest stands for, where their 100 years
    # begin (see _century); None: Python's window, 1969-2068 (a run saved before it was fitted)
    first_year: int | None = None

    @property
    def all_outputs(self) -> list[str]:
        if self.kind == "onehot":
            return [f"{self.name}_{lv}" for lv in self.levels[1:]] + (
                [f"{self.name}_{OTHER}"] if self.other else []
            )
        return [f"log({self.name})" if self.log else self.name]

    @property
    def outputs(self) -> list[str]:
        return [o for o in self.all_outputs if o not in self.dropped]

    @property
    def rare(self) -> list[str]:
        """The pooled levels that were rare in the training rows: the file's own level
        :data:`OTHER`, pooled with them, aside."""
        return [lv for lv in self.pooled if lv != OTHER]


def input_sources(encoding: dict | None) -> dict[str, str]:
    """The file's column each input of the model comes from (``Type_other`` -> ``Type``,
    ``log(area)`` -> ``area``), from a saved encoding (``Encoding.to_dict``); none for data
    not from a CSV."""
    if not encoding:
        return {}
    codes = (ColumnCode(**c) for c in encoding["columns"])
    return {o: c.name for c in codes for o in c.all_outputs}
