"""TensorBoard output a user can read (issue 12, items 6 and 7): every overridden key in the
HPARAMS tab, and valid tag names, so that tensorboardX prints nothing about them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_config, read_scalars, run_train
from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboardX.summary import _clean_tag

from training.logs import valid_tag
from training.run import hparams_of


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_valid_tag_is_tensorboardx_rule(tag):
    assert valid_tag(tag) == _clean_tag(tag)
    assert _clean_tag(valid_tag(tag)) == valid_tag(tag)  # nothing left for it to rename


def test_chosen_values_join_the_hparams():
    cfg = make_config("experiment=housing")
    h = hparams_of(cfg, {"optimizer.lr": 0.0123})
    assert h["optimizer.lr"] == 0.0123 and h["optimizer.name"] == cfg.optimizer.name
    assert h["loader.batch_size"] == 0  # full batch has none; the column stays numeric
    assert hparams_of(cfg)["optimizer.lr"] == cfg.optimizer.lr


def test_a_resumed_run_has_the_hparams_of_one_never_stopped(monkeypatch):
    # trainer.resume=true went into the HPARAMS tab: resumed runs stood apart from the others
    import training.run

    given = ["trainer.resume=true", "optimizer.lr=0.1", "loader=mini_batch"]
    monkeypatch.setattr(training.run, "command_line_overrides", lambda: given)
    h = hparams_of(make_config(*given))
    assert "trainer.resume" not in h
    assert (h["optimizer.lr"], h["loader"]) == (0.1, "mini_batch")


@pytest.mark.parametrize(("loader", "taken"), [("per_sample", 1), ("full_batch", 0)])
def test_a_batch_size_a_loader_does_not_read_is_said_and_not_recorded(capsys, loader, taken):
    # loader=per_sample loader.batch_size=4 trained one row a step, silently, and HPARAMS
    # recorded a batch size of 4
    from types import SimpleNamespace

    from training.build import make_run_loader

    cfg = make_config("experiment=housing", f"loader={loader}", "loader.batch_size=4")
    rows = SimpleNamespace(n=436, mesh=None, copies=False)
    assert make_run_loader(cfg, rows).batch_size == (1 if loader == "per_sample" else 436)
    step = "one row" if loader == "per_sample" else "all the training rows"
    assert capsys.readouterr().out == (
        f"warning: loader.batch_size=4 is not read by loader={loader}, whose every step takes "
        f"{step}; loader=mini_batch loader.batch_size=4 trains on batches of 4\n"
    )
    assert hparams_of(cfg)["loader.batch_size"] == taken
    make_run_loader(make_config("experiment=housing", f"loader={loader}"), rows)
    assert capsys.readouterr().out == ""


def test_a_run_that_converged_logs_each_step_once(tmp_path):
    # the parameters at the step a run converged at were written twice: by the call, which
    # records the step it stopped at, and by the report's final parameters
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from training.run import train_and_evaluate

    cfg = make_config("experiment=housing", "logger.plots=false")
    metrics = train_and_evaluate(cfg, tmp_path)
    assert metrics["stopped"] == "converged"
    scalars = read_scalars(tmp_path)
    for tag in ("params/b", "params/W/lotsize", "train/loss"):
        steps = [step for step, _ in scalars[tag]]
        assert steps == list(range(metrics["steps"] + 1)), tag
    np.testing.assert_allclose(scalars["params/b"][-1][1], metrics["params"]["b"], rtol=1e-6)
    acc = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    acc.Reload()
    steps = [h.step for h in acc.Histograms("params/W")]
    assert len(steps) == len(set(steps)) and steps[-1] == metrics["steps"]


def session_hparams(run_dir) -> dict:
    """The hyperparameters a run's event file gives TensorBoard's HPARAMS tab."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    for raw in acc.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("session_start_info"):
            values = data.session_start_info.hparams
            return {k: getattr(v, v.WhichOneof("kind")) for k, v in values.items()}
    raise AssertionError(f"no hparams in {run_dir}")


@pytest.mark.slow
def test_a_momentum_sweep_records_each_runs_momentum(momentum_sweep):
    sweep, proc = momentum_sweep
    assert proc.returncode == 0, proc.stderr
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(runs) == 2
    first, second = (session_hparams(r) for r in runs)
    assert (first["optimizer.momentum"], second["optimizer.momentum"]) == (0.5, 0.9)
    for run, h in zip(runs, (first, second), strict=True):
        assert h["experiment"] == "housing" and h["trainer.epochs"] == 3
        # the step size the run chose from the data (experiment=housing: optimizer.lr=auto)
        chosen = json.loads((run / "metrics.json").read_text())["chosen"]
        assert h["optimizer.name"] == "nesterov" and h["optimizer.lr"] == chosen["optimizer.lr"]


@pytest.mark.slow
def test_columns_with_spaces_give_valid_tags_and_no_log_lines(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame(
        {
            "Lot Area": rng.uniform(5000, 15000, n).round(),
            "Exterior 1st": rng.choice(["MetalSd", "VinylSd", "Wd Sdng"], n),
            "Year (built)": rng.integers(1950, 2010, n),
        }
    )
    df["Sale Price"] = 10 * df["Lot Area"] + 500 * (df["Year (built)"] - 1950) + 30000
    df.to_csv(tmp_path / "houses.csv", index=False)
    run_dir = tmp_path / "run"
    proc = run_train(
        "experiment=housing",
        f"data.path={tmp_path / 'houses.csv'}",
        "data.target=Sale Price",
        "trainer.epochs=5",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    assert "illegal" not in output and "tensorboardX" not in output, output
    tags = {t for t in read_scalars(run_dir) if t.startswith("params/W/")}
    assert tags == {
        "params/W/Lot_Area",
        "params/W/Exterior_1st_VinylSd",
        "params/W/Exterior_1st_Wd_Sdng",
        "params/W/Year__built_",
    }


def test_weights_beyond_tensorflows_buckets_still_make_a_histogram(tmp_path):
    """A run whose weights grew past 1e20 (a step size too large for per-sample SGD, which
    ends with a warning, not an error) still writes its histogram: with numpy's bins."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from training.logs import TensorBoardLog

    tb = TensorBoardLog(tmp_path, True)
    values = np.array([-3e25, 5e24, 2e25])  # none inside the buckets
    tb.histogram("params/W", values, 7)
    tb.histogram("params/b", np.array([0.5, 1.5]), 7)
    tb.writer.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    acc.Reload()
    (event,) = acc.Histograms("params/W")
    assert (event.step, event.histogram_value.min, event.histogram_value.max) == (7, -3e25, 2e25)
    assert event.histogram_value.num == 3
    assert acc.Histograms("params/b")[0].histogram_value.num == 2


def test_tensorboard_events_are_checksummed_natively():
    """tensorboardX checksums each event with the crc32c package when it is installed, and
    otherwise in pure Python: 1.1 ms for an event of 274 weights, about half of what writing
    a 274-column run's steps cost. The checksum is CRC-32C either way (RFC 3720's check value)."""
    from tensorboardX import crc32c

    assert crc32c._crc32c_native is not None
    assert crc32c.crc32c(b"123456789") == 0xE3069283


def test_two_columns_of_one_valid_tag_are_kept_apart(tmp_path, capsys):
    # helper-53: 'Zone B' beside Zone's level B, both params/W/Zone_B: one tag held both
    # weights, two points a step, interleaved
    from training.logs import TensorBoardLog

    log = TensorBoardLog(tmp_path, enabled=True)
    given = {  # a name valid as it is keeps it, whatever the order (helper-54)
        "params/W/Zone B": [1.0, 2.0],
        "params/W/Zone_B": [3.0, 4.0],
        "params/W/Zone_B_2": [5.0, 6.0],
    }
    log.scalars(given, np.arange(2))
    log.scalar("params/W/Zone B", 7.0, 2)  # a tag given again keeps its own
    log.close()
    scalars = read_scalars(tmp_path)
    assert {t: [v for _, v in s] for t, s in scalars.items() if t.startswith("params/")} == {
        "params/W/Zone_B_3": [1.0, 2.0, 7.0],
        "params/W/Zone_B": [3.0, 4.0],
        "params/W/Zone_B_2": [5.0, 6.0],
    }
    assert capsys.readouterr().out == (
        "note: TensorBoard tag params/W/Zone_B_3 is 'params/W/Zone B' (params/W/Zone_B is "
        "another's)\n"
    )
