"""The curvature of the mean squared error of ``x @ W + b``: what the step size is chosen from
(``optimizer.lr=auto``) and what every stability warning and divergence error names.

The ridge penalty ``(l2 / 2) ||W||^2`` adds ``l2`` to the Hessian over ``W`` (never over ``b``).
The Huber loss of ``training/objectives.py`` has Hessian ``2 [X 1]^T diag(w s) [X 1] / n``
(``s_i`` 1 for the rows within ``delta``, else 0): at most the squared error's everywhere, so
the squared error's ``L`` bounds it and every bound and warning holds for it too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.multihost_utils import process_allgather

from training.evaluate import ZERO_EIGENVALUE, jacobi_scaled, normal_equations

# ZERO_EIGENVALUE: float32 sums give the Gram matrix's eigenvalues to about 1e-7 of the largest
# one, so an eigenvalue below that fraction of it is a direction the data does not determine.


@dataclass(frozen=True)
class Spectrum:
    """The extreme eigenvalues of the loss's Hessian over the trainable parameters.

    ``rank`` is how many directions the data determine: the eigenvalues of the Hessian on
    Jacobi's scaling (unit diagonal, ``training.evaluate.jacobi_scaled``) above
    ``ZERO_EIGENVALUE`` times the largest; ``L`` is the largest eigenvalue, ``mu`` the smallest
    of the ``rank`` largest, ``size`` how many trainable parameters there are.
    """

    L: float
    mu: float
    rank: int
    size: int


def trainable_indices(n_features: int, frozen: Sequence[str]) -> list[int]:
    """The rows of ``[X 1]^T [X 1]`` that belong to trainable parameters: ``0..d-1`` for ``W``,
    ``d`` for ``b``; a frozen parameter's rows and columns drop out of the Hessian."""
    keep = [] if "W" in frozen else list(range(n_features))
    return keep if "b" in frozen else [*keep, n_features]


def hessian_spectrum(
    X: jax.Array, w: jax.Array | None, n: int, trainable: Sequence[int], l2: float = 0.0
) -> Spectrum:
    """Eigenvalues of ``H = 2 [X 1]^T diag(w) [X 1] / n + l2 D`` restricted to ``trainable``,
    the exact Hessian of ``mean((X W + b - y)^2) + (l2 / 2) ||W||^2`` over the ``n`` real rows
    (``w`` is 0 for padding rows; ``D`` is 1 on ``W``'s entries, 0 on ``b``'s).

    The Gram matrix is summed on the device(s) in one pass (sharded rows are summed by XLA) and
    its (features + 1)^2 eigenvalues are found in float64 by ``numpy.linalg.eigvalsh``, and the
    rank on its Jacobi scaling (:class:`Spectrum`).
    """
    if not trainable:
        return Spectrum(0.0, 0.0, 0, 0)
    G, _ = normal_equations(X, None, w)
    idx = np.asarray(trainable)
    H = 2.0 * G[np.ix_(idx, idx)] / n
    H[np.diag_indices_from(H)] += np.where(idx < len(G) - 1, l2, 0.0)  # W's entries, not b's
    eig = np.linalg.eigvalsh(H)
    # the rank on Jacobi's scaling: unscaled, columns in different units (a lot size beside
    # 0/1 columns, data.standardize=false) put every direction but the largest column's under
    # the cutoff ("rank 1 of 12", mu = L, and a momentum near 0 where it should be near 1)
    scaled = np.linalg.eigvalsh(jacobi_scaled(H)[0])
    rank = int(np.sum(scaled > ZERO_EIGENVALUE * scaled[-1])) if scaled[-1] > 0 else 0
    mu = float(eig[len(idx) - rank]) if rank else 0.0
    return Spectrum(max(float(eig[-1]), 0.0), max(mu, 0.0), rank, len(idx))


def max_row_norm_sq(X: jax.Array, with_W: bool = True, with_b: bool = True) -> float:
    """``max_i ||a_i||^2`` over the rows ``a_i`` of ``[X 1]`` (the columns of trainable
    parameters only). A padding row of zeros never exceeds a real row."""
    if not with_W:
        return 1.0 if with_b else 0.0
    norm = jax.jit(lambda A: jnp.max(jnp.sum(A * A, axis=1)))(X)
    return float(process_allgather(norm, tiled=True)) + (1.0 if with_b else 0.0)


def condition_numbers(G: np.ndarray) -> tuple[float, float]:
    """The condition number ``lambda_max / lambda_min`` of ``A^T A`` (``G``, ``A = [X 1]`` in
    the units the model was trained in, ``G[-1, -1]`` the row count) and of the same after
    standardizing ``X``'s columns (centred, unit variance: ``data.standardize=true``), each over
    the directions the data determine (eigenvalues above ``ZERO_EIGENVALUE`` times the largest);
    infinity where fewer are determined than after standardizing.

    Gradient descent's steps to a given gap grow with it (Nesterov, *Introductory Lectures on
    Convex Optimization*, 2004, Theorem 2.1.15): the ratio of the two says whether rescaling the
    columns would help a run that fell short. Standardized, the intercept is orthogonal to the
    centred columns: its eigenvalue is 1 beside their correlation matrix's."""
    d, n = len(G) - 1, G[-1, -1]
    mean = G[:d, -1] / n
    cov = G[:d, :d] / n - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    varies = sd > 0
    corr = cov[np.ix_(varies, varies)] / np.outer(sd[varies], sd[varies])
    scaled = np.append(np.linalg.eigvalsh(corr), 1.0)
    raw = np.linalg.eigvalsh(G / n)

    def determined(eig: np.ndarray) -> np.ndarray:
        return eig[eig > ZERO_EIGENVALUE * eig.max()]

    kept_scaled, kept_raw = determined(scaled), determined(raw)
    kappa_scaled = float(kept_scaled.max() / kept_scaled.min())
    if len(kept_raw) < len(kept_scaled):
        return np.inf, kappa_scaled
    return float(kept_raw.max() / kept_raw.min()), kappa_scaled
