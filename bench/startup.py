"""Start-up: the default run (the walkthrough) against the imports it cannot avoid.

    .venv/bin/python bench/startup.py [--runs 5] [--sweep] [--json] [--report FILE]

Times, as wall clock from process start to exit and as CPU time (every thread), in alternating
rounds:

- ``bare``: ``python -c "import jax, flax.nnx, optax, hydra, tensorboardX"``;
- ``bare_gc_off``: the same imports with Python's garbage collector off, as ``train.py``
  imports them (``second_process.collect_garbage_from_now_on``): the ratios against it are
  printed too, so that what the collector alone saves is not counted as the run's own;
- ``first``: ``python train.py hydra.run.dir=<new dir>`` with an empty compilation cache;
- ``repeat``: the same command again, the cache holding the first run's programs;

and prints the median of each and the ratios ``first / bare`` and ``repeat / bare``. The runs
use a compilation cache of their own (a temporary ``JAX_COMPILATION_CACHE_DIR``), not the
user's. ``--sweep`` also times the README's 6-run sweep and a 1-run sweep of the same grid's
first point, each with an empty and a warm cache; their difference over 5 is what each extra
run of the sweep costs. The runs of a sweep share every compiled program that does not depend
on the swept values, so only the first run compiles those.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARE = "import jax, flax.nnx, optax, hydra, tensorboardX"
BARE_GC_OFF = "import gc; gc.disable(); " + BARE
SWEEP = [
    "-m",
    "experiment=housing",
    "optimizer.name=sgd",
    "trainer.epochs=200",
    "optimizer.lr=0.001,0.01,0.1",
    "loader=full_batch,mini_batch",
]
ONE_RUN = ["-m", "experiment=housing", "optimizer.name=sgd", "trainer.epochs=200"]
ONE_RUN += ["optimizer.lr=0.001", "loader=full_batch"]


def timed(argv: list[str], env: dict, cpu: list[float] | None = None) -> float:
    """Seconds from starting ``python ARGV`` to its exit; a failed run is an error. The CPU
    seconds it used (user + system, every thread) are appended to ``cpu``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    if cpu is not None:
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--sweep", action="store_true", help="also time the 6-run sweep")
    parser.add_argument("--json", action="store_true", help="print one line of JSON")
    parser.add_argument("--report", metavar="JSON", help="print the table of an earlier --json")
    args = parser.parse_args()
    if args.report:
        report(json.loads(Path(args.report).read_text()))
        return

    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    cache = tmp / "cache"
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    times: dict[str, list[float]] = {"bare": [], "bare_gc_off": [], "first": [], "repeat": []}
    cpu: dict[str, list[float]] = {k: [] for k in times}
    try:
        for i in range(args.runs):
            times["bare"].append(timed(["-c", BARE], env, cpu["bare"]))
            times["bare_gc_off"].append(timed(["-c", BARE_GC_OFF], env, cpu["bare_gc_off"]))
            shutil.rmtree(cache, ignore_errors=True)
            for kind in ("first", "repeat"):
                run = ["train.py", f"hydra.run.dir={tmp}/{kind}{i}"]
                times[kind].append(timed(run, env, cpu[kind]))
        out: dict = {k: statistics.median(v) for k, v in times.items()}
        out.update({f"{k}_cpu": statistics.median(v) for k, v in cpu.items()})
        for kind in ("first", "repeat"):
            out[f"{kind}_ratio"] = out[kind] / out["bare"]
            out[f"{kind}_cpu_ratio"] = out[f"{kind}_cpu"] / out["bare_cpu"]
            out[f"{kind}_ratio_gc_off"] = out[kind] / out["bare_gc_off"]
        out["runs"] = args.runs
        out["all"] = times
        out["all_cpu"] = cpu
        if args.sweep:
            for name, grid in (("sweep6", SWEEP), ("sweep1", ONE_RUN)):
                shutil.rmtree(cache, ignore_errors=True)
                sweep = ["train.py", *grid]
                out[f"{name}_first"] = timed([*sweep, f"hydra.sweep.dir={tmp}/{name}a"], env)
                out[f"{name}_repeat"] = timed([*sweep, f"hydra.sweep.dir={tmp}/{name}b"], env)
            for kind in ("first", "repeat"):
                out[f"sweep_extra_run_{kind}"] = (out[f"sweep6_{kind}"] - out[f"sweep1_{kind}"]) / 5
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        print(json.dumps(out))
    else:
        report(out)


def report(out: dict) -> None:
    """The measurements as a table (``--json`` prints ``out`` itself)."""
    print(f"median of {out['runs']} alternating runs: wall clock from start to exit (CPU time)")
    rows = (
        ("bare", f"python -c '{BARE}'"),
        ("bare_gc_off", "the same, garbage collector off (as train.py imports)"),
        ("first", "python train.py, empty compilation cache"),
        ("repeat", "python train.py, warm compilation cache"),
    )
    for kind, what in rows:
        if kind not in out:  # a --json of before the collector's row
            continue
        bare = kind.startswith("bare")
        ratio = "" if bare else f"  {out[kind + '_ratio']:.2f}x"
        cpu_ratio = "" if bare else f"  {out[kind + '_cpu_ratio']:.2f}x"
        print(
            f"{kind:<12}{out[kind]:6.2f} s{ratio:>8}   ({out[kind + '_cpu']:5.2f} s CPU{cpu_ratio})"
            f"   {what}"
        )
    if "first_ratio_gc_off" in out:
        print(
            f"against the imports with the collector off: {out['first_ratio_gc_off']:.2f}x first, "
            f"{out['repeat_ratio_gc_off']:.2f}x repeat"
        )
    if "sweep6_first" in out:
        print(
            f"6-run sweep: {out['sweep6_first']:.1f} s first, {out['sweep6_repeat']:.1f} s "
            f"repeat; 1-run sweep: {out['sweep1_first']:.1f} s first, "
            f"{out['sweep1_repeat']:.1f} s repeat"
        )
        print(
            f"each extra run of the sweep: {out['sweep_extra_run_first']:.2f} s first, "
            f"{out['sweep_extra_run_repeat']:.2f} s repeat"
        )


if __name__ == "__main__":
    main()
