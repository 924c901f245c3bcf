"""Data sources: the walkthrough's six points, synthetic regression, and CSV files.

Each returns a :class:`Table`: float32 inputs and targets with the names of their columns.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from data import read_ahead
from data.table import Table

HOUSE_FEATURES = (
    "size_sqft",
    "lot_sqft",
    "bedrooms",
    "bathrooms",
    "stories",
    "age_years",
    "distance_km",
    "garage_spaces",
    "school_score",
    "crime_rate",
    "renovated",
    "pool",
)


def toy(xs: list[float], ys: list[float]) -> Table:
    """The walkthrough: learn ``W`` in ``y = W x + b`` from six points on ``y = 2x - 1``."""
    X = np.asarray(xs, np.float32)[:, None]
    return Table(X, np.asarray(ys, np.float32), ["x"], "y", "toy data")


CHUNK = 1 << 20  # synthetic rows drawn at a time: never a float64 copy, nor all on the host


@functools.partial(jax.jit, donate_argnums=0)
def _put_rows(buf: jax.Array, rows: np.ndarray, start: int) -> jax.Array:
    return jax.lax.dynamic_update_slice_in_dim(buf, rows, start, 0)


def synthetic(
    n_samples: int,
    n_features: int,
    noise: float,
    seed: int,
    house_like: bool = False,
    device: jax.Device | None = None,
    rows: tuple[int, int] | None = None,
) -> Table:
    """``y = X @ w_true + b_true + noise * N(0, 1)`` with ``X ~ N(0, 1)`` (float32 throughout).

    ``house_like`` names the columns like house features (``size_sqft``, ``age_years``, ...) and
    draws the rule as prices: ``b_true = 200_000`` and weights of tens of thousands per unit.
    Rows are drawn in chunks of ``CHUNK``, chunk ``c`` from ``default_rng([seed, c])``, so any
    range of ``rows = (start, stop)`` can be drawn alone (a process of a multi-host run draws
    only its own). With a ``device`` the chunks go straight into arrays on it (the same values),
    so a table of 10^7 rows never exists on the host.
    """
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n_features).astype(np.float32)
    b = np.float32(rng.standard_normal())
    if house_like:
        w, b = (w * 25_000).astype(np.float32), np.float32(200_000)
        names = [
            HOUSE_FEATURES[i % len(HOUSE_FEATURES)]
            + ("" if i < len(HOUSE_FEATURES) else f"_{i // len(HOUSE_FEATURES)}")
            for i in range(n_features)
        ]
        noise_scale = np.float32(noise * 25_000)
    else:
        names = [f"x{i}" for i in range(n_features)]
        noise_scale = np.float32(noise)
    lo, hi = rows or (0, n_samples)
    if device is None:
        X = np.empty((hi - lo, n_features), np.float32)
        y = np.empty(hi - lo, np.float32)
    else:
        X = jax.device_put(jnp.zeros((hi - lo, n_features), jnp.float32), device)
        y = jax.device_put(jnp.zeros(hi - lo, jnp.float32), device)
    for c in range(lo // CHUNK, -(-hi // CHUNK)):
        s, e = c * CHUNK, min((c + 1) * CHUNK, n_samples)
        rc = np.random.default_rng([seed, c])
        Xc = rc.standard_normal((e - s, n_features), dtype=np.float32)
        yc = Xc @ w + b + noise_scale * rc.standard_normal(e - s, dtype=np.float32)
        a, z = max(s, lo), min(e, hi)  # the part of this chunk that is wanted
        Xc, yc = Xc[a - s : z - s], yc[a - s : z - s]
        if device is None:
            X[a - lo : z - lo], y[a - lo : z - lo] = Xc, yc
        else:
            X, y = _put_rows(X, Xc, a - lo), _put_rows(y, yc, a - lo)
    return Table(
        X, y, names, "price" if house_like else "y", "synthetic data", {"W": w, "b": np.asarray(b)}
    )


def _toy(cfg, device, rows, seed) -> Table:
    return toy(list(cfg.xs), list(cfg.ys))


def _synthetic(cfg, device, rows, seed) -> Table:
    return synthetic(
        cfg.n_samples, cfg.n_features, cfg.noise, cfg.seed, cfg.house_like, device, rows
    )


def _csv(cfg, device, rows, seed) -> Table:
    from data.csv_source import load_csv  # pandas, imported only for a CSV

    return load_csv(cfg, seed)


# data.name -> the source that builds its table from the data group: the one list of names
SOURCES = {"toy": _toy, "synthetic": _synthetic, "csv": _csv}


def load_table(
    cfg,
    device: jax.Device | None = None,
    rows: tuple[int, int] | None = None,
    seed: int = 0,
    keep: bool = False,
    train_rows: np.ndarray | None = None,
) -> Table:
    """The table named by ``cfg.name`` (a key of :data:`SOURCES`), built from ``cfg``;
    synthetic rows are drawn straight onto ``device`` when one is given, and only the range
    ``rows`` when one is given. ``seed`` splits a CSV's rows as :func:`~data.preprocess.prepare`
    will, so that its encoding is fitted on the training rows alone.

    A CSV's table read ahead (:mod:`data.read_ahead`: in a second process, or kept by an earlier
    call with ``keep``) for the same settings, seed and unchanged file is taken instead of
    reading the file again; ``keep`` keeps a copy of this one for the next call.

    ``train_rows``: a cross-validation fold's training rows, on which a CSV's encoding is
    fitted (read afresh: the table read ahead is the whole run's)."""
    if train_rows is not None and cfg.name == "csv":
        from data.csv_source import load_csv

        return load_csv(cfg, seed, train_rows)
    key = read_ahead.csv_key(cfg, seed) if cfg.name == "csv" and rows is None else None
    table = read_ahead.take(key)
    if table is None:
        table = SOURCES[cfg.name](cfg, device, rows, seed)
    if keep and key is not None:
        read_ahead.keep(key, table)
    return table
