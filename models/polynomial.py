"""An example of a model of one's own: ``y_hat = x @ W + (x * x) @ V + b``.

Any Flax NNX module whose ``__call__`` maps ``(n, features)`` to ``(n,)`` trains unchanged:
the engine splits it once into a dict of arrays and logs every parameter by name.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class QuadraticRegression(nnx.Module):
    """A linear model plus one weight per squared feature (no cross terms)."""

    def __init__(self, in_features: int, *, rngs: nnx.Rngs, init_scale: float = 0.01) -> None:
        self.W = nnx.Param(init_scale * jax.random.normal(rngs.params(), (in_features,)))
        self.V = nnx.Param(jnp.zeros((in_features,), jnp.float32))
        self.b = nnx.Param(jnp.zeros((), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.W[...] + (x * x) @ self.V[...] + self.b[...]
