"""Where a ``train.py`` run's time goes: wall and CPU seconds by phase, medians of a few runs.

    .venv/bin/python bench/startup_phases.py [--runs 3] [--json] [--against DIR] [-- overrides]

Runs ``python train.py`` (default: the walkthrough) through a wrapper that only adds timers,
``--runs`` times with an empty compilation cache (``first``) and as many times with the cache
the first run filled (``repeat``), alternating, and prints for each phase the median wall
seconds and CPU seconds (every thread of the process: on a busy shared host the CPU time is
the steadier number):

- ``imports``: interpreter start to Hydra calling ``main`` (``train.py``'s own imports, Hydra's
  config composition);
- ``setup`` (``training.build.build``, as ``training.run`` calls it: data, model, optimizer,
  the step size);
- ``fit`` (``training.run.fit``) and, apart, its compilation (JAX's ``/jax/core/compile/``
  events) and its checkpoint writes (``training.run.save``);
- ``inference`` (``training.evaluate.linear_inference``, as ``training.report`` calls it), ``plots``
  (``training.report.draw_plots``, which sends the figures' inputs to the plot process, and
  ``Plots.wait``, the wait for its files), the rest of ``evaluate``;
- ``close``: TensorBoard's and orbax's ``close``; ``exit``: from the last ``atexit`` handler to
  the process's end (the interpreter's teardown, measured by the parent);
- ``other``: the remainder of ``train_and_evaluate`` (metrics.json, HPARAMS, run directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WRAPPER = """
import sys, time
t0, c0 = time.perf_counter(), time.process_time()
out, sys.argv = sys.argv[1], sys.argv[2:]
sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
import atexit, json, runpy

ph = {}
def add(name, wall, cpu):
    w, c = ph.get(name, (0.0, 0.0))
    ph[name] = (w + wall, c + cpu)

def timed(module, name, key):
    f = getattr(module, name)
    def wrapper(*a, **k):
        t, c = time.perf_counter(), time.process_time()
        try:
            return f(*a, **k)
        finally:
            add(key, time.perf_counter() - t, time.process_time() - c)
    setattr(module, name, wrapper)

import training.report as report
import training.run as run
import training.evaluate as ev
import training.checkpoint as ck
import training.logs as logs
try:
    from training.plot_process import Plots
except ImportError:  # --against a checkout that draws in its own process
    Plots = None
first = {}
def enter(*a, **k):
    first.setdefault("main", (time.perf_counter() - t0, time.process_time() - c0))
    return tae(*a, **k)
tae = run.train_and_evaluate
run.train_and_evaluate = enter
for module, name, key in [
    (run, "build", "setup"), (run, "fit", "fit"), (run, "save", "checkpoint"),
    (run, "evaluate", "evaluate"), (report, "draw_plots", "plots"), (Plots, "wait", "plots"),
    (report, "linear_inference", "inference"), (ck.Checkpoints, "close", "close"),
    (logs.TensorBoardLog, "close", "close"),
]:
    if hasattr(module, name):
        timed(module, name, key)
import jax
def compiled(event, seconds, **kwargs):
    if event.startswith("/jax/core/compile/"):
        add("compile", seconds, 0.0)
jax.monitoring.register_event_duration_secs_listener(compiled)
def dump():  # registered first, so run last of the atexit handlers (train.py may os._exit)
    ph["imports"] = first.get("main", (0.0, 0.0))
    ph["until_main_returned"] = (time.perf_counter() - t0, time.process_time() - c0)
    with open(out, "w") as f:
        json.dump(ph, f)
atexit.register(dump)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def one(argv: list[str], env: dict, phase_file: Path, root: Path = ROOT) -> dict:
    before = os.times()
    t = time.perf_counter()
    cmd = [sys.executable, "-c", WRAPPER, str(phase_file), str(root / "train.py"), *argv]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = os.times()
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd[3:])}\n{done.stderr[-2000:]}")
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    ph = {k: tuple(v) for k, v in json.loads(phase_file.read_text()).items()}
    w_main, c_main = ph.pop("until_main_returned")
    compile_s = ph.pop("compile", (0.0, 0.0))[0]
    fit_w, fit_c = ph.get("fit", (0.0, 0.0))
    ck_w, ck_c = ph.pop("checkpoint", (0.0, 0.0))
    ev_w, ev_c = ph.get("evaluate", (0.0, 0.0))
    pl_w, pl_c = ph.get("plots", (0.0, 0.0))
    in_w, in_c = ph.get("inference", (0.0, 0.0))
    out = {
        "imports": ph["imports"],
        "setup": ph.get("setup", (0.0, 0.0)),
        "fit_compile": (compile_s, None),
        "fit_checkpoints": (ck_w, ck_c),
        "fit_rest": (fit_w - ck_w, fit_c - ck_c),
        "inference": (in_w, in_c),
        "plots": (pl_w, pl_c),
        "evaluate_rest": (ev_w - pl_w - in_w, ev_c - pl_c - in_c),
        "close": ph.get("close", (0.0, 0.0)),
        "exit": (wall - w_main, cpu - c_main),
        "total": (wall, cpu),
    }
    known = [k for k in out if k not in ("total", "exit", "fit_compile")]
    out["other"] = (
        w_main - sum(out[k][0] for k in known),
        c_main - sum(out[k][1] for k in known),
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--against",
        metavar="DIR",
        help="another checkout: time its train.py too, alternating, as 'first@DIR' etc.",
    )
    p.add_argument("overrides", nargs="*", help="train.py overrides (after --)")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-phases-"))
    cache = tmp / "cache"
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    roots = {"": ROOT}
    if args.against:
        roots["@other"] = Path(args.against).resolve()
    runs: dict[str, list[dict]] = {k + r: [] for r in roots for k in ("first", "repeat")}
    try:
        for i in range(args.runs):
            for tag, root in roots.items():
                shutil.rmtree(cache, ignore_errors=True)
                for kind in ("first", "repeat"):
                    argv = [*args.overrides, f"hydra.run.dir={tmp}/{kind}{tag}{i}"]
                    runs[kind + tag].append(one(argv, env, tmp / f"{kind}{tag}{i}.json", root))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = {
        kind: {
            k: [
                statistics.median(r[k][0] for r in rs),
                None if rs[0][k][1] is None else statistics.median(r[k][1] for r in rs),
            ]
            for k in rs[0]
        }
        for kind, rs in runs.items()
    }
    table["load_average"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(table))
        return
    print(
        f"train.py {' '.join(args.overrides) or '(the walkthrough)'}: median of {args.runs}, "
        f"load average {table['load_average']:.1f}"
    )
    if args.against:
        print(f"@other: {roots['@other']}")
    kinds = list(runs)

    def cpu(v):
        return "" if v is None else f"{v:.2f}"

    print(f"{'phase':<16}" + "".join(f"{k + ' wall':>18}{'CPU':>6}" for k in kinds))
    for k in table["first"]:
        cells = "".join(f"{table[c][k][0]:>18.2f}{cpu(table[c][k][1]):>6}" for c in kinds)
        print(f"{k:<16}{cells}")


if __name__ == "__main__":
    main()
