"""Splits and standardisation, fitted on the training rows only and saved with the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from errors import UserError

SPLITS = ("train", "val", "test")


def split_rows(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Row indices of train / val / test: a permutation from ``seed`` cut by the fractions
    (val and test get ``round(n * fraction)`` rows, train the rest; each list sorted)."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if n - n_val - n_test < 1:
        raise UserError(
            f"bad config value data.val_fraction={val_fraction}: with "
            f"data.test_fraction={test_fraction} no training rows of {n} are left"
        )
    if val_fraction == 0 and test_fraction == 0:
        return {"train": np.arange(n), "val": np.arange(0), "test": np.arange(0)}
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(n)
    return {
        "val": np.sort(order[:n_val]),
        "test": np.sort(order[n_val : n_val + n_test]),
        "train": np.sort(order[n_val + n_test :]),
    }


def fold_rows(
    n: int, folds: int, val_fraction: float, test_fraction: float, seed: int
) -> list[dict[str, np.ndarray]]:
    """The ``train`` / ``val`` / ``test`` row indices (each sorted) of each of ``folds`` folds.

    ``test`` is the run's test split (:func:`split_rows`) in every fold; the
    other rows, in the order of the same permutation of ``seed``, are cut into ``folds`` parts
    of sizes differing by at most one (``numpy.array_split``). Fold ``i`` validates on part
    ``i`` and trains on the rest. Raises :class:`UserError` when there are fewer such rows than
    twice the folds (a fold validating on one row has no R^2: data.folds=491 on 491 rows ran
    for 1.5 minutes to report every fold's R^2 as NaN)."""
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(n)
    test = np.sort(order[n_val : n_val + n_test]) if n_test else np.arange(0)
    rest = np.concatenate([order[:n_val], order[n_val + n_test :]])
    if len(rest) < 2 * folds:  # a fold validates on 2 rows at least: R^2 of one is undefined
        fewer = (
            f"use at most data.folds={len(rest) // 2}"
            if len(rest) >= 4
            else "too few for folds of two validation rows each: set data.folds=0"
        )
        raise UserError(
            f"bad config value data.folds={folds}: only {len(rest)} rows outside the test rows "
            f"(each fold validates on two at least); {fewer}"
        )
    parts = np.array_split(rest, folds)
    return [
        {
            "train": np.sort(np.concatenate(parts[:i] + parts[i + 1 :])),
            "val": np.sort(part),
            "test": test,
        }
        for i, part in enumerate(parts)
    ]


@dataclass
class Scaling:
    """``x' = (x - x_mean) / x_scale`` and ``y' = (y - y_mean) / y_scale`` (identity when off)."""

    x_mean: list[float]
    x_scale: list[float]
    y_mean: float
    y_scale: float
    # each column's least and greatest value in the training rows, in its own units (None:
    # rows drawn on a device, or a run saved before they were kept): what new rows are held to
    x_min: list[float] | None = None
    x_max: list[float] | None = None

    @classmethod
    def identity(cls, d: int) -> Scaling:
        return cls([0.0] * d, [1.0] * d, 0.0, 1.0)

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray, names: list[str], source: str) -> Scaling:
        """Fit on training rows (float64 statistics); a constant column cannot be scaled."""
        if isinstance(X, np.ndarray):
            mean, std = X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64)
        else:  # rows on a device: float32 moments there
            mean, std = (
                np.asarray(X.mean(axis=0), np.float64),
                np.asarray(X.std(axis=0), np.float64),
            )
        for j in np.flatnonzero(std == 0):
            raise UserError(
                f"{source}: column {names[j]!r} is constant ({float(mean[j]):g}) in "
                f"the training rows and cannot be standardised; add it to data.drop"
            )
        y_std = float(np.std(np.asarray(y), dtype=np.float64))
        if y_std == 0:
            raise UserError(
                f"{source}: the target is constant in the training rows; there is nothing to learn"
            )
        return cls(
            mean.tolist(), std.tolist(), float(np.mean(np.asarray(y), dtype=np.float64)), y_std
        )

    def apply_X(self, X):
        """Scale numpy rows on the host, device rows on their device (float32 either way)."""
        return (X - np.float32(self.x_mean)) / np.float32(self.x_scale)

    def apply_y(self, y):
        return (y - np.float32(self.y_mean)) / np.float32(self.y_scale)

    def invert_y(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, np.float64) * self.y_scale + self.y_mean

    def to_original(self, W: np.ndarray, b: float) -> tuple[np.ndarray, float]:
        """Coefficients on the unscaled columns: ``y = x @ W_o + b_o`` in the target's units."""
        W = np.asarray(W, np.float64)
        W_o = W * self.y_scale / np.asarray(self.x_scale)
        b_o = self.y_mean + self.y_scale * float(b) - float(W_o @ np.asarray(self.x_mean))
        return W_o, b_o

    def to_dict(self) -> dict:
        return asdict(self)


# the key of preprocessing.json that holds the SHA-256 of a file's rows (rows_digest)
ROWS_DIGEST = "rows_sha256"


# how a file writes its data, not what they are: a file saved again with a decimal comma, ISO
# dates, pandas' index column or a title line holds the same rows (helper-49: each refused)
_WRITING = ("sep", "decimal", "target_decimal", "notes", "warnings", "dropped_columns")
_COLUMN_WRITING = ("date_format", "decimal")


def the_data_itself(preprocessing: dict) -> dict:
    """A run's ``preprocessing`` (``preprocessing.json``) without what only says where and how
    its file is written: the path (a file moved or renamed), the run's id, separators, decimal
    marks, date formats, notes and the columns left out of the model unread. What is left (the
    columns and their encoding, the training rows' statistics, the rows' digest) decides
    whether two files hold the same data."""
    data = {k: v for k, v in preprocessing.items() if k not in ("run_id", "source")}
    encoding = data.get("encoding")
    if encoding:
        encoding = {k: v for k, v in encoding.items() if k not in _WRITING}
        encoding["columns"] = [
            {k: v for k, v in c.items() if k not in _COLUMN_WRITING}
            for c in encoding.get("columns", [])
        ]
        data["encoding"] = encoding
    return data


def rows_digest(data: Prepared) -> str:
    """The SHA-256 of every row of ``data`` (the training, validation and test rows' inputs as
    scaled, and their target in its units, split by split): what the training rows' statistics
    do not pin down, as two training rows' prices swapped or a held-out row changed."""
    import hashlib

    digest = hashlib.sha256()
    for split in ("train", "val", "test"):
        for arrays in (data.X, data.y_raw):
            digest.update(np.ascontiguousarray(arrays[split], np.float32).tobytes())
            digest.update(b"|")
    return digest.hexdigest()


@dataclass
class Prepared:
    """A table split into train/val/test and scaled as the model sees it."""

    X: dict[str, np.ndarray]  # split -> (rows, d) float32, scaled
    y: dict[str, np.ndarray]  # split -> (rows,) float32, transformed and scaled
    y_raw: dict[str, np.ndarray]  # split -> the target in its own units
    rows: dict[str, np.ndarray]  # split -> indices into the table
    scaling: Scaling
    log_target: bool
    file_rows: np.ndarray | None = None  # a CSV's rows: each table row's number in the file

    def to_target_units(self, pred: np.ndarray) -> np.ndarray:
        """Undo every target transform: standardisation, then the log if one was taken."""
        out = self.scaling.invert_y(pred)
        return np.exp(out) if self.log_target else out


def prepare_table(table, d, seed: int, rows: dict[str, np.ndarray] | None = None) -> Prepared:
    """:func:`prepare` a :class:`~data.sources.Table` as the ``data`` config ``d`` says."""
    prepared = prepare(
        table.X,
        table.y,
        table.feature_names,
        standardize=d.standardize,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=seed,
        source=table.source,
        log_target=d.log_target,
        rows=rows,
    )
    prepared.file_rows = table.file_rows
    return prepared


def prepare(
    X: np.ndarray,
    y: np.ndarray,
    names: list[str],
    *,
    standardize: bool,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    source: str,
    log_target: bool = False,
    rows: dict[str, np.ndarray] | None = None,
) -> Prepared:
    """Split the rows by ``seed`` (or as ``rows`` says: a cross-validation fold), then fit the
    scaling on the training rows only."""
    if rows is None:
        rows = split_rows(len(y), val_fraction, test_fraction, seed)
    if log_target and not isinstance(y, np.ndarray):  # synthetic rows drawn on the device
        import jax.numpy as jnp

        y_model = jnp.log(y)
    else:
        y_model = np.log(y) if log_target else y
    if isinstance(X, np.ndarray) and np.isnan(X).any():  # data.missing=mean
        fill = np.nanmean(X[rows["train"]], axis=0)
        X = np.where(np.isnan(X), fill.astype(np.float32), X)
    whole = len(rows["train"]) == len(y)
    Xs = {s: (X if whole and s == "train" else X[r]) for s, r in rows.items()}
    ys = {s: (y_model if whole and s == "train" else y_model[r]) for s, r in rows.items()}
    y_raw = {s: (y if whole and s == "train" else y[r]) for s, r in rows.items()}
    train = Xs["train"]
    if standardize:
        scaling = Scaling.fit(train, ys["train"], names, source)
        Xs = {s: scaling.apply_X(v) for s, v in Xs.items()}
        ys = {s: scaling.apply_y(v) for s, v in ys.items()}
    else:
        scaling = Scaling.identity(X.shape[1])
    if isinstance(train, np.ndarray) and len(train):
        scaling.x_min = train.min(axis=0).astype(np.float64).tolist()
        scaling.x_max = train.max(axis=0).astype(np.float64).tolist()
    return Prepared(Xs, ys, y_raw, rows, scaling, log_target)


def far_outside(
    X: np.ndarray, scaling: Scaling, names: list[str], kinds: list[str] | None = None
) -> list[str]:
    """A line for each column of new rows ``X`` (``(rows, features)``, before scaling) with values
    far outside the training rows' range. ``kinds`` (one a column; default ``number``): a ``number``
    column of positive training values is out under a tenth of its least or over ten times its
    greatest value; a ``log`` feature's (its logarithm) the same in its own units; a ``date`` (a
    decimal year) and any other column further outside than the range is wide; in a positive column
    a number below 0 is out, and 0 where the least training value is 10 or more. A model fitted
    there extrapolates, and a value a thousand times off is most often written in other units or
    with another decimal mark than the training file's (``3.987`` against ``3987``)."""
    if scaling.x_min is None or scaling.x_max is None or not len(X):
        return []
    low, high = np.asarray(scaling.x_min), np.asarray(scaling.x_max)
    width = high - low
    X = np.asarray(X, np.float64)
    kinds = kinds or ["number"] * len(names)
    lines = []
    for j in np.flatnonzero(width > 0):
        x = X[:, j]
        if kinds[j] == "log":  # ln(a tenth), ln(ten times)
            far = (x < low[j] - np.log(10)) | (x > high[j] + np.log(10))
        elif kinds[j] == "number" and low[j] > 0:
            # a count whose least is 1 to 9 may be 0 (bedrooms, garage places: helper-46); a
            # size or a year whose least is 10 or more is not, nor is any positive column below
            # 0 (helper-49: 0 and -1500 square feet beside 800 to 3460 were priced silently)
            under = np.where(x == 0, low[j] >= 10, x < low[j] / 10)  # below 0 too
            far = under | (x > high[j] * 10)
        else:
            far = (x < low[j] - width[j]) | (x > high[j] + width[j])
        if far.any():
            shown = np.exp if kinds[j] == "log" else (lambda v: v)
            values, name = shown(x[far]), names[j]
            name = name[4:-1] if kinds[j] == "log" and name.startswith("log(") else name
            lo, hi = _apart(float(shown(low[j])), float(shown(high[j])))
            lines.append(
                f"column {name!r}: {int(far.sum())} of {len(X)} rows hold values "
                f"({values.min():.6g} to {values.max():.6g}) far outside the training rows' "
                f"{lo} to {hi}; the model extrapolates there (if "
                "the column is written in other units or with another decimal mark than the "
                "training file, write it as that file did)"
            )
    return lines


def _apart(low: float, high: float) -> tuple[str, str]:
    """``low`` and ``high`` to 6 significant digits, or as many more (up to 17) as tell them
    apart: a range of 45.00000 to 45.00002 read "45 to 45" (helper-54)."""
    for digits in range(6, 18):
        lo, hi = f"{low:.{digits}g}", f"{high:.{digits}g}"
        if lo != hi or low == high:
            return lo, hi
    return lo, hi
