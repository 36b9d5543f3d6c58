"""Corpus conversion on a Dask cluster: ``chiptuner convert SRC... -o OUT --scheduler ADDRESS``.

The run's process (the client) keeps the local run's contract: it holds ``OUT/.convert.lock``,
keeps the journal and writes every shard and the report (``convert._Books``); the cluster only
converts. Each task is a batch of files; on its worker, each file goes to a child process of
that worker (forked once, warmed up, capped with ``RLIMIT_AS``, and reused), which is killed
when the file runs over the time limit or dies: the file is ``failed`` with the local pool's
reasons, and the Dask worker itself never hangs or dies for a file. Dask cannot stop a running
task, which is why the limit is enforced there, in the task, and not by the client.

A Dask worker lost mid-task (killed, out of memory in the worker itself) fails its batch's
files once, as ``KilledWorker``: the scheduler must not retry them elsewhere
(``distributed.scheduler.allowed-failures`` 0), and workers must be allowed child processes
(``distributed.worker.daemon`` False). ``local:N`` starts such a cluster; a remote scheduler
is checked for both and refused in one line, naming the setting, where it differs.

Every worker must see the sources and the output folder at the same paths (a shared file
system), and have chiptuner installed (or on its ``PYTHONPATH``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Sequence

import dask
import distributed
from distributed.scheduler import KilledWorker

from chiptuner.corpus.convert import Converter, _Books, _death_reason, _Worker, _worker_main
from chiptuner.errors import ParameterError

__all__ = ["CONFIG", "check_scheduler", "Cluster"]

logger = logging.getLogger(__name__)

#: The settings a cluster must run with: a task whose worker died is failed, not run again on
#: the next worker (a file that kills workers would kill them all), and workers may fork.
CONFIG = {"distributed.scheduler.allowed-failures": 0, "distributed.worker.daemon": False}
LOCAL = re.compile(r"local:(.*)")
#: How long the client tries to reach the scheduler, then waits for a first worker.
CONNECT_SEC = 10.0
FIRST_WORKER_SEC = 60.0
#: Batches in flight per worker thread: one running, one waiting, so no thread idles between.
BATCHES_PER_THREAD = 2
#: How often the number of worker threads (the window of batches in flight) is looked at again.
RESIZE_SEC = 5.0
PR_SET_PDEATHSIG = 1


def check_scheduler(scheduler: str) -> None:
    """Refuse a ``scheduler`` that cannot be right before anything starts (``local:0``, ``local:x``, empty).

    Raises
    ------
    ParameterError
        Naming the problem and the fix.
    """
    match = LOCAL.fullmatch(scheduler)
    if match and not (match.group(1).isdigit() and int(match.group(1)) >= 1):
        raise ParameterError(
            f"--scheduler {scheduler}: N in local:N is the number of worker processes, a whole number >= 1; "
            "e.g. local:4"
        )
    if not scheduler.strip():
        raise ParameterError("--scheduler is empty; give a Dask scheduler's address (tcp://HOST:PORT) or local:N")


# ----------------------------------------------------------------------------- on the workers

#: The converting child of each worker thread: (the run it was started for, the child).
_children: dict[int, tuple[str, _Worker]] = {}


def _child_main(conn: multiprocessing.connection.Connection, *args: object) -> None:
    """``convert._worker_main`` in a child that dies with its Dask worker (a hang must not outlive it)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _worker_main(conn, *args)


def _receive(child: _Worker, seconds: float) -> tuple | str:
    """The child's next message, or why there is none (it was killed at the limit, or died)."""
    try:
        if child.conn.poll(seconds):
            return child.conn.recv()
        reason = f"timeout after {seconds:g} s"
    except Exception:  # EOF, or a message cut off by its death
        reason = ""
    child.kill()
    return reason or _death_reason(child.proc)


def _convert_batch(
    batch: Sequence[tuple[int, str]], converter: Converter, warm: bool, memory_mb: int, timeout_sec: float, run: str
) -> list[tuple]:
    """A task: convert each (index, path) in this worker thread's child, each within ``timeout_sec``.

    Returns ``convert._convert_one``'s tuple per file; a file that hangs or kills the child is
    ``failed`` and the next file gets a new child.
    """
    thread = threading.get_ident()
    results = []
    for index, path in batch:
        t0 = time.monotonic()
        held = _children.pop(thread, None)
        if held is not None and held[0] != run:  # another run's child: another converter
            held[1].stop()
            held = None
        if held is None:
            child = _Worker(multiprocessing.get_context("fork"), converter, warm, memory_mb, -1, target=_child_main)
            ready = _receive(child, max(120.0, timeout_sec))
            if not isinstance(ready, tuple):
                results.append((index, "failed", f"converter process did not start: {ready}", None, 0, 0, 0.0, ""))
                continue
            held = (run, child)
        held[1].conn.send([(index, path)])
        result = _receive(held[1], timeout_sec)
        if isinstance(result, tuple):
            _children[thread] = held
        else:
            result = (index, "failed", result, None, 0, 0, time.monotonic() - t0, "")
        results.append(result)
    return results


def _allowed_failures(dask_scheduler: distributed.Scheduler) -> int:
    return dask_scheduler.allowed_failures


def _daemonic() -> bool:
    return bool(multiprocessing.current_process().daemon)


# ----------------------------------------------------------------------------- the client


class Cluster:
    """The client's connection to a scheduler (and the ``LocalCluster`` it started for ``local:N``).

    Parameters
    ----------
    scheduler : str
        ``local:N``, or an address a ``distributed.Client`` takes (``tcp://HOST:PORT``).

    Raises
    ------
    ParameterError
        The scheduler cannot be reached, has no worker within a minute, or runs with
        settings that break the contract (see ``CONFIG``).
    """

    def __init__(self, scheduler: str) -> None:
        self.scheduler = scheduler
        self.local: distributed.LocalCluster | None = None
        match = LOCAL.fullmatch(scheduler)
        try:
            if match:
                with dask.config.set(CONFIG):
                    self.local = distributed.LocalCluster(
                        n_workers=int(match.group(1)),
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        silence_logs=logging.ERROR,
                    )
                self.client = distributed.Client(self.local)
            else:
                self.client = distributed.Client(scheduler, timeout=CONNECT_SEC)
        except (OSError, ValueError, TypeError) as error:
            self.close()
            raise ParameterError(
                f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({error}); "
                "give the address `dask scheduler` prints (tcp://HOST:PORT), or local:N"
            ) from None
        try:
            self._check()
        except BaseException:
            self.close()
            raise

    def _check(self) -> None:
        failures = self.client.run_on_scheduler(_allowed_failures)
        if failures != 0:
            raise ParameterError(
                f"--scheduler {self.scheduler}: the scheduler retries a task whose worker died "
                f"(allowed-failures {failures}), so a file that kills workers would be run again; "
                "start it with DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0"
            )
        try:
            self.client.wait_for_workers(1, timeout=FIRST_WORKER_SEC)
        except TimeoutError:
            raise ParameterError(
                f"--scheduler {self.scheduler}: no worker joined within {FIRST_WORKER_SEC:g} s; "
                f"start some with `dask worker {self.scheduler}`"
            ) from None
        daemonic = sorted(address for address, flag in self.client.run(_daemonic).items() if flag)
        if daemonic:
            raise ParameterError(
                f"--scheduler {self.scheduler}: worker {daemonic[0]} cannot start the processes that convert "
                "(a daemonic process); start the workers with DASK_DISTRIBUTED__WORKER__DAEMON=False"
            )

    def _window(self) -> int:
        return max(1, BATCHES_PER_THREAD * sum(self.client.nthreads().values()))

    def convert(
        self, books: _Books, converter: Converter, *, warm: bool, timeout_sec: float, memory_mb: int, chunk_size: int
    ) -> None:
        """Convert ``books.todo`` in batches of ``chunk_size`` files, recording each result as it comes.

        At most ``BATCHES_PER_THREAD`` batches per worker thread are out at a time, so the
        client holds few futures and results however large the corpus. On an error (Ctrl-C,
        a failed write) the batches out are cancelled; what runs finishes on its worker and
        is dropped.
        """
        run = uuid.uuid4().hex
        batches = _batches(len(books.todo), chunk_size)
        out: dict[distributed.Future, list[int]] = {}
        done = distributed.as_completed()

        def submit() -> bool:
            batch = next(batches, None)
            if batch is None:
                return False
            work = [(index, books.todo[index].path) for index in batch]
            future = self.client.submit(
                _convert_batch, work, converter, warm, memory_mb, timeout_sec, run, key=f"convert-{run}-{batch[0]}"
            )
            out[future] = batch
            done.add(future)
            return True

        try:
            window, resized = self._window(), time.monotonic()
            while len(out) < window and submit():
                pass
            for future in done:
                for result in _results(future, out.pop(future)):
                    books.record(*result)
                future.release()
                if time.monotonic() - resized > RESIZE_SEC:  # workers come and go
                    window, resized = self._window(), time.monotonic()
                while len(out) < window and submit():
                    pass
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.cancel(list(out))
            raise

    def close(self) -> None:
        """Close the client, and the local cluster if one was started."""
        for thing in (getattr(self, "client", None), self.local):
            if thing is not None:
                with contextlib.suppress(Exception):
                    thing.close()


def _batches(n: int, size: int) -> Iterator[list[int]]:
    for start in range(0, n, size):
        yield list(range(start, min(start + size, n)))


def _results(future: distributed.Future, batch: list[int]) -> list[tuple]:
    """The batch's results, or each of its files ``failed`` with why the task did not finish."""
    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":
        reason = "its task was cancelled (the scheduler lost it)"
    else:
        error = future.exception()
        if isinstance(error, KilledWorker):
            reason = "worker died: the Dask worker running it was lost (KilledWorker); not retried"
        else:
            reason = f"{type(error).__name__}: {error}"
    return [(index, "failed", reason, None, 0, 0, 0.0, "") for index in batch]
