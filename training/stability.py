"""The largest stable learning rate of full-batch gradient descent on mean squared error."""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.jit
def _top_eigenvalue(X: jax.Array, iters: int = 100) -> jax.Array:
    # H v = 2/n [X 1]^T [X 1] v, the loss's Hessian for a linear model with a bias, applied
    # without forming it; power iteration from a fixed vector converges to its top eigenvalue
    n = X.shape[0]
    v0 = jnp.ones(X.shape[1] + 1, jnp.float32) / jnp.sqrt(X.shape[1] + 1.0)

    def hv(v):
        r = X @ v[:-1] + v[-1]
        return 2.0 / n * jnp.concatenate([r @ X, jnp.sum(r)[None]])

    def body(_, v):
        w = hv(v)
        return w / jnp.linalg.norm(w)

    v = jax.lax.fori_loop(0, iters, body, v0)
    return v @ hv(v)


def largest_stable_lr(X: jax.Array) -> float:
    """``2 / lambda_max`` of the Hessian ``2 X^T X / n`` of the mean squared error of
    ``x @ W + b``: gradient descent with a constant rate above it diverges."""
    lam = float(_top_eigenvalue(jnp.asarray(X, jnp.float32)))
    return 2.0 / lam if lam > 0 else float("inf")
