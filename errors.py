"""Errors a user can cause. Each carries the one line we print and the exit status.

Every layer raises them (``data/``, ``models/``, ``training/``), so they live outside all
three and import nothing of the project."""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable
from typing import NoReturn


class UserError(Exception):
    """A mistake in the user's config or data: printed as one line, exit status 2."""

    exit_code = 2


class DivergenceError(UserError):
    """The loss became non-finite or exploded: exit status 3."""

    exit_code = 3


class Interrupted(Exception):  # noqa: N818 - a stop the user asked for, not a failure
    """SIGINT or SIGTERM (the signal's number ``signum``) stopped the run: exit status
    128 + ``signum``. ``at_once``: a second Ctrl-C, which ends the process without waiting
    for the library threads."""

    def __init__(self, message: str, signum: int = 2, at_once: bool = False) -> None:
        super().__init__(message)
        self.signum, self.exit_code, self.at_once = signum, 128 + signum, at_once


class Stop(KeyboardInterrupt):
    """SIGINT or SIGTERM (``signum``) raised where a ``train.py`` run has no handler of its own
    (around the fit, in the report): a KeyboardInterrupt, which the run turns into its
    :class:`Interrupted` line."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum


# a word bash reads back as it is: no quoting needed (a leading ~ is the home directory)
_SHELL_SAFE = re.compile(r"(?!~)(?!.*[=:]~)[\w@%+=:,./~-]+")  # bash expands x=~ and a:~ too
# read unquoted by Hydra's grammar as written: ASCII letters and digits, a few signs (not ~, a
# comma, which is a sweep, nor brackets, quotes or parentheses: a function call)
_HYDRA_SAFE = re.compile(r"[\w@%+:./-]+", re.ASCII)
_HYDRA_SAFE_ITEM = re.compile(r"[\w./-]+", re.ASCII)  # the same for an item of a list


def hydra_quoted(key: str, value: str) -> str:
    """``key='value'``: Hydra's quoted form, which reads any character as part of the string."""
    return f"{key}='{value.replace(chr(39), chr(92) + chr(39))}'"


def hydra_item(item: str) -> str:
    """``item`` as an item of a Hydra list override reads it back, a string: as it is, or in
    Hydra's quotes (``'Zone (2020)'``, ``'Région'``, ``'2020'``, which bare is a number);
    quoting the whole list would make it one string. In Hydra's quotes a backslash is doubled
    only before a quote or at the end, as its grammar reads them."""
    if _HYDRA_SAFE_ITEM.fullmatch(item) and _hydra_reads(f"k=[{item}]", [item]):
        return item
    escaped = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, item).replace("'", "\\'")
    return f"'{omegaconf_text(escaped)}'"  # ${ is an interpolation even in quotes


def omegaconf_text(text: str) -> str:
    """``text`` as OmegaConf reads it back as that text: each ``${`` escaped (``\\${``), and
    the backslashes before it doubled (``\\\\${`` is a backslash, then an interpolation)."""
    return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)


def _hydra_reads(override: str, value: object) -> bool:
    """Whether Hydra's parser reads ``override`` (``key=value``) as ``value``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).value() == value
    except Exception:  # noqa: BLE001 - any refusal of the parser is a no
        return False


def hydra_list(key: str, items: list[str]) -> str:
    """The override ``key=[a,'b c']`` setting ``key`` to ``items`` (strings), as a shell word
    Hydra reads back as that list."""
    return shell_word(f"{key}=[{','.join(map(hydra_item, items))}]")


def hydra_value(key: str, value: object) -> str:
    """The override ``key=value`` as a shell word Hydra reads back as ``value``: quoted for
    Hydra where its grammar needs it (a sweep's directory ``lr=0.01``, a space), then for the
    shell."""
    text = str(value)
    override = f"{key}={text}" if _HYDRA_SAFE.fullmatch(text) else hydra_quoted(key, text)
    return shell_word(override)


def shell_word(arg: str) -> str:
    """``arg`` as a POSIX shell reads it back: as it is, or in double quotes with ``$ ` " \\``
    escaped (a Hydra interpolation ``${...}`` stays readable), or ``shlex``-quoted when it has
    a ``!`` (which bash expands inside double quotes). With a character Python would not print
    (a tab, a line end, a no-break or zero-width space: a column name ``'Lot\\tArea'``), bash's
    ``$'...'`` with each written as an escape (``\\t``, ``\\xc2\\xa0``): a raw tab pasted into a
    terminal completes a file name, and an invisible space looks like none or a plain one."""
    import shlex

    if _SHELL_SAFE.fullmatch(arg):
        return arg
    if not arg.isprintable():
        return "$'" + "".join(map(_ansi_c, arg)) + "'"
    if "!" in arg:
        return shlex.quote(arg)
    return '"' + re.sub(r'([$`"\\])', r"\\\1", arg) + '"'


_ANSI_C = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "'": "\\'", "\\": "\\\\"}


def _ansi_c(c: str) -> str:
    """One character as bash reads it back inside ``$'...'``: an escape for a quote, a
    backslash and each character Python would not print (``\\t``, ``\\x1b``, and a no-break
    space's UTF-8 bytes ``\\xc2\\xa0``)."""
    if c in _ANSI_C:
        return _ANSI_C[c]
    if c.isprintable():
        return c
    # the UTF-8 bytes, each as \\xHH: bash's \\uHHHH is left as written outside a UTF-8 locale
    return "".join(f"\\x{byte:02x}" for byte in c.encode("utf-8"))


def printable(text: str) -> str:
    """``text`` with each character Python does not print in a string's repr (controls, line
    separators, bidirectional overrides, a no-break or zero-width space, a byte-order mark)
    written as its escape (``\\t``, ``\\n``, ``\\x1b``, ``\\xa0``, ``\\u200b``): a column name
    shown in a message or a table, whose raw tab looked like spaces, whose line break split a
    one-line warning, whose escape sequence coloured the terminal, whose no-break space made
    "no column 'lot size'; the columns are: lot size" contradict itself."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def resume_command(workdir: object, overrides: list[str], cwd: object = None) -> str:
    """``PYTHON train.py OVERRIDES trainer.resume=true hydra.run.dir=W``: the command that
    continues the run in ``workdir`` made with ``overrides`` (its ``hydra.overrides.task`` and
    ``hydra.overrides.hydra``, as in its ``.hydra/``), whatever command started it (a sweep's
    ``-m``). ``cwd``: the directory the run was started from (its relative paths mean that
    one), prefixed as ``cd CWD &&`` when it is not the working directory. PYTHON (this
    interpreter), train.py and the run directory are written relative to the directory the
    command runs in when inside it."""
    from pathlib import Path

    here = Path.cwd() if cwd is None else Path(str(cwd))
    keep = [a for a in overrides if not _of_another_run(a.lstrip("+~").split("=")[0])]
    words = [*train_command(here), *keep, "trainer.resume=true"]
    # the directory as the command, run in `here`, must name it
    workdir = _as_seen_from(Path(os.path.abspath(str(workdir))), here)
    command = " ".join([*map(shell_word, words), hydra_value("hydra.run.dir", workdir)])
    return command if here == Path.cwd() else f"cd {shell_word(str(here))} && {command}"


def train_command(here: object = None) -> list[str]:
    """``[PYTHON, train.py]`` as a command run in ``here`` (default: the working directory)
    names them: this interpreter (the project's ``.venv/bin/python``, not whatever ``python``
    is on the PATH) and this project's ``train.py``, relative to ``here`` when inside it."""
    from pathlib import Path

    where = Path.cwd() if here is None else Path(str(here))
    train = Path(__file__).resolve().parent / "train.py"
    return [_as_seen_from(path, where) for path in (Path(sys.executable), train)]


def _as_seen_from(path, here) -> str:
    """``path`` relative to the directory ``here`` when inside it, else as it is."""
    try:
        return str(path.relative_to(here))
    except ValueError:
        return str(path)


def _of_another_run(key: str) -> bool:
    """Whether an override of ``key`` is left out of the command that resumes a run: the two it
    sets itself, and what made the run one of a sweep (its mode, the sweep's directory, the
    search that chose its values, which are overrides of their own)."""
    return key in ("trainer.resume", "hydra.run.dir", "hydra.mode", "hparams_search") or (
        key.startswith(("hydra.sweep", "hydra/sweeper", "hydra.sweeper", "hydra/launcher"))
    )


def stopped_before_the_run(signum: int, resume: str | None = None) -> Interrupted:
    """The error of a run stopped by signal ``signum`` before its first step (importing,
    composing the config, reading the data, compiling); exit status 128 + the signal's
    number. ``resume``: how to resume the run (``training.cli.resume_advice``), once it may
    have written to its directory (an empty checkpoint directory, a TensorBoard file), which a
    new run would refuse; resuming starts from the first step where there is no checkpoint."""
    import signal

    return Interrupted(
        f"stopped by {signal.Signals(signum).name} before training began (nothing was trained "
        f"and no checkpoint changed); to start it, {resume or 'run the command again'}",
        signum,
    )


def bad_target(key: str, target: object, exc: BaseException) -> UserError:
    """The one-line error for a ``_target_`` that Hydra's ``instantiate`` could not build
    (a wrong class path, or an argument its constructor refuses): the key, the value and the
    cause Hydra wrapped, its lines joined."""
    cause = exc.__cause__ or exc
    text = "; ".join(line.strip() for line in str(cause).splitlines() if line.strip())
    return UserError(f"bad config value {key}={target!r}: {text}")


def locate(key: str, path: object) -> Callable:
    """The function or class ``path`` (``"optax.adam"``, ``"models.linear.LinearRegression"``)
    names, the value of config ``key``. Raises :class:`UserError` naming ``key`` with the
    nearest name that exists (``difflib``) when the module or the attribute is missing, or
    when the object is not callable."""
    import importlib

    bad = f"bad config value {key}={path!r}"
    parts = str(path).split(".")
    if not isinstance(path, str) or not all(parts):
        raise UserError(f"{bad}: name a function or class as module.name, e.g. optax.adam")
    module, i = None, len(parts)
    while i > 0 and module is None:  # the longest prefix that imports
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            i -= 1
    if module is None:
        raise UserError(
            f"{bad}: no module named {parts[0]!r}; name a function or class importable as "
            "module.name (is its package installed?)"
        )
    obj, where = module, ".".join(parts[:i])
    for name in parts[i:]:
        if not hasattr(obj, name):
            public = [n for n in dir(obj) if not n.startswith("_")]
            near = difflib.get_close_matches(name, public, n=1)
            hint = f"did you mean {where + '.' + near[0]!r}?" if near else "check the name"
            raise UserError(f"{bad}: {where} has no {name!r}; {hint}")
        obj, where = getattr(obj, name), f"{where}.{name}"
    if not callable(obj):
        raise UserError(f"{bad}: {where} is not a function or class; name one, as module.name")
    return obj


def check_arguments(
    prefix: str, target: str, fn: Callable, given: dict, supplied: dict[str, str]
) -> None:
    """Raise :class:`UserError` naming ``prefix.KEY`` for a key of ``given`` (names and values)
    that the run ``supplied`` itself (``learning_rate``, ``in_features``; the value says where
    the run's comes from), that ``fn`` (``target``'s callable) has no parameter for (with the
    nearest parameter's name), or whose value is not of its default's kind (a boolean, a
    number); or naming ``target`` when ``fn`` cannot take a ``supplied`` argument or needs one
    nothing gives. A ``**kwargs`` parameter takes any name."""
    import inspect

    for key, instead in supplied.items():  # the run's own value would replace it, silently
        if key in given:
            raise UserError(
                f"bad config key {prefix}.{key}: the run passes {key} itself; drop it: "
                f"~{prefix}.{key}{instead}"
            )

    try:
        params = inspect.signature(fn).parameters
        if inspect.isclass(fn) and fn.__init__ is not object.__init__:
            # its __init__: a metaclass's __call__ (flax nnx) hides it behind *args, **kwargs
            params = dict(list(inspect.signature(fn.__init__).parameters.items())[1:])
            if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params.values()):
                params = inspect.signature(fn).parameters  # a NamedTuple's: its __new__'s
    except (TypeError, ValueError):  # a builtin without a signature: let it be called
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    names = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in supplied:
        if key not in names:
            raise UserError(
                f"bad config value {prefix}._target_={target!r}: it takes no {key!r}, which the "
                f"run passes; name a callable that takes {', '.join(supplied)}"
                + (
                    " (an optimizer without momentum: a file with family: adaptive, as "
                    "optimizer=adam)"
                    if key == "momentum"
                    else ""
                )
            )
    required = [
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in supplied
        and n not in given
    ]
    if required:
        raise UserError(
            f"bad config value {prefix}._target_={target!r}: it needs {required[0]!r}, which "
            f"nothing gives; add it: +{prefix}.{required[0]}=VALUE"
        )
    own = [n for n in names if n not in supplied]
    unknown = [k for k in given if k not in names]
    if len(unknown) == 1:
        key = unknown[0]
        near = difflib.get_close_matches(key, own, n=1)
        hint = f"did you mean {prefix + '.' + near[0]!r}?" if near else f"drop it: ~{prefix}.{key}"
        raise UserError(
            f"bad config key {prefix}.{key}: {target} takes no argument {key!r} (it takes "
            f"{', '.join(own) or 'nothing else'}); {hint}"
        )
    if unknown:
        drop = " ".join(f"~{prefix}.{k}" for k in unknown)
        raise UserError(
            f"bad config keys {', '.join(f'{prefix}.{k}' for k in unknown)}: {target} takes none "
            f"of them (it takes {', '.join(own) or 'nothing else'}); drop them: {drop}"
        )
    for key, value in given.items():
        _check_type(f"{prefix}.{key}", value, params[key].default)


def _check_type(key: str, value: object, default: object) -> None:
    """A value of the kind its parameter's default is: ``true``/``false`` for a boolean, a
    number for a number (optax would take ``nesterov='maybe'`` as true)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"bad config value {key}={value!r}: allowed true or false")
    elif isinstance(default, (int, float)) and (
        isinstance(value, bool) or not isinstance(value, (int, float))
    ):
        raise UserError(f"bad config value {key}={value!r}: a number, as its default {default}")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: <message>`` on stderr as one line and exit with status ``code`` (2: a
    config or data error, 3: divergence, 130: interrupted)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(code)
