"""The output contract: four chip voices as MIDI (channels, names, duty, drum keys).

docs/targets.md fixes what every arrangement writer produces: a format-1 file with a tempo
track and one track per chip voice named ``pulse1``, ``pulse2``, ``triangle``, ``noise``
on channels 0-3 (noise on 9 with ``gm_drums``), each voice monophonic, the noise voice's
pitch a General MIDI drum key, and the pulses' duty cycle as CC 1.
"""

from __future__ import annotations

import os

import mido
import numpy as np

from chiptuner.errors import ParameterError
from chiptuner.midi_io import events_to_track
from chiptuner.timebase import check_swing, swung_ticks
from chiptuner.types import VOICE_NAMES, Arrangement, TempoMap, TimeSignatures
from chiptuner.voices import voice_notes

__all__ = ["voice_channels", "write_arrangement", "DUTY_CC", "VOICE_PROGRAMS", "VOICE_VELOCITY", "GM_DRUM_CHANNEL"]

#: Channel of the noise voice with ``gm_drums`` (General MIDI percussion, 0-based).
GM_DRUM_CHANNEL = 9
#: CC 1 value sent once per pulse voice: pulse1 50% duty (64-95), pulse2 25% (32-63).
DUTY_CC = {"pulse1": 80, "pulse2": 48}
#: General MIDI programs so that a plain GM synth sounds close: square lead, square lead,
#: synth bass; the noise voice plays drums and needs none.
VOICE_PROGRAMS = {"pulse1": 80, "pulse2": 80, "triangle": 38}
VOICE_VELOCITY = {"pulse1": 100, "pulse2": 80, "triangle": 96, "noise": 90}


def voice_channels(*, gm_drums: bool = False) -> tuple[int, int, int, int]:
    """Channels (0-based) of pulse1, pulse2, triangle and noise."""
    return (0, 1, 2, GM_DRUM_CHANNEL if gm_drums else 3)


def write_arrangement(
    arrangement: Arrangement,
    path: str | os.PathLike,
    *,
    ticks_per_beat: int = 480,
    tempo: TempoMap | None = None,
    time_signatures: TimeSignatures | None = None,
    gm_drums: bool = False,
    swing: float = 0.0,
) -> None:
    """Write an arrangement as the MIDI file of the output contract.

    Parameters
    ----------
    arrangement : Arrangement
    path : str or os.PathLike
    ticks_per_beat : int
        The input's ticks per beat (480 when there is none).
    tempo, time_signatures : optional
        Copied to the tempo track (ticks of the same ``ticks_per_beat``); 120 BPM 4/4 when None.
    gm_drums : bool
        Noise on channel 9 (General MIDI drums) instead of 3.
    swing : float
        0 (straight) to 0.5: every off-beat 16th starts this much of a step late
        (``timebase.swung_ticks``); 1/3 is the triplet feel.

    Notes
    -----
    A voice's note runs from its onset step to the next onset or silence
    (``voices.voice_notes``); a step is ``ticks_per_beat / steps_per_beat`` ticks. Step 0
    is taken as a downbeat (an arrangement starts on one), so the odd steps are the off-beats.
    """
    if (
        isinstance(ticks_per_beat, bool)
        or not isinstance(ticks_per_beat, (int, np.integer))
        or not 0 < ticks_per_beat < 32768
    ):
        raise ParameterError(f"ticks_per_beat is {ticks_per_beat!r}; use 1-32767 (480 is common)")
    swing = check_swing(swing)
    spb = arrangement.steps_per_beat
    mid = mido.MidiFile(type=1, ticks_per_beat=int(ticks_per_beat))
    # (tick, order on the tick, message) as midi_io.events_to_track takes them.
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
        (0, 0, mido.MetaMessage("track_name", name="tempo", time=0))
    ]
    if tempo is not None:
        events += [
            (t, 1, mido.MetaMessage("set_tempo", tempo=int(us), time=0))
            for t, us in zip(tempo.tick.tolist(), tempo.us_per_beat.tolist(), strict=True)
        ]
    else:
        events.append((0, 1, mido.MetaMessage("set_tempo", tempo=500_000, time=0)))
    if time_signatures is not None and len(time_signatures.tick):
        events += [
            (t, 1, mido.MetaMessage("time_signature", numerator=int(n), denominator=int(d), time=0))
            for t, n, d in zip(
                time_signatures.tick.tolist(),
                time_signatures.numerator.tolist(),
                time_signatures.denominator.tolist(),
                strict=True,
            )
        ]
    else:
        events.append((0, 1, mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0)))
    mid.tracks.append(events_to_track(events))
    for v, (name, channel) in enumerate(zip(VOICE_NAMES, voice_channels(gm_drums=gm_drums), strict=True)):
        start_step, end_step, pitch = voice_notes(arrangement, v)
        # Offs (order 1) before ons (order 2) on one tick, so a voice never holds two notes.
        timed: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
            (0, 0, mido.MetaMessage("track_name", name=name, time=0))
        ]
        if name in VOICE_PROGRAMS:
            timed.append((0, 1, mido.Message("program_change", channel=channel, program=VOICE_PROGRAMS[name])))
        if name in DUTY_CC:
            timed.append((0, 1, mido.Message("control_change", channel=channel, control=1, value=DUTY_CC[name])))
        velocity = VOICE_VELOCITY[name]
        # Integer step -> tick; a note ends where the next begins (note-off written first).
        on_tick = swung_ticks(start_step, ticks_per_beat, swing, steps_per_beat=spb)
        off_tick = swung_ticks(end_step, ticks_per_beat, swing, steps_per_beat=spb)
        for on, off, key in zip(on_tick.tolist(), off_tick.tolist(), pitch.tolist(), strict=True):
            timed.append((on, 2, mido.Message("note_on", channel=channel, note=int(key), velocity=velocity)))
            timed.append((off, 1, mido.Message("note_off", channel=channel, note=int(key), velocity=0)))
        mid.tracks.append(events_to_track(timed))
    mid.save(os.fspath(path))
