"""Samples per second of this project's three loaders against scikit-learn and numpy.

    python bench/loaders.py                  # 1,000,000 x 16 float32, a table
    python bench/loaders.py --json           # one line of JSON
    python bench/loaders.py --scaling        # also epoch time at 10^5, 10^6, 10^7 rows
    python bench/loaders.py --memory         # also peak RSS of a real `train.py` run

Every number is one epoch of the same synthetic data in this process. Our loaders run through
``training.run.pipelined`` exactly as ``train.py`` runs them (the host shuffle, compiled calls
queued ahead, each call's per-step losses and recorded parameters read back by
``training.hooks.read_back``; ``--every`` =
``logger.every_n_steps``): the mean epoch of a run of ``--epochs`` epochs, best of
``--repeats`` runs after a warm-up run (compilation). scikit-learn's ``SGDRegressor`` is timed
the same way, a fit of ``--epochs`` epochs (``max_iter``) best of ``--repeats``, in rounds
alternating with our per-sample and mini-batch runs, so that a host whose speed drifts
within the minute (a shared 2-core VM) slows both sides of a ratio alike. numpy's gradient:
best of ``--repeats`` after a warm-up.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from data.loaders import _order, make_loader  # noqa: E402
from data.sources import synthetic  # noqa: E402
from models.linear import LinearRegression  # noqa: E402
from training.blocks import plan_blocks  # noqa: E402
from training.devices import keep_freed_host_memory  # noqa: E402
from training.hooks import read_back  # noqa: E402
from training.objectives import mse  # noqa: E402
from training.run import pipelined  # noqa: E402
from training.step import Runner  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def project_epoch(
    X, y, loader_name: str, batch_size: int, lr: float, every: int, epochs: int, repeats: int
):
    """Seconds per epoch of a loader, run as train.py runs it: calls queued ahead, each call's
    losses and recorded parameters read back on the host (shuffles included)."""
    timed = project_runs(X, y, loader_name, batch_size, lr, every, epochs)
    return min(timed() for _ in range(repeats))


def project_runs(X, y, loader_name: str, batch_size: int, lr: float, every: int, epochs: int):
    """A function that trains ``epochs`` further epochs of a loader as :func:`project_epoch`
    does and returns their mean seconds per epoch; compiled before it is returned."""
    n, d = X.shape
    graphdef, state = nnx.split(LinearRegression(d, rngs=nnx.Rngs(0)))
    params = nnx.to_pure_dict(state)

    def apply_fn(p, x):
        return nnx.merge(graphdef, p)(x)

    tx = optax.sgd(lr)
    loader = make_loader(loader_name, batch_size, True, False, n, seed=0)
    runner = Runner(apply_fn, tx, loader, X, y, record_every=every)
    opt_state = tx.init(params)

    def train(first_epoch: int, count: int):
        blocks = plan_blocks(loader, first_epoch, first_epoch + count, 1 << 20, 0, n_features=d)
        for block, t, out in pipelined(runner, blocks, params, opt_state):
            call = read_back(runner, block, t, out, loader.steps_per_epoch)  # as train.py reads
        assert np.isfinite(call.losses).all() and not call.diverged

    train(0, epochs)  # compile every block shape the timed runs use
    done = [epochs]

    def timed() -> float:
        t = time.perf_counter()
        train(done[0], epochs)
        done[0] += epochs
        return (time.perf_counter() - t) / epochs

    return timed


def sklearn_runs(Xh, yh, lr: float, epochs: int):
    """A function that fits scikit-learn's per-sample SGD (``SGDRegressor``, constant step
    ``lr``, shuffled, no penalty, no early stop) for ``epochs`` epochs and returns the mean
    seconds per epoch; run once before it is returned."""
    from sklearn.linear_model import SGDRegressor

    def timed() -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no convergence test: tol=None
            t = time.perf_counter()
            SGDRegressor(
                loss="squared_error",
                penalty=None,
                learning_rate="constant",
                eta0=lr,
                max_iter=epochs,
                tol=None,
                shuffle=True,
                random_state=0,
            ).fit(Xh, yh)
            return (time.perf_counter() - t) / epochs

    timed()
    return timed


def naive_loop_rate(X, y, lr: float, steps: int) -> float:
    """Samples/s of a Python loop calling one jitted per-sample step (timed on ``steps`` rows)."""
    tx = optax.sgd(lr)
    params = {"W": jnp.zeros(X.shape[1]), "b": jnp.zeros(())}
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x, yy):
        loss, g = jax.value_and_grad(lambda p: mse(x @ p["W"] + p["b"], yy))(params)
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    order = np.random.default_rng(0).permutation(X.shape[0])[:steps]
    step(params, opt_state, X[0:1], y[0:1])
    t = time.perf_counter()
    for i in order:
        params, opt_state, loss = step(params, opt_state, X[i : i + 1], y[i : i + 1])
        float(loss)  # a Python loop logs each step's loss: one host sync per step
    return steps / (time.perf_counter() - t)


def numpy_gradient(Xh, yh, repeats: int) -> float:
    w = np.zeros(Xh.shape[1], np.float32)
    return best_of(lambda: Xh.T @ (Xh @ w - yh), repeats)


def peak_rss_of_training(n: int, d: int, loader: str) -> dict:
    """Peak resident memory of a real ``train.py`` run (synthetic data, TensorBoard thinned):
    ``getrusage(RUSAGE_CHILDREN)`` after it exits, the largest child's peak."""
    args = [
        sys.executable,
        str(ROOT / "train.py"),
        "experiment=synthetic",
        f"data.n_samples={n}",
        f"data.n_features={d}",
        f"loader={loader}",
        "trainer.epochs=2",
        "logger.every_n_steps=100000",
        "logger.tensorboard=false",
    ]
    with tempfile.TemporaryDirectory() as tmp:  # a run directory of its own, each time
        args.append(f"hydra.run.dir={Path(tmp) / 'run'}")
        proc = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    dataset_mb = n * (d + 1) * 4 / 2**20
    return {
        "peak_rss_mb": kb / 1024,
        "dataset_mb": dataset_mb,
        "limit_mb": 2 * dataset_mb + 300,
        "loader": loader,
        "n": n,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--every", type=int, default=1, help="logger.every_n_steps")
    p.add_argument("--repeats", type=int, default=3, help="best of, for sklearn and numpy")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs of our shuffled loaders")
    p.add_argument(
        "--full-batch-epochs",
        type=int,
        default=100,
        help="timed full-batch epochs (steps), in calls of training.blocks.call_cap steps",
    )
    p.add_argument("--naive-steps", type=int, default=20_000)
    p.add_argument("--scaling", action="store_true", help="epoch time at 10^5, 10^6, 10^7 rows")
    p.add_argument("--memory", action="store_true", help="peak RSS of a train.py run")
    p.add_argument("--json", action="store_true", help="print one line of JSON")
    p.add_argument(
        "--malloc-default",
        action="store_true",
        help="our loaders without training.devices.keep_freed_host_memory (train.py sets it)",
    )
    args = p.parse_args()
    # the imports' objects set aside, as train.py sets aside its own once they are loaded
    # (second_process.collect_garbage_from_now_on): a full collection scans them in 0.14 s,
    # half again a timed run of 5 per-sample epochs (about 0.25 s) that it falls in
    gc.freeze()

    memory = None
    if args.memory:  # first, while this process is small: a child's peak counts its fork
        memory = peak_rss_of_training(10**7, args.features, "mini_batch")
    table = synthetic(args.n, args.features, 0.1, seed=0)
    Xh, yh = table.X, table.y
    X, y = jax.device_put((Xh, yh))
    n = args.n
    res: dict = {
        "n": n,
        "features": args.features,
        "platform": jax.devices()[0].platform,
        "cpu_count": os.cpu_count(),
        "every_n_steps": args.every,
    }
    # numpy first, with glibc's malloc as it comes; then ours, as train.py sets it
    # (training.devices.keep_freed_host_memory), scikit-learn in the same rounds as ours
    grad_s = numpy_gradient(Xh, yh, max(args.repeats, 5))
    res["numpy_gradient"] = {"samples_per_s": n / grad_s, "gradient_s": grad_s}
    res["keep_freed_host_memory"] = not args.malloc_default
    if not args.malloc_default:
        keep_freed_host_memory()
    sec = project_epoch(
        X, y, "full_batch", n, args.lr, args.every, args.full_batch_epochs, args.repeats
    )
    res["full_batch"] = {"samples_per_s": n / sec, "epoch_s": sec}
    runs = {
        "sklearn_sgd": sklearn_runs(Xh, yh, args.lr, args.epochs),
        "per_sample": project_runs(X, y, "per_sample", 1, args.lr, args.every, args.epochs),
        "mini_batch": project_runs(
            X, y, "mini_batch", args.batch_size, args.lr, args.every, args.epochs
        ),
    }
    rounds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, timed in runs.items():
            rounds[name].append(timed())
    for name, times in rounds.items():
        res[name] = {"samples_per_s": n / min(times), "epoch_s": min(times), "rounds_s": times}
    res["mini_batch"]["batch_size"] = args.batch_size
    # the host's half of a shuffled epoch: its permutation (numpy's Fisher-Yates, done while the
    # device trains on the epoch before; the bench's epochs above included it)
    shuffles = iter(range(10**6, 10**6 + max(args.repeats, 5)))
    res["host_shuffle_s"] = best_of(lambda: _order(n, True, 0, next(shuffles)), args.repeats)
    res["naive_loop"] = {
        "samples_per_s": naive_loop_rate(X, y, args.lr, args.naive_steps),
        "timed_steps": args.naive_steps,
    }

    sk = res["sklearn_sgd"]["samples_per_s"]
    res["ratios"] = {
        "per_sample_over_sklearn": res["per_sample"]["samples_per_s"] / sk,
        "mini_batch_over_sklearn": res["mini_batch"]["samples_per_s"] / sk,
        "full_batch_step_over_numpy_gradient": res["full_batch"]["epoch_s"] / grad_s,
    }
    if args.scaling:
        res["scaling"] = {}
        for m in (10**5, 10**6, 10**7):
            t = synthetic(m, args.features, 0.1, seed=1)
            Xm, ym = jax.device_put((t.X, t.y))
            del t
            s = project_epoch(Xm, ym, "mini_batch", args.batch_size, args.lr, args.every, 3, 2)
            res["scaling"][str(m)] = {"mini_batch_epoch_s": s, "s_per_million_rows": s / m * 1e6}
            del Xm, ym
    if memory:
        res["memory"] = memory
    res["bench_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.json:
        print(json.dumps(res))
        return
    print(
        f"{n:,} rows x {args.features} features, float32, {res['platform']}, "
        f"{res['cpu_count']} cores, logger.every_n_steps={args.every}"
    )
    print(f"{'method':<28}{'samples/s':>14}{'vs sklearn':>12}")
    for key, label in [
        ("full_batch", "full_batch (this project)"),
        ("per_sample", "per_sample (this project)"),
        ("mini_batch", f"mini_batch {args.batch_size} (this project)"),
        ("sklearn_sgd", "sklearn SGDRegressor"),
        ("naive_loop", "naive jitted-step loop"),
        ("numpy_gradient", "numpy X.T @ (X @ w - y)"),
    ]:
        rate = res[key]["samples_per_s"]
        print(f"{label:<28}{rate:>14,.0f}{rate / sk:>11.2f}x")
    r = res["ratios"]
    print(f"full-batch step / numpy gradient time: {r['full_batch_step_over_numpy_gradient']:.2f}")
    print(f"host shuffle of one epoch: {res['host_shuffle_s'] * 1e3:.1f} ms")
    for m, v in res.get("scaling", {}).items():
        print(
            f"mini_batch epoch at {int(m):>10,} rows: {v['mini_batch_epoch_s']:.3f} s "
            f"({v['s_per_million_rows']:.3f} s per 10^6 rows)"
        )
    if "memory" in res:
        m = res["memory"]
        print(
            f"train.py peak RSS at {m['n']:,} rows: {m['peak_rss_mb']:.0f} MB "
            f"(dataset {m['dataset_mb']:.0f} MB, limit 2x + 300 = {m['limit_mb']:.0f} MB)"
        )


if __name__ == "__main__":
    main()
