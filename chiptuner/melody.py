"""Melody: picked from a song, simplified to what a person plays, mapped to five buttons.

A thin wrapper over the melody kernels (``_kernels.melody_pick`` chooses the notes, ``_kernels.melody``
puts them on the step grid).

How ``melody_notes`` picks the melody (``_kernels.melody_pick.pick_melody``, one kernel call)
----------------------------------------------------------------------------------------------
1. Drums are dropped; the other notes go onto the 16th grid.
2. Track choice: each (track, channel) group is scored by its note count, cut hard for
   notes that start on the same step or under a sounding note of the group. Where the best
   group is monophonic (at most ``_MONO_LIMIT`` of such notes) and there are two groups or
   more, its notes are the melody; in a segment of ``_SEGMENT_STEP`` steps where it is
   silent, the best other monophonic group that plays there stands in. Track names,
   programs and velocities are not used (names are often wrong in real files).
3. Otherwise (one merged track, or only chordal tracks) every pitched note is a candidate.
   When the velocities are flat (standard deviation at most ``_FLAT_VELOCITY``) and the
   candidates' skyline (highest onset per step) moves smoothly, at most ``_CLEAN_LEAP``
   semitones per note on average, the input is a clean top line over an accompaniment
   (folk tune with chords, chorale) and the skyline is the melody.
4. Else each note gets 31 features from the notes alone (``_kernels.melody_features.FEATURE_NAMES``:
   height in its onset group and among the sounding notes, duration, onsets under it,
   register against the local upper line and the song, intervals to the neighbouring
   onsets, velocity against its onset group, its neighbours and the song, beat position).
   A small network (``MelodyNetworks.first``: 16 ReLU units) turns them into a melody probability; 22
   context features then say how the note fits the probable melody around it (its
   pitch and velocity against the likely line near and wide, the likely notes before,
   after and still sounding; ``CONTEXT_NAMES``), and a second network (``second``) scores
   the note on all 53. The same context again, now from the second pass's sharper line,
   and 7 segment features (``SEGMENT_NAMES``: bars from the song's start and to its end,
   how dense the likely line is around the note against the whole song, how often two
   likely notes start together) make 82 inputs per note. Both networks (float64 weights in
   ``models/melody_notes.npz``) were fitted on POP909 001-300 with
   ``chiptuner.train.melody_notes``, on each song as it is and with its track velocities
   pulled together (later POP909 songs play every track at one level).
   Two stacked bidirectional GRU layers over all the notes in onset order (``line``,
   ``_kernels.melody_nets.line_logits``, float32 weights in ``models/melody_line.npz``) turn
   those inputs into the final score: three such networks, two of 128 units each way
   (seeds 0 and 1) and one of 160, their logits averaged (``ensemble_line_logits``; 0.893,
   0.891 and 0.891 alone, 0.900 together, at about 3.5 times the cost of one of 128). Each onset's notes
   go in from the highest pitch down (``pitch_onset_order``), never in the file's order:
   a merged file still lists one instrument's notes before another's at each onset, and
   a GRU fitted on that order learns the order, not the music (one did: 0.87 on the held-out songs, 0.75 once
   the notes of each onset were shuffled). The GRU sees the whole song, so it can tell
   the sung parts from intros, interludes and a counter-melody above the voice: on
   held-out POP909 songs it reads F1 0.900 with all three tracks merged and 0.975 with
   MELODY+PIANO merged (docs/measurements.md; one layer of 32 units read 0.83 and 0.95). It was
   fitted with torch on every POP909 song but the held-out ones, 301-909 divisible by 3
   (``chiptuner.train.melody_line``), with note-network inputs from networks that had not seen
   the song.
   A causal greedy line takes per onset step the best-scored note if its score is
   positive.
5. Chosen notes that overlap the next chosen note are cut at its onset.
"""

from __future__ import annotations

import functools
import logging
import zipfile
import zlib
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import numpy as np

from chiptuner._kernels import melody as _k
from chiptuner._kernels import melody_pick as _pick
from chiptuner._kernels.melody_features import N_FEATURES, N_INPUTS, SECOND_CONTEXT_START
from chiptuner.errors import ModelFileError, ParameterError
from chiptuner.timebase import STEPS_PER_BEAT, quantize_notes
from chiptuner.types import Melody, Notes, Score

__all__ = [
    "melody_notes",
    "skyline_notes",
    "extract_melody",
    "melody_from_notes",
    "simplify",
    "to_buttons",
    "MaxOnsets",
    "N_LANES",
    "MelodyNetworks",
    "shipped_networks",
]

logger = logging.getLogger(__name__)

MaxOnsets = Literal["beat", "half_beat"]

#: Number of button lanes of ``to_buttons``.
N_LANES = 5

#: The shipped weight files: the two note networks (``chiptuner.train.melody_notes`` writes
#: them) and the line networks (``chiptuner.train.melody_line``).
NOTE_NETS_PATH = Path(__file__).parent / "models" / "melody_notes.npz"
LINE_NETS_PATH = Path(__file__).parent / "models" / "melody_line.npz"
#: The arrays of one note network (``mlp_logits``' argument order), stored as ``{key}.1`` (the
#: first pass) and ``{key}.2`` (the second).
NOTE_NET_KEYS = ("w_hidden", "b_hidden", "w_out", "b_out")
#: The arrays of one group of line networks (``line_logits``' argument order), stored as
#: ``{key}.{width}``, the networks of one width stacked.
LINE_NET_KEYS = ("w_in", "b_in", "w_ih_first", "w_ih_upper", "w_hh", "b_ih", "b_hh", "w_out", "b_out")
#: What fixes each weight file.
_NOTE_NETS_FIX = "reinstall chiptuner, or fit them again with `python -m chiptuner.train.melody_notes --write`"
_LINE_NETS_FIX = "reinstall chiptuner, or fit them again with `python -m chiptuner.train.melody_line`"


class MelodyNetworks(NamedTuple):
    """The fitted weights ``melody_notes`` scores the notes of a merged song with.

    Attributes
    ----------
    first, second : tuple
        The note networks of ``_kernels.melody_pick.line_inputs``, each ``(w_hidden, b_hidden,
        w_out, b_out)``: float64 (H, F), (H,), (H,) and a float; F is ``N_FEATURES`` for the
        first and ``SECOND_CONTEXT_START`` for the second.
    line : tuple
        The line networks of ``_kernels.melody_nets.ensemble_line_logits``: one group per
        width, narrowest first, each its arrays in ``LINE_NET_KEYS`` order with one leading
        axis for its networks (``load_line_nets``).
    """

    first: tuple
    second: tuple
    line: tuple

    def with_line_network(self, index: int) -> MelodyNetworks:
        """These networks with the ``index``-th line network alone, not the mean of them all.

        Line networks are counted across the groups, narrowest first.

        Raises
        ------
        ParameterError
            Where there is no such network.
        """
        which = [(group, k) for group in self.line for k in range(len(group[-1]))]
        if not 0 <= index < len(which):
            raise ParameterError(f"line network {index}: there are networks 0-{len(which) - 1}")
        group, k = which[index]
        # A group of one: the kernel's mean of a single network is that network's logits.
        return self._replace(line=(tuple(weights[k : k + 1] for weights in group),))


def shipped_networks() -> MelodyNetworks:
    """The networks of ``NOTE_NETS_PATH`` and ``LINE_NETS_PATH``, read on first use and kept.

    Raises
    ------
    ModelFileError
        A weight file that is missing, damaged or of the wrong layout (named in the message).
    """
    return _read_networks(NOTE_NETS_PATH, LINE_NETS_PATH)


@functools.lru_cache(maxsize=2)
def _read_networks(note_nets_path: Path, line_nets_path: Path) -> MelodyNetworks:
    first, second = load_note_nets(note_nets_path)
    return MelodyNetworks(first, second, load_line_nets(line_nets_path))


def load_note_nets(path: Path = NOTE_NETS_PATH) -> tuple[tuple, tuple]:
    """The two note networks of a weight file, as ``MelodyNetworks.first`` and ``second`` hold them.

    Raises
    ------
    ModelFileError
        A missing or damaged file, a missing array, or one of the wrong type or shape.
    """
    arrays = _read_weight_file(path, _NOTE_NETS_FIX)
    nets = []
    for k, n_inputs in ((1, N_FEATURES), (2, SECOND_CONTEXT_START)):
        names = [f"{key}.{k}" for key in NOTE_NET_KEYS]
        _check_present(path, arrays, names, _NOTE_NETS_FIX)
        n_hidden = arrays[names[1]].shape[0] if arrays[names[1]].ndim == 1 else -1
        shapes = dict(zip(names, ((n_hidden, n_inputs), (n_hidden,), (n_hidden,), ()), strict=True))
        _check_shapes(path, arrays, shapes, _NOTE_NETS_FIX)
        w_hidden, b_hidden, w_out, b_out = (arrays[name] for name in names)
        nets.append((w_hidden, b_hidden, w_out, float(b_out)))
    return nets[0], nets[1]


def load_line_nets(path: Path = LINE_NETS_PATH) -> tuple:
    """The line networks of a weight file: a tuple of groups, one per width, as ``MelodyNetworks.line``.

    The file holds each width's networks stacked under ``{key}.{width}`` (``LINE_NET_KEYS``;
    ``chiptuner.train.melody_line.save_networks``). A group is its arrays in ``LINE_NET_KEYS``
    order, one leading axis for the networks: float32, the type the file stores
    (``line_logits`` runs its GRU in the weights' type, 1.35x faster than in float64 with
    the same choices on the held-out songs), ``b_out`` float64 (K,). Narrowest first.

    Raises
    ------
    ModelFileError
        A missing or damaged file, one without networks, a missing array, or one of the wrong
        type or shape.
    """
    arrays = _read_weight_file(path, _LINE_NETS_FIX)
    width_names = [name.partition(".")[2] for name in arrays if name.startswith("b_out.")]
    if not width_names or not all(name.isdecimal() and int(name) > 0 for name in width_names):
        raise ModelFileError(
            f"{path}: no line networks (arrays b_out.WIDTH, WIDTH a number of units) in {sorted(arrays)}; "
            f"{_LINE_NETS_FIX}"
        )
    groups = []
    for width in sorted(int(name) for name in width_names):
        names = [f"{key}.{width}" for key in LINE_NET_KEYS]
        _check_present(path, arrays, names, _LINE_NETS_FIX)
        gates = 3 * width
        # w_hh says how many networks and layers the group holds; the rest must agree with it.
        w_hh = arrays[f"w_hh.{width}"]
        if w_hh.ndim != 5 or min(w_hh.shape[:2]) < 1:
            raise ModelFileError(
                f"{path}: w_hh.{width} has shape {w_hh.shape}, expected (networks, layers, 2, {gates}, {width}) "
                f"with at least one network and one layer; {_LINE_NETS_FIX}"
            )
        n_nets, n_layers = w_hh.shape[:2]
        expected = (
            (n_nets, width, N_INPUTS + 1),
            (n_nets, width),
            (n_nets, 2, gates, width),
            (n_nets, n_layers - 1, 2, gates, 2 * width),
            (n_nets, n_layers, 2, gates, width),
            (n_nets, n_layers, 2, gates),
            (n_nets, n_layers, 2, gates),
            (n_nets, gates),
            (n_nets,),
        )
        _check_shapes(path, arrays, dict(zip(names, expected, strict=True)), _LINE_NETS_FIX)
        groups.append(
            (
                *[np.ascontiguousarray(arrays[name], dtype=np.float32) for name in names[:-1]],
                np.asarray(arrays[names[-1]], dtype=np.float64),
            )
        )
    return tuple(groups)


def _read_weight_file(path: Path, fix: str) -> dict[str, np.ndarray]:
    """Every array of a weight file (an .npz of plain numbers), or ModelFileError naming the file and ``fix``."""
    if not Path(path).is_file():
        raise ModelFileError(f"{path}: no such weight file; {fix}")
    try:
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        brief = " ".join(str(error).split())[:80]
        raise ModelFileError(f"{path}: not a readable weight file, damaged or cut short ({brief}); {fix}") from None


def _check_present(path: Path, arrays: dict[str, np.ndarray], names: list[str], fix: str) -> None:
    missing = [name for name in names if name not in arrays]
    if missing:
        raise ModelFileError(f"{path}: no array {', '.join(missing)}; {fix}")


def _check_shapes(path: Path, arrays: dict[str, np.ndarray], shapes: dict[str, tuple], fix: str) -> None:
    """ModelFileError naming the first array that is not finite floating-point numbers of its expected shape."""
    for name, shape in shapes.items():
        array = arrays[name]
        if array.dtype.kind != "f":
            raise ModelFileError(f"{path}: {name} holds {array.dtype}, expected floating-point numbers; {fix}")
        if array.shape != shape:
            raise ModelFileError(f"{path}: {name} has shape {array.shape}, expected {shape}; {fix}")
        if not np.isfinite(array).all():
            raise ModelFileError(f"{path}: {name} holds values that are not finite numbers; {fix}")


#: Greedy line: cost per semitone of leap from the last chosen note, and how far back
#: (steps) that note still counts.
_LEAP_COST = 0.0
_WINDOW_STEP = 16
#: Track choice: penalty per unit of chordal fraction, the largest chordal fraction of a
#: melody track, and the segment length (steps, 8 bars of 4/4) of the stand-in rule.
_MONO_PENALTY = 16.0
_MONO_LIMIT = 0.05
_SEGMENT_STEP = 128
#: Mean skyline leap (semitones) up to which a merged input with flat velocities
#: (standard deviation at most ``_FLAT_VELOCITY``) counts as a clean top line. Where the
#: velocities vary the networks always decide: they read velocity, and on POP909 001-300
#: (validation) any leap gate there loses F1 (0.916 without, 0.904 at 3 semitones).
_CLEAN_LEAP = 4.0
_FLAT_VELOCITY = 2.0
#: First-pass melody probability under which a note is not scored by the second network.
_SECOND_MIN_Q = 0.05
#: A choice keeping under this share of the pitched notes, where the skyline keeps three
#: times as many, is replaced by the skyline (pop songs keep 14-30%).
_FALLBACK_SHARE = 0.08
#: Silence (steps) after which ``to_buttons`` puts the next note back on the middle lane.
_RECENTER_BEATS = 2


def melody_notes(score: Score, *, networks: MelodyNetworks | None = None) -> Notes:
    """Pick the melody line of a song: a monophonic subset of its notes.

    See the module docstring for the method. Works on files with the melody on its own
    track (names not needed) and on files with every part merged into one track and channel.

    Parameters
    ----------
    score : Score
    networks : MelodyNetworks or None
        The weights to score a merged song's notes with; None: ``shipped_networks()``.

    Returns
    -------
    notes : Notes
        New arrays, sorted by ``start_tick``, at most one note per 16th step, none
        overlapping the next (a note is cut at the next chosen onset). Never a drum note.
        Where the choice keeps under 8% of the pitched notes and ``skyline_notes`` keeps
        three times as many, the skyline is returned instead.
    """
    notes = score.notes
    start_step = np.empty(len(notes), dtype=np.int64)
    end_step = np.empty(len(notes), dtype=np.int64)
    _k.grid_steps(notes.start_tick, notes.end_tick, score.ticks_per_beat, STEPS_PER_BEAT, start_step, end_step)
    return _melody_notes(score, start_step, end_step, networks)


def _melody_notes(
    score: Score, start_step: np.ndarray, end_step: np.ndarray, networks: MelodyNetworks | None = None
) -> Notes:
    """``melody_notes`` given the notes' 16th-grid steps (``_kernels.melody.grid_steps``)."""
    first, second, line = shipped_networks() if networks is None else networks
    notes = score.notes
    n = len(notes)
    out = (
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int64),
        np.empty(n, dtype=np.int16),
        np.empty(n, dtype=np.int16),
        np.empty(n, dtype=np.int8),
        np.empty(n, dtype=np.int16),
        np.empty(n, dtype=np.int32),
        np.empty(n, dtype=np.bool_),
    )
    k = _pick.pick_melody(
        notes.start_tick, notes.end_tick, start_step, end_step, notes.pitch, notes.velocity, notes.channel,
        notes.program, notes.track, notes.is_drum, first, second, line, _LEAP_COST, _WINDOW_STEP,
        _MONO_PENALTY, _MONO_LIMIT, _SEGMENT_STEP, _CLEAN_LEAP, _FLAT_VELOCITY, _SECOND_MIN_Q, *out,
    )  # fmt: skip
    if k < _FALLBACK_SHARE * n:
        # Track choice and note scorer were fitted on pop songs; where they keep almost
        # nothing (3% of the NES corpus), the plain skyline is the better melody.
        n_pitched = int(n - np.count_nonzero(notes.is_drum))
        if k < _FALLBACK_SHARE * n_pitched:
            skyline = skyline_notes(score)
            if len(skyline) > 3 * k:
                return skyline
    # the kernel's fresh outputs, cut to the chosen notes: no checks needed
    return Notes._adopt(*[array[:k] for array in out])


def skyline_notes(score: Score) -> Notes:
    """Pick the skyline baseline: per 16th step the highest starting note.

    A note is skipped while a higher chosen note still sounds. Drums are ignored;
    overlaps are cut as in ``melody_notes``.

    Returns
    -------
    notes : Notes
    """
    notes = score.notes
    start_step, end_step = quantize_notes(notes, score.ticks_per_beat, steps_per_beat=STEPS_PER_BEAT)
    order = np.lexsort((-notes.pitch.astype(np.int64), notes.start_tick, start_step))
    order = order[~notes.is_drum[order]]
    keep = np.zeros(len(order), dtype=np.bool_)
    _pick.skyline(start_step[order], end_step[order], notes.pitch[order], keep)
    chosen = notes.take(order[keep])
    end_tick = chosen.end_tick.copy()
    if len(end_tick) > 1:
        end_tick[:-1] = np.minimum(end_tick[:-1], chosen.start_tick[1:])
    return Notes(
        chosen.start_tick, end_tick, chosen.pitch, chosen.velocity, chosen.channel, chosen.program,
        chosen.track, chosen.is_drum,
    )  # fmt: skip


def _check_steps_per_beat(steps_per_beat: int) -> None:
    if not isinstance(steps_per_beat, (int, np.integer)) or steps_per_beat <= 0:
        raise ParameterError(f"steps_per_beat is {steps_per_beat!r}; it must be a positive integer such as 4")


def melody_from_notes(
    notes: Notes, ticks_per_beat: int, n_steps: int | None = None, *, steps_per_beat: int = STEPS_PER_BEAT
) -> Melody:
    """Put monophonic melody notes (as from ``melody_notes``) onto the step grid.

    Parameters
    ----------
    notes : Notes
        Sorted by ``start_tick``; a later note overwrites an earlier one where they overlap.
    ticks_per_beat : int
    n_steps : int or None
        Length T of the result; None: the last release step of the notes.
    steps_per_beat : int
        Grid resolution (4 = 16th notes).

    Returns
    -------
    Melody
        ``pitch`` int16 (T,) with -1 for rests and ``onset`` bool (T,).
    """
    _check_steps_per_beat(steps_per_beat)
    if not isinstance(ticks_per_beat, (int, np.integer)) or ticks_per_beat <= 0:
        raise ParameterError(f"ticks_per_beat is {ticks_per_beat!r}; it must be a positive integer such as 480")
    if n_steps is not None and n_steps < 0:
        raise ParameterError(f"n_steps is {n_steps!r}; it must be None or a length >= 0")
    start_step = np.empty(len(notes), dtype=np.int64)
    end_step = np.empty(len(notes), dtype=np.int64)
    last_step = _k.grid_steps(notes.start_tick, notes.end_tick, ticks_per_beat, steps_per_beat, start_step, end_step)
    if n_steps is None:
        n_steps = max(int(last_step), 0)
    pitch = np.empty(n_steps, dtype=np.int16)
    onset = np.empty(n_steps, dtype=np.bool_)
    _k.render_line(start_step, end_step, notes.pitch, pitch, onset)
    return Melody._adopt(pitch, onset, steps_per_beat=int(steps_per_beat))


def extract_melody(score: Score, *, steps_per_beat: int = STEPS_PER_BEAT) -> Melody:
    """Extract the melody of a song onto the step grid: ``melody_from_notes(melody_notes(score))``.

    Parameters
    ----------
    score : Score
    steps_per_beat : int
        Grid resolution (4 = 16th notes).

    Returns
    -------
    Melody
        ``pitch`` int16 (T,) with -1 for rests and ``onset`` bool (T,); T is the last
        release step of the melody notes (0 for a song without pitched notes).
    """
    _check_steps_per_beat(steps_per_beat)
    return melody_from_notes(melody_notes(score), score.ticks_per_beat, steps_per_beat=steps_per_beat)


def _window_step(melody: Melody, max_onsets: str) -> int:
    if max_onsets not in get_args(MaxOnsets):
        raise ParameterError(f"max_onsets is {max_onsets!r}; use one of {get_args(MaxOnsets)}")
    spb = melody.steps_per_beat
    if max_onsets == "beat":
        return spb
    if spb % 2:
        raise ParameterError(f"max_onsets={max_onsets!r} needs an even steps_per_beat; this melody has {spb}")
    return spb // 2


def simplify(melody: Melody, *, max_onsets: MaxOnsets = "beat") -> Melody:
    """Thin a melody to what a person would play: at most one onset per beat (or half beat).

    The input is already monophonic (one pitch per step). The grid is cut into aligned
    windows of one beat (``"beat"``) or half a beat (``"half_beat"``). In each window the
    first note start is kept, so a note on the beat always wins; later starts in the
    window are dropped and the kept pitch is held through them until the next kept onset,
    or until the input rests. A note that starts after a rest in an already used window
    is picked up at the next window (with an onset there).

    Causal: the output at step t depends on input steps <= t only (the rule never waits
    for a longer or higher note later in the window), so the same rule runs live.

    Parameters
    ----------
    melody : Melody
    max_onsets : {"beat", "half_beat"}

    Returns
    -------
    Melody
        Same length and ``steps_per_beat``; every pitch comes from the input, rests stay
        rests, at most one onset per window.
    """
    window = _window_step(melody, max_onsets)
    pitch = np.empty(len(melody), dtype=np.int16)
    onset = np.empty(len(melody), dtype=np.bool_)
    _k.thin_onsets(melody.pitch, melody.onset, window, pitch, onset)
    return Melody._adopt(pitch, onset, steps_per_beat=melody.steps_per_beat)


def to_buttons(melody: Melody) -> tuple[np.ndarray, np.ndarray]:
    """Map a melody's contour to five button lanes, causally.

    Rule: the first note, and the first note after a rest of at least two beats, takes the
    middle lane 2. Every other note moves from the previous note's lane by its interval to
    the previous note: a repeated pitch keeps the lane, 1-4 semitones move one lane, 5 or
    more move two, up for up and down for down, clamped to 0..4 (at the edge a further
    step the same way stays on the edge lane). Held steps keep their lane; rests are -1.
    The lane at step t depends on steps <= t only.

    Worked example (one step per note): C4 D4 E4 E4 G4 C4 = pitches 60 62 64 64 67 60 ->
    lanes 2 3 4 4 4 2 (up 2: +1; up 2: +1; repeat: same; up 3 at the top edge: stays 4;
    down 7: -2).

    Parameters
    ----------
    melody : Melody

    Returns
    -------
    lane : np.ndarray [shape=(T,), dtype=int8]
        0..4, -1 at rests.
    onset : np.ndarray [shape=(T,), dtype=bool]
        True where a note starts (never at a rest).
    """
    lane = np.empty(len(melody), dtype=np.int8)
    onset = np.empty(len(melody), dtype=np.bool_)
    _k.button_lanes(melody.pitch, melody.onset, _RECENTER_BEATS * melody.steps_per_beat, lane, onset)
    return lane, onset
