"""Melody-extraction accuracy: note-level F1 against ground-truth melodies.

    python tools/measure_melody.py [--corpora DIR] [--songs 301-909] [--every 3] [--other 0] [--network K]

POP909, compared with the MELODY track, in three settings, always without track names,
channels or programs: (a) MELODY+PIANO merged into one track, (b) all three merged,
(c) the three tracks kept apart (``chiptuner.train.melody_corpus``). Nottingham: the full
file (merged) against its ``melody/`` twin. Bach chorales: merged against the soprano
(channel 0). A match is the same pitch with onsets within one 16th (one-to-one). The
held-out POP909 songs are 301-909 divisible by 3 (``--every 3``): the note networks were
fitted on 001-300 (``python -m chiptuner.train.melody_notes``), the line networks on every
other song (``python -m chiptuner.train.melody_line``).
``--network K`` scores with the K-th of the shipped line networks alone instead of their mean
(numbered narrowest first).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np

import chiptuner
from chiptuner import melody as mel
from chiptuner.errors import ParameterError
from chiptuner.train.melody_corpus import (
    SETTINGS,
    merge_tracks,
    note_f1,
    pop909_songs,
    setting_f1,
    setting_scores,
    strip_names,
)

CORPORA = Path(__file__).resolve().parents[1].parent / "shared" / "corpora"


def pop909_f1(corpora: Path, first: int, last: int, every: int = 1, picker=mel.melody_notes) -> dict[str, float]:
    """Mean F1 per setting, skyline (``sky_*``) and ours; our mean precision and recall (``p_*``, ``r_*``).

    Songs ``first``-``last`` whose number is divisible by ``every``.
    """
    rows = []
    for i, score in pop909_songs(corpora, first, last):
        if i % every:
            continue
        row = []
        for setting in SETTINGS:
            row.append(setting_f1(score, setting, mel.skyline_notes))
            row.extend(setting_scores(score, setting, picker))
        rows.append(row)
    mean = np.mean(rows, axis=0)
    out = {"songs": len(rows)}
    for k, setting in enumerate(SETTINGS):
        out["sky_" + setting], out[setting], out["p_" + setting], out["r_" + setting] = mean[4 * k : 4 * k + 4]
    return out


def pair_f1(files, truth, picker=mel.melody_notes) -> dict[str, float]:
    """Mean F1 of skyline and ours, merged and with tracks apart (names stripped), and how many
    files ours reads under 0.9 merged."""
    rows = []
    for path in files:
        score = chiptuner.read_midi(path)
        ref, tol = truth(path, score), score.ticks_per_beat // 4
        merged = merge_tracks(score)
        rows.append(
            (
                note_f1(ref, mel.skyline_notes(merged), tol)[0],
                note_f1(ref, picker(merged), tol)[0],
                note_f1(ref, picker(strip_names(score)), tol)[0],
            )
        )
    mean = np.mean(rows, axis=0)
    merged_under = int(sum(r[1] < 0.9 for r in rows))
    return {"songs": len(rows), "skyline": mean[0], "merged": mean[1], "tracks": mean[2], "merged_under": merged_under}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=CORPORA)
    parser.add_argument("--songs", default="301-909", help="POP909 song range, e.g. 301-909")
    parser.add_argument("--every", type=int, default=3, help="only the songs of the range divisible by this")
    parser.add_argument(
        "--other", type=int, default=0, help="Nottingham tunes and Bach chorales to check (0: all, a few seconds)"
    )
    parser.add_argument(
        "--network", type=int, default=None, help="score with only this shipped line network (0-based), not the mean"
    )
    args = parser.parse_args(argv)
    networks = mel.shipped_networks()
    if args.network is not None:
        try:
            networks = networks.with_line_network(args.network)
        except ParameterError as error:
            parser.error(f"--network {args.network}: {error}")
    picker = partial(mel.melody_notes, networks=networks)
    first, last = (int(x) for x in args.songs.split("-"))
    pop = pop909_f1(args.corpora, first, last, args.every, picker)
    nott = sorted((args.corpora / "nottingham" / "MIDI").glob("*.mid"))
    bach = sorted((args.corpora / "bach_chorales").glob("*.mid"))
    if args.other:
        nott = nott[:: max(1, len(nott) // args.other)][: args.other]
        bach = bach[: args.other]
    nott_f1 = pair_f1(nott, lambda p, s: chiptuner.read_midi(p.parent / "melody" / p.name).notes, picker)
    bach_f1 = pair_f1(bach, lambda p, s: s.notes.take(s.notes.channel == 0), picker)
    print("| corpus / setting (names, channels, programs removed) | songs | skyline F1 | ours F1 | ours P / R |")
    print("|---|---|---|---|---|")
    label = {
        "melody_piano": "(a) MELODY+PIANO merged",
        "all": "(b) MELODY+BRIDGE+PIANO merged",
        "tracks": "(c) 3 tracks apart, no names",
    }
    every = f" (every {args.every})" if args.every > 1 else ""
    for setting in SETTINGS:
        print(
            f"| POP909 {first:03d}-{last:03d}{every} {label[setting]} | {pop['songs']} "
            f"| {pop['sky_' + setting]:.3f} | {pop[setting]:.3f} "
            f"| {pop['p_' + setting]:.3f} / {pop['r_' + setting]:.3f} |"
        )
    for name, f1 in (("Nottingham (vs melody/)", nott_f1), ("Bach chorales (soprano)", bach_f1)):
        print(f"| {name} merged | {f1['songs']} | {f1['skyline']:.3f} | {f1['merged']:.3f} | - |")
        print(f"| {name} tracks apart, no names | {f1['songs']} | - | {f1['tracks']:.3f} | - |")
    for name, f1 in (("Nottingham", nott_f1), ("Bach chorales", bach_f1)):
        print(f"{name} merged: {f1['merged_under']} of {f1['songs']} under F1 0.9")
    return 0


if __name__ == "__main__":
    sys.exit(main())
