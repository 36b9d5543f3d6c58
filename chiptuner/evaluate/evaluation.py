"""``evaluate``: arrange held-out melodies causally and hold every arrangement against real ones.

Every melody is arranged exactly as live (``model.arranger.Arranger``, one step at a time, never a
future input step), with several seeds, in the style of the song's corpus (bare melodies in
the default, ``chip``), by the model as shipped and sampling as trained (steering and
calibrated rest biases off: ``AS_TRAINED``). Nothing is only averaged:

- **per arrangement** (song x seed): whether an enabled voice never plays, each voice's
  longest silence after bar 2 (4 bars or more is a hole) and the bar of its first onset
  (``metrics.voice_presence``); the shares are reported and the worst songs listed;
- **per corpus** (the test songs' source folder: the NES/Game Boy "chip" corpus first),
  the docs/targets.md statistics of the model, the model as trained, the real four-voice
  reductions and three baselines (voice-wise unigram, first-order Markov, rule-based), the
  held-out NLL, and a classifier two-sample test (``c2st``) of each against the real songs;
- **bare melodies** (files with nothing but a tune, the live use case): the rows that need
  no real arrangement, against the chip corpus's real figures;
- in buttons mode, the contour-violation rate of the lead (``metrics.contour_violations``);
- in keys mode, whether the player's settings do what they say (``settings_checks``:
  energy, style, voices left out).

Sources are MIDI files or folders (each file converted with ``pipeline.song_arrays``; a
file without accompaniment has no real arrangement and is skipped), or ``chiptuner
convert`` output folders, of which only the model's held-out test songs are used.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chiptuner.arrange import melody_input
from chiptuner.corpus.convert import REPORT_NAME, find_midi_files
from chiptuner.corpus.dataset import corpus_label, load_shards, split_by_song, style_of
from chiptuner.errors import MidiFileError, ParameterError
from chiptuner.evaluate.c2st import real_halves_auc, two_sample_auc, window_features
from chiptuner.evaluate.plot import write_piano_rolls
from chiptuner.metrics import (
    HOLE_BARS,
    START_BARS,
    STEPS_PER_BAR,
    Presence,
    Row,
    compare,
    contour_violations,
    pool,
    song_statistics,
    voice_presence,
)
from chiptuner.midi_io import read_midi
from chiptuner.model.arranger import (
    ACCOMPANIMENT,
    ENERGY_LEVELS,
    Arranger,
    ArrangerModel,
    InputMode,
    teacher_forced_log_prob,
    tokens_to_arrangement,
    voices_to_tokens,
)
from chiptuner.model.baselines import MarkovBaseline, RuleBasedArranger, UnigramBaseline
from chiptuner.pipeline import convert_file
from chiptuner.types import Arrangement

__all__ = [
    "load_songs",
    "load_bare_melodies",
    "corpus_label",
    "evaluate",
    "Evaluation",
    "CorpusResult",
    "report_markdown",
    "write_report",
    "BASELINES",
    "BARE",
]

logger = logging.getLogger(__name__)

#: The baselines, by the prefix of their arrays in the model file.
BASELINES = {"unigram": UnigramBaseline, "markov": MarkovBaseline, "rules": RuleBasedArranger}
_SOURCE_NAMES = {
    "model": "model",
    "as_trained": "model, sampling as trained",
    "real": "real",
    "unigram": "voice-wise unigram",
    "markov": "first-order Markov",
    "rules": "rule-based arranger",
}
CHIP = "chip"
#: The label of the bare-melody table.
BARE = "bare melodies"
_VOICES = ("pulse1", "pulse2", "triangle", "noise")
#: The voices that must play (pulse1 follows the input by design).
_ACCOMPANIMENT = slice(1, 4)
#: The AUC at or under which generated windows count as indistinguishable (docs/targets.md).
C2ST_TARGET = 0.75
#: Lane changes whose lead must follow, at most this share violated (docs/targets.md).
CONTOUR_TARGET = 0.05
#: Share of arrangements with a hole, at most (docs/targets.md).
HOLES_TARGET = 0.05
#: Share of arrangements whose drums start by bar 2, at least (docs/targets.md).
DRUMS_TARGET = 0.95


def _corpus_order(labels: Sequence[str]) -> list[str]:
    unique = sorted(set(labels))
    return ([CHIP] if CHIP in unique else []) + [label for label in unique if label != CHIP]


def _held_out_ids(model: ArrangerModel, song_ids: np.ndarray, path: Path) -> np.ndarray:
    """Indices of the model's held-out test songs among ``song_ids``."""
    stored = model.metadata.get("test_songs")
    if stored is not None:
        # The model file lists its test songs: a conversion that gained or lost songs
        # since training would remake a different split, with training songs in it.
        wanted = {str(s) for s in stored}
        test = np.array([i for i, s in enumerate(song_ids) if str(s) in wanted], dtype=np.int64)
        missing = len(wanted) - len(test)
        if missing:
            logger.info("%s: %d of the model's %d test songs are not in this folder", path, missing, len(wanted))
        return test
    config = model.metadata.get("config", {})
    if "test_size" not in config:
        raise ParameterError(f"{path}: the model's metadata has no training split; pass MIDI files instead")
    logger.warning(
        "%s: the model does not list its test songs; the split is remade from its seed, which is only the "
        "model's held-out set if this folder holds exactly the songs it was trained from",
        path,
    )
    _, test = split_by_song(song_ids, test_size=float(config["test_size"]), seed=int(config["seed"]))
    return test


def load_songs(
    sources: Sequence[str | os.PathLike], model: ArrangerModel, *, max_songs: int | None = None
) -> list[dict]:
    """Collect the songs to evaluate, each a dict of ``song_arrays`` plus ``song_id`` and ``corpus``.

    A conversion folder contributes its held-out test songs: those the model file lists
    (``metadata["test_songs"]``), or for a model that lists none the split remade from its
    seed. A MIDI file or folder contributes every file that converts. With
    ``max_songs``, songs are taken evenly spread over the list.
    """
    songs: list[dict] = []
    for source in sources:
        path = Path(source)
        if path.is_dir() and (path / REPORT_NAME).is_file():
            corpus = load_shards(path)
            test = _held_out_ids(model, corpus.song_ids, path)
            logger.info("%s: %d held-out test songs of %d", path, len(test), len(corpus))
            for i in test:
                song_id = str(corpus.song_ids[i])
                songs.append({**corpus.song(int(i)), "song_id": song_id, "corpus": corpus_label(song_id)})
        elif path.exists():
            files = find_midi_files([path])
            if not files:
                raise ParameterError(f"{path}: no MIDI file found (.mid .midi .kar .rmi)")
            for file in files:
                try:
                    arrays = convert_file(file.path)
                except MidiFileError as error:
                    logger.info("%s: skipped (%s)", file.song_id, error)
                    continue
                folder = path.name if path.is_dir() else path.parent.name
                label = corpus_label(f"{folder}/{file.song_id}") if folder else "files"
                songs.append({**arrays, "song_id": file.song_id, "corpus": label})
        else:
            raise ParameterError(f"{path}: no such file or folder")
    if not songs:
        raise ParameterError(
            "no song to evaluate: every source was rejected (a melody alone has no real arrangement to compare "
            "with; give bare melodies with --bare)"
        )
    return _spread(songs, max_songs)


def _spread(songs: list[dict], limit: int | None) -> list[dict]:
    if limit is not None and len(songs) > limit:
        pick = np.linspace(0, len(songs) - 1, limit).round().astype(int)
        return [songs[i] for i in pick]
    return songs


def load_bare_melodies(sources: Sequence[str | os.PathLike], *, max_songs: int | None = None) -> list[dict]:
    """Collect bare melodies (files of a tune alone) as the arranger's inputs, spread evenly.

    Each file's melody is chosen and simplified as ``chiptuner arrange`` does
    (``arrange.melody_input``); files that give no melody are skipped with a log line.
    """
    songs: list[dict] = []
    for source in sources:
        path = Path(source)
        if not path.exists():
            raise ParameterError(f"{path}: no such file or folder")
        files = find_midi_files([path])
        if not files:
            raise ParameterError(f"{path}: no MIDI file found (.mid .midi .kar .rmi)")
        for file in files:
            try:
                arrays = melody_input(read_midi(file.path))
            except MidiFileError as error:
                logger.info("%s: skipped (%s)", file.song_id, error)
                continue
            songs.append({**arrays, "song_id": file.song_id, "corpus": BARE})
    if not songs:
        raise ParameterError("no bare melody to evaluate: every file was rejected")
    return _spread(songs, max_songs)


def _inputs(song: dict, mode: InputMode) -> tuple[np.ndarray, np.ndarray]:
    if mode == "buttons":
        return song["lane"], song["lane_onset"]
    return song["melody_pitch"], song["melody_onset"]


def _statistics(melody_pitch: np.ndarray, melody_onset: np.ndarray, arrangement: Arrangement, mode: InputMode):
    """Statistics of a generated arrangement, harmony and key judged against the melody the listener hears.

    In keys mode that is the player's melody; in buttons mode the lanes carry no pitch and
    the arranger's own lead (pulse1) is the melody, except for lead agreement, which still
    compares with the original pitches (reported, not a target, in that mode).
    """
    if mode == "buttons":
        lead = arrangement.pitch[:, 0]
        stats = song_statistics(lead, arrangement.onset[:, 0], arrangement.pitch, arrangement.onset)
        original = song_statistics(melody_pitch, melody_onset, arrangement.pitch, arrangement.onset)
        return dataclasses.replace(stats, lead_onsets=original.lead_onsets, lead_agree=original.lead_agree)
    return song_statistics(melody_pitch, melody_onset, arrangement.pitch, arrangement.onset)


@dataclass
class _Arranged:
    """What one (song, source, seed) arrangement contributes."""

    stats: object
    presence: Presence
    contour: tuple[int, int]
    features: np.ndarray | None


@dataclass
class _SongResult:
    song_id: str
    corpus: str
    steps: int
    arranged: dict[str, list[_Arranged]]
    log_prob: dict[str, float]
    melody_contour: tuple[int, int] = (0, 0)
    #: Window features of the model's arrangement (first seed) with the real song's own settings.
    matched_features: np.ndarray | None = None


# The worker's model and baselines (set once per process by _init_worker).
_WORKER: dict = {}


def _init_worker(model: ArrangerModel, baselines: dict, settings: dict) -> None:
    _WORKER.update(model=model, baselines=baselines, **settings)


def _arranged(song: dict, mode: InputMode, arrangement: Arrangement, *, features: bool) -> _Arranged:
    stats = _statistics(song["melody_pitch"], song["melody_onset"], arrangement, mode)
    contour = (0, 0)
    if mode == "buttons":
        contour = contour_violations(song["lane"], song["lane_onset"], arrangement.pitch[:, 0])
    window = window_features(arrangement.pitch, arrangement.onset, song["step_in_bar"]) if features else None
    return _Arranged(stats, voice_presence(arrangement.pitch, arrangement.onset), contour, window)


#: What "sampling as trained" turns off: the steering and the calibrated rest biases.
AS_TRAINED = {"clash_bias": 0.0, "key_bias": 0.0, "rest_bias": (0.0, 0.0, 0.0, 0.0)}


def song_style(model: ArrangerModel, song: dict) -> str | None:
    """The style a song is arranged in: a corpus song's own (as trained), the default for a bare melody."""
    return style_of(model, song["song_id"]) if "voice_pitch" in song else None


def _generate(source: str, song: dict, mode: InputMode, seed: int) -> np.ndarray:
    model: ArrangerModel = _WORKER["model"]
    melody, onset = _inputs(song, mode)
    position = song["step_in_bar"]
    if source in ("model", "as_trained"):
        sampling = {} if source == "model" else AS_TRAINED
        arranger = Arranger(
            model, mode=mode, temperature=_WORKER["temperature"], seed=seed, style=song_style(model, song), **sampling
        )
        return arranger.run(melody, onset, position)
    return _WORKER["baselines"][source].generate(melody, onset, position, mode=mode, seed=seed)


def _evaluate_song(song: dict) -> _SongResult:
    """Arrange one song with every source and seed; its statistics, presence, features and log-probabilities."""
    mode: InputMode = _WORKER["mode"]
    seeds: Sequence[int] = _WORKER["seeds"]
    sources = ("model", "as_trained", *_WORKER["baselines"])
    arranged: dict[str, list[_Arranged]] = {}
    for source in sources:
        arranged[source] = [
            _arranged(song, mode, tokens_to_arrangement(_generate(source, song, mode, seed)), features=(k == 0))
            for k, seed in enumerate(seeds)
        ]
    log_prob: dict[str, float] = {}
    if "voice_pitch" in song:
        real = Arrangement(song["voice_pitch"], song["voice_onset"])
        real_stats = song_statistics(song["melody_pitch"], song["melody_onset"], real.pitch, real.onset)
        arranged["real"] = [
            _Arranged(
                real_stats,
                voice_presence(real.pitch, real.onset),
                (0, 0),
                window_features(real.pitch, real.onset, song["step_in_bar"]),
            )
        ]
        melody, onset = _inputs(song, mode)
        position = song["step_in_bar"]
        real_tokens = voices_to_tokens(song["voice_pitch"], song["voice_onset"])
        model = _WORKER["model"]
        log_prob["model"] = float(
            teacher_forced_log_prob(
                model, melody, onset, position, real_tokens, mode=mode, style=song_style(model, song)
            ).sum()
        )
        for name, baseline in _WORKER["baselines"].items():
            log_prob[name] = float(baseline.log_prob(melody, onset, position, real_tokens, mode=mode).sum())
    # The lanes against the melody they were made from: what the lane rule itself breaks
    # (a note after a long rest goes back to the middle lane whichever way the tune moves).
    melody_contour = (0, 0)
    if mode == "buttons":
        melody_contour = contour_violations(song["lane"], song["lane_onset"], song["melody_pitch"])
    matched = None
    if "voice_pitch" in song:
        matched = _matched_features(song, mode, seeds[0])
    return _SongResult(
        song["song_id"], song["corpus"], len(song["melody_pitch"]), arranged, log_prob, melody_contour, matched
    )


def song_settings(model: ArrangerModel, song: dict) -> dict:
    """The settings a player would give to hear a song's real band: its voices and its energy.

    The voices that sound anywhere in the real arrangement, and the energy bucket of its
    accompaniment onsets per bar (the model's ``energy_edges``, as in training).
    """
    pitch, onset = song["voice_pitch"], song["voice_onset"]
    voices = [name for v, name in enumerate(_VOICES) if v > 0 and (pitch[:, v] >= 0).any()]
    per_bar = (onset[:, _ACCOMPANIMENT] & (pitch[:, _ACCOMPANIMENT] >= 0)).sum() / max(len(pitch) / STEPS_PER_BAR, 1)
    edges = model.metadata.get("energy_edges")
    energy = ENERGY_LEVELS[int(np.searchsorted(edges, per_bar, side="right"))] if edges else "mid"
    return {"voices": voices or "none", "energy": energy}


def _matched_features(song: dict, mode: InputMode, seed: int) -> np.ndarray:
    model: ArrangerModel = _WORKER["model"]
    melody, onset = _inputs(song, mode)
    arranger = Arranger(
        model, mode=mode, temperature=_WORKER["temperature"], seed=seed, style=song_style(model, song),
        **song_settings(model, song),
    )  # fmt: skip
    arranged = tokens_to_arrangement(arranger.run(melody, onset, song["step_in_bar"]))
    return window_features(arranged.pitch, arranged.onset, song["step_in_bar"])


@dataclass
class CorpusResult:
    """The evaluation of one corpus (or of the bare melodies) in one input mode.

    Attributes
    ----------
    name : str
        ``chip``, ``pop``, ``chorale``, ... or ``BARE``.
    n_songs, n_steps : int
    seeds : list of int
    stats : dict
        Per source (``model``, ``as_trained``, ``real``, ``unigram``, ``markov``, ``rules``),
        the statistics of ``metrics.pool`` over every arrangement (song x seed).
    presence : dict
        Per source, the shares of arrangements: ``never_plays`` (an accompaniment voice
        never plays), ``holes`` (one is silent ``HOLE_BARS`` bars or more after bar
        ``START_BARS``), ``drums_by_bar_2`` (the first drum onset in the first two bars),
        each also per voice (``never_plays_voice``, ``holes_voice``), and the arrangements.
    c2st : dict
        Per generated source, the two-sample AUC against the real songs; ``real_halves``
        the instrument's calibration. Empty for bare melodies (nothing real to compare).
    contour : dict
        Buttons mode: per source, the share of lane changes the lead does not follow;
        ``melody``: the same for the melody the lanes were made from (the lane rule's own
        floor: after a long rest a note goes back to the middle lane).
    nll : dict
        Held-out NLL (nats per step and voice) of the real arrangements under the model and
        each baseline; empty for bare melodies.
    rows : list of Row
        The targets: the model (steering on, as shipped) against its reference.
    reference : str
        What "real" means here: the corpus's own real arrangements, or for bare melodies
        the chip corpus's real figures.
    worst : list of dict
        The songs whose arrangements fail most often, worst first.
    source_rows : dict
        Per generated source, the same rows as ``rows`` with its own figures (the table's
        other columns; their ``passed`` is not a target).
    """

    name: str
    n_songs: int
    n_steps: int
    seeds: list
    stats: dict = field(default_factory=dict)
    presence: dict = field(default_factory=dict)
    c2st: dict = field(default_factory=dict)
    contour: dict = field(default_factory=dict)
    nll: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    reference: str = "real"
    worst: list = field(default_factory=list)
    source_rows: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every target of this table met."""
        return all(row.passed is not False for row in self.rows)

    def as_dict(self) -> dict:
        """Plain data for the JSON report."""
        return {
            "corpus": self.name,
            "songs": self.n_songs,
            "steps": self.n_steps,
            "seeds": list(self.seeds),
            "reference": self.reference,
            "passed": self.passed,
            "statistics": self.stats,
            "presence": self.presence,
            "c2st_auc": self.c2st,
            "contour_violations": self.contour,
            "nll": self.nll,
            "targets": [dataclasses.asdict(row) for row in self.rows],
            "worst": self.worst,
        }


@dataclass
class Evaluation:
    """One input mode: a table per corpus (chip first), the bare melodies, and every arrangement."""

    mode: str
    corpora: list[CorpusResult] = field(default_factory=list)
    arrangements: list[dict] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    @property
    def n_songs(self) -> int:
        """Songs with a real arrangement, over every corpus."""
        return sum(c.n_songs for c in self.corpora if c.name != BARE)

    @property
    def passed(self) -> bool:
        """Every table's targets met, and the settings' checks (keys mode)."""
        checks = [entry["passed"] for entry in self.settings.values() if entry.get("passed") is not None]
        return all(c.passed for c in self.corpora) and all(checks)

    def corpus(self, name: str) -> CorpusResult:
        """The table of one corpus by its label."""
        for result in self.corpora:
            if result.name == name:
                return result
        raise KeyError(name)

    def as_dict(self) -> dict:
        """Plain data for ``--json``."""
        return {
            "mode": self.mode,
            "passed": self.passed,
            "corpora": [c.as_dict() for c in self.corpora],
            "settings": self.settings,
            "arrangements": self.arrangements,
        }


def _presence_shares(items: Sequence[_Arranged]) -> dict:
    never = np.array([a.presence.never_plays for a in items])
    holes = np.array([a.presence.holes for a in items])
    first_drum = np.array([a.presence.first_onset_bar[3] for a in items])
    return {
        "arrangements": len(items),
        "never_plays": float(never[:, _ACCOMPANIMENT].any(axis=1).mean()),
        "holes": float(holes[:, _ACCOMPANIMENT].any(axis=1).mean()),
        "drums_by_bar_2": float(((first_drum >= 0) & (first_drum < START_BARS)).mean()),
        "never_plays_voice": dict(zip(_VOICES, never.mean(axis=0).tolist(), strict=True)),
        "holes_voice": dict(zip(_VOICES, holes.mean(axis=0).tolist(), strict=True)),
    }


def _severity(presence: Presence) -> tuple[int, float]:
    return int(presence.never_plays[_ACCOMPANIMENT].sum()), float(presence.longest_silence[_ACCOMPANIMENT].max())


def _record(result: _SongResult, seed: int, source: str, item: _Arranged) -> dict:
    p = item.presence
    return {
        "song_id": result.song_id,
        "corpus": result.corpus,
        "source": source,
        "seed": seed,
        "steps": p.steps,
        "onsets": dict(zip(_VOICES, p.onsets.tolist(), strict=True)),
        "never_plays": [v for v, flag in zip(_VOICES, p.never_plays, strict=True) if flag],
        "longest_silence_bars": dict(zip(_VOICES, p.longest_silence.tolist(), strict=True)),
        "first_onset_bar": dict(zip(_VOICES, p.first_onset_bar.tolist(), strict=True)),
        "hole": bool(p.holes[_ACCOMPANIMENT].any()),
    }


def _worst_songs(results: Sequence[_SongResult], seeds: Sequence[int], limit: int = 10) -> list[dict]:
    """The songs whose model arrangements (steering on) fail most: seeds failing, voices missing, longest hole."""
    ranked = []
    for result in results:
        items = result.arranged["model"]
        failing = [
            s
            for s, a in zip(seeds, items, strict=True)
            if a.presence.never_plays[_ACCOMPANIMENT].any() or a.presence.holes[_ACCOMPANIMENT].any()
        ]
        if not failing:
            continue
        missing = sum(_severity(a.presence)[0] for a in items)
        longest = max(_severity(a.presence)[1] for a in items)
        ranked.append(
            {
                "song_id": result.song_id,
                "failing_seeds": failing,
                "never_plays": sorted(
                    {v for a in items for v, f in zip(_VOICES, a.presence.never_plays, strict=True) if f}
                ),
                "longest_silence_bars": longest,
                "first_drum_bar": [int(a.presence.first_onset_bar[3]) for a in items],
                "drum_onsets": [int(a.presence.onsets[3]) for a in items],
                "_key": (len(failing), missing, longest),
            }
        )
    ranked.sort(key=lambda entry: entry["_key"], reverse=True)
    for entry in ranked:
        del entry["_key"]
    return ranked[:limit]


def _presence_rows(model: dict, reference: dict | None, targeted: bool) -> list[Row]:
    real_never = reference["never_plays"] if reference else math.nan
    real_holes = reference["holes"] if reference else math.nan
    real_drums = reference["drums_by_bar_2"] if reference else math.nan
    never, holes = model["never_plays"], model["holes"]
    return [
        Row(
            "voices that stay: never plays",
            "",
            never,
            real_never,
            "0" if targeted else "reported",
            (never == 0.0) if targeted else None,
        ),
        Row(
            f"voices that stay: silent {HOLE_BARS}+ bars",
            "",
            holes,
            real_holes,
            f"at most {HOLES_TARGET:.0%}" if targeted else "reported",
            (holes <= HOLES_TARGET) if targeted else None,
        ),
        Row(
            "first drum onset by bar 2",
            "",
            model["drums_by_bar_2"],
            real_drums,
            f"at least {DRUMS_TARGET:.0%}" if targeted else "reported",
            (model["drums_by_bar_2"] >= DRUMS_TARGET) if targeted else None,
        ),
    ]


def _bare_rows(model: dict, reference: dict) -> list[Row]:
    """``compare``'s rows less accompaniment silence, the one that needs the same melodies' real arrangement."""
    return [row for row in compare(model, reference) if row.metric != "accompaniment silence"]


def _rows(out: CorpusResult, source: str, reference: dict, mode: InputMode, *, targeted: bool) -> list[Row]:
    """Every row of one source's column, with the targets judged for it (they count for the model only)."""
    bare = out.name == BARE
    stats = out.stats[source]
    rows = _bare_rows(stats, reference) if bare else compare(stats, reference)
    rows += _presence_rows(out.presence[source], None if bare else out.presence["real"], targeted)
    if mode == "buttons":
        rows = [
            dataclasses.replace(row, passed=None, target="reported (buttons: the model picks the pitches)")
            if row.metric.startswith("lead")
            else row
            for row in rows
        ]
        value = out.contour[source]
        ok = bool(math.isfinite(value) and value <= CONTOUR_TARGET)
        floor = out.contour["melody"]
        rows.append(Row("contour violations", "", value, floor, f"at most {CONTOUR_TARGET:.0%}", ok))
    if out.c2st:
        auc = out.c2st[source]
        below = all(auc < value for s, value in out.c2st.items() if s in BASELINES and s != source)
        if out.name == CHIP:
            target, passed = f"at most {C2ST_TARGET} and below every baseline", bool(auc <= C2ST_TARGET and below)
        else:
            target, passed = "below every baseline", bool(below)
        rows.append(Row("indistinguishable (C2ST AUC)", "", auc, out.c2st["real_halves"], target, passed))
        if source == "model" and "matched" in out.c2st:
            rows.append(
                Row(
                    "indistinguishable, each song's own voices and energy (C2ST AUC)",
                    "",
                    out.c2st["matched"],
                    out.c2st["real_halves"],
                    "reported",
                    None,
                )
            )
    if out.nll and source in out.nll:
        nll = out.nll[source]
        beaten = all(nll < value for s, value in out.nll.items() if s != source)
        rows.append(Row("held-out NLL", "", nll, math.nan, "below every other model", beaten))
    return rows


def _summarise(
    name: str,
    results: Sequence[_SongResult],
    mode: InputMode,
    seeds: Sequence[int],
    *,
    chip_real: dict | None,
    c2st_seed: int,
) -> CorpusResult:
    bare = name == BARE
    sources = [s for s in results[0].arranged if s != "real"]
    steps = sum(r.steps for r in results)
    out = CorpusResult(name, len(results), steps, list(seeds))
    for source in [*sources, *([] if bare else ["real"])]:
        items = [a for r in results for a in r.arranged[source]]
        out.stats[source] = pool([a.stats for a in items])
        out.presence[source] = _presence_shares(items)
        if mode == "buttons" and source != "real":
            changes = sum(a.contour[0] for a in items)
            out.contour[source] = sum(a.contour[1] for a in items) / changes if changes else math.nan
    if mode == "buttons":
        changes = sum(r.melody_contour[0] for r in results)
        out.contour["melody"] = sum(r.melody_contour[1] for r in results) / changes if changes else math.nan
    if not bare:
        total = 4 * max(steps, 1)
        out.nll = {s: -sum(r.log_prob[s] for r in results) / total for s in results[0].log_prob}
        real_windows = [r.arranged["real"][0].features for r in results]
        try:
            out.c2st["real_halves"] = real_halves_auc(real_windows, seed=c2st_seed)
            ids = [r.song_id for r in results]
            for source in sources:
                generated = [r.arranged[source][0].features for r in results]
                out.c2st[source] = two_sample_auc(real_windows, generated, groups=(ids, ids), seed=c2st_seed)
            matched = [r.matched_features for r in results]
            out.c2st["matched"] = two_sample_auc(real_windows, matched, groups=(ids, ids), seed=c2st_seed)
        except ParameterError as error:  # too few songs or windows for 5 folds
            logger.info("%s: no two-sample test (%s)", name, error)
            out.c2st = {}
    out.reference = "the chip corpus's real songs" if bare else "this corpus's real songs"
    reference = chip_real if bare else out.stats["real"]
    targeted = bare or name == CHIP
    for source in sources:
        out.source_rows[source] = _rows(out, source, reference, mode, targeted=targeted)
    out.rows = out.source_rows["model"]
    out.worst = _worst_songs(results, seeds)
    return out


def _baselines(model: ArrangerModel, songs: Sequence[dict]) -> dict:
    baselines = {}
    for prefix, kind in BASELINES.items():
        arrays = {key[len(prefix) + 1 :]: value for key, value in model.extras.items() if key.startswith(prefix + "_")}
        if arrays:
            baselines[prefix] = kind.from_arrays(arrays)
        else:
            logger.warning("the model file has no %s baseline: fitting it on the evaluated songs", prefix)
            baseline = kind()
            baseline.fit([s for s in songs if "voice_pitch" in s])
            baselines[prefix] = baseline
    return baselines


def evaluate(
    model: ArrangerModel,
    songs: Sequence[dict],
    *,
    mode: InputMode = "keys",
    seeds: Sequence[int] = (0, 1, 2),
    temperature: float = 1.0,
    bare: Sequence[dict] = (),
    workers: int = 1,
    n_examples: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Arrange every song with every seed, as shipped and as trained, and with the baselines; score all.

    Parameters
    ----------
    model : ArrangerModel
        Its file's baseline arrays (fitted on its training split) are used; without them
        the baselines are fitted on ``songs`` themselves (their NLL is then optimistic).
    songs : sequence of dict
        From ``load_songs`` (with a real arrangement).
    mode : {"keys", "buttons"}
    seeds : sequence of int
        Every song is arranged once per seed by the model and each baseline; the C2ST uses
        the first seed's arrangement (one per song, so that songs weigh equally).
    temperature : float
    bare : sequence of dict
        From ``load_bare_melodies``: reported in a table of their own against the chip
        corpus's real figures (or all real songs', where there is no chip corpus).
    workers : int
        Processes that arrange songs in parallel (1: in this process).
    n_examples : int
        The worst arrangements drawn next to their real ones in the report.
    progress : callable, optional
        Called with (songs done, songs in all).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ParameterError("seeds is empty; give at least one seed")
    everything = [*songs, *bare]
    if not songs:
        raise ParameterError("no song with a real arrangement to evaluate")
    baselines = _baselines(model, songs)
    settings = {"mode": mode, "seeds": seeds, "temperature": temperature}
    results: list[_SongResult] = []
    if workers <= 1:
        _init_worker(model, baselines, settings)
        for song in everything:
            results.append(_evaluate_song(song))
            if progress is not None:
                progress(len(results), len(everything))
    else:
        with concurrent.futures.ProcessPoolExecutor(
            workers, initializer=_init_worker, initargs=(model, baselines, settings)
        ) as pool_:
            for result in pool_.map(_evaluate_song, everything, chunksize=4):
                results.append(result)
                if progress is not None:
                    progress(len(results), len(everything))
    real_results = results[: len(songs)]
    bare_results = results[len(songs) :]
    by_corpus: dict[str, list[_SongResult]] = {}
    for result in real_results:
        by_corpus.setdefault(result.corpus, []).append(result)
    evaluation = Evaluation(mode)
    for name in _corpus_order(list(by_corpus)):
        evaluation.corpora.append(_summarise(name, by_corpus[name], mode, seeds, chip_real=None, c2st_seed=seeds[0]))
    if bare_results:
        reference = by_corpus.get(CHIP, real_results)
        chip_real = pool([r.arranged["real"][0].stats for r in reference])
        evaluation.corpora.append(_summarise(BARE, bare_results, mode, seeds, chip_real=chip_real, c2st_seed=0))
    for result in results:
        for source, items in result.arranged.items():
            if source == "real":
                continue
            evaluation.arrangements += [_record(result, seed, source, a) for seed, a in zip(seeds, items, strict=True)]
    evaluation.examples = _examples(model, [*songs, *bare], results, mode, seeds, temperature, n_examples)
    if mode == "keys":
        evaluation.settings = settings_checks(model, songs, bare, seeds=seeds, temperature=temperature)
    return evaluation


def _accompaniment_per_bar(arrangement: Arrangement) -> float:
    onsets = (arrangement.onset[:, _ACCOMPANIMENT] & (arrangement.pitch[:, _ACCOMPANIMENT] >= 0)).sum()
    return float(onsets) / max(len(arrangement.pitch) / STEPS_PER_BAR, 1.0)


def settings_checks(
    model: ArrangerModel,
    songs: Sequence[dict],
    bare: Sequence[dict],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    temperature: float = 1.0,
) -> dict:
    """Whether the player's settings do what they say (keys mode, steering as shipped).

    - ``energy``: mean accompaniment onsets per bar of the bare melodies (every seed) at
      each energy; passes when they rise from low to mid to high. Without bare melodies,
      the melodies of up to 40 chip songs (or of any songs given) stand in.
    - ``style``: for each style the model has beside ``chip`` whose corpus is among
      ``songs`` (the chorales, pop), the C2ST AUC against that corpus's real songs of its
      melodies arranged in that style and in ``chip``; passes when its own style is the
      harder to tell from the real songs.
    - ``voices``: each accompaniment voice turned off alone, on the bare melodies (first
      seed): the share of arrangements where it sounds (must be 0) and where one of the
      two left on never plays (must be 0).
    """
    out: dict = {}
    melodies = list(bare) or ([s for s in songs if corpus_label(s["song_id"]) == CHIP] or list(songs))[:40]
    if melodies:
        per_level = {}
        for level in ENERGY_LEVELS:
            values = []
            for song in melodies:
                for seed in seeds:
                    arranger = Arranger(model, temperature=temperature, seed=seed, energy=level)
                    tokens = arranger.run(song["melody_pitch"], song["melody_onset"], song["step_in_bar"])
                    values.append(_accompaniment_per_bar(tokens_to_arrangement(tokens)))
            per_level[level] = float(np.mean(values))
        rising = all(per_level[a] < per_level[b] for a, b in zip(ENERGY_LEVELS, ENERGY_LEVELS[1:], strict=False))
        out["energy"] = {"onsets_per_bar": per_level, "songs": len(melodies), "passed": bool(rising)}
        sounding, dropped = {}, {}
        for off in ACCOMPANIMENT:
            kept = [name for name in ACCOMPANIMENT if name != off]
            heard, lost = 0, 0
            for song in melodies:
                arranger = Arranger(model, temperature=temperature, seed=seeds[0], voices=kept)
                arranged = tokens_to_arrangement(
                    arranger.run(song["melody_pitch"], song["melody_onset"], song["step_in_bar"])
                )
                presence = voice_presence(arranged.pitch, arranged.onset)
                index = {name: v for v, name in enumerate(_VOICES)}
                heard += bool(presence.onsets[index[off]])
                lost += bool(any(presence.never_plays[index[name]] for name in kept))
            sounding[off], dropped[off] = heard / len(melodies), lost / len(melodies)
        ok = all(v == 0 for v in sounding.values()) and all(v == 0 for v in dropped.values())
        out["voices"] = {"off_voice_sounds": sounding, "kept_voice_never_plays": dropped, "passed": bool(ok)}
    for style in model.styles:
        corpus = [s for s in songs if style_of(model, s["song_id"]) == style]
        if style == CHIP or len(corpus) < 10:
            continue
        real = [window_features(s["voice_pitch"], s["voice_onset"], s["step_in_bar"]) for s in corpus]
        ids = [s["song_id"] for s in corpus]
        auc = {}
        for played_as in (style, CHIP):
            generated = []
            for song in corpus:
                arranger = Arranger(model, temperature=temperature, seed=seeds[0], style=played_as)
                arranged = tokens_to_arrangement(
                    arranger.run(song["melody_pitch"], song["melody_onset"], song["step_in_bar"])
                )
                generated.append(window_features(arranged.pitch, arranged.onset, song["step_in_bar"]))
            try:
                auc[played_as] = two_sample_auc(real, generated, groups=(ids, ids), seed=seeds[0])
            except ParameterError as error:
                logger.info("style %s: no two-sample test (%s)", style, error)
        if len(auc) == 2:
            out[f"style {style}"] = {
                "c2st_own_style": auc[style], "c2st_as_chip": auc[CHIP], "songs": len(corpus),
                "passed": bool(auc[style] < auc[CHIP]),
            }  # fmt: skip
    return out


def _examples(model, songs, results, mode, seeds, temperature, limit) -> list[dict]:
    """The worst model arrangements (steering on), arranged again for their pictures next to the real ones."""
    ranked = sorted(
        ((_severity(a.presence), i, k) for i, r in enumerate(results) for k, a in enumerate(r.arranged["model"])),
        reverse=True,
    )
    examples, seen = [], set()
    for _, i, k in ranked:
        if len(examples) >= limit:
            break
        if i in seen:
            continue
        seen.add(i)
        song, seed = songs[i], seeds[k]
        melody, onset = _inputs(song, mode)
        arranger = Arranger(model, mode=mode, temperature=temperature, seed=seed, style=song_style(model, song))
        tokens = arranger.run(melody, onset, song["step_in_bar"])
        generated = tokens_to_arrangement(tokens)
        end = min(len(melody), 32 * STEPS_PER_BAR)
        presence = results[i].arranged["model"][k].presence
        examples.append(
            {
                "song_id": song["song_id"],
                "corpus": song["corpus"],
                "seed": seed,
                "never_plays": [v for v, f in zip(_VOICES, presence.never_plays, strict=True) if f],
                "longest_silence_bars": float(presence.longest_silence[_ACCOMPANIMENT].max()),
                "melody": song["melody_pitch"][:end],
                "model": (generated.pitch[:end], generated.onset[:end]),
                "real": (song["voice_pitch"][:end], song["voice_onset"][:end]) if "voice_pitch" in song else None,
            }
        )
    return examples


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return " / ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _source_value(corpus: CorpusResult, source: str, row: Row) -> str:
    """The figure of ``row`` for another source of the same table (a baseline, the model as trained)."""
    for other in corpus.source_rows.get(source, ()):
        if other.metric == row.metric and other.voice == row.voice:
            return _fmt(other.value)
    return "-"


def _table(corpus: CorpusResult) -> list[str]:
    others = [s for s in ("as_trained", "unigram", "markov", "rules") if s in corpus.stats]
    real_name = "real" if corpus.name != BARE else "chip real"
    header = f"| metric | voice | model | {' | '.join(_SOURCE_NAMES[s] for s in others)} | {real_name} | target | met |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in corpus.rows:
        met = "-" if row.passed is None else ("yes" if row.passed else "**NO**")
        values = " | ".join(_source_value(corpus, s, row) for s in others)
        real = _fmt(row.real)
        if row.metric.startswith("indistinguishable"):
            real = f"{real} (real vs real)"
        elif row.metric == "contour violations":
            real = f"{real} (the input melody)"
        lines.append(f"| {row.metric} | {row.voice or 'all'} | {_fmt(row.value)} | {values} | {real} "
                     f"| {row.target} | {met} |")  # fmt: skip
    return lines


def _worst_lines(corpus: CorpusResult, limit: int = 5) -> list[str]:
    if not corpus.worst:
        return ["No arrangement of the model has a voice that never plays or a hole.", ""]
    lines = [
        "| song | failing seeds | never plays | longest silence (bars) | first drum bar per seed |",
        "|---|---|---|---|---|",
    ]
    for entry in corpus.worst[:limit]:
        lines.append(
            f"| {entry['song_id']} | {', '.join(map(str, entry['failing_seeds']))} "
            f"| {', '.join(entry['never_plays']) or '-'} | {entry['longest_silence_bars']:.1f} "
            f"| {', '.join('never' if b < 0 else str(b + 1) for b in entry['first_drum_bar'])} |"
        )
    return [*lines, ""]


def _settings_lines(settings: dict) -> list[str]:
    lines = ["| setting | figures | target | met |", "|---|---|---|---|"]
    for name, entry in settings.items():
        met = "yes" if entry["passed"] else "**NO**"
        if name == "energy":
            figures = ", ".join(f"{level} {value:.2f}" for level, value in entry["onsets_per_bar"].items())
            lines.append(f"| --energy ({entry['songs']} bare melodies) | accompaniment onsets per bar: {figures} "
                         f"| rise from low to high | {met} |")  # fmt: skip
        elif name == "voices":
            figures = "; ".join(
                f"{off} off: sounds in {entry['off_voice_sounds'][off]:.0%}, another never plays in "
                f"{entry['kept_voice_never_plays'][off]:.0%}"
                for off in entry["off_voice_sounds"]
            )
            lines.append(f"| --voices (one left out) | {figures} | 0% and 0% | {met} |")
        else:
            style = name.removeprefix("style ")
            lines.append(
                f"| --style {style} ({entry['songs']} {style} test songs) | C2ST against the real ones: as {style} "
                f"{entry['c2st_own_style']:.3f}, as chip {entry['c2st_as_chip']:.3f} | own style lower | {met} |"
            )
    return lines


def report_markdown(evaluations: Sequence[Evaluation], *, images: Sequence[str] = ()) -> str:
    """The report's Markdown: per input mode, one table per corpus (chip first), then the bare melodies."""
    lines = [
        "# Arranger evaluation",
        "",
        f"Each song is arranged once per seed by the model (as shipped, and sampling as trained: steering and "
        f"rest biases off), in its corpus's style (bare melodies: chip), and by each "
        f"baseline. 'voices that stay' counts arrangements (song x seed) where pulse2, the triangle or the "
        f"noise never plays, or is silent {HOLE_BARS} bars or more after bar {START_BARS}. The C2ST row is the "
        f"ROC AUC of a classifier telling 2-bar windows of each arrangement from the real ones (0.5: it cannot "
        f"tell); its 'real' figure is two halves of the real songs against each other.",
        "",
    ]
    for ev in evaluations:
        lines += [f"## Input: {ev.mode}", ""]
        for corpus in ev.corpora:
            seeds = len(corpus.seeds)
            title = "bare melodies, against the chip corpus's real figures" if corpus.name == BARE else corpus.name
            lines += [
                f"### {title}: {corpus.n_songs} songs x {seeds} seeds, {corpus.n_steps:,} steps",
                "",
                *_table(corpus),
                "",
                "Worst songs (model, steering on):",
                "",
                *_worst_lines(corpus),
            ]
    for ev in evaluations:
        if ev.settings:
            lines += [f"## Settings ({ev.mode} input)", "", *_settings_lines(ev.settings), ""]
    for image in images:
        lines += [f"![{Path(image).stem}]({Path(image).name})", ""]
    if images:
        lines += [
            "Each picture: one of the worst arrangements of the model (top) over the real one (bottom; none for a "
            "bare melody), first 32 bars; grey = the input melody, red pulse1, orange pulse2, blue triangle, green "
            "noise (drum rows at the bottom); bright = a note's first step.",
            "",
        ]
    return "\n".join(lines)


def write_report(evaluations: Sequence[Evaluation], folder: str | os.PathLike) -> Path:
    """Write ``report.md``, ``report.json`` and a piano-roll PNG of each worst arrangement into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for ev in evaluations[:1]:
        for n, example in enumerate(ev.examples):
            rolls = [(f"model, seed {example['seed']}", *example["model"])]
            if example["real"] is not None:
                rolls.append(("real", *example["real"]))
            name = folder / f"worst_{n + 1}.png"
            write_piano_rolls(name, example["melody"], rolls, title=example["song_id"])
            images.append(str(name))
    report = folder / "report.md"
    report.write_text(report_markdown(evaluations, images=images))
    (folder / "report.json").write_text(json.dumps([ev.as_dict() for ev in evaluations], indent=1))
    return report
