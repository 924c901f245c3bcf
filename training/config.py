"""The structured config schema: every key typed here and range-checked by :func:`validate`.

Hydra merges ``conf/`` on top of :class:`Config` (registered as ``config_schema``), so an unknown
key or a value of the wrong type fails while composing; :func:`validate` then checks ranges and
choices before any data is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from data.loaders import LOADERS
from errors import UserError, check_arguments, locate

DEVICES = ("auto", "cpu", "gpu", "tpu")


@dataclass
class DataConfig:
    name: str = "toy"
    # toy: the walkthrough's six points
    xs: list[float] = field(default_factory=lambda: [-1.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    ys: list[float] = field(default_factory=lambda: [-3.0, -1.0, 1.0, 3.0, 5.0, 7.0])
    # synthetic: y = X @ w_true + b_true + noise * N(0, 1)
    n_samples: int = 1000
    n_features: int = 4
    noise: float = 0.1
    seed: int = 0
    house_like: bool = False
    # csv
    path: str | None = None
    target: str | None = None
    features: list[str] | None = None
    drop: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)  # columns one-hot whatever they hold
    text_columns: str = "onehot"
    missing: str = "error"
    sep: str | None = None  # None: detect ',' ';' or tab
    decimal: str | None = None  # None: detect '.' or ','
    # a level seen fewer times than this in the training rows is pooled into `other`: a dummy
    # fitted on a handful of rows mostly fits their noise (one row: exactly, leverage 1)
    min_level_count: int = 5
    # a text column with more levels is free text; 50 keeps zip codes numeric unless declared
    # in `categorical` or this is raised
    max_levels: int = 50
    dates: str = "decimal_year"
    log_target: bool = False
    log_features: list[str] = field(default_factory=list)
    # preprocessing and splits (all sources)
    standardize: bool = False
    val_fraction: float = 0.0
    test_fraction: float = 0.0
    folds: int = 0  # k >= 2: also cross-validate over k folds of the non-test rows


@dataclass
class LoaderConfig:
    name: str = "full_batch"
    batch_size: int | None = None
    shuffle: bool = False
    drop_last: bool = False


@dataclass
class OptimizerConfig:
    # the file conf/optimizer/<name>.yaml that defines the optimizer: its `family` and
    # `transform` are that file's whichever group was composed (validate reads them from it)
    name: str = "sgd"
    family: str = MISSING  # a key of training.optim.FAMILIES: what lr=auto tunes for
    # optax's constructor (`_target_`, `_partial_: true`) and its arguments; open, so that a new
    # optimizer's own arguments need no schema
    transform: dict[str, Any] = field(default_factory=dict)
    # a number or "auto" (from the data: training/optim.py); OmegaConf 2.3 has no Union[float,
    # str], so both are typed Any and checked by validate
    lr: Any = "auto"
    momentum: Any = None  # None, a number in [0, 1) or "auto"
    nesterov: bool = False
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-4
    freeze: list[str] = field(default_factory=list)
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_rate: float = 0.5
    transition_steps: int = 1000
    end_lr_factor: float = 0.0


@dataclass
class LossConfig:  # training/objectives.py
    name: str = "mse"
    l2: float = 0.0  # ridge: (l2 / 2) ||W||^2 on the standardised columns' weights
    delta: float | None = None  # huber: in the target's own units


@dataclass
class DistributedConfig:
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    initialization_timeout: int = 60
    auto: bool = False  # let jax.distributed.initialize() read SLURM, Open MPI or TPU settings


@dataclass
class TrainerConfig:
    epochs: Any = "auto"  # an integer >= 1 or "auto" (training/optim.py: default_epochs)
    tol: float = 1e-6
    device: str = "auto"
    max_steps_per_call: int = 1_048_576
    checkpoint_every: int = 0
    keep_checkpoints: int = 3
    resume: bool = False
    divergence_factor: float = 1e6
    compilation_cache: bool = True  # JAX's persistent cache: training/compilation_cache.py
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


@dataclass
class LoggerConfig:
    tensorboard: bool = True
    every_n_steps: Any = "auto"  # an integer >= 1, or auto (see training/blocks.py log_period)
    print_trace: bool = False
    plots: bool = True
    plot_weights: list[str] = field(default_factory=list)  # two features; []: the largest two
    progress: str = "auto"


@dataclass
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    # a model's keys are its constructor's arguments (`_target_` names the class): open here
    model: dict[str, Any] = field(
        default_factory=lambda: {"_target_": "models.linear.LinearRegression"}
    )
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


PROJECT = Path(__file__).resolve().parent.parent


def register_schema() -> None:
    """Register :class:`Config` as ``config_schema`` and the ``${project:PATH}`` resolver: PATH
    inside this project, absolute, so that a file shipped with it (the Windsor CSV of
    ``experiment=housing``) is found whatever directory the command runs from."""
    if "config_schema.yaml" in ConfigStore.instance().repo:
        return  # once a process: storing the schema converts the dataclass again
    ConfigStore.instance().store(name="config_schema", node=Config)
    OmegaConf.register_new_resolver("project", lambda path: str(PROJECT / path), replace=True)


def config_dirs() -> list[Path]:
    """The directories Hydra composes from, in its search order: the running app's
    (``hydra.runtime.config_sources``), else those of the initialised compose API, else this
    project's ``conf/``."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        sources = [(s.schema, s.path) for s in HydraConfig.get().runtime.config_sources]
    elif GlobalHydra.instance().is_initialized():
        loader = GlobalHydra.instance().config_loader()
        sources = [(s.scheme(), s.path) for s in loader.get_sources()]
    else:
        sources = []
    return [Path(path) for scheme, path in sources if scheme == "file"] or [PROJECT / "conf"]


def optimizer_files() -> dict[str, Path]:
    """``optimizer.name`` -> the file that defines it: every ``optimizer/*.yaml`` of
    :func:`config_dirs` (the first of a name wins), names sorted within a directory."""
    found: dict[str, Path] = {}
    for directory in config_dirs():
        for path in sorted((directory / "optimizer").glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def refuse_a_misnamed_file(files: dict[str, Path], name: str, chosen: str | None) -> None:
    """``optimizer.name`` picks a file by its file name, so the chosen group file
    (``optimizer=mine``) whose ``name:`` is another (a copy of ``adam.yaml`` saved as
    ``mine.yaml``) would run that other optimizer: refused, unless the command line set
    ``optimizer.name`` itself."""
    if chosen not in files:
        return
    own = OmegaConf.load(files[chosen]).get("name")
    if own is not None and own != chosen and name == own:
        raise UserError(
            f"bad config file {files[chosen]}: name: {own}, but the file is {chosen}.yaml, and "
            f"optimizer.name picks a file by its file name; set name: {chosen} in it"
        )


def define_optimizer(opt: DictConfig, path: Path, overrides: list[str] | tuple = ()) -> None:
    """Set ``opt.family`` and ``opt.transform`` to those of ``path``, the file of ``opt.name``:
    ``optimizer.name=nesterov`` on the ``sgd`` group builds Nesterov's method, as
    ``optimizer=nesterov`` does. The transform's ``${..key}`` arguments read ``opt``'s keys.

    ``overrides`` (the command line's ``key=value`` strings) that set ``optimizer.transform``
    or a key under it are applied over the file's transform, so ``optimizer.transform.decay=0.5``
    reaches optax whichever group named the file. Raises :class:`UserError` when the file lacks
    either key."""
    from training.optim import FAMILIES

    definition = OmegaConf.load(path)
    for override in overrides:  # the file's family replaces it: a silent no-op otherwise
        if key_of(override) == "optimizer.family":
            raise UserError(
                f"bad override {override}: optimizer.family comes from the optimizer's file "
                f"({path}); pick another optimizer (optimizer=NAME) or write a file for it"
            )
    for key in ("family", "transform"):
        if key not in definition:
            raise UserError(
                f"{path}: no {key!r}; an optimizer file gives family (one of "
                f"{', '.join(FAMILIES)}) and transform (optax's _target_, _partial_: true)"
            )
    transform = definition.transform
    for key, value, delete in transform_overrides(overrides):
        if delete:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(transform, parent) if parent else transform
            if isinstance(node, DictConfig) and leaf in node:
                del node[leaf]
        elif key:
            OmegaConf.update(transform, key, value, merge=True, force_add=True)
        else:
            transform = OmegaConf.merge(transform, value)
    opt.family, opt.transform = definition.family, transform


def key_of(override: str) -> str:
    """The key a command-line override sets or deletes: ``optimizer.lr`` of
    ``++optimizer.lr=0.1``."""
    return override.lstrip("+~").split("=", 1)[0]


def transform_overrides(overrides: list[str] | tuple) -> list[tuple[str, Any, bool]]:
    """``(key under optimizer.transform, value, is a deletion)`` for each override of
    ``optimizer.transform`` or a key under it, in command-line order, as Hydra's override
    grammar reads them (``+``, ``++`` and ``~`` prefixes included)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    wanted = [o for o in overrides if "optimizer.transform" in o.split("=", 1)[0]]
    out = []
    for ov in OverridesParser.create().parse_overrides(wanted):
        key = ov.key_or_group
        if key != "optimizer.transform" and not key.startswith("optimizer.transform."):
            continue
        out.append((key[len("optimizer.transform.") :], ov.value(), ov.is_delete()))
    return out


_WARNED: set[str] = set()  # validate runs twice in train.py: before Hydra, then in the run


def warn_once(line: str) -> None:
    """``line`` on stderr, once per process."""
    import sys

    if line not in _WARNED:
        _WARNED.add(line)
        print(line, file=sys.stderr, flush=True)


def in_a_sweep() -> bool:
    """Whether the running Hydra app is a multirun (a sweep or a search)."""
    from hydra.core.hydra_config import HydraConfig

    mode = HydraConfig.get().mode if HydraConfig.initialized() else None
    return getattr(mode, "name", None) == "MULTIRUN"  # None: the compose API's config


def hydra_choices() -> dict:
    """The running Hydra app's choice in each config group (``optimizer: adam``); ``{}``
    outside one."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return dict(HydraConfig.get().runtime.choices)


def in_a_search() -> bool:
    """Whether this run is a trial of ``hparams_search`` (Hydra's choice of that group)."""
    return hydra_choices().get("hparams_search") not in (None, "null")


def command_line_overrides() -> list[str]:
    """The running Hydra app's overrides (``hydra.overrides.task``) as typed, ``\\${``
    included (iterating the list would resolve it to ``${``); ``[]`` outside one (the compose
    API: pass the overrides to :func:`validate` instead)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return []
    return list(OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False))


def _check(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise UserError(f"bad config value {key}={value!r}: allowed {allowed}")


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...]) -> None:
    value = OmegaConf.select(cfg, key)
    _check(value in allowed, key, value, "one of " + ", ".join(allowed))


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


MOST_EPOCHS = 10**12  # far past any run's end, and its steps within numpy's int64


def _count(value: object) -> bool:
    """An integer >= 0, not a bool (YAML's ``true`` is Python's ``int`` 1): a seed, say,
    which numpy's generators refuse below 0 (``seed=-1`` ended in a traceback mid-run)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def validate(
    cfg: DictConfig, overrides: list[str] | None = None, choices: dict | None = None
) -> None:
    """Range- and choice-check every key; raises :class:`UserError` naming the first bad one.

    ``overrides``: the command line's, whose ``optimizer.transform.*`` values win over the
    optimizer file's (:func:`define_optimizer`); None reads the running Hydra app's.

    The choices of every group come first, then each group's ranges in the order data, loader,
    optimizer, trainer, loss, logger, so the first error reported is the same whichever check
    finds it.
    """
    if choices is None:
        choices = hydra_choices()
    overrides = command_line_overrides() if overrides is None else overrides
    try:
        _validate_choices(cfg, overrides, choices.get("optimizer"))
        _check(_count(cfg.seed), "seed", cfg.seed, "an integer >= 0")
        _validate_data(cfg.data, overrides)
        _validate_loader(cfg.loader)
        _validate_optimizer(cfg.optimizer)
        _validate_trainer(cfg.trainer)
        validate_loss(cfg)
        _validate_logger(cfg.logger)
    except UserError as exc:
        raise _text_of_an_interpolation(cfg, exc) from exc.__cause__


def _text_of_an_interpolation(cfg: DictConfig, exc: UserError) -> UserError:
    """``exc``, a refused value, with the way to read it as a number added when the value is
    the text of an interpolation (``${oc.env:EPOCHS}``: an environment variable is text, and
    ``5`` as text is no integer): OmegaConf's ``oc.decode`` reads it as a YAML value, written
    as the override to paste."""
    import re

    import yaml

    from errors import hydra_quoted, shell_word

    bad = re.match(r"bad config value ([\w.]+)=", str(exc))
    if not bad:
        return exc
    key = bad.group(1)
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(parent, DictConfig) or leaf not in parent:
        return exc
    raw = OmegaConf.to_container(parent, resolve=False)[leaf]
    value = parent[leaf]
    if not (OmegaConf.is_interpolation(parent, leaf) and isinstance(value, str)):
        return exc
    try:
        decoded = yaml.safe_load(value)
    except yaml.YAMLError:
        return exc
    if isinstance(decoded, str):
        return exc
    decode = shell_word(hydra_quoted(key, f"${{oc.decode:{raw}}}"))
    return UserError(
        f"{exc}; {raw} gives the text {value!r}, not a number: read it as one with "
        f"oc.decode, {decode}"
    )


def _validate_choices(cfg: DictConfig, overrides: list[str], chosen: str | None = None) -> None:
    """Every key that names one of a fixed set (and reads the optimizer's file, filling
    ``optimizer.family`` and ``optimizer.transform``); raises :class:`UserError`."""
    # the name lists live with what they name (JAX, Flax, optax): imported once composed, so
    # that composing the config (train.py, before Hydra) imports none of them
    from data.sources import SOURCES
    from models.linear import INITIALISERS
    from training.optim import FAMILIES, SCHEDULES

    _choice(cfg, "data.name", tuple(SOURCES))
    _choice(cfg, "data.text_columns", ("onehot", "error"))
    _choice(cfg, "data.dates", ("decimal_year", "drop"))
    _choice(cfg, "data.missing", ("error", "drop", "mean"))
    _choice(cfg, "loader.name", LOADERS)
    files = optimizer_files()
    refuse_a_misnamed_file(files, cfg.optimizer.name, chosen)
    _choice(cfg, "optimizer.name", tuple(files))
    define_optimizer(cfg.optimizer, files[cfg.optimizer.name], overrides)
    _choice(cfg, "optimizer.family", tuple(FAMILIES))
    if FAMILIES[cfg.optimizer.family] is None and cfg.optimizer.momentum not in (None, "auto"):
        set_here = any(key_of(o) == "optimizer.momentum" for o in overrides)
        if set_here and not in_a_sweep():  # a search space sets it for every optimizer
            warn_once(
                f"warning: optimizer.momentum={cfg.optimizer.momentum} is not used: "
                f"{cfg.optimizer.name} (family adaptive) takes no momentum from the run; its own "
                "arguments go under optimizer.transform (+optimizer.transform.momentum=... for "
                "rmsprop)"
            )
    _choice(cfg, "optimizer.schedule", tuple(SCHEDULES))
    for key in ("model.W_init", "model.b_init"):
        if OmegaConf.select(cfg, key) is not None:
            _choice(cfg, key, INITIALISERS)
    _choice(cfg, "trainer.device", DEVICES)
    _choice(cfg, "logger.progress", ("auto", "bar", "lines", "off"))
    _validate_targets(cfg)


def _validate_targets(cfg: DictConfig) -> None:
    """The optimizer's and the model's ``_target_`` import, and take the keys beside it and
    what the run passes (optax's ``learning_rate``, and ``momentum`` for the gradient-descent
    families; the model's ``in_features`` and ``rngs``): checked before any data is read."""
    from training.optim import FAMILIES

    transform = cfg.optimizer.transform
    if transform.get("_partial_") is not True:  # the run calls it with learning_rate later
        raise UserError(
            f"bad config value optimizer.transform._partial_={transform.get('_partial_')!r}: "
            "allowed true (the run passes learning_rate when it builds the optimizer)"
        )
    adaptive = FAMILIES[cfg.optimizer.family] is None  # given no momentum by the run
    passed = ("learning_rate",) if adaptive else ("learning_rate", "momentum")
    _check_target("optimizer.transform", transform, passed)
    _check_target("model", cfg.model, ("in_features", "rngs"))


PASSED_BY_THE_RUN = {  # constructor arguments the run gives, and where each comes from
    "learning_rate": "; set optimizer.lr (and optimizer.schedule) instead",
    "momentum": "; set optimizer.momentum instead",
    "in_features": " (the run counts the data's columns)",
    "rngs": " (the run makes them from seed)",
}


def _check_target(prefix: str, node: DictConfig, passed: tuple[str, ...]) -> None:
    """``node._target_`` imports and takes ``node``'s other keys and the arguments the run
    ``passed`` (:func:`errors.check_arguments`); raises UserError naming ``prefix.KEY``."""
    target = node.get("_target_")
    fn = locate(f"{prefix}._target_", target)
    given = {k: node[k] for k in node if not str(k).startswith("_")}
    check_arguments(prefix, target, fn, given, {k: PASSED_BY_THE_RUN[k] for k in passed})


def _validate_data(d: DictConfig, overrides: list[str] | tuple = ()) -> None:
    """The ``data`` group: the source's own keys, then the split fractions and folds
    (``overrides``: the command line's, to say where a file's name came from)."""
    if d.name == "toy":
        _check(
            len(d.xs) == len(d.ys) and len(d.xs) >= 1,
            "data.xs",
            list(d.xs),
            "a non-empty list as long as data.ys",
        )
    if d.name == "synthetic":
        _check(d.n_samples >= 2, "data.n_samples", d.n_samples, "an integer >= 2")
        _check(d.n_features >= 1, "data.n_features", d.n_features, "an integer >= 1")
        _check(d.noise >= 0, "data.noise", d.noise, "a number >= 0")
        _check(_count(d.seed), "data.seed", d.seed, "an integer >= 0")
    if d.name == "csv":
        _validate_csv(d)
    elif d.get("path") or d.get("target"):  # else the run would train on other data, silently
        key = "data.path" if d.get("path") else "data.target"
        given = any(key_of(o) == key for o in overrides)
        fix = (
            "add data=csv to the command"
            if given  # an experiment overlay that trains on a file (housing) set it otherwise
            else f"the config sets it (an experiment= that trains on a file does): add data=csv "
            f"to train on the file, or leave that experiment out to train on data={d.name}"
        )
        raise UserError(
            f"bad config value {key}={d.get(key[5:])!r}: only data=csv reads a file, and this "
            f"run's data is data={d.name}; {fix}"
        )
    for key in ("val_fraction", "test_fraction"):
        value = d[key]
        _check(0.0 <= value < 1.0, f"data.{key}", value, "a fraction in [0, 1)")
    _check(
        d.val_fraction + d.test_fraction < 1.0,
        "data.val_fraction",
        d.val_fraction,
        "val_fraction + test_fraction < 1",
    )

    _check(d.folds == 0 or d.folds >= 2, "data.folds", d.folds, "0 (off) or an integer >= 2")


def _validate_csv(d: DictConfig) -> None:
    """The keys of ``data=csv``: path, target, separator, decimal mark and the level limits."""
    _check(bool(d.path), "data.path", d.path, "the path of a CSV file")
    _check(bool(d.target), "data.target", d.target, "the name of the column to predict")
    _check(
        d.sep in (None, ",", ";", "\t", "tab", "\\t", "|"),
        "data.sep",
        d.sep,
        "null (detect), ',', ';', tab or '|'",
    )
    _check(d.decimal in (None, ".", ","), "data.decimal", d.decimal, "null (detect), '.' or ','")
    _check(d.min_level_count >= 1, "data.min_level_count", d.min_level_count, "an integer >= 1")
    _check(d.max_levels >= 2, "data.max_levels", d.max_levels, "an integer >= 2")


def _validate_loader(loader: DictConfig) -> None:
    """The ``loader`` group: a mini-batch loader needs ``batch_size`` >= 1; the others read
    none (a sweep may still set one), but a size below 1 is an error whatever the loader."""
    bs = loader.batch_size
    if loader.name == "mini_batch" or bs is not None:
        _check(bs is not None and bs >= 1, "loader.batch_size", bs, "an integer >= 1")


def _validate_optimizer(opt: DictConfig) -> None:
    """The ``optimizer`` group's numbers; an integer ``lr`` or ``momentum`` becomes a float."""
    for key in ("lr", "momentum"):  # typed Any: an integer given is still a float, as before
        if _number(opt[key]):
            opt[key] = float(opt[key])
    _check(
        opt.lr == "auto" or _number(opt.lr) and math.isfinite(opt.lr) and opt.lr > 0,
        "optimizer.lr",
        opt.lr,
        "a number > 0 or auto (the step size from the data)",
    )
    if opt.momentum is not None and opt.momentum != "auto":
        _check(
            _number(opt.momentum) and 0.0 <= opt.momentum < 1.0,
            "optimizer.momentum",
            opt.momentum,
            "a number in [0, 1), auto or null",
        )
    _check(0.0 <= opt.b1 < 1.0, "optimizer.b1", opt.b1, "a number in [0, 1)")
    _check(0.0 <= opt.b2 < 1.0, "optimizer.b2", opt.b2, "a number in [0, 1)")
    _check(opt.eps > 0, "optimizer.eps", opt.eps, "a number > 0")
    _check(opt.weight_decay >= 0, "optimizer.weight_decay", opt.weight_decay, "a number >= 0")
    _check(opt.warmup_steps >= 0, "optimizer.warmup_steps", opt.warmup_steps, "an integer >= 0")
    _check(0 < opt.decay_rate <= 1, "optimizer.decay_rate", opt.decay_rate, "a number in (0, 1]")
    _check(
        opt.transition_steps >= 1,
        "optimizer.transition_steps",
        opt.transition_steps,
        "an integer >= 1",
    )
    _check(
        0 <= opt.end_lr_factor <= 1,
        "optimizer.end_lr_factor",
        opt.end_lr_factor,
        "a number in [0, 1]",
    )


def _validate_trainer(tr: DictConfig) -> None:
    """The ``trainer`` group: epochs, tolerance, steps per call, checkpoints, divergence."""
    _check(  # true ran one epoch; 10^20, past int64, trained 26.7e9 steps before it was stopped
        tr.epochs == "auto" or _count(tr.epochs) and 1 <= tr.epochs <= MOST_EPOCHS,
        "trainer.epochs",
        tr.epochs,
        f"an integer from 1 to {MOST_EPOCHS:,} or auto",
    )
    _check(tr.tol >= 0, "trainer.tol", tr.tol, "a number >= 0 (0 turns early stopping off)")
    _check(
        tr.max_steps_per_call >= 1,
        "trainer.max_steps_per_call",
        tr.max_steps_per_call,
        "an integer >= 1",
    )
    _check(
        tr.checkpoint_every >= 0,
        "trainer.checkpoint_every",
        tr.checkpoint_every,
        "an integer >= 0 (0: only at the end)",
    )
    _check(
        tr.keep_checkpoints >= 1, "trainer.keep_checkpoints", tr.keep_checkpoints, "an integer >= 1"
    )
    _check(
        tr.divergence_factor > 1, "trainer.divergence_factor", tr.divergence_factor, "a number > 1"
    )
    dist = tr.distributed
    _check(  # without one the processes never meet: the run went on alone, unlocked
        (dist.num_processes or 1) <= 1 or dist.coordinator or dist.auto,
        "trainer.distributed.num_processes",
        dist.num_processes,
        "1 without trainer.distributed.coordinator=HOST:PORT (process 0's address, with "
        "trainer.distributed.process_id on each process) or trainer.distributed.auto=true",
    )


def _validate_logger(lg: DictConfig) -> None:
    """The ``logger`` group: ``every_n_steps`` is auto or an integer >= 1."""
    every = lg.every_n_steps
    _check(
        every == "auto" or (isinstance(every, int) and not isinstance(every, bool) and every >= 1),
        "logger.every_n_steps",
        every,
        "auto or an integer >= 1",
    )


def validate_loss(cfg: DictConfig) -> None:
    """The ``loss`` group (``training/objectives.py``): ``name``, ``l2`` >= 0, and ``delta`` > 0
    with ``loss=huber`` only."""
    from training.objectives import LOSSES

    _choice(cfg, "loss.name", LOSSES)
    loss = cfg.loss
    _check(
        _number(loss.l2) and math.isfinite(loss.l2) and loss.l2 >= 0,
        "loss.l2",
        loss.l2,
        "a number >= 0 (the ridge penalty (l2 / 2) ||W||^2 on the standardised weights; 0: none)",
    )
    if loss.name == "huber":
        _check(
            _number(loss.delta) and math.isfinite(loss.delta) and loss.delta > 0,
            "loss.delta",
            loss.delta,
            "a number > 0: the residual, in the target's own units, beyond which the Huber "
            "loss grows linearly (loss=huber loss.delta=...)",
        )
    else:
        _check(
            loss.delta is None,
            "loss.delta",
            loss.delta,
            f"null with loss={loss.name} (delta is Huber's: use loss=huber)",
        )
