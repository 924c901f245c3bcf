"""A CSV read and encoded in a second process while this one imports JAX.

Importing pandas and encoding a 3,000-row file takes about 0.6 s on one core; importing JAX,
Flax and optax about 1 s.
Both hold Python's lock, so a thread cannot overlap them, but a second process can
(``bench/time_to_fit.py``): :func:`start` launches ``python -m data.read_ahead``, which runs
:func:`data.csv_source.load_csv` exactly as this process would and sends back the
:class:`~data.table.Table` (or the :class:`~errors.UserError` the file causes)
(:mod:`second_process`); :meth:`ReadAhead.result` waits for it.

Anything else that goes wrong in the second process (it cannot start, is killed, runs out of
memory) gives no result, and the caller reads the file itself, so a read ahead never changes
what a run does, only when the file is read. Files over :data:`MAX_BYTES` are read in place:
sending their table through a pipe would cost more than the overlap saves.
"""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import second_process

MAX_BYTES = 64 << 20  # larger files are read where they are used

_KEPT: dict = {}  # at most one CSV table, kept by keep() for the next take() of its key
_PENDING: dict = {}  # at most one CSV being read in a second process, by its key
_READY: list = []  # at most one second process importing what a read needs, not yet asked


def csv_key(cfg, seed: int) -> tuple | None:
    """The settings, seed and file (path, size, modification time) a CSV table comes from;
    None when there is no such file (the reader says why)."""
    from omegaconf import OmegaConf

    try:
        path = Path(str(cfg.path)).expanduser()
        stat = path.stat()
    except (OSError, TypeError, ValueError):
        return None
    try:
        settings = OmegaConf.to_yaml(cfg, resolve=True) if OmegaConf.is_config(cfg) else repr(cfg)
    except Exception:  # noqa: BLE001 - a ${...} that does not resolve: the run's check says so
        return None
    return settings, seed, str(path.resolve()), stat.st_size, stat.st_mtime_ns


def prepare(argv: list[str]) -> None:
    """Start the second process before the config is composed (it imports pandas, about
    0.5 s, then waits for :func:`read_ahead` to say which file to read) if the command line
    ``argv`` may be a CSV run: it sets ``data=csv`` or ``data.path``, or picks an experiment
    (whose data may be a CSV). A wrong guess costs the other core a few tenths of a second:
    :func:`read_ahead` stops it once the config says."""
    single = not {"-m", "--multirun"} & set(argv)
    csv = any(a.lstrip("+").startswith(("data=csv", "data.path=", "experiment=")) for a in argv)
    if single and csv and not _READY:
        proc = second_process.spawn("data.read_ahead", send_now=False)
        if proc is not None:
            _READY.append(proc)


def read_ahead(cfg, seed: int = 0) -> None:
    """Start reading the CSV of the data group ``cfg`` (split by ``seed``) in a second process
    (the one :func:`prepare` started, if any) for the next :func:`take` of its key; meanwhile
    this process imports what it needs. Not a CSV: the prepared process is stopped."""
    key = csv_key(cfg, seed) if cfg.name == "csv" else None
    if key is None or key in _KEPT or key in _PENDING or key[3] > MAX_BYTES:  # [3]: its size
        stop_prepared()
        return
    reader = start(cfg, seed)
    if reader is not None:
        _drop_pending()
        _PENDING[key] = reader


def take(key: tuple | None):
    """The table kept or read ahead for ``key``, once (None: there is none, or the second
    process gave none); a read ahead of another key is stopped. Raises the file's UserError."""
    if key is None:
        return None
    kept = _KEPT.pop(key, None)
    if kept is not None:
        return kept
    reader = _PENDING.pop(key, None)
    _drop_pending()
    return reader.result() if reader is not None else None


def keep(key: tuple, table) -> None:
    """Keep a copy of ``table`` (the caller may change its own) for the next :func:`take`."""
    _KEPT.clear()
    _KEPT[key] = copy.deepcopy(table)


def stop_prepared() -> None:
    """Stop the process :func:`prepare` started, if no read was asked of it."""
    for proc in _READY:
        second_process.stop(proc)
    _READY.clear()


def _drop_pending() -> None:
    stop_prepared()
    for reader in _PENDING.values():
        second_process.stop(reader.proc)
    _PENDING.clear()


class ReadAhead:
    """The second process reading one CSV; :meth:`result` is its table, once."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def result(self):
        """The table, or None when the second process gave none (the caller reads the file).
        Raises the :class:`~errors.UserError` the file causes, as reading it here would."""
        reply = second_process.result(self.proc)
        if reply is None:
            return None
        kind, value = reply
        if kind == "error":
            raise value
        return value


def start(cfg, seed: int) -> ReadAhead | None:
    """Start reading the CSV of the data group ``cfg`` (split by ``seed``) in a second process;
    None when it cannot be started."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    if _READY:
        proc = _READY.pop()
        if second_process.send(proc, (settings, seed)):
            return ReadAhead(proc)
        second_process.stop(proc)
    proc = second_process.spawn("data.read_ahead", (settings, seed))
    return ReadAhead(proc) if proc is not None else None


def main() -> None:
    """The second process: the settings and seed arrive pickled on standard input; the table,
    or the user's error, leaves pickled on standard output."""
    out = second_process.serve()
    from omegaconf import OmegaConf

    from data.csv_source import load_csv  # pandas: imported before the read is asked for
    from errors import UserError

    settings, seed = second_process.request()
    try:
        reply = ("table", load_csv(OmegaConf.create(_as_text(settings)), seed))
    except UserError as exc:
        reply = ("error", exc)
    except Exception:  # noqa: BLE001 - our bug: the run reads the file itself and reports it
        os._exit(1)
    second_process.answer(out, reply)


def _as_text(value):
    """``value`` (resolved settings: dicts, lists, strings, numbers) with each ``${`` escaped
    as OmegaConf reads it back as text: a column named ``${seed}`` (given escaped, resolved
    once already) was looked up again in the config made here, and became 0."""
    from errors import omegaconf_text

    if isinstance(value, dict):
        return {k: _as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    if isinstance(value, str):
        return omegaconf_text(value)
    return value


if __name__ == "__main__":
    main()
