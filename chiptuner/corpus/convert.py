"""Corpus conversion: MIDI files to sharded training arrays, with a robust process pool.

``convert_corpus`` walks folders for MIDI files, converts each in a pool of worker
processes (``pipeline.convert_file``), or on a Dask cluster (``chiptuner.corpus.cluster``), and
writes:

- ``OUT_DIR/shard-NNNNN.npz``: the training arrays of up to ``songs_per_shard`` songs,
  each per-step array concatenated over the songs, with ``offsets`` (song i is rows
  ``offsets[i]:offsets[i+1]``), ``song_id`` (relative paths, fixed-width unicode) and one
  entry per song for the scalars; no pickled objects.
- ``OUT_DIR/journal.jsonl``: the run's bookkeeping, append-only, one JSON object a line:
  the options (first line), ``{"pending": SHARD}`` before a shard is written, one entry
  per file (``path``, ``id``, ``status`` ok / rejected / failed, ``reason``, ``notes``,
  ``steps``, ``seconds``, and ``shard`` for ok files), and ``{"committed": SHARD}`` after
  the entries of that shard's songs. It is synced at shard boundaries; a later entry for a
  path replaces an earlier one, and an ok entry counts only once its shard is committed.
- ``OUT_DIR/report.json``: written at the end of a run (and when it is interrupted or a
  write fails, where it still can be): one entry per input file, a summary, the shards.
  During a run it may be absent or describe an earlier run; the journal is what resumes.

The pool survives its workers: a file that runs over the timeout gets its worker killed,
a worker that dies (memory cap, a crash in native code) is replaced, and either way the
file is recorded as ``failed`` and the run goes on. Every shard and the report are
written under a temporary name and ``os.replace``d, so a killed run (kill -9 too) loses
at most the songs of the shard being filled, and a re-run with the same ``OUT_DIR``
redoes only what is missing. Appending to the journal costs the same at the millionth
file as at the first (the report was rewritten whole after every shard before).

One run at a time writes into a folder: a run holds an exclusive ``flock`` on
``OUT_DIR/.convert.lock`` until it ends (the kernel drops it when the process dies, by
kill -9 too), and a second run is refused. A shard's name is in the journal (``pending``)
before the shard is written, and a run removes only files so named and the temporary files
of them and of the report: whatever else is in the folder stays.

A write that fails (a full disk) stops the run with an ``OutputError`` naming the cause,
the folder and the file; it is never taken for a worker's death. What was written stays,
and the same command resumes once the cause is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import resource
import signal
import time
import traceback
import typing
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chiptuner.errors import ChiptunerError, MidiFileError, OutputError, ParameterError
from chiptuner.pipeline import SONG_KEYS, STEP_KEYS, MaxOnsets, convert_file, warmup
from chiptuner.timebase import STEPS_PER_BEAT

__all__ = [
    "MIDI_SUFFIXES",
    "REPORT_NAME",
    "JOURNAL_NAME",
    "LOCK_NAME",
    "SourceFile",
    "ConvertSummary",
    "find_midi_files",
    "convert_corpus",
    "read_report",
    "read_journal",
]

logger = logging.getLogger(__name__)

#: File name endings taken as MIDI (compared case-insensitively).
MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi")
REPORT_NAME = "report.json"
#: The file a run holds an exclusive ``flock`` on (it holds the pid of the run, for messages).
LOCK_NAME = ".convert.lock"
SHARD_PATTERN = re.compile(r"^shard-(\d{5,})\.npz$")
#: ``_atomic_write``'s temporary names: ``.NAME.tmp-PID``.
TMP_PATTERN = re.compile(r"^\.(.+)\.tmp-\d+$")
REPORT_FORMAT = 1
JOURNAL_NAME = "journal.jsonl"
JOURNAL_FORMAT = 1

#: (files done, files to do, counts by status) after each file.
ProgressCallback = Callable[[int, int, Mapping[str, int]], None]
#: A path in, the song's arrays out; raises MidiFileError to reject the file.
Converter = Callable[[str], dict]


@dataclass(frozen=True)
class SourceFile:
    """One input file: its absolute path and its song id (path relative to the source root)."""

    path: str
    song_id: str


@dataclass(frozen=True)
class ConvertSummary:
    """Counts over the whole report and the speed of this run.

    Attributes
    ----------
    files, ok, rejected, failed : int
        Entries in the report, all runs together.
    skipped : int
        Files already recorded by an earlier run and not redone.
    seconds : float
        Wall-clock time of this run.
    files_per_sec : float
        Files converted by this run per second of wall-clock time.
    ns_per_note : float
        Wall-clock nanoseconds per note read by this run (all workers together).
    cpu_ns_per_note : float
        Nanoseconds per note inside the workers (one worker's cost per note).
    top_reasons : tuple of (str, int)
        The most frequent rejection reasons (numbers replaced by ``#``).
    """

    files: int
    ok: int
    rejected: int
    failed: int
    skipped: int
    seconds: float
    files_per_sec: float
    ns_per_note: float
    cpu_ns_per_note: float
    top_reasons: tuple[tuple[str, int], ...] = ()

    def line(self) -> str:
        """Return the one-line summary the command prints."""
        resumed = f" ({self.skipped} done before)" if self.skipped else ""
        return (
            f"converted {self.files} files{resumed}: ok {self.ok}, rejected {self.rejected}, failed {self.failed} "
            f"in {self.seconds:.1f} s ({self.files_per_sec:.1f} files/s, {self.ns_per_note:.0f} ns/note)"
        )


# ----------------------------------------------------------------------------- files


def find_midi_files(sources: Sequence[str | os.PathLike]) -> list[SourceFile]:
    """Every MIDI file named or found (recursively) under the sources, sorted by path.

    Parameters
    ----------
    sources : sequence of str or os.PathLike
        Files (taken whatever their ending and kind) and folders (searched for ``MIDI_SUFFIXES``).

    Returns
    -------
    list of SourceFile
        Song ids are paths relative to the common folder of the sources, with ``/``.

    Raises
    ------
    ParameterError
        A source does not exist.
    """
    roots = []
    for source in sources:
        path = Path(source).expanduser()
        try:
            path = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop: kept as named, the reader refuses it with a reason
            path = Path(os.path.abspath(path))
        if not os.path.lexists(path):
            raise ParameterError(f"{source}: no such file or folder; name MIDI files or folders that hold them")
        roots.append(path)
    if not roots:
        return []
    base = Path(os.path.commonpath([root if root.is_dir() else root.parent for root in roots]))
    found: dict[str, SourceFile] = {}
    for root in roots:
        if not root.is_dir():  # a file, a FIFO, a device: taken, and refused with a reason if not a regular file
            candidates = [root]
        else:
            candidates = []
            for folder, dirs, names in os.walk(root):
                dirs.sort()
                candidates.extend(Path(folder, name) for name in names if name.lower().endswith(MIDI_SUFFIXES))
        for path in candidates:
            found[str(path)] = SourceFile(str(path), path.relative_to(base).as_posix())
    return sorted(found.values(), key=lambda f: f.path)


# ----------------------------------------------------------------------------- report and shards


def _atomic_write(path: Path, write: Callable[[typing.BinaryIO], None]) -> None:
    """Write through ``write(file)`` to a temporary name, sync, and rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _write_error(out_dir: Path, name: str, error: OSError) -> OutputError:
    """The one-line error for a write into the output folder that failed: the cause, the file, the fix."""
    cause = error.strerror or str(error)
    cause = cause[:1].lower() + cause[1:]
    if error.errno is not None:
        cause += f" (errno {error.errno})"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space and run the same command again to resume"
    else:
        fix = "fix that and run the same command again to resume"
    return OutputError(f"{out_dir}: {cause} while writing {name}; {fix}")


def read_report(out_dir: str | os.PathLike) -> dict:
    """Read the report of a conversion folder (``{}`` where there is none yet)."""
    path = Path(out_dir) / REPORT_NAME
    if not path.exists():
        return {}
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ParameterError(f"{path}: unreadable report ({error}); delete it or choose a new output folder") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ParameterError(f"{path}: not a chiptuner conversion report; choose a new output folder")
    return report


def _write_shard(path: Path, songs: list[tuple[str, dict]]) -> None:
    """Concatenate the songs' arrays into one ``.npz`` (uncompressed pickles: none)."""
    ids = np.array([song_id for song_id, _ in songs], dtype=str)
    lengths = np.array([len(arrays["melody_pitch"]) for _, arrays in songs], dtype=np.int64)
    data = {
        "song_id": ids,
        "offsets": np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        "step_keys": np.array(list(STEP_KEYS), dtype=str),
        "song_keys": np.array(list(SONG_KEYS), dtype=str),
    }
    for key, dtype in STEP_KEYS.items():
        data[key] = np.concatenate([arrays[key] for _, arrays in songs]).astype(dtype, copy=False)
    for key, dtype in SONG_KEYS.items():
        data[key] = np.array([arrays[key] for _, arrays in songs], dtype=dtype)
    _atomic_write(path, lambda file: np.savez_compressed(file, **data))


def _reason_kind(reason: str) -> str:
    return re.sub(r"(?<![A-Za-z_])\d+(?:[.,]\d+)*(?:e[+-]?\d+)?", "#", reason)


def _replay(path: Path) -> tuple[dict, int]:
    """The records of a journal, folded, and the length of its whole lines (a torn tail excluded).

    Returns ``({"options", "entries", "committed", "pending"}, length)``. Only the end of a
    journal can be torn (a write cut short by a full disk or a crash of the machine); a bad
    line with good lines after it is damage this module did not make, and is refused.
    """
    data = path.read_bytes()
    state: dict = {"options": None, "entries": {}, "committed": [], "pending": []}
    pos = 0
    while pos < len(data):
        stop = data.find(b"\n", pos)
        if stop < 0:
            break
        try:
            record = json.loads(data[pos:stop])
        except ValueError:
            break
        if not isinstance(record, dict):
            break
        if "path" in record:
            state["entries"][record["path"]] = record
        elif "committed" in record:
            state["committed"].append(record["committed"])
        elif "pending" in record:
            state["pending"].append(record["pending"])
        elif record.get("format") == JOURNAL_FORMAT:
            state["options"] = record.get("options")
        pos = stop + 1
    for line in data[pos:].split(b"\n")[1:]:
        if _parses(line):
            raise ParameterError(
                f"{path}: damaged in the middle (byte {pos}); delete the folder's journal and report, "
                "or choose a new output folder"
            )
    return state, pos


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def read_journal(out_dir: str | os.PathLike) -> dict:
    """What a conversion folder's journal holds now, in the report's shape (``{}`` where there is none).

    Readable while a run writes, and after a run was killed: ``options``, ``shards`` (the
    committed shards still on disk), ``pending`` (shards named but not committed) and
    ``files`` (one entry per path, sorted; an ok entry only where its shard is committed).
    """
    out = Path(out_dir)
    path = out / JOURNAL_NAME
    if not path.exists():
        return {}
    state, _ = _replay(path)
    shards = [name for name in state["committed"] if (out / name).is_file()]
    live = set(shards)
    files = [
        entry
        for _, entry in sorted(state["entries"].items())
        if entry.get("status") != "ok" or entry.get("shard") in live
    ]
    pending = [name for name in state["pending"] if name not in set(state["committed"])]
    return {"options": state["options"], "shards": shards, "pending": pending, "files": files}


class _Journal:
    """The append-only journal of a folder: opened (a torn tail cut off), appended, synced."""

    def __init__(self, out_dir: Path, options: dict) -> None:
        self.out_dir = out_dir
        self.path = out_dir / JOURNAL_NAME
        try:
            if not self.path.exists():
                # A folder converted before the journal existed keeps what its report covers.
                seed = _records_from_report(read_report(out_dir)) or [{"format": JOURNAL_FORMAT, "options": options}]
                text = "".join(_line(record) for record in seed).encode()
                _atomic_write(self.path, lambda file: file.write(text))
            self.state, length = _replay(self.path)
            if length < self.path.stat().st_size:
                logger.info("cutting a torn last line off %s", self.path)
                os.truncate(self.path, length)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as error:
            raise _write_error(out_dir, JOURNAL_NAME, error) from None
        if self.state["options"] != options:
            os.close(self.fd)
            raise ParameterError(
                f"{out_dir} holds a conversion made with {self.state['options']}; "
                f"this run asks for {options}: use the same options or a new output folder"
            )

    def append(self, records: Sequence[dict], *, sync: bool = False) -> None:
        """Append the records in one write; ``sync`` to have them on disk before returning."""
        data = memoryview("".join(_line(record) for record in records).encode())
        try:
            while data:
                data = data[os.write(self.fd, data) :]
            if sync:
                os.fsync(self.fd)
        except OSError as error:
            raise _write_error(self.out_dir, JOURNAL_NAME, error) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _line(record: dict) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def _records_from_report(report: dict) -> list[dict]:
    """A journal's records for what an older run's report covers (``[]`` for no report)."""
    if not report:
        return []
    return [
        {"format": JOURNAL_FORMAT, "options": report.get("options")},
        *({"pending": name} for name in report.get("pending", [])),
        *report.get("files", []),
        *({"committed": name} for name in report.get("shards", [])),
    ]


class _Books:
    """The bookkeeping of one run, the same for the local pool and a cluster.

    Results come in through ``record``; ok songs are buffered and written as a shard every
    ``songs_per_shard`` songs; the journal gets every entry, and ``write_report`` the summary.
    """

    def __init__(
        self,
        out_dir: Path,
        options: dict,
        files: list[SourceFile],
        *,
        songs_per_shard: int,
        progress: ProgressCallback | None,
    ) -> None:
        self.out_dir = out_dir
        self.options = options
        self.journal = _Journal(out_dir, options)
        state = self.journal.state
        self.shards = [name for name in state["committed"] if (out_dir / name).is_file()]
        live = set(self.shards)
        self.entries: dict[str, dict] = {}
        for path, entry in state["entries"].items():
            if entry.get("status") == "ok" and entry.get("shard") not in live:
                continue  # its shard is gone or was never committed: redo it
            self.entries[path] = entry
        # A shard an interrupted run had named but not committed may be half written; it and
        # the temporary files of it and of the report are ours. Anything else is left alone.
        stale = [name for name in state["pending"] if SHARD_PATTERN.match(str(name)) and name not in live]
        ours = {REPORT_NAME, *stale}
        for name in os.listdir(out_dir):
            tmp = TMP_PATTERN.match(name)
            if name in stale or (tmp and tmp.group(1) in ours):
                logger.info("removing %s left by an interrupted run", name)
                with contextlib.suppress(OSError):
                    (out_dir / name).unlink()
        numbers = [int(SHARD_PATTERN.match(name).group(1)) for name in [*self.shards, *stale]]
        self.next_shard = max(numbers, default=-1) + 1
        self.todo = [f for f in files if not self.done_before(f.path)]
        self.skipped = len(files) - len(self.todo)
        self.songs_per_shard = songs_per_shard
        self.progress = progress
        self.buffer: list[tuple[str, dict]] = []
        self.buffer_entries: list[dict] = []
        self.done = 0
        self.notes = 0
        self.worker_sec = 0.0
        self.run_counts: Counter = Counter()
        self.t0 = time.monotonic()
        self.last_log = self.t0

    def done_before(self, path: str) -> bool:
        return self.entries.get(path, {}).get("status") in ("ok", "rejected")

    def close(self) -> None:
        self.journal.close()

    def summary(self) -> ConvertSummary:
        counts = Counter(entry["status"] for entry in self.entries.values())
        seconds = time.monotonic() - self.t0
        reasons = Counter(
            _reason_kind(entry["reason"]) for entry in self.entries.values() if entry["status"] == "rejected"
        )
        return ConvertSummary(
            files=sum(counts.values()),
            ok=counts["ok"],
            rejected=counts["rejected"],
            failed=counts["failed"],
            skipped=self.skipped,
            seconds=seconds,
            files_per_sec=self.done / seconds if seconds > 0 else 0.0,
            ns_per_note=seconds * 1e9 / self.notes if self.notes else 0.0,
            cpu_ns_per_note=self.worker_sec * 1e9 / self.notes if self.notes else 0.0,
            top_reasons=tuple(reasons.most_common(10)),
        )

    def write_report(self) -> None:
        """Write ``report.json`` from the entries in memory (once a run, not per shard)."""
        summary = self.summary()
        as_dict = {key: getattr(summary, key) for key in summary.__dataclass_fields__}
        as_dict["top_reasons"] = [list(item) for item in summary.top_reasons]
        report = {
            "format": REPORT_FORMAT,
            "options": self.options,
            "summary": as_dict,
            "shards": self.shards,
            "pending": [],
            "files": [self.entries[path] for path in sorted(self.entries)],
        }
        text = json.dumps(report, indent=1).encode()
        try:
            _atomic_write(self.out_dir / REPORT_NAME, lambda file: file.write(text))
        except OSError as error:
            raise _write_error(self.out_dir, REPORT_NAME, error) from None

    def flush(self) -> None:
        """Write the buffered songs as a shard: named in the journal, written, then committed there."""
        if not self.buffer:
            return
        while os.path.lexists(self.out_dir / f"shard-{self.next_shard:05d}.npz"):
            self.next_shard += 1  # a name taken by a file that is not ours
        name = f"shard-{self.next_shard:05d}.npz"
        self.journal.append([{"pending": name}], sync=True)
        try:
            _write_shard(self.out_dir / name, self.buffer)
        except OSError as error:
            raise _write_error(self.out_dir, name, error) from None
        self.next_shard += 1
        for entry in self.buffer_entries:
            entry["shard"] = name
        self.journal.append([*self.buffer_entries, {"committed": name}], sync=True)
        self.shards.append(name)
        for entry in self.buffer_entries:
            self.entries[entry["path"]] = entry
        logger.debug("wrote %s (%d songs)", name, len(self.buffer))
        self.buffer, self.buffer_entries = [], []

    def record(
        self,
        index: int,
        status: str,
        reason: str,
        arrays: dict | None,
        notes: int,
        steps: int,
        seconds: float,
        tb: str,
    ) -> None:
        """Take the result of ``todo[index]``: into the shard buffer if ok, into the journal if not."""
        source = self.todo[index]
        entry = {
            "path": source.path,
            "id": source.song_id,
            "status": status,
            "reason": reason,
            "notes": int(notes),
            "steps": int(steps),
            "seconds": round(float(seconds), 4),
        }
        if tb:
            entry["traceback"] = tb
        if status == "failed":
            logger.warning("%s failed: %s", source.path, reason)
        self.done += 1
        self.run_counts[status] += 1
        if status != "failed":
            self.notes += int(notes)
            self.worker_sec += float(seconds)
        if status == "ok":
            self.buffer.append((source.song_id, arrays))
            self.buffer_entries.append(entry)
            if len(self.buffer) >= self.songs_per_shard:
                self.flush()
        else:
            # Unsynced: a killed run's page cache keeps it; the next shard's sync covers a crash.
            self.journal.append([entry])
            self.entries[source.path] = entry
        if self.progress is not None:
            self.progress(self.done, len(self.todo), self.run_counts)
        elif time.monotonic() - self.last_log >= 10.0:
            self.last_log = time.monotonic()
            rate = self.done / max(self.last_log - self.t0, 1e-9)
            logger.info(
                "%d/%d files (ok %d, rejected %d, failed %d), %.1f files/s",
                self.done,
                len(self.todo),
                self.run_counts["ok"],
                self.run_counts["rejected"],
                self.run_counts["failed"],
                rate,
            )


# ----------------------------------------------------------------------------- workers


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _worker_main(
    conn: multiprocessing.connection.Connection, converter: Converter, warm: bool, memory_mb: int, lock_fd: int
) -> None:
    """Worker loop: warm up, cap memory, then convert chunks of (index, path) until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    # The fork shares the parent's lock; a worker that outlives a killed parent must not keep
    # the folder locked (closing our copy leaves the parent's lock in place).
    with contextlib.suppress(OSError):
        os.close(lock_fd)
    if warm:
        try:
            warmup()
        except Exception:  # a broken stage shows up again, file by file, as `failed`
            logger.exception("warm-up failed")
    if memory_mb > 0:
        cap = _address_space_bytes() + memory_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    conn.send(("ready",))
    while True:
        chunk = conn.recv()
        if chunk is None:
            return
        for index, path in chunk:
            conn.send(_convert_one(index, path, converter, memory_mb))


def _convert_one(index: int, path: str, converter: Converter, memory_mb: int) -> tuple:
    """(index, status, reason, arrays, n_notes, n_steps, seconds, traceback)."""
    t0 = time.perf_counter()
    arrays, notes, steps, tb = None, 0, 0, ""
    try:
        arrays = converter(path)
        status, reason = "ok", ""
        notes = int(arrays["n_notes"])
        steps = len(arrays["melody_pitch"])
    except MidiFileError as error:
        status, reason = "rejected", str(error).removeprefix(f"{path}: ")
        notes, steps = getattr(error, "n_notes", 0), getattr(error, "n_steps", 0)
    except MemoryError:
        status, reason = "failed", f"out of memory (over the {memory_mb} MB cap)"
    except Exception as error:  # a bug in a stage: recorded with its traceback, the run goes on
        status, reason = "failed", f"{type(error).__name__}: {error}"
        tb = traceback.format_exc()
    return index, status, reason, arrays, notes, steps, time.perf_counter() - t0, tb


class _Worker:
    """A worker process, its pipe, and the chunk it is working on."""

    def __init__(
        self,
        ctx: multiprocessing.context.BaseContext,
        converter: Converter,
        warm: bool,
        memory_mb: int,
        lock_fd: int,
        target: Callable[..., None] = _worker_main,
    ):
        parent, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=target, args=(child, converter, warm, memory_mb, lock_fd), daemon=True)
        self.proc.start()
        child.close()
        self.conn = parent
        self.ready = False
        self.chunk: deque[int] = deque()
        self.since = time.monotonic()

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.proc.kill()
        self.proc.join(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError, BrokenPipeError):
            self.conn.send(None)
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.kill()
        with contextlib.suppress(OSError):
            self.conn.close()


def _death_reason(proc: multiprocessing.Process) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"worker died (memory cap?): killed by {signal.Signals(-code).name}"
    return f"worker died (memory cap?): exit code {code}"


# ----------------------------------------------------------------------------- the run


def convert_corpus(
    sources: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    workers: int | None = None,
    max_onsets: MaxOnsets = "beat",
    timeout_sec: float = 10.0,
    memory_mb: int = 1024,
    songs_per_shard: int = 256,
    chunk_size: int = 8,
    progress: ProgressCallback | None = None,
    converter: Converter | None = None,
    scheduler: str | None = None,
) -> ConvertSummary:
    """Convert every MIDI file under ``sources`` into training shards in ``out_dir``.

    Parameters
    ----------
    sources : sequence of str or os.PathLike
        MIDI files and folders (searched recursively for ``MIDI_SUFFIXES``).
    out_dir : str or os.PathLike
        Created if needed. A folder holding an earlier run is resumed: files recorded
        ``ok`` or ``rejected`` are skipped, ``failed`` ones are tried again.
    workers : int, optional
        Worker processes; by default one per CPU.
    max_onsets : {"beat", "half_beat"}
        Melody simplification (see ``pipeline.song_arrays``).
    timeout_sec : float
        A file still converting after this long has its worker killed and is ``failed``.
    memory_mb : int
        Address space each worker may add (``RLIMIT_AS``) beyond what it holds after its
        warm-up; 0 for no cap.
    songs_per_shard : int
    chunk_size : int
        Files sent to a worker at once (fewer near the end of the run).
    progress : callable, optional
        Called as ``progress(done, total, counts)`` after each file; without it a log line
        is written every 10 s.
    converter : callable, optional
        ``converter(path) -> arrays`` run in the workers, in place of
        ``pipeline.convert_file`` (for tests and for other pipelines). Workers are forked,
        so any function will do; on a cluster it must be importable (or picklable) there.
    scheduler : str, optional
        Convert on a Dask cluster instead of the local pool (``chiptuner.corpus.cluster``): a
        scheduler's address, or ``local:N`` for a local cluster of N worker processes.
        Not with ``workers``. Every worker must see ``sources`` and ``out_dir`` at the same paths.

    Returns
    -------
    ConvertSummary

    Raises
    ------
    ParameterError
        A bad option, a missing source, no MIDI file found, an unwritable ``out_dir``, or an
        ``out_dir`` converted with other options; a bad or unreachable ``scheduler``.
    OutputError
        Another run is writing into ``out_dir``, or a write into it failed (a full disk):
        the shards and report written so far stay, and the same call resumes.
    """
    if max_onsets not in typing.get_args(MaxOnsets):
        raise ParameterError(f"max_onsets is {max_onsets!r}; use one of {typing.get_args(MaxOnsets)}")
    on_cluster = None
    if scheduler is not None:
        if workers is not None:
            raise ParameterError("--workers is for the local pool; with --scheduler the cluster's workers do the work")
        try:
            from chiptuner.corpus import cluster as on_cluster  # noqa: PLC0415 (dask is an optional extra)
        except ImportError as error:
            raise ParameterError(
                f"--scheduler needs dask.distributed ({error}); install it with pip install 'chiptuner[cluster]'"
            ) from None
        on_cluster.check_scheduler(scheduler)
    workers = (os.cpu_count() or 1) if workers is None else workers
    for name, value, low in (
        ("workers", workers, 1),
        ("songs_per_shard", songs_per_shard, 1),
        ("chunk_size", chunk_size, 1),
        ("memory_mb", memory_mb, 0),
    ):
        if not isinstance(value, int) or value < low:
            raise ParameterError(f"{name} is {value!r}; it must be an integer >= {low}")
    if not timeout_sec > 0:
        raise ParameterError(f"timeout_sec is {timeout_sec!r}; it must be a positive number of seconds")

    files = find_midi_files(sources)
    if not files:
        listed = ", ".join(str(source) for source in sources)
        raise ParameterError(f"no MIDI files ({'/'.join(MIDI_SUFFIXES)}) found in {listed}")
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ParameterError(
            f"cannot write to {out}: {error.strerror or error}; choose a writable folder with -o"
        ) from None

    lock_fd = _lock(out)
    books = cluster = None
    try:
        options = {"max_onsets": max_onsets, "steps_per_beat": STEPS_PER_BEAT}
        books = _Books(out, options, files, songs_per_shard=songs_per_shard, progress=progress)
        if books.skipped:
            logger.info(
                "%d of %d files already converted in %s; doing the other %d",
                books.skipped,
                len(files),
                out,
                len(books.todo),
            )
        warm = converter is None
        if converter is None:
            converter = functools.partial(convert_file, max_onsets=max_onsets, steps_per_beat=STEPS_PER_BEAT)
        if on_cluster is not None:
            cluster = on_cluster.Cluster(scheduler)
            cluster.convert(
                books, converter, warm=warm, timeout_sec=timeout_sec, memory_mb=memory_mb, chunk_size=chunk_size
            )
        else:
            _Run(
                books,
                converter,
                warm=warm,
                workers=min(workers, max(len(books.todo), 1)),
                timeout_sec=timeout_sec,
                memory_mb=memory_mb,
                chunk_size=chunk_size,
                lock_fd=lock_fd,
            ).go()
        books.flush()
        books.write_report()
    except KeyboardInterrupt:
        if books is not None:
            books.flush()
            books.write_report()
        raise
    except OutputError:
        # The journal covers what was written; the report may fit where a shard did not.
        if books is not None:
            with contextlib.suppress(OutputError):
                books.write_report()
        raise
    finally:
        if books is not None:
            books.close()
        if cluster is not None:
            cluster.close()
        os.close(lock_fd)
    summary = books.summary()
    logger.debug(summary.line())
    return summary


def _lock(out: Path) -> int:
    """Take ``out``'s lock for this run (an exclusive ``flock``); the descriptor to close at its end.

    Two runs in one folder would delete each other's shards and reuse each other's shard
    names. The lock file stays: removing it would let a third run lock a new file while the
    second still holds the old one.
    """
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise ParameterError(
            f"cannot write to {out}: {error.strerror or error}; choose a writable folder with -o"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = f" (pid {int(os.pread(fd, 32, 0))})"
        except (OSError, ValueError):  # it has not written its pid yet
            holder = ""
        os.close(fd)
        raise OutputError(
            f"{out} is in use by another chiptuner convert{holder}; "
            "wait for it to finish or choose another folder with -o"
        ) from None
    except OSError as error:
        os.close(fd)
        raise OutputError(
            f"{out}: cannot lock {LOCK_NAME} ({error.strerror or error}); choose a folder on a local disk with -o"
        ) from None
    # The pid is for the message above; on a full disk it may not fit, and the lock holds anyway.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class _Run:
    """The local pool: dispatch files to worker processes, hand each result to the books."""

    def __init__(
        self,
        books: _Books,
        converter: Converter,
        *,
        warm: bool,
        workers: int,
        timeout_sec: float,
        memory_mb: int,
        chunk_size: int,
        lock_fd: int,
    ) -> None:
        self.books = books
        self.todo = books.todo
        self.converter = converter
        self.warm = warm
        self.n_workers = workers
        self.timeout_sec = timeout_sec
        self.memory_mb = memory_mb
        self.chunk_size = chunk_size
        self.lock_fd = lock_fd
        self.ctx = multiprocessing.get_context("fork")
        self.pending: deque[int] = deque(range(len(self.todo)))
        self.start_deaths = 0

    def _spawn(self) -> _Worker:
        return _Worker(self.ctx, self.converter, self.warm, self.memory_mb, self.lock_fd)

    def _retire(self, worker: _Worker, reason: str) -> None:
        """Kill a hung or dead worker: its current file failed, the rest of its chunk back in the queue."""
        worker.kill()
        if worker.chunk:
            self.books.record(worker.chunk.popleft(), "failed", reason, None, 0, 0, time.monotonic() - worker.since, "")
            self.pending.extendleft(reversed(worker.chunk))
            worker.chunk.clear()

    def _dispatch(self, worker: _Worker) -> None:
        size = max(1, min(self.chunk_size, len(self.pending) // (2 * self.n_workers)))
        chunk = [self.pending.popleft() for _ in range(min(size, len(self.pending)))]
        worker.chunk.extend(chunk)
        worker.since = time.monotonic()
        worker.conn.send([(index, self.todo[index].path) for index in chunk])

    def _drain(self, worker: _Worker) -> bool:
        """Record every message the worker has sent; False when its pipe is closed (it died).

        Only reading the pipe is the worker's business: an error while recording (a full disk
        under ``_Books.flush``) is the run's, and goes up.
        """
        while True:
            try:
                if not worker.conn.poll():
                    return True
                message = worker.conn.recv()
            except (EOFError, OSError):
                return False
            except Exception:  # a message cut off by the worker's death
                logger.debug("unreadable message from a dying worker", exc_info=True)
                return False
            if message[0] == "ready":
                worker.ready = True
                self.start_deaths = 0
                continue
            index = message[0]
            if worker.chunk and worker.chunk[0] == index:
                worker.chunk.popleft()
            worker.since = time.monotonic()
            self.books.record(*message)

    def go(self) -> None:
        """Convert every file of ``books.todo``; workers are stopped (killed on an error) on the way out."""
        pool: list[_Worker] = []
        try:
            pool = [self._spawn() for _ in range(self.n_workers)] if self.todo else []
            while self.pending or any(worker.chunk for worker in pool):
                for worker in pool:
                    if worker.ready and not worker.chunk and self.pending:
                        self._dispatch(worker)
                waits = [w.conn for w in pool] + [w.proc.sentinel for w in pool]
                now = time.monotonic()
                deadlines = [w.since + self.timeout_sec - now for w in pool if w.chunk]
                timeout = min([0.5, *deadlines])
                multiprocessing.connection.wait(waits, timeout=max(timeout, 0.0))
                for i, worker in enumerate(pool):
                    alive = self._drain(worker) and worker.proc.is_alive()
                    if not alive:
                        # the pipe may still hold results sent just before death
                        self._drain(worker)
                        self._retire(worker, _death_reason(worker.proc))
                        if not worker.ready:
                            self.start_deaths += 1
                            if self.start_deaths > 3 * self.n_workers + 3:
                                raise ChiptunerError(
                                    f"worker processes die while starting ({_death_reason(worker.proc)}); "
                                    "try a larger --memory-mb"
                                )
                        pool[i] = self._spawn()
                    elif not worker.ready and time.monotonic() - worker.since > max(120.0, self.timeout_sec):
                        worker.kill()
                        self.start_deaths += 1
                        if self.start_deaths > 3 * self.n_workers + 3:
                            raise ChiptunerError("worker processes hang while starting (numba cache locked?)")
                        pool[i] = self._spawn()
                    elif worker.chunk and time.monotonic() - worker.since > self.timeout_sec:
                        self._retire(worker, f"timeout after {self.timeout_sec:g} s")
                        pool[i] = self._spawn()
        except BaseException:
            for worker in pool:
                worker.kill()
            pool = []
            raise
        finally:
            for worker in pool:
                worker.stop()
