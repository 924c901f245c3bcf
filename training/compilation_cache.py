"""JAX's persistent compilation cache: a run whose shapes an earlier run compiled skips compiling.

JAX keys each compiled executable by the lowered program, the compile options, the devices and
the versions of jax and jaxlib (``jax._src.cache_key``), so a cached executable is the one XLA
would have compiled: it computes the same values, bit for bit. A run compiles a dozen small
programs (the training call, least squares, the stability bound, evaluation); on a CPU they take
a few hundred milliseconds together, a large share of a short run's start.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT = "jax-linear-template"


def default_cache_dir() -> Path:
    """``$JAX_COMPILATION_CACHE_DIR`` when set (JAX's own variable), else
    ``$XDG_CACHE_HOME/jax-linear-template/jax``, else ``~/.cache/jax-linear-template/jax``."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / PROJECT / "jax"


def enable_compilation_cache(enabled: bool) -> Path | None:
    """Turn JAX's persistent compilation cache on (in :func:`default_cache_dir`) or off, for
    every compile of this process from now on; returns the directory, or None when off.

    Must run before the first compile: JAX sets its cache up once per process. Every program is
    cached (``jax_persistent_cache_min_compile_time_secs=0``; JAX's default of 1 s would skip
    all of this project's, which compile in well under a second each). A directory that cannot
    be created turns the cache off with a warning instead of failing the run: the cache only
    saves time. With several processes JAX writes entries from process 0 only.
    """
    import jax

    if not enabled:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    path = default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"warning: cannot create the compilation cache {path} ({exc.strerror}); compiling "
            "without it (set JAX_COMPILATION_CACHE_DIR, or trainer.compilation_cache=false)"
        )
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
