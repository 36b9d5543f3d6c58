"""Tempo and beat phase from note onsets alone (thin wrapper over ``_kernels.rhythm``).

Works on a plain array of onset times in seconds, so it serves a performed MIDI file with
no reliable grid as well as a live player's recent onsets: a live caller passes the last
few seconds of onsets every beat (the cost is linear in the onsets of the window).

Method: onsets are binned on a 10 ms grid (simultaneous notes add up), the impulse train
is autocorrelated from pairs of impulses, the autocorrelation is smoothed along the lag
axis (15 ms) and each candidate beat lag is scored by harmonic summation over the metrical
levels around it (a quarter, half, one and two times the lag), weighted by a log-normal
prior around 120 BPM (0.7 octave wide); the best lag is refined by parabolic interpolation.

Octave policy: a tempo and its double or half describe the same pulse; the estimate is
the level the salience and the prior prefer inside ``[min_bpm, max_bpm]``, so callers
that need a particular level should narrow that range to one octave.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from chiptuner._kernels import rhythm as _k
from chiptuner.errors import ParameterError
from chiptuner.timebase import ticks_to_seconds
from chiptuner.types import Score

__all__ = ["estimate_tempo", "estimate_beat_phase", "score_tempo", "warmup", "MIN_ONSETS"]

logger = logging.getLogger(__name__)

#: Fewer distinct onsets than this give no tempo: ``estimate_tempo`` returns NaN.
MIN_ONSETS = 4

#: Width of an onset bin.
BIN_SEC = 0.01
#: Gaussian smoothing of the autocorrelation along the lag axis (timing jitter tolerance).
SMOOTH_SEC = 0.015
#: Harmonic-summation weights on the lags k/4, k/2, k and 2k of a beat lag k (subdivisions
#: weigh fully, the half-bar less: that keeps the beat on a power-of-two multiple of the
#: fastest pulse, as the 16th-note step grid needs, rather than on a dotted value).
HARMONIC_WEIGHT = np.array([1.0, 1.0, 1.0, 0.5])
#: Centre and width (octaves) of the log-normal tempo prior (centred on the geometric mean
#: of the range instead where the range excludes PRIOR_BPM).
PRIOR_BPM = 120.0
PRIOR_SIGMA_OCT = 0.7
#: Phase resolution and tolerances of the beat-phase estimate.
PHASE_BINS = 64
PHASE_SMOOTH_BINS = 1.5
ACCENT_TOLERANCE_SEC = 0.05


_NO_WEIGHT = np.zeros(0, dtype=np.float64)
#: The highest max_bpm accepted: beats at least four bins apart.
MAX_BPM = 60.0 / (4 * BIN_SEC)


def _onsets_and_weight(onset_sec: np.ndarray, weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    onset_sec = np.ascontiguousarray(onset_sec, dtype=np.float64)
    if onset_sec.ndim != 1:
        raise ParameterError(f"onset_sec has shape {onset_sec.shape}; pass a 1-D array of onset times in seconds")
    if weight is None:
        weight = np.ones(onset_sec.shape[0], dtype=np.float64)
    else:
        weight = np.ascontiguousarray(weight, dtype=np.float64)
        if weight.shape != onset_sec.shape:
            raise ParameterError(
                f"weight has shape {weight.shape} but onset_sec has {onset_sec.shape}; pass one weight per onset"
            )
    return onset_sec, weight


def _check_bpm_range(min_bpm: float, max_bpm: float) -> None:
    """Raise the ParameterError that explains a bad range (called only when it is bad)."""
    if not (0.0 < min_bpm < max_bpm):
        raise ParameterError(
            f"min_bpm={min_bpm!r}, max_bpm={max_bpm!r}; both must be finite with 0 < min_bpm < max_bpm "
            "(e.g. min_bpm=60.0, max_bpm=240.0)"
        )
    raise ParameterError(
        f"max_bpm={max_bpm!r} is above {MAX_BPM:.0f}, where beats are under four "
        f"{BIN_SEC * 1000:.0f} ms bins apart; lower it"
    )


def estimate_tempo(
    onset_sec: np.ndarray,
    *,
    weight: np.ndarray | None = None,
    min_bpm: float = 60.0,
    max_bpm: float = 240.0,
) -> float:
    """Estimate the tempo of a sequence of onsets, in beats per minute.

    Parameters
    ----------
    onset_sec : np.ndarray [shape=(N,), dtype=float64]
        Onset times in seconds, in any order (one per note: chords weigh more).
        NaN and infinite entries are ignored.
    weight : np.ndarray [shape=(N,), dtype=float64], optional
        Weight of each onset (a velocity, say); 1 for each by default. Onsets with a
        weight <= 0 are ignored.
    min_bpm, max_bpm : float
        The range the estimate lies in; ``0 < min_bpm < max_bpm <= 1500``.

    Returns
    -------
    float
        The tempo in BPM, inside ``[min_bpm, max_bpm]``; NaN where there are fewer than
        ``MIN_ONSETS`` distinct onset times (10 ms apart) or no periodicity at all.

    Raises
    ------
    ParameterError
        For a bad BPM range, or ``weight`` and ``onset_sec`` of different shapes.
    """
    onset_sec = np.ascontiguousarray(onset_sec, dtype=np.float64)
    if onset_sec.ndim != 1:
        raise ParameterError(f"onset_sec has shape {onset_sec.shape}; pass a 1-D array of onset times in seconds")
    if weight is None:
        weight = _NO_WEIGHT
    else:
        weight = np.ascontiguousarray(weight, dtype=np.float64)
        if weight.shape != onset_sec.shape:
            raise ParameterError(
                f"weight has shape {weight.shape} but onset_sec has {onset_sec.shape}; pass one weight per onset"
            )
    if not (0.0 < min_bpm < max_bpm <= MAX_BPM):  # False for NaN too
        _check_bpm_range(min_bpm, max_bpm)
    if onset_sec.shape[0] < MIN_ONSETS:
        return math.nan
    lag = _k.beat_lag(
        onset_sec,
        weight,
        BIN_SEC,
        max(int(60.0 / max_bpm / BIN_SEC), 1),
        math.ceil(60.0 / min_bpm / BIN_SEC),
        SMOOTH_SEC / BIN_SEC,
        HARMONIC_WEIGHT,
        60.0 / (PRIOR_BPM if min_bpm <= PRIOR_BPM <= max_bpm else math.sqrt(min_bpm * max_bpm)) / BIN_SEC,
        PRIOR_SIGMA_OCT,
        MIN_ONSETS,
    )
    if not math.isfinite(lag):
        return math.nan
    return float(min(max(60.0 / (lag * BIN_SEC), min_bpm), max_bpm))


def estimate_beat_phase(
    onset_sec: np.ndarray,
    bpm: float,
    *,
    weight: np.ndarray | None = None,
    beats_per_bar: int = 4,
) -> tuple[float, int]:
    """Where the beats of a known tempo fall, and which of them start the bars.

    The beat phase is the peak of the onset weight folded onto one beat period (circular
    histogram, 64 bins, smoothed); the downbeat is the beat of the bar whose onsets (within
    50 ms) weigh most, so chords and accents (pass velocities as ``weight``) pull it.

    Parameters
    ----------
    onset_sec : np.ndarray [shape=(N,), dtype=float64]
        Onset times in seconds, in any order.
    bpm : float
        The tempo (from ``estimate_tempo``, say), > 0.
    weight : np.ndarray [shape=(N,), dtype=float64], optional
        Weight of each onset; 1 for each by default.
    beats_per_bar : int
        Beats in a bar (>= 1).

    Returns
    -------
    first_beat_sec : float
        The first beat at or after time 0, in ``[0, 60 / bpm)``: beats fall at
        ``first_beat_sec + k * 60 / bpm`` for k = 0, 1, ...; NaN without usable onsets.
    downbeat : int
        In ``0 .. beats_per_bar - 1``: the beats k with ``k % beats_per_bar == downbeat``
        start the bars (0 without usable onsets).

    Raises
    ------
    ParameterError
        For a bpm that is not a positive finite number, ``beats_per_bar < 1``, or
        ``weight`` and ``onset_sec`` of different shapes.
    """
    onset_sec, weight = _onsets_and_weight(onset_sec, weight)
    if not (isinstance(bpm, (int, float, np.floating, np.integer)) and math.isfinite(bpm) and bpm > 0):
        raise ParameterError(f"bpm={bpm!r}; pass a positive finite tempo (from estimate_tempo, say)")
    if int(beats_per_bar) != beats_per_bar or beats_per_bar < 1:
        raise ParameterError(f"beats_per_bar={beats_per_bar!r}; pass a whole number >= 1 (4 for 4/4, 3 for 3/4)")
    usable = np.isfinite(onset_sec) & (weight > 0)
    if not usable.any():
        return math.nan, 0
    period_sec = 60.0 / float(bpm)
    hist = np.empty(PHASE_BINS, dtype=np.float64)
    smooth = np.empty(PHASE_BINS, dtype=np.float64)
    _k.phase_histogram(onset_sec, weight, period_sec, hist)
    _k.circular_smooth(hist, PHASE_SMOOTH_BINS, smooth)
    first_beat_sec = float(np.argmax(smooth)) / PHASE_BINS * period_sec
    accent = np.empty(int(beats_per_bar), dtype=np.float64)
    _k.bar_accent(onset_sec, weight, period_sec, first_beat_sec, ACCENT_TOLERANCE_SEC, accent)
    return first_beat_sec, int(np.argmax(accent))


def score_tempo(score: Score, *, min_bpm: float = 60.0, max_bpm: float = 240.0) -> float:
    """``estimate_tempo`` on every note onset of a score, as it would be performed.

    The tempo map only turns ticks into seconds; the tempo it declares is not an input
    to the estimate.

    Returns
    -------
    float
        BPM, or NaN (see ``estimate_tempo``).
    """
    onset_sec = ticks_to_seconds(score.notes.start_tick, score.tempo, score.ticks_per_beat)
    return estimate_tempo(onset_sec, min_bpm=min_bpm, max_bpm=max_bpm)


def warmup() -> None:
    """Run every rhythm kernel once on tiny arrays, so no compilation waits for a live note."""
    onset_sec = np.arange(8, dtype=np.float64) * 0.5
    estimate_tempo(onset_sec)
    estimate_beat_phase(onset_sec, 120.0)
