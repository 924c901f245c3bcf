"""Config composition through Hydra, overrides, and one-line errors for bad ones."""

from __future__ import annotations

import pytest
from conftest import make_config, run_train
from omegaconf import OmegaConf

from training.config import validate
from training.errors import UserError
from training.run import train_and_evaluate


def test_default_config_is_the_walkthrough():
    cfg = make_config()
    assert cfg.data.name == "toy" and list(cfg.data.xs) == [-1, 0, 1, 2, 3, 4]
    assert cfg.loader.name == "full_batch"
    assert (cfg.model.W_init, cfg.model.W_value, cfg.model.b_value) == ("constant", 8.0, -1.0)
    assert cfg.optimizer.lr == 0.01 and list(cfg.optimizer.freeze) == ["b"]
    assert cfg.trainer.epochs == 50
    validate(cfg)


def test_overrides_change_the_run(tmp_path):
    cfg = make_config("optimizer.lr=0.05", "trainer.epochs=20", "logger.print_trace=false")
    assert cfg.optimizer.lr == 0.05 and cfg.trainer.epochs == 20
    metrics = train_and_evaluate(cfg, tmp_path)
    assert metrics["steps"] == 20
    # W_{t+1} = W_t - lr * 2/6 * sum(x (W_t x - 1 - y)) = W_t - lr * (62/6)(W_t - 2)
    W = 8.0
    for _ in range(20):
        W = W - 0.05 * (2 * 31 / 6) * (W - 2)
    assert metrics["params"]["W"] == pytest.approx(W, rel=1e-5)


def test_schema_types_every_group():
    cfg = make_config("loader=mini_batch", "data=synthetic")
    assert OmegaConf.get_type(cfg.loader).__name__ == "LoaderConfig"
    assert OmegaConf.get_type(cfg.optimizer).__name__ == "OptimizerConfig"
    assert cfg.loader.batch_size == 32


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("trainer.epochs=0", "trainer.epochs"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("optimizer.momentum=1.5", "optimizer.momentum"),
        ("logger.every_n_steps=0", "logger.every_n_steps"),
        ("data.val_fraction=1.2", "data.val_fraction"),
    ],
)
def test_validate_names_the_key(override, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        validate(make_config(override))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["foo=1"], "'foo'"),
        (["optimizer.lr=abc"], "optimizer.lr"),
        (["trainer.epochs=-3"], "trainer.epochs"),
        (["loader=nope"], "'loader'"),
        (["optimizer.freeze=[c]"], "optimizer.freeze"),
        (["loader=mini_batch", "loader.batch_size=0"], "loader.batch_size"),
        (["loader=mini_batch", "loader.batch_size=2.5"], "loader.batch_size"),
        (
            ["loader=mini_batch", "loader.batch_size=7", "loader.drop_last=true"],
            "loader.batch_size=7",
        ),
        (["trainer.epochs=0"], "trainer.epochs"),
        (["loader=streaming"], "full_batch, mini_batch, per_sample"),
    ],
)
def test_bad_override_is_one_line_and_exit_2(tmp_path, args, needle):
    proc = run_train(*args, f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: ") and needle in errors[0]
    assert "Traceback" not in proc.stderr
