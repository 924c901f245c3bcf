"""The largest stable learning rate of full-batch gradient descent on mean squared error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from training.devices import to_host


@jax.jit
def _gram(X: jax.Array, w: jax.Array | None) -> jax.Array:
    # [X 1]^T diag(w) [X 1], one pass over the rows (sharded rows: XLA sums across devices)
    wt = jnp.ones(X.shape[0], X.dtype) if w is None else w
    Xw = X * wt[:, None]
    hp = jax.lax.Precision.HIGHEST
    xx = jnp.dot(Xw.T, X, precision=hp)
    x1 = jnp.sum(Xw, axis=0)
    top = jnp.concatenate([xx, x1[:, None]], axis=1)
    bottom = jnp.concatenate([x1, jnp.sum(wt)[None]])[None, :]
    return jnp.concatenate([top, bottom], axis=0)


def largest_stable_lr(X: jax.Array, w: jax.Array | None = None, n: int | None = None) -> float:
    """``2 / lambda_max(H)`` for the Hessian ``H = 2 [X 1]^T [X 1] / n`` of the mean squared
    error of ``x @ W + b`` over the ``n`` real rows of ``X``: gradient descent with a constant
    rate above it diverges. ``H`` is (features + 1)^2, formed in one pass and solved exactly."""
    n = n or X.shape[0]
    H = 2.0 * np.asarray(to_host(_gram(X, w)), np.float64) / n
    lam = float(np.linalg.eigvalsh(H)[-1])
    return 2.0 / lam if lam > 0 else float("inf")
