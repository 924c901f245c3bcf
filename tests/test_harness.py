"""The test harness itself: children die with their tests, reserved ports stay ours."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import communicate, reserved_port, spawn


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
