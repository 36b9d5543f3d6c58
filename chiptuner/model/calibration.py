"""Sampling calibration: the biases fitted on validation songs so that free-running arrangements sound like real ones.

A model trained with teacher forcing drifts when it plays from its own samples. The
biases here (``Arranger``'s ``rest_bias``, ``clash_bias`` and ``key_bias``) are fitted by
arranging validation songs through the numba step and comparing their statistics with
the songs' own four voices. Scores (NLL) never change. Only numpy and the numba step:
``chiptuner calibrate`` needs no torch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np

from chiptuner.errors import ParameterError
from chiptuner.metrics import pool, song_statistics
from chiptuner.model.arranger import Arranger, ArrangerModel, tokens_to_arrangement

__all__ = [
    "PITCHED_REST_BIASES",
    "NOISE_REST_BIASES",
    "STEERING_BIASES",
    "MAX_SONGS",
    "song_starts",
    "pool_free_run",
    "pool_real",
    "calibrate_rest_bias",
    "calibrate_steering",
    "calibrate",
]

logger = logging.getLogger(__name__)

#: Validation songs a calibration arranges at most (taken evenly spread over the list).
MAX_SONGS = 96


def song_starts(songs: Sequence[dict], max_steps: int) -> list[dict]:
    """Each song cut to its first ``max_steps`` steps: arrays copied (never views of a map), the rest kept."""
    return [
        {key: np.array(value[:max_steps]) if np.ndim(value) else value for key, value in song.items()} for song in songs
    ]


def pool_free_run(model: ArrangerModel, songs: list[dict], rest_bias=None, clash_bias=None, key_bias=None) -> dict:
    """Arrange songs free-running (numba step, keys mode, seed = song index) and pool their statistics.

    Each song plays in its ``"style"`` (the model's default where it has none). A bias left
    at None is the model's own (its metadata).
    """
    stats = []
    for i, song in enumerate(songs):
        melody, onset = song["melody_pitch"], song["melody_onset"]
        arranger = Arranger(
            model, seed=i, rest_bias=rest_bias, clash_bias=clash_bias, key_bias=key_bias,
            style=song.get("style"),
        )  # fmt: skip
        tokens = arranger.run(melody, onset, song["step_in_bar"])
        arranged = tokens_to_arrangement(tokens)
        stats.append(song_statistics(melody, onset, arranged.pitch, arranged.onset))
    return pool(stats)


def pool_real(songs: list[dict]) -> dict:
    """The pooled statistics of the songs' own four voices."""
    return pool(
        [song_statistics(s["melody_pitch"], s["melody_onset"], s["voice_pitch"], s["voice_onset"]) for s in songs]
    )


#: Rest biases tried by ``calibrate_rest_bias``: pulse2 and triangle share one, noise has its own.
PITCHED_REST_BIASES = (-0.5, 0.0, 0.5, 1.0, 1.5, 2.0)
NOISE_REST_BIASES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def calibrate_rest_bias(model: ArrangerModel, songs: Sequence[dict], *, max_steps: int = 512) -> dict:
    """Fit the rest biases that make free-running accompaniment as dense as the real one.

    A model trained with teacher forcing and then fed its own output drifts: a voice that
    has rested a while is likelier to keep resting than the data says (songs without
    drums and the ones with drums look alike until the drums start). The bias is a
    constant subtracted from a voice's rest logit when sampling (``model.arranger.Arranger``), never
    when scoring, so NLLs are unchanged. The grid point with the smallest
    ``sum |log(model / real onsets per bar)|`` over pulse2, triangle and noise plus
    ``20 * |model - real accompaniment silence|`` wins, on the given (validation) songs.

    Returns
    -------
    dict
        ``rest_bias`` (4 floats, pulse1 always 0), and the fit's figures before and after.
    """
    cut = song_starts(songs, max_steps)
    real = pool_real(cut)

    def loss_of(bias: tuple[float, ...]) -> tuple[float, dict]:
        pooled = pool_free_run(model, cut, bias)
        density = sum(abs(math.log(max(pooled["density"][v], 1e-3) / max(real["density"][v], 1e-3))) for v in (1, 2, 3))
        return density + 20.0 * abs(pooled["silence"] - real["silence"]), pooled

    before_loss, before = loss_of((0.0, 0.0, 0.0, 0.0))
    best = (before_loss, (0.0, 0.0, 0.0, 0.0), before)
    for pitched in PITCHED_REST_BIASES:
        for noise in NOISE_REST_BIASES:
            bias = (0.0, pitched, pitched, noise)
            loss, pooled = loss_of(bias)
            if loss < best[0]:
                best = (loss, bias, pooled)
    loss, bias, after = best
    logger.info(
        "rest bias %s: accompaniment silence %.3f -> %.3f (real %.3f), onsets/bar pulse2 %.2f -> %.2f, "
        "triangle %.2f -> %.2f, noise %.2f -> %.2f (real %.2f, %.2f, %.2f)",
        bias, before["silence"], after["silence"], real["silence"], before["density"][1], after["density"][1],
        before["density"][2], after["density"][2], before["density"][3], after["density"][3],
        real["density"][1], real["density"][2], real["density"][3],
    )  # fmt: skip
    return {
        "rest_bias": list(bias),
        "before": {"silence": before["silence"], "density": before["density"][1:], "loss": before_loss},
        "after": {"silence": after["silence"], "density": after["density"][1:], "loss": loss},
        "real": {"silence": real["silence"], "density": real["density"][1:]},
        "songs": len(cut),
    }


#: Clash and key biases tried by ``calibrate_steering``.
STEERING_BIASES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def calibrate_steering(model: ArrangerModel, songs: Sequence[dict], *, max_steps: int = 1024) -> dict:
    """Fit the least steering that makes free-running accompaniment as consonant as the real one.

    Sampled freely, the model's pulse2 and triangle clash with the lead and leave the key
    more often than real arrangements do: each step's small chance of a wrong note adds
    up, where teacher forcing never shows the model its own mistakes. ``clash_bias`` and
    ``key_bias`` (``model.arranger.Arranger``) steer new notes away from both without changing how
    often a voice rests. Pairs are tried from the weakest (smallest sum) up; the first
    whose harmony and in-key ratios on the given (validation) songs reach the real songs'
    wins, else the strongest pair. Scores (NLL) are unchanged.

    Returns
    -------
    dict
        ``clash_bias``, ``key_bias``, and the fit's figures before and after.
    """
    cut = song_starts(songs, max_steps)
    real = pool_real(cut)
    pairs = sorted(((c, k) for c in STEERING_BIASES for k in STEERING_BIASES), key=lambda pair: (sum(pair), pair))
    before = pool_free_run(model, cut, clash_bias=0.0, key_bias=0.0)
    chosen, after = pairs[-1], None
    for clash, key in pairs:
        pooled = before if clash == key == 0.0 else pool_free_run(model, cut, clash_bias=clash, key_bias=key)
        if pooled["harmony"] >= real["harmony"] and pooled["in_key"] >= real["in_key"]:
            chosen, after = (clash, key), pooled
            break
    if after is None:
        after = pool_free_run(model, cut, clash_bias=chosen[0], key_bias=chosen[1])
    logger.info(
        "steering clash %.2f key %.2f: harmony %.3f -> %.3f, in-key %.3f -> %.3f (real %.3f, %.3f)",
        chosen[0], chosen[1], before["harmony"], after["harmony"], before["in_key"], after["in_key"],
        real["harmony"], real["in_key"],
    )  # fmt: skip
    keep = ("harmony", "in_key", "silence", "density")
    return {
        "clash_bias": chosen[0],
        "key_bias": chosen[1],
        "before": {name: before[name] for name in keep},
        "after": {name: after[name] for name in keep},
        "real": {name: real[name] for name in keep},
        "songs": len(cut),
    }


def calibrate(model: ArrangerModel, val_songs: Sequence[dict]) -> ArrangerModel:
    """The model with its sampling biases fitted on validation songs: rest biases, then steering.

    ``val_songs`` are song dicts: per-step arrays (``corpus.dataset.songs_with_ids``), and
    optionally the ``"style"`` each is arranged in. At most ``MAX_SONGS`` of them, evenly
    spread, are arranged.
    """
    sample = list(val_songs)[:: max(len(val_songs) // MAX_SONGS, 1)]
    if not sample:
        raise ParameterError("calibration needs validation songs; the split gave none")
    rest = calibrate_rest_bias(model, sample)
    metadata = {**model.metadata, "rest_bias": rest["rest_bias"], "rest_bias_fit": rest}
    model = dataclasses.replace(model, metadata=metadata)
    steering = calibrate_steering(model, sample)
    metadata = {
        **metadata, "clash_bias": steering["clash_bias"], "key_bias": steering["key_bias"], "steering_fit": steering,
    }  # fmt: skip
    return dataclasses.replace(model, metadata=metadata)
