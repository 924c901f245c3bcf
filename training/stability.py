"""The largest stable learning rate of full-batch gradient descent on mean squared error."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from training.devices import to_host


@functools.partial(jax.jit, static_argnames=("n", "iters"))
def _top_eigenvalue(X: jax.Array, w: jax.Array | None, n: int, iters: int = 100) -> jax.Array:
    # H v = 2/n [X 1]^T diag(w) [X 1] v, the loss's Hessian for a linear model with a bias,
    # applied without forming it; power iteration from a fixed vector finds its top eigenvalue
    v0 = jnp.ones(X.shape[1] + 1, jnp.float32) / jnp.sqrt(X.shape[1] + 1.0)

    def hv(v):
        r = X @ v[:-1] + v[-1]
        if w is not None:  # padding rows of a sharded X count for nothing
            r = r * w
        return 2.0 / n * jnp.concatenate([r @ X, jnp.sum(r)[None]])

    def body(_, v):
        u = hv(v)
        return u / jnp.linalg.norm(u)

    v = jax.lax.fori_loop(0, iters, body, v0)
    return v @ hv(v)


def largest_stable_lr(X: jax.Array, w: jax.Array | None = None, n: int | None = None) -> float:
    """``2 / lambda_max`` of the Hessian ``2 X^T X / n`` of the mean squared error of
    ``x @ W + b`` over the ``n`` real rows of ``X``: gradient descent with a constant rate
    above it diverges."""
    lam = float(to_host(_top_eigenvalue(X, w, n or X.shape[0])))
    return 2.0 / lam if lam > 0 else float("inf")
