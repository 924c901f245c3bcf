"""Metrics in the target's own units, the model in the user's units, and least squares."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from data.preprocess import Scaling
from training.devices import to_host


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, chunk: int = 1 << 18
) -> dict[str, float]:
    """MSE, RMSE, MAE and R^2 = 1 - SS_res / SS_tot, summed in float64 a chunk of rows at a
    time (10^7 rows need no float64 copies); NaN where undefined."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)  # no copy of CPU device arrays
    n = len(y_true)
    if n == 0:
        return {"mse": float("nan"), "rmse": float("nan"), "mae": float("nan"), "r2": float("nan")}
    mean = float(np.mean(y_true, dtype=np.float64))
    ss_res = abs_err = ss_tot = 0.0
    for s in range(0, n, chunk):
        t = np.asarray(y_true[s : s + chunk], np.float64)
        err = np.asarray(y_pred[s : s + chunk], np.float64) - t
        ss_res += float(err @ err)
        abs_err += float(np.abs(err).sum())
        ss_tot += float(((t - mean) ** 2).sum())
    mse = ss_res / n
    r2 = 1.0 - ss_res / ss_tot if n > 1 and ss_tot > 0 else float("nan")
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": abs_err / n, "r2": r2}


def least_squares(X, y, chunk: int = 1 << 18) -> tuple[np.ndarray, float]:
    """The least-squares ``(W, b)`` of ``y ~ X W + b`` in float64.

    Up to 2^20 rows: ``numpy.linalg.lstsq`` on ``[X, 1]``. More rows: the normal equations
    ``[X 1]^T [X 1] beta = [X 1]^T y``, accumulated ``chunk`` rows at a time (X may live on a
    device), which on standardised columns is as accurate and needs no float64 copy of X.
    """
    X, y = np.asarray(X), np.asarray(y)  # on a CPU device this is the same memory, no copy
    n, d = X.shape
    if n <= 1 << 20:
        A = np.column_stack([np.asarray(X, np.float64), np.ones(n)])
        beta = np.linalg.lstsq(A, np.asarray(y, np.float64), rcond=None)[0]
        return beta[:d], float(beta[d])
    G = np.zeros((d + 1, d + 1))
    c = np.zeros(d + 1)
    for s in range(0, n, chunk):
        A = np.asarray(X[s : s + chunk], np.float64)
        A = np.column_stack([A, np.ones(len(A))])
        yc = np.asarray(y[s : s + chunk], np.float64)
        G += A.T @ A
        c += A.T @ yc
    beta = np.linalg.solve(G, c)
    return beta[:d], float(beta[d])


@jax.jit
def _normal_equations(X: jax.Array, y: jax.Array | None, w: jax.Array | None):
    # the blocks of [X 1]^T diag(w) [X 1], never a copy of X with a column of ones
    hp = jax.lax.Precision.HIGHEST
    wt = jnp.ones(X.shape[0], X.dtype) if w is None else w
    xw = jnp.dot(wt, X, precision=hp)
    xx = jnp.dot(X.T * wt, X, precision=hp) if w is not None else jnp.dot(X.T, X, precision=hp)
    G = jnp.block([[xx, xw[:, None]], [xw[None, :], jnp.sum(wt)[None, None]]])
    if y is None:
        return G, None
    wy = wt * y
    return G, jnp.concatenate([jnp.dot(wy, X, precision=hp), jnp.sum(wy)[None]])


def normal_equations(X, y=None, w=None) -> tuple[np.ndarray, np.ndarray | None]:
    """``[X 1]^T diag(w) [X 1]`` and ``[X 1]^T diag(w) y`` in one pass over device rows (rows
    sharded over devices and processes are summed by XLA), returned to every process."""
    G, c = to_host(_normal_equations(X, y, w))
    return np.asarray(G, np.float64), None if c is None else np.asarray(c, np.float64)


def least_squares_on_device(X, y, w=None) -> tuple[np.ndarray, float]:
    """Least squares from :func:`normal_equations` (float32 sums, a float64 solve): the
    reference when the rows live only on the devices of several processes."""
    G, c = normal_equations(X, y, w)
    beta = np.linalg.solve(G, c)
    return beta[:-1], float(beta[-1])


def coefficients(W: np.ndarray, b: float, scaling: Scaling, names: list[str]) -> dict[str, float]:
    """The linear model on the unscaled (encoded) columns: ``name -> weight`` and ``intercept``."""
    W_o, b_o = scaling.to_original(np.ravel(W), float(np.ravel(b)[0]))
    return {**{name: float(w) for name, w in zip(names, W_o, strict=True)}, "intercept": b_o}


def coefficient_gap(model: dict[str, float], ols: dict[str, float]) -> float:
    """The largest ``|model - ols| / |ols|`` over the coefficients (``r2`` left out)."""
    gaps = [abs(model[k] - v) / max(abs(v), 1e-300) for k, v in ols.items() if k in model]
    return max(gaps) if gaps else 0.0
