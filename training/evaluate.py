"""Metrics in the target's own units, the model in the user's units, and least squares."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from data.preprocess import Scaling
from training.devices import to_host

# Directions of the design whose Hessian eigenvalue is below ZERO_EIGENVALUE times the largest
# are the run's null space (training/stability.py, where float32 rows cannot tell them from 0):
# the least-squares reference drops the same ones, the minimum-norm solution gradient descent
# from zeros reaches. On [X 1] itself that is singular values below sqrt(ZERO_EIGENVALUE).
ZERO_EIGENVALUE = 1e-6
SINGULAR_VALUE_CUTOFF = ZERO_EIGENVALUE**0.5


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


def least_squares(X, y, chunk: int = 1 << 18, l2: float = 0.0) -> tuple[np.ndarray, float]:
    """The least-squares ``(W, b)`` of ``y ~ X W + b`` in float64; with ``l2`` > 0 the ridge
    minimiser of ``mean((X W + b - y)^2) + (l2 / 2) ||W||^2`` (``training/objectives.py``), whose
    normal equations are ``([X 1]^T [X 1] + (n l2 / 2) D) beta = [X 1]^T y``, ``D = diag(1, ...,
    1, 0)``: the intercept is not penalised.

    Up to 2^20 rows: ``numpy.linalg.lstsq`` on ``[X, 1]`` (ridge: with the rows
    ``sqrt(n l2 / 2) [I 0]`` and targets 0 appended, Hoerl and Kennard's augmented form). More
    rows: the normal equations, accumulated ``chunk`` rows at a time (X may live on a device),
    which on standardised columns is as accurate and needs no float64 copy of X.
    """
    X, y = np.asarray(X), np.asarray(y)  # on a CPU device this is the same memory, no copy
    n, d = X.shape
    if n <= 1 << 20:
        A = np.column_stack([np.asarray(X, np.float64), np.ones(n)])
        scale = _column_norms(np.einsum("ij,ij->j", A, A))
        target = np.asarray(y, np.float64)
        if l2:
            A = np.vstack([A, np.sqrt(n * l2 / 2.0) * np.eye(d, d + 1)])
            target = np.concatenate([target, np.zeros(d)])
        beta, _, rank, _ = np.linalg.lstsq(A / scale, target, rcond=SINGULAR_VALUE_CUTOFF)
        beta = beta / scale
        if rank < d + 1:  # collinear columns: of the solutions, the one gradient descent reaches
            beta = _shortest(beta, (A / scale).T @ (A / scale), scale)
        return beta[:d], float(beta[d])
    G = np.zeros((d + 1, d + 1))
    c = np.zeros(d + 1)
    for s in range(0, n, chunk):
        A = np.asarray(X[s : s + chunk], np.float64)
        A = np.column_stack([A, np.ones(len(A))])
        yc = np.asarray(y[s : s + chunk], np.float64)
        G += A.T @ A
        c += A.T @ yc
    beta = solve_normal_equations(G, c, l2)
    return beta[:d], float(beta[d])


def solve_normal_equations(G: np.ndarray, c: np.ndarray, l2: float = 0.0) -> np.ndarray:
    """``beta`` solving ``(G + (n l2 / 2) D) beta = c`` (:func:`ridge_gram`; ``G``: ``(p, p)``,
    ``c``: ``(p,)``) in float64 by ``numpy.linalg.lstsq`` on Jacobi's scaling of the matrix
    (:func:`jacobi_scaled`), whose ``ZERO_EIGENVALUE`` cutoff then drops collinear directions
    only (the minimum-norm solution in the scaled coordinates)."""
    S, scale = jacobi_scaled(ridge_gram(G, l2))
    beta, _, rank, _ = np.linalg.lstsq(S, c / scale, rcond=ZERO_EIGENVALUE)
    beta = beta / scale
    return _shortest(beta, S, scale) if rank < len(beta) else beta


def _shortest(beta: np.ndarray, S: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The solution of least norm in the parameters' own units among ``beta`` plus the null
    space of the Jacobi-scaled Gram matrix ``S`` (its eigenvectors under ``ZERO_EIGENVALUE``
    of the largest, mapped back by ``1 / scale``): gradient descent from zeros moves only in
    the design's row space, so it reaches that one. ``lstsq`` on the scaled matrix gives the
    least norm in the scaled units, another solution when the columns' scales differ
    (``data.standardize=false``: a reference 379 % from the fit it should have matched)."""
    values, vectors = np.linalg.eigh(S)
    null = vectors[:, values < ZERO_EIGENVALUE * values.max()] / scale[:, None]
    if not null.size:
        return beta
    return beta - null @ np.linalg.lstsq(null, beta, rcond=None)[0]


def jacobi_scaled(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(S, s)``: ``S = G / (s s^T)`` with ``s`` the square roots of ``G``'s diagonal (the
    columns' norms for a Gram matrix; 1 where 0), so that ``S`` has a unit diagonal. A relative
    cutoff on ``S``'s eigenvalues sees collinearity only, not the columns' units; see
    :func:`_column_norms`."""
    scale = _column_norms(np.clip(np.diag(G), 0.0, None))
    return G / np.outer(scale, scale), scale


def _column_norms(squares: np.ndarray) -> np.ndarray:
    """The columns' norms from their sums of squares (1 for a column of zeros).

    The cutoff below which a direction of ``[X 1]`` counts as none is relative to the largest
    singular value; on columns of very different sizes (``data.standardize=false``: a lot size
    in thousands beside 0/1 columns) the small columns' directions fell under it, and the
    "least squares" reference was a fit of the large column alone (R^2 0.04 against 0.67).
    Dividing each column by its norm first (Jacobi's scaling) makes the cutoff see collinearity
    only; standardised columns all have norm ``sqrt(n)``, so their solution is unchanged."""
    norms = np.sqrt(squares)
    return np.where(norms > 0, norms, 1.0)


def ridge_gram(G: np.ndarray, l2: float) -> np.ndarray:
    """``G + (n l2 / 2) D`` for ``G = [X 1]^T diag(w) [X 1]`` (``n = G[-1, -1]``, the rows'
    total weight) and ``D`` the identity on ``W``, 0 on ``b``: the ridge normal equations'
    matrix (:func:`least_squares`)."""
    if not l2:
        return G
    out = G.copy()
    d = len(G) - 1
    out[np.arange(d), np.arange(d)] += G[d, d] * l2 / 2.0
    return out


ROWS_PER_BLOCK = 1 << 16  # rows a weighted X^T diag(w) X on one device multiplies at once


def _weighted_gram_in_blocks(X: jax.Array, wt: jax.Array, block: int) -> jax.Array:
    """``X^T diag(wt) X`` summed over blocks of ``block`` rows (``(d, d)``), so that
    ``diag(wt) X`` is never made whole: at 10^7 x 16 rows it was a 0.65 GB copy of ``X`` at the
    end of a run (a train.py run's peak memory, 1.78 GB against 1.1 GB while training). The
    last block starts early enough to stay inside ``X``; its rows summed before weigh 0 there."""
    n, d = X.shape
    hp = jax.lax.Precision.HIGHEST

    def add_block(i, acc):
        start = jnp.minimum(i * block, n - block)
        x = jax.lax.dynamic_slice_in_dim(X, start, block)
        w = jax.lax.dynamic_slice_in_dim(wt, start, block)
        w = jnp.where(start + jnp.arange(block) >= i * block, w, jnp.zeros_like(w))
        return acc + jnp.dot(x.T * w, x, precision=hp)

    return jax.lax.fori_loop(0, -(-n // block), add_block, jnp.zeros((d, d), X.dtype))


@functools.partial(jax.jit, static_argnames="block")
def _normal_equations(X: jax.Array, y: jax.Array | None, w: jax.Array | None, block: int = 0):
    # the blocks of [X 1]^T diag(w) [X 1], never a copy of X with a column of ones
    hp = jax.lax.Precision.HIGHEST
    wt = jnp.ones(X.shape[0], X.dtype) if w is None else w
    xw = jnp.dot(wt, X, precision=hp)
    if w is None:
        xx = jnp.dot(X.T, X, precision=hp)
    elif block:
        xx = _weighted_gram_in_blocks(X, wt, block)
    else:
        xx = jnp.dot(X.T * wt, X, precision=hp)
    G = jnp.block([[xx, xw[:, None]], [xw[None, :], jnp.sum(wt)[None, None]]])
    if y is None:
        return G, None
    wy = wt * y
    return G, jnp.concatenate([jnp.dot(wy, X, precision=hp), jnp.sum(wy)[None]])


def normal_equations(X, y=None, w=None) -> tuple[np.ndarray, np.ndarray | None]:
    """``[X 1]^T diag(w) [X 1]`` and ``[X 1]^T diag(w) y`` in one pass over device rows (rows
    sharded over devices and processes are summed by XLA), returned to every process. With
    weights, on one device, over more than :data:`ROWS_PER_BLOCK` rows: in blocks of rows
    (:func:`_weighted_gram_in_blocks`); sharded rows are each device's share already."""
    G, c = to_host(_normal_equations(X, y, w, block=_blocked(X, w is not None)))
    return np.asarray(G, np.float64), None if c is None else np.asarray(c, np.float64)


def _blocked(X, weighted: bool) -> int:
    """The rows a Gram matrix of ``X`` sums at once: :data:`ROWS_PER_BLOCK` for a ``weighted``
    one over more rows than that on one device, else 0 (all at once: unweighted, it never
    copies ``X``; sharded rows are each device's share already)."""
    one_device = len(getattr(getattr(X, "sharding", None), "device_set", ())) == 1
    return ROWS_PER_BLOCK if weighted and one_device and X.shape[0] > ROWS_PER_BLOCK else 0


def least_squares_on_device(X, y, w=None, l2: float = 0.0) -> tuple[np.ndarray, float]:
    """Least squares (ridge with ``l2`` > 0) from :func:`normal_equations` (float32 sums, a
    float64 solve): the reference when the rows live only on the devices of several processes."""
    G, c = normal_equations(X, y, w)
    beta = solve_normal_equations(G, c, l2)
    return beta[:-1], float(beta[-1])


def _huber_parts_host(X, y, delta: float, chunk: int = 1 << 18):
    """``parts(beta, hessian)`` for :func:`huber_minimum` over host rows, summed in float64 a
    chunk at a time (X may be a CPU device array: no float64 copy of all of it)."""
    X, y = np.asarray(X), np.asarray(y)

    def parts(beta: np.ndarray, hessian: bool):
        n, p = len(y), len(beta)
        value, grad, H = 0.0, np.zeros(p), np.zeros((p, p)) if hessian else None
        for s in range(0, n, chunk):
            A = np.asarray(X[s : s + chunk], np.float64)
            A = np.column_stack([A, np.ones(len(A))])
            r = A @ beta - np.asarray(y[s : s + chunk], np.float64)
            a = np.abs(r)
            inside = a <= delta
            value += float(np.where(inside, r * r, 2.0 * delta * a - delta * delta).sum())
            grad += A.T @ (2.0 * np.clip(r, -delta, delta))
            if hessian:
                Ai = A[inside]
                H += 2.0 * Ai.T @ Ai
        return value, grad, H, float(n)

    return parts


@jax.jit
def _huber_sums(beta, X, y, w, delta):
    hp = jax.lax.Precision.HIGHEST
    wt = jnp.ones(X.shape[0], X.dtype) if w is None else w
    r = jnp.dot(X, beta[:-1], precision=hp) + beta[-1] - y
    a = jnp.abs(r)
    inside = a <= delta
    value = jnp.sum(wt * jnp.where(inside, r * r, 2.0 * delta * a - delta * delta))
    psi = wt * 2.0 * jnp.clip(r, -delta, delta)
    grad = jnp.concatenate([jnp.dot(psi, X, precision=hp), jnp.sum(psi)[None]])
    return value, grad, jnp.sum(wt)


def _huber_parts_device(X, y, w, delta: float):
    """``parts`` over device rows (sharded rows summed by XLA; float32 sums, as
    :func:`least_squares_on_device`)."""

    def parts(beta: np.ndarray, hessian: bool):
        b32 = jnp.asarray(beta, jnp.float32)
        value, grad, n = to_host(_huber_sums(b32, X, y, w, jnp.float32(delta)))
        H = None
        if hessian:
            wt = jnp.ones(X.shape[0], X.dtype) if w is None else w
            inside = _squared_residuals(b32[:-1], b32[-1], X, y) <= delta * delta
            H, _ = normal_equations(X, None, wt * inside.astype(X.dtype))
            H = 2.0 * H
        return float(value), np.asarray(grad, np.float64), H, float(n)

    return parts


def huber_minimum(parts, p: int, l2: float, start: np.ndarray) -> np.ndarray:
    """The minimiser ``beta = (W, b)`` of ``J = sum_i 2 rho_delta(a_i beta - y_i) / n + (l2 / 2)
    ||W||^2`` (``training/objectives.py``) in float64: L-BFGS (scipy) from ``start``, then
    Newton steps on the rows within ``delta``. ``J`` is piecewise quadratic, so once the set of
    those rows is right one Newton step lands on the minimum exactly; a step is kept only when it
    lowers ``J``. ``parts(beta, hessian)`` returns the sums ``(sum 2 rho, sum a_i psi(r_i), sum
    over rows within delta of 2 a_i a_i^T or None, n)``."""
    from scipy.optimize import minimize

    D = np.ones(p)
    D[-1] = 0.0  # the intercept is not penalised

    def fun(beta):
        value, grad, _, n = parts(beta, False)
        return value / n + 0.5 * l2 * float((D * beta) @ beta), grad / n + l2 * D * beta

    res = minimize(
        fun,
        np.asarray(start, np.float64),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 20_000, "maxcor": 30, "ftol": 1e-15, "gtol": 1e-12},
    )
    beta, best = res.x, res.fun
    for _ in range(20):
        value, grad, H, n = parts(beta, True)
        H = H / n + l2 * np.diag(D)
        step = np.linalg.lstsq(H, grad / n + l2 * D * beta, rcond=ZERO_EIGENVALUE)[0]
        trial = beta - step
        f_trial = fun(trial)[0]
        if not f_trial < best:
            break
        beta, best = trial, f_trial
    return beta


def objective_minimum(
    X: np.ndarray | jax.Array,
    y: np.ndarray | jax.Array,
    objective,
    w: jax.Array | None = None,
    on_device: bool = False,
) -> tuple[np.ndarray, float]:
    """The float64 reference ``(W, b)`` of the linear model under ``objective``
    (:class:`training.objectives.Objective`, in the trained space): least squares, the ridge
    closed form, or the Huber minimum (:func:`huber_minimum`, started from the ridge or
    least-squares solution). ``on_device``: the rows live only on the devices (``w`` weights
    them), and the sums are float32 there."""
    if on_device:
        W, b = least_squares_on_device(X, y, w, objective.l2)
    else:
        W, b = least_squares(X, y, l2=objective.l2)
    if objective.name != "huber":
        return W, b
    if on_device:
        parts = _huber_parts_device(X, y, w, objective.delta)
    else:
        parts = _huber_parts_host(X, y, objective.delta)
    beta = huber_minimum(parts, len(W) + 1, objective.l2, np.append(W, b))
    return beta[:-1], float(beta[-1])


def coefficients(W: np.ndarray, b: float, scaling: Scaling, names: list[str]) -> dict[str, float]:
    """The linear model on the unscaled (encoded) columns: ``name -> weight`` and ``intercept``."""
    W_o, b_o = scaling.to_original(np.ravel(W), float(np.ravel(b)[0]))
    return {**{name: float(w) for name, w in zip(names, W_o, strict=True)}, "intercept": b_o}


def coefficient_gap(model: dict[str, float], ols: dict[str, float]) -> float:
    """The largest ``|model - ols| / |ols|`` over the coefficients (``r2`` left out)."""
    gaps = [abs(model[k] - v) / max(abs(v), 1e-300) for k, v in ols.items() if k in model]
    return max(gaps) if gaps else 0.0


@jax.jit
def _squared_residuals(W: jax.Array, b: jax.Array, X: jax.Array, y: jax.Array):
    r = y - (jnp.dot(X, W, precision=jax.lax.Precision.HIGHEST) + b)
    return r * r


@functools.partial(jax.jit, static_argnames=("block_g", "block_h"))
def _residual_moments(W, b, X, y, w, block_g: int, block_h: int):
    # one program, not one for the residuals and one for each sum: a walkthrough's first run
    # compiles each (tens of ms apiece)
    e2 = _squared_residuals(W, b, X, y)
    G, _ = _normal_equations(X, None, w, block=block_g)
    H, _ = _normal_equations(X, None, e2 if w is None else w * e2, block=block_h)
    return G, H


def residual_moments(W, b, X, y, w=None) -> tuple[np.ndarray, np.ndarray]:
    """``G = A^T diag(w) A`` and ``H = A^T diag(w e^2) A`` with ``A = [X 1]`` and the residuals
    ``e = y - X W - b`` of the linear model on device rows (float32 sums, sharded rows summed by
    XLA; weighted sums over many rows on one device in blocks, as :func:`normal_equations`).
    Every process must call this: each holds only its own rows. ``H[-1, -1]`` is the residual
    sum of squares."""
    # H is always weighted (by the squared residuals), G only by w
    G, H = to_host(
        _residual_moments(
            W, b, X, y, w, block_g=_blocked(X, w is not None), block_h=_blocked(X, True)
        )
    )
    return np.asarray(G, np.float64), np.asarray(H, np.float64)


def aliased_columns(G: np.ndarray, names: list[str], rtol: float = 1e-5) -> list[str]:
    """The columns of ``A = [X 1]`` (``G = A^T A``, names in ``names`` then ``intercept``) that are
    linear combinations of earlier ones, the intercept taken first, as R's ``lm`` reports them.

    Each column is compared with the span of the columns kept before it: its squared distance
    to that span, relative to its own squared norm, is ``1 - R^2`` of an uncentred regression on
    them; below ``rtol`` (a variance inflation of 10^5, beyond what float32 sums resolve) the
    column is aliased."""
    labels = [*names, "intercept"]
    order = [len(names), *range(len(names))]
    kept: list[int] = []
    aliased = []
    # a few hundred small solves: a run has OpenBLAS on one thread (training.devices
    # one_blas_thread), else waking its threads costs more than the arithmetic
    for j in order:
        g_jj = G[j, j]
        if g_jj <= 0:
            aliased.append(labels[j])
            continue
        if kept:
            g = G[kept, j]
            resid = g_jj - g @ np.linalg.solve(G[np.ix_(kept, kept)], g)
        else:
            resid = g_jj
        if resid / g_jj < rtol:
            aliased.append(labels[j])
        else:
            kept.append(j)
    return aliased


def _drop_override(aliased: list[str], sources: dict[str, str] | None) -> str:
    """``data.drop`` naming the file's columns the ``aliased`` inputs come from (a one-hot
    level, ``Type_other``, is no column to drop: ``data.drop=[Type_other]`` was refused), with
    what each level is; plain ``data.drop`` for data from no file (``sources`` empty)."""
    columns = list(dict.fromkeys((sources or {}).get(a, a) for a in aliased if a != "intercept"))
    if not columns or not sources:
        return "data.drop"
    from errors import hydra_list

    levels = [f"{a} of column {sources[a]!r}" for a in aliased if sources.get(a, a) != a]
    return hydra_list("data.drop", columns) + (f" ({'; '.join(levels)})" if levels else "")


_TABLES = ("standard_errors", "t_statistics", "p_values", "confidence_intervals_95")


def linear_inference(
    G: np.ndarray,
    H: np.ndarray,
    n: int,
    coefs: dict[str, float],
    scaling: Scaling,
    names: list[str],
    converged: bool = True,
    estimator: str = "least squares",
    sources: dict[str, str] | None = None,
) -> dict:
    """Standard errors, t statistics, two-sided p-values and 95 % confidence intervals of the
    linear model's coefficients ``coefs`` (the user's units, ``intercept`` last). ``sources``:
    the file's column each input of the model comes from (a one-hot level's, a log's), which
    the advice to drop an aliased one names.

    ``G`` and ``H`` come from :func:`residual_moments` on the model's (scaled) training rows;
    :func:`_coefficient_covariances` gives the classical and HC1 covariances (its docstring has
    the formulas and sources) and :func:`_t_table` the numbers from them.

    Returns ``standard_errors``, ``t_statistics``, ``p_values`` (each ``name -> {"classical",
    "hc1"}``), ``confidence_intervals_95`` (``name -> {kind: [low, high]}``) and ``inference``
    (``n``, ``df_resid``, ``aliased``, ``note``). Where the numbers do not apply (aliased
    columns, no residual degrees of freedom, an ``estimator`` other than least squares: a ridge
    or Huber fit, ``training/objectives.py``) every value is ``None`` and the note says why; a
    fit that has not converged keeps its numbers and the note says so.
    """
    labels = [*names, "intercept"]
    p = len(labels)
    info: dict = {"n": int(n), "df_resid": int(n - p), "aliased": [], "note": None}
    unscaled = not any(scaling.x_mean) and all(s == 1.0 for s in scaling.x_scale)
    aliased, info["note"] = _inapplicable(G, n, names, estimator, unscaled, sources or {})
    if info["note"] is not None:
        info["aliased"] = aliased
        return {**{key: {k: None for k in labels} for key in _TABLES}, "inference": info}
    cov = _coefficient_covariances(G, H, n, scaling)
    beta = np.array([coefs[k] for k in labels])
    out = _t_table(beta, cov, n - p, labels)
    if not converged:
        info["note"] = (
            "gradient descent has not converged (ols_gap), so these are the standard errors "
            "of coefficients least squares would not give (the run's warning says what to change)"
        )
    return {**out, "inference": info}


def _inapplicable(
    G: np.ndarray,
    n: int,
    names: list[str],
    estimator: str,
    unscaled: bool = False,
    sources: dict[str, str] | None = None,
) -> tuple[list[str], str | None]:
    """``(aliased, note)``: why least squares' inference does not apply to this fit (``note``
    is ``None`` when it does): another estimator, an aliased column of ``G`` (``(d + 1, d + 1)``,
    :func:`aliased_columns`) or ``n <= d + 1`` rows. ``unscaled``: the columns in their own
    units (``data.standardize=false``), where a column all but constant beside the intercept
    (a date in years) is aliased too, as float32 sees it, and centring tells them apart."""
    p = len(names) + 1
    if estimator != "least squares":  # the formulas below are least squares' own
        return [], f"least squares' only (loss=mse loss.l2=0); this run fitted {estimator}"
    aliased = aliased_columns(G, names)
    if aliased:
        return aliased, (
            f"rank-deficient design: {', '.join(aliased)} "
            f"{'is a linear combination' if len(aliased) == 1 else 'are linear combinations'} "
            "of the other columns, or within float32's precision of one (1 - R^2 against them "
            "under 1e-05), so the coefficients are not determined; drop "
            f"{'it' if len(aliased) == 1 else 'them'} with {_drop_override(aliased, sources)}"
            + (
                ", or, if not exactly (a date in years is all but constant beside the intercept "
                "in float32), set data.standardize=true, whose centred columns tell them apart"
                if unscaled
                else ""
            )
        )
    if n <= p:
        return [], f"{n} training rows for {p} coefficients leave no residual degrees of freedom"
    return [], None


def _coefficient_covariances(
    G: np.ndarray, H: np.ndarray, n: int, scaling: Scaling
) -> dict[str, np.ndarray]:
    """The classical and HC1 covariances, ``(p, p)`` each with ``p = d + 1`` (``intercept``
    last), of the least-squares coefficients in the user's units.

    ``G`` and ``H`` (``(p, p)``) come from :func:`residual_moments` on the model's (scaled)
    training rows; ``n > p``. With ``(A^T A)^-1 = G^-1`` (Greene, *Econometric Analysis*,
    eqs. 4-18 and 9-4; White 1980; MacKinnon and White 1985 for HC1):

    - classical: ``s^2 G^-1`` with ``s^2 = RSS / (n - p)``;
    - HC1: ``n / (n - p) G^-1 H G^-1``.

    Both are mapped to the user's units exactly: the scaled design is ``[X 1] M`` and the
    target ``y_mean + y_scale y'``, so ``beta = y_scale M beta' (+ y_mean on the intercept)``
    and ``Cov(beta) = y_scale^2 M Cov(beta') M^T``.
    """
    p = G.shape[0]
    d = p - 1
    G_inv = np.linalg.inv(G)
    rss = H[-1, -1]
    cov = {
        "classical": rss / (n - p) * G_inv,
        "hc1": n / (n - p) * G_inv @ H @ G_inv,
    }
    x_mean, x_scale = np.asarray(scaling.x_mean), np.asarray(scaling.x_scale)
    M = np.eye(p)
    M[:d, :d] = np.diag(1.0 / x_scale)
    M[d, :d] = -x_mean / x_scale
    M *= scaling.y_scale
    return {kind: M @ c @ M.T for kind, c in cov.items()}


def _t_table(beta: np.ndarray, cov: dict[str, np.ndarray], df: int, labels: list[str]) -> dict:
    """Standard errors, t statistics, two-sided p-values and 95 % intervals of ``beta``
    (``(p,)``, named ``labels``) for each covariance in ``cov`` (``kind -> (p, p)``), from the
    t distribution with ``df`` degrees of freedom; ``table -> name -> kind -> value``."""
    # scipy.stats.t's own functions (its sf and ppf call exactly these): scipy.special imports
    # in about a tenth of scipy.stats' time, which is most of a walkthrough run's inference
    from scipy.special import stdtr, stdtrit

    t_crit = float(stdtrit(df, 0.975))  # the t distribution's 97.5 % quantile
    out: dict = {key: {k: {} for k in labels} for key in _TABLES}
    for kind, c in cov.items():
        se = np.sqrt(np.clip(np.diag(c), 0.0, None))
        # an exact fit has standard errors of 0: t is then +-inf (or nan for beta = 0), and
        # its p-value 0 (nan), which say so; numpy's warning would only leak to the terminal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = beta / se
        pv = 2.0 * stdtr(df, -np.abs(t))  # two-sided: twice the upper tail beyond |t|
        for i, k in enumerate(labels):
            out["standard_errors"][k][kind] = float(se[i])
            out["t_statistics"][k][kind] = float(t[i])
            out["p_values"][k][kind] = float(pv[i])
            out["confidence_intervals_95"][k][kind] = [
                float(beta[i] - t_crit * se[i]),
                float(beta[i] + t_crit * se[i]),
            ]
    return out
