"""The largest stable learning rate of full-batch gradient descent on mean squared error."""

from __future__ import annotations

import jax
import numpy as np

from training.evaluate import normal_equations


def largest_stable_lr(X: jax.Array, w: jax.Array | None = None, n: int | None = None) -> float:
    """``2 / lambda_max(H)`` for the Hessian ``H = 2 [X 1]^T [X 1] / n`` of the mean squared
    error of ``x @ W + b`` over the ``n`` real rows of ``X``: gradient descent with a constant
    rate above it diverges. ``H`` is (features + 1)^2, formed in one pass and solved exactly."""
    n = n or X.shape[0]
    G, _ = normal_equations(X, None, w)
    lam = float(np.linalg.eigvalsh(2.0 * G / n)[-1])
    return 2.0 / lam if lam > 0 else float("inf")
