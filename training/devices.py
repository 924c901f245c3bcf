"""Devices, processes and data parallelism on JAX's own runtime.

One process or many (``jax.distributed``), one device or all of them: the training rows are
sharded along the ``data`` axis of a 1-D mesh, parameters and optimizer state are replicated,
and the compiled loop is unchanged; XLA inserts the all-reduce of the gradient.
"""

from __future__ import annotations

import numpy as np

from errors import UserError


def init_distributed(cfg) -> None:
    """Join a multi-process run before JAX starts, when the config or environment asks.

    ``trainer.distributed.coordinator`` (``host:port``), ``num_processes`` and ``process_id``
    name the run; ``auto`` lets ``jax.distributed.initialize()`` read SLURM, Open MPI or TPU
    settings. A coordinator that does not answer within ``initialization_timeout`` seconds is
    an error, not a hang.
    """
    import jax

    if not cfg.coordinator and not cfg.auto:
        return
    if cfg.coordinator and cfg.process_id:
        # JAX aborts the whole process when the coordinator never answers: knock first
        _wait_for(cfg.coordinator, cfg.initialization_timeout)
    try:
        if cfg.auto:
            jax.distributed.initialize(initialization_timeout=cfg.initialization_timeout)
        else:
            jax.distributed.initialize(
                coordinator_address=cfg.coordinator,
                num_processes=cfg.num_processes,
                process_id=cfg.process_id,
                initialization_timeout=cfg.initialization_timeout,
            )
    except Exception as exc:  # noqa: BLE001 - every failure to join is the same to a user
        where = cfg.coordinator or "the coordinator the environment names"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot join the distributed run at {where} within "
            f"{cfg.initialization_timeout} s (trainer.distributed): {first[:200]}"
        ) from None


KEPT_FREE_BYTES = 64 << 20  # freed host memory glibc keeps for the next call, at most


def keep_freed_host_memory() -> None:
    """Have glibc's ``malloc`` keep freed blocks of up to :data:`KEPT_FREE_BYTES` in the
    process (``mallopt(M_MMAP_THRESHOLD)`` and ``M_TRIM_THRESHOLD``, see mallopt(3)) instead of
    handing them back to the kernel.

    XLA's CPU client allocates every call's buffers afresh: a per-sample call's 65,536 gathered
    rows and recorded parameters (8 MB at 16 features), a full batch's gradients. By default
    glibc maps such blocks anew (from 128 kB, the threshold rising with the blocks freed, to
    32 MB at most), and the kernel faults in and zeroes every page of them again, on each call.
    On this project's 2-core machine per-sample SGD ran 5.1x scikit-learn with the memory kept
    against 4.3x without (medians of 7 alternating runs of ``bench/loaders.py``, its
    ``--malloc-default`` without, keeping up to 256 MB). 64 MB keeps a call's buffers (under
    10 MB) as well, and adds nothing measurable to the peak of a 10^7-row run, 2.02 GB against
    1.99 GB without (256 MB: 2.17 GB). Elsewhere than Linux with glibc, nothing."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl): its own allocator
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
    libc.mallopt(M_MMAP_THRESHOLD, KEPT_FREE_BYTES)
    libc.mallopt(M_TRIM_THRESHOLD, KEPT_FREE_BYTES)


def one_blas_thread() -> None:
    """Have the BLAS under numpy's linear algebra (OpenBLAS) use one thread in this process
    from now on (``threadpoolctl``).

    The host's float64 linear algebra is on matrices of a column a side (least squares, the
    Hessian's eigenvalues, the standard errors); the rows are summed on the devices. Such
    matrices gain little from a second thread, and on this project's 2-core machine that core
    is the plot process's or the CSV reader's: OpenBLAS's threads then wait for each other at
    every step. On ``bench/time_to_fit.py``'s file (275 columns) the two eigenvalue problems of
    the step size took 0.28 s with two threads and about 5 ms with one, the run 2.1-2.9 s
    against 2.5-2.9 s (alternating ``OPENBLAS_NUM_THREADS=1`` runs); 274 least-squares solves
    naming aliased columns 6 s against 0.2 s on two busy cores.

    Libraries loaded later (scipy's own OpenBLAS, with its special functions) read
    ``OPENBLAS_NUM_THREADS``, set here to 1; a user who set it keeps that setting."""
    import os

    if "OPENBLAS_NUM_THREADS" in os.environ:
        return
    from threadpoolctl import threadpool_limits

    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    threadpool_limits(limits=1, user_api="blas")


def make_mesh(platform: str, sharded: bool):
    """A 1-D ``data`` mesh over every device of ``platform``, or None for one device."""
    import jax
    from jax.sharding import AxisType

    devices = jax.devices(platform)
    if not sharded or len(devices) == 1:
        return None
    return jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Auto,), devices=devices)


def padded_rows(mesh, n: int) -> int:
    """``n`` rounded up to a multiple of the mesh's device count."""
    return -(-n // mesh.size) * mesh.size


def local_rows(mesh, n: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of ``n`` whose shard this process's devices hold."""
    lo, hi = _process_rows(mesh, padded_rows(mesh, n))
    return min(lo, n), min(hi, n)


def place_rows(mesh, device, X: np.ndarray, y: np.ndarray, n: int | None = None):
    """Put the training rows where the compiled loop reads them.

    One device: as they are. A mesh: rows sharded along ``data``, padded with zero rows to a
    multiple of the device count; the returned weights (1 real, 0 padding) keep the padding out
    of every loss and gradient. Each process contributes only its own contiguous share of the
    rows (``jax.make_array_from_process_local_data``). ``X``, ``y`` hold all ``n`` rows, or
    with ``n`` given only this process's ``local_rows(mesh, n)``.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    if mesh is None:
        return jax.device_put(X, device), jax.device_put(y, device), None
    whole = n is None
    n = len(y) if whole else n
    n_pad = padded_rows(mesh, n)
    lo, hi = _process_rows(mesh, n_pad)
    X, y = np.asarray(X), np.asarray(y)
    if whole:
        X, y = X[min(lo, n) : min(hi, n)], y[min(lo, n) : min(hi, n)]
    short = (hi - lo) - len(y)  # this process's padding rows
    X = np.concatenate([X, np.zeros((short, X.shape[1]), X.dtype)])
    y = np.concatenate([y, np.zeros(short, y.dtype)])
    w = (np.arange(lo, hi) < n).astype(np.float32)
    rows = NamedSharding(mesh, PartitionSpec("data"))

    def put(a):
        return jax.make_array_from_process_local_data(rows, a, (n_pad, *a.shape[1:]))

    return put(X), put(y), put(w) if n_pad > n else None


def _process_rows(mesh, n_rows: int) -> tuple[int, int]:
    """The contiguous rows this process's devices hold along the ``data`` axis."""
    import jax

    per = n_rows // mesh.size
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    return min(mine) * per, (max(mine) + 1) * per


def replicate(mesh, device, tree):
    """Copies of ``tree`` (parameters, optimizer state, batch indices) on every device."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    if mesh is None:
        return jax.device_put(tree, device)
    everywhere = NamedSharding(mesh, PartitionSpec())

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return a  # already a global array (the output of an earlier call)
        return jax.make_array_from_process_local_data(everywhere, np.asarray(a), np.shape(a))

    return jax.tree.map(one, tree)


def to_host(tree):
    """numpy copies of (replicated) arrays, also those spanning several processes."""
    import jax

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(a.addressable_shards[0].data)
        return np.asarray(a)

    return jax.tree.map(one, tree)


def _wait_for(coordinator: str, timeout: float) -> None:
    """Return once ``host:port`` accepts a TCP connection; a UserError after ``timeout`` s."""
    import socket
    import time

    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(
            f"bad config value trainer.distributed.coordinator={coordinator!r}: allowed host:port"
        )
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"cannot reach the coordinator {coordinator} within {timeout} s "
                    f"({exc.strerror or exc}); start process 0 first, or check "
                    "trainer.distributed.coordinator"
                ) from None
            time.sleep(0.5)
