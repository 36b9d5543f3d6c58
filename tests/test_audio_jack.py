"""Live sound for real: the demo through PortAudio into a private JACK server (dummy driver)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.jack import SAMPLE_RATE, jack_server, twice_on_a_shared_host

try:
    import sounddevice  # noqa: F401 (PortAudio must load for live audio)
except (ImportError, OSError) as error:
    pytest.skip(f"live audio needs sounddevice and PortAudio ({error})", allow_module_level=True)

SUMMARY = re.compile(r"audio: (\d+) blocks of (\d+) frames, (\d+) underflows, peak ([\d.]+)")


def _play_demo(attempt: int) -> None:
    """A 3-second demo through the device: it kept pace, never starved, and the band was heard."""
    with jack_server() as env:
        result = subprocess.run(
            [sys.executable, "-m", "chiptuner.live", "--demo", "--seconds", "3", "--no-record", "--latency", "20"],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    if "no live audio" in result.stderr:
        pytest.skip(f"PortAudio has no JACK output here: {result.stderr.splitlines()[0]}")
    found = SUMMARY.search(result.stderr)
    assert found, result.stderr
    blocks, frames, underflows, peak = int(found[1]), int(found[2]), int(found[3]), float(found[4])
    seconds = blocks * frames / SAMPLE_RATE  # the synth runs at the server's rate
    assert 2.5 < seconds < 4.0, result.stderr  # the callback kept pace with the device for the whole run
    assert underflows == 0, result.stderr
    assert peak > 0.05, result.stderr  # the band was heard


def test_the_demo_plays_through_the_audio_device_without_starving():
    twice_on_a_shared_host(_play_demo)
