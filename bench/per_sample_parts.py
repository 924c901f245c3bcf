"""Where a per-sample epoch's time goes: the parts of one compiled call, and what the host's
shuffle costs the run around it.

    .venv/bin/python bench/per_sample_parts.py             # 10^6 x 16 float32, a table
    .venv/bin/python bench/per_sample_parts.py --json      # one line of JSON

The data, model and optimizer of ``bench/loaders.py`` (``optax.sgd(1e-3)``, every step's loss
and parameters recorded, ``logger.every_n_steps=1``).

1. One call of ``--rows`` shuffled per-sample steps (``training.step.shuffled_call``, as
   ``train.py`` compiles it), and each of its parts compiled alone: the gather of the call's
   rows of ``X`` and ``y``, the zeroed buffers the records are written into, and the loop over
   rows already gathered, with and without its records. Alternating rounds, ns per step
   (minimum and median: on a shared host the minimum is the better estimate of a quiet one).
2. Epochs of a run, as ``bench/loaders.py`` times them (calls queued, read back as ``train.py``
   reads them): with the host shuffling each epoch (numpy's permutation, ``data/loaders.py``)
   and with every epoch's order computed beforehand, alternating; and the shuffle's CPU time
   alone against its CPU time while the device trains (the two share the CPU's caches).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import data.loaders  # noqa: E402
from data.loaders import make_loader  # noqa: E402
from data.sources import synthetic  # noqa: E402
from models.linear import LinearRegression  # noqa: E402
from training.devices import keep_freed_host_memory  # noqa: E402
from training.step import TrainState, scan_writing_after, shuffled_call, train_step  # noqa: E402


def rounds(cases: dict, n: int) -> dict:
    """``{name: [seconds, ...]}`` of ``n`` alternating rounds of every case (each compiled and
    run once before)."""
    for fn in cases.values():
        jax.block_until_ready(fn())
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(n):
        for k, fn in cases.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[k].append(time.perf_counter() - t)
    return times


def call_parts(X, y, apply_fn, params, tx, order: np.ndarray, n_rounds: int) -> dict:
    """ns per step of one call and of its parts, each ``{"min": ..., "median": ...}``."""
    steps = order.size
    opt_state = tx.init(params)
    step = functools.partial(train_step, apply_fn=apply_fn, tx=tx)
    call = shuffled_call(apply_fn, tx, steps=steps, record_every=1, rows=True)
    idx = jnp.asarray(order.reshape(1, steps, 1))
    counts = jnp.ones((1, steps), jnp.int32)
    rows = jnp.asarray(order)
    xs = jax.block_until_ready((X[rows], y[rows]))

    gather = jax.jit(lambda X, y, i: (X[i], y[i]))
    zeroed = jax.jit(
        lambda p: jax.tree.map(lambda a: jnp.zeros((steps + 1, *a.shape), a.dtype).at[0].set(a), p)
    )

    @jax.jit
    def loop(params, opt_state, xs):
        state, losses, recorded = scan_writing_after(
            step, TrainState(params, opt_state), xs, steps, 1
        )
        return state.params, losses, recorded

    @jax.jit
    def loop_unrecorded(params, opt_state, xs):
        state, losses = jax.lax.scan(step, TrainState(params, opt_state), xs)
        return state.params, losses

    cases = {
        "call": lambda: call(params, opt_state, X, y, None, idx, counts, np.float32(np.nan)),
        "gather of the rows": lambda: gather(X, y, rows),
        "zeroed record buffers": lambda: zeroed(params),
        "loop, records written": lambda: loop(params, opt_state, xs),
        "loop, no records": lambda: loop_unrecorded(params, opt_state, xs),
    }
    # the loop over gathered rows is the call's loop: the same losses and records, bit for bit
    whole, part = jax.device_get(cases["call"]()), jax.device_get(cases["loop, records written"]())
    assert np.array_equal(whole.losses, part[1])
    assert all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(whole.recorded), jax.tree.leaves(part[2]), strict=True)
    )
    times = rounds(cases, n_rounds)
    return {
        k: {"min": min(v) / steps * 1e9, "median": statistics.median(v) / steps * 1e9}
        for k, v in times.items()
    }


def shuffle_costs(X, y, epochs: int, n_rounds: int) -> dict:
    """ms per epoch of per-sample runs with the host's shuffle and with the orders computed
    beforehand (alternating), and the shuffle's CPU ms alone and during training."""
    from bench.loaders import project_runs

    timed = project_runs(X, y, "per_sample", 1, 1e-3, 1, epochs)
    n = X.shape[0]
    shuffle = data.loaders._order  # lru_cache'd; __wrapped__ is the shuffle itself
    cpu_in_run: list[float] = []

    def measured(*args):
        c = time.thread_time()
        order = shuffle.__wrapped__(*args)
        cpu_in_run.append(time.thread_time() - c)
        return order

    with_shuffle, precomputed = [], []
    try:
        for r in range(n_rounds):  # project_runs trained epochs 0..epochs-1 before it returned
            data.loaders._order = functools.lru_cache(maxsize=2)(measured)
            with_shuffle.append(timed())  # epochs (2r + 1) epochs .. (2r + 2) epochs - 1
            first = (2 * r + 2) * epochs
            ready = {e: shuffle.__wrapped__(n, True, 0, e) for e in range(first, first + epochs)}
            data.loaders._order = lambda n_, shuffled, seed, e, ready=ready: ready[e]
            precomputed.append(timed())
    finally:
        data.loaders._order = shuffle
    alone = []
    for e in range(5):
        c = time.thread_time()
        shuffle.__wrapped__(n, True, 0, 10**6 + e)
        alone.append(time.thread_time() - c)
    return {
        "epoch_ms_with_host_shuffle": {
            "min": min(with_shuffle) * 1e3,
            "median": statistics.median(with_shuffle) * 1e3,
        },
        "epoch_ms_orders_precomputed": {
            "min": min(precomputed) * 1e3,
            "median": statistics.median(precomputed) * 1e3,
        },
        "shuffle_cpu_ms_alone": statistics.median(alone) * 1e3,
        "shuffle_cpu_ms_while_training": statistics.median(cpu_in_run) * 1e3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--rows", type=int, default=1 << 16, help="steps of the one call timed")
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--epochs", type=int, default=5, help="epochs of each timed run")
    p.add_argument("--json", action="store_true", help="print one line of JSON")
    args = p.parse_args()
    keep_freed_host_memory()  # as train_and_evaluate does
    table = synthetic(args.n, args.features, 0.1, seed=0)
    X, y = jax.device_put((table.X, table.y))
    graphdef, state = nnx.split(LinearRegression(args.features, rngs=nnx.Rngs(0)))
    params = nnx.to_pure_dict(state)

    def apply_fn(p, x):
        return nnx.merge(graphdef, p)(x)

    order = make_loader("per_sample", 1, True, False, args.n, seed=0).order(0)[: args.rows]
    parts = call_parts(X, y, apply_fn, params, optax.sgd(1e-3), order, args.rounds)
    host = shuffle_costs(X, y, args.epochs, max(3, args.rounds // 3))
    if args.json:
        print(
            json.dumps(
                {
                    "n": args.n,
                    "features": args.features,
                    "rows": args.rows,
                    "call_ns_per_step": parts,
                    **host,
                }
            )
        )
        return
    print(
        f"one call of {args.rows} per-sample steps, {args.n:,} x {args.features} float32, "
        f"ns a step (min / median of {args.rounds} alternating rounds)"
    )
    for k, v in parts.items():
        print(f"  {k:<24}{v['min']:>7.1f} / {v['median']:.1f}")
    w, pre = host["epoch_ms_with_host_shuffle"], host["epoch_ms_orders_precomputed"]
    print(
        f"a per-sample epoch ({args.epochs}-epoch runs, min / median): "
        f"{w['min']:.1f} / {w['median']:.1f} ms with the host's shuffle, "
        f"{pre['min']:.1f} / {pre['median']:.1f} ms with the orders computed beforehand"
    )
    print(
        f"the shuffle's CPU time: {host['shuffle_cpu_ms_alone']:.1f} ms alone, "
        f"{host['shuffle_cpu_ms_while_training']:.1f} ms while the device trains"
    )


if __name__ == "__main__":
    main()
