"""Ticks, seconds and steps."""

from __future__ import annotations

import numpy as np
import pytest

from chiptuner import ParameterError
from chiptuner.timebase import quantize_notes, seconds_to_ticks, ticks_to_seconds, ticks_to_steps
from chiptuner.types import Notes, TempoMap


def test_seconds_follow_the_tempo_map():
    tempo = TempoMap(np.array([0, 960]), np.array([500_000, 1_000_000]))  # 120 BPM, then 60 BPM at beat 2
    seconds = ticks_to_seconds(np.array([0, 480, 960, 1440, 1920]), tempo, 480)
    assert seconds.tolist() == pytest.approx([0.0, 0.5, 1.0, 2.0, 3.0])


def test_seconds_to_ticks_inverts_ticks_to_seconds():
    rng = np.random.default_rng(0)
    tempo = TempoMap(np.array([0, 500, 2000, 2100]), rng.integers(200_000, 1_500_000, 4))
    ticks = np.sort(rng.integers(0, 10_000, 200))
    back = seconds_to_ticks(ticks_to_seconds(ticks, tempo, 384), tempo, 384)
    np.testing.assert_array_equal(back, ticks)


def test_steps_round_to_nearest_sixteenth():
    # 480 ticks per beat: a 16th is 120 ticks; 59 rounds down, 60 (a half) rounds up.
    assert ticks_to_steps(np.array([0, 59, 60, 119, 120, 480]), 480).tolist() == [0, 0, 1, 1, 1, 4]
    assert ticks_to_steps(np.array([480]), 480, steps_per_beat=2).tolist() == [2]


def test_quantized_notes_last_at_least_one_step():
    notes = Notes(
        np.array([0, 100, 470]), np.array([10, 400, 2000]), np.array([60, 62, 64]),
        np.full(3, 90), np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3, bool),
    )  # fmt: skip
    start, end = quantize_notes(notes, 480)
    assert start.tolist() == [0, 1, 4] and end.tolist() == [1, 3, 17]


def test_bad_ticks_per_beat():
    with pytest.raises(ParameterError, match="ticks_per_beat"):
        ticks_to_steps(np.array([1]), 0)
    with pytest.raises(ParameterError, match="ticks_per_beat"):
        ticks_to_seconds(np.array([1]), TempoMap(np.zeros(1), np.full(1, 500_000)), -3)
