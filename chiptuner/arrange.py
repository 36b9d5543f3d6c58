"""``arrange``: a MIDI file in, the four-voice chip arrangement of its melody out.

Any MIDI file works: the melody is chosen and simplified exactly as for training
(``melody_input``), then the model plays it step by step through the same
``Arranger`` loop the live engine uses, and the result is written per the output contract
(``chip_midi``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from chiptuner.chip_midi import write_arrangement
from chiptuner.errors import MidiFileError
from chiptuner.melody import MaxOnsets, melody_from_notes, melody_notes, simplify, to_buttons
from chiptuner.midi_io import read_midi
from chiptuner.model.arranger import Arranger, ArrangerModel, InputMode, load_model, tokens_to_arrangement
from chiptuner.pipeline import MAX_STEPS, step_in_bar
from chiptuner.scales import Scale
from chiptuner.timebase import STEPS_PER_BEAT, check_swing
from chiptuner.types import Arrangement, Score

__all__ = ["arrange_score", "arrange_file", "ArrangeResult", "melody_input"]

logger = logging.getLogger(__name__)


def melody_input(score: Score, *, max_onsets: MaxOnsets = "beat") -> dict[str, np.ndarray]:
    """The model's input for a score, made as ``pipeline.song_arrays`` makes it for training.

    Returns
    -------
    dict of str to np.ndarray
        ``melody_pitch``, ``melody_onset``, ``lane``, ``lane_onset``, ``step_in_bar``, each
        [shape=(T,)], T running to the song's last release.

    Raises
    ------
    MidiFileError
        No pitched note to make a melody of, or a song over ``pipeline.MAX_STEPS`` steps.
    """
    lead = melody_notes(score)
    if len(lead) == 0:
        raise MidiFileError("no melody: the file has no pitched notes outside the drum channel")
    tpb = score.ticks_per_beat
    # The grid runs to the song's end, as in training (an outro after the melody is kept).
    n_steps = max((2 * score.end_tick * STEPS_PER_BEAT + tpb) // (2 * tpb), 1)
    if n_steps > MAX_STEPS:
        raise MidiFileError(
            f"the melody lasts {n_steps:,} steps, over the {MAX_STEPS:,}-step cap; cut the file shorter"
        )
    full = melody_from_notes(lead, tpb, n_steps, steps_per_beat=STEPS_PER_BEAT)
    simple = simplify(full, max_onsets=max_onsets)
    lane, lane_onset = to_buttons(simple)
    return {
        "melody_pitch": simple.pitch,
        "melody_onset": simple.onset,
        "lane": lane,
        "lane_onset": lane_onset,
        "step_in_bar": step_in_bar(score.time_signatures, tpb, n_steps, steps_per_beat=STEPS_PER_BEAT),
    }


@dataclass(frozen=True)
class ArrangeResult:
    """What ``arrange_file`` made.

    Attributes
    ----------
    arrangement : Arrangement
    melody_pitch : np.ndarray [shape=(T,), dtype=int16]
        The simplified melody the model was given (-1 rest).
    melody_onset : np.ndarray [shape=(T,), dtype=bool]
    n_steps : int
    """

    arrangement: Arrangement
    melody_pitch: np.ndarray
    melody_onset: np.ndarray
    n_steps: int


def arrange_score(
    score: Score,
    *,
    model: ArrangerModel | None = None,
    mode: InputMode = "keys",
    seed: int = 0,
    temperature: float = 1.0,
    max_onsets: MaxOnsets = "beat",
    style: str | None = None,
    energy: str = "mid",
    voices: str | Iterable[str] | None = None,
    scale: str | Scale | None = None,
) -> ArrangeResult:
    """Arrange the melody of a score for the four chip voices.

    Parameters
    ----------
    score : Score
    model : ArrangerModel, optional
        The shipped default when None.
    mode : {"keys", "buttons"}
        Give the model the melody's pitches, or only its five-lane contour (the model
        then chooses the lead's pitches).
    seed : int
    temperature : float
    max_onsets : {"beat", "half_beat"}
        How far the melody is simplified before the model hears it.
    style, energy, voices
        The band's settings, as for ``Arranger``: one of ``model.styles`` (None: the
        model's default), ``"low"``/``"mid"``/``"high"``, and the accompaniment voices that
        play (``"pulse2,triangle,noise"``, a subset, ``"none"``; None: all). A bad one
        raises ``ParameterError`` naming the choices.
    scale : str or Scale, optional
        Lock every note the model picks to a scale (``"C:major"``; ``Arranger``).

    Returns
    -------
    ArrangeResult
    """
    model = model if model is not None else load_model()
    arranger = Arranger(
        model, mode=mode, temperature=temperature, seed=seed, style=style, energy=energy, voices=voices, scale=scale
    )  # settings checked before the melody is made
    arrays = melody_input(score, max_onsets=max_onsets)
    if mode == "buttons":
        tokens = arranger.run(arrays["lane"], arrays["lane_onset"], arrays["step_in_bar"])
    else:
        tokens = arranger.run(arrays["melody_pitch"], arrays["melody_onset"], arrays["step_in_bar"])
    arrangement = tokens_to_arrangement(tokens)
    return ArrangeResult(arrangement, arrays["melody_pitch"], arrays["melody_onset"], len(tokens))


def arrange_file(
    source: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    model: ArrangerModel | None = None,
    mode: InputMode = "keys",
    seed: int = 0,
    temperature: float = 1.0,
    max_onsets: MaxOnsets = "beat",
    gm_drums: bool = False,
    style: str | None = None,
    energy: str = "mid",
    voices: str | Iterable[str] | None = None,
    scale: str | Scale | None = None,
    swing: float = 0.0,
) -> ArrangeResult:
    """Read a MIDI file, arrange its melody, and write the four voices to ``out_path``.

    The output keeps the input's ticks per beat, tempo map and time signatures; ``style``,
    ``energy``, ``voices`` and ``scale`` are as for ``arrange_score`` (a voice left out is
    written as an empty track); ``swing`` (0-0.5 of a 16th) delays every off-beat 16th of
    the written file (``chip_midi.write_arrangement``).

    Raises
    ------
    MidiFileError
        The input is unreadable or holds no melody.
    """
    swing = check_swing(swing)
    score = read_midi(source)
    result = arrange_score(
        score, model=model, mode=mode, seed=seed, temperature=temperature, max_onsets=max_onsets, style=style,
        energy=energy, voices=voices, scale=scale,
    )  # fmt: skip
    write_arrangement(
        result.arrangement,
        out_path,
        ticks_per_beat=score.ticks_per_beat,
        tempo=score.tempo,
        time_signatures=score.time_signatures,
        gm_drums=gm_drums,
        swing=swing,
    )
    onsets = result.arrangement.onset.sum(axis=0)
    logger.info(
        "%d steps arranged; onsets per voice %s",
        result.n_steps,
        dict(zip(("pulse1", "pulse2", "triangle", "noise"), onsets.tolist(), strict=True)),
    )
    return result
