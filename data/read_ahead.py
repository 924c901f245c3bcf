"""A CSV read and encoded in a second process while this one imports JAX.

Importing pandas and scikit-learn and encoding a 3,000-row file takes about 1.3 s on one core;
importing JAX, Flax and optax about as long. Both hold Python's lock, so a thread cannot overlap
them, but a second process can (``bench/time_to_fit.py``): :func:`start` launches
``python -m data.read_ahead``, which runs :func:`data.csv_source.load_csv` exactly as this
process would and sends back the :class:`~data.table.Table` (or the :class:`~errors.UserError`
the file causes) as a pickle on its standard output; :meth:`ReadAhead.result` waits for it.

Anything else that goes wrong in the second process (it cannot start, is killed, runs out of
memory) gives no result, and the caller reads the file itself, so a read ahead never changes
what a run does, only when the file is read. Files over :data:`MAX_BYTES` are read in place:
sending their table through a pipe would cost more than the overlap saves.
"""

from __future__ import annotations

import atexit
import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

MAX_BYTES = 64 << 20  # larger files are read where they are used

_KEPT: dict = {}  # at most one CSV table, kept by keep() for the next take() of its key
_PENDING: dict = {}  # at most one CSV being read in a second process, by its key


def csv_key(cfg, seed: int) -> tuple | None:
    """The settings, seed and file (path, size, modification time) a CSV table comes from;
    None when there is no such file (the reader says why)."""
    from omegaconf import OmegaConf

    try:
        path = Path(str(cfg.path)).expanduser()
        stat = path.stat()
    except (OSError, TypeError, ValueError):
        return None
    settings = OmegaConf.to_yaml(cfg, resolve=True) if OmegaConf.is_config(cfg) else repr(cfg)
    return settings, seed, str(path.resolve()), stat.st_size, stat.st_mtime_ns


def read_ahead(cfg, seed: int = 0) -> None:
    """Start reading the CSV of the data group ``cfg`` (split by ``seed``) in a second process
    for the next :func:`take` of its key; meanwhile this process imports what it needs."""
    key = csv_key(cfg, seed) if cfg.name == "csv" else None
    if key is None or key in _KEPT or key in _PENDING or key[3] > MAX_BYTES:  # [3]: its size
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


def _drop_pending() -> None:
    for reader in _PENDING.values():
        reader.proc.kill()
        reader.proc.wait()
    _PENDING.clear()


atexit.register(_drop_pending)  # a run that ends before taking its read ahead stops it


class ReadAhead:
    """The second process reading one CSV; :meth:`result` is its table, once."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def result(self):
        """The table, or None when the second process gave none (the caller reads the file).
        Raises the :class:`~errors.UserError` the file causes, as reading it here would."""
        try:
            out = self.proc.stdout.read()
            self.proc.stdout.close()
            self.proc.wait()
        except BaseException:  # Ctrl-C while waiting: the reader goes with us
            self.proc.kill()
            self.proc.wait()
            raise
        if self.proc.returncode != 0 or not out:
            return None
        kind, value = pickle.loads(out)
        if kind == "error":
            raise value
        return value


def start(cfg, seed: int) -> ReadAhead | None:
    """Start reading the CSV of the data group ``cfg`` (split by ``seed``) in a second process;
    None when it cannot be started."""
    from omegaconf import OmegaConf

    settings = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    root = str(Path(__file__).resolve().parent.parent)
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "READ_AHEAD_PARENT": str(os.getpid()),
    }
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "data.read_ahead"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        proc.stdin.write(pickle.dumps((settings, seed)))
        proc.stdin.close()
    except OSError:
        return None
    return ReadAhead(proc)


def main() -> None:
    """The second process: the settings and seed arrive pickled on standard input; the table,
    or the user's error, leaves pickled on standard output (nothing else is written there)."""
    import signal

    # Ctrl-C reaches this process with the run's: it leaves, quietly; the run reports the stop
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
    _leave_with(int(os.environ.get("READ_AHEAD_PARENT", "0")))
    from omegaconf import OmegaConf

    from data.csv_source import load_csv
    from errors import UserError

    settings, seed = pickle.loads(sys.stdin.buffer.read())
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a stray print must not corrupt the pickle
    try:
        reply = ("table", load_csv(OmegaConf.create(settings), seed))
    except UserError as exc:
        reply = ("error", exc)
    except Exception:  # noqa: BLE001 - our bug: the run reads the file itself and reports it
        os._exit(1)
    try:
        out.write(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        out.close()
    except BrokenPipeError:  # the run ended, or read the file itself
        os._exit(0)


def _leave_with(parent: int) -> None:
    """Have the kernel end this process when the run ends (Linux's ``PR_SET_PDEATHSIG``), as
    a SIGTERM or a crash of the run would otherwise leave it reading; elsewhere nothing."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        return
    if parent and os.getppid() != parent:  # the run ended before the request was made
        os._exit(0)


if __name__ == "__main__":
    main()
