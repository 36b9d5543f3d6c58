"""``evaluate``: arrange held-out melodies causally and hold the result against real arrangements.

Every melody is arranged exactly as live (``model.Arranger``, one step at a time, never a
future input step). The statistics of TARGETS.md "Musical quality" are computed on those
arrangements, on the real four-voice reductions of the same songs, and on the
arrangements of three baselines (voice-wise unigram, first-order Markov, rule-based); the
held-out NLL of the real arrangements is computed under the model and each baseline.

Sources are MIDI files or folders (each file converted with ``pipeline.song_arrays``; a
file without accompaniment has no real arrangement and is skipped), or ``chiptuner
convert`` output folders, of which only the model's held-out test songs are used (the
split is remade from the model's metadata).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chiptuner.baselines import MarkovBaseline, RuleBasedArranger, UnigramBaseline
from chiptuner.convert import REPORT_NAME, find_midi_files
from chiptuner.dataset import load_shards, split_by_song
from chiptuner.errors import MidiFileError, ParameterError
from chiptuner.metrics import compare, pool, song_statistics
from chiptuner.model import (
    Arranger,
    ArrangerModel,
    InputMode,
    teacher_forced_log_prob,
    tokens_to_arrangement,
    voices_to_tokens,
)
from chiptuner.pipeline import convert_file
from chiptuner.plot import piano_roll_image, stack_images, write_png
from chiptuner.types import Arrangement

__all__ = ["load_songs", "evaluate", "Evaluation", "write_report", "BASELINES"]

logger = logging.getLogger(__name__)

#: The baselines, by the prefix of their arrays in the model file.
BASELINES = {"unigram": UnigramBaseline, "markov": MarkovBaseline, "rules": RuleBasedArranger}
_BASELINE_NAMES = {"unigram": "voice-wise unigram", "markov": "first-order Markov", "rules": "rule-based arranger"}


def load_songs(
    sources: Sequence[str | os.PathLike], model: ArrangerModel, *, max_songs: int | None = None
) -> list[dict]:
    """Collect the songs to evaluate, each a dict of ``song_arrays`` plus ``song_id``.

    A conversion folder contributes its held-out test songs (split as the model's
    training split it); a MIDI file or folder contributes every file that converts.
    With ``max_songs``, songs are taken evenly spread over the list.
    """
    songs: list[dict] = []
    for source in sources:
        path = Path(source)
        if path.is_dir() and (path / REPORT_NAME).is_file():
            corpus = load_shards(path)
            config = model.metadata.get("config", {})
            if "test_size" not in config:
                raise ParameterError(f"{path}: the model's metadata has no training split; pass MIDI files instead")
            _, test = split_by_song(corpus.song_ids, test_size=float(config["test_size"]), seed=int(config["seed"]))
            logger.info("%s: %d held-out test songs of %d", path, len(test), len(corpus))
            songs += [{**corpus.song(int(i)), "song_id": str(corpus.song_ids[i])} for i in test]
        elif path.exists():
            files = find_midi_files([path])
            if not files:
                raise ParameterError(f"{path}: no MIDI file found (.mid .midi .kar .rmi)")
            for file in files:
                try:
                    songs.append({**convert_file(file.path), "song_id": file.song_id})
                except MidiFileError as error:
                    logger.info("%s: skipped (%s)", file.song_id, error)
        else:
            raise ParameterError(f"{path}: no such file or folder")
    if not songs:
        raise ParameterError(
            "no song to evaluate: every source was rejected (a melody alone has no real arrangement to compare with)"
        )
    if max_songs is not None and len(songs) > max_songs:
        pick = np.linspace(0, len(songs) - 1, max_songs).round().astype(int)
        songs = [songs[i] for i in pick]
    return songs


@dataclass
class Evaluation:
    """Pooled statistics and NLLs of the model, the real arrangements and the baselines."""

    mode: str
    n_songs: int
    n_steps: int
    stats: dict[str, dict] = field(default_factory=dict)
    nll: dict[str, float] = field(default_factory=dict)
    rows: list = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every quality target met and the model's NLL below every baseline's."""
        nll_ok = all(self.nll["model"] < value for name, value in self.nll.items() if name != "model")
        return nll_ok and all(row.passed is not False for row in self.rows)

    def as_dict(self) -> dict:
        """Plain data for ``--json``."""
        return {
            "mode": self.mode,
            "songs": self.n_songs,
            "steps": self.n_steps,
            "passed": self.passed,
            "nll": self.nll,
            "statistics": self.stats,
            "targets": [dataclasses.asdict(row) for row in self.rows],
        }


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


def evaluate(
    model: ArrangerModel,
    songs: Sequence[dict],
    *,
    mode: InputMode = "keys",
    seed: int = 0,
    temperature: float = 1.0,
    n_examples: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Arrange every song causally with the model and the baselines; score all against the real voices.

    Parameters
    ----------
    model : ArrangerModel
        Its file's baseline arrays (fitted on its training split) are used; without them
        the baselines are fitted on ``songs`` themselves (their NLL is then optimistic).
    songs : sequence of dict
        From ``load_songs``.
    mode : {"keys", "buttons"}
    seed : int
        Song i is arranged with seed ``seed + i``.
    temperature : float
    n_examples : int
        Songs kept (first 8 bars of model and real) for the report's pictures.
    """
    baselines = {}
    for prefix, kind in BASELINES.items():
        arrays = {key[len(prefix) + 1 :]: value for key, value in model.extras.items() if key.startswith(prefix + "_")}
        if arrays:
            baselines[prefix] = kind.from_arrays(arrays)
        else:
            logger.warning("the model file has no %s baseline: fitting it on the evaluated songs", prefix)
            baseline = kind()
            baseline.fit(songs)
            baselines[prefix] = baseline
    per_source: dict[str, list] = {name: [] for name in ("model", "real", *baselines)}
    log_prob_sum = dict.fromkeys(("model", *baselines), 0.0)
    n_steps = 0
    examples = []
    pick = set(np.linspace(0, len(songs) - 1, min(n_examples, len(songs))).round().astype(int).tolist())
    for i, song in enumerate(songs):
        melody, onset = _inputs(song, mode)
        position = song["step_in_bar"]
        real_tokens = voices_to_tokens(song["voice_pitch"], song["voice_onset"])
        keys_pitch, keys_onset = song["melody_pitch"], song["melody_onset"]
        tokens = Arranger(model, mode=mode, temperature=temperature, seed=seed + i).run(melody, onset, position)
        generated = tokens_to_arrangement(tokens)
        per_source["model"].append(_statistics(keys_pitch, keys_onset, generated, mode))
        per_source["real"].append(song_statistics(keys_pitch, keys_onset, song["voice_pitch"], song["voice_onset"]))
        log_prob_sum["model"] += float(
            teacher_forced_log_prob(model, melody, onset, position, real_tokens, mode=mode).sum()
        )
        for name, baseline in baselines.items():
            base_tokens = baseline.generate(melody, onset, position, mode=mode, seed=seed + i)
            arranged = tokens_to_arrangement(base_tokens)
            per_source[name].append(_statistics(keys_pitch, keys_onset, arranged, mode))
            log_prob_sum[name] += float(baseline.log_prob(melody, onset, position, real_tokens, mode=mode).sum())
        n_steps += len(melody)
        if i in pick:
            end = min(len(melody), 128)
            examples.append(
                {
                    "song_id": song.get("song_id", f"song {i}"),
                    "melody": keys_pitch[:end],
                    "model": (generated.pitch[:end], generated.onset[:end]),
                    "real": (song["voice_pitch"][:end], song["voice_onset"][:end]),
                }
            )
        if progress is not None:
            progress(i + 1, len(songs))
    stats = {name: pool(values) for name, values in per_source.items()}
    nll = {name: -total / (4 * max(n_steps, 1)) for name, total in log_prob_sum.items()}
    rows = compare(stats["model"], stats["real"])
    if mode == "buttons":
        # Five lanes carry no pitch: the model picks the lead's pitches, so agreement with
        # the original melody's pitches is reported, not required.
        rows = [
            dataclasses.replace(row, passed=None, target="reported (buttons: the model picks the pitches)")
            if row.metric.startswith("lead")
            else row
            for row in rows
        ]
    return Evaluation(mode, len(songs), n_steps, stats, nll, rows, examples)


def _fmt(value) -> str:
    if isinstance(value, (list, tuple)):
        return " / ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def report_markdown(evaluations: Sequence[Evaluation], *, images: Sequence[str] = ()) -> str:
    """The report's Markdown: per input mode, the target table, the baselines and the NLLs."""
    lines = ["# Arranger evaluation", ""]
    for ev in evaluations:
        lines += [f"## Input: {ev.mode} ({ev.n_songs} songs, {ev.n_steps:,} steps)", ""]
        names = [name for name in ev.stats if name not in ("model", "real")]
        baseline_rows = {name: compare(ev.stats[name], ev.stats["real"]) for name in names}
        header = (
            "| metric | voice | model | real | "
            + " | ".join(_BASELINE_NAMES.get(n, n) for n in names)
            + " | target | met |"
        )
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        for j, row in enumerate(ev.rows):
            base = " | ".join(_fmt(baseline_rows[name][j].value) for name in names)
            met = "-" if row.passed is None else ("yes" if row.passed else "NO")
            lines.append(
                f"| {row.metric} | {row.voice or 'all'} | {_fmt(row.value)} | {_fmt(row.real)} | {base} "
                f"| {row.target} | {met} |"
            )
        nll_model = ev.nll["model"]
        baseline_nll = " | ".join(f"{ev.nll[name]:.3f}" for name in names)
        beaten = all(nll_model < ev.nll[name] for name in names)
        lines.append(
            f"| held-out NLL (nats per step and voice) | all | {nll_model:.3f} | - | {baseline_nll} "
            f"| below every baseline | {'yes' if beaten else 'NO'} |"
        )
        lines.append("")
    for image in images:
        lines += [f"![{Path(image).stem}]({Path(image).name})", ""]
    if images:
        lines += [
            "Each picture: the model's arrangement (top) over the real one (bottom), first 8 bars; grey = the input "
            "melody, red pulse1, orange pulse2, blue triangle, green noise (drum rows at the bottom); bright = a "
            "note's first step.",
            "",
        ]
    return "\n".join(lines)


def write_report(evaluations: Sequence[Evaluation], folder: str | os.PathLike) -> Path:
    """Write ``report.md``, ``report.json`` and a piano-roll PNG per example into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for ev in evaluations[:1]:
        for n, example in enumerate(ev.examples):
            top = piano_roll_image(example["melody"], *example["model"])
            bottom = piano_roll_image(example["melody"], *example["real"])
            name = folder / f"example_{n + 1}.png"
            write_png(name, stack_images(top, bottom))
            images.append(str(name))
    report = folder / "report.md"
    report.write_text(report_markdown(evaluations, images=images))
    (folder / "report.json").write_text(json.dumps([ev.as_dict() for ev in evaluations], indent=1))
    return report
