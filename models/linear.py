"""The linear model of the walkthrough, for any number of input features."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.kernels import matvec

INITIALISERS = ("constant", "zeros", "normal")


def _init(
    kind: str, shape: tuple[int, ...], value: float, scale: float, key: jax.Array | None
) -> jax.Array:
    # constants made by numpy and placed: the values jnp.full gives, without compiling a program
    # for each (a run's start-up compiles every eager JAX operation it does)
    if kind == "constant":
        return jax.device_put(np.full(shape, value, np.float32))
    if kind == "zeros":
        return jax.device_put(np.zeros(shape, np.float32))
    if kind == "normal":
        return scale * jax.random.normal(key, shape, jnp.float32)
    raise ValueError(f"unknown initialiser {kind!r}; allowed: {', '.join(INITIALISERS)}")


class LinearRegression(nnx.Module):
    """``y_hat = x @ W + b`` with ``W`` of shape ``(in_features,)`` and a scalar ``b``.

    Initialisers: ``constant`` (``W_value`` / ``b_value`` everywhere), ``zeros``, or ``normal``
    (``init_scale * N(0, 1)`` drawn from ``rngs``).
    """

    def __init__(
        self,
        in_features: int,
        *,
        rngs: nnx.Rngs,
        W_init: str = "zeros",
        W_value: float = 0.0,
        b_init: str = "zeros",
        b_value: float = 0.0,
        init_scale: float = 0.01,
    ) -> None:
        self.in_features = in_features
        # keys drawn only for a normal initialiser, always two (W's first): the same draws
        keys = (rngs.params(), rngs.params()) if "normal" in (W_init, b_init) else (None, None)
        self.W = nnx.Param(_init(W_init, (in_features,), W_value, init_scale, keys[0]))
        self.b = nnx.Param(_init(b_init, (), b_value, init_scale, keys[1]))

    def __call__(self, x: jax.Array) -> jax.Array:
        """``(n, in_features) -> (n,)``, or one row ``(in_features,) -> ()``."""
        return matvec(x, self.W[...]) + self.b[...]  # x @ W, as XLA:CPU runs it fastest
