"""Corpus conversion: the pool survives real hangs and crashes, resumes, and survives SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from chiptuner.corpus.convert import (
    JOURNAL_NAME,
    REPORT_NAME,
    convert_corpus,
    find_midi_files,
    read_journal,
    read_report,
)
from chiptuner.errors import MidiFileError, OutputError, ParameterError
from chiptuner.pipeline import SONG_KEYS, STEP_KEYS

# ----------------------------------------------------------------------------- test-only converters
# Workers are forked, so these module-level functions run in real worker processes.


def fake_arrays(n_steps: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for key, dtype in STEP_KEYS.items():
        shape = (n_steps, 4) if key.startswith("voice") else (n_steps,)
        if dtype is np.bool_:
            out[key] = rng.random(shape) < 0.3
        else:
            out[key] = rng.integers(-1, 100, shape).astype(dtype)
    out["ticks_per_beat"] = np.array(480)
    out["steps_per_beat"] = np.array(4)
    out["n_notes"] = np.array(n_steps // 2)
    return out


def scripted_converter(path: str) -> dict[str, np.ndarray]:
    """Behaves as the file's first word says: ok N, reject, bug, hang, crash, hog."""
    words = Path(path).read_text().split()
    kind = words[0]
    pid_file = words[1] if len(words) > 1 else None
    if pid_file and kind in ("hang", "crash"):
        Path(pid_file).write_text(str(os.getpid()))
    if kind == "ok":
        return fake_arrays(int(words[1]), seed=int(words[1]))
    if kind == "reject":
        raise MidiFileError(f"{path}: refused on purpose")
    if kind == "bug":
        raise ZeroDivisionError("a bug in a stage")
    if kind == "hang":
        while True:  # a real hang: the worker must be killed from outside
            time.sleep(0.05)
    if kind == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hog":
        block = np.ones(2 * 1024**3, dtype=np.uint8)  # 2 GB, over a 300 MB cap
        return fake_arrays(int(block[0]) + 32, seed=0)
    raise AssertionError(kind)


def write_scripts(folder: Path, scripts: dict[str, str]) -> None:
    for name, text in scripts.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def entries_by_id(out: Path) -> dict[str, dict]:
    return {entry["id"]: entry for entry in read_report(out)["files"]}


def load_all_shards(out: Path) -> dict[str, dict[str, np.ndarray]]:
    songs: dict[str, dict[str, np.ndarray]] = {}
    for name in read_report(out)["shards"]:
        with np.load(out / name, allow_pickle=False) as shard:
            offsets = shard["offsets"]
            for i, song_id in enumerate(shard["song_id"].tolist()):
                assert song_id not in songs, f"{song_id} stored twice"
                song = {key: shard[key][offsets[i] : offsets[i + 1]] for key in STEP_KEYS}
                song.update({key: shard[key][i] for key in SONG_KEYS})
                songs[song_id] = song
    return songs


def pid_dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0): read its state
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state in ("Z", "X")


# ----------------------------------------------------------------------------- finding files


def test_find_midi_files_walks_folders_case_insensitively(tmp_path):
    write_scripts(
        tmp_path / "src",
        {"a.mid": "", "sub/B.MIDI": "", "sub/deep/c.Kar": "", "d.RMI": "", "notes.txt": "", "e.mid.bak": ""},
    )
    files = find_midi_files([tmp_path / "src"])
    assert [f.song_id for f in files] == ["a.mid", "d.RMI", "sub/B.MIDI", "sub/deep/c.Kar"]
    assert all(Path(f.path).is_absolute() for f in files)
    two = find_midi_files([tmp_path / "src" / "sub", tmp_path / "src" / "a.mid"])
    assert sorted(f.song_id for f in two) == ["a.mid", "sub/B.MIDI", "sub/deep/c.Kar"]


def test_find_midi_files_missing_source(tmp_path):
    with pytest.raises(ParameterError, match="no such file or folder"):
        find_midi_files([tmp_path / "nowhere"])


# ----------------------------------------------------------------------------- the pool


def test_real_hang_and_crash_are_failed_and_the_run_goes_on(tmp_path):
    src = tmp_path / "src"
    scripts = {f"ok{i:02d}.mid": f"ok {40 + i}" for i in range(12)}
    scripts.update(
        {
            "hang.mid": f"hang {tmp_path / 'hang.pid'}",
            "crash.mid": f"crash {tmp_path / 'crash.pid'}",
            "reject.mid": "reject",
            "bug.mid": "bug",
        }
    )
    write_scripts(src, scripts)
    out = tmp_path / "out"
    t0 = time.monotonic()
    summary = convert_corpus(
        [src], out, workers=2, timeout_sec=1.5, songs_per_shard=5, chunk_size=3, converter=scripted_converter
    )
    assert time.monotonic() - t0 < 30
    entries = entries_by_id(out)
    assert len(entries) == len(scripts)
    assert entries["hang.mid"]["status"] == "failed"
    assert entries["hang.mid"]["reason"] == "timeout after 1.5 s"
    assert entries["crash.mid"]["status"] == "failed"
    assert entries["crash.mid"]["reason"].startswith("worker died (memory cap?)")
    assert "SIGKILL" in entries["crash.mid"]["reason"]
    assert entries["reject.mid"]["status"] == "rejected"
    assert entries["reject.mid"]["reason"] == "refused on purpose"
    assert entries["bug.mid"]["status"] == "failed"
    assert entries["bug.mid"]["reason"] == "ZeroDivisionError: a bug in a stage"
    assert "Traceback" in entries["bug.mid"]["traceback"]
    assert all(entries[f"ok{i:02d}.mid"]["status"] == "ok" for i in range(12))
    # the hanging and crashing workers were real processes, and they are gone
    for name in ("hang.pid", "crash.pid"):
        pid = int((tmp_path / name).read_text())
        assert pid != os.getpid()
        assert pid_dead(pid)
    assert (summary.ok, summary.rejected, summary.failed) == (12, 1, 3)
    songs = load_all_shards(out)
    assert sorted(songs) == [f"ok{i:02d}.mid" for i in range(12)]
    for i in range(12):
        expected = fake_arrays(40 + i, seed=40 + i)
        for key in STEP_KEYS:
            np.testing.assert_array_equal(songs[f"ok{i:02d}.mid"][key], expected[key])
        assert entries[f"ok{i:02d}.mid"]["steps"] == 40 + i


def test_memory_cap_refuses_a_memory_hog(tmp_path):
    write_scripts(tmp_path / "src", {"hog.mid": "hog", "ok.mid": "ok 50"})
    summary = convert_corpus(
        [tmp_path / "src"], tmp_path / "out", workers=1, memory_mb=300, converter=scripted_converter
    )
    entries = entries_by_id(tmp_path / "out")
    assert entries["hog.mid"]["status"] == "failed"
    assert "memory" in entries["hog.mid"]["reason"]
    assert entries["ok.mid"]["status"] == "ok"
    assert summary.failed == 1


# ----------------------------------------------------------------------------- report, resume


def test_report_schema(tmp_path):
    write_scripts(tmp_path / "src", {"a.mid": "ok 64", "b.mid": "reject", "c.mid": "ok 70"})
    summary = convert_corpus([tmp_path / "src"], tmp_path / "out", workers=1, converter=scripted_converter)
    report = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert set(report) == {"format", "options", "summary", "shards", "pending", "files"}
    assert report["pending"] == []  # a finished run has no shard being written
    assert report["options"] == {"max_onsets": "beat", "steps_per_beat": 4}
    for entry in report["files"]:
        assert {"path", "id", "status", "reason", "notes", "steps", "seconds"} <= set(entry)
        assert entry["status"] in ("ok", "rejected", "failed")
        assert Path(entry["path"]).is_absolute()
        assert (entry["status"] == "ok") == ("shard" in entry)
        assert entry["seconds"] >= 0
    s = report["summary"]
    assert (s["files"], s["ok"], s["rejected"], s["failed"]) == (3, 2, 1, 0)
    assert s["ns_per_note"] > 0 and s["files_per_sec"] > 0 and s["seconds"] > 0
    assert s["top_reasons"] == [["refused on purpose", 1]]
    assert {e["id"]: e["notes"] for e in report["files"] if e["status"] == "ok"} == {"a.mid": 32, "c.mid": 35}
    assert summary.line().startswith("converted 3 files: ok 2, rejected 1, failed 0 in ")
    assert "files/s" in summary.line() and "ns/note" in summary.line()


def counting_converter(path: str) -> dict[str, np.ndarray]:
    log = Path(os.environ["CHIPTUNER_TEST_CALLS"])
    with open(log, "a") as file:
        file.write(Path(path).name + "\n")
    return scripted_converter(path)


def test_resume_skips_finished_files_and_retries_failed(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CHIPTUNER_TEST_CALLS", str(calls))
    src = tmp_path / "src"
    write_scripts(src, {"a.mid": "ok 64", "b.mid": "reject", "c.mid": "bug"})
    out = tmp_path / "out"
    convert_corpus([src], out, workers=1, converter=counting_converter)
    assert sorted(calls.read_text().split()) == ["a.mid", "b.mid", "c.mid"]
    calls.unlink()
    write_scripts(src, {"c.mid": "ok 80", "d.mid": "ok 90"})  # c is fixed, d is new
    summary = convert_corpus([src], out, workers=1, converter=counting_converter)
    assert sorted(calls.read_text().split()) == ["c.mid", "d.mid"]
    assert summary.skipped == 2
    assert (summary.files, summary.ok, summary.rejected, summary.failed) == (4, 3, 1, 0)
    assert sorted(load_all_shards(out)) == ["a.mid", "c.mid", "d.mid"]
    calls.unlink()
    convert_corpus([src], out, workers=1, converter=counting_converter)
    assert not calls.exists()


def test_resume_with_other_options_is_refused(tmp_path):
    write_scripts(tmp_path / "src", {"a.mid": "ok 64"})
    convert_corpus([tmp_path / "src"], tmp_path / "out", workers=1, converter=scripted_converter)
    with pytest.raises(ParameterError, match="same options or a new output folder"):
        convert_corpus(
            [tmp_path / "src"], tmp_path / "out", workers=1, max_onsets="half_beat", converter=scripted_converter
        )


def journal_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / JOURNAL_NAME).read_text().splitlines()]


def test_journal_has_one_line_per_file_and_commits_each_shard_after_its_songs(tmp_path):
    src = tmp_path / "src"
    write_scripts(src, {f"s{i}.mid": ("reject" if i == 3 else f"ok {40 + i}") for i in range(7)})
    out = tmp_path / "out"
    convert_corpus([src], out, workers=1, songs_per_shard=2, converter=scripted_converter)
    records = journal_records(out)
    assert records[0] == {"format": 1, "options": {"max_onsets": "beat", "steps_per_beat": 4}}
    entries = [r for r in records if "path" in r]
    assert sorted(e["id"] for e in entries) == [f"s{i}.mid" for i in range(7)]  # one line per file
    shards = read_report(out)["shards"]
    assert [r["committed"] for r in records if "committed" in r] == shards
    assert [r["pending"] for r in records if "pending" in r] == shards
    for name in shards:  # named before it is written, its songs' entries before its commit
        pending, committed = records.index({"pending": name}), records.index({"committed": name})
        songs = [i for i, r in enumerate(records) if r.get("shard") == name]
        assert pending < min(songs) and max(songs) < committed
    assert read_journal(out)["files"] == read_report(out)["files"]


def test_resume_after_a_torn_last_line_redoes_the_uncommitted_shard(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CHIPTUNER_TEST_CALLS", str(calls))
    src = tmp_path / "src"
    write_scripts(src, {f"s{i}.mid": f"ok {40 + i}" for i in range(6)})
    out = tmp_path / "out"
    convert_corpus([src], out, workers=1, songs_per_shard=2, converter=counting_converter)
    calls.unlink()
    last = read_report(out)["shards"][-1]
    # As if killed while appending the last shard's entries: its commit never made it, a line is cut.
    text = (out / JOURNAL_NAME).read_text()
    (out / JOURNAL_NAME).write_text(text[: text.rindex('{"committed"') - 20])
    (out / REPORT_NAME).unlink()
    torn = read_journal(out)
    assert last not in torn["shards"] and last in torn["pending"]
    assert len(torn["files"]) == 4 and not [e for e in torn["files"] if e.get("shard") == last]
    summary = convert_corpus([src], out, workers=1, songs_per_shard=2, converter=counting_converter)
    assert sorted(calls.read_text().split()) == ["s4.mid", "s5.mid"]
    assert (summary.skipped, summary.ok) == (4, 6)
    journal_records(out)  # whole lines again: the torn tail was cut before appending
    assert sorted(load_all_shards(out)) == [f"s{i}.mid" for i in range(6)]
    assert sorted(p.name for p in out.glob("shard-*")) == sorted(read_report(out)["shards"])
    assert last not in read_report(out)["shards"]  # the uncommitted shard was removed, a new one written


def test_a_folder_with_a_report_and_no_journal_resumes_from_the_report(tmp_path, monkeypatch):
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("CHIPTUNER_TEST_CALLS", str(calls))
    src = tmp_path / "src"
    write_scripts(src, {"a.mid": "ok 64", "b.mid": "reject"})
    out = tmp_path / "out"
    convert_corpus([src], out, workers=1, converter=counting_converter)
    (out / JOURNAL_NAME).unlink()  # as written before the journal existed
    calls.unlink()
    write_scripts(src, {"c.mid": "ok 70"})
    summary = convert_corpus([src], out, workers=1, converter=counting_converter)
    assert calls.read_text().split() == ["c.mid"]
    assert (summary.files, summary.skipped) == (3, 2)
    assert sorted(load_all_shards(out)) == ["a.mid", "c.mid"]


def test_a_journal_damaged_in_the_middle_is_refused(tmp_path):
    write_scripts(tmp_path / "src", {f"s{i}.mid": f"ok {40 + i}" for i in range(4)})
    out = tmp_path / "out"
    convert_corpus([tmp_path / "src"], out, workers=1, songs_per_shard=1, converter=scripted_converter)
    lines = (out / JOURNAL_NAME).read_text().splitlines(keepends=True)
    lines[2] = "garbage\n"
    (out / JOURNAL_NAME).write_text("".join(lines))
    with pytest.raises(ParameterError, match="damaged in the middle"):
        convert_corpus([tmp_path / "src"], out, workers=1, converter=scripted_converter)


KILL_SCRIPT = """
import sys, time
from pathlib import Path
import numpy as np
sys.path.insert(0, {tests!r})
from test_convert import scripted_converter
from chiptuner.corpus.convert import convert_corpus

def slow(path):
    time.sleep(0.02)
    return scripted_converter(path)

convert_corpus([{src!r}], {out!r}, workers=2, songs_per_shard=7, chunk_size=2, converter=slow)
"""


def test_sigkill_mid_run_then_resume_gives_complete_consistent_output(tmp_path):
    src = tmp_path / "src"
    n = 150
    write_scripts(src, {f"s{i:03d}.mid": ("reject" if i % 10 == 3 else f"ok {32 + i}") for i in range(n)})
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent), src=str(src), out=str(out)))
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            journal = read_journal(out) if (out / JOURNAL_NAME).exists() else {}
            if len(journal.get("shards", [])) >= 3:
                break
            assert proc.poll() is None, "the conversion ended before it could be killed"
            time.sleep(0.01)
        else:
            pytest.fail("no shard written within 60 s")
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, at once
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / REPORT_NAME).exists()  # written at the end only: the journal is what resumes
    partial = read_journal(out)
    assert 0 < len(partial["files"]) < n

    summary = convert_corpus([src], out, workers=2, songs_per_shard=7, converter=scripted_converter)
    report = read_report(out)
    ids = [entry["id"] for entry in report["files"]]
    assert sorted(ids) == sorted(f"s{i:03d}.mid" for i in range(n))  # every file once
    assert (summary.ok, summary.rejected, summary.failed) == (n - n // 10, n // 10, 0)
    on_disk = sorted(p.name for p in out.iterdir() if p.suffix == ".npz")
    assert on_disk == sorted(report["shards"])  # no orphan, no temp file left
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    songs = load_all_shards(out)  # each shard loads; no song twice
    ok_ids = sorted(e["id"] for e in report["files"] if e["status"] == "ok")
    assert sorted(songs) == ok_ids
    for song_id, song in songs.items():
        i = int(song_id[1:4])
        np.testing.assert_array_equal(song["voice_pitch"], fake_arrays(32 + i, seed=32 + i)["voice_pitch"])


GATED_SCRIPT = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_convert import scripted_converter
from chiptuner.corpus.convert import convert_corpus

def gated(path):
    Path({started!r}).write_text(str(os.getpid()))
    while not Path({gate!r}).exists():
        time.sleep(0.02)
    return scripted_converter(path)

convert_corpus([{src!r}], {out!r}, workers=1, songs_per_shard=3, chunk_size=2, converter=gated, timeout_sec=300)
"""


def start_gated_run(tmp_path: Path, src: Path, out: Path) -> tuple[subprocess.Popen, Path]:
    """A conversion in its own process whose worker, on its first file, waits until ``gate`` exists."""
    started, gate = tmp_path / "started", tmp_path / "gate"
    script = tmp_path / "gated.py"
    script.write_text(
        GATED_SCRIPT.format(
            tests=str(Path(__file__).parent), src=str(src), out=str(out), started=str(started), gate=str(gate)
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    deadline = time.monotonic() + 120
    while not started.exists():
        assert proc.poll() is None, "the first conversion ended before converting"
        assert time.monotonic() < deadline, "the first conversion did not start within 120 s"
        time.sleep(0.02)
    return proc, gate


def test_a_second_run_into_a_folder_in_use_is_refused_in_one_line(tmp_path):
    src = tmp_path / "src"
    write_scripts(src, {f"s{i:02d}.mid": f"ok {40 + i}" for i in range(10)})
    out = tmp_path / "out"
    first, gate = start_gated_run(tmp_path, src, out)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "chiptuner", "convert", str(src), "-o", str(out)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        gate.touch()
        assert first.wait(timeout=120) == 0
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith(f"chiptuner convert: error: {out} is in use by another chiptuner convert (pid ")
    assert lines[0].endswith("; wait for it to finish or choose another folder with -o")
    assert second.stdout == ""
    # the first run's output is whole: every song once, in the shards its report names
    assert sorted(load_all_shards(out)) == [f"s{i:02d}.mid" for i in range(10)]
    assert sorted(p.name for p in out.glob("shard-*")) == sorted(read_report(out)["shards"])


def test_a_parent_killed_alone_leaves_the_folder_free_while_its_worker_lives_on(tmp_path):
    src = tmp_path / "src"
    write_scripts(src, {"a.mid": "ok 50"})
    out = tmp_path / "out"
    first, _ = start_gated_run(tmp_path, src, out)
    worker = int((tmp_path / "started").read_text())
    os.kill(first.pid, signal.SIGKILL)  # the parent only: its worker, a fork waiting at the gate, lives on
    first.wait(timeout=30)
    try:
        assert not pid_dead(worker)
        summary = convert_corpus([src], out, workers=1, converter=scripted_converter)
        assert (summary.ok, summary.failed) == (1, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


def test_files_the_tool_did_not_write_survive_runs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    strays = {"shard-00000.npz": b"someone's", "shard-00099.npz": b"someone else's", ".draft.tmp-1": b"an editor's"}
    for name, data in strays.items():
        (out / name).write_bytes(data)
    src = tmp_path / "src"
    write_scripts(src, {f"s{i}.mid": f"ok {40 + i}" for i in range(5)})
    convert_corpus([src], out, workers=1, songs_per_shard=2, converter=scripted_converter)
    write_scripts(src, {"s5.mid": "ok 45"})
    convert_corpus([src], out, workers=1, songs_per_shard=2, converter=scripted_converter)
    assert {name: (out / name).read_bytes() for name in strays} == strays
    assert not set(strays) & set(read_report(out)["shards"])
    assert sorted(load_all_shards(out)) == [f"s{i}.mid" for i in range(6)]


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` with one file until at most ``leave`` bytes are free; the file."""
    ballast = disk / "ballast"
    with open(ballast, "wb") as file:
        while shutil.disk_usage(disk).free > leave:
            try:
                file.write(b"\0" * 4096)
                file.flush()
            except OSError:  # full
                break
    return ballast


def test_a_full_disk_stops_the_run_in_one_line_keeps_what_was_written_and_resumes(small_disk, tmp_path):
    src = tmp_path / "src"
    n = 40
    write_scripts(src, {f"s{i:02d}.mid": ("reject" if i % 7 == 3 else f"ok {200 + i}") for i in range(n)})
    options = {"workers": 2, "songs_per_shard": 4, "chunk_size": 2, "converter": scripted_converter}
    clean = tmp_path / "clean"
    convert_corpus([src], clean, **options)  # shards of about 12 kB, 9 of them
    out = small_disk / "out"
    ballast = fill(small_disk, leave=64 * 1024)  # room for a few shards, not all

    with pytest.raises(OutputError) as stopped:
        convert_corpus([src], out, **options)
    message = str(stopped.value)
    assert re.fullmatch(
        rf"{re.escape(str(out))}: no space left on device \(errno 28\) while writing "
        r"(shard-\d{5}\.npz|journal\.jsonl|report\.json); free space and run the same command again to resume",
        message,
    ), message
    # what was written is kept, consistent, and nothing was blamed on the workers
    partial = read_journal(out)
    assert partial["shards"], "no shard written before the disk filled"
    assert all(entry["status"] != "failed" for entry in partial["files"]), partial["files"]
    assert 0 < len(partial["files"]) < n
    songs = set()
    for name in partial["shards"]:
        with np.load(out / name, allow_pickle=False) as shard:
            songs.update(shard["song_id"].tolist())
    assert sorted(songs) == sorted(e["id"] for e in partial["files"] if e["status"] == "ok")
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]

    ballast.unlink()
    summary = convert_corpus([src], out, **options)
    assert summary.skipped == len(partial["files"])
    assert (summary.files, summary.failed) == (n, 0)
    clean_entries, entries = entries_by_id(clean), entries_by_id(out)
    assert {k: e["status"] for k, e in entries.items()} == {k: e["status"] for k, e in clean_entries.items()}
    songs, clean_songs = load_all_shards(out), load_all_shards(clean)
    assert sorted(songs) == sorted(clean_songs)
    for song_id, song in songs.items():
        for key in STEP_KEYS:
            np.testing.assert_array_equal(song[key], clean_songs[song_id][key])
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".npz") == sorted(read_report(out)["shards"])
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


# ----------------------------------------------------------------------------- bad input


def test_no_midi_files_found(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ParameterError, match="no MIDI files"):
        convert_corpus([tmp_path / "empty"], tmp_path / "out", converter=scripted_converter)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_dir(tmp_path):
    write_scripts(tmp_path / "src", {"a.mid": "ok 64"})
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ParameterError, match="cannot write to"):
        convert_corpus([tmp_path / "src"], locked / "out", converter=scripted_converter)


def test_out_dir_is_a_file(tmp_path):
    write_scripts(tmp_path / "src", {"a.mid": "ok 64"})
    (tmp_path / "file").write_text("")
    with pytest.raises(ParameterError, match="cannot write to"):
        convert_corpus([tmp_path / "src"], tmp_path / "file", converter=scripted_converter)


@pytest.mark.parametrize(
    "options",
    [{"workers": 0}, {"timeout_sec": 0}, {"memory_mb": -1}, {"songs_per_shard": 0}, {"max_onsets": "bar"}],
)
def test_bad_options(tmp_path, options):
    write_scripts(tmp_path / "src", {"a.mid": "ok 64"})
    with pytest.raises(ParameterError, match=str(next(iter(options.values())))):
        convert_corpus([tmp_path / "src"], tmp_path / "out", converter=scripted_converter, **options)


# ----------------------------------------------------------------------------- the real pipeline


def write_song(path: Path, *, bars: int, melody: bool = True, accompaniment: bool = True) -> None:
    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    for channel, make in ((0, melody), (1, accompaniment), (9, accompaniment)):
        track = mido.MidiTrack()
        mid.tracks.append(track)
        if not make:
            continue
        step = {0: 96, 1: 192, 9: 48}[channel]
        for i in range(bars * 4 * 96 // step):
            key = {0: 64 + (i * 5) % 12, 1: 40 + (i * 7) % 12, 9: 42 if i % 2 else 36}[channel]
            track.append(mido.Message("note_on", channel=channel, note=key, velocity=90, time=0))
            track.append(mido.Message("note_off", channel=channel, note=key, velocity=0, time=step))
    mid.save(path)


def test_real_pipeline_end_to_end(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_song(src / "song.mid", bars=8)
    write_song(src / "tiny.mid", bars=1)
    (src / "html.mid").write_bytes(b"<!DOCTYPE html><html></html>")
    summary = convert_corpus([src], tmp_path / "out", workers=2)
    entries = entries_by_id(tmp_path / "out")
    assert entries["song.mid"]["status"] == "ok", entries["song.mid"]
    assert entries["tiny.mid"]["status"] == "rejected"
    assert "too short" in entries["tiny.mid"]["reason"]
    assert entries["html.mid"]["status"] == "rejected"
    assert "not a MIDI file" in entries["html.mid"]["reason"]
    assert summary.failed == 0
    song = load_all_shards(tmp_path / "out")["song.mid"]
    assert song["voice_pitch"].shape == (8 * 16, 4)
    assert entries["song.mid"]["notes"] == int(song["n_notes"]) == 8 * 4 + 8 * 2 + 8 * 8


def test_special_files_and_link_loops_are_rejected_with_a_reason(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_song(src / "song.mid", bars=8)
    os.mkfifo(src / "pipe.mid")  # open() on it would wait for a writer
    (src / "zero.mid").symlink_to("/dev/zero")  # st_size 0, bytes without end
    (src / "loop.mid").symlink_to("loop.mid")
    summary = convert_corpus([src], tmp_path / "out", workers=1, timeout_sec=5, memory_mb=300)
    entries = entries_by_id(tmp_path / "out")
    assert entries["song.mid"]["status"] == "ok"
    expected = {
        "pipe.mid": "is a named pipe (FIFO), not a regular file; name a MIDI file",
        "zero.mid": "is a character device, not a regular file; name a MIDI file",
        "loop.mid": "too many levels of symbolic links (a link loop); name a MIDI file",
    }
    for song_id, reason in expected.items():
        assert (entries[song_id]["status"], entries[song_id]["reason"]) == ("rejected", reason)
    assert (summary.ok, summary.rejected, summary.failed) == (1, 3, 0)


def test_special_files_and_link_loops_named_as_sources_are_rejected_with_a_reason(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_song(src / "song.mid", bars=8)
    os.mkfifo(src / "pipe.mid")
    (src / "loop.mid").symlink_to("loop.mid")
    summary = convert_corpus(
        [src / "song.mid", src / "pipe.mid", src / "loop.mid"], tmp_path / "out", workers=1, timeout_sec=5
    )
    entries = entries_by_id(tmp_path / "out")
    statuses = {song_id: entry["status"] for song_id, entry in entries.items()}
    assert statuses == {"song.mid": "ok", "pipe.mid": "rejected", "loop.mid": "rejected"}
    assert entries["pipe.mid"]["reason"] == "is a named pipe (FIFO), not a regular file; name a MIDI file"
    assert entries["loop.mid"]["reason"] == "too many levels of symbolic links (a link loop); name a MIDI file"
    assert summary.failed == 0
