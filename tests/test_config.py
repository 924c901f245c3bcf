"""Config composition through Hydra, overrides, and one-line errors for bad ones."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import CONF, LION, concurrently, make_config, read_scalars, run_train
from hydra.errors import ConfigCompositionException
from hypothesis import example, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from errors import UserError
from training.config import validate
from training.run import train_and_evaluate


def test_default_config_is_the_walkthrough():
    cfg = make_config()
    assert cfg.data.name == "toy" and list(cfg.data.xs) == [-1, 0, 1, 2, 3, 4]
    assert cfg.loader.name == "full_batch"
    assert (cfg.model.W_init, cfg.model.W_value, cfg.model.b_value) == ("constant", 8.0, -1.0)
    assert cfg.optimizer.lr == 0.01 and list(cfg.optimizer.freeze) == ["b"]
    assert cfg.trainer.epochs == 50
    validate(cfg)


@pytest.mark.slow
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
    from models import build_model

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
        ("loader.batch_size=0", "loader.batch_size"),  # full batch reads none; 0 is still wrong
        # numpy refuses a negative seed mid-run (a traceback); YAML's true is Python's 1
        ("seed=-1", "seed=-1: allowed an integer >= 0"),
        ("trainer.epochs=true", "trainer.epochs=True: allowed an integer from 1 to "),
        # past int64: accepted, it trained 26.7e9 steps before it was stopped (helper-45)
        ("trainer.epochs=99999999999999999999", "allowed an integer from 1 to 1,000,000,000,000"),
    ],
)
def test_validate_names_the_key(override, key):
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        validate(make_config(override))


def test_several_processes_without_a_coordinator_are_refused():
    # trainer.distributed.num_processes=2 alone ran one process, without the directory's lock
    with pytest.raises(UserError) as err:
        validate(make_config("trainer.distributed.num_processes=2"))
    assert str(err.value).startswith(
        "bad config value trainer.distributed.num_processes=2: allowed 1 without "
        "trainer.distributed.coordinator=HOST:PORT"
    )
    given = ("trainer.distributed.coordinator=localhost:1234", "trainer.distributed.process_id=0")
    validate(make_config("trainer.distributed.num_processes=2", *given))


def test_a_synthetic_seed_below_zero_is_refused():
    with pytest.raises(
        UserError, match=r"^bad config value data\.seed=-3: allowed an integer >= 0"
    ):
        validate(make_config("data=synthetic", "data.seed=-3"))


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
    # every run reads the schema's settings: ~seed ended in a traceback mid-run
    (
        ["~seed"],
        "bad override ~seed: every run reads seed, so it cannot be removed; set it "
        "instead (its default: seed=0)",
    ),
    (["~trainer.tol"], "set it instead (its default: trainer.tol=1e-06)"),
    (
        ["seed=null"],
        "bad config value seed=null: every run reads seed, so it needs a value; set "
        "one (its default: seed=0)",
    ),
    # ~data trained on the schema's bare defaults: another walkthrough, silently
    (
        ["~data"],
        "every run reads the data group, so it cannot be removed; pick one instead "
        "(data=NAME: csv, synthetic, toy)",
    ),
    # Hydra's "str is not a ListConfig, list or tuple" said nothing of what to write
    (
        ["optimizer.freeze=b"],
        'optimizer.freeze is a list; write it in brackets, "optimizer.freeze=[b]"',
    ),
]


@pytest.fixture(scope="module")
def bad_override_runs(tmp_path_factory) -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    """``train.py ARGS`` of every bad override, a few at once; the first in a fresh python, as
    a user's: its own imports, and the interpreter's teardown after the error (a forked run
    has neither: conftest.run_script)."""
    base = tmp_path_factory.mktemp("bad_overrides")
    cases = [tuple(args) for args, _ in BAD_OVERRIDES]
    runs = concurrently(
        *(
            lambda i=i, a=a: run_train(*a, f"hydra.run.dir={base / str(i)}", fresh=i == 0)
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


@pytest.mark.slow
@pytest.mark.parametrize("select", ["optimizer=lion", "optimizer.name=lion"])
def test_a_new_optimizer_is_one_yaml_file(tmp_path, conf_with_new_optimizers, select):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_with_new_optimizers), version_base="1.3"):
        # the walkthrough: W from 8, b held at -1, lr 0.01, 50 full-batch steps
        cfg = compose("config", overrides=[select, "logger.plots=false"])
        metrics = train_and_evaluate(cfg, tmp_path / "run")
    assert (cfg.optimizer.name, cfg.optimizer.family) == ("lion", "adaptive")
    # Lion's update is -lr (sign(g) + weight_decay W) (its momentum starts at 0, and g keeps its
    # sign while W > 2). optimizer=lion: the file's weight_decay 0, so W falls by lr per step,
    # 8 - 50 * 0.01 = 7.5; optimizer.name=lion keeps the sgd group's other keys (the schema's
    # weight_decay 1e-4), as optimizer.name=adamw always has
    decay = np.float32(0.0 if select == "optimizer=lion" else 1e-4)
    W = np.float32(8.0)
    for _ in range(50):
        W = W - np.float32(0.01) * (np.float32(1.0) + decay * W)
    assert metrics["params"]["W"] == pytest.approx(W, rel=1e-6)
    assert abs(W - 7.5) < 2e-5 if decay == 0 else abs(W - 7.5) > 2e-4
    assert metrics["params"]["b"] == -1.0


@pytest.mark.slow
def test_a_new_optimizers_own_argument_reaches_optax(tmp_path, conf_with_new_optimizers):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_with_new_optimizers), version_base="1.3"):
        cfg = compose("config", overrides=["optimizer=rmsprop", "logger.plots=false"])
        metrics = train_and_evaluate(cfg, tmp_path / "run")
    # the same 50 steps of optax.rmsprop(0.01, decay=0.8) on the walkthrough's loss
    W = _rmsprop_walkthrough(0.8)
    assert metrics["params"]["W"] == pytest.approx(W, rel=1e-5)
    # it moved, and by decay 0.8's steps: the first is lr / sqrt(1 - decay), 0.0224, where
    # optax's default decay 0.9 steps 0.0316
    assert abs(float(W) - 8.0) > 0.4


def test_optimizer_name_builds_the_named_files_optimizer():
    # the sgd group with optimizer.name=nesterov: Nesterov's family and transform, the group's
    # other keys
    cfg = make_config("optimizer.name=nesterov", "optimizer.momentum=0.5")
    validate(cfg)
    o = cfg.optimizer
    assert (o.family, o.transform._target_, o.transform.nesterov) == ("nesterov", "optax.sgd", True)
    assert o.momentum == 0.5
    cfg = make_config("optimizer=nesterov", "optimizer.name=adamw", "optimizer.b1=0.5")
    validate(cfg)
    assert cfg.optimizer.family == "adaptive" and cfg.optimizer.transform.b1 == 0.5


@pytest.mark.parametrize(
    ("experiment", "own"),
    [
        ("housing", "nesterov"),
        ("housing_full_batch", "sgd"),
        ("housing_minibatch", "sgd"),
        ("housing_sgd", "sgd"),
    ],
)
@pytest.mark.parametrize("first", [True, False])
def test_an_experiments_optimizer_gives_way_to_the_command_lines(experiment, own, first):
    """``experiment=housing optimizer=adam`` trains Adam, whichever comes first: an experiment
    picks its optimizer in its defaults list, which a command line's choice replaces."""
    cfg = make_config(f"experiment={experiment}")
    validate(cfg)
    assert cfg.optimizer.name == own
    args = [f"experiment={experiment}", "optimizer=adam"]
    cfg = make_config(*(args if first else args[::-1]))
    validate(cfg)
    o = cfg.optimizer
    assert (o.name, o.family, o.transform._target_) == ("adam", "adaptive", "optax.adam")


def test_an_optimizer_file_without_a_family_is_named(tmp_path, conf_with_new_optimizers):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    bad = conf_with_new_optimizers / "optimizer" / "lion.yaml"
    bad.write_text(LION.replace("family: adaptive\n", ""))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_with_new_optimizers), version_base="1.3"):
        cfg = compose("config", overrides=["optimizer.name=lion"])
        with pytest.raises(UserError, match=rf"^{re.escape(str(bad))}: no 'family'"):
            validate(cfg)


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["optimizer.transform._target_=optax.adabeleif"],
            "bad config value optimizer.transform._target_='optax.adabeleif': optax has no "
            "'adabeleif'; did you mean 'optax.adabelief'?",
        ),
        (
            ["model._target_=models.linear.LinearRegresion"],
            "bad config value model._target_='models.linear.LinearRegresion': models.linear has "
            "no 'LinearRegresion'; did you mean 'models.linear.LinearRegression'?",
        ),
        (
            ["model._target_=modles.linear.LinearRegression"],
            "bad config value model._target_='modles.linear.LinearRegression': no module named "
            "'modles'; name a function or class importable as module.name (is its package "
            "installed?)",
        ),
        (
            ["optimizer=adam", "+optimizer.transform.epss=1e-8"],
            "bad config key optimizer.transform.epss: optax.adam takes no argument 'epss' (it "
            "takes b1, b2, eps, eps_root, mu_dtype, nesterov); did you mean "
            "'optimizer.transform.eps'?",
        ),
        (
            ["optimizer.transform._target_=optax.scale"],
            "bad config value optimizer.transform._target_='optax.scale': it takes no "
            "'learning_rate', which the run passes; name a callable that takes learning_rate, "
            "momentum",
        ),
        (
            ["model._target_=optax.adam"],
            "bad config value model._target_='optax.adam': it takes no 'in_features', which the "
            "run passes; name a callable that takes in_features, rngs",
        ),
        (
            ["+model.widht=3"],
            "bad config key model.widht: models.linear.LinearRegression takes no argument "
            "'widht' (it takes W_init, W_value, b_init, b_value, init_scale); drop it: "
            "~model.widht",
        ),
        (
            ["optimizer.transform.nesterov=maybe"],  # optax would take the string as true
            "bad config value optimizer.transform.nesterov='maybe': allowed true or false",
        ),
        (
            ["optimizer=adam", "optimizer.transform.b1=high"],
            "bad config value optimizer.transform.b1='high': a number, as its default 0.9",
        ),
        (
            ["+optimizer.transform.learning_rate=0.5"],  # the run's own would win, silently
            "bad config key optimizer.transform.learning_rate: the run passes learning_rate "
            "itself; drop it: ~optimizer.transform.learning_rate; set optimizer.lr (and "
            "optimizer.schedule) instead",
        ),
        (
            ["optimizer=momentum", "+optimizer.transform.momentum=0.0"],
            "bad config key optimizer.transform.momentum: the run passes momentum itself; drop "
            "it: ~optimizer.transform.momentum; set optimizer.momentum instead",
        ),
        (
            ["+model.in_features=3"],
            "bad config key model.in_features: the run passes in_features itself; drop it: "
            "~model.in_features (the run counts the data's columns)",
        ),
        (
            ["optimizer.transform._partial_=false"],
            "bad config value optimizer.transform._partial_=False: allowed true (the run "
            "passes learning_rate when it builds the optimizer)",
        ),
        (
            ["optimizer.transform._target_=optax.GradientTransformation"],  # a NamedTuple
            "bad config value optimizer.transform._target_='optax.GradientTransformation': it "
            "takes no 'learning_rate', which the run passes; name a callable that takes "
            "learning_rate, momentum",
        ),
        (
            ["optimizer.transform._target_=optax.adam"],  # on the sgd group
            "bad config value optimizer.transform._target_='optax.adam': it takes no 'momentum', "
            "which the run passes; name a callable that takes learning_rate, momentum (an "
            "optimizer without momentum: a file with family: adaptive, as optimizer=adam)",
        ),
        (
            ["optimizer.family=adaptive"],  # the file's family would replace it
            f"bad override optimizer.family=adaptive: optimizer.family comes from the "
            f"optimizer's file ({CONF / 'optimizer' / 'sgd.yaml'}); pick another optimizer "
            "(optimizer=NAME) or write a file for it",
        ),
        (
            ["model._target_=flax.nnx.Linear", "~model.W_init", "~model.W_value"]
            + ["~model.b_init", "~model.b_value", "~model.init_scale"],
            "bad config value model._target_='flax.nnx.Linear': it needs 'out_features', which "
            "nothing gives; add it: +model.out_features=VALUE",
        ),
        (
            ["model=quadratic"],  # data=toy sets the walkthrough's initial W and b
            "bad config keys model.W_init, model.W_value, model.b_init, model.b_value: "
            "models.polynomial.QuadraticRegression takes none of them (it takes init_scale); "
            "drop them: ~model.W_init ~model.W_value ~model.b_init ~model.b_value",
        ),
    ],
)
def test_a_target_or_argument_that_cannot_be_built_is_named_before_any_data(overrides, line):
    """Checked in ``validate``, before any data is read: the nearest existing name, from the
    module's own names or the constructor's own parameters."""
    with pytest.raises(UserError) as err:
        validate(make_config(*overrides), overrides)
    assert str(err.value) == line
    if "drop" in line:  # the advice, followed, is a config that validates
        drop = re.search(r"drop (?:it|them): ((?:~\S+)(?: ~\S+)*)", line).group(1)
        followed = [*overrides, *drop.rstrip(";").split()]
        validate(make_config(*followed), followed)


def test_the_step_size_is_tuned_for_the_method_optax_is_given():
    """optimizer.transform.nesterov=true makes the momentum group's optax.sgd Nesterov's
    method: lr=auto and the stability bound are Nesterov's then, not heavy ball's."""
    from training.optim import HEAVY_BALL, NESTEROV, method_of

    overrides = ["optimizer=momentum", "optimizer.transform.nesterov=true"]
    cfg = make_config(*overrides)
    validate(cfg, overrides)
    assert cfg.optimizer.transform.nesterov is True and method_of(cfg.optimizer) == NESTEROV
    cfg = make_config("optimizer=momentum")
    validate(cfg, [])
    assert method_of(cfg.optimizer) == HEAVY_BALL


def test_a_copied_optimizer_file_that_keeps_its_name_is_refused(conf_with_new_optimizers):
    """A copy of adam.yaml saved as mine.yaml, name: adam left: optimizer=mine would train
    Adam, whatever the copy's _target_ says."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    mine = conf_with_new_optimizers / "optimizer" / "mine.yaml"
    adam = (conf_with_new_optimizers / "optimizer" / "adam.yaml").read_text()
    mine.write_text(adam.replace("optax.adam", "optax.adabelief"))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_with_new_optimizers), version_base="1.3"):
        cfg = compose("config", overrides=["optimizer=mine"])
        with pytest.raises(UserError) as err:
            validate(cfg, [], {"optimizer": "mine"})  # Hydra's choice: the file picked
        assert str(err.value) == (
            f"bad config file {mine}: name: adam, but the file is mine.yaml, and optimizer.name "
            "picks a file by its file name; set name: mine in it"
        )
        cfg = compose("config", overrides=["optimizer=adam"])  # the original still runs
        validate(cfg, [], {"optimizer": "adam"})
        mine.write_text(mine.read_text().replace("name: adam", "name: mine"))  # the advice
        cfg = compose("config", overrides=["optimizer=mine"])
        validate(cfg, [], {"optimizer": "mine"})
        assert (cfg.optimizer.name, cfg.optimizer.transform._target_) == ("mine", "optax.adabelief")


def test_a_model_must_give_one_prediction_a_row():
    import jax.numpy as jnp

    from training.build import refuse_other_output_shapes

    params = {"W": jnp.zeros((4, 1))}
    with pytest.raises(UserError) as err:
        refuse_other_output_shapes(lambda p, x: x @ p["W"], params, 4, "mine.Wide")
    assert str(err.value) == (
        "bad config value model._target_='mine.Wide': it maps 3 rows of 4 features to an output "
        "of shape (3, 1), not (3,), one prediction a row; return its last axis dropped, e.g. "
        "y[:, 0]"
    )
    refuse_other_output_shapes(lambda p, x: (x @ p["W"])[:, 0], params, 4, "mine.Wide")


@pytest.mark.slow
def test_the_saved_config_records_the_optimizer_that_trains(tmp_path):
    proc = run_train(
        "experiment=housing",
        "optimizer.name=adam",
        "trainer.epochs=2",
        "logger.plots=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr
    opt = OmegaConf.load(tmp_path / ".hydra" / "config.yaml").optimizer
    assert (opt.name, opt.family, opt.transform._target_) == ("adam", "adaptive", "optax.adam")


def _line_for_lion_file(conf, text: str) -> str:
    """train.py's one line when ``optimizer=lion`` composes with ``text`` as lion.yaml."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from training import cli

    (conf / "optimizer" / "lion.yaml").write_text(text)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as exc:
            compose("config", overrides=["optimizer=lion"])
    return cli._compose_failure(exc.value)


def test_a_key_the_schema_lacks_in_an_optimizer_file_names_the_file(conf_with_new_optimizers):
    lion = LION.replace("family:", "trust_clip: true\nfamily:")
    assert _line_for_lion_file(conf_with_new_optimizers, lion) == (
        "bad config file conf/optimizer/lion.yaml: optimizer.trust_clip is not a config key; "
        "an argument of optax's constructor goes under transform:"
    )


def _train_as_the_command_line(conf, overrides, workdir):
    """``python train.py OVERRIDES`` with ``conf`` as the config directory: composed with the
    Hydra config, which the run reads the command line's overrides from."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        try:
            return cfg, train_and_evaluate(cfg, workdir)
        finally:
            HydraConfig.instance().cfg = None


def _rmsprop_walkthrough(decay: float) -> float:
    """W after 50 steps of optax.rmsprop(0.01, decay) on the walkthrough's loss from W = 8."""
    import jax
    import jax.numpy as jnp
    import optax

    x = jnp.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    y = 2 * x - 1
    tx = optax.rmsprop(0.01, decay=decay)
    W = jnp.float32(8.0)
    state = tx.init(W)
    grad = jax.grad(lambda W: jnp.mean((W * x - 1 - y) ** 2))
    for _ in range(50):
        update, state = tx.update(grad(W), state, W)
        W = optax.apply_updates(W, update)
    return float(W)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["optimizer=rmsprop", "optimizer.transform.decay=0.5"],
        # another group naming the file: the key is new to the composed transform, so `+`
        ["optimizer.name=rmsprop", "+optimizer.transform.decay=0.5"],
    ],
)
def test_a_transform_override_reaches_optax(tmp_path, conf_with_new_optimizers, overrides):
    cfg, metrics = _train_as_the_command_line(
        conf_with_new_optimizers, [*overrides, "logger.plots=false"], tmp_path / "run"
    )
    assert cfg.optimizer.transform.decay == 0.5
    W = _rmsprop_walkthrough(0.5)
    assert metrics["params"]["W"] == pytest.approx(W, rel=1e-5)
    # not the file's 0.8 nor optax's default 0.9: the first step is lr / sqrt(1 - decay)
    assert abs(W - _rmsprop_walkthrough(0.8)) > 0.02
    assert abs(W - _rmsprop_walkthrough(0.9)) > 0.02


def test_check_overrides_builds_the_transform_with_the_overrides():
    cfg = make_config("optimizer.name=adam", "+optimizer.transform.b1=0.5")
    validate(cfg, ["optimizer.name=adam", "+optimizer.transform.b1=0.5"])
    assert (cfg.optimizer.transform._target_, cfg.optimizer.transform.b1) == ("optax.adam", 0.5)
    assert cfg.optimizer.transform.b2 == 0.999  # the file's ${..b2}: the group's key


def refusal(capsys, args: list[str]) -> str:
    """What train.py's check of ``args`` prints as it exits with status 2."""
    from training.cli import check_overrides

    with pytest.raises(SystemExit) as exit_:
        check_overrides(args)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["+optimizer.lrr=0.1"],
            "bad override +optimizer.lrr=0.1: nothing reads the key 'optimizer.lrr', so the run "
            "would ignore it; did you mean 'optimizer.lr'?",
        ),
        (
            ["++lr=0.1"],
            "bad override ++lr=0.1: nothing reads the key 'lr', so the run would ignore it; "
            "did you mean 'optimizer.lr'?",
        ),
        (
            ["+optimizer.decay=0.5"],
            "bad override +optimizer.decay=0.5: nothing reads the key 'optimizer.decay', so the "
            "run would ignore it; did you mean 'optimizer.decay_rate'?",
        ),
        # the unknown key's message suggests the nearest key, not `+`, which would be ignored
        (
            ["optimizer.lrr=0.1"],
            "bad override: there is no config key 'optimizer.lrr'; did you mean 'optimizer.lr'?",
        ),
        (["zzz=1"], "bad override: there is no config key 'zzz' (the README lists every key)"),
        (
            ["optimizer.name=adam", "optimizer.transform.b1=0.5"],
            "bad override: there is no config key 'optimizer.transform.b1' in the composed "
            "group; '+optimizer.transform.b1=...' passes a new argument to the constructor",
        ),
        (  # a misspelt argument of the group's own constructor: its nearest name
            ["optimizer=adam", "optimizer.transform.b11=0.5"],
            "bad override: there is no config key 'optimizer.transform.b11' in the composed "
            "group; did you mean 'optimizer.transform.b1'? ('+optimizer.transform.b11=...' "
            "passes a new argument to the constructor)",
        ),
    ],
)
def test_an_added_key_nothing_reads_is_refused(capsys, args, line):
    assert refusal(capsys, args) == f"error: {line}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["++optimizer.lr=0.1"],  # an existing key: ++ sets it
        ["optimizer.name=adam", "+optimizer.transform.b1=0.5"],  # optax's argument
        # (a model's constructor argument: +model.KEY, checked against its signature in
        # test_a_target_or_argument_that_cannot_be_built_is_named_before_any_data)
        ["+hydra.job.env_set.FOO=1"],
    ],
)
def test_a_key_the_run_reads_may_be_added(args):
    from training.cli import check_overrides

    assert check_overrides(args).argv == args


def _sweep_subdir(*overrides: str) -> str:
    """``hydra.sweep.subdir`` as composed, unresolved."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.sweep)["subdir"]


def test_optuna_trials_are_numbered_and_a_grids_runs_named():
    # a trial's overrides (each parameter at full precision, data.path) are too long a name
    assert _sweep_subdir("hparams_search=optuna") == "${hydra.job.num}"
    assert _sweep_subdir() == "${hydra:job.override_dirname}"


WHY = "hparams_search ranks its trials by the validation rows' RMSE, and data.val_fraction="


@pytest.mark.parametrize(
    ("data", "advice"),
    [
        ([], "0 holds none out; set data.val_fraction=0.2 (or cross-validate with data.folds=3)"),
        (
            ["data=synthetic", "data.n_samples=14", "data.test_fraction=0.5"],
            "0 holds none out; set data.val_fraction=0.2 (or cross-validate with data.folds=3)",
        ),
        (  # a CSV: its rows are not read yet
            ["experiment=housing", "data.val_fraction=0"],
            "0 holds none out; set data.val_fraction=0.2 (or cross-validate with data.folds=5)",
        ),
        (["data=synthetic", "data.n_samples=3"], "0 holds none out; set data.val_fraction=0.2"),
        (  # a fraction that rounds to no row: every trial scored infinity, exit 0
            ["data=synthetic", "data.n_samples=4", "data.val_fraction=0.1"],
            "0.1 holds none out of the 4 rows; set data.val_fraction=0.2 (or cross-validate "
            "with data.folds=2)",
        ),
        (
            ["data=synthetic", "data.n_samples=2", "data.val_fraction=0.2"],
            "0.2 holds none out of the 2 rows; 2 rows are too few to search on",
        ),
    ],
)
def test_a_search_with_no_validation_rows_is_refused(capsys, tmp_path, data, advice):
    # every trial scored infinity: 'Best value: inf', an arbitrary best, exit 0
    from training.cli import check_overrides

    args = ["-m", "hparams_search=optuna", *data, f"hydra.sweep.dir={tmp_path / 's'}"]
    with pytest.raises(SystemExit) as exit_:
        check_overrides(args)
    assert exit_.value.code == 2
    assert capsys.readouterr().err == f"error: bad override: {WHY}{advice}\n"
    for followed in re.findall(r"data\.(?:val_fraction|folds)=[0-9.]+", advice.split(";")[1]):
        assert check_overrides([*args, followed])  # followed: accepted


def one_trial(sweep: Path, *overrides: str) -> subprocess.CompletedProcess:
    """A search of one trial, ``overrides`` added, into ``sweep``."""
    return run_train(
        "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1", *overrides,
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip


def test_a_search_on_a_csv_whose_fraction_holds_no_row_fails_each_trial(tmp_path):
    # the CSV's rows are counted by each trial: 0.0005 of 546 rounds to none
    proc = one_trial(tmp_path / "s", "experiment=housing", "data.val_fraction=0.0005")
    assert proc.returncode != 0
    assert (
        f"error: this run failed: bad config value: {WHY}0.0005 holds none out of the 546 rows; "
        "set data.val_fraction=0.2 (or cross-validate with data.folds=5)"
    ) in proc.stderr
    # no trial finished: no best of value inf, as Optuna wrote it
    assert proc.stderr.rstrip().endswith(
        "; no run finished, so there is no optimization_results.yaml"
    )
    assert not (tmp_path / "s" / "optimization_results.yaml").exists()


def test_a_search_on_the_walkthrough_runs_with_the_folds_advised(tmp_path):
    # data.folds=5, advised before, failed every trial of the 6-point walkthrough: Best value inf
    sweep = tmp_path / "s"
    proc = one_trial(sweep, "data.folds=3", "trainer.epochs=5")
    assert proc.returncode == 0, proc.stderr
    best = OmegaConf.load(sweep / "optimization_results.yaml")["best_value"]
    assert np.isfinite(best)
    # the trial drew a batch size for its full-batch loader: no warning a trial (noise)
    assert "is not read by loader=full_batch" not in proc.stdout + proc.stderr


def test_a_sweep_whose_run_directory_name_is_too_long_is_one_line(capsys, tmp_path):
    from training.cli import check_overrides

    columns = "_".join(f"column_{i:03d}" for i in range(30))  # 30 * 11 bytes: over 255
    args = ["-m", "model.W_value=1,2", f"+model.x={columns}", f"hydra.sweep.dir={tmp_path}"]
    with pytest.raises(SystemExit) as exit_:
        check_overrides(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: bad override: the sweep's run ")
    assert "over the file system's 255" in err
    assert "'hydra.sweep.subdir=${hydra.job.num}'" in err
    # numbered, the same sweep is accepted
    assert check_overrides([*args, "hydra.sweep.subdir=${hydra.job.num}"])
    assert not any(tmp_path.iterdir())  # nothing was made


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["optimizer=adam", "optimizer.b1=high"],
            "bad config value optimizer.b1='high': allowed a number",
        ),
        (["logger.plots=maybe"], "bad config value logger.plots='maybe': allowed true or false"),
        (
            ["loader.batch_size=some"],
            "bad config value loader.batch_size='some': allowed a whole number",
        ),
    ],
)
def test_a_value_of_the_wrong_type_is_named_with_what_is_allowed(overrides, line):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from training import cli

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as exc:
            compose("config", overrides=overrides)
    assert cli._compose_failure(exc.value) == line


def test_a_value_of_the_wrong_type_in_a_file_names_the_file(conf_with_new_optimizers):
    lion = LION.replace("b1: 0.9", "b1: high")
    assert _line_for_lion_file(conf_with_new_optimizers, lion) == (
        "bad config file conf/optimizer/lion.yaml: optimizer.b1='high': allowed a number"
    )


def test_a_momentum_an_adaptive_optimizer_does_not_use_is_warned_of_once(capsys):
    """optimizer.momentum is the gradient-descent families' (adam is not given it): set on the
    command line for adam it is a one-line warning, once however often the run validates; a
    search space that sets it for every optimizer (a sweep) is not warned of."""
    overrides = ["optimizer=adam", "optimizer.momentum=0.5"]
    for _ in range(2):
        validate(make_config(*overrides), overrides)
    assert capsys.readouterr().err == (
        "warning: optimizer.momentum=0.5 is not used: adam (family adaptive) takes no momentum "
        "from the run; its own arguments go under optimizer.transform "
        "(+optimizer.transform.momentum=... for rmsprop)\n"
    )


@pytest.mark.slow
def test_train_py_refuses_the_copied_file_it_was_given_and_runs_the_original(tmp_path):
    """Hydra's choice of file reaches the check: `optimizer=mine` (a copy of adam.yaml, on the
    search path, name: adam kept) is one line naming it; `optimizer=adam` beside it trains."""
    extra = tmp_path / "conf" / "optimizer"
    extra.mkdir(parents=True)
    (extra / "mine.yaml").write_text((CONF / "optimizer" / "adam.yaml").read_text())
    search = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    bad, good = concurrently(
        lambda: run_train("optimizer=mine", search, f"hydra.run.dir={tmp_path / 'bad'}"),
        lambda: run_train("optimizer=adam", search, f"hydra.run.dir={tmp_path / 'good'}"),
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error: bad config file {extra / 'mine.yaml'}: name: adam, but the file is mine.yaml, "
        "and optimizer.name picks a file by its file name; set name: mine in it"
    )
    assert good.returncode == 0, good.stderr


@pytest.mark.parametrize(
    ("overrides", "key", "data"),
    [
        (["data.path=prices.csv"], "data.path='prices.csv'", "toy"),
        (["experiment=synthetic", "data.target=price"], "data.target='price'", "synthetic"),
    ],
)
def test_a_file_given_without_data_csv_is_refused_not_ignored(overrides, key, data):
    """The toy and synthetic data read no file: a CSV named without data=csv trained on the
    walkthrough's six points, silently. The advice, followed, reads the file."""
    with pytest.raises(UserError) as exc:
        validate(make_config(*overrides), overrides)
    assert str(exc.value) == (
        f"bad config value {key}: only data=csv reads a file, and this run's data is "
        f"data={data}; add data=csv to the command"
    )
    followed = make_config(*overrides, "data=csv", "data.path=x.csv", "data.target=price")
    validate(followed)
    assert followed.data.name == "csv"


def test_a_file_an_experiment_names_is_said_to_come_from_it():
    # experiment=housing data=synthetic: "add data=csv to the command", followed, trained on
    # the housing file, not the synthetic data asked for
    overrides = ["experiment=housing", "data=synthetic"]
    with pytest.raises(UserError) as exc:
        validate(make_config(*overrides), overrides)
    assert str(exc.value).endswith(
        "this run's data is data=synthetic; the config sets it (an experiment= that trains on a "
        "file does): add data=csv to train on the file, or leave that experiment out to train "
        "on data=synthetic"
    )
    validate(make_config("data=synthetic"), ["data=synthetic"])  # without it: synthetic data


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (  # Hydra's own keys: the nearest, not the + of a constructor argument
            ["hydra.run.dirr=x"],
            "bad override: there is no config key 'hydra.run.dirr'; did you mean 'hydra.run.dir'?",
        ),
        (
            ["optimizer={a:1}"],
            "bad override: optimizer is a config group: choose one of its files (optimizer=NAME "
            "for conf/optimizer/NAME.yaml) or set one of its keys (optimizer.KEY=VALUE)",
        ),
        (
            ["trainer.epochs=${oops}"],
            "bad override: Interpolation key 'oops' not found; full_key: trainer.epochs",
        ),
        (
            ["trainer.epochs=${oc.env:NO_SUCH_VARIABLE_HERE}"],
            'bad override: KeyError raised while resolving interpolation: "Environment '
            "variable 'NO_SUCH_VARIABLE_HERE' not found\"; full_key: trainer.epochs",
        ),
        (
            ["hydra.run.dir=${nope.key}"],
            "bad config value hydra.run.dir: Interpolation key 'nope.key' not found; full_key: "
            "hydra.run.dir",
        ),
        (  # set for a sweep's runs only
            ["hydra.run.dir=runs/${hydra.job.id}"],
            "bad config value hydra.run.dir: MissingMandatoryValue while resolving "
            "interpolation: Missing mandatory value: hydra.job.id; full_key: hydra.run.dir",
        ),
        (
            ["hydra.run.dir=${now:}"],
            "bad config value hydra.run.dir: TypeError raised while resolving interpolation: "
            "setup_globals.<locals>.<lambda>() missing 1 required positional argument: "
            "'pattern'; full_key: hydra.run.dir",
        ),
        (
            ["hydra.run.dir=''"],
            "bad config value hydra.run.dir='': it is empty; name a directory for the run",
        ),
    ],
)
def test_a_single_run_s_override_that_cannot_be_used_is_one_line(capsys, args, line):
    assert refusal(capsys, args) == f"error: {line}\n"


def test_a_run_directory_that_is_a_file_or_cannot_be_made_is_one_line(
    capsys, tmp_path, monkeypatch
):
    from training.cli import check_overrides, run_composed

    # Hydra's logging, configured by the run, would write to this test's captured streams
    monkeypatch.setattr("hydra.core.utils.configure_log", lambda *args: None)

    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit) as exit_:
        check_overrides([f"hydra.run.dir={tmp_path / 'afile'}"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        f"error: bad config value hydra.run.dir='{tmp_path / 'afile'}': it is not a "
        "directory; name a directory for the run\n"
    )
    # a directory below a file: Hydra's own makedirs fails, before the run starts
    below = tmp_path / "afile" / "run"
    checked = check_overrides([f"hydra.run.dir={below}", "logger.plots=false"])
    with pytest.raises(SystemExit) as exit_:
        run_composed(lambda cfg: pytest.fail("the run started"), checked.run)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: cannot write the run directory {below}: Not a directory; choose another "
        "hydra.run.dir"
    )


def test_hydra_mode_multirun_with_a_sweep_s_values_is_a_sweep():
    from training.cli import check_overrides

    args = ["hydra.mode=MULTIRUN", "trainer.epochs=2,3"]
    assert check_overrides(args) == (["-m", *args], None)
    # a value list in a single run is still Hydra's ambiguity, in one line
    with pytest.raises(SystemExit):
        check_overrides(["trainer.epochs=2,3"])


def test_a_single_run_reads_optimizer_files_on_the_command_line_s_search_path(tmp_path):
    from training.cli import check_overrides

    extra = tmp_path / "conf" / "optimizer"
    extra.mkdir(parents=True)
    (extra / "lion.yaml").write_text(
        "name: lion\nlr: 1.0e-4\nfreeze: []\nschedule: constant\nfamily: adaptive\n"
        "transform:\n  _target_: optax.lion\n  _partial_: true\n"
    )
    search = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    checked = check_overrides([search, "optimizer=lion", "logger.plots=false"], job="mine")
    assert checked.run.optimizer.transform._target_ == "optax.lion"
    assert checked.run.hydra.job.name == "mine"  # the script's name, as hydra.main takes it


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (  # Hydra printed its multi-line error (--cfg) or a traceback (--help)
            ["--cfg", "job", "trainer.epoch=3"],
            "bad override: there is no config key 'trainer.epoch'; did you mean 'trainer.epochs'?",
        ),
        (
            ["--help", "trainer.epoch=3"],
            "bad override: there is no config key 'trainer.epoch'; did you mean 'trainer.epochs'?",
        ),
        (  # Hydra printed a traceback
            ["--cfg", "job", "--resolve", "trainer.epochs=${oops}"],
            "bad override: Interpolation key 'oops' not found; full_key: trainer.epochs",
        ),
        (
            ["--cfg", "hydra", "--resolve", "hydra.run.dir=${nope}"],
            "bad override: Interpolation key 'nope' not found; full_key: hydra.run.dir",
        ),
        (
            ["--hydra-help", "trainer.epochs=7"],
            "--hydra-help shows Hydra's own help and takes no overrides: drop them",
        ),
        (
            ["-m", "--cfg", "job", "optimizer.lr=0.1,0.2"],
            "Hydra takes one of --run, --multirun (-m), --cfg, --info and --shell-completion at "
            "a time; keep one",
        ),
        (  # Hydra printed "Cannot find primary config" and its search path, exit 1
            ["--config-name", "nope"],
            f"--config-name nope: {CONF} has no nope.yaml (train.py's config is config.yaml "
            "there); drop --config-name, or add --config-dir DIR for a directory that holds "
            "nope.yaml",
        ),
        (  # Hydra said "package 'trainer.nope' not found in config", exit 1
            ["--cfg", "job", "-p", "trainer.nope"],
            "-p/--package trainer.nope: the job config has no key trainer.nope; give one it has, "
            "such as trainer.epochs, trainer.tol, trainer.device, trainer.max_steps_per_call, "
            "trainer.checkpoint_every, trainer.keep_checkpoints, trainer.resume, "
            "trainer.divergence_factor, trainer.compilation_cache, trainer.distributed",
        ),
        (
            ["--cfg", "job", "-p", "hydra.run"],
            "-p/--package hydra.run: the job config has no key hydra.run; give one it has, such "
            "as seed, data, loader, model, optimizer, loss, trainer, logger",
        ),
        (  # argparse printed its usage block, then this
            ["--cfg", "jobs"],
            "argument --cfg/-c: invalid choice: 'jobs' (choose from 'job', 'hydra', 'all'); "
            ".venv/bin/python train.py --hydra-help lists the flags",
        ),
        (
            ["--foo", "trainer.epochs=3"],
            "unrecognized arguments: --foo; .venv/bin/python train.py --hydra-help lists the flags",
        ),
        (  # the key is there, but null
            ["--cfg", "job", "-p", "data.path"],
            "-p/--package data.path: data.path is null in the job config, and Hydra prints no "
            "null node; show the node above it: --cfg job -p data",
        ),
    ],
)
def test_hydra_s_own_flags_with_an_override_that_cannot_be_used_are_one_line(capsys, args, line):
    assert refusal(capsys, args) == f"error: {line}\n"


@pytest.mark.parametrize(
    "args",
    [
        ["--cfg", "job", "trainer.epochs=3"],
        ["--cfg", "job", "--resolve", "optimizer=adam", "optimizer.b1=0.8"],
        ["--cfg", "hydra"],
        ["--info", "defaults"],
        ["--cfg", "job", "-p", "trainer"],
        ["--cfg", "hydra", "-p", "hydra.run"],
        ["--config-name", "config", "--cfg", "job", "-p", "data"],
    ],
)
def test_hydra_s_own_flags_are_left_to_hydra(args, capsys):
    from training.cli import check_overrides

    assert check_overrides(args) == (args, None)
    assert capsys.readouterr() == ("", "")  # Hydra answers (--version was printed twice)
    assert check_overrides(["--version"]) == (["--version"], None)
    assert capsys.readouterr() == ("", "")


def test_the_check_leaves_hydra_s_config_as_it_found_it():
    # it sets Hydra's config to check the run (hydra.searchpath, ${hydra:...}); left set, a
    # later run in the same process took itself for one of Hydra's (a divergence's advice read
    # a mode Hydra had not set)
    from hydra.core.hydra_config import HydraConfig

    from training.cli import check_overrides

    assert not HydraConfig.initialized()
    assert check_overrides(["logger.plots=false"]).run is not None
    assert check_overrides(["--cfg", "job", "--resolve", "trainer.epochs=3"]).run is None
    assert not HydraConfig.initialized()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1
        ),
        min_size=1,
        max_size=5,
    )
)
def test_a_shell_word_is_read_back_by_bash_as_it_was(args):
    """What the advice in an error quotes (a run directory, an override with ``${...}``) is
    pasted into a shell: bash reads each word back as it was, ``$``, quotes and ``!`` included."""
    from errors import shell_word

    line = " ".join(shell_word(a) for a in args)
    # a tab or an invisible space is written as an escape: pasted raw, a tab completes a file
    # name, a no-break or zero-width space looks like a plain one or none (helper-59)
    assert line.isprintable()
    for locale in ({}, {"LC_ALL": "C"}):  # bash's \\u is left as written outside UTF-8
        read = subprocess.run(
            ["bash", "-c", f"printf '%s\\0' {line}"],
            capture_output=True,
            check=True,
            env={**os.environ, **locale},
        ).stdout
        assert read.decode("utf-8", "surrogateescape").split("\0")[:-1] == args


@pytest.mark.parametrize("word", ["~", "~/runs", "x=~/y", "a:~", "data.path=~/h.csv"])
def test_a_tilde_bash_would_expand_is_quoted(word):
    # hypothesis found '~' given back unquoted: bash read it as the home directory
    from errors import shell_word

    read = subprocess.run(
        ["bash", "-c", f"printf '%s' {shell_word(word)}"], capture_output=True, check=True
    ).stdout.decode()
    assert read == word


@pytest.mark.parametrize(
    ("key", "text", "value"), [("trainer.epochs", "3", 3), ("optimizer.lr", "0.05", 0.05)]
)
def test_a_number_from_an_environment_variable_is_refused_with_the_override_that_reads_it(
    capsys, monkeypatch, key, text, value
):
    # oc.env gives text: '3' is no integer. The line shows the override that decodes it, which,
    # read back by bash as pasted, gives the number
    monkeypatch.setenv("EPOCHS_OR_LR", text)
    err = refusal(capsys, [f"{key}=${{oc.env:EPOCHS_OR_LR}}", "hydra.run.dir=unused"]).strip()
    assert "\n" not in err and err.startswith(f"error: bad config value {key}='{text}': allowed")
    assert "${oc.env:EPOCHS_OR_LR} gives the text" in err
    pasted = err.split("read it as one with oc.decode, ", 1)[1]
    word = subprocess.run(
        ["bash", "-c", f"printf '%s' {pasted}"], capture_output=True, text=True, check=True
    ).stdout
    assert OmegaConf.select(make_config(word), key) == value


def test_text_from_an_environment_variable_that_is_no_number_gets_no_decoding_advice(
    capsys, monkeypatch
):
    monkeypatch.setenv("EPOCHS", "many")
    err = refusal(capsys, ["trainer.epochs=${oc.env:EPOCHS}", "hydra.run.dir=unused"]).strip()
    assert err == (
        "error: bad config value trainer.epochs='many': allowed an integer from 1 to "
        "1,000,000,000,000 or auto"
    )


def test_a_sweep_whose_run_names_would_hold_a_space_is_refused_before_it_runs(capsys, tmp_path):
    # Hydra writes a value's space into the run's name as '\ ': every run failed, one by one
    args = ["-m", "data=csv", "data.path=h.csv", "data.target=price", "data.drop=[bed rooms]"]
    sweep = [*args, "optimizer.lr=0.1,0.2", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    assert refusal(capsys, sweep) == (
        "error: bad override data.drop=[bed rooms]: a sweep names each run's directory after its "
        "overrides, and Hydra writes this value's space there as '\\ ', which orbax's "
        "checkpoints cannot hold; number the runs instead with "
        "'hydra.sweep.subdir=${hydra.job.num}' (in single quotes, which keep the shell from "
        "reading the $)\n"
    )
    assert not (tmp_path / "sweep").exists()
    from training.cli import check_overrides

    numbered = check_overrides([*sweep, "hydra.sweep.subdir=${hydra.job.num}"])  # as advised
    assert numbered.run is None  # a sweep, for hydra.main to run


@pytest.mark.parametrize(
    ("arg", "after", "path"),
    [
        ("data.path=e,f.csv", "quote it for Hydra: ", "e,f.csv"),
        ("data.path=c${d}.csv", "write it as '\\${': ", "c${d}.csv"),
    ],
)
def test_a_path_hydra_reads_otherwise_is_shown_written_as_text(capsys, arg, after, path):
    # a ',' made the value a sweep, and ${d} an interpolation: Hydra's lines gave a template,
    # or nothing; the shown override, pasted into bash, gives the path as text
    err = refusal(capsys, ["data=csv", arg, "data.target=price", "hydra.run.dir=unused"]).strip()
    assert "\n" not in err and err.startswith("error: bad override")
    shown = err.split(after, 1)[1]
    word = subprocess.run(
        ["bash", "-c", f"printf '%s' {shown}"], capture_output=True, text=True, check=True
    ).stdout
    assert make_config("data=csv", word, "data.target=price").data.path == path


def test_a_trials_advice_is_sized_to_the_rows_it_read():
    # a 5-row CSV was advised data.folds=5, which failed every trial ("use at most 2")
    from training.cli import no_validation_rows

    data = make_config("data=csv", "data.path=f.csv", "data.target=y").data
    data.val_fraction = 0.01
    assert no_validation_rows(data, 5).endswith(
        "holds none out of the 5 rows; set data.val_fraction=0.2 (or cross-validate with "
        "data.folds=2)"
    )
    assert no_validation_rows(data, None).endswith("(or cross-validate with data.folds=5)")


@example(["${x}", "a\\${x}", "true", "null", "Dist\\", "Lot\tArea"])
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text(
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            min_size=1,
            max_size=12,
        ).filter(lambda s: s.strip() == s),
        min_size=1,
        max_size=4,
    )
)
def test_a_list_advised_in_an_error_is_read_back_by_bash_and_hydra_as_those_names(names):
    # the advice "data.drop=[Zone (2020)]" (helper-51) was refused as it was written: each
    # item Hydra cannot read bare (a space, a comma, brackets, an accent, a number, ${) is quoted
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from errors import hydra_list

    word = hydra_list("data.drop", names)
    assert word.isprintable()  # a tab written \t, in bash's $'...'
    shell = subprocess.run(  # bytes: text mode would read a carriage return as a line end
        ["bash", "-c", f"printf '%s' {word}"], capture_output=True, check=True
    ).stdout.decode()
    parsed = OverridesParser.create().parse_override(shell).value()
    # and OmegaConf resolves it to the names: '${x}' in Hydra's quotes was an interpolation
    assert OmegaConf.to_container(OmegaConf.create({"d": parsed}), resolve=True)["d"] == names


@pytest.mark.parametrize("name", ["Région", "Zone (2020)", "Dist\\", "O'Brien's"])
def test_an_item_hydra_cannot_read_bare_is_advised_quoted_and_the_advice_works(capsys, name):
    # "data.drop=[Région]" was advised "data.drop='[Région]'", a string, then
    # "data.drop=['[Région]']", no such column: a loop (helper-51)
    err = refusal(
        capsys, ["data=csv", "data.path=f.csv", "data.target=price", f"data.drop=[{name}]"]
    )
    shown = err.strip().rsplit("inside the shell's quotes: ", 1)[1]
    word = subprocess.run(
        ["bash", "-c", f"printf '%s' {shown}"], capture_output=True, text=True, check=True
    ).stdout
    assert list(make_config("data=csv", word, "data.target=price").data.drop) == [name]


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("data.drop=[true]", "data.drop=['true']"),
        ("data.categorical=[a,null]", "data.categorical=[a,'null']"),
    ],
)
def test_a_name_hydra_reads_as_a_value_is_advised_quoted(capsys, arg, quoted):
    # helper-52: data.drop=[true] was "no column 'True'", and [null] Hydra's own merge error
    err = refusal(capsys, ["data=csv", "data.path=f.csv", "data.target=price", arg])
    assert err.strip().endswith(f'inside the shell\'s quotes: "{quoted}"'), err
    assert "\n" not in err.strip()
    assert not refusal_free_of(
        capsys, ["data=csv", "data.path=f.csv", "data.target=price", "data.drop=[2020]"]
    )  # read back as written: no error


def refusal_free_of(capsys, args: list[str]) -> str:
    """What train.py's check of ``args`` prints when it lets them through (nothing)."""
    from training.cli import check_overrides

    check_overrides(args)
    return capsys.readouterr().err


def test_a_name_with_a_literal_dollar_brace_is_advised_escaped(capsys, tmp_path):
    # helper-53: data.drop=[${x}] ended in a traceback from Hydra's record of the overrides
    args = ["data=csv", "data.path=f.csv", "data.target=price", f"hydra.run.dir={tmp_path}/r"]
    err = refusal(capsys, [*args, "data.drop=[a,${x}]"]).strip()
    assert "\n" not in err and err.startswith("error: bad override: Interpolation key 'x'")
    shown = err.rsplit("write it as '\\${': ", 1)[1]
    word = subprocess.run(
        ["bash", "-c", f"printf '%s' {shown}"], capture_output=True, text=True, check=True
    ).stdout
    drop = make_config("data=csv", word, "data.target=price").data.drop
    assert OmegaConf.to_container(drop, resolve=True) == ["a", "${x}"]


def test_a_sweep_over_a_value_with_a_backslash_is_said_to_have_one(capsys, tmp_path):
    # helper-54: the refusal said "this value's space" of a value with a backslash and no space
    sweep = ["-m", "data=csv", "data.path=h.csv", "data.target=price", "data.drop=[a\\b]"]
    err = refusal(capsys, [*sweep, "optimizer.lr=0.1,0.2", f"hydra.sweep.dir={tmp_path}/s"])
    assert "and Hydra writes this value's backslash there, which orbax's checkpoints" in err


def test_a_sweep_over_a_list_override_is_refused_until_its_runs_are_numbered(capsys, tmp_path):
    # helper-65: the README's "data.drop=[id]" put '[' in every run's name, and orbax's
    # checkpoints there could not be read back (resume started over, predict.py failed)
    sweep = ["-m", "data=csv", "data.path=h.csv", "data.target=price", "data.drop=[id]"]
    args = [*sweep, "seed=0,1", f"hydra.sweep.dir={tmp_path}/s"]
    from training.cli import NUMBER_THE_RUNS, check_overrides

    err = refusal(capsys, args)
    assert err == (
        "error: bad override data.drop=[id]: a sweep names each run's directory after its "
        "overrides, and Hydra writes this value's list with its '[', which orbax's checkpoints "
        f"cannot hold; {NUMBER_THE_RUNS}\n"
    )
    assert check_overrides([*args, "hydra.sweep.subdir=${hydra.job.num}"])
    # a '[' in the sweep's own directory: each run was refused, one after another, with
    # advice to number them, already followed (helper-66)
    numbered = ["-m", "seed=0,1", f"hydra.sweep.dir='{tmp_path}/s[1]'"]
    err = refusal(capsys, [*numbered, "hydra.sweep.subdir=${hydra.job.num}"])
    assert err == (
        f"error: bad override: the sweep directory {tmp_path}/s[1] has a '[' in its name, which "
        "orbax's checkpoints cannot hold (they could not be read back); choose a "
        "hydra.sweep.dir without one\n"
    )
    assert not any(tmp_path.iterdir())


def test_an_item_already_quoted_stays_the_name_in_the_hint_and_a_nested_list_is_no_traceback(
    capsys, tmp_path
):
    # review: the hint for "data.drop=['a b',Région]" quoted the user's quotes into the name
    # ("'a b'"), and data.drop=[[br]] ended in a TypeError's traceback
    args = ["data=csv", "data.path=f.csv", "data.target=price", f"hydra.run.dir={tmp_path}/r"]
    err = refusal(capsys, [*args, "data.drop=['a b',Région]"]).strip()
    shown = err.rsplit("inside the shell's quotes: ", 1)[1]
    word = subprocess.run(
        ["bash", "-c", f"printf '%s' {shown}"], capture_output=True, text=True, check=True
    ).stdout
    assert list(make_config("data=csv", word, "data.target=price").data.drop) == ["a b", "Région"]
    assert refusal_free_of(capsys, [*args, "data.drop=[[br]]"]) == ""  # the reader names it
