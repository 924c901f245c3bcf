"""The table every data source returns: float32 inputs and targets with the names of their
columns (its own module, so that each source imports it and no source imports another)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # a CSV's table is read without JAX (data/read_ahead.py)
    import jax


@dataclass
class Table:
    X: np.ndarray | jax.Array  # (n, d) float32
    y: np.ndarray | jax.Array  # (n,) float32
    feature_names: list[str]
    target_name: str
    source: str = "data"  # what error messages call it: a file path, or the source's name
    true_params: dict[str, np.ndarray] | None = None  # synthetic data: the rule that made y
    encoding: dict = field(default_factory=dict)  # CSV: how each column became numbers
    # CSV: the encoding in words, made where the file is read, so a run that takes the table
    # from the second process (data/read_ahead.py) does not import pandas to describe it
    description: str = ""
    # CSV: each row's number in its file, 1 the first under the header (blank lines counted),
    # as errors name rows; a row left out (data.missing=drop) has none
    file_rows: np.ndarray | None = None
