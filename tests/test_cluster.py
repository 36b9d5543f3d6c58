"""Corpus conversion on a real Dask cluster: a scheduler and workers as processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from chiptuner.cli import main
from chiptuner.corpus.convert import JOURNAL_NAME, convert_corpus, read_journal, read_report
from chiptuner.pipeline import SONG_KEYS, STEP_KEYS
from tests.test_convert import entries_by_id, fake_arrays, load_all_shards, scripted_converter, write_scripts

distributed = pytest.importorskip("distributed", reason="needs dask.distributed: pip install -e '.[cluster]'")

ROOT = Path(__file__).resolve().parents[1]


def slow_converter(path: str) -> dict[str, np.ndarray]:
    """``scripted_converter`` at 0.1 s a file, so that a run can be caught in the middle."""
    time.sleep(0.1)
    return scripted_converter(path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_worker(address: str) -> subprocess.Popen:
    # PYTHONPATH: the workers import this checkout and the test converters (tests.test_cluster).
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "dask", "worker", address, "--nthreads", "1", "--host", "127.0.0.1"]
    return subprocess.Popen(
        [*command, "--no-dashboard"], env=env, cwd=ROOT, start_new_session=True, stderr=subprocess.DEVNULL
    )


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def wait_for_workers(address: str, n: int) -> None:
    with distributed.Client(address, timeout=30) as client:
        client.wait_for_workers(n, timeout=60)


@pytest.fixture(scope="module")
def scheduler() -> str:
    """The address of a `dask scheduler` with two `dask worker` processes of one thread each."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    command = [sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    procs = [subprocess.Popen(command, env=env, start_new_session=True, stderr=subprocess.DEVNULL)]
    try:
        procs += [start_worker(address) for _ in range(2)]
        wait_for_workers(address, 2)
        yield address
    finally:
        for proc in reversed(procs):
            stop(proc)


def assert_same_songs(a: Path, b: Path) -> None:
    entries_a, entries_b = entries_by_id(a), entries_by_id(b)
    assert {k: (e["status"], e["reason"]) for k, e in entries_a.items()} == {
        k: (e["status"], e["reason"]) for k, e in entries_b.items()
    }
    songs_a, songs_b = load_all_shards(a), load_all_shards(b)
    assert sorted(songs_a) == sorted(songs_b)
    for song_id, song in songs_a.items():
        for key in (*STEP_KEYS, *SONG_KEYS):
            np.testing.assert_array_equal(song[key], songs_b[song_id][key], err_msg=f"{song_id} {key}")


@pytest.mark.corpus
def test_a_corpus_sample_gives_the_same_songs_on_the_cluster_as_locally(scheduler, corpora, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for path in sorted((corpora / "vgmusic_nes_gb" / "midis").iterdir())[::140][:40]:
        (src / path.name).symlink_to(path)
    (src / "html.mid").write_bytes(b"<!DOCTYPE html><html></html>")  # not MIDI: rejected
    (src / "empty.mid").write_bytes(b"")
    (src / "cut.mid").write_bytes((corpora / "vgmusic_nes_gb" / "midis").iterdir().__next__().read_bytes()[:200])
    os.mkfifo(src / "pipe.mid")
    local = convert_corpus([src], tmp_path / "local", workers=2, songs_per_shard=16)
    remote = convert_corpus([src], tmp_path / "cluster", scheduler=scheduler, songs_per_shard=16)
    assert (remote.files, remote.ok, remote.rejected, remote.failed) == (44, local.ok, local.rejected, 0)
    assert local.ok > 30 and local.rejected >= 3
    assert_same_songs(tmp_path / "local", tmp_path / "cluster")
    assert read_journal(tmp_path / "cluster")["files"] == read_report(tmp_path / "cluster")["files"]


def test_a_hanging_and_a_crashing_file_fail_within_the_limit_and_the_run_goes_on(scheduler, tmp_path):
    src = tmp_path / "src"
    scripts = {f"ok{i:02d}.mid": f"ok {40 + i}" for i in range(10)}
    scripts.update({"hang.mid": f"hang {tmp_path / 'hang.pid'}", "crash.mid": "crash", "bug.mid": "bug"})
    write_scripts(src, scripts)
    t0 = time.monotonic()
    summary = convert_corpus(
        [src], tmp_path / "out", scheduler=scheduler, timeout_sec=2, chunk_size=3, converter=scripted_converter
    )
    assert time.monotonic() - t0 < 30
    entries = entries_by_id(tmp_path / "out")
    assert len(entries) == len(scripts)
    assert (entries["hang.mid"]["status"], entries["hang.mid"]["reason"]) == ("failed", "timeout after 2 s")
    assert 2 <= entries["hang.mid"]["seconds"] < 10
    assert entries["crash.mid"]["status"] == "failed"
    assert entries["crash.mid"]["reason"] == "worker died (memory cap?): killed by SIGKILL"
    assert entries["bug.mid"]["reason"] == "ZeroDivisionError: a bug in a stage"
    assert (summary.ok, summary.failed) == (10, 3)
    hung = int((tmp_path / "hang.pid").read_text())
    deadline = time.monotonic() + 10
    while Path(f"/proc/{hung}").exists() and Path(f"/proc/{hung}/stat").read_text().split()[2] not in "ZX":
        assert time.monotonic() < deadline, "the hanging child was not killed"
        time.sleep(0.05)
    wait_for_workers(scheduler, 2)  # the Dask workers themselves are fine


def test_a_worker_killed_mid_run_fails_its_files_once_and_the_run_goes_on(scheduler, tmp_path):
    src = tmp_path / "src"
    n = 60
    write_scripts(src, {f"s{i:02d}.mid": f"ok {40 + i}" for i in range(n)})
    out = tmp_path / "out"
    doomed = start_worker(scheduler)
    try:
        wait_for_workers(scheduler, 3)
        killer = subprocess.Popen(  # kills the third worker once 12 files are in the journal
            [
                sys.executable,
                "-c",
                "import sys, time, pathlib, os, signal\n"
                "p = pathlib.Path(sys.argv[1])\n"
                "while not p.exists() or p.read_text().count('\"path\"') < 12: time.sleep(0.02)\n"
                "os.killpg(int(sys.argv[2]), signal.SIGKILL)\n",
                str(out / JOURNAL_NAME),
                str(doomed.pid),
            ]
        )
        summary = convert_corpus(
            [src], out, scheduler=scheduler, chunk_size=2, songs_per_shard=4, converter=slow_converter
        )
        assert killer.wait(timeout=30) == 0
    finally:
        stop(doomed)
    entries = entries_by_id(out)
    assert sorted(entries) == [f"s{i:02d}.mid" for i in range(n)]  # every file exactly once
    failed = {k: e["reason"] for k, e in entries.items() if e["status"] == "failed"}
    assert set(failed.values()) <= {"worker died: the Dask worker running it was lost (KilledWorker); not retried"}
    assert summary.ok + summary.failed == n and 0 < summary.failed <= 2 * 2 * 3  # its running and queued batches
    assert sorted(load_all_shards(out)) == sorted(k for k, e in entries.items() if e["status"] == "ok")
    resumed = convert_corpus([src], out, scheduler=scheduler, chunk_size=2, converter=slow_converter)
    assert (resumed.files, resumed.ok, resumed.skipped) == (n, n, n - len(failed))


CLIENT_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from tests.test_cluster import slow_converter
from chiptuner.corpus.convert import convert_corpus

convert_corpus([{src!r}], {out!r}, scheduler={scheduler!r}, songs_per_shard=5, chunk_size=2, converter=slow_converter)
"""


def test_the_client_killed_then_resumed_gives_every_song_once(scheduler, tmp_path):
    src = tmp_path / "src"
    n = 50
    write_scripts(src, {f"s{i:02d}.mid": ("reject" if i % 10 == 3 else f"ok {40 + i}") for i in range(n)})
    out = tmp_path / "out"
    script = tmp_path / "client.py"
    script.write_text(CLIENT_SCRIPT.format(root=str(ROOT), src=str(src), out=str(out), scheduler=scheduler))
    client = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(read_journal(out).get("shards", []) if (out / JOURNAL_NAME).exists() else []) < 2:
            assert client.poll() is None, "the client ended before it could be killed"
            assert time.monotonic() < deadline, "no two shards within 90 s"
            time.sleep(0.02)
        os.killpg(client.pid, signal.SIGKILL)
    finally:
        client.wait(timeout=30)
    partial = read_journal(out)
    assert 0 < len(partial["files"]) < n
    summary = convert_corpus([src], out, scheduler=scheduler, songs_per_shard=5, converter=slow_converter)
    assert (summary.files, summary.ok, summary.rejected, summary.failed) == (n, n - n // 10, n // 10, 0)
    assert summary.skipped == len(partial["files"])
    songs = load_all_shards(out)
    assert sorted(songs) == sorted(f"s{i:02d}.mid" for i in range(n) if i % 10 != 3)
    for song_id, song in songs.items():
        np.testing.assert_array_equal(
            song["voice_pitch"], fake_arrays(40 + int(song_id[1:3]), 40 + int(song_id[1:3]))["voice_pitch"]
        )
    assert sorted(p.name for p in out.glob("shard-*")) == sorted(read_report(out)["shards"])


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--scheduler", "local:0"], "--scheduler local:0: N in local:N is the number of worker processes"),
        (["--scheduler", "local:x"], "--scheduler local:x: N in local:N is the number of worker processes"),
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler tcp://127.0.0.1:1: cannot reach a Dask scheduler there"),
        (["--scheduler", "local:1", "--workers", "2"], "--workers is for the local pool; with --scheduler"),
    ],
)
def test_a_bad_scheduler_is_one_line_and_exit_code_2(tmp_path, capsys, options, problem):
    write_scripts(tmp_path / "src", {"a.mid": "ok 64"})
    assert main(["-q", "convert", str(tmp_path / "src"), "-o", str(tmp_path / "out"), *options]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"chiptuner convert: error: {problem}"), lines[0]
    assert captured.out == ""
