"""What makes a run on a real file faster changes no value: a full-batch call that stops early
skips its remaining steps, and the plots reach TensorBoard as the PNG files they were saved as."""

from __future__ import annotations

import io
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import ROOT, make_config, read_scalars
from PIL import Image

from training.logs import TensorBoardLog
from training.run import train_and_evaluate
from training.step import CallSpec, make_train_call


def linear(p, x):
    return x @ p["W"] + p["b"]


def full_batch_call(X, y, lr: float, steps: int, tol: float):
    tx = optax.sgd(lr)
    params = {"W": jnp.zeros(X.shape[1], jnp.float32), "b": jnp.float32(0)}
    spec = CallSpec(steps, 1, True, False, 1, tol, 1e6)
    call = make_train_call(linear, tx, spec)
    return call(params, tx.init(params), X, y, None, None, None, np.float32(np.nan))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(64, 3)).astype(np.float32)
    y = (X @ np.array([1.5, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=64)).astype(np.float32)
    A = np.c_[X, np.ones(64)].astype(np.float64)
    eig = np.linalg.eigvalsh(2 * A.T @ A / 64)  # the Hessian of the mean squared error
    return X, y, A, 2 / (eig[0] + eig[-1])


def test_a_full_batch_call_that_converges_skips_its_remaining_steps(data):
    X, y, A, lr = data
    out = full_batch_call(X, y, lr, steps=5000, tol=1e-4)
    taken = int(out.taken)
    assert 0 < taken < 4000
    losses = np.asarray(out.losses)
    # the stopping step's loss is computed, none after it
    assert np.isfinite(losses[: taken + 1]).all() and np.isnan(losses[taken + 1 :]).all()
    # the same parameters as a call just long enough to stop, bit for bit
    short = full_batch_call(X, y, lr, steps=taken + 1, tol=1e-4)
    assert int(short.taken) == taken
    np.testing.assert_array_equal(np.asarray(out.params["W"]), np.asarray(short.params["W"]))
    np.testing.assert_array_equal(np.asarray(out.params["b"]), np.asarray(short.params["b"]))
    np.testing.assert_array_equal(losses[: taken + 1], np.asarray(short.losses))
    # and least squares, to the tolerance of the gradient's norm
    coef = np.linalg.lstsq(A, y.astype(np.float64), rcond=None)[0]
    np.testing.assert_allclose(np.asarray(out.params["W"]), coef[:3], atol=1e-4)
    np.testing.assert_allclose(float(out.params["b"]), coef[3], atol=1e-4)


@pytest.mark.slow
def test_the_plots_in_tensorboard_are_the_png_files(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_and_evaluate(make_config(), tmp_path)
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    for name in ("loss_vs_W", "trajectory", "loss_curves"):
        (event,) = acc.Images(f"plots/{name}")
        png = (tmp_path / f"{name}.png").read_bytes()
        assert event.encoded_image_string == png
        assert (event.width, event.height) == Image.open(io.BytesIO(png)).size
        assert event.step == 50


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_a_png_of_any_colour_type_is_an_image_summary(tmp_path, mode):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    buffer = io.BytesIO()
    Image.new(mode, (37, 21)).save(buffer, format="PNG")
    log = TensorBoardLog(tmp_path, True)
    log.png("plots/x", buffer.getvalue(), 7)
    log.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    acc.Reload()
    (event,) = acc.Images("plots/x")
    assert (event.width, event.height, event.step) == (37, 21, 7)
    assert event.encoded_image_string == buffer.getvalue()


def test_scalars_read_back_as_tensorboardx_add_scalar_writes_them(tmp_path):
    from tensorboardX import SummaryWriter

    rng = np.random.default_rng(0)
    tag_values = {
        "train/loss": rng.random(9).astype(np.float32),
        "params/W/Lot Area": rng.normal(size=9),  # float64, and a tag made valid
        "params/b": np.array([np.nan, np.inf, -1e-30, 0, 1, 2, 3, 4, 5], np.float32),
    }
    steps = np.arange(100, 109)
    log = TensorBoardLog(tmp_path / "ours", True)
    log.scalars(tag_values, steps)
    log.close()
    writer = SummaryWriter(str(tmp_path / "theirs"))
    for i, step in enumerate(steps.tolist()):
        for tag, values in tag_values.items():
            writer.add_scalar(tag.replace(" ", "_"), float(values[i]), step)
    writer.close()
    ours, theirs = read_scalars(tmp_path / "ours"), read_scalars(tmp_path / "theirs")
    assert set(ours) == {"train/loss", "params/W/Lot_Area", "params/b"} == set(theirs)
    for tag in ours:
        np.testing.assert_array_equal(np.array(ours[tag]), np.array(theirs[tag]))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_host_memory_stays_in_the_process_for_the_next_call():
    """XLA:CPU allocates each call's buffers afresh; train_and_evaluate has glibc keep freed
    blocks up to KEPT_FREE_BYTES in its heap (mallopt), where by default a block of 128 kB or
    more is mapped anew, faulted and zeroed by the kernel page by page, each time."""
    code = """
import ctypes, sys
import numpy as np
from training.devices import keep_freed_host_memory

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "keep":
    keep_freed_host_memory()
before = libc.mallinfo2().hblkhd  # bytes in blocks mapped on their own
block = np.ones((32 << 20) // 8)
print((libc.mallinfo2().hblkhd - before) >> 20)
"""
    mapped = {
        how: subprocess.run(
            [sys.executable, "-c", code, how], cwd=ROOT, capture_output=True, text=True
        )
        for how in ("keep", "default")
    }
    assert [mapped[h].stdout.strip() for h in ("keep", "default")] == ["0", "32"], mapped
