"""Write a conversion folder holding every song of another one in several keys, each as its own song.

For measuring how training scales with the corpus: ``chiptuner train`` on the output sees
``len(SHIFTS)`` times the songs and steps of the input (4x with the default shifts), in the
shard format ``chiptuner convert`` writes (its own shard writer), so nothing but the size
differs from a real conversion. A copy is named ``ID#t+3`` after its source song ``ID``,
which ``song_group`` puts in the source song's group, so the copies of a song stay on one
side of the split.

    python tools/transposed_corpus.py data/converted /tmp/data4x
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chiptuner.corpus.convert import REPORT_FORMAT, _write_shard, read_report
from chiptuner.corpus.dataset import load_shards, transpose

#: The default transpositions, in semitones: four keys spread over the octave.
SHIFTS = (-5, -2, 3, 6)


def transposed_corpus(src: Path, out: Path, shifts: tuple[int, ...] = SHIFTS, songs_per_shard: int = 256) -> int:
    """Write ``out`` (a new folder) from the conversion ``src``; return the number of songs written."""
    out.mkdir(parents=True)
    corpus = load_shards(src)
    shards: list[str] = []
    files: list[dict] = []
    pending: list[tuple[str, dict]] = []

    def flush() -> None:
        name = f"shard-{len(shards):05d}.npz"
        _write_shard(out / name, pending)
        files.extend({"id": song_id, "status": "ok", "steps": len(a["melody_pitch"]), "shard": name}
                     for song_id, a in pending)  # fmt: skip
        shards.append(name)
        pending.clear()

    for i in range(len(corpus)):
        song = corpus.song(i)
        for shift in shifts:
            pending.append((f"{corpus.song_ids[i]}#t{shift:+d}", {**song, **transpose(song, shift)}))
            if len(pending) == songs_per_shard:
                flush()
    if pending:
        flush()
    report = {
        "format": REPORT_FORMAT,
        "options": read_report(src).get("options", {}),
        "summary": {"ok": len(files), "transposed_from": str(src), "shifts": list(shifts)},
        "shards": shards,
        "pending": [],
        "files": files,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="a `chiptuner convert` folder")
    parser.add_argument("out", type=Path, help="the folder to create")
    parser.add_argument("--shifts", type=int, nargs="+", default=list(SHIFTS), help="semitones, each -5..6")
    args = parser.parse_args()
    n = transposed_corpus(args.src, args.out, tuple(args.shifts))
    print(f"wrote {n} songs ({n // len(args.shifts)} x {len(args.shifts)} keys) into {args.out}")


if __name__ == "__main__":
    main()
