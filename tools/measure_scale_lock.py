"""Measure what the scale lock (``--scale``) costs on held-out chip songs, and print a Markdown table.

    python tools/measure_scale_lock.py [--converted ../main/data/converted] [--songs 200] [--seed 0]
                                       [--key-from melody|band]

The songs are a random sample of the shipped model's held-out test songs
(``metadata["test_songs"]``) from the chip corpus (``vgmusic_nes_gb/``), read from a
conversion (read-only). Each song is locked to the key of its own melody (Krumhansl-Kessler,
``keys.estimate_key``: major or natural minor), the scale a player would set; with
``--key-from band`` to the key of the melody and the real pulse2 and triangle together, the
best single key for the real arrangement (what is left forbidden is its chromatic notes). Per voice:

- forbidden: the share of the real notes (onsets) whose pitch the lock forbids, and of the
  real tokens (a note or the hold of one), which the locked model cannot play at all;
- NLL: the mean negative log-likelihood (nats per step) of the real tokens the lock
  allows, teacher forced, free and under the lock (renormalised over the allowed tokens,
  as the lock samples): the lock's cost on what it can still play is the difference;
- sampled: the notes the locked model plays when it arranges the song (seed 0), and how
  many are outside the scale (the lock's target: none).

Keys mode locks pulse2 and the triangle (the lead is the player's); buttons mode pulse1 too.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from chiptuner.corpus.dataset import load_shards, style_of
from chiptuner.keys import estimate_key
from chiptuner.model.arranger import (
    Arranger,
    default_model_path,
    load_model,
    teacher_forced_log_prob,
    tokens_to_arrangement,
    voices_to_tokens,
)
from chiptuner.scales import Scale
from chiptuner.types import VOICE_NAMES

DEFAULT_CONVERTED = Path(__file__).resolve().parents[1].parent / "main" / "data" / "converted"
CHIP_FOLDER = "vgmusic_nes_gb/"
LOCKED = {"keys": ("pulse2", "triangle"), "buttons": ("pulse1", "pulse2", "triangle")}


def _measure(model, song: dict, mode: str, scale: Scale) -> dict[str, np.ndarray]:
    """Per pitched voice: sums of notes, forbidden notes, tokens, forbidden tokens, NLL free, NLL locked,
    allowed tokens, sampled notes and sampled notes out of scale."""
    melody = song["lane"] if mode == "buttons" else song["melody_pitch"]
    onset = song["lane_onset"] if mode == "buttons" else song["melody_onset"]
    tokens = voices_to_tokens(song["voice_pitch"], song["voice_onset"])
    style = style_of(model, song["song_id"])
    common = {"mode": mode, "style": style}
    free = teacher_forced_log_prob(model, melody, onset, song["step_in_bar"], tokens, **common)
    locked = teacher_forced_log_prob(
        model, melody, onset, song["step_in_bar"], tokens, scale=scale, scale_voices=LOCKED[mode], **common
    )
    arranger = Arranger(model, mode=mode, style=style, scale=scale, seed=0)
    played = tokens_to_arrangement(arranger.run(melody, onset, song["step_in_bar"]))
    out = {}
    for name in LOCKED[mode]:
        v = VOICE_NAMES.index(name)
        pitch = np.asarray(song["voice_pitch"][:, v], dtype=np.int64)
        sounding = pitch >= 0
        notes = np.asarray(song["voice_onset"][:, v], dtype=bool) & sounding
        out_of_scale = np.array([not scale.allows(p) for p in pitch]) & sounding
        forbidden = np.isneginf(locked[:, v])
        allowed = ~forbidden
        out[name] = np.array([
            notes.sum(), (notes & out_of_scale).sum(), sounding.sum(), forbidden.sum(),
            -free[allowed, v].sum(), -locked[allowed, v].sum(), allowed.sum(),
            played.onset[:, v].sum(), sum(not scale.allows(p) for p in played.pitch[played.onset[:, v], v]),
        ], dtype=np.float64)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--converted", type=Path, default=DEFAULT_CONVERTED, help="a conversion (read-only)")
    parser.add_argument("--model", type=Path, default=default_model_path())
    parser.add_argument("--songs", type=int, default=200, help="how many held-out chip songs to sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key-from", choices=("melody", "band"), default="melody", help="what the key is read from")
    args = parser.parse_args()
    model = load_model(args.model)
    began = time.perf_counter()
    corpus = load_shards(args.converted)
    test = {str(song) for song in model.metadata.get("test_songs", []) if str(song).startswith(CHIP_FOLDER)}
    indices = [i for i, song in enumerate(corpus.song_ids) if str(song) in test]
    random.Random(args.seed).shuffle(indices)
    chosen = indices[: args.songs]
    totals = {mode: {} for mode in LOCKED}
    modes_seen = {"major": 0, "minor": 0}
    for i in chosen:
        song = {**corpus.song(i), "song_id": str(corpus.song_ids[i])}
        pitch, onset = song["melody_pitch"], song["melody_onset"]
        if args.key_from == "band":
            pitch = np.concatenate([pitch, song["voice_pitch"][:, 1], song["voice_pitch"][:, 2]])
            onset = np.concatenate([onset, song["voice_onset"][:, 1], song["voice_onset"][:, 2]])
        key = estimate_key(pitch, onset)
        modes_seen[key.mode] += 1
        scale = Scale(key.tonic, key.mode)
        for mode in LOCKED:
            for name, sums in _measure(model, song, mode, scale).items():
                totals[mode][name] = totals[mode].get(name, 0.0) + sums
    print(
        f"{len(chosen)} of the model's {len(test)} held-out chip songs in {args.converted} (of {len(indices)} "
        f"found; seed {args.seed}); each locked to the key of its {args.key_from} ({modes_seen['major']} major, "
        f"{modes_seen['minor']} minor); {time.perf_counter() - began:.0f} s\n"
    )
    print("| mode | voice | real notes forbidden | real tokens forbidden | NLL free (nats/step) | "
          "NLL locked, renormalised | lock's cost | sampled notes out of scale |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for mode, voices in totals.items():
        both = sum(voices[name] for name in LOCKED[mode] if name != "pulse1")
        rows = [*voices.items(), ("pulse2 + triangle", both)]
        for name, sums in rows:
            notes, bad_notes, tokens, bad_tokens, nll_free, nll_locked, allowed, sampled, sampled_out = sums
            print(
                f"| {mode} | {name} | {bad_notes / notes:.1%} ({int(bad_notes)} of {int(notes)}) | "
                f"{bad_tokens / tokens:.1%} | {nll_free / allowed:.4f} | {nll_locked / allowed:.4f} | "
                f"{(nll_locked - nll_free) / allowed:+.4f} | {int(sampled_out)} of {int(sampled)} |"
            )


if __name__ == "__main__":
    main()
