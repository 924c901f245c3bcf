"""Time to a fitted model on a real-sized file: a whole ``train.py`` run against scikit-learn.

    python bench/time_to_fit.py              # the table, medians of 3
    python bench/time_to_fit.py --json       # one line of JSON
    python bench/time_to_fit.py --repeats 5

Writes a made-up Ames-like housing file (3,000 sales, ``tests/make_housing_files.py``'s ``ames``
columns plus eight more text columns: 266 one-hot columns, ``NA`` cells, a rank-deficient
design; seeded, so the same file every time) to a temporary directory, then times two fresh
processes on it, alternately, and reports the median of ``--repeats`` runs of each with its CPU
time (user + system, from ``wait4``):

- scikit-learn end to end in one process: ``read_csv``, ``SimpleImputer`` and ``StandardScaler``
  on the numbers, ``OneHotEncoder`` (first level dropped, levels seen under 5 times pooled) on
  the text, ``LinearRegression`` on ``log(SalePrice)``;
- ``train.py data=csv data.path=F data.target=SalePrice data.log_target=true
  data.missing=mean`` with everything else at its default (the plots and TensorBoard on), run
  through a wrapper that times its phases: start-up (interpreter and imports, until Hydra hands
  over the config), ``setup`` (reading, encoding, scaling, least squares, the step size from the
  data), ``fit`` (its compilation counted apart, from JAX's own compile-time events),
  ``evaluate`` without the plots, the plots, and the rest (Hydra, TensorBoard, files).

The wrapper adds nothing but timers. Compile time is JAX's own ``/jax/core/compile/`` events,
counted apart from the phase it fell in.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from make_housing_files import ames  # noqa: E402

ROWS = 3000
EXTRA_TEXT = {  # uniform levels, so few are pooled: with ames' own, about 270 one-hot columns
    "Exterior2nd": [f"Ext{i}" for i in range(16)],
    "Condition2": [f"Cond{i}" for i in range(12)],
    "GarageType": [f"Gar{i}" for i in range(14)],
    "MiscFeature": [f"Misc{i}" for i in range(14)],
    "Heating": [f"Heat{i}" for i in range(12)],
    "Functional": [f"Func{i}" for i in range(12)],
    "RoofMatl": [f"Roof{i}" for i in range(18)],
    "Electrical": [f"Elec{i}" for i in range(19)],
}

SKLEARN = """
import sys
import numpy as np, pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

df = pd.read_csv(sys.argv[1], keep_default_na=False, na_values=[""])
y = np.log(df.pop("SalePrice").to_numpy(float))
df = df.drop(columns="Id")
numbers = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
text = [c for c in df.columns if c not in numbers]
model = make_pipeline(
    make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        (OneHotEncoder(drop="first", min_frequency=5, handle_unknown="infrequent_if_exist",
                       sparse_output=False), text),
    ),
    LinearRegression(),
)
model.fit(df, y)
print(model[0].transform(df.iloc[:1]).shape[1], model.score(df, y))
"""

# train.py as `python train.py ...`, with timers around its phases (nothing else changes)
PHASED = """
import sys, time
t0 = time.perf_counter()
out, sys.argv = sys.argv[1], sys.argv[2:]
sys.path.insert(0, sys.argv[0].rsplit("/", 1)[0])
import atexit, importlib.abc, json, runpy

phases, within = {}, ["startup"]
def compiled(event, seconds, **kwargs):  # JAX's own compile-time events, by phase
    if event.startswith("/jax/core/compile/"):
        key = "compile_" + within[-1]
        phases[key] = phases.get(key, 0.0) + seconds

def timed(name, module, attr):
    f = getattr(module, attr)
    def wrapper(*a, **k):
        phases.setdefault("startup", time.perf_counter() - t0)
        t = time.perf_counter()
        within.append(name)
        try:
            return f(*a, **k)
        finally:
            within.pop()
            phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
    setattr(module, attr, wrapper)

def install():  # once train.py has imported training.run, when it would: no import moves
    import jax
    import training.report as report
    import training.run as run
    from training.plot_process import Plots

    jax.monitoring.register_event_duration_secs_listener(compiled)
    # the phases by their names here: `setup` is training.build's `build`, called from run.py
    for name, module, attr in (
        ("setup", run, "build"),
        ("fit", run, "fit"),
        ("evaluate", run, "evaluate"),
        ("draw_plots", report, "draw_plots"),  # sending the plots' inputs
        ("draw_plots", Plots, "wait"),  # and waiting for the files
    ):
        timed(name, module, attr)

class AfterImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "training.run":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        real = spec.loader.exec_module
        def exec_module(module):
            real(module)
            sys.modules[name] = module
            install()
        spec.loader.exec_module = exec_module
        return spec
import importlib.util
sys.meta_path.insert(0, AfterImport())
def dump():  # an atexit handler: train.py ends with os._exit once they have run
    phases["total"] = time.perf_counter() - t0
    with open(out, "w") as f:
        json.dump(phases, f)
atexit.register(dump)
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def write_file(path: Path, rows: int = ROWS, seed: int = 2) -> int:
    """The made-up Ames-like file; returns the number of its one-hot columns before pooling."""
    df = ames(path, n=rows, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for name, levels in EXTRA_TEXT.items():
        df[name] = rng.choice(levels, rows)
    df.to_csv(path, index=False)
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    return sum(df[c].nunique() - 1 for c in text)


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds: user + system, stdout) of a child process run to completion."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}\n{stdout[-2000:]}{stderr[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, stdout


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="runs of each, median")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ames_3000.csv"
        onehot = write_file(path)
        sk = [sys.executable, "-c", SKLEARN, str(path)]
        runs: dict[str, list] = {"sklearn": [], "train": [], "phases": []}
        converged, reached, steps, columns = [], [], [], None
        for i in range(args.repeats):
            wall, cpu, out = timed(sk)
            runs["sklearn"].append((wall, cpu))
            columns = int(out.split()[0])
            run_dir = Path(tmp) / f"run{i}"
            phase_file = Path(tmp) / f"phases{i}.json"
            cmd = [sys.executable, "-c", PHASED, str(phase_file), str(ROOT / "train.py")]
            cmd += ["data=csv", f"data.path={path}", "data.target=SalePrice"]
            cmd += ["data.log_target=true", "data.missing=mean", f"hydra.run.dir={run_dir}"]
            wall, cpu, out = timed(cmd)
            runs["train"].append((wall, cpu))
            runs["phases"].append(json.loads(phase_file.read_text()))
            metrics = json.loads((run_dir / "metrics.json").read_text())
            converged.append(metrics["stopped"] == "converged")
            reached.append("reached least squares" in out)
            steps.append(metrics["steps"])

    def median(key: str, i: int) -> float:
        return statistics.median(r[i] for r in runs[key])

    # the phases of the run of median wall time, so that they add up to its total
    middle = sorted(range(args.repeats), key=lambda i: runs["train"][i][0])[args.repeats // 2]
    ph = {"draw_plots": 0.0, **runs["phases"][middle]}
    c = {k: ph.get("compile_" + k, 0.0) for k in ("startup", "setup", "fit", "evaluate")}
    c["draw_plots"] = ph.get("compile_draw_plots", 0.0)
    breakdown = {  # wall seconds, compilation apart
        "startup": ph["startup"] - c["startup"],
        "setup": ph["setup"] - c["setup"],
        "fit_steps": ph["fit"] - c["fit"],
        "evaluate": ph["evaluate"] - ph["draw_plots"] - c["evaluate"],
        "plots": ph["draw_plots"] - c["draw_plots"],
        "compile": sum(c.values()),
        "rest": ph["total"] - ph["startup"] - ph["setup"] - ph["fit"] - ph["evaluate"],
    }
    result = {
        "rows": ROWS,
        "onehot_columns": onehot,
        "design_columns": columns,
        "repeats": args.repeats,
        "sklearn_s": round(median("sklearn", 0), 2),
        "train_s": round(median("train", 0), 2),
        "time_ratio": round(median("train", 0) / median("sklearn", 0), 2),
        "sklearn_cpu_s": round(median("sklearn", 1), 2),
        "train_cpu_s": round(median("train", 1), 2),
        "cpu_ratio": round(median("train", 1) / median("sklearn", 1), 2),
        "steps": steps,
        "converged": all(converged),
        "reached_least_squares": all(reached),
        "phases_s": {k: round(v, 2) for k, v in breakdown.items()},
        "load_average": round(os.getloadavg()[0], 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    r = result
    print(
        f"{ROWS:,} rows, {onehot} one-hot columns ({columns} design columns after pooling), "
        f"median of {args.repeats}, load average {r['load_average']}"
    )
    print(f"{'process':<36} {'wall s':>8} {'CPU s':>8}")
    print(f"{'scikit-learn (read, encode, fit)':<36} {r['sklearn_s']:>8} {r['sklearn_cpu_s']:>8}")
    print(f"{'train.py (defaults, plots, TB)':<36} {r['train_s']:>8} {r['train_cpu_s']:>8}")
    print(f"ratio: time {r['time_ratio']}x, CPU {r['cpu_ratio']}x (goal: time at most 2x)")
    print(
        f"train.py: {steps} steps, stopped converged: {r['converged']}, said it reached least "
        f"squares: {r['reached_least_squares']}"
    )
    print("train.py wall time by phase (s), the run of median time, compilation apart:")
    for k, v in r["phases_s"].items():
        print(f"  {k:<12} {v:>7}")


if __name__ == "__main__":
    main()
