"""CSV ingest: a whole ``train.py`` run on a big housing CSV against ``pandas.read_csv`` alone.

    python bench/csv_ingest.py                 # 10^6 rows x 19 columns
    python bench/csv_ingest.py --rows 100000   # smaller
    python bench/csv_ingest.py --json          # one line of JSON

Writes a housing-like CSV (15 numeric columns, some written ``"1,250"``, a price, a zip code, two
text columns and a yes/no column: 19 in all) to a temporary directory, then times two fresh
processes on it, each the best of ``--repeats``, with its CPU time and peak RSS (``wait4``):

- ``train.py data=csv ... trainer.epochs=1 logger.plots=false``;
- a process that imports the same libraries (jax, flax, optax, hydra, pandas, scikit-learn)
  and only calls ``pandas.read_csv`` on the file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

READ_ONLY = """
import sys
import jax, flax.nnx, optax, hydra, omegaconf, sklearn.preprocessing, pandas as pd
df = pd.read_csv(sys.argv[1])
print(df.shape)
"""


def write_file(path: Path, n: int, seed: int = 0) -> None:
    """``n`` house sales, 19 columns, written in chunks so the writer never holds them all."""
    rng = np.random.default_rng(seed)
    towns = np.array(["north", "south", "east", "west", "centre", "harbour", "hills"])
    kinds = np.array(["detached", "semi", "terraced", "flat"])
    first = True
    for start in range(0, n, 200_000):
        m = min(200_000, n - start)
        cols = {f"x{j}": rng.normal(0, 1, m).round(4) for j in range(11)}
        sqft = rng.integers(500, 5000, m)
        lot = rng.integers(1000, 40000, m)
        cols["sqft"] = [f"{v:,}" for v in sqft]  # "1,250": written for people
        cols["lot_sqft"] = lot
        cols["bedrooms"] = rng.integers(1, 7, m)
        cols["zipcode"] = rng.integers(98001, 98200, m)
        cols["town"] = rng.choice(towns, m)
        cols["type"] = rng.choice(kinds, m)
        cols["pool"] = rng.choice(["yes", "no"], m)
        price = 150 * sqft + 2 * lot + rng.normal(0, 20_000, m) + 100_000
        cols["price"] = price.round(0)
        pd.DataFrame(cols).to_csv(path, mode="w" if first else "a", header=first, index=False)
        first = False


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds: user + system) of a child process run to
    completion. On a shared machine the CPU time moves less than the wall time."""
    t = time.perf_counter()
    pid = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).pid
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "houses.csv"
        write_file(path, args.rows)
        train = [
            sys.executable,
            str(ROOT / "train.py"),
            "data=csv",
            f"data.path={path}",
            "data.target=price",
            "trainer.epochs=1",
            "logger.plots=false",
            "logger.progress=off",
            f"hydra.run.dir={Path(tmp) / 'run'}",
        ]
        read = [sys.executable, "-c", READ_ONLY, str(path)]
        runs = {"train": [], "read_csv": []}
        for _ in range(args.repeats):
            runs["read_csv"].append(timed(read))
            runs["train"].append(timed(train))
        size_mb = path.stat().st_size / 2**20
    best = {k: [min(run[i] for run in v) for i in range(3)] for k, v in runs.items()}
    result = {
        "rows": args.rows,
        "columns": 19,
        "file_mb": round(size_mb, 1),
        "train_s": round(best["train"][0], 2),
        "read_csv_s": round(best["read_csv"][0], 2),
        "time_ratio": round(best["train"][0] / best["read_csv"][0], 2),
        "train_peak_mb": round(best["train"][1]),
        "read_csv_peak_mb": round(best["read_csv"][1]),
        "memory_ratio": round(best["train"][1] / best["read_csv"][1], 2),
        "train_cpu_s": round(best["train"][2], 2),
        "read_csv_cpu_s": round(best["read_csv"][2], 2),
        "cpu_ratio": round(best["train"][2] / best["read_csv"][2], 2),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.rows:,} rows x 19 columns, {size_mb:.0f} MB, best of {args.repeats}")
    r = result
    print(f"{'process':<32} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}")
    for name, k in (
        ("train.py (1 epoch, plots off)", "train"),
        ("imports + pandas.read_csv", "read_csv"),
    ):
        print(f"{name:<32} {r[k + '_s']:>8} {r[k + '_cpu_s']:>8} {r[k + '_peak_mb']:>8}")
    print(f"ratio: time {r['time_ratio']}x, CPU {r['cpu_ratio']}x, memory {r['memory_ratio']}x")


if __name__ == "__main__":
    main()
