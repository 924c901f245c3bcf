"""Work done in a second Python process while the run goes on.

Importing JAX takes a run's first second on one core, and Python's lock keeps a thread from
doing anything else meanwhile; a second process can use the other core. The project has two:
the CSV read ahead (``data/read_ahead.py``) and the plots (``training/plot_process.py``). Each is
``python -m MODULE`` with this project on its path; it gets one pickle on its standard input
and answers one pickle on its standard output (:func:`serve`, :func:`answer`).

A second process never decides what a run does: when it cannot start, dies, or answers nothing,
:func:`result` is None and the run does the work itself. It is stopped when the run exits, and
leaves by itself when the run ends otherwise (Linux's ``PR_SET_PDEATHSIG``). It runs in a
session of its own, so that a Ctrl-C at the terminal reaches the run alone, which decides (a
Ctrl-C reaching the second process while it imports would print a KeyboardInterrupt traceback).
"""

from __future__ import annotations

import atexit
import gc
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

PARENT = "SECOND_PROCESS_PARENT"  # the run's pid, for a child that outlives it while starting
_SPAWNED: list[subprocess.Popen] = []  # every second process this one started


def spawn(module: str, request: Any = None, *, send_now: bool = True) -> subprocess.Popen | None:
    """Start ``python -m module``; with ``send_now``, :func:`send` it ``request`` at once.
    None when it cannot be started."""
    root = str(Path(__file__).resolve().parent)
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), PARENT: str(os.getpid())}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
    except OSError:
        return None
    _SPAWNED.append(proc)
    if send_now and not send(proc, request):
        stop(proc)
        return None
    return proc


def send(proc: subprocess.Popen, request: Any) -> bool:
    """Give the second process its one request; False when it is gone."""
    try:
        proc.stdin.write(pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
        proc.stdin.close()
    except (OSError, ValueError):  # a broken pipe: it died; ValueError: already sent
        return False
    return True


def result(proc: subprocess.Popen) -> Any | None:
    """The second process's answer, waiting for it; None when it gave none (it failed, was
    killed, or exited without answering). Ctrl-C while waiting stops it and is raised."""
    try:
        out = proc.stdout.read()
        proc.stdout.close()
        proc.wait()
    except BaseException:
        stop(proc)
        raise
    if proc.returncode != 0 or not out:
        return None
    return pickle.loads(out)


def stop(proc: subprocess.Popen) -> None:
    """End the second process now, whatever it is doing."""
    proc.kill()
    proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:  # the request was never read: the pipe is already broken
                pass


def _stop_spawned() -> None:
    for proc in _SPAWNED:
        if proc.poll() is None:
            stop(proc)
    _SPAWNED.clear()


# a run that ends before it took or asked a second process (an error, a signal) stops it: else,
# left waiting on a pipe that closes, it would go on importing, or reading, for nothing
atexit.register(_stop_spawned)


def serve() -> BinaryIO:
    """In the second process, first: leave on Ctrl-C (quietly: the run reports the stop) and
    when the run ends; returns the stream its answer goes to (the standard output; a stray
    print from now on goes to the standard error, so it cannot corrupt the pickle)."""
    import signal

    gc.disable()  # while it imports, as train.py does; request() turns it back on
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
    leave_with(int(os.environ.get(PARENT, "0")))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return out


def request() -> Any:
    """In the second process: the request, waiting until the run sends it; a run that ends
    without sending one ends this process, quietly."""
    data = sys.stdin.buffer.read()
    if not data:
        os._exit(0)
    collect_garbage_from_now_on()
    return pickle.loads(data)


def answer(out: BinaryIO, value: Any) -> NoReturn:
    """In the second process, last: send ``value`` back and end at once (the run waits for this
    process to end, and an interpreter's teardown with pandas or matplotlib loaded takes about
    0.1 s); a run that no longer listens is no error."""
    try:
        out.write(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        out.close()
    except BrokenPipeError:  # the run ended, or did the work itself
        pass
    sys.stderr.flush()
    os._exit(0)


def collect_garbage_from_now_on() -> None:
    """Turn Python's garbage collector back on if it is off (``train.py`` and a second process
    turn it off while they import: the modules leave about 250,000 long-lived objects, which
    it would scan again and again while they load, 0.2 s of a 1.7 s walkthrough), after
    setting aside every object there is (``gc.freeze``): they live as long as the process,
    and a collection would only scan them again. Frozen garbage is never freed: a few thousand
    objects of the start-up, once per process."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def leave_with(parent: int) -> None:
    """Have the kernel end this process when its parent ``parent`` (a pid) ends
    (``PR_SET_PDEATHSIG``), as a SIGTERM or a crash of the run would otherwise leave it working;
    elsewhere nothing."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (AttributeError, OSError):
        return
    if parent and os.getppid() != parent:  # the parent ended before the request was made
        os._exit(0)
