"""The live command on real ports and its start-up.

Group "realtime": the JACK round trip (note-on sent -> pulse1's note-on heard) through
``python -m chiptuner.live`` with the model, against a bare echo inside one JACK client's
process callback (the floor), measured in the same run on a private JACK dummy server (256-frame period); skipped
with the reason where jackd is absent. Group "startup": ``--help`` and the time from spawning
the command to its "ready" line with a warm numba cache. (The engine's own note -> notes
processing time is benched in bench/test_bench_engine.py.)
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from bench.conftest import budget
from tests.jack import ROOT, LiveProcess, Player, engine_ports, jack_server, percentile

_MEDIAN_SEC: dict[str, float] = {}
_ROUND_TRIPS = 100


@pytest.fixture(scope="module")
def jack_env():
    with jack_server() as env:
        yield env


def _bench_round_trip(benchmark, command: list[str], env: dict[str, str]) -> None:
    """Round trips through the process ``command`` (its ports: chiptuner:in, chiptuner-NN:out)."""
    peer = LiveProcess(command, env).wait_ready()
    player = Player(*engine_ports())
    rng = random.Random(0)
    pitches = iter(range(10**9))
    try:

        def setup():
            time.sleep(0.02 + 0.03 * rng.random())  # 20-50 ms apart: every phase of the 5.3 ms cycle
            player.heard.clear()
            return (60 + next(pitches) % 24,), {}

        def round_trip(pitch: int) -> None:
            player.send((0x90, pitch, 100))
            if not player.heard.wait(0.5):
                raise AssertionError(f"no answer to note {pitch} from {command[2:]}: {peer.stderr}")

        def release(pitch: int) -> None:
            player.send((0x80, pitch, 0))

        benchmark.pedantic(round_trip, setup=setup, teardown=release, rounds=_ROUND_TRIPS, warmup_rounds=3)
    finally:
        peer.process.send_signal(signal.SIGINT)  # stop the peer first: closing a player it sends to can deadlock
        try:
            peer.wait(30)
        finally:
            peer.stop()
            player.close()


@pytest.mark.benchmark(group="realtime")
def test_bench_jack_round_trip_bare_echo(benchmark, jack_env):
    """The floor: one JACK client that writes each note back inside the process callback it came in."""
    _bench_round_trip(benchmark, [sys.executable, "-m", "tests.jack", "echo", "300"], jack_env)
    if benchmark.disabled:
        return
    _MEDIAN_SEC["echo"] = benchmark.stats.stats.median


@pytest.mark.benchmark(group="realtime")
def test_bench_jack_round_trip_engine(benchmark, jack_env):
    command = [sys.executable, "-m", "chiptuner.live", "--midi-api", "jack", "--no-sound", "--no-record"]
    _bench_round_trip(benchmark, command, jack_env)
    if benchmark.disabled:
        return
    stats = benchmark.stats.stats
    median_ms, p99_ms = stats.median * 1e3, percentile(stats.data, 99) * 1e3
    benchmark.extra_info["p99_ms"] = round(p99_ms, 2)
    limits = budget("live")
    assert median_ms <= limits["round_trip_median_ms"]
    assert p99_ms <= limits["round_trip_p99_ms"]
    if "echo" not in _MEDIAN_SEC:
        pytest.skip("test_bench_jack_round_trip_bare_echo did not run in this session")
    over_ms = median_ms - _MEDIAN_SEC["echo"] * 1e3
    benchmark.extra_info["over_bare_echo_ms"] = round(over_ms, 2)
    assert over_ms <= limits["round_trip_over_echo_ms"], f"the engine adds {over_ms:.2f} ms to a bare echo"


@pytest.mark.benchmark(group="startup")
def test_bench_help(benchmark):
    command = [sys.executable, "-m", "chiptuner.live", "--help"]
    result = benchmark.pedantic(
        subprocess.run, args=(command,), kwargs={"cwd": ROOT, "capture_output": True, "text": True, "check": True},
        rounds=5, warmup_rounds=1,
    )  # fmt: skip
    assert "--midi-api" in result.stdout
    if benchmark.disabled:
        return
    assert benchmark.stats.stats.median <= budget("live")["help_sec"]


@pytest.mark.benchmark(group="startup")
def test_bench_ready_to_play(benchmark):
    """Spawn -> "ready" (model loaded, every kernel and the chip synth warmed up); a first run warms the cache."""
    command = [sys.executable, "-m", "chiptuner.live", "--demo", "--fast", "--no-record", "--seconds", "0.01"]

    running: list[LiveProcess] = []

    def start() -> None:
        running.append(LiveProcess(command, None).wait_ready())

    def finish() -> None:
        live = running.pop()
        assert live.wait(60) == 0, live.stderr

    benchmark.pedantic(start, teardown=finish, rounds=3, warmup_rounds=1)
    while running:  # --benchmark-disable runs `start` once and no teardown
        finish()
    if benchmark.disabled:
        return
    assert benchmark.stats.stats.median <= budget("live")["ready_sec"]
