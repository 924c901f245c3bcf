"""Predict with a finished run: ``python predict.py RUN_DIR NEW_ROWS.csv [-o OUT.csv]``.

The new rows go through the run's own encoding and scaling (``RUN_DIR/preprocessing.json``),
the model takes its parameters from the run's newest checkpoint, and the predictions, in the
target's own units, are written as a ``predicted_<target>`` column after the input's columns.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training.cli import fail
from training.errors import UserError


def predict(run_dir: str | Path, rows_csv: str | Path) -> tuple[np.ndarray, object, dict]:
    """Predictions for ``rows_csv`` in the target's units, the rows read, and the run's
    preprocessing record."""
    import jax
    from flax import nnx
    from omegaconf import OmegaConf

    from data.csv_source import Encoding, read_csv
    from data.preprocess import Scaling
    from training.checkpoint import Checkpoints
    from training.run import build_model

    run_dir = Path(run_dir)
    prep_path = run_dir / "preprocessing.json"
    if not prep_path.is_file():
        raise UserError(
            f"{run_dir}: not a finished run (no preprocessing.json); give the "
            f"directory a train.py run wrote"
        )
    prep = json.loads(prep_path.read_text())
    names = prep["feature_names"]

    enc = prep["encoding"]
    fmt = {"sep": enc.get("sep"), "decimal": enc.get("decimal")} if enc else {}
    df, source = read_csv(rows_csv, key="input", min_columns=1, **fmt)
    if enc:
        encoding = Encoding.from_dict(enc)
        X = encoding.transform(df, source, missing="predict")
        for line in encoding.warnings:  # levels never seen in training: counted as `other`
            print(line, file=sys.stderr)
    else:  # toy or synthetic data: the columns by their feature names
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise UserError(
                f"{source}: no column {missing[0]!r}; the model needs columns {', '.join(names)}"
            )
        from data.csv_source import ColumnCode, _numbers, _refuse_missing

        _refuse_missing(df, [ColumnCode(n, "numeric") for n in names], source, "predict", ".")
        X = np.column_stack([_numbers(df[n], n, source) for n in names])
    scaling = Scaling(**prep["scaling"])
    X = np.asarray(scaling.apply_X(X.astype(np.float32)), np.float32)

    ckpt = Checkpoints(run_dir / "checkpoints")
    try:
        steps = ckpt.steps()
        if not steps:
            raise UserError(f"{run_dir}: no checkpoint; the run did not finish")
        cfg = OmegaConf.create(ckpt.restore_meta(steps[-1])["config"])
        model = build_model(cfg.model, len(names), 0)
        graphdef, state = nnx.split(model)
        like = nnx.to_pure_dict(state)

        from training.optim import build_optimizer

        # the checkpoint holds the optimizer state too: restore it in its own structure
        tx, _ = build_optimizer(cfg.optimizer, like, 1)
        state_ckpt, _ = ckpt.restore(steps[-1], {"params": like, "opt_state": tx.init(like)})
    finally:
        ckpt.close()
    pred = np.asarray(jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))(state_ckpt["params"], X))
    out = scaling.invert_y(pred)
    if prep["log_target"]:
        out = np.exp(out)
    return out, df, prep


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run_dir", help="a directory train.py wrote (hydra.run.dir)")
    p.add_argument("rows", help="CSV of new rows: the feature columns, target column optional")
    p.add_argument("-o", "--output", help="where to write (default: print CSV to stdout)")
    args = p.parse_args(argv)
    try:
        pred, df, prep = predict(args.run_dir, args.rows)
    except UserError as exc:
        fail(str(exc), exc.exit_code)
    column = f"predicted_{prep['target']}"
    df[column] = pred
    if args.output:
        df.to_csv(args.output, index=False)
        print(f"wrote {len(df)} predictions to {args.output}", file=sys.stderr)
    else:
        df.to_csv(sys.stdout, index=False)


if __name__ == "__main__":
    main()
