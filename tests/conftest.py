from __future__ import annotations

import atexit
import copy
import errno
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

# the test session's runs share one compilation cache of their own, not the user's, and leave
# nothing behind (set before jax is imported: jax reads the variable then)
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jax-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)

# a run sets it (training.devices.one_blas_thread) when it is unset: set here, before the first
# run and the fork server, the environment forked runs are compared with stays the session's
# (once an in-process run had set it, every later run_script was a fresh process)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import forked_run  # noqa: E402
import pytest  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402

from training.config import register_schema  # noqa: E402

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"

register_schema()


def make_config(*overrides: str):
    """The config ``python train.py OVERRIDES`` would run with, composed by Hydra (a copy of its
    own: a test may change it)."""
    return copy.deepcopy(_composed(overrides))


@functools.cache
def _composed(overrides: tuple[str, ...]):
    # property tests compose the same overrides once per example; Hydra takes ~0.1 s a time
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a child started by :func:`spawn` and everything it started, then reap it.

    Only while the child is unreaped: its pid, and so its group id, cannot have been reused.
    """
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


@contextmanager
def spawn(args: list[str], **kwargs) -> Iterator[subprocess.Popen]:
    """``Popen(args)`` in a process group of its own, killed with its children on leaving.

    A test that fails, times out or is interrupted leaves no process behind.
    """
    proc = subprocess.Popen(args, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        kill_group(proc)


def communicate(proc: subprocess.Popen, timeout: float) -> tuple:
    """``proc.communicate(timeout)``; on a timeout the child's group is killed, then re-raised."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        # bounded too: a grandchild that left the group could hold the pipes open for ever
        proc.communicate(timeout=30)
        raise


def run_script(
    script: str,
    *args: str,
    cwd: Path = ROOT,
    timeout: float = 300,
    env: dict | None = None,
    fresh: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``python SCRIPT ARGS`` in a process of its own, as a user would; killed with its
    children after ``timeout`` s.

    The process is forked from one that has imported the libraries already
    (``tests/forked_run.py``; the suite's pytest took 488 s with fresh processes on two cores,
    378 s so) where the environment is the test session's, but for variables read only once
    the run works (``LATE_ENV``); a run given any other environment, or ``fresh``, is a fresh
    ``python``, as the runs that tests signal are (:func:`spawn`)."""
    server = None if fresh else _fork_server()  # first: its start sets os.environ a moment
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = [sys.executable, str(ROOT / script), *map(str, args)]
    if server and _without_late(full_env) == _without_late(server["env"]):
        return _run_forked(server, cmd, cwd, full_env, timeout)
    with spawn(
        cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env
    ) as proc:
        out, err = communicate(proc, timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


# read by XLA when the run first uses a device, and by pytest: the same in a forked process
LATE_ENV = ("XLA_FLAGS", "PYTEST_CURRENT_TEST")
_FORK_SERVER: dict = {}
_FORK_SERVER_LOCK = threading.Lock()
# multiprocessing's start() reaps every child it started that has ended, from any thread: the
# exit status another thread then waits for is gone (it reads 255). Each start is alone, and
# its child is left to the thread that waits for it
_START_LOCK = threading.Lock()


def _without_late(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in LATE_ENV}


def _fork_server() -> dict:
    """multiprocessing's fork server of this test process, started on first use with
    ``forked_run.PRELOAD`` imported: its ``context``, the ``env`` it imported them with, and the
    ``path`` a fresh interpreter has after its script's directory."""
    with _FORK_SERVER_LOCK:
        if not _FORK_SERVER:
            from multiprocessing import forkserver, get_context

            context = get_context("forkserver")
            context.set_forkserver_preload([*forked_run.PRELOAD, "forked_run"])
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            before = os.environ.copy()
            os.environ.update(env)  # the server's streams are unbuffered, as run_script's
            try:
                forkserver.ensure_running()
            finally:
                os.environ.clear()
                os.environ.update(before)
            probe = "import json, sys; print(json.dumps(sys.path[1:]))"
            path = json.loads(subprocess.check_output([sys.executable, "-c", probe], text=True))
            _FORK_SERVER.update(context=context, env=env, path=path)
    return _FORK_SERVER


def _run_forked(
    server: dict, cmd: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    import multiprocessing.process

    if not Path(cwd).is_dir():  # as Popen raises it, in the test
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(cwd))
    with tempfile.TemporaryDirectory(prefix="forked-run-") as tmp:
        out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
        out.touch()
        err.touch()
        args = (cmd[1], cmd[2:], str(cwd), env, server["path"], str(out), str(err))
        proc = server["context"].Process(target=forked_run.run, args=args)
        with _START_LOCK:
            proc.start()
            multiprocessing.process._children.discard(proc)
        try:
            proc.join(timeout)
            if proc.exitcode is None:
                raise subprocess.TimeoutExpired(cmd, timeout)
        finally:
            if proc.exitcode is None:
                for kill in (os.killpg, os.kill):  # its group, or itself before setsid
                    try:
                        kill(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.join()
        return subprocess.CompletedProcess(cmd, proc.exitcode, out.read_text(), err.read_text())


def run_train(
    *args: str,
    cwd: Path = ROOT,
    timeout: float = 300,
    env: dict | None = None,
    fresh: bool = False,
):
    """Run ``python train.py ARGS`` as a user would (:func:`run_script`)."""
    return run_script("train.py", *args, cwd=cwd, timeout=timeout, env=env, fresh=fresh)


def concurrently(*calls: Callable[[], T], workers: int | None = None) -> list[T]:
    """Make every call of ``calls`` at once, each in a thread of its own; their results in order.

    For a test's independent train.py/predict.py processes: each spends most of its seconds
    importing and compiling on one core, so on two cores two of them take little longer than
    one. Each call reaps its own child (:func:`spawn`); an exception of any is raised here once
    all have ended. ``workers``: at most this many at a time (default: all).
    """
    with ThreadPoolExecutor(workers or len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [f.result() for f in futures]


@contextmanager
def reserved_port(share: bool = True) -> Iterator[int]:
    """A TCP port of 127.0.0.1 that no other program can take while the block runs.

    A port found free and then released can be taken by anyone before our child binds it. So
    the socket stays bound (never listening) until the block ends. ``share=True`` sets
    SO_REUSEPORT on it, which lets a child that also sets it (gRPC servers do on Linux, so
    ``jax.distributed``'s coordinator does) bind and listen on the port, and keeps out everyone
    else. ``share=False``: nobody can listen there, so a connection is refused.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if share:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def read_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a run's TensorBoard events, as (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def config():
    return make_config


def checkpoint_steps(ckpt_dir: Path) -> list[int]:
    """The steps of the complete checkpoints in ``ckpt_dir`` (orbax renames a step's temporary
    directory to ``<step>`` once it is whole)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())


def signal_at_checkpoint(
    proc: subprocess.Popen, ckpt_dir: Path, step: int, sig: int, timeout: float = 180
) -> list[int]:
    """Send ``sig`` to the running ``proc`` the moment checkpoint ``step`` appears in
    ``ckpt_dir``, wait for it to end, and return the checkpoint steps on disk then.

    No sleep decides the moment: the kill is tied to the checkpoint. A child that ended before
    (``Popen.send_signal`` then sends nothing) is left for the caller's exit-status assertion.
    """
    deadline = time.monotonic() + timeout
    target = ckpt_dir / str(step)
    while not target.is_dir():
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before step {step}"
        assert time.monotonic() < deadline, f"no checkpoint {step} within {timeout} s"
        time.sleep(0.001)
    proc.send_signal(sig)
    proc.wait(timeout=timeout)
    return checkpoint_steps(ckpt_dir)


def resumed_step(stdout: str, ckpt_dir: Path) -> int:
    """The step a ``trainer.resume=true`` run says it resumed from (its ``resuming from`` line)."""
    found = re.findall(rf"^resuming from {re.escape(str(ckpt_dir))}/(\d+): ", stdout, re.M)
    assert len(found) == 1, stdout[-3000:]
    return int(found[0])


def train_on_two_processes(
    run_dir: Path, *args: str, timeout: float = 240, env: dict | None = None
) -> tuple[list[subprocess.CompletedProcess], list[tuple[str, str]]]:
    """``train.py ARGS`` as two processes of two simulated CPU devices each, joined over
    ``jax.distributed`` on 127.0.0.1 (a port held for them), into ``run_dir``; returns the
    finished processes and their (stdout, stderr). A hang is killed with its children."""
    two_devices = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", **(env or {})}
    with reserved_port() as port:
        procs = concurrently(
            *(
                functools.partial(
                    run_train,
                    *args,
                    f"trainer.distributed.coordinator=127.0.0.1:{port}",
                    "trainer.distributed.num_processes=2",
                    f"trainer.distributed.process_id={i}",
                    f"hydra.run.dir={run_dir}",
                    timeout=timeout,
                    env=two_devices,
                )
                for i in (0, 1)
            )
        )
    return procs, [(p.stdout, p.stderr) for p in procs]


# -- sweeps that several tests read: each runs once a session --------------------------------


@pytest.fixture(scope="session")
def sweep_with_failed_runs(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``train.py -m`` over housing with SGD for 5 epochs, ``optimizer.lr=0.01,-1,0.1`` x
    ``loader=full_batch,mini_batch``: six runs, the two of ``lr=-1`` refused. The sweep
    directory and the finished process (test_experience.py, test_runs_engine.py)."""
    sweep = tmp_path_factory.mktemp("sweep_with_failed_runs") / "sweep"
    proc = run_train(
        "-m",
        "experiment=housing",
        "optimizer.name=sgd",
        "trainer.epochs=5",
        "optimizer.lr=0.01,-1,0.1",
        "loader=full_batch,mini_batch",
        f"hydra.sweep.dir={sweep}",
    )
    return sweep, proc


@pytest.fixture(scope="session")
def momentum_sweep(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``train.py -m experiment=housing optimizer.momentum=0.5,0.9 trainer.epochs=3``: two runs
    that finish. The sweep directory and the finished process (test_tensorboard_output.py,
    test_runs_engine.py)."""
    sweep = tmp_path_factory.mktemp("momentum_sweep")
    proc = run_train(
        "-m",
        "experiment=housing",
        "optimizer.momentum=0.5,0.9",
        "trainer.epochs=3",
        f"hydra.sweep.dir={sweep}",
    )
    return sweep, proc


# -- optimizer files of a user's own (README: "An optimizer of your own") ------------------


LION = """\
# Lion (Chen et al. 2023): the sign of a mix of the momentum and the gradient
name: lion
lr: auto
b1: 0.9
b2: 0.99
weight_decay: 0.0
freeze: []
schedule: constant
family: adaptive
transform:
  _target_: optax.lion
  _partial_: true
  b1: ${..b1}
  b2: ${..b2}
  weight_decay: ${..weight_decay}
"""
# an argument no other optimizer has (decay) needs no schema: it stays inside transform
RMSPROP = """\
name: rmsprop
lr: auto
freeze: []
schedule: constant
family: adaptive
transform:
  _target_: optax.rmsprop
  _partial_: true
  decay: 0.8
"""


@pytest.fixture
def conf_with_new_optimizers(tmp_path):
    """A copy of conf/ with two optimizer files more, and no other change."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "optimizer" / "lion.yaml").write_text(LION)
    (conf / "optimizer" / "rmsprop.yaml").write_text(RMSPROP)
    return conf
