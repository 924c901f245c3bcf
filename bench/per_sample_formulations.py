"""Per-sample SGD: formulations of one compiled call, on the bench's data, for bits and speed.

    .venv/bin/python bench/per_sample_formulations.py [--rounds 7] [--steps 65536] [--only a,b]

Builds the per-sample call of ``bench/loaders.py`` (1,000,000 x 16 float32, ``optax.sgd(1e-3)``,
``logger.every_n_steps=1``: the parameters before every step, every step's loss) for one block
of ``--steps`` shuffled rows in several ways: ``record_before`` (the reference: the loop as it
was, recording the parameters before each step as the scan's output), ``runner``
(``training.step.Runner`` as it is in this checkout) and the candidates below. Checks that each
returns the same bits as the reference (``numpy.array_equal`` on the final parameters, the
losses and the recorded parameters; a buffer's extra last row is dropped), and times the
compiled calls alone (no host shuffle, no read-back) in alternating rounds: median and minimum
ns per step, and the median CPU time per step (every thread of the process: the time a busy
host's other processes take is not counted). On a shared 2-core host the minimum and the CPU
time are the better estimates of a quiet machine.

What the XLA:CPU dumps show (``XLA_FLAGS=--xla_dump_to=DIR``): the scan's while loop is compiled
into one LLVM function (``xla_cpu_small_call``: XLA's small-while-loop pass, for loops that
access under ``xla_cpu_small_while_loop_byte_threshold``, 1 kB by default); its HLO ops are not
dispatched one by one. A loop body of several steps (``scan_unroll``, ``group``) crosses that
threshold and runs op by op, 5-20 times slower, and rounds otherwise (multiply-adds no longer
contracted across ops).
"""

from __future__ import annotations

import argparse
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

from data.loaders import make_loader  # noqa: E402
from data.sources import synthetic  # noqa: E402
from models.kernels import feature_sum  # noqa: E402
from models.linear import LinearRegression  # noqa: E402
from training.blocks import Block  # noqa: E402
from training.step import Runner  # noqa: E402

LR = 1e-3


def model(d: int):
    graphdef, state = nnx.split(LinearRegression(d, rngs=nnx.Rngs(0)))
    params = nnx.to_pure_dict(state)

    def apply_fn(p, x):
        return nnx.merge(graphdef, p)(x)

    return apply_fn, params


def row_loss(apply_fn):
    def loss_fn(params, x, y):  # today's loss_fn with spec.rows
        r = apply_fn(params, x) - y
        return r * r

    return loss_fn


def optax_step(loss_fn, tx):
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def grouped(apply_fn, tx, k: int, gather_in_step: bool = False, scan_unroll: int = 1):
    """``k`` rows per scan iteration, their steps written out one after another (a Python loop
    at trace time): the loop's per-iteration cost (the carried parameters copied, the counter,
    the condition) is paid once per ``k`` steps. Records: a ``(k, ...)`` slab per iteration."""
    step = optax_step(row_loss(apply_fn), tx)

    def call(params, opt_state, X, y, idx):
        i = idx.reshape(-1)
        n = i.shape[0]
        assert n % k == 0

        def body(c, xs):
            p, s = c
            if gather_in_step:
                rows = xs
                xb, yb = X[rows], y[rows]
            else:
                xb, yb = xs
            rec, losses = [], []
            for j in range(k):
                rec.append(p)
                p, s, loss = step(p, s, xb[j], yb[j])
                losses.append(loss)
            return (p, s), (jnp.stack(losses), jax.tree.map(lambda *a: jnp.stack(a), *rec))

        if gather_in_step:
            xs = i.reshape(n // k, k)
        else:
            xs = (X[i].reshape(n // k, k, -1), y[i].reshape(n // k, k))
        (p, s), (losses, rec) = jax.lax.scan(body, (params, opt_state), xs, unroll=scan_unroll)
        rec = jax.tree.map(lambda r: r.reshape(n, *r.shape[2:]), rec)
        return p, losses.reshape(n), rec

    return jax.jit(call)


def scan_unrolled(apply_fn, tx, unroll: int):
    """Today's one-step scan body with ``lax.scan(..., unroll=unroll)``."""
    step = optax_step(row_loss(apply_fn), tx)

    def call(params, opt_state, X, y, idx):
        i = idx.reshape(-1)

        def body(c, b):
            p, s = c
            p2, s, loss = step(p, s, *b)
            return (p2, s), (loss, p)

        (p, s), (losses, rec) = jax.lax.scan(body, (params, opt_state), (X[i], y[i]), unroll=unroll)
        return p, losses, rec

    return jax.jit(call)


def flat_grouped(k: int, d: int, lr: float, gather_in_step: bool = False):
    """Parameters as one vector ``[W; b]`` (``d + 1``) in the carry and the records, written
    without optax: ``p + g * -lr``, optax's ``sgd`` arithmetic (``scale(-lr)``, then
    ``apply_updates``' ``p + u``), the model's ``feature_sum(x * W) + b``."""
    neg_lr = jnp.float32(-lr)

    def loss_fn(v, x, y):
        r = feature_sum(x * v[:d]) + v[d] - y
        return r * r

    def call(params, X, y, idx):
        i = idx.reshape(-1)
        n = i.shape[0]
        v0 = jnp.concatenate([params["W"], params["b"][None]])

        def body(v, xs):
            if gather_in_step:
                xb, yb = X[xs], y[xs]
            else:
                xb, yb = xs
            rec, losses = [], []
            for j in range(k):
                rec.append(v)
                loss, g = jax.value_and_grad(loss_fn)(v, xb[j], yb[j])
                v = v + g * neg_lr
                losses.append(loss)
            return v, (jnp.stack(losses), jnp.stack(rec))

        xs = (
            i.reshape(n // k, k)
            if gather_in_step
            else (X[i].reshape(n // k, k, d), y[i].reshape(n // k, k))
        )
        v, (losses, rec) = jax.lax.scan(body, v0, xs)
        rec = rec.reshape(n, d + 1)
        return {"W": v[:d], "b": v[d]}, losses.reshape(n), {"W": rec[:, :d], "b": rec[:, d]}

    return jax.jit(call)


def record_before(apply_fn, tx, chunks: int = 1, where: str = "before"):
    """One step per scan iteration. ``where``: ``before`` records the parameters before each
    step as the scan's output (the code before this change); ``after_concat`` records those
    after it and shifts them by a concatenation; ``after_buffer`` writes those after step t into
    row t + 1 of a carried ``(n + 1)``-row buffer (row 0: the first). ``chunks`` > 1 gathers and
    scans the rows in that many pieces, so that the gather of one may overlap the steps of the
    one before."""
    step = optax_step(row_loss(apply_fn), tx)

    def call(params, opt_state, X, y, idx):
        i = idx.reshape(-1)
        n = i.shape[0]
        if where == "after_buffer":
            buf = jax.tree.map(lambda p: jnp.zeros((n + 1, *p.shape), p.dtype).at[0].set(p), params)

            def body(c, b):
                p, s, buf, t = c
                p, s, loss = step(p, s, *b)
                buf = jax.tree.map(
                    lambda r, v: jax.lax.dynamic_update_index_in_dim(r, v, t + 1, 0), buf, p
                )
                return (p, s, buf, t + 1), loss

            (p, s, buf, _), losses = jax.lax.scan(
                body, (params, opt_state, buf, jnp.int32(0)), (X[i], y[i])
            )
            return p, losses, buf

        def body(c, b):
            p, s = c
            p2, s, loss = step(p, s, *b)
            return (p2, s), (loss, p if where == "before" else p2)

        c, L, R = (params, opt_state), [], []
        for j in range(chunks):
            ij = i[j * n // chunks : (j + 1) * n // chunks]
            c, (losses, rec) = jax.lax.scan(body, c, (X[ij], y[ij]))
            L.append(losses)
            R.append(rec)
        if where == "before":
            rec = jax.tree.map(lambda *r: jnp.concatenate(r), *R) if chunks > 1 else R[0]
        else:
            rec = jax.tree.map(
                lambda a0, *r: jnp.concatenate([a0[None], *r[:-1], r[-1][:-1]]), params, *R
            )
        return c[0], jnp.concatenate(L), rec

    return jax.jit(call)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--steps", type=int, default=65536)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--only", default="", help="comma-separated candidate names")
    args = p.parse_args()
    n, d = args.n, args.features
    table = synthetic(n, d, 0.1, seed=0)
    X, y = jax.device_put((table.X, table.y))
    apply_fn, params = model(d)
    tx = optax.sgd(LR)
    opt_state = tx.init(params)
    loader = make_loader("per_sample", 1, True, False, n, seed=0)
    runner = Runner(apply_fn, tx, loader, X, y, record_every=1)
    block = Block(0, 1, 0, args.steps, 1)
    idx, _ = loader.batches(0, 0, args.steps)
    idx_dev = jax.device_put(idx)

    def runner_call():  # training.step.Runner as it is in this checkout
        out = runner(block, params, opt_state, np.float32(np.nan))
        return out.params, out.losses, out.recorded

    def bind(f, *a):
        return lambda: f(*a)

    full = (params, opt_state, X, y, idx_dev)
    cands = {
        "record_before": bind(record_before(apply_fn, tx), *full),
        "runner": runner_call,
        "after_concat": bind(record_before(apply_fn, tx, where="after_concat"), *full),
        "after_buffer": bind(record_before(apply_fn, tx, where="after_buffer"), *full),
        "after_chunks2": bind(record_before(apply_fn, tx, 2, "after_concat"), *full),
        "after_chunks4": bind(record_before(apply_fn, tx, 4, "after_concat"), *full),
    }
    for k in (2, 4, 8):
        cands[f"scan_unroll{k}"] = bind(scan_unrolled(apply_fn, tx, k), *full)
    for k in (2, 4, 8, 16):
        cands[f"group{k}"] = bind(grouped(apply_fn, tx, k), *full)
    cands["group16_gather"] = bind(grouped(apply_fn, tx, 16, gather_in_step=True), *full)
    for k in (1, 8):
        cands[f"flat{k}"] = bind(flat_grouped(k, d, LR), params, X, y, idx_dev)
    if args.only:
        keep = set(args.only.split(",")) | {"record_before"}
        cands = {k: v for k, v in cands.items() if k in keep}

    def today():
        return cands["record_before"]()

    ref = jax.device_get(today())
    identical = {}
    for name, fn in cands.items():
        t = time.perf_counter()
        out = jax.device_get(jax.block_until_ready(fn()))
        # the (n + 1)-row buffers hold one row more: the parameters after the last step
        out = jax.tree.map(
            lambda a: a[: args.steps] if a.ndim and len(a) == args.steps + 1 else a, out
        )
        compile_s = time.perf_counter() - t
        same = all(
            np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True)
        )
        identical[name] = (same, compile_s)
    times: dict[str, list[float]] = {name: [] for name in cands}
    cpu: dict[str, list[float]] = {name: [] for name in cands}
    for _ in range(args.rounds):
        for name, fn in cands.items():
            c, t = time.process_time(), time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    base = statistics.median(times["record_before"])
    print(
        f"{args.steps} per-sample steps, {d} features, median of {args.rounds} alternating rounds"
    )
    print(
        f"{'candidate':<16}{'median ns':>10}{'min ns':>8}{'CPU ns':>8}{'speed-up':>9}"
        f"{'identical':>10}{'compile s':>10}"
    )
    for name in cands:
        m = statistics.median(times[name])
        same, c = identical[name]
        lo = min(times[name]) / args.steps * 1e9
        print(
            f"{name:<16}{m / args.steps * 1e9:>10.1f}{lo:>8.1f}"
            f"{statistics.median(cpu[name]) / args.steps * 1e9:>8.1f}{base / m:>8.2f}x"
            f"{str(same):>10}{c:>10.2f}"
        )


if __name__ == "__main__":
    main()
