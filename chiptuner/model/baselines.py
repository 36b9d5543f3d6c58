"""Baseline arrangers that the network must beat on held-out NLL (docs/targets.md).

Three baselines, each scoring real arrangements by teacher forcing exactly as the model
does (``log_prob``: natural-log probability of each real token given the real past, hold
impossible after a rest and the rest renormalised, the past starting as rests, no lead
forcing) and arranging a melody causally (``generate``: step t uses the inputs up to t only,
with the model's lead policy, ``chiptuner.model.arranger``):

- ``UnigramBaseline``: per-voice token frequencies, add-one smoothed.
- ``MarkovBaseline``: per voice p(token_t | token_{t-1}), add-one smoothed; voices independent.
- ``RuleBasedArranger``: deterministic causal rules (see its notes), made probabilistic for
  scoring by giving the rule's token 1 - eps and spreading eps evenly over the other
  allowed tokens, eps per voice and input mode fitted as the rule's error rate.

Each is fitted on songs given as dicts of the arrays of ``chiptuner.pipeline.song_arrays``
(``melody_pitch``, ``melody_onset``, ``lane``, ``lane_onset``, ``step_in_bar``,
``voice_pitch``, ``voice_onset``), and stored as plain arrays (``to_arrays`` /
``from_arrays``) inside the model's ``.npz`` extras, no pickle.

Inputs are as for ``chiptuner.model.arranger.Arranger.run``: ``melody`` is a MIDI pitch per step in
``"keys"`` mode or a lane 0-4 in ``"buttons"`` mode (-1 for none), ``onset`` the player's
onset flags and ``position`` the step in the bar.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable, Mapping
from typing import TypeVar

import numpy as np

from chiptuner._kernels.arranger import lead_token
from chiptuner.errors import ParameterError
from chiptuner.keys import MAJOR_STEPS, MINOR_STEPS, causal_keys
from chiptuner.model.arranger import (
    FIRST_NOTE,
    HOLD,
    N_TOKENS,
    REST,
    VOICE_HIGH,
    VOICE_LOW,
    InputMode,
    voices_to_tokens,
)

__all__ = [
    "UnigramBaseline",
    "MarkovBaseline",
    "RuleBasedArranger",
    "SONG_KEYS",
    "BUTTON_ROOT",
    "DRUM_PATTERN",
]

#: The arrays of one song that ``fit`` reads.
SONG_KEYS = ("melody_pitch", "melody_onset", "lane", "lane_onset", "step_in_bar", "voice_pitch", "voice_onset")
#: In buttons mode the rule-based arranger plays lane k as degree k of C major from this pitch (C5).
BUTTON_ROOT = 72
#: Drum class (index into ``voices.DRUM_KEYS``) of the rule-based groove per 16th of the bar, -1 silent:
#: kick on 0 and 8, snare on 4 and 12, closed hat on 2, 6, 10, 14.
DRUM_PATTERN = np.array([0, -1, 2, -1, 1, -1, 2, -1, 0, -1, 2, -1, 1, -1, 2, -1], dtype=np.int64)
DRUM_PATTERN.flags.writeable = False

_N = np.array(N_TOKENS, dtype=np.int64)
_V_MAX = int(_N.max())
_STEPS_PER_BEAT = 4
#: Triangle roots are placed in 36-47 (C2-B2).
_BASS_LOW = 36
#: Chord degrees tried in order (I, IV, V, vi, then ii, iii, vii).
_CHORD_ORDER = (0, 3, 4, 5, 1, 2, 6)
_Counts = TypeVar("_Counts", bound="_CountBaseline")


def _check_mode(mode: str) -> bool:
    if mode not in typing.get_args(InputMode):
        raise ParameterError(f"input mode is {mode!r}; use one of {typing.get_args(InputMode)}")
    return mode == "buttons"


def _check_inputs(
    melody: np.ndarray, onset: np.ndarray, position: np.ndarray, mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    buttons = _check_mode(mode)
    melody_arr = np.asarray(melody)
    onset_arr = np.asarray(onset)
    position_arr = np.asarray(position)
    if melody_arr.ndim != 1 or onset_arr.shape != melody_arr.shape or position_arr.shape != melody_arr.shape:
        raise ParameterError(
            f"melody {melody_arr.shape}, onset {onset_arr.shape} and position {position_arr.shape} "
            "must be 1-D of one length"
        )
    for name, array in (("melody", melody_arr), ("position", position_arr)):
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise ParameterError(f"{name} has dtype {array.dtype}; pass whole numbers")
    melody_arr = melody_arr.astype(np.int64)
    position_arr = position_arr.astype(np.int64)
    top = 4 if buttons else 127
    if melody_arr.size and (melody_arr.min() < -1 or melody_arr.max() > top):
        raise ParameterError(
            f"melody spans {melody_arr.min()}..{melody_arr.max()}; in {mode} mode use 0-{top}, -1 for none"
        )
    if position_arr.size and position_arr.min() < 0:
        raise ParameterError(f"position holds {position_arr.min()}; use the step in the bar, 0 on a downbeat")
    return melody_arr, onset_arr.astype(np.bool_), position_arr, buttons


def _check_tokens(tokens: np.ndarray, n_steps: int) -> np.ndarray:
    target = np.asarray(tokens)
    if target.shape != (n_steps, 4) or (target.size and not np.issubdtype(target.dtype, np.integer)):
        raise ParameterError(f"tokens have shape {target.shape} ({target.dtype}); expected ({n_steps}, 4) integers")
    target = target.astype(np.int64)
    if (target < 0).any() or (target >= _N).any():
        raise ParameterError("tokens hold values outside each voice's vocabulary; make them with voices_to_tokens")
    return target


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed is {seed!r}; it must be a whole number >= 0")
    return int(seed)


def _previous(tokens: np.ndarray) -> np.ndarray:
    # The real past of teacher forcing: rests before the first step.
    return np.concatenate([np.full((1, 4), REST, dtype=np.int64), tokens], axis=0)[:-1]


def _fold_array(pitch: np.ndarray, low: int, high: int) -> np.ndarray:
    # Octave folding of pitches >= 0, as ``_fold`` (ranges span at least an octave).
    out = pitch.copy()
    above = out > high
    out[above] -= 12 * ((out[above] - high + 11) // 12)
    below = out < low
    out[below] += 12 * ((low - out[below] + 11) // 12)
    return out


def _song_arrays(song: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(song, Mapping):
        raise ParameterError(f"a song is a {type(song).__name__}; pass dicts of the arrays of pipeline.song_arrays")
    missing = [key for key in SONG_KEYS if key not in song]
    if missing:
        raise ParameterError(f"a song lacks {', '.join(missing)}; pass the dicts made by pipeline.song_arrays")
    return {key: np.asarray(song[key]) for key in SONG_KEYS}


def _sample(weights: np.ndarray, rng: np.random.Generator) -> int:
    cumulative = np.cumsum(weights)
    index = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(index, len(weights) - 1)


class _CountBaseline:
    """Shared scoring and sampling of the count-based baselines (one weight table per voice)."""

    _name = ""

    def __init__(self, counts: np.ndarray | None = None) -> None:
        shape = self._counts_shape()
        if counts is None:
            counts = np.zeros(shape, dtype=np.float64)
        counts = np.array(counts, dtype=np.float64)
        if counts.shape != shape:
            raise ParameterError(f"{self._name} counts have shape {counts.shape}; expected {shape}")
        if not np.isfinite(counts).all() or (counts < 0).any():
            raise ParameterError(f"{self._name} counts hold negative or non-finite values; fit the baseline again")
        counts.flags.writeable = False
        self.counts = counts

    def _counts_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _table(self, v: int) -> np.ndarray:
        """Add-one smoothed weights of voice v [shape=(S, N_TOKENS[v])], one row per state."""
        raise NotImplementedError

    def _state(self, previous: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _count(self, tokens: np.ndarray, counts: np.ndarray) -> None:
        raise NotImplementedError

    def fit(self: _Counts, songs: Iterable[Mapping[str, np.ndarray]]) -> _Counts:
        """Count the tokens of the real arrangements of ``songs`` (replacing any earlier fit).

        Parameters
        ----------
        songs : iterable of dict
            One dict per song with the arrays of ``pipeline.song_arrays`` (``SONG_KEYS``).

        Returns
        -------
        self
        """
        counts = np.zeros(self._counts_shape(), dtype=np.float64)
        for song in songs:
            arrays = _song_arrays(song)
            self._count(voices_to_tokens(arrays["voice_pitch"], arrays["voice_onset"]), counts)
        counts.flags.writeable = False
        self.counts = counts
        return self

    def log_prob(
        self,
        melody: np.ndarray,
        onset: np.ndarray,
        position: np.ndarray,
        tokens: np.ndarray,
        *,
        mode: InputMode = "keys",
    ) -> np.ndarray:
        """Natural-log probability of each real token given the real past (teacher forcing).

        Parameters
        ----------
        melody : np.ndarray [shape=(T,), dtype=int]
            Pitch (keys mode) or lane (buttons mode), -1 for none; checked, not used.
        onset : np.ndarray [shape=(T,), dtype=bool]
        position : np.ndarray [shape=(T,), dtype=int]
        tokens : np.ndarray [shape=(T, 4), dtype=int]
            The real arrangement (``voices_to_tokens``).
        mode : {"keys", "buttons"}

        Returns
        -------
        np.ndarray [shape=(T, 4), dtype=float64]
            -inf for a hold after a rest (impossible).
        """
        melody_arr, _, _, _ = _check_inputs(melody, onset, position, mode)
        target = _check_tokens(tokens, len(melody_arr))
        previous = _previous(target)
        out = np.zeros(target.shape, dtype=np.float64)
        for v in range(4):
            table = self._table(v)
            rows = table[self._state(previous[:, v])]
            total = rows.sum(axis=1) - np.where(previous[:, v] == REST, rows[:, HOLD], 0.0)
            chosen = rows[np.arange(len(target)), target[:, v]]
            with np.errstate(divide="ignore"):
                out[:, v] = np.log(chosen) - np.log(total)
            out[(previous[:, v] == REST) & (target[:, v] == HOLD), v] = -math.inf
        return out

    def generate(
        self,
        melody: np.ndarray,
        onset: np.ndarray,
        position: np.ndarray,
        *,
        mode: InputMode = "keys",
        seed: int = 0,
        follow_lead: bool = True,
    ) -> np.ndarray:
        """Sample an arrangement step by step (causal), with the model's lead policy.

        Parameters
        ----------
        melody : np.ndarray [shape=(T,), dtype=int]
            Pitch (keys mode) or lane (buttons mode), -1 for none.
        onset : np.ndarray [shape=(T,), dtype=bool]
        position : np.ndarray [shape=(T,), dtype=int]
        mode : {"keys", "buttons"}
        seed : int
            Seed of ``numpy.random.default_rng``.
        follow_lead : bool
            On an input onset pulse1 plays the input pitch folded into its range (keys) or
            starts a note of its own choice (buttons).

        Returns
        -------
        np.ndarray [shape=(T, 4), dtype=int64]
        """
        melody_arr, onset_arr, _, buttons = _check_inputs(melody, onset, position, mode)
        rng = np.random.default_rng(_check_seed(seed))
        tables = [self._table(v) for v in range(4)]
        out = np.zeros((len(melody_arr), 4), dtype=np.int64)
        previous = np.full(4, REST, dtype=np.int64)
        for t in range(len(melody_arr)):
            lead = -1
            if follow_lead:  # the model's own lead policy: -1 free, -2 any new note, else the token
                lead = lead_token(buttons, int(melody_arr[t]), bool(onset_arr[t]), VOICE_LOW[0], VOICE_HIGH[0])
            for v in range(4):
                if v == 0 and lead >= FIRST_NOTE:
                    out[t, v] = lead
                    continue
                weights = tables[v][int(self._state(previous[v : v + 1])[0])].copy()
                if previous[v] == REST:
                    weights[HOLD] = 0.0
                if v == 0 and lead == -2:
                    weights[:FIRST_NOTE] = 0.0
                out[t, v] = _sample(weights, rng)
            previous = out[t]
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted counts as plain arrays (for the model's ``.npz`` extras)."""
        return {f"{self._name}_counts": np.array(self.counts), f"{self._name}_n_tokens": _N.copy()}

    @classmethod
    def from_arrays(cls: type[_Counts], arrays: Mapping[str, np.ndarray]) -> _Counts:
        """Rebuild a baseline from ``to_arrays`` (other keys of ``arrays`` are ignored)."""
        counts_key, layout_key = f"{cls._name}_counts", f"{cls._name}_n_tokens"
        if counts_key not in arrays or layout_key not in arrays:
            raise ParameterError(f"no {cls._name} baseline in the arrays (need {counts_key}, {layout_key}); fit one")
        if not np.array_equal(np.asarray(arrays[layout_key]), _N):
            raise ParameterError(
                f"the stored {cls._name} baseline has token layout {np.asarray(arrays[layout_key]).tolist()}, "
                f"this chiptuner {_N.tolist()}; fit it again"
            )
        return cls(np.asarray(arrays[counts_key]))


class UnigramBaseline(_CountBaseline):
    """Per-voice token frequencies, add-one smoothed, independent of everything else.

    Parameters
    ----------
    counts : np.ndarray [shape=(4, max(N_TOKENS)), dtype=float64], optional
        Token counts per voice (columns past a voice's vocabulary are ignored); zeros,
        the uniform distribution, when left out.
    """

    _name = "unigram"

    def _counts_shape(self) -> tuple[int, ...]:
        return (4, _V_MAX)

    def _table(self, v: int) -> np.ndarray:
        return self.counts[v : v + 1, : _N[v]] + 1.0

    def _state(self, previous: np.ndarray) -> np.ndarray:
        return np.zeros(len(previous), dtype=np.int64)

    def _count(self, tokens: np.ndarray, counts: np.ndarray) -> None:
        for v in range(4):
            counts[v] += np.bincount(tokens[:, v], minlength=_V_MAX)


class MarkovBaseline(_CountBaseline):
    """Per voice, p(token_t | token_{t-1}), add-one smoothed; the voices are independent.

    Parameters
    ----------
    counts : np.ndarray [shape=(4, max(N_TOKENS), max(N_TOKENS)), dtype=float64], optional
        Transition counts per voice, ``counts[v, previous, token]``; the token before the
        first step is a rest.
    """

    _name = "markov"

    def _counts_shape(self) -> tuple[int, ...]:
        return (4, _V_MAX, _V_MAX)

    def _table(self, v: int) -> np.ndarray:
        return self.counts[v, : _N[v], : _N[v]] + 1.0

    def _state(self, previous: np.ndarray) -> np.ndarray:
        return previous

    def _count(self, tokens: np.ndarray, counts: np.ndarray) -> None:
        previous = _previous(tokens)
        for v in range(4):
            np.add.at(counts[v], (previous[:, v], tokens[:, v]), 1.0)


def _third_below_table() -> np.ndarray:
    # [minor, tonic, pitch] -> the second scale tone strictly below the pitch (a diatonic third).
    out = np.zeros((2, 12, 128), dtype=np.int64)
    for minor, steps in enumerate((MAJOR_STEPS, MINOR_STEPS)):
        for tonic in range(12):
            in_scale = np.zeros(12, dtype=np.bool_)
            in_scale[(tonic + steps) % 12] = True
            for pitch in range(128):
                below, found = pitch, 0
                while found < 2:
                    below -= 1
                    found += bool(in_scale[below % 12])
                out[minor, tonic, pitch] = below
    return out


def _chord_root_table() -> np.ndarray:
    # [minor, tonic, melody pitch class] -> root pitch class of the first triad of _CHORD_ORDER
    # that contains it, -1 for a pitch class outside the scale.
    out = np.full((2, 12, 12), -1, dtype=np.int64)
    for minor, steps in enumerate((MAJOR_STEPS, MINOR_STEPS)):
        for tonic in range(12):
            for degree in reversed(_CHORD_ORDER):
                triad = (tonic + steps[[degree, (degree + 2) % 7, (degree + 4) % 7]]) % 12
                out[minor, tonic, triad] = (tonic + steps[degree]) % 12
    return out


_THIRD_BELOW = _third_below_table()
_CHORD_ROOT = _chord_root_table()
for _array in (_THIRD_BELOW, _CHORD_ROOT):
    _array.flags.writeable = False


def _last_index(flags: np.ndarray) -> np.ndarray:
    # For every step the last index <= t where ``flags`` holds, -1 before the first.
    return np.maximum.accumulate(np.where(flags, np.arange(len(flags)), -1)) if len(flags) else flags.astype(np.int64)


def _rule_plan(
    melody: np.ndarray, onset: np.ndarray, position: np.ndarray, buttons: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The rules' tokens (T, 4), and per step the token that starts each voice's current note.

    Every quantity at step t is computed from the inputs at steps 0..t only.
    """
    n = len(melody)
    if buttons:
        pitch = np.where(melody >= 0, BUTTON_ROOT + MAJOR_STEPS[np.clip(melody, 0, 4)], -1)
        tonic = np.zeros(n, dtype=np.int64)
        minor = np.zeros(n, dtype=np.bool_)
    else:
        pitch = melody
        tonic, minor = causal_keys(pitch, onset)
    mode_row = minor.astype(np.int64)
    sounds = pitch >= 0
    previous_pitch = np.concatenate([[-1], pitch])[:-1]
    new_note = sounds & (onset | (pitch != previous_pitch))
    tokens = np.zeros((n, 4), dtype=np.int64)
    attack = np.zeros((n, 4), dtype=np.int64)

    lead = _fold_array(np.where(sounds, pitch, 0), int(VOICE_LOW[0]), int(VOICE_HIGH[0]))
    attack[:, 0] = FIRST_NOTE + lead - VOICE_LOW[0]
    tokens[:, 0] = np.where(sounds, np.where(new_note, attack[:, 0], HOLD), REST)

    third = _THIRD_BELOW[mode_row, tonic, np.where(sounds, pitch, 0)]
    third = _fold_array(third, int(VOICE_LOW[1]), int(VOICE_HIGH[1]))
    started = _last_index(new_note)
    held_third = third[np.maximum(started, 0)]
    attack[:, 1] = FIRST_NOTE + held_third - VOICE_LOW[1]
    tokens[:, 1] = np.where(sounds, np.where(new_note, attack[:, 1], HOLD), REST)

    beat = position % _STEPS_PER_BEAT == 0
    candidate = np.where(beat & sounds, _CHORD_ROOT[mode_row, tonic, np.where(sounds, pitch, 0) % 12], -1)
    chosen = _last_index(candidate >= 0)
    root = np.where(chosen >= 0, candidate[np.maximum(chosen, 0)], tonic)
    last_beat = _last_index(beat)
    bass = _BASS_LOW + root[np.maximum(last_beat, 0)]
    attack[:, 2] = FIRST_NOTE + bass - VOICE_LOW[2]
    tokens[:, 2] = np.where(beat, attack[:, 2], np.where(last_beat >= 0, HOLD, REST))

    drum = DRUM_PATTERN[position % len(DRUM_PATTERN)]
    attack[:, 3] = FIRST_NOTE + np.maximum(drum, 0)
    tokens[:, 3] = np.where(drum >= 0, FIRST_NOTE + drum, REST)
    return tokens, attack


class RuleBasedArranger:
    """Deterministic causal arranging rules, scored as a noisy rule.

    Parameters
    ----------
    eps : np.ndarray [shape=(2, 4), dtype=float64], optional
        Per input mode (row 0 keys, row 1 buttons) and voice, the probability mass the
        scoring form puts off the rule's token; set by ``fit``. Needed by ``log_prob`` only.

    Notes
    -----
    The rules, at step t from the inputs up to t:

    - **melody**: keys mode, the input pitch. Buttons mode gives no pitch: the key is C
      major and lane k plays degree k of the scale from C5 (72, 74, 76, 77, 79).
    - **key**: Krumhansl-Kessler on the melody heard so far (``keys.causal_keys``),
      C major before 8 onsets.
    - **pulse1**: the melody folded into 48-96: a note at each melody onset (or pitch
      change), hold while it sounds, rest at rests.
    - **pulse2**: the second scale tone below the melody (a diatonic third below an
      in-scale pitch) folded into 40-88, started with each melody note, held while it
      sounds, rest at rests.
    - **triangle**: on every beat (position divisible by 4) the root of the chord implied by
      the melody at that step, in 36-47, held to the next beat. The chord is the first of the
      key's triads I, IV, V, vi, ii, iii, vii (natural minor: i, iv, v, VI, ...) containing
      the melody's pitch class; a beat where the melody rests or is outside the scale
      keeps the last chord (the tonic before any).
    - **noise**: ``DRUM_PATTERN`` on ``position % 16``, each hit one step long.

    For ``log_prob`` the rule's token gets probability 1 - eps and every other allowed token
    eps / (allowed - 1). Under teacher forcing the real past may be a rest where the rule
    would hold: the rule then starts its own current note instead (hold being impossible).
    ``fit`` sets eps to the maximum-likelihood value, the rule's error rate on the training
    songs, clipped to [1e-4, 0.999].
    """

    def __init__(self, eps: np.ndarray | None = None) -> None:
        self.eps = None if eps is None else self._check_eps(eps)

    @staticmethod
    def _check_eps(eps: np.ndarray) -> np.ndarray:
        array = np.array(eps, dtype=np.float64)
        if array.shape != (2, 4) or not np.isfinite(array).all() or (array <= 0).any() or (array >= 1).any():
            raise ParameterError(f"rule eps is {array.tolist()}; it must be (2, 4) values strictly between 0 and 1")
        array.flags.writeable = False
        return array

    def _teacher_tokens(
        self, melody: np.ndarray, onset: np.ndarray, position: np.ndarray, buttons: bool, target: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        tokens, attack = _rule_plan(melody, onset, position, buttons)
        previous = _previous(target)
        return np.where((tokens == HOLD) & (previous == REST), attack, tokens), previous

    def fit(self, songs: Iterable[Mapping[str, np.ndarray]]) -> RuleBasedArranger:
        """Set eps per mode and voice to the rule's error rate on the real arrangements of ``songs``.

        Parameters
        ----------
        songs : iterable of dict
            One dict per song with the arrays of ``pipeline.song_arrays`` (``SONG_KEYS``).

        Returns
        -------
        self
        """
        errors = np.zeros((2, 4), dtype=np.float64)
        steps = 0
        for song in songs:
            arrays = _song_arrays(song)
            target = voices_to_tokens(arrays["voice_pitch"], arrays["voice_onset"])
            inputs = (
                (arrays["melody_pitch"], arrays["melody_onset"], "keys"),
                (arrays["lane"], arrays["lane_onset"], "buttons"),
            )
            for row, (melody, onset, mode) in enumerate(inputs):
                melody_arr, onset_arr, position_arr, buttons = _check_inputs(melody, onset, arrays["step_in_bar"], mode)
                if len(target) != len(melody_arr):
                    raise ParameterError(
                        f"a song has {len(melody_arr)} melody steps and {len(target)} voice steps; "
                        "pass the arrays of one song_arrays call"
                    )
                rule, _ = self._teacher_tokens(melody_arr, onset_arr, position_arr, buttons, target)
                errors[row] += (rule != target).sum(axis=0)
            steps += len(target)
        if steps == 0:
            raise ParameterError("no song steps to fit the rule-based arranger on; pass at least one non-empty song")
        self.eps = self._check_eps(np.clip(errors / steps, 1e-4, 0.999))
        return self

    def log_prob(
        self,
        melody: np.ndarray,
        onset: np.ndarray,
        position: np.ndarray,
        tokens: np.ndarray,
        *,
        mode: InputMode = "keys",
    ) -> np.ndarray:
        """Natural-log probability of each real token given the real past (teacher forcing).

        Parameters
        ----------
        melody : np.ndarray [shape=(T,), dtype=int]
            Pitch (keys mode) or lane (buttons mode), -1 for none.
        onset : np.ndarray [shape=(T,), dtype=bool]
        position : np.ndarray [shape=(T,), dtype=int]
        tokens : np.ndarray [shape=(T, 4), dtype=int]
            The real arrangement (``voices_to_tokens``).
        mode : {"keys", "buttons"}

        Returns
        -------
        np.ndarray [shape=(T, 4), dtype=float64]
            -inf for a hold after a rest (impossible).
        """
        if self.eps is None:
            raise ParameterError("the rule-based arranger has no eps yet; call fit (or from_arrays) before log_prob")
        melody_arr, onset_arr, position_arr, buttons = _check_inputs(melody, onset, position, mode)
        target = _check_tokens(tokens, len(melody_arr))
        rule, previous = self._teacher_tokens(melody_arr, onset_arr, position_arr, buttons, target)
        eps = self.eps[int(buttons)]
        allowed = _N[None, :] - (previous == REST)
        out = np.where(rule == target, np.log1p(-eps)[None, :], np.log(eps)[None, :] - np.log(allowed - 1.0))
        out[(previous == REST) & (target == HOLD)] = -math.inf
        return out

    def generate(
        self,
        melody: np.ndarray,
        onset: np.ndarray,
        position: np.ndarray,
        *,
        mode: InputMode = "keys",
        seed: int = 0,
        follow_lead: bool = True,
    ) -> np.ndarray:
        """Arrange by the rules (causal and deterministic).

        Parameters
        ----------
        melody : np.ndarray [shape=(T,), dtype=int]
            Pitch (keys mode) or lane (buttons mode), -1 for none.
        onset : np.ndarray [shape=(T,), dtype=bool]
        position : np.ndarray [shape=(T,), dtype=int]
        mode : {"keys", "buttons"}
        seed : int
            Checked and unused: the rules draw nothing.
        follow_lead : bool
            Unused: pulse1 plays the melody, which already is the lead policy.

        Returns
        -------
        np.ndarray [shape=(T, 4), dtype=int64]
        """
        _check_seed(seed)
        melody_arr, onset_arr, position_arr, buttons = _check_inputs(melody, onset, position, mode)
        tokens, _ = _rule_plan(melody_arr, onset_arr, position_arr, buttons)
        return tokens

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted eps as plain arrays (for the model's ``.npz`` extras)."""
        if self.eps is None:
            raise ParameterError("the rule-based arranger has no eps to store; call fit first")
        return {"rule_eps": np.array(self.eps)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> RuleBasedArranger:
        """Rebuild from ``to_arrays`` (other keys of ``arrays`` are ignored)."""
        if "rule_eps" not in arrays:
            raise ParameterError("no rule-based arranger in the arrays (need rule_eps); fit one")
        return cls(np.asarray(arrays["rule_eps"]))
