"""The command line's error handling: a user's mistake is one line and a non-zero exit."""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from errors import (
    Interrupted,
    Stop,
    UserError,
    fail,
    hydra_item,
    hydra_list,
    hydra_quoted,
    hydra_value,
    omegaconf_text,
    resume_command,
    shell_word,
    stopped_before_the_run,
    train_command,
)

if TYPE_CHECKING:
    from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
RESERVED = (
    "(it reads only ASCII letters, digits and a few signs bare, and reserves = ( ) [ ] , ' and "
    "spaces around them)"
)
# the fix for a sweep whose runs' names, made of their overrides, no directory can have
NUMBER_THE_RUNS = (
    "number the runs instead with 'hydra.sweep.subdir=${hydra.job.num}' (in single quotes, "
    "which keep the shell from reading the $)"
)


def _compose_failure(exc: BaseException) -> str:
    """The one line for a config Hydra could not compose: a value of the wrong type names the
    key (and the group's file it is written in) and what is allowed; a key the schema lacks
    written in a group's file names the file; anything else is a bad override
    (:func:`_one_line`)."""
    text = _one_line(exc)
    kinds = {"Float": "a number", "Integer": "a whole number", "bool": "true or false"}
    typed = re.search(
        r"Value '([^']*)' of type '\w+' could not be converted to (\w+); full_key: ([\w.]+)", text
    ) or re.search(r"Value '([^']*)' is not a valid (bool) \(type \w+\); full_key: ([\w.]+)", text)
    if typed:
        value, kind, key = typed.groups()
        allowed = f"allowed {kinds.get(kind, kind)}"
        in_a_file = re.search(r"In '(\w+)/([^']+)'", text)
        if in_a_file:
            return f"bad config file {_group_file(*in_a_file.groups())}: {key}={value!r}: {allowed}"
        return f"bad config value {key}={value!r}: {allowed}"
    not_optional = re.search(
        r"Error merging override ([\w.]+)=(\w*); field '[\w.]+' is not Optional", text
    )
    if not_optional:  # seed=null: a setting every run reads
        from omegaconf import OmegaConf

        from training.config import Config

        key, value = not_optional.groups()
        default = OmegaConf.select(OmegaConf.structured(Config), key, default=None)
        return (
            f"bad config value {key}={value}: every run reads {key}, so it needs a value; set "
            f"one (its default: {key}={default})"
        )
    a_list = re.search(
        r"Error merging override ([\w.]+)=(.*?); Invalid value assigned: \w+ is not a "
        r"ListConfig, list or tuple",
        text,
    )
    if a_list:  # optimizer.freeze=b: a list key given one value
        key, value = a_list.groups()
        return (
            f"bad override {key}={value}: {key} is a list; write it in brackets, "
            f"{shell_word(f'{key}=[{value}]')}"
        )
    ambiguous = re.match(r"Ambiguous value for argument '([^=']+)=([^']*)'", text)
    if ambiguous:  # Hydra's advice is a template: say it for this key and value
        key, value = ambiguous.groups()
        return (
            f"bad override {key}={value}: a ',' makes the value a sweep (add -m) or, in "
            f"brackets, a list ({shell_word(f'{key}=[{value}]')}); for the text {value!r} quote "
            f"it for Hydra: {shell_word(hydra_quoted(key, value))}"
        )
    pattern = r"In '(\w+)/([^']+)': ConfigKeyError.*?Key '([^']+)' not in"
    in_file = re.search(pattern, str(exc), re.S)
    if not in_file:
        return f"bad override: {text}"
    group, name, key = in_file.groups()
    where = _group_file(group, name)
    fix = (
        "an argument of optax's constructor goes under transform:"
        if group == "optimizer"
        else "remove it (the README lists every key)"
    )
    return f"bad config file {where}: {group}.{key} is not a config key; {fix}"


def _group_file(group: str, name: str) -> str:
    """Where option ``name`` of config group ``group`` is written: this project's file, else
    (a file on another search path) its name as Hydra gives it."""
    path = CONF_DIR / group / f"{name}.yaml"
    return str(path) if path.is_file() else f"conf/{group}/{name}.yaml"


def _one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, folded into one line."""
    from hydra.errors import MissingConfigException

    if isinstance(exc, MissingConfigException):
        text = str(exc)
        group = re.search(r"Could not find '([^']+)/([^']+)'", text)
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        if group:
            return (
                f"no option {group.group(2)!r} in config group {group.group(1)!r}; "
                f"available: {', '.join(options)}"
            )
    unknown = re.match(r"Could not override '([^']+)'", str(exc))
    if unknown:
        key = unknown.group(1)
        if key.startswith("hydra."):
            return f"there is no config key {key!r}{_closest_hydra_key(key)}"
        if (CONF_DIR / key).is_dir():
            return (
                f"{key} is a config group: choose one of its files ({key}=NAME for "
                f"conf/{key}/NAME.yaml) or set one of its keys ({key}.KEY=VALUE)"
            )
        if key.startswith(ADDABLE):  # an argument of optax's or the model's constructor
            near = _closest_argument(key)
            return (
                f"there is no config key {key!r} in the composed group"
                + (f"; did you mean {near!r}? (" if near else "; ")
                + f"'+{key}=...' passes a new argument to the constructor"
                + (")" if near else "")
            )
        return f"there is no config key {key!r}{_closest(key)}"
    parts = []
    while exc is not None:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith(("object_type", "reference_type"))]
        parts.extend(ln for ln in lines if ln not in parts)
        exc = exc.__cause__
    return "; ".join(parts)


# keys a `+key=value` may add: each is read where it lands. Hydra's own; optax's constructor's
# arguments (training/optim.py make_transform passes every key of optimizer.transform); the
# model's constructor's (models/build.py). A wrong name there fails when the run builds it.
ADDABLE = ("hydra.", "optimizer.transform.", "model.")


def known_keys() -> list[str]:
    """Every key the run reads: the schema's (training/config.py ``Config``) and those of the
    model files in ``conf/model/``, dotted (``optimizer.lr``), sorted."""
    from omegaconf import OmegaConf

    from training.config import Config

    def flat(node, prefix: str) -> set[str]:
        out = set()
        for key, value in node.items():
            out.add(prefix + key)
            if isinstance(value, dict):
                out |= flat(value, f"{prefix}{key}.")
        return out

    keys = flat(OmegaConf.to_container(OmegaConf.structured(Config)), "")
    for path in (CONF_DIR / "model").glob("*.yaml"):
        keys |= {f"model.{k}" for k in OmegaConf.load(path)}
    return sorted(keys)


def _closest(key: str) -> str:
    """``; did you mean 'optimizer.lr'?`` for the existing key nearest ``key``
    (:func:`difflib.get_close_matches` on the whole dotted key, then on its last part, so
    ``lr`` finds ``optimizer.lr``), else the README's pointer."""
    import difflib

    keys = known_keys()
    near = difflib.get_close_matches(key, keys, n=1)
    if not near:
        leaves: dict[str, str] = {}
        for k in keys:
            leaves.setdefault(k.rsplit(".", 1)[-1], k)
        near = [leaves[m] for m in difflib.get_close_matches(key.rsplit(".", 1)[-1], leaves, n=1)]
    return f"; did you mean {near[0]!r}?" if near else " (the README lists every key)"


def _closest_hydra_key(key: str) -> str:
    """``; did you mean 'hydra.run.dir'?`` for the key of Hydra's own config nearest ``key``
    (Hydra's schema, ``hydra.conf.HydraConf``), else where Hydra's keys are listed."""
    import difflib

    from hydra.conf import HydraConf
    from omegaconf import OmegaConf

    def flat(node, prefix: str) -> list[str]:
        out = []
        for k, v in node.items():
            out.append(prefix + k)
            if isinstance(v, dict):
                out.extend(flat(v, f"{prefix}{k}."))
        return out

    keys = flat(OmegaConf.to_container(OmegaConf.structured(HydraConf)), "hydra.")
    near = difflib.get_close_matches(key, keys, n=1)
    return f"; did you mean {near[0]!r}?" if near else " (python train.py --cfg hydra shows them)"


def _closest_argument(key: str) -> str | None:
    """The constructor argument written in a ``conf/optimizer`` or ``conf/model`` file that is
    nearest ``key`` (``optimizer.transform.decy`` -> ``optimizer.transform.decay``), if any."""
    import difflib

    from omegaconf import OmegaConf

    group, _, rest = key.partition(".")
    names = set()
    for path in (CONF_DIR / group).glob("*.yaml"):
        node = OmegaConf.load(path)
        if group == "optimizer":
            node = node.get("transform") or {}
            names |= {f"optimizer.transform.{k}" for k in node}
        else:
            names |= {f"{group}.{k}" for k in node}
    prefix, _, leaf = key.rpartition(".")
    leaves = sorted(n.rsplit(".", 1)[-1] for n in names if n.rpartition(".")[0] == prefix)
    if leaf in leaves:  # another file's argument (optimizer.name=adam on sgd): `+` is right
        return None
    near = difflib.get_close_matches(leaf, leaves, n=1)  # the argument's name alone
    return f"{prefix}.{near[0]}" if near and rest else None


def refuse_unread_additions(overrides: list[str]) -> None:
    """A ``+key=value`` or ``++key=value`` adding a key nothing reads is one line naming it:
    Hydra adds any key, and the run would train as if the line were not there. Config groups
    (``+experiment=housing``) and the keys of :data:`ADDABLE` are read."""
    added = [arg for arg in overrides if arg.startswith("+")]
    if not added:
        return
    keys = set(known_keys())
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    for arg in added:
        key = arg.lstrip("+").split("=", 1)[0].split("@", 1)[0]
        if key in keys or key in groups or key.startswith(ADDABLE):
            continue
        fail(
            f"bad override {arg}: nothing reads the key {key!r}, so the run would ignore it"
            f"{_closest(key)}"
        )


def refuse_removed_settings(overrides: list[str]) -> None:
    """A ``~key`` removing one of the schema's settings (``~seed``, ``~trainer.epochs``) is one
    line giving the setting's default to set instead: every run reads them (``~seed`` ended
    in a traceback mid-run). The model's keys (``~model.degree``) are its constructor's, and
    may go."""
    from omegaconf import OmegaConf

    from training.config import Config

    schema, absent = OmegaConf.structured(Config), object()
    for arg in overrides:
        key = arg.lstrip("~").split("=", 1)[0]
        if not arg.startswith("~") or key.split(".")[0] == "model":
            continue
        default = OmegaConf.select(schema, key, default=absent)
        if default is absent:
            continue  # not a setting
        if OmegaConf.is_config(default):  # ~data: the schema's bare defaults, silently
            options = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
            if options:
                fail(
                    f"bad override {arg}: every run reads the {key} group, so it cannot be "
                    f"removed; pick one instead ({key}=NAME: {', '.join(options)})"
                )
            continue
        fail(
            f"bad override {arg}: every run reads {key}, so it cannot be removed; set it "
            f"instead (its default: {key}={'null' if default is None else default})"
        )


def _expand(overrides: list[str]) -> list[list[str]]:
    """Every value of a sweep (``a=1,2``) tried once, the other sweeps at their first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    choices = []
    for text, ov in zip(overrides, parsed, strict=True):
        if ov.is_sweep_override():
            key = text.split("=", 1)[0]
            choices.append([f"{key}={v}" for v in ov.sweep_string_iterator()])
        else:
            choices.append([text])
    combos = [[c[0] for c in choices]]
    for i, c in enumerate(choices):
        for value in c[1:]:
            combos.append([*combos[0][:i], value, *combos[0][i + 1 :]])
    return combos if combos else [[]]


def quote_for_hydra(argv: list[str]) -> list[str]:
    """``argv`` with each ``key=~/...`` value quoted for Hydra (its grammar rejects an unquoted
    ``~``, and the README writes ``data.path=~/data/my_houses.csv``; the CSV reader expands the
    ``~``, and in ``hydra.run.dir`` and ``hydra.sweep.dir`` it is expanded here). Any other
    value Hydra's grammar rejects (``=``, ``(``, ...) is a one-line error naming the key and
    showing the quoted form that works, inside the shell's own quotes."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()

    def parses(arg: str) -> bool:
        try:
            parser.parse_overrides([arg])
        except Exception:  # Hydra's grammar errors come in several exception types
            return False
        return True

    def a_piece(arg: str) -> bool:  # no override of its own: no '=', no flag, no deletion
        return "=" not in arg and not arg.startswith(("-", "~"))

    for i, arg in enumerate(argv):  # the shell's splitting first: it broke the value before
        if i and a_piece(arg) and "=" in argv[i - 1]:
            pieces = list(itertools.takewhile(a_piece, argv[i:]))
            _refuse_a_split_override(argv[i - 1], pieces, parses)
    out = []
    for arg in argv:
        _refuse_names_read_as_values(arg, parser)
        if arg.startswith("-") or "=" not in arg or parses(arg):
            out.append(arg)
            continue
        key, value = arg.split("=", 1)
        listed = _with_its_items_quoted(key, value)
        if listed is not None and parses(listed):  # a list: quote the items, not the list
            fail(
                f"bad override {arg}: Hydra cannot read an item of the list {key} unquoted "
                f"{RESERVED}; quote the items for Hydra, inside the shell's quotes: "
                f"{shell_word(listed)}"
            )
        tilde = value.startswith("~")
        if tilde and key.lstrip("+") in ("hydra.run.dir", "hydra.sweep.dir"):
            value = os.path.expanduser(value)  # Hydra would make a directory named ~
        if tilde and "," not in value and parses(hydra_quoted(key, value)):
            out.append(hydra_quoted(key, value))
            continue
        fail(
            f"bad override {arg}: Hydra cannot read the value of {key} unquoted {RESERVED}; "
            f"quote it for Hydra, inside the shell's quotes: {shell_word(hydra_quoted(key, value))}"
        )
    return out


# the settings whose items are names (of columns, features, parameters)
NAME_LISTS = (
    "data.drop",
    "data.features",
    "data.log_features",
    "data.categorical",
    "logger.plot_weights",
    "optimizer.freeze",
)


def _refuse_names_read_as_values(arg: str, parser) -> None:
    """A one-line error for a list of names with an item Hydra reads bare as something else
    (``data.drop=[true]``: the column ``True``; ``[null]``: no name; ``[1e5]``: ``100000.0``),
    showing the items quoted; a number it reads back as written (``[2020]``) is no error."""
    key, _, value = arg.partition("=")
    if key.lstrip("+") not in NAME_LISTS or not value.startswith("["):
        return
    try:
        items = parser.parse_override(arg).value()
    except Exception:  # noqa: BLE001 - a list Hydra cannot read: quote_for_hydra says so
        return
    texts = _list_items(value)
    if texts is None or not isinstance(items, list) or len(items) != len(texts):
        return
    if all(isinstance(v, str) or str(v) == t for v, t in zip(items, texts, strict=True)):
        return
    fail(
        f"bad override {arg}: Hydra reads an item of the list {key} unquoted as a value, not "
        f"a name (true, null, 1e5 ...); quote the items for Hydra, inside the shell's quotes: "
        f"{shell_word(_with_its_items_quoted(key, value))}"
    )


def _list_items(value: str) -> list[str] | None:
    """The items of a list value as the user means them (``[a,'b c']``: ``a``, ``b c``): split
    at its commas, an item in Hydra's quotes unquoted; None for a value that is no list of
    plain items (a nested list is not split)."""
    if not (value.startswith("[") and value.endswith("]")) or value.count("[") != 1:
        return None
    items = [item.strip() for item in value[1:-1].split(",")]
    return [
        item[1:-1].replace("\\" + item[0], item[0])
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\""
        else item
        for item in items
    ]


def _with_its_items_quoted(key: str, value: str) -> str | None:
    """``key=[a,'b c']``: a list value with each item Hydra cannot read bare in its quotes
    (quoting the whole list makes it a string); None for a value that is no list."""
    items = _list_items(value)
    return None if items is None else f"{key}=[{','.join(map(hydra_item, items))}]"


def _refuse_a_split_override(before: str, pieces: list[str], parses) -> None:
    """``pieces``, arguments with no ``=`` right after the override ``before``, are the rest
    of a value the shell split at its spaces (``data.target=Sale Price`` unquoted): one line
    showing the whole override quoted for the shell (and for Hydra, where it needs it)."""
    joined = " ".join([before, *pieces])
    key, value = joined.split("=", 1)
    if not parses(joined):
        listed = _with_its_items_quoted(key, value)
        joined = listed if listed is not None and parses(listed) else hydra_quoted(key, value)
    fail(
        f"bad override {' '.join(pieces)!r}: no '=', so the rest of {before!r}, which the "
        f"shell split at a space; quote the whole override: {shell_word(joined)}"
    )


class Checked(NamedTuple):
    """What :func:`check_overrides` found: ``argv`` as Hydra should read it, and for a single
    run the config it composed, Hydra's node included (``None`` for Hydra's own flags and for a
    sweep, which ``hydra.main`` composes and runs)."""

    argv: list[str]
    run: DictConfig | None


def check_overrides(argv: list[str], job: str = "train") -> Checked:
    """Compose the config once before anything is written, so a bad override is one line,
    exit 2.

    A single run is composed in full, as ``hydra.main`` would for the script named ``job``
    (:func:`run_composed` runs it from that config), and range-checked here, before any data is
    read. In a sweep each run checks its own values, so one bad value fails that run only.
    ``argv`` comes back as Hydra should read it (:func:`quote_for_hydra`).
    """
    multirun = any(a in ("-m", "--multirun") for a in argv)
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        _check_overrides_of_a_flag(argv)
        return Checked(argv, None)  # Hydra's own flags (--help, --cfg, ...): let Hydra answer
    for arg in argv:  # the policy this key held before it became a list of columns
        key, _, value = arg.partition("=")
        if key == "data.categorical" and value in ("onehot", "error"):
            fail(
                f"bad config value data.categorical={value}: data.categorical lists columns "
                f"to one-hot encode (data.categorical=[zipcode]); for the policy on text "
                f"columns use data.text_columns={value}"
            )
    original, argv = argv, quote_for_hydra(argv)
    overrides = [
        a
        for a in argv
        if not a.startswith("-") and not a.startswith(("hydra.", "hydra/", "+hydra"))
    ]
    hydra_args = [a for a in argv if not a.startswith("-") and a not in overrides]
    searchpath = [a for a in hydra_args if a.lstrip("+").startswith("hydra.searchpath=")]
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from training.config import register_schema

    register_schema()
    refuse_unread_additions(overrides)
    refuse_removed_settings(overrides)
    if not multirun:
        run = _compose_the_run([*overrides, *hydra_args], job)
        if run is None:  # the config or the command line asks for a sweep (hydra.mode)
            return check_overrides(["-m", *original], job)
        _check_the_run(run, overrides)
        return Checked(argv, run)
    try:
        combos = _expand(overrides)
    except Exception as exc:  # a syntax error in an override
        fail(f"bad override: {_one_line(exc)}")
    refuse_a_space_in_run_names(overrides, hydra_args)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        directories: dict[Path, list[str]] = {}
        for combo in itertools.islice(combos, 64):
            try:  # with the command line's extra config directories, if any
                cfg = compose("config", overrides=[*combo, *searchpath])
            except Exception as exc:
                fail(_compose_failure(exc))
            refuse_a_search_without_validation_rows(cfg, combo)
            path = refuse_a_name_too_long(combo, hydra_args)
            if path is not None and directories.setdefault(path, combo) != combo:
                one, other = directories[path], combo
                fail(
                    f"bad override: the sweep's runs with {' '.join(set(one) - set(other))} and "
                    f"with {' '.join(set(other) - set(one))} would both write into {path}; give "
                    "each run a directory of its own with hydra.sweep.subdir (the default names "
                    "it after the run's overrides)"
                )
        if not directories or any(path.parent.is_dir() for path in directories):
            refuse_runs_in_the_sweep_directory(overrides, hydra_args)
    GlobalHydra.instance().clear()
    return Checked(argv, None)


def is_a_search(overrides: list[str]) -> bool:
    """Whether the overrides pick a hyperparameter search (``hparams_search=...``)."""
    return any(a.lstrip("+").startswith("hparams_search=") for a in overrides)


def refuse_a_search_without_validation_rows(cfg: DictConfig, combo: list[str]) -> None:
    """``hparams_search`` ranks its trials by the validation rows' RMSE (or the folds'):
    with no validation rows and no folds every trial scored infinity and the search ended with
    ``Best value: inf`` and an arbitrary best, exit 0; one line instead. A fraction of rows
    counted from the config (the walkthrough's, ``data=synthetic``'s) that rounds to none
    holds none out either; a CSV's rows are counted by each trial
    (:func:`validation_rows_for_a_search`)."""
    if not is_a_search(combo):
        return
    data = cfg.data
    if data.get("folds"):
        return
    fraction, rows = float(data.get("val_fraction") or 0), rows_of(data)
    if fraction == 0 or (rows is not None and round(rows * fraction) == 0):
        fail(f"bad override: {no_validation_rows(data, rows)}")


def validation_rows_for_a_search(cfg: DictConfig, split: dict) -> None:
    """In a trial of ``hparams_search``, a :class:`UserError` when ``split`` (row indices by
    ``train``/``val``/``test``) holds no validation row and no folds are asked for: a CSV whose
    ``data.val_fraction`` rounds to none of its rows scored every trial infinity, exit 0."""
    from training.config import in_a_search

    if not in_a_search() or cfg.data.get("folds") or len(split.get("val", ())):
        return
    rows = sum(len(r) for r in split.values())
    raise UserError(f"bad config value: {no_validation_rows(cfg.data, rows)}")


def rows_of(data: DictConfig) -> int | None:
    """The rows of a data config that says how many it has (the walkthrough's points,
    ``data.n_samples``); None for a CSV, whose rows are not counted before it is read."""
    rows = {"toy": len(data.get("xs") or ()), "synthetic": data.get("n_samples")}.get(data.name)
    return rows if isinstance(rows, int) else None


def no_validation_rows(data: DictConfig, rows: int | None) -> str:
    """Why a search cannot rank trials on ``data`` (``rows`` of them, None if not counted),
    and the ``data.val_fraction`` or ``data.folds`` that holds rows out, where one does."""
    fraction, test = float(data.get("val_fraction") or 0), float(data.get("test_fraction") or 0)
    of_rows = f" of the {rows} rows" if rows is not None and fraction else ""
    why = (
        f"hparams_search ranks its trials by the validation rows' RMSE, and "
        f"data.val_fraction={fraction:g} holds none out{of_rows}"
    )
    folds = most_folds(data, rows)
    fold_advice = f"data.folds={folds}" if folds else ""
    # 0.2 holds a row out, and leaves a training row beside the test rows
    if rows is None or (round(rows * 0.2) and rows - round(rows * 0.2) - round(rows * test) > 0):
        return f"{why}; set data.val_fraction=0.2" + (
            f" (or cross-validate with {fold_advice})" if fold_advice else ""
        )
    if fold_advice:
        return f"{why}; cross-validate with {fold_advice}"
    return f"{why}; {rows} rows are too few to search on"


def most_folds(data: DictConfig, rows: int | None = None) -> int | None:
    """The most folds, up to 5, that ``rows`` (default: the config's own count) allow (each
    fold validates on two rows at least, ``data.preprocess.fold_rows``): the walkthrough's 6
    points allow 3; a CSV's rows are not counted before it is read: 5. None when the rows
    allow no folds."""
    rows, folds = rows if rows is not None else rows_of(data), 5
    if rows is not None:
        outside_test = rows - round(rows * float(data.get("test_fraction") or 0))
        folds = min(folds, outside_test // 2)
    return folds if folds >= 2 else None


@contextlib.contextmanager
def hydra_config_set(cfg: DictConfig):
    """Hydra's config (``HydraConfig``) set to ``cfg`` within, as Hydra's ``run_job`` sets it
    for a run (``${hydra:...}`` resolves, the directories of ``hydra.searchpath`` are read),
    and what it was before restored after: left set, a later run in the same process took
    itself for one of Hydra's."""
    from hydra.core.hydra_config import HydraConfig

    before = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = before


def _check_overrides_of_a_flag(argv: list[str]) -> None:
    """Hydra's own flags (``--cfg job``, ``--help``, ...) given overrides: one that does not
    compose is one line, exit 2, as for a run (Hydra printed its multi-line error, or for
    ``--help`` a traceback). Flags that choose another config (``--config-name``,
    ``--config-path``, ``--config-dir``) and arguments Hydra's parser refuses are left to
    Hydra."""
    from hydra import initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra

    quiet = io.StringIO()
    try:  # Hydra answers --version and --help when it parses them
        with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
            args = get_args_parser().parse_args(argv)
    except SystemExit as exc:
        said = [ln for ln in quiet.getvalue().splitlines() if ": error: " in ln]
        if exc.code and said:  # argparse's usage block and its line: the line, and where to look
            help_ = " ".join(map(shell_word, [*train_command(), "--hydra-help"]))
            fail(f"{said[-1].split(': error: ', 1)[1]}; {help_} lists the flags")
        return
    given = [args.run, args.multirun, args.cfg, args.info, args.shell_completion]
    if sum(bool(g) for g in given) > 1:
        fail(
            "Hydra takes one of --run, --multirun (-m), --cfg, --info and --shell-completion "
            "at a time; keep one"
        )
    if args.hydra_help and args.overrides:
        fail("--hydra-help shows Hydra's own help and takes no overrides: drop them")
    if args.config_path or args.config_dir:  # another search path: Hydra's to check
        return
    if args.config_name and not (CONF_DIR / f"{args.config_name}.yaml").is_file():
        fail(
            f"--config-name {args.config_name}: {CONF_DIR} has no {args.config_name}.yaml "
            "(train.py's config is config.yaml there); drop --config-name, or add "
            f"--config-dir DIR for a directory that holds {args.config_name}.yaml"
        )
    if args.config_name or not (args.overrides or (args.cfg and args.package)):
        return
    overrides = quote_for_hydra(args.overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = _compose_as_a_sweep(overrides)
        except Exception as exc:
            fail(_compose_failure(exc))
        if args.resolve:  # --cfg --resolve shows the values: an interpolation that fails
            _resolved(cfg)
        if args.cfg and args.package:
            _refuse_a_missing_package(cfg, args.cfg, args.package)
    GlobalHydra.instance().clear()


def _refuse_a_missing_package(cfg: DictConfig, shown: str, package: str) -> None:
    """``--cfg SHOWN --package PACKAGE`` prints the node PACKAGE of the config SHOWN (``job``:
    without Hydra's node; ``hydra``: that node alone, named ``hydra.*``; ``all``): a key it does
    not have, or a null one (which Hydra does not print), is one line saying what to give
    instead (Hydra said only "not found", exit 1)."""
    from omegaconf import DictConfig, OmegaConf

    if package == "_global_":
        return
    node: object = OmegaConf.masked_copy(
        cfg, [k for k in cfg if (k == "hydra") == (shown == "hydra") or shown == "all"]
    )
    found = []  # the keys of the package that exist, outermost first
    for key in package.split("."):
        if not isinstance(node, DictConfig) or key not in node:
            break
        found.append(key)
        node = node._get_node(key)  # unresolved: ${...} is printed as written
    if len(found) == len(package.split(".")):
        if node._is_none():
            above = ".".join(found[:-1]) or "_global_"
            fail(
                f"-p/--package {package}: {package} is null in the {shown} config, and Hydra "
                f"prints no null node; show the node above it: --cfg {shown} -p {above}"
            )
        return
    where = ".".join(found)
    keys = []
    if isinstance(node, DictConfig):
        keys = [f"{where}.{k}" if where else str(k) for k in node]
    fail(
        f"-p/--package {package}: the {shown} config has no key {package}"
        + (f"; give one it has, such as {', '.join(keys)}" if keys else "")
    )


def _resolved(cfg: DictConfig) -> None:
    """Resolve the job's values of ``cfg`` and its run directories (Hydra sets its runtime
    keys only for a run); one that does not resolve is one line naming its key, exit 2."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with hydra_config_set(cfg):
            job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
            OmegaConf.to_container(job, resolve=True)
            for key in ("hydra.run.dir", "hydra.sweep.dir"):
                OmegaConf.select(cfg, key, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        fail(f"bad override: {_one_line(exc)}")


def _compose_as_a_sweep(overrides: list[str]) -> DictConfig:
    """The config as the initialised Hydra composes it for a sweep, the sweep's values
    (``a,b``) unchecked (each run checks its own): what ``hydra.main`` composes to find the
    mode. Raises Hydra's errors."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    return GlobalHydra.instance().hydra.compose_config(
        "config", overrides, run_mode=RunMode.MULTIRUN, validate_sweep_overrides=False
    )


def _compose_the_run(overrides: list[str], job: str) -> DictConfig | None:
    """The single run's config, Hydra's node included, composed as ``hydra.main`` composes it
    (the job named ``job``); None if ``hydra.mode`` asks for a sweep, as ``hydra.main`` finds
    it. A config Hydra cannot compose is one line, exit 2. Hydra stays initialised for
    :func:`run_composed`."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    GlobalHydra.instance().clear()
    initialize_config_dir(config_dir=str(CONF_DIR), job_name=job, version_base="1.3")
    hydra = GlobalHydra.instance().hydra
    try:
        run = hydra.compose_config("config", overrides, run_mode=RunMode.RUN, from_shell=False)
    except Exception as exc:
        try:  # a sweep's values (a,b) compose only as a sweep
            if _compose_as_a_sweep(overrides).hydra.mode == RunMode.MULTIRUN:
                return None
        except Exception:  # noqa: BLE001, S110 - the single run's error is the one to report
            pass
        fail(_compose_failure(exc))
    return None if run.hydra.mode == RunMode.MULTIRUN else run


def _check_the_run(run: DictConfig, overrides: list[str]) -> None:
    """Start a single run's second processes and check it before Hydra makes its directory:
    its values and files (:func:`training.config.validate`, on a copy: validating fills the
    optimizer's keys, which the run does again), its CSV, and that the directory holds no other
    run (or, resumed, the same run), with Hydra's config set as the run will have it. Each
    refusal is one line and exits."""
    import copy

    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import InterpolationResolutionError

    # a CSV: a second process reads and encodes the file while this one imports JAX
    # (validate's imports, then the run's); its errors come when the run reads it. Not a
    # CSV: the process train.py may have started for it is stopped
    from data.read_ahead import read_ahead
    from training.config import validate

    cfg = copy.deepcopy(run)
    with open_dict(cfg):
        del cfg["hydra"]
    read_ahead(cfg.data, cfg.seed)
    if cfg.logger.plots and not cfg.trainer.distributed.process_id:
        # and another imports matplotlib, to draw the plots at the end (process 0 draws):
        # now, or once the run has read its CSV (then the read ahead no longer needs the
        # other core)
        from training.plot_process import start

        start(now=cfg.data.get("name") != "csv")
    try:
        with hydra_config_set(run):
            # every ${...} resolves (data.drop=[${x}] failed in Hydra's own record of the
            # overrides, with a traceback, where nothing before read the list)
            OmegaConf.to_container(cfg, resolve=True)
            validate(cfg, overrides, {})  # the run checks Hydra's choice of files
            run_dir = run_directory(run)
            if run_dir.is_dir() and any(run_dir.iterdir()):
                path = cfg.data.get("path")
                if path and run.hydra.job.chdir and not Path(path).expanduser().is_absolute():
                    with open_dict(cfg):  # as train.py's main will: the file named from here
                        cfg.data.path = str(Path.cwd() / path)
                # a bad file is named before an occupied directory
                preprocessing = preflight_data(cfg)
                if not cfg.trainer.resume:
                    refuse_another_run(run_dir)
                else:
                    refuse_other_settings(cfg, run_dir, preprocessing)
    except UserError as exc:
        fail(str(exc), exc.exit_code)
    except InterpolationResolutionError as exc:  # ${...} in a value that does not resolve
        fail(f"bad override: {_one_line(exc)}{_literal_dollar(exc, overrides)}")


def _literal_dollar(exc: BaseException, overrides: list[str]) -> str:
    """For a ``${...}`` of the command line that does not resolve in a path, a column's name or
    a list of names (``data.path=c${d}.csv``, ``data.drop=[${x}]``): how to write a literal
    ``${``, escaped as OmegaConf reads it, for the shell."""
    if "Interpolation key" not in str(exc):
        return ""

    def textual(key: str) -> bool:  # a number is never "${...}" text
        named_file = key in ("data.path", "data.target") or key.endswith((".path", ".dir"))
        return key in NAME_LISTS or named_file

    # the key the error names (data.drop[0]: the list), else the last such override
    named = re.sub(r"\[\d+\]$", "", str(getattr(exc, "full_key", None) or ""))
    given = [
        (key, value)
        for key, _, value in (o.lstrip("+").partition("=") for o in overrides)
        if "${" in value and textual(key) and (not named or key == named)
    ]
    if not given:
        return ""
    key, value = given[-1]
    items = _list_items(value) if key in NAME_LISTS else None
    if items is not None:
        return f"; for a literal '${{' write it as '\\${{': {hydra_list(key, items)}"
    literal = omegaconf_text(value)
    return f"; for a literal '${{' write it as '\\${{': {shell_word(f'{key}={literal}')}"


def run_directory(run: DictConfig) -> Path:
    """The directory Hydra makes for the single run: ``hydra.run.dir`` resolved as Hydra's
    ``run_job`` resolves it (with Hydra's config set; its ``${now:...}`` is cached in ``run``,
    so the run gets the same one). Raises UserError for a name that does not resolve, is
    empty, or names something other than a directory."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from training.checkpoint import refuse_a_name_orbax_cannot_hold

    try:
        name = str(OmegaConf.select(run, "hydra.run.dir", throw_on_missing=True))
    except OmegaConfBaseException as exc:
        raise UserError(f"bad config value hydra.run.dir: {_one_line(exc)}") from None
    path = Path(name)
    refuse_a_name_orbax_cannot_hold(path.absolute())
    if not name or (path.exists() and not path.is_dir()):
        raise UserError(
            f"bad config value hydra.run.dir={name!r}: "
            + ("it is empty" if not name else "it is not a directory")
            + "; name a directory for the run"
        )
    return path


def unwritable_run_directory(path: Path, exc: OSError) -> UserError:
    """The one line for a run directory that cannot be made or written (``exc``)."""
    return UserError(
        f"cannot write the run directory {path}: {exc.strerror}; choose another {run_dir_key()}"
    )


def hold_the_run_directory(path: Path, cfg: DictConfig) -> int | None:
    """Lock ``path/.run.lock`` (``fcntl.flock``: released when the file is closed or the
    process ends, however it ends), then check again that ``path`` holds no other run (unless
    ``cfg`` resumes one). Two runs started at once into one directory (two runs, or two sweeps,
    started in the same second share the default ``outputs/<date>/<time>``) each passed the
    check before either wrote, and broke each other's checkpoints. Returns the lock's file
    descriptor (None for a run on several processes, ``trainer.distributed``, whose processes
    share the directory). Raises UserError for a directory another run holds or that cannot
    be written."""
    import fcntl

    distributed = cfg.trainer.distributed
    if distributed.auto or (distributed.num_processes or 1) > 1:
        return None  # every process of one run writes into its directory
    try:
        path.mkdir(parents=True, exist_ok=True)
        lock = os.open(path / ".run.lock", os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as exc:
        raise unwritable_run_directory(path, exc) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        raise in_use(path) from None
    HELD.add(path.resolve())
    if not cfg.trainer.resume:  # the other run may have ended, leaving its files
        try:
            refuse_another_run(path)
        except UserError:
            release_the_run_directory(path, lock)
            raise
    return lock


HELD: set[Path] = set()  # the run directories this process holds the lock of


def release_the_run_directory(path: Path, lock: int) -> None:
    """Release the lock :func:`hold_the_run_directory` took on ``path``."""
    HELD.discard(path.resolve())
    os.close(lock)


def run_composed(task, run: DictConfig) -> None:
    """Run ``task`` on the single run's config that :func:`check_overrides` composed, as
    ``hydra.main`` runs one (its ``Hydra.run``: the logging, the run directory and its
    ``.hydra/`` files, callbacks, our bug's traceback), without composing the config twice
    more (to find the mode, then to run: about 0.15 s of a 2 s walkthrough)."""
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.utils import run_and_report
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext, RunMode
    from omegaconf import read_write

    if run.hydra.verbose:  # Hydra's account of its search path, defaults and config
        given = [*run.hydra.overrides.task, *run.hydra.overrides.hydra]
        GlobalHydra.instance().hydra.compose_config(
            "config", given, run_mode=RunMode.RUN, with_log_configuration=True
        )
    else:
        configure_log(run.hydra.hydra_logging, run.hydra.verbose)
    if run.hydra.mode is None:  # as hydra.main sets and records it
        with read_write(run.hydra):
            run.hydra.mode = RunMode.RUN
            run.hydra.overrides.hydra.append("hydra.mode=RUN")
    try:  # before Hydra writes there; held until the process ends
        with hydra_config_set(run):  # hydra.run.dir's ${hydra:...}
            hold_the_run_directory(run_directory(run), run)
    except UserError as exc:
        fail(str(exc), exc.exit_code)
    callbacks = Callbacks(run)
    started = []

    def task_started(cfg: DictConfig):
        started.append(True)
        return task(cfg)

    def hydra_run() -> None:
        callbacks.on_run_start(config=run, config_name="config")
        context = HydraContext(GlobalHydra.instance().config_loader(), callbacks)
        try:
            ret = run_job(
                hydra_context=context,
                task_function=task_started,
                config=run,
                job_dir_key="hydra.run.dir",
                job_subdir_key=None,
            )
        except OSError as exc:  # Hydra making the directory or writing .hydra/, not the run
            if started:
                raise
            error = unwritable_run_directory(Path(exc.filename or run_directory(run)), exc)
            fail(str(error), error.exit_code)
        callbacks.on_run_end(config=run, config_name="config", job_return=ret)
        _ = ret.return_value  # the task's exception, if it raised one

    try:
        run_and_report(hydra_run)
    finally:
        GlobalHydra.instance().clear()


def refuse_a_space_in_run_names(overrides: list[str], hydra_args: list[str]) -> None:
    """Exit with one line if a sweep names its runs after their overrides (the default
    ``hydra.sweep.subdir``) and a value has a space, which Hydra writes into the name as
    ``\\ ``, a backslash or a list's ``[``: every run would then be refused, one after another
    (``training.checkpoint.refuse_a_name_orbax_cannot_hold``)."""
    numbered = ("hydra.sweep.subdir=", "hparams_search=")  # a search numbers its trials
    if any(a.lstrip("+").startswith(numbered) for a in [*hydra_args, *overrides]):
        return
    spaced = [a for a in overrides if re.search(r"\s|\\|\[", a.split("=", 1)[-1])]
    if spaced:
        value = spaced[0].split("=", 1)[-1]
        what = (
            "space there as '\\ '"
            if re.search(r"\s", value)
            else "backslash there"
            if "\\" in value
            else "list with its '['"
        )
        fail(
            f"bad override {spaced[0]}: a sweep names each run's directory after its overrides, "
            f"and Hydra writes this value's {what}, which orbax's checkpoints "
            f"cannot hold; {NUMBER_THE_RUNS}"
        )


def refuse_a_name_too_long(combo: list[str], hydra_args: list[str]) -> Path | None:
    """Exit with one line if a sweep's run directory, ``hydra.sweep.dir``/``hydra.sweep.subdir``
    (by default named after the run's overrides), has a part longer than the file system
    allows (``NAME_MAX``, 255 bytes on Linux and macOS): Hydra would fail making it with
    ``OSError: [Errno 36] File name too long`` and a traceback. Returns the directory. Called
    inside the compose API's context; a directory Hydra cannot name before the run (an unknown
    resolver, the run's number) is left to it: None. A ``hydra.sweep.dir`` with a backslash or
    a ``[`` exits with one line too: every run under it would be refused."""
    from hydra import compose
    from omegaconf import OmegaConf

    from training.checkpoint import what_orbax_cannot_hold

    sweep_dir = path = None
    try:
        cfg = compose("config", overrides=[*combo, *hydra_args], return_hydra_config=True)
        with hydra_config_set(cfg):
            sweep_dir = Path(OmegaConf.select(cfg, "hydra.sweep.dir"))
            path = sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
    except Exception:  # pragma: no cover - Hydra reports its own errors when it runs
        pass
    what = what_orbax_cannot_hold(sweep_dir) if sweep_dir is not None else None
    if what:  # every run under it would be refused (checkpoint.refuse_a_name_orbax_cannot_hold)
        fail(
            f"bad override: the sweep directory {sweep_dir} has {what} in its name, which "
            "orbax's checkpoints cannot hold (they could not be read back); choose a "
            "hydra.sweep.dir without one"
        )
    if path is None:
        return None
    try:
        limit = os.pathconf(next(p for p in path.absolute().parents if p.is_dir()), "PC_NAME_MAX")
    except (OSError, ValueError, StopIteration):
        limit = 255
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            fail(
                f"bad override: the sweep's run directory {part[:40]}... is a name of "
                f"{len(os.fsencode(part))} bytes, over the file system's {limit} (hydra.sweep."
                f"subdir names each run after its overrides); {NUMBER_THE_RUNS}"
            )
    return path


def refuse_runs_in_the_sweep_directory(overrides: list[str], hydra_args: list[str]) -> None:
    """Exit with one line if a run of this sweep would go into a directory that holds a run it
    may not continue: Hydra writes each run's ``.hydra/`` before the run can refuse its
    directory, so a sweep run again into its ``hydra.sweep.dir`` rewrote the earlier runs'
    configs (and a search's ``optimization_results.yaml``), then each run failed. A run that
    resumes is checked against the checkpoint's settings, as a single run is; one that does
    not, for a run there at all.

    The runs are Hydra's own list, numbered as Hydra numbers them: ``BasicSweeper``'s product
    of the values, or a search's (``hparams_search``) ``hydra.sweeper.n_trials`` trials, whose
    values it draws as it goes (so a resumed trial is left to its own check). Called inside
    the compose API's context; about 0.08 s a run, only for a sweep directory that exists."""
    from hydra import compose
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf, open_dict

    from training.config import validate

    search = is_a_search(overrides)
    try:
        if search:
            first = compose("config", overrides=[*overrides, *hydra_args], return_hydra_config=True)
            jobs = [overrides] * int(OmegaConf.select(first, "hydra.sweeper.n_trials"))
        else:
            parsed = OverridesParser.create().parse_overrides(overrides)
            jobs = BasicSweeper.split_arguments(parsed, None)[0]
    except Exception:  # noqa: BLE001 - Hydra reports its own errors when it runs
        return
    for num, job in enumerate(jobs):
        try:
            given = [*job, *hydra_args, "hydra.mode=MULTIRUN", f"hydra.job.num={num}"]
            cfg = compose("config", overrides=given, return_hydra_config=True)
            with hydra_config_set(cfg):
                sweep_dir = Path(OmegaConf.select(cfg, "hydra.sweep.dir")).expanduser()
                if search and not num:  # what the search's end may overwrite (end_sweep)
                    results = sweep_dir / "optimization_results.yaml"
                    before = results.read_bytes() if results.is_file() else None
                    SEARCH_RESULTS[:] = [results, before]
                if not sweep_dir.is_dir():  # a new sweep (the default is named by the time)
                    return
                path = sweep_dir / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
                mine = cfg.copy()
                with open_dict(mine):
                    del mine["hydra"]
                if not search:  # a search's trial draws its values when it runs
                    # as the run will: optimizer.name=sgd reads sgd.yaml's family and transform
                    try:
                        validate(mine, list(job), {})
                    except UserError:
                        pass  # a bad value fails its own run, which names it
                    else:
                        refuse_other_settings(mine, path)
                if not cfg.trainer.resume:
                    refuse_another_run(path)
        except UserError as exc:
            fail(str(exc), exc.exit_code)
        except Exception:  # noqa: BLE001 - a directory Hydra cannot name before the run
            return


# what a run that reached its data leaves; `.hydra/` alone is a run that failed before it
RUN_FILES = (
    "checkpoints",
    "metrics.json",
    "predictions.csv",
    "preprocessing.json",
    "events.out.tfevents.*",
)


def run_files(path: Path) -> list[str]:
    """The files in ``path`` that belong to a run which trained there (sorted names); an empty
    ``checkpoints`` directory (made by a run stopped before its first checkpoint) is none."""
    if not path.is_dir():
        return []
    found = {p for pattern in RUN_FILES for p in path.glob(pattern)}
    return sorted(p.name for p in found if not (p.is_dir() and not any(p.iterdir())))


def run_dir_key() -> str:
    """The key that chooses where this run writes: ``hydra.sweep.dir`` in a multirun (each
    run's directory is inside it), else ``hydra.run.dir``."""
    from training.config import in_a_sweep

    return "hydra.sweep.dir" if in_a_sweep() else "hydra.run.dir"


def in_use(path: Path) -> UserError:
    """The one line for a run directory another run, still running, holds."""
    return UserError(
        f"{path} is in use by another run, which has not ended; wait for it, or choose "
        f"another {run_dir_key()}"
    )


def refuse_another_run(path: Path | None) -> None:
    """Raise :class:`UserError` if ``path`` holds another run: everything in a run directory
    belongs to one run, so a new run (not ``trainer.resume=true``) never writes over one. The
    advice names the key of :func:`run_dir_key`."""
    from training.checkpoint import run_in_progress

    found = run_files(path) if path is not None else []
    # held by this process: no other run is in it (and our own lock would look like one)
    held = path is not None and path.resolve() in HELD
    if found and not held and run_in_progress(path):  # resuming it would be refused
        raise in_use(path)
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise UserError(
            f"{path} already holds a run ({shown}); continue it with trainer.resume=true or "
            f"choose another {run_dir_key()}"
        )


# what a resumed run must share with the run it continues; the trainer and logger may differ
# (more epochs, another checkpoint period, plots on or off). The loss comes before the optimizer,
# whose step optimizer.lr=auto takes from it: the difference named is the one the user made.
RUN_DEFINING = ("seed", "data", "loader", "model", "loss", "optimizer")


def run_differences(saved: dict, mine: dict, skip=lambda key, value: False) -> list[tuple]:
    """``(key, saved value, this run's value)`` for each setting under :data:`RUN_DEFINING`
    that differs between two resolved configs (plain dicts), a group's ``name`` first;
    ``skip(key, value)`` leaves a key of ``mine`` out (one not resolved yet, say)."""
    out = []
    for group in RUN_DEFINING:
        a, b = saved.get(group), mine.get(group)
        if not isinstance(a, dict) or not isinstance(b, dict):
            if a != b and not skip(group, b):
                out.append((group, a, b))
            continue
        # a group's option name first: `loader.name` says more than the keys that follow it
        for k in sorted(set(a) | set(b), key=lambda k: (k != "name", k)):
            key = f"{group}.{k}"
            if a.get(k) != b.get(k) and not skip(key, b.get(k)):
                out.append((key, a.get(k), b.get(k)))
    return out


def other_settings(run_dir, key: str, was, now) -> UserError:
    """The one line for a resume whose ``key`` differs from the run in ``run_dir``."""
    return UserError(
        f"{run_dir} holds a run of other settings ({key}: {was!r} there, {now!r} now); "
        f"resume it with its own settings, or start a new run in another {run_dir_key()}"
    )


def first_difference(a, b, key: str = "") -> tuple[str, object, object]:
    """The first place where two JSON-like values differ: its dotted key (list items by
    index, dict entries by key, in sorted order) and the two values there."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k) != b.get(k):
                return first_difference(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:  # an item that has a name (a column) by its name
                name = x.get("name") if isinstance(x, dict) and isinstance(y, dict) else None
                at = f"[{name!r}]" if name is not None and name == y.get("name") else f"[{i}]"
                return first_difference(x, y, key + at)
    return key, a, b


def _short(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


SPANNING_SCHEDULES = ("cosine", "warmup_cosine")  # laid over all of trainer.epochs' steps


def refuse_another_span(run_dir: Path, saved: dict, mine: dict, skip) -> None:
    """A resume with another ``trainer.epochs`` under a schedule laid over the run's steps
    (:data:`SPANNING_SCHEDULES`) is refused: every step size from the checkpoint on would be
    another (a finished 3000-epoch cosine run resumed with 3500 jumped from 3e-11 back to
    5e-05, and ended further from least squares, without a word). The other ``trainer``
    settings may change on a resume."""
    schedule = mine.get("optimizer", {}).get("schedule")
    was = saved.get("trainer", {}).get("epochs")
    now = mine.get("trainer", {}).get("epochs")
    if schedule not in SPANNING_SCHEDULES or was == now or skip("trainer.epochs", now):
        return
    raise UserError(
        f"{run_dir} holds a run whose optimizer.schedule={schedule} is laid over its "
        f"trainer.epochs={was}: with trainer.epochs={now} every step size from its checkpoint "
        f"on would change; resume it with trainer.epochs={was}, or train {now} epochs in a new "
        f"run in another {run_dir_key()}"
    )


_STATISTICS = {
    "x_mean": "training rows' mean",
    "x_scale": "training rows' standard deviation",
    "x_min": "training rows' least value",
    "x_max": "training rows' greatest value",
}


def _named_column(key: str, names: list[str]) -> str:
    """``scaling.x_max[6]`` as ``the training rows' greatest value of 'longitude'`` (the 7th
    of ``names``, the model's inputs); any other key as it is."""
    found = re.fullmatch(r"scaling\.(x_\w+)\[(\d+)\]", key)
    if not found or found[1] not in _STATISTICS or int(found[2]) >= len(names):
        return key
    return f"{_STATISTICS[found[1]]} of {names[int(found[2])]!r}"


def refuse_another_runs_meta(
    run_dir: Path, meta: dict, config: dict, preprocessing: dict | None, skip=lambda k, v: False
) -> None:
    """Raise :class:`UserError` naming the first difference between the run in ``run_dir``
    (a checkpoint's ``meta``: its ``config`` and ``preprocessing``) and this one: in the
    settings (``config``, resolved; :func:`run_differences`, ``skip`` as there), then in the
    data they made (``preprocessing``: the source, target, columns, encoding, scaling,
    transforms; None: not compared), leaving out the run's id. Everything in a run directory
    belongs to one run, so a resume with other settings or data would mix two."""
    if preprocessing is not None:  # the data are compared themselves: a file moved is the same
        skip_too = skip
        skip = lambda key, value: key == "data.path" or skip_too(key, value)  # noqa: E731
    found = run_differences(meta.get("config", {}), config, skip)
    if found:
        raise other_settings(run_dir, *found[0])
    refuse_another_span(run_dir, meta.get("config", {}), config, skip)
    if preprocessing is None:
        return
    # the data themselves, not where or how the file writes them (the_data_itself)
    from data.preprocess import ROWS_DIGEST, the_data_itself

    saved = the_data_itself(meta.get("preprocessing", {}))
    mine = the_data_itself(preprocessing)
    # the rows' digest last, once all that names a column is the same (a run saved before it
    # has none to compare)
    was_rows, now_rows = saved.pop(ROWS_DIGEST, None), mine.pop(ROWS_DIGEST, None)
    order = [
        [c.get("name") for c in (p.get("encoding") or {}).get("columns", [])] for p in (saved, mine)
    ]
    if order[0] != order[1] and sorted(order[0]) == sorted(order[1]):
        raise UserError(
            f"{run_dir} holds a run of the same columns in another order ({', '.join(order[0])} "
            f"there, {', '.join(order[1])} now: the model's weights follow it); resume it with "
            f"the columns in the order it trained on, or start a new run in another "
            f"{run_dir_key()}"
        )
    if saved != mine:  # the same settings, another file or another file's contents
        key, was, now = first_difference(saved, mine)
        key = _named_column(key, mine.get("feature_names") or [])
        if isinstance(was, float) and isinstance(now, float):
            was, now = float(f"{was:.8g}"), float(f"{now:.8g}")
    elif was_rows is not None and was_rows != now_rows:  # some row's values, not their columns
        key = "rows, of the same columns and statistics (their SHA-256)"
        was, now = was_rows[:12], now_rows[:12] if isinstance(now_rows, str) else now_rows
    else:
        return
    raise UserError(
        f"{run_dir} holds a run of other data (its {key}: {_short(was)} there, "
        f"{_short(now)} now: the file changed?); resume it with the file it trained on, or "
        f"start a new run in another {run_dir_key()}"
    )


def refuse_other_settings(cfg, run_dir: Path | None, preprocessing: dict | None = None) -> None:
    """Before Hydra writes ``.hydra/`` into the run directory: a resume whose settings differ
    from the newest checkpoint's is one line, and so is one whose data (``preprocessing``, as
    :func:`preflight_data` prepared it) differ (:func:`refuse_another_runs_meta`). Values still
    ``auto`` and ``data.path`` (made absolute later) are compared after set-up, with the data,
    by the run itself."""
    import json

    from omegaconf import OmegaConf

    from training.checkpoint import checkpoint_steps

    for step in checkpoint_steps(run_dir) if run_dir is not None else []:
        try:
            saved = json.loads(
                (run_dir / "checkpoints" / str(step) / "meta" / "metadata").read_text()
            )
        except (OSError, ValueError):
            continue  # damaged: the run skips it too
        mine = OmegaConf.to_container(cfg, resolve=True)
        skip = lambda key, value: value == "auto" or key == "data.path"  # noqa: E731
        refuse_another_runs_meta(run_dir, saved, mine, preprocessing, skip)
        refuse_fewer_epochs(run_dir, saved.get("progress", {}).get("epoch"), cfg.trainer.epochs)
        return


def refuse_fewer_epochs(run_dir: Path, done, epochs) -> None:
    """A resume asking for fewer epochs than its newest checkpoint holds (``done``) would train
    nothing, and its ``.hydra/config.yaml`` would say fewer epochs than ran: one line, before
    Hydra writes it. ``auto`` epochs are compared by the run, once chosen."""
    if isinstance(done, int) and isinstance(epochs, int) and done > epochs:
        raise UserError(
            f"{run_dir}: its newest checkpoint is at epoch {done}, past trainer.epochs={epochs}; "
            f"resume with trainer.epochs={done} or more"
        )


def preflight_data(cfg) -> dict | None:
    """Read and prepare the data once before Hydra starts the run, so that a bad file cannot
    make Hydra write over an earlier run kept in the same directory. Returns the preprocessing
    a run records of it (``training.build.preprocessing_of``; None for data not from a file)."""
    from data.preprocess import prepare_table, rows_digest
    from data.sources import load_table
    from training.build import preprocessing_of

    if cfg.data.name != "csv":
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # the run itself reports the encoding
        # kept for the run, which then takes the table instead of reading the file again
        table = load_table(cfg.data, seed=cfg.seed, keep=True)
        prepared = prepare_table(table, cfg.data, cfg.seed)
        return preprocessing_of(table, prepared, rows_digest(prepared))


SWEEP_RUNS: list[str] = []  # every run of this process's sweep, by its override directory
SWEEP_FAILED: list[str] = []  # those that ended with a UserError
# a search's optimization_results.yaml and its bytes before the search (None: there was none)
SEARCH_RESULTS: list = []


def resume_advice(workdir: Path) -> str:
    """How to continue the run in ``workdir``, as a command to type: ``run the same command
    with trainer.resume=true hydra.run.dir=W`` for a single run; for a sweep's run, which the
    sweep's command (``-m`` and all) would not resume, :func:`~errors.resume_command` with the
    run's own overrides."""
    from training.config import command_line_overrides, in_a_sweep

    if in_a_sweep():
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        hydra = HydraConfig.get()
        cwd = hydra.runtime.cwd  # the sweep's directory: its paths are relative to it
        given = [
            *command_line_overrides(),
            *OmegaConf.to_container(hydra.overrides.hydra, resolve=False),  # as typed
        ]
        return "run " + resume_command(workdir, given, cwd)
    return f"run the same command with trainer.resume=true {hydra_value('hydra.run.dir', workdir)}"


def stop_at_once_until_the_run(workdir: Path | None = None) -> None:
    """Until :func:`the_run_begins` (its first step): SIGINT or SIGTERM ends the process at once
    with one line (:func:`~errors.stopped_before_the_run`; ``workdir``: the run directory, once
    Hydra has made it) and status 128 + the signal's number. Nothing is trained or
    checkpointed yet; a KeyboardInterrupt raised in an import instead ends in a traceback, or
    leaves Python's import lock held and the exit hung on the thread that imports orbax."""
    import signal

    def stop(signum, frame):
        error = stopped_before_the_run(signum, resume_advice(workdir) if workdir else None)
        print(f"error: {error}", file=sys.stderr, flush=True)
        os._exit(error.exit_code)

    stop.until_the_run = True
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, stop)


def the_run_begins() -> None:
    """If :func:`stop_at_once_until_the_run` set it: SIGINT and SIGTERM raise
    :class:`~errors.Stop` (a KeyboardInterrupt), which the run turns into its checkpoint and
    one line (``training.run``); the fit sets its own handler meanwhile. A handler of a
    caller's own is left as it is."""
    import signal

    if getattr(signal.getsignal(signal.SIGINT), "until_the_run", False):
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _raise_stop)


_UNCAUGHT: list[object] = []  # a token for each Stop raised that the run has not caught yet


def _raise_stop(signum: int, frame) -> None:
    """Raise :class:`~errors.Stop` where the main thread is. Python loses an exception raised
    inside a garbage collector's callback (JAX has one) or a weak reference's, printing it as
    ignored: in a collector's callback the signal is sent again 10 ms later instead of raised;
    otherwise it is sent again 0.2 s later if the run has not caught it by then
    (:func:`stop_caught`)."""
    if _in_a_callback(frame):
        _send_again(signum, 0.01, None)
        return
    token = object()
    _UNCAUGHT.append(token)
    _send_again(signum, 0.2, token)
    raise Stop(signum)


def _in_a_callback(frame) -> bool:
    """Whether ``frame`` or a caller is a garbage collector's callback, a weak reference's
    (Python's ``weakref`` module) or a ``__del__``: code whose exceptions Python prints as
    ignored."""
    import gc

    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if (
            code in callbacks
            or code.co_name == "__del__"
            or Path(code.co_filename).name in ("weakref.py", "_weakrefset.py")
        ):
            return True
        frame = frame.f_back
    return False


def the_run_ends() -> None:
    """Once a ``train.py`` run has written its files (or is closing them after a stop), a
    signal is ignored: raised inside a library's close it would end in a traceback."""
    import signal

    if signal.getsignal(signal.SIGINT) is _raise_stop:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)


def python_signal_handling() -> None:
    """Python's own SIGINT and SIGTERM handling (a sweep's runs, one after another)."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _send_again(signum: int, delay: float, token: object | None) -> None:
    """Send ``signum`` to this process after ``delay`` seconds: always (``token`` None), or
    while the Stop raised with ``token`` is not caught."""
    import threading

    def send() -> None:
        if token is None or token in _UNCAUGHT:
            os.kill(os.getpid(), signum)

    timer = threading.Timer(delay, send)
    timer.daemon = True
    timer.start()


def stop_caught() -> None:
    """The run caught the :class:`~errors.Stop` raised: it is not sent again."""
    _UNCAUGHT.clear()


@contextlib.contextmanager
def report_user_errors(multirun: bool = False, run_name: str = ""):
    """A :class:`UserError` ends the run with its one line and exit status; in a sweep the
    failed run is reported, recorded in ``SWEEP_FAILED`` and the sweep goes on."""
    if multirun:
        SWEEP_RUNS.append(run_name)
    try:
        yield
    except (UserError, Interrupted) as exc:
        if multirun and not isinstance(exc, Interrupted):
            print(f"error: this run failed: {exc}", file=sys.stderr, flush=True)
            SWEEP_FAILED.append(run_name)
            return
        if getattr(exc, "at_once", False):
            # a second Ctrl-C: TensorBoard is flushed (the run's `finally`); end now, before
            # the interpreter's shutdown waits on (or trips over) library threads
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(exc.exit_code)
        fail(str(exc), exc.exit_code)
    except OSError as exc:  # the disk, not our code: a full or read-only output directory
        if exc.errno not in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT):
            raise
        fail(
            f"cannot write {exc.filename or 'the run directory'}: {exc.strerror}; free some "
            f"space or choose another {run_dir_key()} (earlier checkpoints are left as they were)"
        )


def end_sweep() -> None:
    """After a sweep: if any run failed, one line listing them and exit status 1, so that a
    script or CI can tell a sweep with a failed run from one that finished."""
    kept = ""
    if SEARCH_RESULTS and SWEEP_RUNS and len(SWEEP_FAILED) == len(SWEEP_RUNS):
        # Optuna wrote a failed trial as the best, of value inf: over an earlier search's
        # results when a resumed search's every trial was refused
        results, before = SEARCH_RESULTS
        if before is None:
            results.unlink(missing_ok=True)
            kept = "; no run finished, so there is no optimization_results.yaml"
        else:
            results.write_bytes(before)
            kept = f"; {results} is left as the earlier search wrote it"
    if SWEEP_FAILED:
        fail(
            f"{len(SWEEP_FAILED)} of {len(SWEEP_RUNS)} runs failed: {', '.join(SWEEP_FAILED)} "
            f"(each run's own error is above){kept}",
            code=1,
        )
