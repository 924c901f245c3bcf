"""The walkthrough's plots: the loss as a function of W, and the learning trajectory over it.

matplotlib is not imported with this module: it costs about 0.3 s, a run needs it only at its
end, and ``logger.plots=false`` runs never. ``train.py`` draws in a second process that
imported it meanwhile (``training/plot_process.py``); a run drawing in its own process starts the
import in the background (:func:`preload`); else the first plot imports it. The figures are plain
:class:`matplotlib.figure.Figure` objects drawn by Agg, without pyplot: pyplot's figure manager
and backend selection add import time and nothing a file needs, and a figure that no pyplot
registry holds is freed with its last reference.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# Margins (fractions of the figure) that fit the axis labels and ticks of a 6 x 4 inch figure
# with one panel: what ``tight_layout`` finds for the walkthrough's plots, fixed, since it lays
# every text out once more to find them (about a third of such a figure's drawing time).
ONE_PANEL = {"left": 0.13, "right": 0.975, "bottom": 0.145, "top": 0.91}


def import_matplotlib() -> None:
    """The parts of matplotlib the figures use (no pyplot)."""
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


def preload() -> threading.Thread:
    """Start importing matplotlib in a background thread (about 0.3 s, mostly spent while the
    run compiles, which XLA does without Python's lock); the first plot waits for it."""
    global _importing
    if _importing is None:
        # not a daemon: a run that ends early waits for the import instead of killing it midway
        _importing = threading.Thread(target=import_matplotlib)
        _importing.start()
    return _importing


_importing: threading.Thread | None = None


def new_figure(figsize: tuple[float, float]) -> Figure:
    """An empty figure of ``figsize`` inches (100 dpi), drawn by Agg when saved."""
    if _importing is not None and _importing.is_alive():
        _importing.join()
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def loss_curve(X: np.ndarray, y: np.ndarray, b: float, W_grid: np.ndarray) -> np.ndarray:
    """``L(W) = sum((x W + b - y)^2) / n`` for a one-feature model, at each ``W`` of the grid."""
    r = X[:, 0][None, :] * W_grid[:, None] + b - y[None, :]
    return (r * r).sum(axis=1) / len(y)


def walkthrough_plots(
    workdir: Path,
    X: np.ndarray,
    y: np.ndarray,
    b: float,
    W_steps: np.ndarray,
    loss_steps: np.ndarray,
    w_range: tuple[float, float] = (-8.0, 10.0),
):
    """Write ``loss_vs_W.png`` and ``trajectory.png``; return both figures (for TensorBoard)."""
    W_grid = np.linspace(*w_range, 361)
    curve = loss_curve(np.asarray(X, np.float64), np.asarray(y, np.float64), b, W_grid)

    fig1 = new_figure((6, 4))
    ax = fig1.subplots()
    ax.plot(W_grid, curve, color="tab:blue")
    ax.set(xlabel="W", ylabel="loss (MSE)", title=f"Loss as a function of W (b = {b:g})")
    ax.grid(alpha=0.3)
    fig1.subplots_adjust(**ONE_PANEL)
    fig1.savefig(workdir / "loss_vs_W.png", dpi=100)

    fig2 = new_figure((6, 4))
    ax = fig2.subplots()
    ax.plot(W_grid, curve, color="tab:blue", label="loss(W)")
    ax.plot(W_steps, loss_steps, "o-", color="tab:red", markersize=3, label="gradient descent")
    ax.annotate("start", (W_steps[0], loss_steps[0]), textcoords="offset points", xytext=(5, 5))
    ax.set(xlabel="W", ylabel="loss (MSE)", title="Learning trajectory")
    ax.legend()
    ax.grid(alpha=0.3)
    fig2.subplots_adjust(**ONE_PANEL)
    fig2.savefig(workdir / "trajectory.png", dpi=100)
    return fig1, fig2


class History:
    """What the plots draw, kept small: at most ``limit`` points, halved when full."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self.steps: list[np.ndarray] = []
        self.values: list[np.ndarray] = []

    def add(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Append the points ``(steps[i], values[i])`` past the last step held: a resumed run
        logs again the step it resumes at, which its restored history holds already."""
        steps, values = np.asarray(steps), np.asarray(values)
        if self.steps and len(self.steps[-1]) and len(steps):
            new = steps > self.steps[-1][-1]
            steps, values = steps[new], values[new]
        self.steps.append(steps)
        self.values.append(values)
        if sum(len(s) for s in self.steps) > self.limit:
            steps, values = self.arrays()
            self.steps, self.values = [steps[::2]], [values[::2]]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.steps:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(self.steps), np.concatenate(self.values)


def _plain_log_formatter(**kwargs):
    """matplotlib's choice of labelled ticks on a log axis, each labelled ``f"{x:g}"``."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def __call__(self, x, pos=None):
            return super().__call__(x, pos) and f"{x:g}"

    return PlainLogFormatter(**kwargs)


def loss_curves(workdir: Path, train: History, val: History):
    """``loss_curves.png``: the training loss by step and, when there is one, the validation
    MSE (in the target's units) by step."""
    panels = 2 if val.steps else 1
    fig = new_figure((6 * panels, 4))
    axes = fig.subplots(1, panels, squeeze=False)
    steps, loss = train.arrays()
    ax = axes[0, 0]
    ax.plot(steps, loss, color="tab:blue", lw=1)
    ax.set(xlabel="step", ylabel="training loss (MSE, model units)", title="Training loss")
    if len(loss) and np.all(loss[np.isfinite(loss)] > 0):
        ax.set_yscale("log")
        # plain numbers (100, 0.01): the default 10^k labels start matplotlib's TeX-like
        # parser, a third of this figure's drawing time
        ax.yaxis.set_major_formatter(_plain_log_formatter(labelOnlyBase=True))
        ax.yaxis.set_minor_formatter(
            _plain_log_formatter(labelOnlyBase=False, minor_thresholds=(2, 0.4))
        )
    ax.grid(alpha=0.3)
    if val.steps:
        steps, mse = val.arrays()
        ax = axes[0, 1]
        ax.plot(steps, mse, "o-", color="tab:orange", markersize=2, lw=1)
        ax.set(xlabel="step", ylabel="validation MSE (target units)", title="Validation")
        ax.grid(alpha=0.3)
        fig.tight_layout()  # two panels: their labels' widths vary with the target's units
    else:
        fig.subplots_adjust(**ONE_PANEL)
    fig.savefig(workdir / "loss_curves.png", dpi=100)
    return fig


def loss_surface(
    workdir: Path,
    moments: dict,
    names: tuple[str, str],
    final: tuple[float, float],
    path: np.ndarray,
):
    """``loss_surface.png``: the training loss over two weights of a linear model, the others
    held at their final values, with the learning trajectory of those two weights over it.

    With ``r0`` the residuals at the final parameters, the loss at ``(W_i + a, W_j + b)`` is the
    exact quadratic ``E[(r0 + a x_i + b x_j)^2]``, so six moments of the training rows
    (``moments``: ``rr, ri, rj, ii, jj, ij``) draw it for any number of rows.
    """
    lo = np.minimum(path.min(axis=0), final) if len(path) else np.asarray(final)
    hi = np.maximum(path.max(axis=0), final) if len(path) else np.asarray(final)
    pad = np.maximum((hi - lo) * 0.25, 0.5 * np.maximum(np.abs(np.asarray(final)), 1e-3))
    gi = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 121)
    gj = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 121)
    A, B = np.meshgrid(gi - final[0], gj - final[1])
    m = moments
    Z = (
        m["rr"]
        + 2 * A * m["ri"]
        + 2 * B * m["rj"]
        + A * A * m["ii"]
        + B * B * m["jj"]
        + 2 * A * B * m["ij"]
    )
    fig = new_figure((6, 5))
    ax = fig.subplots()
    levels = np.quantile(Z, np.linspace(0, 1, 25) ** 2)
    cs = ax.contourf(gi, gj, Z, levels=np.unique(levels), cmap="viridis")
    fig.colorbar(cs, ax=ax, label="training loss (MSE)")
    if len(path):
        ax.plot(
            path[:, 0],
            path[:, 1],
            ".-",
            color="tab:red",
            markersize=2,
            lw=1,
            label="gradient descent",
        )
        ax.plot(*path[0], "o", color="white", markeredgecolor="black", label="start")
    ax.plot(*final, "*", color="gold", markersize=12, markeredgecolor="black", label="end")
    ax.set(
        xlabel=f"W[{names[0]}]",
        ylabel=f"W[{names[1]}]",
        title="Loss surface and learning trajectory",
    )
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(workdir / "loss_surface.png", dpi=100)
    return fig


def diagnostic_plots(
    workdir: Path,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    rows: str,
    target: str,
    max_points: int = 20_000,
):
    """``predicted_vs_actual.png`` (with the line ``predicted = actual``) and ``residuals.png``
    (``actual - predicted`` against the predicted value, with zero marked), both in the
    target's units, for the rows named by ``rows`` (``validation`` or ``training``). More than
    ``max_points`` rows are drawn as a fixed random sample of that many, which the titles say.
    Returns both figures (for TensorBoard)."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    n = len(y_true)
    shown = f"{n} {rows} rows"
    if n > max_points:  # a scatter of 10^7 points takes minutes and shows no more
        pick = np.sort(np.random.default_rng(0).choice(n, max_points, replace=False))
        y_true, y_pred = y_true[pick], y_pred[pick]
        shown = f"{max_points} of {n} {rows} rows"
    resid = y_true - y_pred
    alpha = 0.6 if len(y_true) <= 2000 else 0.2

    fig1 = new_figure((5.5, 5))
    ax = fig1.subplots()
    ax.scatter(y_true, y_pred, s=8, alpha=alpha, color="tab:blue", lw=0)
    lo = float(min(y_true.min(), y_pred.min())) if n else 0.0
    hi = float(max(y_true.max(), y_pred.max())) if n else 1.0
    ax.plot([lo, hi], [lo, hi], color="tab:red", lw=1, label="predicted = actual")
    ax.set(
        xlabel=f"actual {target}",
        ylabel=f"predicted {target}",
        title=f"Predicted against actual ({shown})",
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig1.tight_layout()
    fig1.savefig(workdir / "predicted_vs_actual.png", dpi=100)

    fig2 = new_figure((6, 4))
    ax = fig2.subplots()
    ax.scatter(y_pred, resid, s=8, alpha=alpha, color="tab:blue", lw=0)
    ax.axhline(0.0, color="tab:red", lw=1)
    ax.set(
        xlabel=f"predicted {target}",
        ylabel=f"residual (actual - predicted {target})",
        title=f"Residuals against predicted values ({shown})",
    )
    ax.grid(alpha=0.3)
    fig2.tight_layout()
    fig2.savefig(workdir / "residuals.png", dpi=100)
    return fig1, fig2
