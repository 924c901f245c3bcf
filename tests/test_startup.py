"""Start-up and the end: what a run imports before it needs it, the compilation cache, plots
drawn once, the exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import CONF, ROOT, concurrently, run_script, run_train

# libraries only some runs need, each imported when first used: the plots at a run's end,
# checkpoints at its first save, the CSV reader for data=csv; scikit-learn by none (the tests'
# reference only)
LATE = ("matplotlib", "orbax", "sklearn", "pandas")


def python(code: str, env: dict | None = None, unset: tuple = ()) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**environ, **(env or {})},
    )


def test_train_py_imports_no_plotting_checkpoint_or_csv_library():
    # what train.py imports before Hydra calls it, and what its call imports first
    done = python(
        f"import sys, train, training.run\nprint([m for m in {LATE!r} if m in sys.modules])"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_cache_dir_is_jax_s_variable_else_the_user_s_cache_directory(monkeypatch, tmp_path):
    from training.compilation_cache import default_cache_dir

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert default_cache_dir() == tmp_path / "jax"
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "jax-linear-template" / "jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "jax-linear-template" / "jax"


def test_a_cache_directory_that_cannot_be_made_turns_the_cache_off_with_a_warning(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = python(
        "import jax\n"
        "from training.compilation_cache import enable_compilation_cache\n"
        "print(enable_compilation_cache(True))\n"
        "print(jax.config.jax_enable_compilation_cache)\n"
        "print(jax.jit(lambda x: x + 1)(1))",
        env={"JAX_COMPILATION_CACHE_DIR": str(blocker / "cache")},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("warning: cannot create the compilation cache")
    assert lines[1:] == ["None", "False", "2"]


def test_tensorboard_image_is_the_png_file_itself(tmp_path):
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from training import plots
    from training.logs import TensorBoardLog

    X = np.array([[1.0], [2.0], [3.0]])
    y = 2 * X[:, 0] - 1
    W = np.array([8.0, 5.0, 2.0])
    loss = np.array([((w * X[:, 0] - 1 - y) ** 2).mean() for w in W])
    plots.walkthrough_plots(tmp_path, X, y, -1.0, W, loss)
    data = (tmp_path / "trajectory.png").read_bytes()
    tb = TensorBoardLog(tmp_path, True)
    tb.png("plots/trajectory", data, 7)
    tb.close()

    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    (event,) = acc.Images("plots/trajectory")
    width, height = Image.open(tmp_path / "trajectory.png").size
    assert (width, height) == (600, 400)  # 6 x 4 inches at 100 dpi
    assert (event.step, event.width, event.height) == (7, width, height)
    assert event.encoded_image_string == data


@pytest.mark.slow
def test_a_repeat_run_compiles_nothing_and_is_bit_identical(tmp_path):
    cache = tmp_path / "cache"
    env = {"JAX_COMPILATION_CACHE_DIR": str(cache)}
    off_cache = tmp_path / "off"
    # the run without a cache has a directory of its own: it runs beside the first
    first, off = concurrently(
        lambda: run_train(f"hydra.run.dir={tmp_path / 'first'}", env=env),
        lambda: run_train(
            f"hydra.run.dir={tmp_path / 'off_run'}",
            "trainer.compilation_cache=false",
            env={"JAX_COMPILATION_CACHE_DIR": str(off_cache)},
        ),
    )
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in cache.iterdir())
    assert entries  # the first run's programs, cached

    repeat = run_train(f"hydra.run.dir={tmp_path / 'repeat'}", env=env)
    assert repeat.returncode == 0, repeat.stderr
    # every program of the repeat run came from the cache: none was compiled and written
    assert sorted(p.name for p in cache.iterdir()) == entries

    assert off.returncode == 0, off.stderr
    assert not off_cache.exists()

    # the published trace (7.38, 6.8240666, ..., 2.0256863), bit for bit in all three
    assert "W_new 7.38\n" in first.stdout and "W_new 2.0256863\n" in first.stdout
    assert repeat.stdout == first.stdout == off.stdout
    params = [
        json.loads((tmp_path / d / "metrics.json").read_text())["params"]
        for d in ("first", "repeat", "off_run")
    ]
    assert params[0] == params[1] == params[2]


def _walkthrough_jobs(workdir):
    """The walkthrough's figures as jobs for :class:`training.plot_process.Plots`."""
    from training import plots

    X = np.array([[-1.0], [0.0], [1.0], [2.0], [3.0], [4.0]])
    y = 2 * X[:, 0] - 1
    W = np.array([10.0, 7.38, 6.8240666, 2.0256863])
    loss = np.array([((w * X[:, 0] - 1 - y) ** 2).mean() for w in W])
    train = plots.History()
    train.add(np.arange(4), loss)
    return [
        ("walkthrough_plots", (workdir, X, y, -1.0, W, loss), ("loss_vs_W", "trajectory")),
        ("loss_curves", (workdir, train, plots.History()), ("loss_curves",)),
        (
            "diagnostic_plots",
            (workdir, y, y + 0.1, "training", "y"),
            ("predicted_vs_actual", "residuals"),
        ),
    ]


def test_plots_drawn_in_the_plot_process_are_the_files_drawn_here(tmp_path):
    """train.py draws its figures in a second process (started before the run imports JAX,
    forking one process a figure at the end): the files are byte for byte those a run draws in
    its own process, and Plots.wait returns once they are all written."""
    from training import plot_process

    there, here = tmp_path / "there", tmp_path / "here"
    there.mkdir(), here.mkdir()
    plot_process.start()
    plotter = plot_process.Plots(True)
    assert plotter.proc is not None and not plot_process._STARTED  # the run took it
    plotter.draw(_walkthrough_jobs(there))
    names = plotter.wait()
    assert names == ["loss_vs_W", "trajectory", "loss_curves", "predicted_vs_actual", "residuals"]
    assert plotter.proc is None
    plot_process.draw_here(_walkthrough_jobs(here))
    drawn = sorted(p.name for p in there.iterdir())
    assert drawn == sorted(f"{n}.png" for n in names)
    for name in drawn:
        assert (there / name).read_bytes() == (here / name).read_bytes(), name


def test_a_plot_process_that_gives_nothing_leaves_the_drawing_to_the_run(tmp_path, monkeypatch):
    import sys

    from training import plot_process

    monkeypatch.setattr(sys, "executable", "false")  # starts, and exits at once
    plot_process.start()
    plotter = plot_process.Plots(True)
    plotter.draw(_walkthrough_jobs(tmp_path))
    assert len(plotter.wait()) == 5
    assert (tmp_path / "trajectory.png").stat().st_size > 0
    # nothing asked for, or a run that does not draw: a started process is stopped
    monkeypatch.undo()
    plot_process.start()
    proc = plot_process._STARTED[0]
    plot_process.Plots(False)
    assert proc.poll() is not None and not plot_process._STARTED


def test_our_bug_in_a_figure_drawn_in_the_plot_process_is_raised_by_the_run(tmp_path):
    from training import plot_process

    plot_process.start()
    plotter = plot_process.Plots(True)
    plotter.draw([("loss_curves", (tmp_path, None, None), ("loss_curves",))])
    with pytest.raises(AttributeError):  # the run draws it again, and fails as it did there
        plotter.wait()


HYDRA_MAIN_AND_OURS = """
import sys
sys.path.insert(0, {root!r})
import hydra
from hydra._internal.hydra import Hydra
from hydra.core.hydra_config import HydraConfig
from training.cli import check_overrides, run_composed

composed = []
compose_config = Hydra.compose_config
Hydra.compose_config = lambda self, *a, **k: composed.append(1) or compose_config(self, *a, **k)

def task(cfg):
    print(HydraConfig.get().mode.name, HydraConfig.get().job.name, cfg.optimizer.lr)
    return 0.0

args = {args!r}
run_composed(task, check_overrides([*args, "hydra.run.dir={ours}"]).run)
print(len(composed))
composed.clear()
sys.argv = ["train.py", *args, "hydra.run.dir={theirs}"]
hydra.main(config_path={conf!r}, config_name="config", version_base="1.3")(task)()
print(len(composed))
"""


@pytest.mark.parametrize("given", [[], ["hydra.mode=RUN"], ["hydra.job.chdir=true"]])
def test_a_single_run_is_composed_once_and_run_as_hydra_main_runs_it(tmp_path, given):
    # hydra.main composes a run's config twice (for its mode, then to run it), after train.py
    # composed it to check it: run_composed runs the config train.py composed
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    script = tmp_path / "train.py"  # Hydra names the job after the file: train
    args = ["optimizer.lr=0.05", "logger.plots=false", *given]
    code = HYDRA_MAIN_AND_OURS.format(
        root=str(ROOT), conf=str(CONF), ours=ours, theirs=theirs, args=args
    )
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == ["RUN train 0.05", "1", "RUN train 0.05", "2", ""]
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        mine = (ours / ".hydra" / name).read_text().replace(str(ours), "DIR")
        assert mine == (theirs / ".hydra" / name).read_text().replace(str(theirs), "DIR"), name


def test_a_config_that_asks_for_a_sweep_is_run_as_one():
    # conf/hparams_search/optuna.yaml sets hydra.mode=MULTIRUN: hydra.main sweeps without -m
    from training.cli import check_overrides

    args = ["hparams_search=optuna", "experiment=housing", "hydra.sweeper.n_trials=2"]
    assert check_overrides(args) == (["-m", *args], None)


def test_collect_garbage_from_now_on_sets_aside_what_is_there_and_turns_collection_on():
    import gc

    from second_process import collect_garbage_from_now_on

    frozen = gc.get_freeze_count()
    collect_garbage_from_now_on()  # on already: nothing to do, nothing set aside
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    gc.disable()
    try:
        collect_garbage_from_now_on()
        assert gc.isenabled()
        assert gc.get_freeze_count() > max(frozen, 1000)  # the test session's objects
    finally:
        gc.unfreeze()
        gc.enable()


def test_train_py_imports_with_the_collector_off_and_trains_with_it_on(tmp_path):
    # train.py's own process, as `python train.py` runs it: at its end the collector is on and
    # the objects of the imports were set aside (which happens only when it had been off)
    done = python(
        "import atexit, gc, runpy, sys\n"
        "atexit.register(lambda: print('collector', gc.isenabled(), gc.get_freeze_count()))\n"
        f"sys.argv = ['train.py', 'hydra.run.dir={tmp_path / 'run'}', 'logger.plots=false']\n"
        "runpy.run_path('train.py', run_name='__main__')"
    )
    assert done.returncode == 0, done.stderr
    on, frozen = done.stdout.strip().splitlines()[-1].split()[1:]
    assert on == "True" and int(frozen) > 100_000  # JAX's, Flax's and Hydra's objects


def test_train_py_ends_as_python_does_with_a_librarys_thread_pool_alive(tmp_path):
    # train.py's exit_now joined every thread that is not a daemon, and a pool's idle workers
    # are not: a library's pool alive at the end would have held the run for ever (helper-48)
    script = tmp_path / "end.py"
    script.write_text(
        "import json, sys\nfrom concurrent.futures import ThreadPoolExecutor\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "json.pool = ThreadPoolExecutor(2)\njson.pool.submit(print, 'pool ran').result()\n"
        "import atexit\natexit.register(print, 'atexit ran')\n"
        "from train import exit_now\nexit_now(3)\n"
    )
    proc = run_script(script, timeout=60)
    assert (proc.returncode, proc.stdout) == (3, "pool ran\natexit ran\n"), proc.stderr


def test_a_csv_run_takes_its_table_without_pandas_and_solves_on_one_blas_thread(tmp_path):
    # train.py's own process, as `python train.py` runs it, on a file with cells to fill: the
    # read ahead's process reads it, so the run imports neither pandas (its report names the
    # columns of aliased levels from the saved encoding) nor scikit-learn (the fill is
    # numpy's); its float64 linear algebra runs on one OpenBLAS thread, numpy's and scipy's
    # (training.devices one_blas_thread)
    rows = "".join(
        f"{i % 7 + 1},{'' if i % 9 == 0 else 30 + i},{'ab'[i % 2]},{2 * i + 5}\n" for i in range(60)
    )
    (tmp_path / "h.csv").write_text("rooms,area,kind,price\n" + rows)
    done = python(
        "import atexit, runpy, sys\n"
        "def seen():\n"
        "    from threadpoolctl import threadpool_info\n"
        "    blas = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "    print('seen', 'pandas' in sys.modules, 'sklearn' in sys.modules, blas)\n"
        "atexit.register(seen)\n"
        f"sys.argv = ['train.py', 'hydra.run.dir={tmp_path / 'run'}', 'logger.plots=false',\n"
        f"            'data=csv', 'data.path={tmp_path / 'h.csv'}', 'data.target=price',\n"
        "            'data.missing=mean']\n"
        "runpy.run_path('train.py', run_name='__main__')",
        unset=("OPENBLAS_NUM_THREADS",),  # as a user's shell: conftest sets it for the session
    )
    assert done.returncode == 0, done.stderr
    assert "area: numeric, missing cells filled with" in done.stdout  # the read ahead filled them
    assert done.stdout.strip().splitlines()[-1] == "seen False False [1, 1]", done.stdout
