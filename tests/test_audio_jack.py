"""Live sound for real: the demo through PortAudio into a private JACK server (dummy driver)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.jack import SAMPLE_RATE, jack_server

try:
    import sounddevice  # noqa: F401 (PortAudio must load for live audio)
except (ImportError, OSError) as error:
    pytest.skip(f"live audio needs sounddevice and PortAudio ({error})", allow_module_level=True)

SUMMARY = re.compile(r"audio: (\d+) blocks of (\d+) frames, (\d+) underflows, peak ([\d.]+)")


def _play_demo() -> tuple[float, int, float, str]:
    """Seconds of sound the device took, underflows, peak and the command's stderr, for a 3-second demo."""
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
    return blocks * frames / SAMPLE_RATE, underflows, peak, result.stderr  # the synth runs at the server's rate


def test_the_demo_plays_through_the_audio_device_without_starving():
    seconds, underflows, peak, stderr = _play_demo()
    if underflows:
        # A shared two-core host can take the CPU from the audio thread for a period once; a synth
        # too slow for the device starves in every run, so one more run tells the two apart.
        first = stderr
        seconds, underflows, peak, stderr = _play_demo()
        assert underflows == 0, f"the device starved in two runs in a row:\n{first}\n{stderr}"
    assert 2.5 < seconds < 4.0  # the callback kept pace with the device for the whole run
    assert peak > 0.05  # the band was heard
