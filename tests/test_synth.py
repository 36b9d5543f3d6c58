"""The chip synth: pitch, duty, aliasing, noise and drums by spectrum; kernel against the reference;
offline == block by block; no clicks; MIDI files to audio; ``chiptuner render``; bad arguments."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import mido
import numpy as np
import pytest

import chiptuner
from chiptuner import chip_model as cm
from chiptuner import synth
from chiptuner._kernels import synth as _k
from chiptuner.chip_midi import DUTY_CC, VOICE_VELOCITY, write_arrangement
from chiptuner.cli import main
from chiptuner.errors import MidiFileError, ParameterError
from chiptuner.midi_io import read_control_changes
from chiptuner.types import VOICE_NAMES, Arrangement, TempoMap
from tests import reference, spectra

SR = synth.SAMPLE_RATE


def hz(pitch: int) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def chip_hz(voice: int, pitch: int) -> float:
    """What the synth plays: the frequency of the key's timer period (pulses 16, triangle 32 CPU cycles a step)."""
    return 1789773.0 / ((16 if voice < 2 else 32) * (reference.chip_period_reference(voice, pitch) + 1))


def output_filters_gain(f_hz):
    """Gain of the console's output filters at ``f_hz``: RC high-passes at 90 and 440 Hz, an RC low-pass at 14 kHz."""
    f_hz = np.asarray(f_hz, np.float64)
    return f_hz / np.hypot(f_hz, 90.0) * f_hz / np.hypot(f_hz, 440.0) * 14000.0 / np.hypot(f_hz, 14000.0)


def tone(voice: int, pitch: int, *, seconds: float = 1.2, duty: int = -1, velocity: int = 100) -> np.ndarray:
    """One note from sample 0, never released."""
    return synth.render_events(
        np.array([0]), np.array([voice]), np.array([pitch]), np.array([velocity]), np.array([duty]),
        n_frames=int(seconds * SR),
    )  # fmt: skip


# --- pitch ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("voice", "pitch"),
    [(0, p) for p in (48, 60, 72, 84, 96)]
    + [(1, p) for p in (40, 55, 70, 88)]
    + [(2, p) for p in (28, 36, 45, 52, 64)],
)
def test_each_pitched_voice_sounds_its_pitch(voice, pitch):
    audio = tone(voice, pitch)
    assert spectra.fundamental(audio, SR, 0.1, 1.1) == pytest.approx(chip_hz(voice, pitch), rel=0.01)


def test_a_chord_shows_its_three_fundamentals():
    pitches = {0: 79, 1: 64, 2: 48}  # G5 on pulse1, E4 on pulse2, C3 on the triangle
    audio = synth.render_events(
        np.zeros(3, np.int64), np.array(list(pitches)), np.array(list(pitches.values())),
        event_duty=np.array([2, 2, -1]), n_frames=int(1.2 * SR),
    )  # fmt: skip
    peaks, magnitude = spectra.spectral_peaks(audio, SR, 0.1, 1.1, 8)
    for pitch in pitches.values():
        near = np.abs(peaks / hz(pitch) - 1) < 0.01
        assert near.any(), (pitch, peaks)
        assert magnitude[near].max() > magnitude[0] * 10 ** (-20 / 20)  # a real voice, not leakage


# --- duty ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("duty_index", range(4))
def test_duty_sets_the_harmonics_of_a_pulse(duty_index):
    """Harmonic k of a pulse of duty d has amplitude |sin(pi k d)| / k, times the high-pass's gain."""
    f0 = hz(60)
    duty = synth.DUTY_CYCLES[duty_index]
    measured = spectra.harmonic_amplitudes(tone(0, 60, duty=duty_index), SR, 0.1, 1.1, f0, 8)
    k = np.arange(1, 9)
    theory = np.abs(np.sin(np.pi * k * duty)) / k * output_filters_gain(k * f0)
    theory /= theory[0]
    present = theory > 0.05
    np.testing.assert_allclose(20 * np.log10(measured[present]), 20 * np.log10(theory[present]), atol=1.0)
    assert (measured[~present] < 10 ** (-40 / 20)).all(), measured  # the harmonics the duty cancels


def test_fifty_percent_has_no_even_harmonics_and_twenty_five_a_strong_second():
    half = spectra.harmonic_amplitudes(tone(0, 67, duty=2), SR, 0.1, 1.1, hz(67), 4)
    quarter = spectra.harmonic_amplitudes(tone(0, 67, duty=1), SR, 0.1, 1.1, hz(67), 4)
    assert half[1] < 0.01 and half[3] < 0.01
    assert quarter[1] > 0.6 and quarter[3] < 0.01


def test_set_duty_reaches_the_sound_and_defaults_match_the_output_contract():
    assert synth.DEFAULT_DUTY == (DUTY_CC["pulse1"] // 32, DUTY_CC["pulse2"] // 32)
    a, b = synth.ChipSynth(block_size=SR), synth.ChipSynth(block_size=SR)
    a.note_on(0, 64)
    b.note_on(0, 64)
    b.set_duty(0, 1)
    first, second = a.render().copy(), b.render().copy()
    assert spectra.harmonic_amplitudes(first, SR, 0.1, 0.9, hz(64), 2)[1] < 0.01
    assert spectra.harmonic_amplitudes(second, SR, 0.1, 0.9, hz(64), 2)[1] > 0.6


# --- aliasing -------------------------------------------------------------------------------------


def naive_chain(levels: np.ndarray) -> np.ndarray:
    """A voice's 0-15 levels through the reference mixer and output filters, as the synth's output path."""
    return reference.output_filter_reference(reference.nes_mix_reference(levels, 0, 0, 0), SR)


@pytest.mark.parametrize("duty_index", range(4))
def test_a_high_pulse_aliases_far_less_than_a_naive_one(duty_index):
    pitch = 96  # C7, 2093 Hz: the top of pulse1's range
    f0 = chip_hz(0, pitch)
    ours = spectra.non_harmonic_fraction(tone(0, pitch, duty=duty_index), SR, 0.1, 1.1, f0)
    level = _k.velocity_volume(100)
    naive = naive_chain(level * reference.naive_pulse_reference(f0, synth.DUTY_CYCLES[duty_index], SR, int(1.2 * SR)))
    naive_fraction = spectra.non_harmonic_fraction(naive, SR, 0.1, 1.1, f0)
    margin_db = 10 * np.log10(naive_fraction / ours)
    # Measured 25.5-30.3 dB at MIDI 96 (ours -38 to -46 dB of the power, naive -12 to -17 dB).
    assert margin_db > 18, margin_db
    assert 10 * np.log10(ours) < -30


def test_the_stepped_triangle_aliases_far_less_than_a_naive_staircase():
    pitch = 64  # top of the triangle's range
    f0 = chip_hz(2, pitch)
    ours = spectra.non_harmonic_fraction(tone(2, pitch), SR, 0.1, 1.1, f0)
    n = int(1.2 * SR)
    naive = reference.output_filter_reference(
        reference.nes_mix_reference(0, 0, 15 * reference.naive_triangle_reference(f0, SR, n), 0), SR
    )
    naive_fraction = spectra.non_harmonic_fraction(naive, SR, 0.1, 1.1, f0)
    assert 10 * np.log10(naive_fraction / ours) > 25  # measured 57 dB (the 14 kHz low-pass helps)
    assert 10 * np.log10(ours) < -55


def test_the_triangle_keeps_the_nes_staircase():
    """The 32 stairs put energy at 32 f0 +- f0 that a smooth triangle lacks (the NES buzz)."""
    f0 = hz(40)
    harmonics = spectra.harmonic_amplitudes(tone(2, 40), SR, 0.1, 1.1, f0, 33)
    # The 31st harmonic of a smooth triangle is 1/31**2 of the first; the stairs' image of the first is ~1/31.
    assert harmonics[30] > 10 / 31**2


# --- noise ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("short_mode", [False, True])
@pytest.mark.parametrize("seed", [1, 0x4000, 12345, 32767])
def test_lfsr_matches_the_reference(seed, short_mode):
    expected_bits, expected_register = reference.lfsr_bits_reference(seed, short_mode, 2000)
    register, bits = seed, []
    for _ in range(2000):
        bits.append(register & 1)
        register = _k.lfsr_next(register, short_mode)
    assert bits == expected_bits
    assert register == expected_register


@pytest.mark.parametrize(("short_mode", "period"), [(False, 32767), (True, 93)])
def test_lfsr_periods_from_power_up(short_mode, period):
    register, seen = _k.LFSR_RESET, {}
    for i in range(40000):
        if register in seen:
            break
        seen[register] = i
        register = _k.lfsr_next(register, short_mode)
    assert i - seen[register] == period


def render_noise(rate_hz: float, short_mode: bool, n: int) -> np.ndarray:
    table = np.zeros((128, _k.N_DRUM_FIELDS))
    table[:] = (rate_hz, float(short_mode), 1e9, 1.0)  # no decay
    table.setflags(write=False)
    state = np.zeros((_k.STATE_ROWS, _k.N_FIELDS))
    _k.init_state(state)
    _k.note_on(state, _k.NOISE, 60, 127, table)
    out = np.zeros(n, np.float32)
    _k.render_block(state, out, float(SR))
    return out


def test_short_mode_repeats_every_93_clocks_and_long_mode_does_not():
    lag = 93 * 2  # clocked at half the sample rate: two samples per clock
    short = render_noise(SR / 2, True, 20000)[5000:]
    long = render_noise(SR / 2, False, 20000)[5000:]
    assert np.abs(short[lag:] - short[:-lag]).max() < 1e-3 * np.abs(short).max()
    assert np.corrcoef(long[lag:], long[:-lag])[0, 1] < 0.2


def test_noise_clocked_at_the_sample_rate_is_the_lfsr_output():
    """One clock per sample: each sample is exactly one bit of the sequence (before mixing)."""
    n = 400
    bits, _ = reference.lfsr_bits_reference(_k.LFSR_RESET, False, n)
    attack = np.minimum(np.arange(1, n + 1) * (15.0 / (_k.RAMP_SEC * SR)), 15.0)  # level 15, ramped in
    levels = attack * (1 - np.array(bits, np.float64))  # sounding while bit 0 is clear
    expected = reference.output_filter_reference(reference.nes_mix_reference(0, 0, 0, levels), SR)
    np.testing.assert_allclose(render_noise(float(SR), False, n), expected * _k.OUTPUT_GAIN, atol=1e-5)


DRUMS = dict(zip(("kick", "snare", "closed_hat", "open_hat", "crash"), (36, 38, 42, 46, 49), strict=True))


def test_drums_differ_in_brightness():
    centroid = {
        name: spectra.spectral_centroid(tone(3, key, seconds=0.3), SR, 0.0, 0.05) for name, key in DRUMS.items()
    }
    assert centroid["kick"] < 1500 < centroid["snare"] < centroid["closed_hat"]
    assert centroid["open_hat"] > 2 * centroid["snare"] > 4 * centroid["kick"]


def test_drums_differ_in_length():
    decay = {name: spectra.decay_time(tone(3, key, seconds=2.0), SR) for name, key in DRUMS.items()}
    assert decay["closed_hat"] < 0.06
    assert decay["open_hat"] > 4 * decay["closed_hat"]
    assert decay["crash"] > 2 * decay["open_hat"]
    assert decay["kick"] < decay["snare"] < decay["open_hat"]


def test_drum_keys_map_through_the_gm_classes_and_unknown_keys_get_the_default():
    np.testing.assert_array_equal(tone(3, 35, seconds=0.3), tone(3, 36, seconds=0.3))  # bass drum 1 = kick
    np.testing.assert_array_equal(tone(3, 44, seconds=0.3), tone(3, 42, seconds=0.3))  # pedal hat = closed
    unknown = tone(3, 100, seconds=0.5)
    assert np.abs(unknown).max() > 0.02
    rate, short, decay_sec, gain = synth.DEFAULT_DRUM_SOUND
    assert synth.DRUM_TABLE[100, _k.D_DECAY_SEC] == decay_sec
    assert not any(np.array_equal(unknown, tone(3, key, seconds=0.5)) for key in DRUMS.values())


def test_a_drum_rings_on_after_its_note_off():
    hit = synth.render_events(np.array([0, 10]), np.array([3, 3]), np.array([49, -1]), n_frames=SR)
    np.testing.assert_array_equal(hit, tone(3, 49, seconds=1.0))


# --- the kernel against the reference; offline == online ----------------------------------------------


def random_events(rng: np.random.Generator, n: int, n_frames: int) -> tuple[np.ndarray, ...]:
    sample = np.sort(rng.integers(0, n_frames, n))
    voice = rng.integers(0, 4, n)
    pitch = np.where(voice == 3, rng.choice([36, 38, 42, 46, 49, 20], n), rng.integers(28, 100, n))
    pitch = np.where(rng.random(n) < 0.3, -1, pitch)
    pitch = np.where(rng.random(n) < 0.05, -2, pitch)
    velocity = rng.integers(1, 128, n)
    duty = np.where((voice < 2) & (rng.random(n) < 0.3), rng.integers(0, 4, n), -1)
    return sample, voice, pitch, velocity, duty


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_kernel_matches_the_reference(seed):
    rng = np.random.default_rng(seed)
    n_frames = 3000
    events = random_events(rng, 14, n_frames)
    got = synth.render_events(*events, n_frames=n_frames)
    expected = reference.chip_synth_reference(list(zip(*events, strict=True)), synth.DRUM_TABLE, n_frames, SR)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert np.abs(expected).max() > 0.01


def test_the_reference_catches_a_missing_band_limit():
    """The comparison above can fail: a naive pulse differs from the reference at its edges."""
    got = tone(0, 90, seconds=0.05)
    naive = naive_chain(_k.velocity_volume(100) * reference.naive_pulse_reference(hz(90), 0.5, SR, len(got)))
    assert np.abs(got - naive * _k.OUTPUT_GAIN).max() > 0.01


@pytest.mark.parametrize("seed", [3, 4])
def test_rendering_in_one_go_equals_rendering_block_by_block(seed):
    rng = np.random.default_rng(seed)
    n_frames = 20000
    events = random_events(rng, 60, n_frames)
    whole = synth.render_events(*events, n_frames=n_frames)

    state = np.zeros((_k.STATE_ROWS, _k.N_FIELDS))
    _k.init_state(state)
    pieces = []
    cuts = np.concatenate(([0], np.sort(rng.integers(0, n_frames, 25)), [n_frames]))
    for begin, end in zip(cuts[:-1], cuts[1:], strict=True):
        inside = (events[0] >= begin) & (events[0] < end)
        out = np.zeros(end - begin, np.float32)
        _k.render_events(
            events[0][inside] - begin, *(e[inside] for e in events[1:]), synth.DRUM_TABLE, state, out, float(SR)
        )
        pieces.append(out)
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_the_live_synth_equals_render_events_at_block_boundaries():
    block = 256
    rng = np.random.default_rng(7)
    n_blocks = 60
    plan = {}  # block index -> list of calls
    events = []
    for b in sorted(rng.choice(n_blocks, 20, replace=False).tolist()):
        voice = int(rng.integers(0, 4))
        if rng.random() < 0.3:
            plan.setdefault(b, []).append(("off", voice))
            events.append((b * block, voice, -1, 0, -1))
        else:
            pitch = int(rng.integers(36, 90)) if voice < 3 else int(rng.choice([36, 38, 42, 46, 49]))
            velocity = int(rng.integers(1, 128))
            if voice < 2 and rng.random() < 0.5:
                duty = int(rng.integers(0, 4))
                plan.setdefault(b, []).append(("duty", voice, duty))
                events.append((b * block, voice, -2, 0, duty))
            plan.setdefault(b, []).append(("on", voice, pitch, velocity))
            events.append((b * block, voice, pitch, velocity, -1))
    live = synth.ChipSynth(block_size=block)
    blocks = []
    for b in range(n_blocks):
        for call in plan.get(b, []):
            if call[0] == "on":
                live.note_on(*call[1:])
            elif call[0] == "off":
                live.note_off(call[1])
            else:
                live.set_duty(*call[1:])
        blocks.append(live.render().copy())
    offline = synth.render_events(
        *(np.array(column) for column in zip(*events, strict=True)), n_frames=n_blocks * block
    )
    np.testing.assert_array_equal(np.concatenate(blocks), offline)
    assert np.abs(offline).max() > 0.05


def test_note_calls_and_the_renderer_write_disjoint_fields():
    """A note call on another thread can race a block: no field may be written by both sides,
    or the block's write-back at its end would undo the note (a lost drum hit)."""
    rng = np.random.default_rng(11)
    live = synth.ChipSynth(block_size=64)
    by_notes = np.zeros(live.state.shape, bool)
    by_render = np.zeros(live.state.shape, bool)
    for _ in range(300):
        voice = int(rng.integers(0, 4))
        before = live.state.copy()
        choice = rng.random()
        if choice < 0.6:
            live.note_on(voice, int(rng.choice([36, 42, 49])) if voice == 3 else int(rng.integers(30, 90)), 100)
        elif choice < 0.8:
            live.note_off(voice)
        else:
            live.set_duty(int(rng.integers(0, 2)), int(rng.integers(0, 4)))
        by_notes |= live.state != before
        before = live.state.copy()
        live.render(int(rng.integers(1, 65)))
        by_render |= live.state != before
    assert by_notes[_k.NOISE, _k.V_HITS] and by_render[_k.NOISE, _k.V_ENV_FRAMES]  # both sides did work
    assert not (by_notes & by_render).any(), np.argwhere(by_notes & by_render)


def test_render_returns_a_view_of_one_buffer_and_reset_silences():
    live = synth.ChipSynth(block_size=128)
    live.note_on(0, 72)
    first = live.render()
    assert first.base is not None and np.shares_memory(first, live.render(64))
    live.reset()
    assert not np.any(live.render())
    np.testing.assert_array_equal(live.state, synth.ChipSynth().state)


# --- no clicks --------------------------------------------------------------------------------------


def test_a_triangle_note_starts_and_ends_without_a_click():
    """A click is a jump larger than the waveform's own steepest step (a stair edge).

    The note starts at phase 0, the triangle's peak: without the ramp the first sample would
    jump to the top of the wave.
    """
    audio = synth.render_events(np.array([1000, 20000]), np.array([2, 2]), np.array([45, -1]), n_frames=30000)
    jump = np.abs(np.diff(audio))
    steady = jump[5000:15000].max()
    # The 440 Hz high-pass shrinks the 110 Hz wave more than its stair edges: a stair is 0.25 of the peak.
    assert steady < 0.3 * np.abs(audio).max()
    assert jump[990:1300].max() <= steady
    assert jump[19990:20300].max() <= steady
    assert np.abs(audio[1000:1003]).max() < 0.3 * np.abs(audio).max()  # without a ramp: over 2x the peak
    assert np.abs(audio[20000 + int(0.02 * SR) :]).max() < 1e-3 * np.abs(audio).max()  # silent soon after


def test_pulse_levels_ramp_in_a_couple_of_milliseconds():
    live = synth.ChipSynth(block_size=4096)
    live.note_on(0, 60, 127)  # level 15
    ramp_samples = _k.RAMP_SEC * SR
    first = live.render(3).copy()
    steady = live.render(700).copy()  # within the envelope's first frame (735 samples): still at the strike
    assert np.abs(first).max() < 0.1 * np.abs(steady).max()
    assert live.state[0, _k.V_LEVEL] == 15.0
    live.note_off(0)
    half = int(ramp_samples / 2)
    live.render(half)
    assert 6.0 < live.state[0, _k.V_LEVEL] < 9.0  # halfway down, linearly
    tail = live.render(half + 2).copy()
    assert live.state[0, _k.V_LEVEL] == 0.0
    assert np.abs(tail[:3]).max() > 0.02  # still sounding just after the off: no cut
    assert np.abs(live.render(1000)[400:]).max() < 1e-3


# --- MIDI files ---------------------------------------------------------------------------------


def score_of(arrangement: Arrangement, **kwargs) -> chiptuner.Score:
    """The arrangement as ``chip_midi.write_arrangement`` writes it, read back."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.mid"
        write_arrangement(arrangement, path, **kwargs)
        return chiptuner.read_midi(path)


def arrangement_from_notes(n_steps: int, notes: list[tuple[int, int, int, int]]) -> Arrangement:
    """(voice, start_step, end_step, pitch) to an Arrangement."""
    pitch = np.full((n_steps, 4), -1, np.int16)
    onset = np.zeros((n_steps, 4), bool)
    for voice, start, end, key in notes:
        pitch[start:end, voice] = key
        onset[start, voice] = True
    return Arrangement(pitch, onset)


# Steps of 16th notes; 120 BPM until beat 2 (step 8), then 60 BPM: step 8 is at 1.0 s, each
# later beat (4 steps) lasts 1 s.
SONG = arrangement_from_notes(
    40,
    [
        (0, 0, 8, 72),  # pulse1 C5, 0.0-1.0 s
        (0, 8, 16, 77),  # pulse1 F5, 1.0-3.0 s
        (1, 16, 24, 67),  # pulse2 G4, 3.0-5.0 s
        (2, 24, 28, 45),  # triangle A2, 5.0-6.0 s
        (3, 32, 33, 36),  # kick at 7.0 s
        (3, 36, 37, 42),  # closed hat at 8.0 s
    ],
)
SONG_TEMPO = TempoMap(np.array([0, 960]), np.array([500_000, 1_000_000]))


@pytest.fixture(scope="module")
def song_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("song")
    paths = {}
    for gm_drums in (False, True):
        paths[gm_drums] = folder / f"song_{int(gm_drums)}.mid"
        write_arrangement(SONG, paths[gm_drums], tempo=SONG_TEMPO, gm_drums=gm_drums)
    return paths


def rms(audio, start_sec, end_sec):
    return float(np.sqrt(np.mean(audio[int(start_sec * SR) : int(end_sec * SR)].astype(np.float64) ** 2)))


def test_render_score_plays_each_voice_at_its_time(song_files):
    audio = synth.render_score(song_files[False])
    # The hat ends at step 37: 8.25 s, on the chip model's nearest frame.
    end = round(round(8.25 * cm.FRAME_RATE_HZ) / cm.FRAME_RATE_HZ * SR)
    assert len(audio) == end + round(synth.TAIL_SEC * SR)
    assert spectra.fundamental(audio, SR, 0.1, 0.9) == pytest.approx(hz(72), rel=0.01)
    assert spectra.fundamental(audio, SR, 1.1, 2.9) == pytest.approx(hz(77), rel=0.01)  # the tempo change
    assert spectra.fundamental(audio, SR, 3.1, 4.9) == pytest.approx(hz(67), rel=0.01)
    assert spectra.fundamental(audio, SR, 5.1, 5.9) == pytest.approx(hz(45), rel=0.01)
    peaks = spectra.dominant_frequencies(audio, SR, 3.1, 4.9, 6)
    assert not np.any(np.abs(peaks / hz(77) - 1) < 0.01)  # pulse1 has stopped
    assert rms(audio, 6.2, 6.99) < 1e-3 < rms(audio, 7.0, 7.05)  # silence, then the kick
    assert rms(audio, 7.9, 7.99) < 1e-3 < rms(audio, 8.0, 8.03)  # the kick is gone, then the hat
    assert spectra.spectral_centroid(audio, SR, 8.0, 8.04) > 3 * spectra.spectral_centroid(audio, SR, 7.0, 7.04)


def test_pulse2_plays_the_duty_of_its_cc(song_files):
    assert DUTY_CC["pulse2"] // 32 == 1  # 25 %: a strong second harmonic
    audio = synth.render_score(song_files[False])
    assert spectra.harmonic_amplitudes(audio, SR, 3.1, 4.9, hz(67), 2)[1] > 0.6
    assert spectra.harmonic_amplitudes(audio, SR, 0.1, 0.9, hz(72), 2)[1] < 0.01  # pulse1: 50 %


def test_the_drum_channel_is_found_either_way(song_files):
    on_3, on_9 = synth.render_score(song_files[False]), synth.render_score(song_files[True])
    np.testing.assert_array_equal(on_3, on_9)
    np.testing.assert_array_equal(on_9, synth.render_score(song_files[True], gm_drums=True))
    np.testing.assert_array_equal(on_3, synth.render_score(song_files[False], gm_drums=False))
    # Told that drums are on channel 10, a file with noise on channel 4 is no contract file: it is reduced.
    assert not np.array_equal(on_3, synth.render_score(song_files[False], gm_drums=True))


def test_a_score_renders_like_its_file(song_files):
    score = chiptuner.read_midi(song_files[False])
    np.testing.assert_array_equal(synth.render_score(score), synth.render_score(song_files[False]))
    np.testing.assert_array_equal(
        synth.render_score(song_files[False].read_bytes()), synth.render_score(song_files[False])
    )


def write_mido(path, tracks, ticks_per_beat=480):
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    for messages in tracks:
        mid.tracks.append(mido.MidiTrack(messages))
    mid.save(path)
    return mid


def test_cc1_changes_the_duty_mid_song(tmp_path):
    path = tmp_path / "duty.mid"
    mid = write_mido(
        path,
        [
            [
                mido.Message("control_change", channel=0, control=1, value=10, time=0),  # 12.5 %
                mido.Message("control_change", channel=0, control=7, value=100, time=0),  # volume: not duty
                mido.Message("note_on", channel=0, note=64, velocity=100, time=0),
                mido.Message("note_off", channel=0, note=64, velocity=0, time=960),
                mido.Message("control_change", channel=0, control=1, value=80, time=0),  # 50 %
                mido.Message("note_on", channel=0, note=64, velocity=100, time=0),
                mido.Message("note_off", channel=0, note=64, velocity=0, time=960),
            ]
        ],
    )
    audio = synth.render_score(path)
    eighth = spectra.harmonic_amplitudes(audio, SR, 0.1, 0.9, hz(64), 8)
    half = spectra.harmonic_amplitudes(audio, SR, 1.1, 1.9, hz(64), 8)
    assert eighth[1] > 0.8 and eighth[7] < 0.03  # 12.5 %: the 8th harmonic cancels
    assert half[1] < 0.01
    tick, channel, value = read_control_changes(path)
    assert list(zip(tick.tolist(), channel.tolist(), value.tolist(), strict=True)) == (
        reference.control_changes_from_mido(mid, 1)
    )


def test_read_control_changes_from_annotated_bytes():
    track = bytes(
        [
            0x00, 0xB0, 0x01, 0x10,  # tick 0: channel 0, CC 1 = 16
            0x60, 0x02, 0x20,  # tick 96, running status: CC 2 = 32 (another controller)
            0x00, 0x01, 0x40,  # tick 96, running status: CC 1 = 64
            0x00, 0xC0, 0x05,  # program change: one data byte
            0x00, 0xFF, 0x01, 0x02, 0x68, 0x69,  # a text event
            0x00, 0xB1, 0x01, 0x7F,  # tick 96: channel 1, CC 1 = 127
            0x00, 0xFF, 0x2F, 0x00,  # end of track
        ]
    )  # fmt: skip
    data = b"MThd" + bytes([0, 0, 0, 6, 0, 0, 0, 1, 0, 96]) + b"MTrk" + len(track).to_bytes(4, "big") + track
    tick, channel, value = read_control_changes(data)
    assert tick.tolist() == [0, 96, 96] and channel.tolist() == [0, 0, 1] and value.tolist() == [16, 64, 127]
    assert read_control_changes(data, controller=2)[2].tolist() == [32]
    truncated = data[: -len(track) + 10]  # the chunk says more bytes than there are: read what is there
    assert read_control_changes(truncated)[2].tolist() == [16, 64]
    with pytest.raises(MidiFileError, match="not a MIDI file"):
        read_control_changes(b"RIFX" + data)


def test_a_song_off_the_contract_is_reduced_to_the_chip_voices(tmp_path):
    """A held C major chord on one channel: the contract would play one note, the reduction plays three."""
    path = tmp_path / "chord.mid"
    chord = [mido.Message("note_on", channel=0, note=key, velocity=90, time=0) for key in (60, 64, 67)]
    chord += [
        mido.Message("note_off", channel=0, note=key, velocity=0, time=1920 if key == 60 else 0) for key in (60, 64, 67)
    ]
    write_mido(path, [chord])
    audio = synth.render_score(path)
    peaks = spectra.dominant_frequencies(audio, SR, 0.2, 1.8, 8)
    for key in (60, 64, 67):  # triangle, pulse2, pulse1 (the lead)
        assert np.any(np.abs(peaks / hz(key) - 1) < 0.01), (key, peaks)


def test_a_melody_on_another_channel_plays_on_pulse1(tmp_path):
    path = tmp_path / "melody.mid"
    notes = []
    for key in (60, 62, 64, 65, 67, 69, 71, 72):
        notes += [
            mido.Message("note_on", channel=5, note=key, velocity=90, time=0),
            mido.Message("note_off", channel=5, note=key, velocity=0, time=480),
        ]
    write_mido(path, [notes])
    audio = synth.render_score(path)
    for i, key in enumerate((60, 62, 64, 65, 67, 69, 71, 72)):
        assert spectra.fundamental(audio, SR, 0.5 * i + 0.05, 0.5 * i + 0.45) == pytest.approx(hz(key), rel=0.01)


def test_velocities_set_the_level():
    assert [_k.velocity_volume(v) for v in (0, 1, 8, 9, 64, 100, 127)] == [0, 1, 1, 1, 8, 12, 15]
    quiet, loud = tone(0, 60, velocity=30), tone(0, 60, velocity=120)
    assert rms(loud, 0.1, 1.0) > 3 * rms(quiet, 0.1, 1.0)
    assert synth._REDUCED_VELOCITY == tuple(VOICE_VELOCITY[name] for name in VOICE_NAMES)


def test_repeated_notes_in_a_file_are_articulated():
    """Two touching notes of one pitch are heard as two, as the chip model plays them: a pulse note
    is struck anew (its envelope back at the strike level), the triangle stops for the frame before."""
    boundary = int(0.5 * SR)  # step 4 at 120 BPM
    pulse = synth.render_score(score_of(arrangement_from_notes(8, [(0, 0, 4, 60), (0, 4, 8, 60)])))
    period = SR / chip_hz(0, 60)
    before = rms(pulse, (boundary - 4 * period) / SR, (boundary - period) / SR)
    after = rms(pulse, (boundary + period) / SR, (boundary + 4 * period) / SR)
    # The sustain level 9 (12 - 3) against the strike 12, through the non-linear mixer.
    assert after > 1.2 * before
    triangle = synth.render_score(score_of(arrangement_from_notes(8, [(2, 0, 4, 45), (2, 4, 8, 45)])))
    frame = synth.TRIANGLE_CUT_SEC
    gap = rms(triangle, 0.5 - 0.7 * frame, 0.5 - 0.1 * frame)
    assert gap < 0.2 * rms(triangle, 0.2, 0.4) and rms(triangle, 0.55, 0.9) > 0.5 * rms(triangle, 0.2, 0.4)


# --- WAV and the command line ------------------------------------------------------------------------


def read_wav(path):
    with wave.open(str(path), "rb") as f:
        return f.getnchannels(), f.getsampwidth(), f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), "<i2")


def test_write_wav_clips_and_writes_16_bit_mono(tmp_path):
    path = tmp_path / "a.wav"
    synth.write_wav(path, np.array([0.0, 0.5, -0.5, 2.0, -2.0, np.nan], np.float32), sample_rate=22050)
    channels, width, rate, frames = read_wav(path)
    assert (channels, width, rate) == (1, 2, 22050)
    assert frames.tolist() == [0, 16384, -16384, 32767, -32767, 0]


def test_write_wav_lets_os_errors_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        synth.write_wav(tmp_path / "missing" / "a.wav", np.zeros(4, np.float32))


def test_cli_render_writes_the_wav_and_one_line(song_files, tmp_path, capsys):
    out = tmp_path / "song.wav"
    assert main(["-q", "render", str(song_files[False]), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    expected = synth.render_score(song_files[False])
    assert captured.out == f"wrote {out}: {len(expected) / SR:.1f} s, 44100 Hz\n"
    assert captured.err == ""
    channels, width, rate, frames = read_wav(out)
    assert (channels, width, rate) == (1, 2, SR)
    np.testing.assert_array_equal(frames, np.rint(np.clip(expected, -1, 1) * 32767).astype(np.int16))


def test_cli_render_options(song_files, tmp_path, capsys):
    out = tmp_path / "song.wav"
    assert main(["-q", "render", str(song_files[True]), "-o", str(out), "--sample-rate", "22050", "--gm-drums"]) == 0
    assert capsys.readouterr().out.endswith(", 22050 Hz\n")
    _, _, rate, frames = read_wav(out)
    assert rate == 22050
    assert len(frames) == len(synth.render_score(song_files[True], sample_rate=22050, gm_drums=True))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda folder: folder / "missing.mid", "no such file"),
        (
            lambda folder: (folder / "bad.mid").write_bytes(b"hello, this is no MIDI") and folder / "bad.mid",
            "not a MIDI",
        ),
    ],
)
def test_cli_render_refuses_a_bad_midi_file_in_one_line(tmp_path, capsys, make, message):
    source = make(tmp_path)
    out = tmp_path / "out.wav"
    assert main(["render", str(source), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chiptuner render: error: ") and message in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not out.exists()


def test_cli_render_unwritable_output_and_bad_rates(song_files, tmp_path, capsys):
    assert main(["render", str(song_files[False]), "-o", str(tmp_path / "no" / "out.wav")]) == 2
    assert capsys.readouterr().err.startswith("chiptuner render: error: ")
    assert main(["render", str(song_files[False]), "-o", str(tmp_path / "a.wav"), "--sample-rate", "500000"]) == 2
    assert "sample_rate is 500000" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["render", str(song_files[False]), "-o", str(tmp_path / "a.wav"), "--sample-rate", "100"])
    assert exit_info.value.code == 2


def test_python_m_chiptuner_render(song_files, tmp_path):
    out = tmp_path / "song.wav"
    result = subprocess.run(
        [sys.executable, "-m", "chiptuner", "render", str(song_files[False]), "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: 9.3 s, 44100 Hz")  # 8.253 s (on a frame) + the 1 s tail
    assert read_wav(out)[3].shape == (len(synth.render_score(song_files[False])),)


def test_warmup_compiles_the_kernels_in_a_fresh_process():
    code = (
        "from chiptuner import synth; from chiptuner._kernels import synth as k; synth.warmup(); "
        "print(len(k.render_events.signatures), len(k.render_block.signatures))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]


# --- bad arguments -------------------------------------------------------------------------------


def one(**kwargs):
    base = {"event_sample": [0], "event_voice": [0], "event_pitch": [60], "event_velocity": [100], "event_duty": [-1]}
    base.update(kwargs)
    n_frames = base.pop("n_frames", None)
    sample_rate = base.pop("sample_rate", SR)
    return lambda: synth.render_events(
        *(np.asarray(base[name]) for name in base), n_frames=n_frames, sample_rate=sample_rate
    )


_LIVE = synth.ChipSynth(block_size=128)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: synth.ChipSynth(sample_rate=100), "sample_rate is 100"),
        (lambda: synth.ChipSynth(sample_rate=44100.0), "sample_rate is 44100.0"),
        (lambda: synth.ChipSynth(block_size=0), "block_size is 0"),
        (lambda: _LIVE.note_on(4, 60), "voice is 4"),
        (lambda: _LIVE.note_on(True, 60), "voice is True"),
        (lambda: _LIVE.note_on(0, 128), "pitch is 128"),
        (lambda: _LIVE.note_on(0, 60, 0), "velocity is 0"),
        (lambda: _LIVE.note_off(-1), "voice is -1"),
        (lambda: _LIVE.set_duty(2, 1), "only the pulses"),
        (lambda: _LIVE.set_duty(0, 4), "duty_index is 4"),
        (lambda: _LIVE.render(129), "n_frames is 129"),
        (one(event_voice=[0, 1]), "event_voice has shape"),
        (one(event_sample=[[0]]), "event_sample has shape"),
        (one(event_sample=[-1]), "event_sample[0] is -1"),
        (one(event_sample=[0.5]), "non-integer"),
        (one(event_voice=[5]), "event_voice[0] is 5"),
        (one(event_pitch=[-3]), "event_pitch[0] is -3"),
        (one(event_pitch=[200]), "event_pitch[0] is 200"),
        (one(event_velocity=[0]), "event_velocity[0] is 0"),
        (one(event_duty=[4]), "event_duty[0] is 4"),
        (one(event_voice=[2], event_duty=[1]), "only the pulses"),
        (one(event_sample=[100], n_frames=50), "event_sample[0] is 100"),
        (one(n_frames=-1), "n_frames is -1"),
        (one(sample_rate=0), "sample_rate is 0"),
        (lambda: synth.render_score(Path("x.mid"), sample_rate=1_000_000), "sample_rate is 1000000"),
        (lambda: synth.render_score(Path("x.mid"), gm_drums="yes"), "gm_drums is 'yes'"),
        (lambda: synth.write_wav("x.wav", np.zeros((2, 2))), "shape (2, 2)"),
        (lambda: synth.write_wav("x.wav", np.zeros(2, np.int16)), "dtype int16"),
        (lambda: synth.write_wav("x.wav", np.zeros(2), sample_rate=7999), "sample_rate is 7999"),
        (lambda: read_control_changes(b"", controller=128), "controller is 128"),
    ],
)
def test_bad_arguments_raise_parameter_error(call, message):
    with pytest.raises(ParameterError) as info:
        call()
    assert message in str(info.value)


def test_note_off_and_duty_only_events_are_not_note_ons():
    """A note-off or duty event carries no velocity: 0 is fine there."""
    audio = synth.render_events(
        np.array([0, 0, 5000]), np.array([0, 0, 0]), np.array([-2, 60, -1]), np.array([0, 100, 0]),
        np.array([1, -1, -1]), n_frames=10000,
    )  # fmt: skip
    assert spectra.harmonic_amplitudes(audio, SR, 0.01, 0.1, hz(60), 2)[1] > 0.6  # the duty event's 25 %
    assert np.abs(audio[6000:]).max() < 1e-3


def test_render_score_takes_a_score_a_path_or_bytes():
    with pytest.raises(TypeError, match="Score, a path or bytes"):
        synth.render_score(123)
