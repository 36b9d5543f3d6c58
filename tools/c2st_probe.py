"""What the classifier two-sample test sees: per voice group, and under other sampling biases.

    python tools/c2st_probe.py [--converted data/converted] [--steps 1024] [--model PATH]
                               [--rest-bias 0,0,0,0.5] [--temperature 1.0] [--as-trained] [--floor]

On the model's own validation songs of the chip corpus (``metadata["val_songs"]``, never its
test songs, so trying sampling settings here selects nothing on the test split), each song's
first ``--steps`` steps are arranged in keys mode (seed = song index) and set against the
songs' real reductions with the test of ``chiptuner.evaluate.c2st``. Printed: the AUC with
every feature, with each voice group's features alone and without them, and the features
whose means differ most (each feature's own AUC). ``--rest-bias``, ``--temperature`` and
``--as-trained`` (steering and rest biases off) change the sampling, for trying a setting
before changing the model file.

``--floor`` arranges nothing: it reads what the test says of a perfect band that always
plays every voice (what the defaults ask of the model). Real songs leave voices out (28.5%
of chip songs have no drums), so such a band is told from them even when each of its
windows is real: per split of the songs into halves (3 seeds), one half's windows against
the other half's windows where pulse2, the triangle and the noise sound in both bars, next
to the two halves in full.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from chiptuner.corpus.dataset import corpus_label, model_songs, open_conversion, songs_with_ids
from chiptuner.evaluate import c2st
from chiptuner.evaluate.evaluation import AS_TRAINED
from chiptuner.model.arranger import Arranger, load_model, tokens_to_arrangement
from chiptuner.model.calibration import song_starts

GROUPS = {
    "pulse1": lambda name: name.startswith("pulse1_"),
    "pulse2": lambda name: name.startswith("pulse2_") and "consonance" not in name,
    "triangle": lambda name: name.startswith("triangle_") and "consonance" not in name,
    "noise": lambda name: name.startswith("noise_"),
    "consonance": lambda name: "consonance" in name,
}


def columns_auc(real: list[np.ndarray], generated: list[np.ndarray], columns: list[int]) -> float:
    """The two-sample AUC on some feature columns only (the test's classifier and folds)."""
    ids = list(range(len(real)))
    names, c2st.FEATURE_NAMES = c2st.FEATURE_NAMES, tuple(c2st.FEATURE_NAMES[c] for c in columns)
    try:
        return c2st.two_sample_auc([f[:, columns] for f in real], [f[:, columns] for f in generated], groups=(ids, ids))
    finally:
        c2st.FEATURE_NAMES = names


def halves(songs: list[dict], real: list[np.ndarray]) -> None:
    """Print the floor of a band that always plays every voice (``--floor``), per split into halves."""
    every_voice = []
    for song, features in zip(songs, real, strict=True):
        used = len(features) * c2st.WINDOW_STEPS
        sounding = (np.asarray(song["voice_pitch"][:used]) >= 0).reshape(len(features), 2, -1, 4).any(axis=2)
        every_voice.append(sounding[:, :, 1:].all(axis=(1, 2)))
    share = np.concatenate(every_voice).mean()
    print(
        f"{len(songs)} validation chip songs; windows where pulse2, triangle and noise sound in both bars: {share:.1%}"
    )
    print("| split | half vs the other half's every-voice windows | half vs half |\n|---|---|---|")
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(songs))
        first, second = order[: len(order) // 2], [i for i in order[len(order) // 2 :] if every_voice[i].any()]
        floor = c2st.two_sample_auc(
            [real[i] for i in first], [real[i][every_voice[i]] for i in second], groups=(first, second), seed=seed
        )
        print(f"| seed {seed} | {floor:.3f} | {c2st.real_halves_auc(real, seed=seed):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--converted", type=Path, default=Path("data/converted"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=1024)
    parser.add_argument("--rest-bias", default=None, help="four numbers, e.g. 0,0,0,0.5 (default: the model's)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--as-trained", action="store_true", help="steering and rest biases off")
    parser.add_argument("--floor", action="store_true", help="the test's floor for a band that plays every voice")
    args = parser.parse_args()

    model = load_model(args.model)
    corpus = open_conversion(args.converted, args.model or "default.npz")
    val = model_songs(model, corpus.song_ids, "val", args.converted)
    chip = [i for i in val if corpus_label(str(corpus.song_ids[i])) == "chip"]
    songs = song_starts(songs_with_ids(corpus, chip), args.steps)
    sampling = {} if args.temperature == 1.0 else {"temperature": args.temperature}
    if args.as_trained:
        sampling.update(AS_TRAINED)
    elif args.rest_bias is not None:
        sampling["rest_bias"] = tuple(float(x) for x in args.rest_bias.split(","))
    if args.floor:
        halves(songs, [c2st.window_features(s["voice_pitch"], s["voice_onset"], s["step_in_bar"]) for s in songs])
        return
    real, generated = [], []
    for i, song in enumerate(songs):
        real.append(c2st.window_features(song["voice_pitch"], song["voice_onset"], song["step_in_bar"]))
        tokens = Arranger(model, seed=i, style="chip", **sampling).run(
            song["melody_pitch"], song["melody_onset"], song["step_in_bar"]
        )
        arranged = tokens_to_arrangement(tokens)
        generated.append(c2st.window_features(arranged.pitch, arranged.onset, song["step_in_bar"]))
    every = list(range(len(c2st.FEATURE_NAMES)))
    print(f"{len(songs)} validation chip songs, first {args.steps} steps; sampling: {sampling or 'as shipped'}")
    print(f"| features | AUC |\n|---|---|\n| all | {columns_auc(real, generated, every):.3f} |")
    for group, member in GROUPS.items():
        mine = [c for c, name in enumerate(c2st.FEATURE_NAMES) if member(name)]
        rest = [c for c in every if c not in mine]
        alone, without = columns_auc(real, generated, mine), columns_auc(real, generated, rest)
        print(f"| {group} alone / without | {alone:.3f} / {without:.3f} |")
    stacked_real, stacked_generated = np.concatenate(real), np.concatenate(generated)
    rows = []
    for c, name in enumerate(c2st.FEATURE_NAMES):
        r, g = stacked_real[:, c], stacked_generated[:, c]
        r, g = r[~np.isnan(r)], g[~np.isnan(g)]
        if len(r) and len(g):
            auc = roc_auc_score(np.r_[np.zeros(len(r)), np.ones(len(g))], np.r_[r, g])
            rows.append((abs(auc - 0.5), name, r.mean(), g.mean(), auc))
    print("\n| feature (per 2 bars) | real mean | model mean | its own AUC |\n|---|---|---|---|")
    for _, name, real_mean, model_mean, auc in sorted(rows, reverse=True)[:10]:
        print(f"| {name} | {real_mean:.3f} | {model_mean:.3f} | {auc:.3f} |")


if __name__ == "__main__":
    main()
