"""The end of a run: final metrics per split, the linear model's least-squares report
(coefficients, the gap to least squares, standard errors) and the plots.

Every process computes what reads the sharded training rows (a collective); process 0 alone
prints and draws.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental.multihost_utils import process_allgather
from omegaconf import DictConfig

from data.column_code import input_sources
from errors import printable
from training.build import Rows, Run
from training.devices import replicate, to_host
from training.evaluate import (
    coefficient_gap,
    coefficients,
    linear_inference,
    regression_metrics,
    residual_moments,
)
from training.hooks import Progressed
from training.logs import PREDICTIONS, fmt, param_columns, write_predictions
from training.optim import GRADIENT_DESCENT, method_of
from training.stability import condition_numbers
from training.step import loss_fn

SPLITS = ("train", "val", "test")
CONVERGED_GAP = 1e-3  # the largest relative coefficient gap to least squares of a converged fit
R2_REACHED = 1e-4  # |R^2 - R^2 of least squares| at most this: least squares reached
# data.standardize=true is advised when the Gram matrix's condition number is over this many
# times what it is on standardized columns (gradient descent's steps grow with it)
SCALING_MATTERS = 10.0
# a shuffled run of fewer epochs is advised more of them with its decaying step
SHORT_RUN = 1000


def gathered(fn, *args) -> np.ndarray:
    """``fn(*args)`` compiled, its output gathered whole from every device and process."""
    return process_allgather(jax.jit(fn)(*args), tiled=True)


def fit_on_training_rows(run: Run, params) -> tuple[np.ndarray, float]:
    """The model's predictions on the training rows, ``(n,)`` in the scaled target's units,
    and the objective it trained there, from one compiled program (a walkthrough's first run
    compiles each of its programs: tens of ms apiece); gathered from every device and process,
    the padding rows dropped. Every process must call this."""
    rows = run.rows
    pred, loss = process_allgather(
        _predictions_and_loss(run.model.apply_fn, run.model.objective)(
            params, rows.X, rows.y, rows.w
        ),
        tiled=True,
    )
    return pred[: rows.n], float(loss)


def _mean_square_y(data) -> float:
    """The training target's mean square in the units the model is trained in (its log, then
    scaled), from the host's copy in the target's own units."""
    y = np.asarray(data.y_raw["train"], np.float64)
    y = np.log(y) if data.log_target else y
    s = data.scaling
    return float(np.mean(np.square((y - s.y_mean) / s.y_scale))) if len(y) else 0.0


def gradient_norm(run: Run, params) -> float:
    """``||grad J||_2`` of the trained objective over the trainable parameters at ``params``
    on the training rows, in float32 as training computes it (the norm ``trainer.tol``
    bounds): at the float64 minimum, the smallest gradient float32 can show there. Every
    process must call this."""
    frozen = tuple(run.settings.cfg.optimizer.freeze)
    fn = _gradient_norm(run.model.apply_fn, run.model.objective, frozen)
    rows = run.rows
    return float(np.ravel(process_allgather(fn(params, rows.X, rows.y, rows.w)))[0])


@functools.cache
def _gradient_norm(apply_fn, objective, frozen: tuple[str, ...]):
    def fn(p, X, y, w):
        grads = jax.grad(loss_fn)(p, apply_fn, X, y, w, objective)  # the loss training takes
        return optax.tree.norm({k: g for k, g in grads.items() if k not in frozen})

    return jax.jit(fn)


@functools.cache
def _predictions_and_loss(apply_fn, objective):
    def fn(p, X, y, w):
        pred = apply_fn(p, X)
        return pred, objective(p, pred, y, w)

    return jax.jit(fn)


def evaluate(run: Run, params, at: Progressed) -> dict:
    """Final metrics per split in the target's units, the plots (drawn while the rest is
    computed: :class:`training.plot_process.Plots`), then what :func:`final_reports` adds (the
    linear model's coefficients beside least squares') and the last line."""
    names, writes = run.model.names, run.settings.writes
    final = to_host(params)
    metrics, predicted = split_metrics(run, params, final, at)
    if writes and run.data.file_rows is not None:  # a file's rows: which trained, each's error
        write_predictions(
            run.settings.workdir / PREDICTIONS,
            run.settings.cfg.data.target,
            run.data.file_rows,
            run.data.rows,
            run.data.y_raw,
            predicted,
        )
    if run.settings.cfg.logger.plots:
        # what the plots need from the sharded rows is a collective: every process computes
        # it, process 0 draws (a call only process 0 makes waits for the others for ever)
        needs = plot_inputs(run, final)
        if writes:
            split = "val" if "val" in predicted else "train"
            actual = run.data.y_raw[split]
            draw_plots(run, final, needs, (split, actual, predicted[split]))
    for report in final_reports(run):
        metrics.update(report(run, params, final, metrics, at))
    if writes:
        shown = list(metrics["params"].items())[:8] if len(names) <= 8 else []
        print(
            f"done: {at.step} steps, {at.epoch} epochs ({at.stopped}), final loss "
            f"{fmt(metrics['final_loss'])}"
            + "".join(f", {printable(k)} {fmt(v)}" for k, v in shown)
        )
    workdir = run.settings.workdir
    for name in run.out.plots.wait():  # each figure drawn once, into its PNG: TensorBoard's too
        run.out.tb.png(f"plots/{name}", (workdir / f"{name}.png").read_bytes(), at.step)
    return metrics


def split_metrics(run: Run, params, final: dict, at: Progressed) -> tuple[dict, dict]:
    """The final loss, parameters and each split's metrics (also to TensorBoard), and each
    split's predictions in the target's units. ``final``: ``params`` on the host."""
    data, names, tb = run.data, run.model.names, run.out.tb
    apply_fn = run.model.apply_fn
    if tb.params_at.get("scalars") != at.step:  # a run that converged logged them there
        for tag, value in param_columns(final, names).items():
            tb.scalar(f"params/{tag}", value, at.step)
    if np.ndim(final.get("W")) == 1 and np.size(final["W"]) > 1:
        if tb.params_at.get("histogram") != at.step:
            tb.histogram("params/W", final["W"], at.step)
    pred_train, final_loss = fit_on_training_rows(run, params)
    tb.scalar("train/final_loss", final_loss, at.step)
    metrics: dict = {
        "final_loss": final_loss,
        "params": param_columns(final, names),
        "steps": at.step,
        "epochs": at.epoch,
        "stopped": at.stopped,
    }
    predicted = {}  # split -> predictions in the target's units, for the diagnostic plots
    for split in SPLITS:
        if len(data.rows[split]) == 0:
            continue
        pred = pred_train if split == "train" else np.asarray(apply_fn(final, data.X[split]))
        predicted[split] = data.to_target_units(pred)
        metrics[split] = regression_metrics(data.y_raw[split], predicted[split])
        for k, v in metrics[split].items():
            tb.scalar(f"metrics/{split}/{k}", v, at.step)
    return metrics, predicted


def final_reports(run: Run) -> list:
    """The end-of-run hooks, each ``report(run, params, final, metrics, at) -> dict`` of
    metrics to add: the least-squares report for the linear model only."""
    return [least_squares_report] if run.model.linear else [no_inference]


def no_inference(run: Run, params, final: dict, metrics: dict, at: Progressed) -> dict:
    """A model other than x @ W + b: no standard errors."""
    return {
        "standard_errors": None,
        "inference": {"note": "standard errors are for the linear model x @ W + b only"},
    }


def least_squares_report(run: Run, params, final: dict, metrics: dict, at: Progressed) -> dict:
    """The linear model's coefficients in the user's units beside least squares' on the same
    rows, their gap, and the standard errors (:func:`training.evaluate.linear_inference`);
    printed on process 0 (the table with more than one feature, then one line on whether least
    squares was reached)."""
    data, names, rows = run.data, run.model.names, run.rows
    coefs = coefficients(final["W"], final["b"], data.scaling, names)
    W_ols, b_ols = rows.ols
    ols = coefficients(W_ols, b_ols, data.scaling, names)
    # least squares' weights in the same model, on the same (device) rows
    p_ols = replicate(
        rows.mesh, rows.device, {"W": W_ols.astype(np.float32), "b": np.float32(b_ols)}
    )
    pred_ols, loss_ols = fit_on_training_rows(run, p_ols)
    ols["r2"] = regression_metrics(data.y_raw["train"], data.to_target_units(pred_ols))["r2"]
    objective = run.model.objective
    out = {
        "coefficients": coefs,
        "reference": objective.reference_name(),  # what `ols` is: the trained objective's
        "ols": ols,
        # the objective, as training computes it in float32, at the reference's coefficients,
        # and float32's resolution of a squared error of the target's size
        "loss_at_reference": loss_ols,
        "float32_loss_resolution": float(np.finfo(np.float32).eps ** 2 * _mean_square_y(data)),
        "ols_gap": {
            "max_rel_coefficient_diff": coefficient_gap(coefs, ols),
            "r2_diff": metrics["train"]["r2"] - ols["r2"],
        },
    }
    # every process: the training rows may be sharded over all of them
    if at.stopped == "converged" and not reached({**metrics, **out}):  # every process
        out["gradient_at_minimum"] = gradient_norm(run, p_ols)
    G, H = residual_moments(params["W"], params["b"], rows.X, rows.y, rows.w)
    kappa, kappa_standardized = condition_numbers(G)
    out["conditioning"] = {"gram": kappa, "gram_standardized": kappa_standardized}
    converged = out["ols_gap"]["max_rel_coefficient_diff"] < CONVERGED_GAP
    estimator = objective.reference_label()
    frozen = list(run.settings.cfg.optimizer.freeze)
    if frozen:  # least squares' covariance is over every parameter, not the trainable ones
        estimator += (
            f" with {', '.join(frozen)} held by optimizer.freeze (standard errors need "
            "optimizer.freeze=[])"
        )
    out.update(
        linear_inference(
            G, H, rows.n, coefs, data.scaling, names, converged=converged, estimator=estimator,
            sources=input_sources(run.out.preprocessing.get("encoding")),
        )
    )  # fmt: skip
    if run.settings.writes:
        if len(names) > 1:
            method = METHOD_OF_OPTIMIZER.get(run.settings.cfg.optimizer.name, "gradient descent")
            print_coefficients(coefs, ols, {**metrics, **out}, objective.reference_label(), method)
        # the walkthrough's trace is its own report (and stays as the README prints it)
        cfg = run.settings.cfg
        if not (cfg.logger.print_trace and len(names) == 1):
            ref = objective.reference_name()
            say_convergence(cfg, {**metrics, **out}, at, run.optimizer.chosen, ref)
    return out


def reached(metrics: dict) -> bool:
    """Whether the fit reached the objective's minimum on the training rows: R^2 within
    ``R2_REACHED`` and, on a design of full rank, every coefficient within ``CONVERGED_GAP``
    relative (on a rank-deficient one only the fit is unique: the coefficients' gap lies along
    the aliased columns)."""
    r2, r2_ols = metrics["train"]["r2"], metrics["ols"]["r2"]
    coef = metrics["ols_gap"]["max_rel_coefficient_diff"]
    return abs(r2 - r2_ols) <= R2_REACHED and (_aliased(metrics) or coef < CONVERGED_GAP)


def _aliased(metrics: dict) -> bool:
    """Whether the design is rank-deficient (the standard errors' ``aliased`` columns), so the
    coefficients are no measure of the fit."""
    return bool(metrics.get("inference", {}).get("aliased"))


def tol_needed(tol: float, metrics: dict) -> float:
    """The gradient norm a run stopped by ``trainer.tol=tol`` short of least squares has to go
    below to reach it: near the minimum the parameters' error is ``H^-1 g``, in proportion to
    the gradient ``g``, so the largest relative coefficient difference ``gap`` falls with it to
    ``CONVERGED_GAP`` at ``tol * CONVERGED_GAP / gap``, halved for a margin; a hundredth of
    ``tol`` where the coefficients are not the measure (an aliased design: R^2 alone).
    A fixed hundredth had been too little on a design of condition number 7661 (a gap of
    2.85e-02 at tol 1e-06, 1.1e-02 at the advised 4e-07)."""
    gap = metrics["ols_gap"]["max_rel_coefficient_diff"]
    if _aliased(metrics) or not gap > CONVERGED_GAP:
        return tol / 100
    return tol * CONVERGED_GAP / gap / 2


def _one_digit(x: float, rounding=math.ceil) -> float:
    """``x`` > 0 rounded to one significant digit, up (``math.ceil``: 9.02e-08 -> 1e-07) or
    down (``math.floor``: 1.75e-08 -> 1e-08)."""
    exponent = math.floor(math.log10(x))
    return rounding(x / 10**exponent) * 10**exponent


def say_convergence(
    cfg: DictConfig, metrics: dict, at: Progressed, chosen: dict, ref: str = "least squares"
) -> None:
    """One line: whether the linear model reached least squares (``ref``: the reference of
    the objective trained, ``training/objectives.py``) on the training rows (their R^2 within
    ``R2_REACHED`` and, on a design of full rank, every coefficient within ``CONVERGED_GAP``
    relative); if not, a ``warning:`` with the gap and what to change."""
    r2, r2_ols = metrics["train"]["r2"], metrics["ols"]["r2"]
    if not (np.isfinite(r2) and np.isfinite(r2_ols)):
        return
    coef = metrics["ols_gap"]["max_rel_coefficient_diff"]
    possessive = ref + ("'" if ref.endswith("s") else "'s")  # least squares', the ridge minimum's
    gap = (
        f"R^2 {r2:.6f} against {possessive} {r2_ols:.6f}, largest relative coefficient "
        f"difference {coef:.2e}"
    )
    if reached(metrics):
        print(f"reached {ref}: {gap}")
        return
    at_reference = metrics.get("loss_at_reference")
    resolution = metrics.get("float32_loss_resolution") or 0.0
    final = metrics.get("final_loss")
    # no lower objective in float32 than at the minimum's own coefficients, or both within a
    # few roundings of the target (a fit to float32's last digit): more steps cannot close
    # the gap (3.43e-03 after 40, 400 and 4000 epochs, each run advised ten times more)
    if (
        at_reference is not None
        and final is not None
        and (
            final <= at_reference
            or (at_reference <= 100 * resolution and final <= 4 * at_reference)
        )
    ):
        print(
            f"reached {ref} as closely as float32 allows: {gap}; the objective, {fmt(final)}, "
            f"is within float32's rounding of its value at {possessive} coefficients "
            f"({fmt(at_reference)})"
        )
        return
    o, tr = cfg.optimizer, cfg.trainer
    if o.freeze:  # least squares over every parameter is not this model's optimum
        print(f"{ref} over every parameter, with {', '.join(o.freeze)} frozen: {gap}")
        return
    stochastic = cfg.loader.name != "full_batch"
    # SGD's iterates settle on the minimum only as its step goes to 0 (Robbins and Monro 1951):
    # a constant step ends in noise around it, of a size in proportion to the step, so a
    # smaller one only moved the noise (experiment=housing loader=per_sample: the advice
    # lr / 10 with 10x the epochs ended 0.61 from least squares, cosine's decay to 0 with the
    # same epochs 8e-4)
    decays = o.schedule in ("cosine", "warmup_cosine") and not o.end_lr_factor
    to_zero = "optimizer.schedule=cosine"
    if o.end_lr_factor:
        to_zero += " optimizer.end_lr_factor=0"
    if at.stopped == "converged":
        # a tol below float32's own gradient at the minimum is never met: the run went on to
        # its 100,000 epochs (a 200k-row file: 69 s), right but slow
        floor = metrics.get("gradient_at_minimum") or 0.0
        needed = tol_needed(tr.tol, metrics)
        if needed >= 2 * floor:
            at_least = _one_digit(2 * floor) if floor else 0.0
            tol = f"trainer.tol={max(_one_digit(needed, math.floor), at_least):g}"
        else:  # no tol that small can be met in float32: more epochs with none
            tol = f"trainer.tol=0 trainer.epochs={10 * max(at.epoch, 1)}"
        if stochastic:  # the epoch's mean loss changes little long before the end
            tol = "trainer.tol=0" if decays else f"{to_zero} trainer.tol=0"
        print(
            f"warning: stopped by trainer.tol={tr.tol:g} before reaching {ref}: {gap}; "
            f"rerun with {tol}"
        )
        return
    # ten times the epochs the run has been through (a run resumed with fewer epochs than it
    # had done was advised fewer still)
    more = f"trainer.epochs={10 * max(tr.epochs, at.epoch)}"
    conditioning = metrics.get("conditioning") or {}
    scales_slow_it = conditioning.get("gram", np.inf) > SCALING_MATTERS * conditioning.get(
        "gram_standardized", 1.0
    )
    if not cfg.data.get("standardize", True) and scales_slow_it:
        # columns of different scales (a lot size in thousands beside 0/1 columns) leave the
        # Hessian eigenvalues far apart: no number of epochs makes up for that. Columns already
        # on one scale (experiment=synthetic's N(0, 1)) were advised it too, to no effect
        advice = (
            "rerun with data.standardize=true, which puts every column on one scale (left "
            "unscaled, gradient descent moves along the small columns as slowly as the Hessian's "
            "smallest eigenvalue against its largest allows)"
        )
    elif stochastic and decays:
        advice = "rerun with " + ", or with ".join([*full_batch(o, tr), f"{more} trainer.tol=0"])
    elif stochastic:
        # a short run is still on its way, not in noise at the minimum: the same epochs with a
        # decaying step ended further from it (experiment=housing loader=mini_batch
        # trainer.epochs=5: 2.23 -> 3.89); a longer one is in noise, and decays onto it
        decay = f"{to_zero} {more if at.epoch < SHORT_RUN else ''} trainer.tol=0".replace("  ", " ")
        advice = (
            f"a step that does not decay to 0 on {cfg.loader.name} batches ends in noise around "
            f"it, of a size in proportion to the step: rerun with "
            + ", or with ".join([*full_batch(o, tr), decay])
            + " (the step decays to 0 over the run)"
        )
    elif method_of(o) == GRADIENT_DESCENT:
        advice = (
            # optimizer.name, not the group: a command that sets optimizer.name keeps it; the
            # step named too, or a run's own (experiment=synthetic's 0.01) stayed
            f"rerun with {more}, or with optimizer.name=nesterov optimizer.lr=auto "
            "optimizer.momentum=auto (both taken from the data)"
        )
    elif (
        method_of(o) is None
        and not decays
        and o.schedule != "exponential"
        and abs(r2 - r2_ols) <= R2_REACHED
    ):
        # the objective at its minimum, the coefficients not: an adaptive step divided by the
        # gradient's own size (Lion's sign, Adam's m / sqrt(v) once eps no longer dominates) is
        # about the step size in every weight however near the minimum, so with a constant step
        # the iterates circle it. The README's Lion file ended 8.0e-02 from least squares after
        # 20,000 epochs, and 6.4e-02 after the 200,000 it was advised; with cosine's decay to 0
        # the same 20,000 reached it (4.5e-07)
        advice = (
            f"rerun with {to_zero} trainer.tol=0 (a step that does not decay to 0 moves the "
            "weights about as far at each step near the minimum as away from it)"
        )
    else:
        auto = "" if "optimizer.lr" in chosen else " or optimizer.lr=auto"
        advice = f"rerun with {more}{auto}"
    print(f"warning: stopped after {at.epoch} epochs before reaching {ref}: {gap}; {advice}")


def full_batch(o: DictConfig, tr: DictConfig) -> list[str]:
    """The full-batch run that reaches least squares where a shuffled one fell short, or none
    for an optimizer whose step is not taken from the Hessian (Adam's). ``loader=full_batch``
    alone kept the run's epochs: ``experiment=synthetic``'s five were five steps, far from it;
    with the Hessian's step it stops on ``trainer.tol``."""
    if method_of(o) is None:
        return []
    tol = min(tr.tol, 1e-6) if tr.tol > 0 else 1e-6
    return [f"loader=full_batch optimizer.lr=auto trainer.epochs=auto trainer.tol={tol:g}"]


def plot_inputs(run: Run, final: dict) -> dict:
    """The device values the plots read, computed on every process: the walkthrough's rows
    (gathered whole) and the loss surface's two weights and moments."""
    needs: dict = {}
    rows, names, cfg = run.rows, run.model.names, run.settings.cfg
    if len(names) == 1 and cfg.logger.print_trace:  # the walkthrough's plots
        needs["X"], needs["y"] = (
            process_allgather(a, tiled=True)[: rows.n] for a in (rows.X, rows.y)
        )
    W = final.get("W")
    if run.model.linear and len(W) >= 2:
        chosen = list(cfg.logger.plot_weights)
        unknown = [c for c in chosen if c not in names]
        if len(set(chosen)) != 2 or len(chosen) != 2 or unknown:
            if chosen and run.settings.writes:
                print(
                    f"warning: logger.plot_weights={chosen} needs two different names of "
                    f"{names}; plotting the two largest weights"
                )
            chosen = [names[k] for k in np.argsort(-np.abs(W))[:2]]
        i, j = (names.index(c) for c in chosen)
        needs["surface"] = (chosen, i, j, surface_moments(rows, final, i, j))
    return needs


def draw_plots(run: Run, final: dict, needs: dict, diagnostics=None) -> None:
    """Start drawing the PNGs in the run directory (:meth:`Plots.draw`; TensorBoard gets the
    same images, ``plots/*``, once they are written), from host values only (``needs``:
    :func:`plot_inputs`), so that process 0 alone can draw. ``diagnostics``: ``(split, actual,
    predicted)`` in the target's units for the predicted against actual and residual plots."""
    workdir, curves = run.settings.workdir.absolute(), run.out.curves
    jobs = []
    if diagnostics is not None:
        split, actual, pred = diagnostics
        label = "validation" if split == "val" else "training"
        target = run.out.preprocessing["target"] or "target"
        args = (workdir, actual, pred, label, target)
        jobs.append(("diagnostic_plots", args, ("predicted_vs_actual", "residuals")))
    if "X" in needs and curves.trace_W:  # the walkthrough's two plots
        b = float(np.ravel(final["b"])[0])
        trace = (np.concatenate(curves.trace_W), np.concatenate(curves.trace_loss))
        args = (workdir, needs["X"], needs["y"], b, *trace)
        jobs.append(("walkthrough_plots", args, ("loss_vs_W", "trajectory")))
    if curves.loss.steps:
        jobs.append(("loss_curves", (workdir, curves.loss, curves.val), ("loss_curves",)))
    W = final.get("W")
    if "surface" in needs:
        chosen, i, j, moments = needs["surface"]
        _, path = curves.W.arrays()
        path = path[:, [i, j]] if len(path) else np.zeros((0, 2))
        args = (workdir, moments, (chosen[0], chosen[1]), (float(W[i]), float(W[j])), path)
        jobs.append(("loss_surface", args, ("loss_surface",)))
    run.out.plots.draw(jobs)


def surface_moments(rows: Rows, final: dict, i: int, j: int) -> dict:
    """The six moments of the training rows that give the loss over (W_i, W_j) exactly."""

    def moments(p, X, y, w):
        r = X @ p["W"] + p["b"] - y
        wt = jnp.ones_like(y) if w is None else w
        n = jnp.sum(wt)
        xi, xj = X[:, i], X[:, j]
        return {
            k: jnp.sum(wt * v) / n
            for k, v in (
                ("rr", r * r),
                ("ri", r * xi),
                ("rj", r * xj),
                ("ii", xi * xi),
                ("jj", xj * xj),
                ("ij", xi * xj),
            )
        }

    p = replicate(rows.mesh, rows.device, {k: np.asarray(v, np.float32) for k, v in final.items()})
    return {k: float(v) for k, v in gathered(moments, p, rows.X, rows.y, rows.w).items()}


METHOD_OF_OPTIMIZER = {"adam": "Adam", "adamw": "AdamW"}  # the rest: gradient descent


def print_coefficients(
    coefs: dict,
    ols: dict,
    metrics: dict,
    ref: str = "least squares",
    method: str = "gradient descent",
) -> None:
    """The coefficient table: the trained coefficients (``method``, the column's header: what
    trained them) beside ``ref``'s, with the classical and HC1 (White) standard errors, the
    classical t statistic and its two-sided p-value."""
    width = max(len(printable(k)) for k in coefs)
    se, t, pv = metrics["standard_errors"], metrics["t_statistics"], metrics["p_values"]
    print(
        f"{'coefficient':<{width}}  {method:>16}  {ref:>14}  rel diff"
        f"  {'std error':>10}  {'HC1 s.e.':>10}  {'t':>7}  {'P>|t|':>8}"
    )
    for k, v in coefs.items():
        rel = abs(v - ols[k]) / max(abs(ols[k]), 1e-300)
        stats = "  (n/a)"
        if se[k] is not None:
            stats = (
                f"  {se[k]['classical']:>10.6g}  {se[k]['hc1']:>10.6g}  "
                f"{t[k]['classical']:>7.3f}  {pv[k]['classical']:>8.2g}"
            )
        print(f"{printable(k):<{width}}  {v:>16.6g}  {ols[k]:>14.6g}  {rel:.2e}{stats}")
    gap = metrics["ols_gap"]
    print(
        f"largest relative coefficient difference {gap['max_rel_coefficient_diff']:.2e}; "
        f"R^2 {metrics['train']['r2']:.6f} ({ref} {ols['r2']:.6f})"
    )
    info = metrics["inference"]
    if info["note"] and info["note"].startswith("gradient descent has not converged"):
        # not converged: the run's one warning line (say_convergence) says what to change
        print(f"standard errors: {info['note']}")
    elif info["note"]:
        print(f"warning: standard errors: {info['note']}")
    else:
        print(
            f"standard errors from {info['n']} training rows, {info['df_resid']} residual "
            "degrees of freedom; p-values from the t distribution"
        )
