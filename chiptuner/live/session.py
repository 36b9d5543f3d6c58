"""A live session on disk: session.mid (the player's input and the four voices) and session.wav.

The engine records into a ``Recorder`` (preallocated arrays); these functions run once the
playing stops, whatever stopped it, so an interrupted or broken session keeps what was
played. Each file is written to a temporary name and renamed, so a crash while writing
never leaves half a file under the final name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from chiptuner.live.engine import TRACK_INPUT, TRACK_METRONOME, Recorder
from chiptuner.midi_io import events_to_track
from chiptuner.synth import NO_NOTE, NOTE_OFF, SAMPLE_RATE, render_events, write_wav
from chiptuner.types import VOICE_NAMES

__all__ = ["SessionFiles", "write_session", "session_midi", "session_audio", "TICKS_PER_BEAT"]

TICKS_PER_BEAT = 480
_TRACK_NAMES = {
    TRACK_INPUT: "input", **{v + 1: name for v, name in enumerate(VOICE_NAMES)}, TRACK_METRONOME: "metronome",
}  # fmt: skip


@dataclass(frozen=True)
class SessionFiles:
    """What ``write_session`` wrote (``wav`` is None without sound)."""

    midi: Path
    wav: Path | None
    seconds: float


def _message(row: np.ndarray) -> mido.Message:
    """A recorded row (status, data bytes, -1 where absent) as a mido message."""
    return mido.Message.from_bytes([int(b) for b in row if b >= 0])


def session_midi(recorder: Recorder, *, bpm: float) -> mido.MidiFile:
    """The recording as a format-1 MIDI file: a tempo track, then input, the voices, the metronome.

    Times are kept to the tick at ``bpm`` (480 ticks per beat), whatever tempo the session
    followed, so the file sounds exactly as played.
    """
    time_sec, track, data = recorder.events()
    start = float(time_sec[0]) if len(time_sec) else 0.0
    ticks = np.round((time_sec - start) * bpm / 60.0 * TICKS_PER_BEAT).astype(np.int64)
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    tempo = mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))
    midi.tracks.append(events_to_track([(0, 0, mido.MetaMessage("track_name", name="tempo")), (0, 1, tempo)]))
    for number, name in _TRACK_NAMES.items():
        rows = np.flatnonzero(track == number)
        events = [(0, -1, mido.MetaMessage("track_name", name=name))]
        events += [(int(ticks[i]), order, _message(data[i])) for order, i in enumerate(rows)]
        if len(events) > 1 or 1 <= number <= 4:
            midi.tracks.append(events_to_track(events))
    return midi


def session_audio(recorder: Recorder, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The four voices of the recording through the chip synth, as float32 mono audio."""
    time_sec, track, data = recorder.events()
    voices = (track >= 1) & (track <= 4)
    start = float(time_sec[0]) if len(time_sec) else 0.0
    sample, voice, pitch, velocity, duty = [], [], [], [], []
    for i in np.flatnonzero(voices):
        kind, first, second = int(data[i, 0]) & 0xF0, int(data[i, 1]), int(data[i, 2])
        v = int(track[i]) - 1
        if kind == 0x90 and second > 0:
            values = (first, second, -1)
        elif kind == 0x80 or kind == 0x90 or (kind == 0xB0 and first == 123):
            values = (NOTE_OFF, 100, -1)
        elif kind == 0xB0 and first == 1 and v < 2:
            values = (NO_NOTE, 100, min(second // 32, 3))
        else:
            continue
        sample.append(round((float(time_sec[i]) - start) * sample_rate))
        voice.append(v)
        pitch.append(values[0])
        velocity.append(values[1])
        duty.append(values[2])
    return render_events(
        np.array(sample, np.int64), np.array(voice, np.int64), np.array(pitch, np.int64),
        np.array(velocity, np.int64), np.array(duty, np.int64), sample_rate=sample_rate,
    )  # fmt: skip


def _replace(path: Path, write) -> None:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


def write_session(
    recorder: Recorder, folder: str | os.PathLike, *, bpm: float, sound: bool = True, sample_rate: int = SAMPLE_RATE
) -> SessionFiles:
    """Write ``folder/session.mid`` and, with ``sound``, ``folder/session.wav``.

    The MIDI file is written first: if rendering the audio fails, the notes are safe.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    midi_path = out / "session.mid"
    midi = session_midi(recorder, bpm=bpm)
    _replace(midi_path, lambda p: midi.save(str(p)))
    wav_path = None
    if sound:
        audio = session_audio(recorder, sample_rate=sample_rate)
        wav_path = out / "session.wav"
        _replace(wav_path, lambda p: write_wav(p, audio, sample_rate=sample_rate))
    time_sec = recorder.events()[0]
    seconds = float(time_sec[-1] - time_sec[0]) if len(time_sec) else 0.0
    return SessionFiles(midi_path, wav_path, seconds)
