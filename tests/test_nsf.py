import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from chiptuner import chip_model as cm
from chiptuner import nsf
from chiptuner._kernels import nsf as _kn
from chiptuner.types import TempoMap
from tests import nes, reference
from tests.test_chip_model import _arrangement

ASM = Path(nsf.__file__).resolve().parent / "asm"
SAMPLE_RATE = 44100


def _model_writes_per_frame(frames):
    frame, register, value = cm.frame_writes(frames)
    per_frame = [[] for _ in range(len(frames))]
    for f, r, v in zip(frame.tolist(), register.tolist(), value.tolist(), strict=True):
        per_frame[f].append((r, v))
    return per_frame


def _minutes(minutes, seed=0):
    """A busy song: 16th-note lead, 8th-note harmony and bass, drums on every 8th, at 150 BPM."""
    n = int(minutes * 150 * 4)
    return cm.song_from_arrangement(_arrangement(n, seed), tempo=_tempo(150), ticks_per_beat=480)


def _tempo(bpm):
    return TempoMap(np.zeros(1, np.int64), np.array([round(60e6 / bpm)], np.int64))


@pytest.mark.skipif(not (shutil.which("ca65") and shutil.which("ld65")), reason="cc65 (ca65, ld65) is not installed")
def test_committed_driver_is_its_source_assembled(tmp_path):
    subprocess.run(["ca65", str(ASM / "nsf_driver.s"), "-o", str(tmp_path / "d.o")], check=True)
    subprocess.run(
        ["ld65", "-C", str(ASM / "nsf_driver.cfg"), str(tmp_path / "d.o"), "-o", str(tmp_path / "d.bin")], check=True
    )
    assert (tmp_path / "d.bin").read_bytes() == nsf.driver_bytes()


def test_header_declares_ntsc_banked_song():
    data = nsf.nsf_bytes(cm.song_from_arrangement(_arrangement(32)), title="Song")
    assert data[:5] == b"NESM\x1a" and data[5] == 1 and data[6] == 1 and data[7] == 1
    assert int.from_bytes(data[8:10], "little") == 0x8000
    assert int.from_bytes(data[10:12], "little") == nsf.INIT_ADDRESS
    assert int.from_bytes(data[12:14], "little") == nsf.PLAY_ADDRESS
    assert data[14:18] == b"Song" and data[18] == 0
    assert int.from_bytes(data[0x6E:0x70], "little") == 16639
    assert list(data[0x70:0x78]) == [0, 1, 0, 0, 0, 0, 0, 0]
    assert data[0x7A] == 0 and data[0x7B] == 0  # NTSC, no expansion chip
    assert (len(data) - 0x80) % 0x1000 == 0


@pytest.mark.skipif(nes.MPU is None, reason="py65 is not installed (pip install py65)")
def test_driver_makes_the_model_writes_frame_by_frame():
    frames = cm.play(_minutes(0.25))
    machine = nes.NsfMachine(nsf.nsf_bytes(frames))
    played = machine.run(len(frames) + 30)
    expected = _model_writes_per_frame(frames)
    for f, (got, want) in enumerate(zip(played, expected, strict=False)):
        assert got == want, f"frame {f}"
    assert all(not w for w in played[len(frames) :])  # the song has ended: silence, no writes


@pytest.mark.skipif(nes.MPU is None, reason="py65 is not installed (pip install py65)")
def test_five_minutes_switch_banks_and_still_match():
    frames = cm.play(_minutes(5, seed=3))
    data = nsf.nsf_bytes(frames)
    assert len(data) > 0x80 + 32 * 1024 + 0x1000  # the data outgrows 32 KB
    machine = nes.NsfMachine(data)
    played = machine.run(len(frames))
    assert played == _model_writes_per_frame(frames)
    assert machine.bank_switches >= (len(data) - 0x80) // 0x1000 - 1


@pytest.mark.skipif(not nes.gme_available(), reason="libgme is not installed (Debian: apt-get install libgme0)")
@pytest.mark.parametrize("voice", [0, 1, 2, 3])
def test_game_music_emu_plays_the_model_pitch_and_onsets(voice):
    frames = cm.play(cm.song_from_arrangement(_arrangement(320, 0)))
    notes = frames.notes
    audio, sr = nes.gme_render(nsf.nsf_bytes(frames), len(frames) / cm.FRAME_RATE_HZ + 0.5, solo=voice)
    rate = cm.FRAME_RATE_HZ
    mine = np.flatnonzero(notes.voice == voice)
    assert len(mine) > 20
    cents, onset_frames = [], []
    for j, n in enumerate(mine.tolist()):
        start, end = int(notes.start_frame[n]), int(notes.end_frame[n])
        hz = float(cm.period_hz(voice, notes.period[n])) if voice < 3 else None
        prev = mine[j - 1] if j else None
        old = None
        if voice < 3 and prev is not None and notes.end_frame[prev] >= start:
            old = sr / float(cm.period_hz(voice, notes.period[prev]))
        t = nes.note_onset(
            audio, sr, start / rate, search_sec=3 / rate, old_period=old,
            new_period=sr / hz if hz else None, paused=bool(cm.cut_before(notes)[n]),
        )  # fmt: skip
        onset_frames.append((t - start / rate) * rate)
        if hz and end - start >= 6:
            segment = audio[int((start + 2) / rate * sr) : int((end - 1) / rate * sr)]
            period = nes.yin_period(segment, sr / hz)
            cents.append(1200 * np.log2(sr / period / hz))
    assert np.max(np.abs(onset_frames)) <= 1.0, np.round(onset_frames, 2)
    if voice < 3:
        assert len(cents) > 10 and np.max(np.abs(cents)) <= 5.0, np.round(cents, 2)
        # The period's pitch, not the MIDI key's: a wrong period (t +- 1) is off by more than 5 cents here.
        keys = notes.chip_key[mine]
        equal = 440 * 2 ** ((keys - 69) / 12)
        assert np.any(np.abs(1200 * np.log2(cm.period_hz(voice, notes.period[mine]) / equal)) > 0.5)


@pytest.mark.skipif(not nes.gme_available(), reason="libgme is not installed (Debian: apt-get install libgme0)")
def test_five_minutes_in_the_emulator_do_not_drift():
    """The header's play speed and the model's frame rate are one rate: the last notes of a 5-minute
    song still start within a frame of the model's onsets in Game_Music_Emu (its own audio read at the
    rate it makes it, ``nes.gme_rate``)."""
    rate = cm.FRAME_RATE_HZ
    frames = cm.play(_minutes(5, seed=3))
    notes = frames.notes
    # 22,050 Hz asked, 22,039.0 made per emulated second: 500 ppm, 9 frames in 5 minutes if not read at that rate.
    audio, sample_rate = nes.gme_render(nsf.nsf_bytes(frames), len(frames) / rate + 0.2, sample_rate=22050, solo=0)
    late = np.flatnonzero((notes.voice == 0) & (notes.start_frame > len(frames) - 10 * rate))
    assert len(late) > 20
    errors = []
    for n in late.tolist():
        prev = n - 1
        start = int(notes.start_frame[n])
        old = float(cm.period_hz(0, notes.period[prev])) if notes.end_frame[prev] >= start else None
        new = float(cm.period_hz(0, notes.period[n]))
        t = nes.note_onset(
            audio, sample_rate, start / rate, search_sec=3 / rate, old_period=sample_rate / old if old else None,
            new_period=sample_rate / new,
        )  # fmt: skip
        errors.append((t - start / rate) * rate)
    assert np.max(np.abs(errors)) <= 1.0, np.round(errors, 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_stream_matches_the_reference(seed):
    """Random writes with long silences (over 127 frames), empty frames and busy ones."""
    rng = np.random.default_rng(seed)
    n_frames = 900
    writes_by_frame = [[] for _ in range(n_frames)]
    busy = np.sort(rng.choice(np.arange(1, 600), size=40, replace=False))  # then 300 silent frames
    writes_by_frame[0] = [(0x15, 0x0F), (0x00, 0xBF)]
    for f in busy.tolist():
        registers, values = rng.integers(0, 0x10, 3), rng.integers(0, 256, 3)
        writes_by_frame[f] = [(int(r), int(v)) for r, v in zip(registers, values, strict=True)]
    frame = np.array([f for f, w in enumerate(writes_by_frame) for _ in w], np.int64)
    register = np.array([r for w in writes_by_frame for r, _ in w], np.int64)
    value = np.array([v for w in writes_by_frame for _, v in w], np.int64)
    out = np.empty(3 * len(frame) + n_frames // 127 + 2, np.uint8)
    length = _kn.encode_stream(frame, register, value, n_frames, out)
    assert out[:length].tobytes() == reference.nsf_stream_reference(writes_by_frame)
    assert max(np.diff(np.append(np.flatnonzero([bool(w) for w in writes_by_frame]), n_frames))) > 127
