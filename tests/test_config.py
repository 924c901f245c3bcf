"""Config composition through Hydra, overrides, and one-line errors for bad ones."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from conftest import concurrently, make_config, read_scalars, run_train
from hydra.errors import ConfigCompositionException
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
    # the walkthrough's set-up named explicitly; lr and epochs are the overrides under test
    cfg = make_config(
        "data=toy",
        "model.W_init=constant",
        "model.W_value=8",
        "model.b_init=constant",
        "model.b_value=-1",
        "optimizer.name=sgd",
        "optimizer.freeze=[b]",
        "optimizer.lr=0.05",
        "trainer.epochs=4",
        "logger.print_trace=false",
        "logger.plots=false",
    )
    assert cfg.optimizer.lr == 0.05 and cfg.trainer.epochs == 4
    metrics = train_and_evaluate(cfg, tmp_path)
    assert metrics["steps"] == 4
    # W_{t+1} = W_t - lr * 2/6 * sum(x (W_t x - 1 - y)) = W_t - lr * (62/6)(W_t - 2), so
    # W_t = 2 + 6 (1 - lr 62/6)^t: after 4 steps far from 2, where each lr gives its own W
    closed_form = [2 + 6 * (1 - 0.05 * 62 / 6) ** t for t in range(5)]
    assert metrics["params"]["W"] == pytest.approx(closed_form[-1], rel=1e-6)
    W = read_scalars(tmp_path)["params/W"]
    assert [s for s, _ in W] == list(range(5))
    np.testing.assert_allclose([w for _, w in W], closed_form, rtol=1e-6)


# a value of the wrong type for one key of each typed group (and its nested trainer.distributed)
WRONG_TYPES = {
    "data": ("DataConfig", "data.n_samples=many"),
    "loader": ("LoaderConfig", "loader.batch_size=many"),
    "optimizer": ("OptimizerConfig", "optimizer.b1=much"),
    "trainer": ("TrainerConfig", "trainer.tol=much"),
    "trainer.distributed": ("DistributedConfig", "trainer.distributed.num_processes=many"),
    "logger": ("LoggerConfig", "logger.plots=maybe"),
}


@pytest.mark.parametrize("group", sorted(WRONG_TYPES))
def test_schema_types_every_group(group):
    cfg = make_config("loader=mini_batch", "data=synthetic")
    schema, wrong = WRONG_TYPES[group]
    assert OmegaConf.get_type(OmegaConf.select(cfg, group)).__name__ == schema
    with pytest.raises(ConfigCompositionException, match=re.escape(wrong)):
        make_config(wrong)
    with pytest.raises(ConfigCompositionException, match=re.escape(f"{group}.no_such_key")):
        make_config(f"{group}.no_such_key=1")
    assert cfg.loader.batch_size == 32


def test_the_model_group_is_its_constructors_arguments():
    # open in the schema: composition refuses a key the group does not have, and building the
    # model refuses a value its constructor cannot take, as a config error about the model
    from training.run import build_model

    with pytest.raises(ConfigCompositionException, match=r"model\.no_such_key"):
        make_config("model.no_such_key=1")
    good = make_config("experiment=housing", "model=quadratic")
    assert OmegaConf.get_type(good.model) is dict
    assert good.model._target_ == "models.polynomial.QuadraticRegression"
    assert build_model(good.model, 3, seed=0).V[...].shape == (3,)
    bad = make_config("experiment=housing", "model=quadratic", "model.init_scale=many")
    with pytest.raises(UserError, match=r"^bad config value model\."):
        build_model(bad.model, 3, seed=0)


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


BAD_OVERRIDES = [
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
]


@pytest.fixture(scope="module")
def bad_override_runs(tmp_path_factory) -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    """``train.py ARGS`` of every bad override, a few at once: each ends in its second or two
    of imports, which on two cores overlap."""
    base = tmp_path_factory.mktemp("bad_overrides")
    cases = [tuple(args) for args, _ in BAD_OVERRIDES]
    runs = concurrently(
        *(
            lambda i=i, a=a: run_train(*a, f"hydra.run.dir={base / str(i)}")
            for i, a in enumerate(cases)
        ),
        workers=4,
    )
    return dict(zip(cases, runs, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(("args", "needle"), BAD_OVERRIDES)
def test_bad_override_is_one_line_and_exit_2(bad_override_runs, args, needle):
    proc = bad_override_runs[tuple(args)]
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("error: ") and needle in errors[0]
    assert "Traceback" not in proc.stderr
