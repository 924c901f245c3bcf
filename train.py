"""Train a model: ``python train.py [key=value ...]`` (Hydra overrides; see the README)."""

from __future__ import annotations

import gc
import logging
import sys
from pathlib import Path

if __name__ == "__main__":  # a CSV's reader imports pandas meanwhile (data/read_ahead.py)
    gc.disable()  # while the modules load: second_process.collect_garbage_from_now_on
    from training.cli import stop_at_once_until_the_run

    stop_at_once_until_the_run()  # a Ctrl-C while importing: one line, not a traceback
    from data.read_ahead import prepare

    prepare(sys.argv[1:])

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_original_cwd
from omegaconf import DictConfig

from second_process import collect_garbage_from_now_on
from training.cli import (
    check_overrides,
    end_sweep,
    hold_the_run_directory,
    python_signal_handling,
    release_the_run_directory,
    report_user_errors,
    run_composed,
    stop_at_once_until_the_run,
)
from training.config import register_schema
from training.logs import output_copied_for_the_run_log

register_schema()


def main(cfg: DictConfig) -> float:
    """Train; return the objective a sweeper minimises: the validation RMSE in the target's
    units (with ``data.folds``, the folds' mean), infinity for a run that failed or has no
    validation rows."""
    from training.run import objective, train_and_evaluate

    collect_garbage_from_now_on()  # the imports are done

    # no "Unable to initialize backend" from jax; orbax logs its own bookkeeping through absl
    # at WARNING ("Skipping merge of OCDBT checkpoints"): a failed write raises, which we report
    logging.getLogger("jax").setLevel(logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)
    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    if multirun and cfg.logger.progress == "auto":  # a sweep's runs share one terminal
        cfg.logger.progress = "lines"
    path = cfg.data.get("path")
    if (
        path
        and not Path(path).expanduser().is_absolute()
        and Path.cwd() != Path(get_original_cwd())
    ):
        # hydra.job.chdir=true moved the run into its directory: a relative data.path still
        # means the directory the command was run from
        cfg.data.path = str(Path(get_original_cwd()) / path)
    out = HydraConfig.get().runtime.output_dir
    metrics = None
    if multirun:  # each run of a sweep as Python handles signals, the first included
        python_signal_handling()
    else:  # a Ctrl-C now: the advice names the directory
        stop_at_once_until_the_run(Path(out))
    with output_copied_for_the_run_log(), report_user_errors(multirun, out):
        # a sweep's run holds its directory while it runs (a single run has since before Hydra
        # wrote there: run_composed)
        lock = hold_the_run_directory(Path(out), cfg) if multirun else None
        try:
            metrics = train_and_evaluate(cfg, out)
        finally:
            if lock is not None:
                release_the_run_directory(Path(out), lock)
    return objective(metrics)


# hydra.main runs a sweep and Hydra's own flags (--help, --cfg, ...), from the conf/ beside
# this file (a symbolic link's target); a single run is composed once, by check_overrides, and
# run by run_composed as Hydra runs one
CONF = str(Path(__file__).resolve().parent / "conf")
hydra_main = hydra.main(config_path=CONF, config_name="config", version_base="1.3")(main)


def exit_now(code: int = 0) -> None:
    """End the process once every file is written, as a normal exit does (threading's exit hooks,
    wait for the threads that are not daemons, run the ``atexit`` handlers: logging's flush, jax's
    and orbax's own, flush the streams) but without the interpreter's teardown of its modules, which
    takes about 0.8 s of CPU after a walkthrough run of 3 s (bench/startup_phases.py, ``exit``).
    Under a tracer or profiler the process exits normally."""
    import atexit
    import os
    import threading

    if sys.gettrace() or sys.getprofile():  # a debugger, coverage or cProfile: it writes last
        return
    import signal

    # the run is over and its files written: a signal now would only break an atexit handler
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    # as Python's exit: threading's own exit hooks first (concurrent.futures' pools shut
    # down; joining their idle workers would wait for ever), then every thread not a daemon
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    checked = check_overrides(sys.argv[1:], job=Path(__file__).stem)
    if checked.run is None:
        sys.argv[1:] = checked.argv
        hydra_main()
    else:
        run_composed(main, checked.run)
    end_sweep()
    exit_now()
