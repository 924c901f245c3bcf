"""The test harness itself: children die with their tests, reserved ports stay ours."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import _fork_server, communicate, concurrently, reserved_port, run_script, spawn


def gone(pid: int, within: float = 10) -> bool:
    """Whether process ``pid`` has ended (exited or a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_timeout_kills_the_child_and_what_it_started(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 300 & echo $! > {pidfile}; wait"
    with spawn(["sh", "-c", script], stdout=subprocess.PIPE, text=True) as proc:
        while not pidfile.exists() or not pidfile.read_text().strip():
            time.sleep(0.01)
        grandchild = int(pidfile.read_text())
        with pytest.raises(subprocess.TimeoutExpired):
            communicate(proc, timeout=0.5)
        assert proc.returncode is not None
    assert gone(grandchild)


def test_leaving_spawn_early_kills_the_child():
    with pytest.raises(RuntimeError), spawn([sys.executable, "-c", "input()"]) as proc:
        raise RuntimeError("the test failed")
    assert proc.returncode is not None and gone(proc.pid)


def test_a_reserved_port_is_ours_until_released():
    with reserved_port() as port:
        with socket.socket() as stranger, pytest.raises(OSError):
            stranger.bind(("127.0.0.1", port))
        # a server that sets SO_REUSEPORT, as gRPC's (jax.distributed's coordinator) does
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass


def test_a_reserved_unshared_port_refuses_connections():
    with reserved_port(share=False) as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        with socket.socket() as server, pytest.raises(OSError):
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            server.bind(("127.0.0.1", port))


PROBE = """
import atexit, json, os, sys, threading, time
atexit.register(lambda: print("atexit handler ran"))
threading.Thread(target=lambda: (time.sleep(0.2), print("thread joined"))).start()
print(json.dumps({
    "argv": sys.argv, "cwd": os.getcwd(), "path": sys.path, "name": __name__, "file": __file__,
    "stdin": sys.stdin.read(), "own_session": os.getsid(0) == os.getpid(),
    "unbuffered": sys.stdout.write_through, "env": os.environ.get("PROBE_VALUE"),
}))
print("to standard error", file=sys.stderr)
how = sys.argv[1]
if how == "raise":
    raise ValueError("an uncaught exception")
sys.exit(how if how == "a message" else int(how))
"""


@pytest.mark.parametrize("how", ["0", "3", "a message", "raise"])
def test_a_forked_run_is_the_process_a_fresh_python_would_be(tmp_path, how):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    (tmp_path / "cwd").mkdir()
    env = {"PROBE_VALUE": "late", "XLA_FLAGS": "--xla_force_host_platform_device_count=3"}
    forked = run_script(script, how, cwd=tmp_path / "cwd", env={"XLA_FLAGS": env["XLA_FLAGS"]})
    fresh = run_script(script, how, cwd=tmp_path / "cwd", env=env, fresh=True)
    assert forked.returncode == fresh.returncode == {"0": 0, "3": 3}.get(how, 1)
    assert forked.stderr == fresh.stderr
    assert "Traceback" in fresh.stderr if how == "raise" else "Traceback" not in fresh.stderr
    probe = json.loads(fresh.stdout.splitlines()[0])
    assert json.loads(forked.stdout.splitlines()[0]) == {**probe, "env": None}
    assert probe["argv"] == [str(script), how] and probe["cwd"] == str(tmp_path / "cwd")
    assert probe["name"] == "__main__" and probe["own_session"] and probe["unbuffered"]
    assert forked.stdout.splitlines()[1:] == ["thread joined", "atexit handler ran"]
    assert fresh.stdout.splitlines()[1:] == ["thread joined", "atexit handler ran"]


def test_a_forked_run_that_times_out_is_killed_with_what_it_started(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    script = tmp_path / "hang.py"
    script.write_text(
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '300'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(300)\n"
    )
    _fork_server()  # started before the clock: the first call imports the libraries
    with pytest.raises(subprocess.TimeoutExpired):
        run_script(script, timeout=3)
    assert gone(int(pidfile.read_text()))


def test_forked_runs_at_once_each_get_their_own_exit_status(tmp_path):
    # multiprocessing's start() reaped other threads' children: one in about 150 read 255
    script = tmp_path / "code.py"
    script.write_text("import sys, time\ntime.sleep(0.05)\nsys.exit(int(sys.argv[1]))\n")
    codes = [k % 50 for k in range(200)]
    done = concurrently(*(lambda k=k: run_script(script, str(k)) for k in codes), workers=6)
    assert [p.returncode for p in done] == codes


def test_a_forked_run_ends_as_python_does_with_a_pool_and_seeds_of_its_own(tmp_path):
    # a thread pool's workers (not daemons) waited for ever in a join of every thread; and
    # every forked run drew the same "random" numbers from the server's state
    script = tmp_path / "pool.py"
    script.write_text(
        "import json\nfrom concurrent.futures import ThreadPoolExecutor\n"
        "import numpy as np\n"
        "json.pool = ThreadPoolExecutor(2)  # held by a module, as a library holds one\n"
        "json.pool.submit(print, 'from the pool').result()\n"
        "print(np.random.random())\n"
    )
    runs = concurrently(*(lambda: run_script(script, timeout=60) for _ in range(2)))
    assert [p.returncode for p in runs] == [0, 0]
    assert runs[0].stdout.splitlines()[0] == "from the pool"
    assert runs[0].stdout != runs[1].stdout


def test_a_missing_directory_is_an_error_in_the_test_as_popens(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_script(tmp_path / "any.py", cwd=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError):
        run_script(tmp_path / "any.py", cwd=tmp_path / "nowhere", fresh=True)
