"""The synth plays the chip model: the timer period's pitch, the model's envelopes frame by frame."""

import numpy as np
import pytest

from chiptuner import chip_model as cm
from chiptuner import synth
from chiptuner._kernels import synth as _k
from chiptuner.chip_midi import VOICE_VELOCITY
from tests import nes

SR = synth.SAMPLE_RATE


@pytest.mark.parametrize(("voice", "pitch"), [(0, 90), (0, 96), (1, 74), (1, 80), (2, 51), (2, 62), (2, 64)])
def test_pitch_is_the_timer_period_not_equal_temperament(voice, pitch):
    audio = synth.render_events(np.array([0]), np.array([voice]), np.array([pitch]), n_frames=SR)
    period, _ = cm.pitch_period(voice, np.array([pitch]))
    chip = float(cm.period_hz(voice, period)[0])
    measured = SR / nes.yin_period(audio[SR // 4 : 3 * SR // 4], SR / chip)
    assert abs(1200 * np.log2(measured / chip)) < 0.5
    assert abs(1200 * np.log2(chip / (440 * 2 ** ((pitch - 69) / 12)))) > 0.5  # the two differ here


def test_notes_the_chip_cannot_play_fold_as_in_the_model():
    for voice, pitch in ((0, 20), (1, 127), (2, 12)):
        state = np.zeros((_k.STATE_ROWS, _k.N_FIELDS))
        _k.init_state(state)
        _k.note_on(state, voice, pitch, 100, synth.DRUM_TABLE)
        period, _ = cm.pitch_period(voice, np.array([pitch]))
        assert state[voice, _k.V_FREQ_HZ] == pytest.approx(float(cm.period_hz(voice, period)[0]), rel=1e-12)


def _levels(voice, key, velocity, n_frames):
    """The synth's level at the middle of each of the first frames after a note-on."""
    live = synth.ChipSynth(block_size=4096)
    live.note_on(voice, key, velocity)
    per_frame = SR / cm.FRAME_RATE_HZ
    levels, done = [], 0
    for f in range(n_frames):
        target = int(round((f + 0.5) * per_frame))
        live.render(target - done)
        done = target
        levels.append(live.state[voice, _k.V_LEVEL])
    return levels


@pytest.mark.parametrize("voice", [0, 1])
def test_pulse_envelope_is_the_model_envelope(voice):
    row = cm.ENVELOPE_ROWS[("pulse1", "pulse2")[voice]]
    expected = cm.ENVELOPES[row, :14].tolist()
    expected[cm.ENVELOPE_LENGTH[row] :] = [expected[cm.ENVELOPE_LENGTH[row] - 1]] * (14 - cm.ENVELOPE_LENGTH[row])
    velocity = VOICE_VELOCITY[("pulse1", "pulse2")[voice]]
    assert _levels(voice, 72, velocity, 14) == expected


@pytest.mark.parametrize("drum", ["kick", "snare", "closed_hat", "open_hat", "crash"])
def test_drum_envelope_is_the_model_envelope(drum):
    row = cm.ENVELOPE_ROWS[drum]
    n = int(cm.ENVELOPE_LENGTH[row])
    key = {"kick": 36, "snare": 38, "closed_hat": 42, "open_hat": 46, "crash": 49}[drum]
    # The level ramps 15 steps in 2 ms, so by mid-frame it has reached the frame's value.
    assert _levels(3, key, VOICE_VELOCITY["noise"], n) == cm.ENVELOPES[row, :n].tolist()


def test_the_output_filters_take_the_bass_and_the_top():
    low = synth.render_events(np.array([0]), np.array([0]), np.array([45]), n_frames=SR)  # 110 Hz
    high = synth.render_events(np.array([0]), np.array([0]), np.array([81]), n_frames=SR)  # 880 Hz
    # Same level, duty and waveform: the 440 Hz high-pass leaves the 110 Hz note well under the 880 Hz one.
    assert np.std(low[SR // 2 :]) < 0.6 * np.std(high[SR // 2 :])
