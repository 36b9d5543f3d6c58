"""The synth plays the chip model: the timer period's pitch, the model's envelopes frame by frame."""

import mido
import numpy as np
import pytest

from chiptuner import chip_model as cm
from chiptuner import synth
from chiptuner._kernels import synth as _k
from chiptuner.chip_midi import VOICE_VELOCITY, write_arrangement
from chiptuner.nsf import nsf_bytes
from chiptuner.types import Arrangement
from tests import nes
from tests.test_chip_model import _arrangement

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


@pytest.mark.skipif(not nes.gme_available(), reason="libgme is not installed (Debian: apt-get install libgme0)")
@pytest.mark.parametrize("voice", [0, 1, 2, 3])
def test_the_synth_agrees_with_game_music_emu_on_the_same_song(voice, tmp_path):
    """The same arrangement as an NSF through the emulator and as MIDI through the synth, one voice alone:
    pitch within 5 cents and onsets within a frame of each other."""
    arrangement = _arrangement(192, seed=5)
    solo_pitch = np.full(arrangement.pitch.shape, -1, np.int16)
    solo_onset = np.zeros(arrangement.onset.shape, bool)
    solo_pitch[:, voice], solo_onset[:, voice] = arrangement.pitch[:, voice], arrangement.onset[:, voice]
    write_arrangement(Arrangement(solo_pitch, solo_onset), tmp_path / "solo.mid")
    ours = synth.render_score(tmp_path / "solo.mid").astype(np.float64)
    frames = cm.play(cm.song_from_arrangement(arrangement))
    notes, rate = frames.notes, cm.FRAME_RATE_HZ
    emulator, emulator_sr = nes.gme_render(nsf_bytes(frames), len(frames) / rate + 0.5, solo=voice)
    mine = np.flatnonzero(notes.voice == voice)
    paused = cm.cut_before(notes)
    apart, cents = [], []
    for j, n in enumerate(mine.tolist()):
        start, end = int(notes.start_frame[n]), int(notes.end_frame[n])
        hz = float(cm.period_hz(voice, notes.period[n])) if voice < 3 else None
        prev = mine[j - 1] if j else None
        old_hz = None
        if hz and prev is not None and notes.end_frame[prev] >= start:
            old_hz = float(cm.period_hz(voice, notes.period[prev]))
        found = [
            nes.note_onset(
                audio, sr, start / rate, search_sec=3 / rate, old_period=sr / old_hz if old_hz else None,
                new_period=sr / hz if hz else None, paused=bool(paused[n]),
            )
            for audio, sr in ((emulator, emulator_sr), (ours, SR))
        ]  # fmt: skip
        apart.append((found[1] - found[0]) * rate)
        if hz and end - start >= 6:
            pitches = []
            for audio, sr in ((emulator, emulator_sr), (ours, SR)):
                part = audio[int((start + 2) / rate * sr) : int((end - 1) / rate * sr)]
                pitches.append(sr / nes.yin_period(part, sr / hz))
            cents.append(1200 * np.log2(pitches[0] / pitches[1]))
    assert len(apart) > 30 and np.max(np.abs(apart)) <= 1.0, np.round(apart, 2)
    if voice < 3:
        assert len(cents) > 10 and np.max(np.abs(cents)) <= 5.0, np.round(cents, 2)


def test_render_song_is_render_score_of_the_arrangement_file_and_ignores_velocities(tmp_path):
    arrangement = _arrangement(96, seed=2)
    write_arrangement(arrangement, tmp_path / "band.mid")
    from_song = synth.render_song(cm.read_song(tmp_path / "band.mid"))
    from_file = synth.render_score(tmp_path / "band.mid")
    n = min(len(from_song), len(from_file))
    assert n > 10 * SR and np.abs(from_song).max() > 0.1
    np.testing.assert_array_equal(from_song[:n], from_file[:n])
    # The same notes at other velocities: the model plays each voice at its level, so the WAV is the same.
    midi = mido.MidiFile(tmp_path / "band.mid")
    for track in midi.tracks:
        for message in track:
            if message.type == "note_on" and message.velocity:
                message.velocity = 30
    midi.save(tmp_path / "soft.mid")
    np.testing.assert_array_equal(synth.render_song(cm.read_song(tmp_path / "soft.mid")), from_song)
