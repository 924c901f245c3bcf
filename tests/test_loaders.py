"""Loaders: which rows each step sees, shuffles from (seed, epoch), and bad loader configs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data.loaders import make_loader
from errors import UserError
from training.blocks import plan_blocks


@st.composite
def batches_of_rows(draw) -> tuple[int, int, bool]:
    """``(n, batch_size, drop_last)`` of a loader that can be made: dropping the last partial
    batch needs a batch no larger than the rows (the refusal is the next test's)."""
    n, drop_last = draw(st.integers(1, 300)), draw(st.booleans())
    return n, draw(st.integers(1, min(n, 64) if drop_last else 64)), drop_last


@settings(max_examples=60, deadline=None)
@given(
    case=batches_of_rows(),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
    epoch=st.integers(0, 1000),
)
def test_an_epoch_sees_every_row_once(case, shuffle, seed, epoch):
    n, bs, drop_last = case
    loader = make_loader("mini_batch", bs, shuffle, drop_last, n, seed)
    idx, counts = loader.batches(epoch)
    bs = min(bs, n)
    assert idx.shape == (loader.steps_per_epoch, bs) and counts.shape == (idx.shape[0],)
    real = np.concatenate([row[:c] for row, c in zip(idx, counts, strict=True)])
    if drop_last:
        assert len(real) == (n // bs) * bs and (counts == bs).all()
        assert len(set(real.tolist())) == len(real)
    else:
        assert sorted(real.tolist()) == list(range(n))
        assert counts[-1] == (n % bs or bs) and (counts[:-1] == bs).all()
        if shuffle and n >= 10:  # a permutation of 10 or more rows is the identity at 1 in 10!
            assert real.tolist() != list(range(n))
    if not shuffle:
        assert real.tolist() == list(range(len(real)))


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 300), more=st.integers(1, 64), shuffle=st.booleans(), seed=st.integers(0, 9)
)
def test_dropping_the_last_batch_of_a_batch_larger_than_the_rows_is_refused(n, more, shuffle, seed):
    with pytest.raises(UserError, match=f"loader.batch_size={n + more}"):
        make_loader("mini_batch", n + more, shuffle, True, n, seed)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(20, 500), seed=st.integers(0, 10**6), epoch=st.integers(0, 10**4))
def test_shuffle_is_a_function_of_seed_and_epoch(n, seed, epoch):
    a = make_loader("per_sample", None, True, False, n, seed)
    b = make_loader("per_sample", None, True, False, n, seed)
    np.testing.assert_array_equal(a.order(epoch), b.order(epoch))
    assert not np.array_equal(a.order(epoch), a.order(epoch + 1))
    other = make_loader("per_sample", None, True, False, n, seed + 1)
    assert not np.array_equal(a.order(epoch), other.order(epoch))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 2000), seed=st.integers(0, 10**6), epoch=st.integers(0, 10**4))
def test_the_shuffle_is_numpys_shuffle_of_the_row_numbers(n, seed, epoch):
    # the order of every run so far: numpy's Generator.shuffle of 0..n-1 from [seed, epoch]
    # (the loader shuffles int64 items, which numpy swaps faster, then keeps int32)
    want = np.arange(n, dtype=np.int32)
    np.random.default_rng([seed, epoch]).shuffle(want)
    got = make_loader("per_sample", None, True, False, n, seed).order(epoch)
    assert got.dtype == np.int32 and not got.flags.writeable
    np.testing.assert_array_equal(got, want)


def test_full_batch_and_per_sample_shapes():
    full = make_loader("full_batch", None, True, True, 7, 0)
    assert (full.batch_size, full.steps_per_epoch, full.shuffle) == (7, 1, False)
    per = make_loader("per_sample", 99, True, False, 7, 0)
    assert (per.batch_size, per.steps_per_epoch) == (1, 7)


@pytest.mark.parametrize("bs", [0, -4, 2.5, None, True])
def test_bad_batch_size_names_the_key(bs):
    with pytest.raises(UserError, match=r"loader\.batch_size"):
        make_loader("mini_batch", bs, True, False, 10, 0)


def test_unknown_loader_lists_the_choices():
    with pytest.raises(UserError, match="full_batch, per_sample, mini_batch"):
        make_loader("streaming", 4, True, False, 10, 0)


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 200),
    bs=st.integers(1, 50),
    epochs=st.integers(1, 30),
    max_steps=st.integers(1, 400),
    periods=st.lists(st.integers(0, 7), min_size=1, max_size=3),
)
def test_blocks_cover_every_step_once_and_end_on_each_period(n, bs, epochs, max_steps, periods):
    """Calls end on the checkpoint epochs and on those a hook's ``every`` names: none of
    those epochs ends inside a call."""
    loader = make_loader("mini_batch", bs, True, False, n, 0)
    seen = []
    end_every = periods[0] if len(periods) == 1 else tuple(periods)
    for b in plan_blocks(loader, 0, epochs, max_steps, end_every):
        assert b.epochs * b.steps <= max(max_steps, 1) or b.epochs == 1
        assert b.steps <= max_steps
        for e in range(b.epoch, b.epoch + b.epochs):
            seen.extend((e, s) for s in range(b.start, b.stop))
        for every in filter(None, periods):  # such an epoch is never inside a call
            assert not any(m % every == 0 for m in range(b.epoch + 1, b.epoch + b.epochs))
    N = loader.steps_per_epoch
    assert seen == [(e, s) for e in range(epochs) for s in range(N)]
