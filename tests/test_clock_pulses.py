"""``jack_midi.ClockPulses``, without JACK: where MIDI clock out puts its pulses, cycle by cycle.

The process callback asks it for each cycle's messages; here the test is the callback, on a
frame clock of its own (``to_frames``: seconds -> frames at 48 kHz, offset by ``skew``).
"""

from __future__ import annotations

import numpy as np

from chiptuner.live.jack_midi import ClockPulses

RATE = 48_000
PERIOD = 256
STEP_SEC = 0.125  # 120 BPM: 1000 frames a pulse
CLOCK, START, STOP, POSITION = 0xF8, 0xFA, 0xFC, 0xF2


class FrameClock:
    """Seconds -> frames, with a drift the test can set (the engine's clock against the sound card's)."""

    def __init__(self) -> None:
        self.rate = float(RATE)

    def __call__(self, when_sec: float) -> float:
        return when_sec * self.rate


def _cycles(pulses: ClockPulses, first_frame: int, n_cycles: int) -> list[tuple[int, int]]:
    """(frame, status) of every message over ``n_cycles`` cycles from ``first_frame``."""
    heard = []
    for k in range(n_cycles):
        start = (first_frame + k * PERIOD) % 2**32
        out: list[tuple[int, bytes]] = []
        pulses.due(start, PERIOD, out)
        offsets = [offset for offset, _ in out]
        assert offsets == sorted(offsets) and all(0 <= o < PERIOD for o in offsets)
        heard += [(first_frame + k * PERIOD + offset, data[0]) for offset, data in out]
    return heard


def test_pulses_fall_on_their_frames_and_start_comes_after_the_count_in():
    pulses = ClockPulses(FrameClock(), RATE)
    pulses.start(1.0, STEP_SEC, 1.0 + 16 * STEP_SEC)  # a bar of count-in
    heard = _cycles(pulses, 47_000, 600)
    clock = [frame for frame, status in heard if status == CLOCK]
    assert clock[:3] == [48_000, 49_000, 50_000]
    assert np.array_equal(np.diff(clock), np.full(len(clock) - 1, 1000))
    statuses = [status for _, status in heard]
    start = statuses.index(START)
    assert statuses[start - 1] == POSITION and heard[start][0] == 48_000 + 96 * 1000  # with pulse 96
    assert statuses[start + 1] == CLOCK and heard[start + 1][0] == heard[start][0]


def test_a_drifting_grid_is_shared_out_over_the_pulses_before_its_step():
    frames = FrameClock()
    pulses = ClockPulses(frames, RATE)
    pulses.start(0.0, STEP_SEC)
    heard = []
    frame = 0
    for step in range(1, 40):
        frames.rate = RATE * 1.005  # the frame clock runs 0.5% fast against the engine's
        pulses.schedule(step * STEP_SEC, STEP_SEC)
        while frame < step * 6000 - 3000:  # the grid is given about half a step ahead
            heard += _cycles(pulses, frame, 1)
            frame += PERIOD
    clock = np.array([f for f, status in heard if status == CLOCK])
    periods = np.diff(clock)
    assert np.abs(periods - 1000).max() <= 40, "no pulse jumps: the drift of a step is shared out"
    # The clock stays on the engine's steps: each step's first pulse where the frame clock puts it.
    for step in range(5, 30):
        assert abs(clock[6 * step] - step * STEP_SEC * RATE * 1.005) <= 1


def test_a_new_tempo_takes_over_at_its_step_and_stop_ends_the_pulses():
    pulses = ClockPulses(FrameClock(), RATE)
    pulses.start(0.0, STEP_SEC)
    heard = _cycles(pulses, 0, 20)  # to frame 5120: pulses 0-5
    pulses.schedule(STEP_SEC, STEP_SEC / 2)  # from step 1 (frame 6000) twice as fast
    heard += _cycles(pulses, 20 * PERIOD, 40)
    pulses.stop()
    heard += _cycles(pulses, 60 * PERIOD, 10)
    clock = [f for f, status in heard if status == CLOCK]
    assert clock[:7] == [0, 1000, 2000, 3000, 4000, 5000, 6000]
    assert clock[7:10] == [6500, 7000, 7500]
    stops = [f for f, status in heard if status == STOP]
    assert stops == [60 * PERIOD] and clock[-1] < stops[0]
    assert _cycles(pulses, 70 * PERIOD, 10) == []  # nothing until the next start


def test_frame_offsets_cross_the_32_bit_wrap():
    pulses = ClockPulses(lambda sec: 2**32 - 1500 + sec * RATE, RATE)
    pulses.start(0.0, STEP_SEC)
    heard = _cycles(pulses, 2**32 - 1600, 20)
    clock = [f for f, status in heard if status == CLOCK]
    assert clock[0] == 2**32 - 1500 and np.array_equal(np.diff(clock), [1000] * 5)
