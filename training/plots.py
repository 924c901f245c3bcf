"""The walkthrough's plots: the loss as a function of W, and the learning trajectory over it."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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

    fig1, ax = plt.subplots(figsize=(6, 4))
    ax.plot(W_grid, curve, color="tab:blue")
    ax.set(xlabel="W", ylabel="loss (MSE)", title=f"Loss as a function of W (b = {b:g})")
    ax.grid(alpha=0.3)
    fig1.tight_layout()
    fig1.savefig(workdir / "loss_vs_W.png", dpi=100)

    fig2, ax = plt.subplots(figsize=(6, 4))
    ax.plot(W_grid, curve, color="tab:blue", label="loss(W)")
    ax.plot(W_steps, loss_steps, "o-", color="tab:red", markersize=3, label="gradient descent")
    ax.annotate("start", (W_steps[0], loss_steps[0]), textcoords="offset points", xytext=(5, 5))
    ax.set(xlabel="W", ylabel="loss (MSE)", title="Learning trajectory")
    ax.legend()
    ax.grid(alpha=0.3)
    fig2.tight_layout()
    fig2.savefig(workdir / "trajectory.png", dpi=100)
    return fig1, fig2


def close(*figs) -> None:
    for fig in figs:
        plt.close(fig)
