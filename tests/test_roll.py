"""Piano-roll rasterisation against the plain reference."""

from __future__ import annotations

import numpy as np
import pytest

from chiptuner import ParameterError
from chiptuner.roll import piano_roll
from tests.reference import piano_roll_reference


@pytest.mark.parametrize("seed", range(8))
def test_matches_reference_on_random_notes(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    start = rng.integers(-5, 200, n)
    end = start + rng.integers(0, 20, n)
    pitch = rng.integers(-3, 131, n).astype(np.int16)
    n_steps = int(rng.integers(0, 220))
    roll, onset = piano_roll(start, end, pitch, n_steps=n_steps)
    ref_roll, ref_onset = piano_roll_reference(start, end, pitch, n_steps)
    np.testing.assert_array_equal(roll, ref_roll)
    np.testing.assert_array_equal(onset, ref_onset)


def test_reused_dirty_buffers_give_the_same_roll():
    rng = np.random.default_rng(3)
    start = rng.integers(0, 100, 50)
    end = start + rng.integers(1, 9, 50)
    pitch = rng.integers(30, 90, 50)
    fresh = piano_roll(start, end, pitch)
    buffers = (np.full((400, 128), 7, np.uint8), np.full((400, 128), 9, np.uint8))
    reused = piano_roll(start, end, pitch, out=buffers)
    assert reused[0].shape == fresh[0].shape == (int(end.max()), 128)
    np.testing.assert_array_equal(reused[0], fresh[0])
    np.testing.assert_array_equal(reused[1], fresh[1])


def test_layout_is_time_major_with_onsets_only_at_starts():
    roll, onset = piano_roll(np.array([0, 2, 2]), np.array([3, 4, 3]), np.array([60, 62, 60]))
    assert roll.shape == (4, 128)
    assert roll[:, 60].tolist() == [1, 1, 1, 0]  # two overlapping notes of one key merge
    assert onset[:, 60].tolist() == [1, 0, 1, 0]
    assert roll[:, 62].tolist() == [0, 0, 1, 1]
    assert onset.sum() == 3


def test_empty_and_bad_arguments():
    roll, onset = piano_roll(np.zeros(0), np.zeros(0), np.zeros(0))
    assert roll.shape == onset.shape == (0, 128)
    with pytest.raises(ParameterError, match="one length"):
        piano_roll(np.zeros(2), np.zeros(3), np.zeros(2))
    with pytest.raises(ParameterError, match="at least 10 rows"):
        piano_roll(np.array([0]), np.array([10]), np.array([60]), out=(np.empty((5, 128), np.uint8),) * 2)
