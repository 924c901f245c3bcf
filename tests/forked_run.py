"""The test harness's ``python SCRIPT ARGS``, forked from a process that has already imported the
libraries every run imports.

The test suite runs train.py and predict.py about 230 times; each process spends 1 to 2 s of CPU
importing JAX, Flax, Optax, orbax, Hydra and pandas before it reads its first override, and on CI's
two cores the suite is bound by CPU. :func:`run` is the body of a process forked from
multiprocessing's fork server, which imported :data:`PRELOAD` once and ran nothing (no JAX backend,
no device, no thread of Python's), so the imports cost each run only the fork. The child then
becomes the process ``python SCRIPT ARGS`` would be: a session of its own, its directory,
environment, standard streams, ``sys.argv`` and ``sys.path``, the script run as ``__main__``, and
Python's exit (non-daemon threads joined, ``atexit`` handlers run, the exit status of
``SystemExit``).

Only this module's standard-library imports reach the fork server: the project's own modules
are imported by each run, as a fresh ``python`` would.

What a forked run cannot be (helper-48's review): a run whose own imports are missing a library
module finds it imported; ``str`` hashes keep the server's seed; the interpreter's teardown of
its modules is not run (train.py skips it too, with ``os._exit``; predict.py and failed runs
have it); interpreter flags given to pytest (``-O``, ``-X dev``, ``-W``) reach the child; the
libraries' import-time logging handlers are there before the script's first line. So a few
tests run fresh processes (``fresh=True``): two runs that must be bit-identical, a predict.py
run that must print its one line on standard error, a bad override that must print one line.
"""

from __future__ import annotations

import atexit
import os
import random
import runpy
import sys
import threading

# what train.py's and predict.py's processes import before their first line of work
PRELOAD = [
    "numpy",
    "jax",
    "jax.numpy",
    "flax.nnx",
    "optax",
    "orbax.checkpoint",
    "hydra",
    "hydra.main",
    "hydra.core.hydra_config",
    "omegaconf",
    "tensorboardX",
    "rich.console",
    "rich.progress",
    "pandas",
    "yaml",
]


def run(
    script: str,
    args: list[str],
    cwd: str,
    env: dict[str, str],
    path: list[str],
    out: str,
    err: str,
) -> None:
    """Become ``python SCRIPT ARGS`` started in ``cwd`` with ``env``, its standard output and
    error written to the files ``out`` and ``err``; never returns (``os._exit``). ``path``:
    ``sys.path`` after its first entry, the script's directory, in a fresh interpreter."""
    os.setsid()  # as Popen(start_new_session=True): its group is killed with it
    for fd, name, flags in (
        (0, os.devnull, os.O_RDONLY),
        (1, out, os.O_WRONLY),
        (2, err, os.O_WRONLY),
    ):
        opened = os.open(name, flags)
        os.dup2(opened, fd)
        os.close(opened)
    # Popen closes every other descriptor: the fork server's pipes stay out of grandchildren
    for fd in map(int, os.listdir("/proc/self/fd")):
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the listing's own descriptor, closed since
                pass
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - fd 0 lives as long as the process
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [script, *args]
    sys.path[:] = [os.path.dirname(script), *path]
    # a fresh interpreter seeds these from the system; forked, every run would share the
    # server's (str hashes keep the server's seed: determinism tests run fresh processes)
    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    code: object = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != script:
            tb = tb.tb_next  # the frames of this function and runpy: Python prints none
        e.with_traceback(tb or e.__traceback__)  # Python prints the exception's own
        sys.excepthook(type(e), e, e.__traceback__)
        code = 1
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    # Python's exit: threading's own exit hooks (concurrent.futures' pools shut down), the
    # threads that are not daemons joined, then the atexit handlers. The interpreter's
    # teardown of its modules is not run (nor is it in train.py, which ends with os._exit)
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
