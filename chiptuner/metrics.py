"""Musical-quality statistics of an arrangement (docs/targets.md, "Musical quality").

Each statistic is counted on one song by ``song_statistics``, the counts of many songs are
pooled by ``pool``, and ``compare`` sets a generated corpus against the real one, one row
per target. Held-out NLL is compared elsewhere (it needs the models, not the notes).

Conventions, on the 16th-note grid (16 steps a bar):

- a melody is ``pitch`` (T,), -1 for a rest, plus ``onset`` (T,) flags;
- voices are ``pitch`` (T, 4), -1 silent (the noise voice holds General MIDI drum keys),
  plus ``onset`` (T, 4) flags, in the order pulse1, pulse2, triangle, noise;
- an onset counts only where its voice sounds (a flag on a silent step is ignored).

The melody's key, which the in-key ratio is counted against, is ``keys.estimate_key``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chiptuner.errors import ParameterError
from chiptuner.keys import Key, check_melody, estimate_key

__all__ = [
    "SongStats",
    "Row",
    "CONSONANT_INTERVALS",
    "STEPS_PER_BAR",
    "WINDOW_STEPS",
    "song_statistics",
    "pool",
    "compare",
    "HOLE_BARS",
    "START_BARS",
    "Presence",
    "voice_presence",
    "contour_violations",
]

#: Unison, minor/major third, fourth, fifth, minor/major sixth (mod 12; the set is its own inversion).
CONSONANT_INTERVALS = (0, 3, 4, 5, 7, 8, 9)
STEPS_PER_BAR = 16
#: Pitch variety is counted in windows of 4 bars.
WINDOW_STEPS = 4 * STEPS_PER_BAR
_PITCHED = 3
_CONSONANT = np.zeros(12, dtype=np.bool_)
_CONSONANT[list(CONSONANT_INTERVALS)] = True
_CONSONANT.flags.writeable = False


@dataclass(frozen=True, eq=False)
class SongStats:
    """The counts of one song from which ``pool`` makes the docs/targets.md statistics.

    Attributes
    ----------
    steps : int
    bars : float
        ``steps / 16``.
    melody_steps : int
        Steps where the melody sounds.
    silent_steps : int
        Of those, the steps where pulse2, triangle and noise are all silent.
    onsets : np.ndarray [shape=(4,), dtype=int64]
        Onsets per voice.
    variety : np.ndarray [shape=(3,), dtype=float64]
        Per pitched voice (pulse1, pulse2, triangle), the mean over 4-bar windows of the
        distinct pitch classes among the voice's onsets; NaN when the song is under a bar.
    longest_run : np.ndarray [shape=(3,), dtype=int64]
        Per pitched voice, the longest run of consecutive onsets of one same pitch.
    harmony_steps, harmony_consonant : int
        Melody onsets where pulse2 or triangle sounds, and of those the consonant ones.
    key_onsets, in_key_onsets : int
        pulse2 and triangle onsets, and of those the ones in the melody's key.
    lead_onsets, lead_agree : int
        Melody onsets, and of those the ones where pulse1 starts the same pitch class.
    key : Key
        The melody's key (``estimate_key``).
    """

    steps: int
    bars: float
    melody_steps: int
    silent_steps: int
    onsets: np.ndarray
    variety: np.ndarray
    longest_run: np.ndarray
    harmony_steps: int
    harmony_consonant: int
    key_onsets: int
    in_key_onsets: int
    lead_onsets: int
    lead_agree: int
    key: Key


def _window_variety(pc: np.ndarray, started: np.ndarray) -> float:
    # pc, started (T,): mean distinct pitch classes of onsets per 64-step window.
    n = len(pc)
    bounds = list(range(0, n - n % WINDOW_STEPS, WINDOW_STEPS))
    counts = [len(np.unique(pc[b : b + WINDOW_STEPS][started[b : b + WINDOW_STEPS]])) for b in bounds]
    if n % WINDOW_STEPS >= STEPS_PER_BAR:
        tail = slice(n - n % WINDOW_STEPS, n)
        counts.append(len(np.unique(pc[tail][started[tail]])))
    return float(np.mean(counts)) if counts else math.nan


def _longest_run(values: np.ndarray) -> int:
    if len(values) == 0:
        return 0
    breaks = np.flatnonzero(values[1:] != values[:-1]) + 1
    edges = np.concatenate(([0], breaks, [len(values)]))
    return int(np.diff(edges).max())


def song_statistics(
    melody_pitch: np.ndarray, melody_onset: np.ndarray, voice_pitch: np.ndarray, voice_onset: np.ndarray
) -> SongStats:
    """Count the musical-quality statistics of one arranged song.

    Parameters
    ----------
    melody_pitch : np.ndarray [shape=(T,), dtype=int]
        The player's input melody, -1 for a rest.
    melody_onset : np.ndarray [shape=(T,), dtype=bool]
    voice_pitch : np.ndarray [shape=(T, 4), dtype=int]
        Sounding pitch per step of pulse1, pulse2, triangle, noise (drum keys), -1 silent.
    voice_onset : np.ndarray [shape=(T, 4), dtype=bool]

    Returns
    -------
    SongStats

    Notes
    -----
    - Harmony counts only melody onsets (the melody sounding) where pulse2 or triangle
      sounds: a step with both silent says nothing about consonance and is left out (the
      silence statistic covers it). A counted step is consonant when every sounding one of
      the two forms an interval in ``CONSONANT_INTERVALS`` with the melody.
    - In-key counts the onsets of pulse2 and triangle against the key of the melody alone.
    - Lead agreement: pulse1 has an onset on the melody onset's step, on the same pitch
      class (any octave).
    - Pitch variety: 4-bar windows from the start; a last partial window counts when it is
      at least one bar long; a window without onsets counts 0.
    """
    melody, melody_on = check_melody(melody_pitch, melody_onset)
    pitch = np.asarray(voice_pitch)
    onset = np.asarray(voice_onset)
    n = len(melody)
    if pitch.shape != (n, 4) or onset.shape != (n, 4):
        raise ParameterError(
            f"voice pitch {pitch.shape} and onset {onset.shape} must be ({n}, 4), one row per melody step"
        )
    pitch = pitch.astype(np.int64)
    sounding = pitch >= 0
    started = onset.astype(np.bool_) & sounding
    melody_sounds = melody >= 0
    melody_starts = melody_on & melody_sounds
    pc = np.where(sounding, pitch % 12, -1)
    melody_pc = np.where(melody_sounds, melody % 12, -1)

    accompaniment_silent = ~sounding[:, 1:].any(axis=1)
    variety = np.array([_window_variety(pc[:, v], started[:, v]) for v in range(_PITCHED)])
    longest = np.array([_longest_run(pitch[started[:, v], v]) for v in range(_PITCHED)], dtype=np.int64)

    harmonic = sounding[:, 1:3]
    interval_ok = _CONSONANT[(pc[:, 1:3] - melody_pc[:, None]) % 12] | ~harmonic
    counted = melody_starts & harmonic.any(axis=1)
    consonant = counted & interval_ok.all(axis=1)

    key = estimate_key(melody, melody_on)
    accompaniment_starts = started[:, 1:3]
    in_key = accompaniment_starts & key.scale[np.where(sounding[:, 1:3], pc[:, 1:3], 0)]

    agree = melody_starts & started[:, 0] & (pc[:, 0] == melody_pc)
    onsets = started.sum(axis=0).astype(np.int64)
    for array in (onsets, variety, longest):
        array.flags.writeable = False
    return SongStats(
        steps=n,
        bars=n / STEPS_PER_BAR,
        melody_steps=int(melody_sounds.sum()),
        silent_steps=int((melody_sounds & accompaniment_silent).sum()),
        onsets=onsets,
        variety=variety,
        longest_run=longest,
        harmony_steps=int(counted.sum()),
        harmony_consonant=int(consonant.sum()),
        key_onsets=int(accompaniment_starts.sum()),
        in_key_onsets=int(in_key.sum()),
        lead_onsets=int(melody_starts.sum()),
        lead_agree=int(agree.sum()),
        key=key,
    )


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else math.nan


def pool(stats: Sequence[SongStats]) -> dict[str, float | list[float]]:
    """Pool the statistics of many songs.

    Parameters
    ----------
    stats : sequence of SongStats
        One per song (at least one).

    Returns
    -------
    dict
        - ``"songs"``: number of songs; ``"bars"``: total bars.
        - ``"silence"``: silent accompaniment steps over melody steps (pooled counts).
        - ``"density"``: [4] onsets per bar per voice (pooled counts).
        - ``"variety"``: [3] per pitched voice, mean over songs (songs under a bar left out).
        - ``"stuck_p98"``, ``"stuck_median"``: over songs, of the longest run of any pitched voice.
        - ``"harmony"``, ``"in_key"``, ``"lead_agreement"``: pooled ratios.

        A ratio with nothing to count is NaN.
    """
    items = list(stats)
    if not items:
        raise ParameterError("no songs to pool; pass at least one SongStats")
    for item in items:
        if not isinstance(item, SongStats):
            raise ParameterError(f"pool got a {type(item).__name__}; pass SongStats made by song_statistics")
    bars = sum(s.bars for s in items)
    onsets = np.sum([s.onsets for s in items], axis=0)
    variety = np.array([s.variety for s in items])
    counted = np.isfinite(variety)
    variety_mean = [
        float(variety[counted[:, v], v].mean()) if counted[:, v].any() else math.nan for v in range(_PITCHED)
    ]
    stuck = np.array([s.longest_run.max() for s in items], dtype=np.float64)
    return {
        "songs": float(len(items)),
        "bars": float(bars),
        "silence": _ratio(sum(s.silent_steps for s in items), sum(s.melody_steps for s in items)),
        "density": [_ratio(count, bars) for count in onsets],
        "variety": variety_mean,
        "stuck_p98": float(np.percentile(stuck, 98)),
        "stuck_median": float(np.median(stuck)),
        "harmony": _ratio(sum(s.harmony_consonant for s in items), sum(s.harmony_steps for s in items)),
        "in_key": _ratio(sum(s.in_key_onsets for s in items), sum(s.key_onsets for s in items)),
        "lead_agreement": _ratio(sum(s.lead_agree for s in items), sum(s.lead_onsets for s in items)),
    }


@dataclass(frozen=True)
class Row:
    """One line of the comparison with the real arrangements.

    Attributes
    ----------
    metric : str
        The docs/targets.md metric.
    voice : str
        The voice it concerns, "" for all.
    value, real : float
        The generated and the real figure (NaN where there was nothing to count).
    target : str
        The target, in words.
    passed : bool or None
        None for a figure reported without a target.
    """

    metric: str
    voice: str
    value: float
    real: float
    target: str
    passed: bool | None


_VOICES = ("pulse1", "pulse2", "triangle", "noise")
_POOLED_KEYS = ("silence", "density", "variety", "stuck_p98", "stuck_median", "harmony", "in_key", "lead_agreement")


def _check(flag: bool, *values: float) -> bool:
    return bool(flag) and all(math.isfinite(v) for v in values)


def compare(model: dict, real: dict) -> list[Row]:
    """Set the pooled statistics of generated arrangements against the real ones.

    Parameters
    ----------
    model, real : dict
        Made by ``pool``: the generated arrangements and the real ones of the same melodies.

    Returns
    -------
    list of Row
        One row per target and voice, in docs/targets.md order: accompaniment silence (within 2
        points), voice density (pulse2, triangle, noise within 0.5x-2x; pulse1 reported),
        pitch variety (pulse2, triangle at least 80%; pulse1 reported), stuck notes (p98 at
        most real p98; the median reported), harmony and in-key (at least real minus 3
        points), lead agreement (at least 95%). A NaN figure fails its target.
    """
    for name, stats in (("model", model), ("real", real)):
        missing = [key for key in _POOLED_KEYS if key not in stats]
        if missing:
            raise ParameterError(f"{name} statistics lack {', '.join(missing)}; pass the dict made by pool")
    rows = [
        Row(
            "accompaniment silence",
            "",
            float(model["silence"]),
            float(real["silence"]),
            "within 2 points of real",
            _check(abs(model["silence"] - real["silence"]) <= 0.02, model["silence"], real["silence"]),
        )
    ]
    for v, voice in enumerate(_VOICES):
        value, reference = float(model["density"][v]), float(real["density"][v])
        if v == 0:
            rows.append(Row("voice density", voice, value, reference, "reported", None))
        else:
            ok = 0.5 * reference <= value <= 2.0 * reference
            rows.append(Row("voice density", voice, value, reference, "0.5x-2x of real", _check(ok, value, reference)))
    for v, voice in enumerate(_VOICES[:_PITCHED]):
        value, reference = float(model["variety"][v]), float(real["variety"][v])
        if v == 0:
            rows.append(Row("pitch variety", voice, value, reference, "reported", None))
        else:
            ok = value >= 0.8 * reference
            rows.append(
                Row("pitch variety", voice, value, reference, "at least 80% of real", _check(ok, value, reference))
            )
    p98, real_p98 = float(model["stuck_p98"]), float(real["stuck_p98"])
    rows.append(
        Row("stuck notes (p98)", "", p98, real_p98, "at most real's p98", _check(p98 <= real_p98, p98, real_p98))
    )
    rows.append(
        Row("stuck notes (median)", "", float(model["stuck_median"]), float(real["stuck_median"]), "reported", None)
    )
    for key, metric in (("harmony", "harmony ratio"), ("in_key", "in-key ratio")):
        value, reference = float(model[key]), float(real[key])
        ok = value >= reference - 0.03
        rows.append(Row(metric, "", value, reference, "at least real minus 3 points", _check(ok, value, reference)))
    lead = float(model["lead_agreement"])
    rows.append(
        Row("lead agreement", "", lead, float(real["lead_agreement"]), "at least 95%", _check(lead >= 0.95, lead))
    )
    return rows


#: A voice silent this many bars or more (after ``START_BARS``) has a hole.
HOLE_BARS = 4
#: Bars at the start of a song where a voice may still be waiting to enter.
START_BARS = 2


@dataclass(frozen=True, eq=False)
class Presence:
    """Whether and when each voice of one arrangement plays (docs/targets.md "voices that stay").

    Attributes
    ----------
    steps : int
    onsets : np.ndarray [shape=(4,), dtype=int64]
        Onsets per voice (pulse1, pulse2, triangle, noise).
    longest_silence : np.ndarray [shape=(4,), dtype=float64]
        Per voice, the longest run of steps where it does not sound, counted from bar
        ``START_BARS`` to the end, in bars (0 for a song no longer than that).
    first_onset_bar : np.ndarray [shape=(4,), dtype=int64]
        Per voice, the bar (0-based) of its first onset; -1 when it never plays.
    """

    steps: int
    onsets: np.ndarray
    longest_silence: np.ndarray
    first_onset_bar: np.ndarray

    @property
    def never_plays(self) -> np.ndarray:
        """Per voice, no onset at all [shape=(4,), dtype=bool]."""
        return self.onsets == 0

    @property
    def holes(self) -> np.ndarray:
        """Per voice, a silence of ``HOLE_BARS`` bars or more after the start [shape=(4,), dtype=bool]."""
        return self.longest_silence >= HOLE_BARS


def _longest_false_run(flags: np.ndarray) -> int:
    if len(flags) == 0:
        return 0
    edges = np.flatnonzero(np.diff(np.concatenate(([1], flags.astype(np.int8), [1]))))
    # edges alternate: a silence starts at edges[0::2] and ends at edges[1::2]
    return int((edges[1::2] - edges[0::2]).max()) if len(edges) else 0


def voice_presence(voice_pitch: np.ndarray, voice_onset: np.ndarray) -> Presence:
    """Count when each voice of one arrangement plays and how long it falls silent.

    Parameters
    ----------
    voice_pitch : np.ndarray [shape=(T, 4), dtype=int]
        Sounding pitch (drum key for noise) per step, -1 silent.
    voice_onset : np.ndarray [shape=(T, 4), dtype=bool]

    Returns
    -------
    Presence
    """
    pitch = np.asarray(voice_pitch)
    onset = np.asarray(voice_onset)
    if pitch.ndim != 2 or pitch.shape[1] != 4 or onset.shape != pitch.shape:
        raise ParameterError(f"voice pitch {pitch.shape} and onset {onset.shape} must both be (T, 4)")
    sounding = pitch >= 0
    started = onset.astype(np.bool_) & sounding
    after = sounding[START_BARS * STEPS_PER_BAR :]
    longest = np.array([_longest_false_run(after[:, v]) / STEPS_PER_BAR for v in range(4)])
    first = np.array(
        [int(np.argmax(started[:, v])) // STEPS_PER_BAR if started[:, v].any() else -1 for v in range(4)],
        dtype=np.int64,
    )
    onsets = started.sum(axis=0).astype(np.int64)
    for array in (onsets, longest, first):
        array.flags.writeable = False
    return Presence(len(pitch), onsets, longest, first)


def contour_violations(lane: np.ndarray, lane_onset: np.ndarray, lead_pitch: np.ndarray) -> tuple[int, int]:
    """Count the lane changes of a buttons-mode input that the lead's pitch does not follow.

    Over consecutive input onsets whose lane changes, the lead (pulse1's sounding pitch on
    each onset's step) must move the same way: up for a higher lane, down for a lower
    one. A lead that is silent on either step, or keeps its pitch, violates the change.

    Parameters
    ----------
    lane : np.ndarray [shape=(T,), dtype=int]
        The input lane per step (0-4, -1 for none).
    lane_onset : np.ndarray [shape=(T,), dtype=bool]
    lead_pitch : np.ndarray [shape=(T,), dtype=int]
        pulse1's sounding pitch per step, -1 silent.

    Returns
    -------
    changes, violations : int
    """
    lane_arr = np.asarray(lane).astype(np.int64)
    lead = np.asarray(lead_pitch).astype(np.int64)
    starts = np.asarray(lane_onset).astype(np.bool_)
    if lane_arr.ndim != 1 or starts.shape != lane_arr.shape or lead.shape != lane_arr.shape:
        raise ParameterError(
            f"lane {lane_arr.shape}, lane_onset {starts.shape} and lead pitch {lead.shape} must be 1-D of one length"
        )
    steps = np.flatnonzero(starts & (lane_arr >= 0))
    lanes, pitches = lane_arr[steps], lead[steps]
    move = np.sign(np.diff(lanes))
    follows = np.sign(np.diff(pitches)) == move
    heard = (pitches[1:] >= 0) & (pitches[:-1] >= 0)
    changed = move != 0
    return int(changed.sum()), int((changed & ~(follows & heard)).sum())
