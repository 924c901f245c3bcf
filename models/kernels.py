"""``x @ W`` for the linear model, in the form XLA:CPU runs fastest for each shape of ``x``.

Each form computes the same products ``x_i . W``; they differ in the order of some float32
additions, and in what JAX's transpose (the gradient) of them compiles to. Measured on the
2-core CPU this project was tuned on (``bench/loaders.py``, 10^6 x 16 float32 rows):

- up to ``SMALL_BATCH`` rows (a per-sample or mini-batch step): ``sum_j x_ij W_j`` as a fused
  multiply-and-sum (:func:`feature_sum`). XLA:CPU runs a tiny ``dot`` as a library call that
  costs more than the arithmetic; the fused form makes such a step about twice as fast, and its
  interleaved partial sums shorten the step's chain of dependent additions (a per-sample step on
  16 features: 31 ns against 40 ns; 23 -> 26 million samples/s);
- from ``LARGE_BATCH`` rows (a full batch): ``x @ W`` in up to ``ROW_BLOCKS`` blocks of rows
  (:func:`row_blocked_matvec`), whose gradient XLA:CPU runs twice as fast as ``x^T r`` over all
  rows (a full-batch step 2.8 ms against 5.7 ms; 1.45x -> 0.7x numpy's ``X.T @ (X @ w - y)``);
- in between: the plain ``x @ W``.

The tests hold each form to float64 references within the rounding of its order of additions,
and per-sample steps to mini-batches of one, bit for bit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

SMALL_BATCH = 64  # rows up to which x @ W is computed as a multiply-and-sum
LARGE_BATCH = 1 << 14  # rows from which x @ W is computed in row blocks
ROW_BLOCKS = 64  # at most this many row blocks


def matvec(x: jax.Array, W: jax.Array) -> jax.Array:
    """``x @ W``: ``(n, d) @ (d,) -> (n,)``, or one row ``(d,) @ (d,) -> ()``, by the fastest of
    :func:`feature_sum`, :func:`row_blocked_matvec` and ``x @ W`` for the shape of ``x``."""
    rows = x.shape[0] if x.ndim == 2 else 1  # one row: a per-sample step, as a batch of one
    if rows <= SMALL_BATCH:
        return feature_sum(x * W)
    if x.ndim == 2 and x.shape[0] >= LARGE_BATCH:
        return row_blocked_matvec(x, W)
    return x @ W


def feature_sum(v: jax.Array) -> jax.Array:
    """``sum_j v[..., j]`` over ``d`` features as ``L`` interleaved partial sums
    ``s_l = sum_i v[..., L*i + l]``, then ``sum_l s_l``, with ``L`` the power of two nearest
    ``sqrt(d)`` (``d < 8``: one sum).

    One running sum is a chain of ``d`` dependent additions, and in a per-sample step that chain
    is the step's critical path; ``L`` chains side by side shorten it to about ``2 sqrt(d)``
    (a step at 16 features: 31 ns against 40 ns) and round no worse. The barrier stops XLA from
    merging the two sums back into one chain; it changes no value and passes gradients
    through."""
    d = v.shape[-1]
    if d < 8:
        return jnp.sum(v, axis=-1)
    lanes = 1 << round(math.log2(d) / 2)
    if d % lanes:  # adding exact zeros changes no sum
        v = jnp.pad(v, [(0, 0)] * (v.ndim - 1) + [(0, -d % lanes)])
    partial = jnp.sum(v.reshape(*v.shape[:-1], -1, lanes), axis=-2)
    return jnp.sum(jax.lax.optimization_barrier(partial), axis=-1)


def row_blocked_matvec(x: jax.Array, W: jax.Array) -> jax.Array:
    """``x @ W`` for a tall ``x`` of ``n`` rows as ``k = gcd(n, ROW_BLOCKS)`` blocks of rows,
    each multiplied by its own copy of ``W``: ``y[k, i] = sum_j x[k, i, j] W[j]``.

    The same per-row dot products (the last bit may round otherwise); what changes is the
    gradient. JAX transposes this into one ``x_k^T r_k`` per block and a sum of the ``k``
    results over the copies of ``W``, which XLA:CPU runs about twice as fast as the single
    ``x^T r`` over all rows (a full-batch step on 10^6 x 16 rows: 2.8 ms against 5.7 ms), and
    which rounds no worse. ``n`` odd: ``k = 1``, the plain product."""
    n, d = x.shape
    k = math.gcd(n, ROW_BLOCKS)
    if k == 1:
        return x @ W
    blocks = x.reshape(k, n // k, d)
    return jnp.einsum("knd,kd->kn", blocks, jnp.broadcast_to(W, (k, d))).reshape(n)
