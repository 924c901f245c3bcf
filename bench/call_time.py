"""Nanoseconds per step of one compiled call of ``training.step.shuffled_call``, the device half
of a per-sample or mini-batch block, without the host (shuffle, queue, read-back).

    python bench/call_time.py                 # 10^6 x 16 float32, 2^16 rows a call
    python bench/call_time.py --root ../main  # the same for another checkout (an A/B)

Each case is one call of ``2^16 / batch`` steps on random rows (the gather included), its
parameters recorded every ``k`` steps as ``train.py`` records them (``logger.every_n_steps``):
the best of ``--repeats`` calls after a warm-up (compilation), in ns per row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--rows", type=int, default=1 << 16, help="rows per call")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    sys.path.insert(0, args.root)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from training.step import shuffled_call

    rng = np.random.default_rng(0)
    n, d = args.n, args.features
    X = jnp.asarray(rng.normal(size=(n, d)).astype(np.float32))
    y = jnp.asarray(rng.normal(size=n).astype(np.float32))
    params, tx = {"W": jnp.zeros(d), "b": jnp.zeros(())}, optax.sgd(1e-3)

    def linear(p, x):
        return x @ p["W"] + p["b"]

    res = {"root": args.root}
    for batch, every in [(1, 1), (1, 64), (32, 1), (32, 64)]:
        steps = args.rows // batch
        idx = jnp.asarray(rng.integers(0, n, size=(1, steps, batch)).astype(np.int32))
        counts = jnp.full((1, steps), batch, jnp.int32)
        call = shuffled_call(linear, tx, steps=steps, record_every=every, rows=batch == 1)
        inputs = (params, tx.init(params), X, y, None, idx, counts, 1.0)
        jax.block_until_ready(call(*inputs))
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            jax.block_until_ready(call(*inputs))
            times.append(time.perf_counter() - t)
        res[f"batch{batch}_every{every}_ns_per_row"] = round(min(times) / args.rows * 1e9, 1)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
