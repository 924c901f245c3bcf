"""A CSV file as a numeric table: column kinds, missing values and log transforms.

Each column becomes numbers by one rule, fitted once and saved with the run so that prediction
applies exactly the same encoding:

- numeric columns stay as they are;
- text columns whose two values are yes/no, y/n, true/false, t/f or on/off become 1/0;
- other text columns with few values become one-hot columns ``<column>_<level>``, the first
  level (in sorted order) dropped as the reference (``data.categorical=onehot``), or are an
  error (``data.categorical=error``);
- free text (more than ``MAX_LEVELS`` values, or a different value in most rows) is an error
  that suggests ``data.drop``.

Rows are named by their number among the data rows (1 is the first row under the header).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.sources import Table
from training.errors import UserError

BOOLEAN_PAIRS = ({"yes", "no"}, {"y", "n"}, {"true", "false"}, {"t", "f"}, {"on", "off"})
TRUE_WORDS = {"yes", "y", "true", "t", "on"}
MAX_LEVELS = 50
NA_VALUES = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "?"]


@dataclass
class ColumnCode:
    """How one source column becomes model inputs."""

    name: str
    kind: str  # numeric | boolean | onehot
    levels: list[str] = field(default_factory=list)  # onehot: every level, the first dropped
    log: bool = False  # numeric: natural log taken
    fill: str | None = None  # onehot with data.missing=mean: the level filling a missing cell

    @property
    def outputs(self) -> list[str]:
        if self.kind == "onehot":
            return [f"{self.name}_{level}" for level in self.levels[1:]]
        return [f"log({self.name})" if self.log else self.name]


@dataclass
class Encoding:
    """The fitted rules that turn a CSV's columns into the model's inputs."""

    target: str
    columns: list[ColumnCode]
    log_target: bool = False

    @property
    def feature_names(self) -> list[str]:
        return [name for c in self.columns for name in c.outputs]

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "log_target": self.log_target,
            "columns": [asdict(c) for c in self.columns],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Encoding:
        return cls(d["target"], [ColumnCode(**c) for c in d["columns"]], d["log_target"])

    def describe(self) -> str:
        parts = []
        for c in self.columns:
            if c.kind == "onehot":
                parts.append(f"{c.name}: one-hot {c.levels[1:]} (reference {c.levels[0]!r})")
            elif c.kind == "boolean":
                parts.append(f"{c.name}: yes/no as 1/0")
            else:
                parts.append(f"{c.name}: {'log' if c.log else 'numeric'}")
        return "; ".join(parts)

    def transform(self, df: pd.DataFrame, source: str, missing: str = "error") -> np.ndarray:
        """Encode ``df`` (float64, one column per feature name). A missing cell stays NaN with
        ``missing=mean`` (filled later from the training rows' means) and is an error
        otherwise; an unseen category or a non-positive value under a log is an error."""
        out = []
        for c in self.columns:
            col = df[c.name]
            if c.kind == "numeric":
                values = _numbers(col, c.name, source)
                if c.log:
                    values = _log(values, col, source, f"remove {c.name!r} from data.log_features")
                out.append(values)
                continue
            text = col.astype("string").str.strip()
            if c.fill is not None:
                text = text.fillna(c.fill)
            lowered = text.str.lower()
            allowed = (
                TRUE_WORDS | {"no", "n", "false", "f", "off"}
                if c.kind == "boolean"
                else set(c.levels)
            )
            probe = lowered if c.kind == "boolean" else text
            unseen = ~probe.isin(allowed) & probe.notna()
            if unseen.any():
                row = int(np.flatnonzero(unseen.to_numpy())[0])
                raise UserError(
                    f"{source}: column {c.name!r} row {_row(col, row)}: "
                    f"{text.iloc[row]!r} "
                    f"is not one of the values seen in training ({sorted(allowed)})"
                )
            if c.kind == "boolean":
                values = lowered.isin(TRUE_WORDS).to_numpy(dtype=float, copy=True)
                values[text.isna().to_numpy()] = np.nan
                out.append(values)
            else:
                for level in c.levels[1:]:
                    hot = (text == level).to_numpy(dtype=float, copy=True)
                    hot[text.isna().to_numpy()] = np.nan
                    out.append(hot)
        X = np.column_stack(out) if out else np.zeros((len(df), 0))
        if missing != "mean":
            _refuse_missing(df, [c.name for c in self.columns], source, missing)
        return X


def _row(col: pd.Series, position: int) -> int:
    """The data-row number (1 = first row under the header) of a cell, after dropped rows."""
    return int(col.index[position]) + 1


def _numbers(col: pd.Series, name: str, source: str) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(values) & col.notna().to_numpy())
    if bad.size:
        raise UserError(
            f"{source}: column {name!r} row {_row(col, bad[0])}: "
            f"{col.iloc[bad[0]]!r} is not a number"
        )
    inf = np.flatnonzero(np.isinf(values))
    if inf.size:
        raise UserError(
            f"{source}: column {name!r} row {_row(col, inf[0])}: the value is "
            f"infinite; fix the cell or drop the row"
        )
    return values


def _log(values: np.ndarray, col: pd.Series, source: str, fix: str) -> np.ndarray:
    """``log(values)``; a value <= 0 is an error naming its column and row."""
    bad = np.flatnonzero(values <= 0)
    if bad.size:
        raise UserError(
            f"{source}: column {col.name!r} row {_row(col, bad[0])}: "
            f"{values[bad[0]]:g} has no logarithm; {fix}"
        )
    return np.log(values)


def _refuse_missing(df: pd.DataFrame, columns: list[str], source: str, missing: str) -> None:
    counts = df[columns].isna().sum()
    counts = counts[counts > 0]
    if len(counts):
        listed = ", ".join(f"{name!r} ({int(n)} cell{'s' * (n > 1)})" for name, n in counts.items())
        if missing == "predict":
            col = df[counts.index[0]]
            row = _row(col, int(np.flatnonzero(col.isna().to_numpy())[0]))
            raise UserError(
                f"{source}: column {counts.index[0]!r} row {row} is empty; "
                f"prediction needs every feature (missing: {listed})"
            )
        raise UserError(
            f"{source}: missing values in column {listed}; set data.missing=drop to "
            f"drop those rows or data.missing=mean to fill them with the column mean"
        )


def read_csv(
    path: str | Path, key: str = "data.path", min_columns: int = 2
) -> tuple[pd.DataFrame, str]:
    """Read a comma-separated UTF-8 file with a header row; every problem is a UserError.
    Fewer than ``min_columns`` columns (training needs a feature and a target) means the file
    is not comma-separated."""
    path = Path(path).expanduser()
    source = str(path)
    if not path.is_file():
        raise UserError(f"{key}={source}: no such file")
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError(f"{source}: the file is empty; it needs a header row and data rows")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UserError(
            f"{source}: line {line} is not UTF-8 text (byte 0x{raw[exc.start]:02x});"
            f" save the file as UTF-8"
        ) from None
    header = next(csv.reader(io.StringIO(text)))
    header = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen:
            raise UserError(
                f"{source}: column name {name!r} appears twice (columns "
                f"{seen[name] + 1} and {i + 1}); rename one"
            )
        seen[name] = i
    sep = max(";\t|", key=header[0].count)
    if len(header) == 1 and (min_columns > 1 or header[0].count(sep)):
        hint = f" (it looks {sep!r}-separated)" if header[0].count(sep) else ""
        raise UserError(
            f"{source}: found one column only, {header[0]!r}{hint}; the file must be "
            f"comma-separated"
        )
    try:
        df = pd.read_csv(
            io.StringIO(text),
            skipinitialspace=True,
            na_values=NA_VALUES,
            keep_default_na=False,
            dtype=str,
        )
    except pd.errors.ParserError as exc:
        raise UserError(f"{source}: not a well-formed CSV file: {exc}".splitlines()[0]) from None
    df.columns = header
    if len(df) == 0:
        raise UserError(f"{source}: has a header but no data rows")
    return df, source


def fit_encoding(
    df: pd.DataFrame,
    source: str,
    target: str,
    features: list[str] | None,
    drop: list[str],
    categorical: str,
    log_features: list[str],
    log_target: bool,
) -> Encoding:
    """Choose the rule for each column from the data (see the module docstring)."""
    columns = list(df.columns)
    for key, names in (
        ("data.drop", drop),
        ("data.features", features or []),
        ("data.log_features", log_features),
    ):
        for name in names:
            if name not in columns:
                raise UserError(
                    f"{source}: no column {name!r} (from {key}); the columns are: "
                    f"{', '.join(columns)}"
                )
    if target not in columns:
        raise UserError(
            f"{source}: no column {target!r} for data.target; the columns are: {', '.join(columns)}"
        )
    names = features if features else [c for c in columns if c != target and c not in drop]
    if target in names:
        raise UserError(
            f"{source}: data.target {target!r} is also a feature; remove it from data.features"
        )
    codes = []
    for name in names:
        col = df[name]
        values = pd.to_numeric(col, errors="coerce")
        present = col.notna()
        numeric_share = values[present].notna().mean() if present.any() else 1.0
        if numeric_share >= 0.9:
            _numbers(col, name, source)  # a few bad cells in a numeric column: name the first
            codes.append(ColumnCode(name, "numeric", log=name in log_features))
            continue
        if name in log_features:
            raise UserError(f"{source}: column {name!r} in data.log_features is text, not numbers")
        text = col.astype("string").str.strip()
        levels = sorted(text.dropna().unique().tolist())
        if {v.lower() for v in levels} in BOOLEAN_PAIRS:
            codes.append(ColumnCode(name, "boolean"))
            continue
        n_rows = int(present.sum())
        if len(levels) > MAX_LEVELS or (len(levels) > 2 and len(levels) > n_rows / 2):
            raise UserError(
                f"{source}: column {name!r} is free text ({len(levels)} different "
                f"values in {n_rows} rows), not a category; add it to data.drop"
            )
        if categorical == "error":
            raise UserError(
                f"{source}: column {name!r} is text with values {levels[:5]}; "
                f"set data.categorical=onehot to one-hot encode it, or add it to "
                f"data.drop"
            )
        fill = text.mode().iloc[0] if text.isna().any() else None
        codes.append(ColumnCode(name, "onehot", levels=levels, fill=fill))
    return Encoding(target, codes, log_target)


def target_values(df: pd.DataFrame, enc: Encoding, source: str) -> np.ndarray:
    y = _numbers(df[enc.target], enc.target, source)
    if enc.log_target:
        _log(y, df[enc.target], source, "set data.log_target=false")  # checked, taken later
    return y


def load_csv(cfg) -> Table:
    """``data=csv``: read ``cfg.path``, encode it, apply the missing-value policy."""
    df, source = read_csv(cfg.path)
    enc = fit_encoding(
        df,
        source,
        cfg.target,
        list(cfg.features) if cfg.features else None,
        list(cfg.drop),
        cfg.categorical,
        list(cfg.log_features),
        cfg.log_target,
    )
    used = [c.name for c in enc.columns] + [enc.target]
    if cfg.missing == "drop" or (cfg.missing == "mean" and df[enc.target].isna().any()):
        keep = df[used if cfg.missing == "drop" else [enc.target]].notna().all(axis=1).to_numpy()
        if not keep.all():
            print(
                f"data.missing={cfg.missing}: dropped {int((~keep).sum())} of {len(df)} rows "
                f"with missing values"
            )
        df = df[keep]
    elif cfg.missing == "error":
        _refuse_missing(df, used, source, "error")
    X = enc.transform(df, source, cfg.missing)
    y = target_values(df, enc, source)
    names = enc.feature_names
    if len(y) < len(names) + 1:
        raise UserError(
            f"{source}: {len(y)} rows for {len(names)} features; least squares needs "
            f"at least features + 1 = {len(names) + 1} rows"
        )
    return Table(
        X.astype(np.float32),
        y.astype(np.float32),
        names,
        enc.target,
        source,
        encoding=enc.to_dict(),
    )
