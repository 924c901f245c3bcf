"""The run's figures, drawn in a second process while the run writes its report.

matplotlib takes about 0.35 s to import and the figures of a run (five PNGs for the
walkthrough, four for a CSV) 0.3-0.5 s to draw, one after another, all of it holding Python's
lock, in a run of 3 s. ``train.py`` starts this process right after composing the config
(:func:`start`; a CSV run once it has read its data, as the CSV's own second process needs the
other core until then), so matplotlib is imported on the other core while the run imports JAX
and trains. At the end the run sends the figures' inputs (:meth:`Plots.draw`), this process
forks one process a figure (:func:`draw_at_once`), and the run computes its report and waits
for the files (:meth:`Plots.wait`).

Both draw with the same functions (``training/plots.py``) from the same host values, so the
files are the same (tested byte for byte). A run without that process (``train_and_evaluate``
called in a process of one's own, a sweep's runs, a second process that cannot start or fails)
draws in its own process; a failure there is reported as our bug.
"""

from __future__ import annotations

import os
import subprocess

import second_process
from training import plots

# a function of training.plots, its arguments, and the PNGs it writes (names without ".png")
Job = tuple[str, tuple, tuple[str, ...]]

_STARTED: list[subprocess.Popen] = []  # at most one, started for the run to come
_WANTED = [False]  # the next run draws in a plot process (train.py's single run)


def start(now: bool = True) -> None:
    """Have the run about to begin draw in a plot process, which imports matplotlib and
    waits: started ``now``, or (a CSV run, whose read ahead has the other core until then)
    when the run has its data (:class:`Plots`)."""
    _WANTED[0] = True
    if now and not _STARTED:
        proc = second_process.spawn("training.plot_process", send_now=False)
        if proc is not None:
            _STARTED.append(proc)


def _drop_started() -> None:
    for proc in _STARTED:
        second_process.stop(proc)
    _STARTED.clear()


class Plots:
    """Draws one run's figures: in a plot process if :func:`start` asked for one (made once the
    run has its data, if not yet) and it started, else here (importing matplotlib in a
    background thread meanwhile, :func:`plots.preload`). ``enabled``: this process draws
    (``logger.plots``, process 0); otherwise nothing, and a plot process started is stopped."""

    def __init__(self, enabled: bool) -> None:
        if enabled and _WANTED[0]:
            start()
        _WANTED[0] = False  # asked for the next run only
        self.proc = _STARTED.pop() if enabled and _STARTED else None
        _drop_started()
        if enabled and self.proc is None:
            plots.preload()
        self.jobs: list[Job] = []
        self.sent = False

    def draw(self, jobs: list[Job]) -> None:
        """Start drawing ``jobs`` (the files go where their arguments say: absolute paths)."""
        self.jobs = list(jobs)
        if self.proc is not None and self.jobs and second_process.send(self.proc, self.jobs):
            self.sent = True
        else:
            self.close()
            draw_here(self.jobs)

    def wait(self) -> list[str]:
        """The names of the PNGs :meth:`draw` wrote, once they are all written."""
        if self.sent:
            self.sent = False
            if second_process.result(self.proc) != "drawn":
                draw_here(self.jobs)  # our bug there is raised here, with its traceback
            self.proc = None
        names = [name for _, _, names in self.jobs for name in names]
        self.jobs = []
        return names

    def close(self) -> None:
        """Stop the plot process, if any: the run ends (a run that failed before its figures
        were drawn leaves none half-written by a process that outlives it)."""
        if self.proc is not None:
            second_process.stop(self.proc)
            self.proc, self.sent = None, False


def draw_here(jobs: list[Job]) -> None:
    """Draw ``jobs`` in this process, one after another."""
    for name, args, _ in jobs:
        getattr(plots, name)(*args)


def draw_at_once(jobs: list[Job]) -> bool:
    """Draw each job in a process of its own, forked from this one with matplotlib imported
    (the run waits on an idle core meanwhile: its four figures of a CSV run take 0.5 s one
    after another); where there is no ``fork``, one after another. Returns whether all were
    drawn."""
    if len(jobs) < 2 or not hasattr(os, "fork"):
        try:
            draw_here(jobs)
        except Exception:  # noqa: BLE001 - reported by the run, which draws them again
            return False
        return True
    parent, forked = os.getpid(), []
    for job in jobs:
        pid = os.fork()
        if pid == 0:
            second_process.leave_with(parent)
            try:
                draw_here([job])
            except BaseException:  # noqa: BLE001
                os._exit(1)
            os._exit(0)
        forked.append(pid)
    return all(os.waitpid(pid, 0)[1] == 0 for pid in forked)


def main() -> None:
    """The second process: import matplotlib, wait for the jobs, draw them, answer "drawn";
    our bug while drawing exits non-zero (the run draws itself and reports it)."""
    out = second_process.serve()
    os.nice(5)  # the run's imports, and a CSV's read ahead, go first: the plots come last
    try:
        plots.import_matplotlib()
    except Exception:  # noqa: BLE001 - the run draws, and reports it
        os._exit(1)
    if not draw_at_once(second_process.request()):
        os._exit(1)
    second_process.answer(out, "drawn")


if __name__ == "__main__":
    main()
