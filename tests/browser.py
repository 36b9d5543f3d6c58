"""The browser front end under test: ``python -m chiptuner.live --web`` as a process, and headless Chromium.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright for Python with
``executable_path`` (Playwright's own browser download does not work here); each launch
gets a fresh profile. Used by tests/test_web.py and bench/test_bench_web.py, which skip
with the reason where Chromium or Playwright is missing.
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("CHIPTUNER_CHROMIUM", "/usr/bin/chromium"))
#: Where the browser tests leave their artefacts (the screenshot, the latency figures).
ARTIFACTS = Path(os.environ.get("CHIPTUNER_ARTIFACTS", ROOT / "tests" / "artifacts"))
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
#: Piano keys of the page, left to right (C4 up to F5 in the default octave).
WHITE_KEYS = ["a", "s", "d", "f", "g", "h", "j", "k", "l", ";", "'"]


def need_browser():
    """Playwright's ``sync_playwright``; skips the test where Chromium or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium; or set CHIPTUNER_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        pytest.skip("needs Playwright for Python (pip install playwright; no `playwright install`)")
    try:
        import websockets  # noqa: F401, PLC0415
    except ImportError:
        pytest.skip("needs websockets (pip install 'chiptuner[live]')")
    return sync_playwright


def need_websockets() -> None:
    """Skip where the server's websockets package is missing."""
    pytest.importorskip("websockets", reason="needs websockets (pip install 'chiptuner[live]')")


class WebProcess:
    """``python -m chiptuner.live --web --no-browser --port 0 ...``: its URL, output and exit."""

    def __init__(self, *args: str, record: Path | None = None) -> None:
        folder = ["--record", str(record)] if record is not None else ["--no-record"]
        command = [sys.executable, "-m", "chiptuner.live", "--web", "--no-browser", "--port", "0", *folder, *args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for stream, keep in ((self.process.stdout, self.stdout), (self.process.stderr, self.stderr)):
            threading.Thread(target=self._read, args=(stream, keep), daemon=True).start()
        self.url = self._wait_url()
        self.host = self.url.split("//", 1)[1].rstrip("/")

    def _read(self, stream, keep: list[str]) -> None:
        for line in stream:
            keep.append(line)
            self._lines.put(line)

    def _wait_url(self, timeout_sec: float = 120.0) -> str:
        deadline = time.monotonic() + timeout_sec
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            if line.startswith("chiptuner: play at "):
                return line.split(" at ", 1)[1].strip()
        self.process.kill()
        raise AssertionError(f"the web server did not start: {''.join(self.stderr)}")

    @property
    def ws_url(self) -> str:
        """The WebSocket's address."""
        return f"ws://{self.host}/ws"

    @property
    def origin(self) -> str:
        """The page's own origin."""
        return f"http://{self.host}"

    def stop(self, timeout_sec: float = 60.0) -> int:
        """Ctrl-C, as a player would; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout_sec)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@contextlib.contextmanager
def web_server(*args: str, record: Path | None = None) -> Iterator[WebProcess]:
    """A running web server, stopped with Ctrl-C on the way out."""
    server = WebProcess(*args, record=record)
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def chromium(sync_playwright) -> Iterator:
    """Headless Chromium with a fresh profile: a Playwright browser context."""
    with tempfile.TemporaryDirectory(prefix="chiptuner-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        try:
            yield context
        finally:
            context.close()


def open_page(context, url: str, *, init_script: str | None = None):
    """A new tab on the page, connected and greeted; page errors are kept in ``page.errors``."""
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    if init_script:
        page.add_init_script(init_script)
    page.goto(url)
    page.wait_for_function(
        "() => window.chiptunerStats && chiptunerStats.connected && chiptunerStats.hello", timeout=30000
    )
    return page


def stats(page) -> dict:
    """The page's ``window.chiptunerStats`` figures."""
    return page.evaluate(
        """() => ({notes: {...chiptunerStats.notes}, latenciesMs: [...chiptunerStats.latenciesMs],
                 maxLevel: chiptunerStats.maxLevel, errors: [...chiptunerStats.errors],
                 settings: chiptunerStats.settings, recording: chiptunerStats.recording,
                 audioState: chiptunerStats.audioState(), midiInputs: chiptunerStats.midiInputs,
                 rollInWorker: chiptunerStats.rollInWorker})"""
    )


def press(page, key: str, hold_sec: float = 0.12) -> None:
    """Key down, hold, key up."""
    page.keyboard.down(key)
    time.sleep(hold_sec)
    page.keyboard.up(key)


def percentile(values, q: float) -> float:
    """The q-th percentile (nearest rank), as the page computes it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def measure_latency(page, *, presses: int = 50, seed: int = 0) -> list[float]:
    """Key presses at random phases of the step grid; the page's key -> sound-scheduled times (ms)."""
    rng = random.Random(seed)
    already = len(stats(page)["latenciesMs"])
    for i in range(presses):
        key = WHITE_KEYS[i % 8]
        page.keyboard.down(key)
        time.sleep(0.03 + 0.04 * rng.random())
        page.keyboard.up(key)
        time.sleep(0.03 + 0.06 * rng.random())
    time.sleep(0.3)
    return stats(page)["latenciesMs"][already:]


def colour_pixels(context, png: bytes, colours: dict[str, str], tolerance: int = 24) -> dict[str, int]:
    """How many pixels of a PNG are near each ``#rrggbb`` colour (decoded by the browser on a blank tab)."""
    page = context.new_page()
    try:
        return page.evaluate(
            """async ([data, colours, tolerance]) => {
                const image = new Image();
                image.src = "data:image/png;base64," + data;
                await image.decode();
                const canvas = document.createElement("canvas");
                canvas.width = image.width;
                canvas.height = image.height;
                const draw = canvas.getContext("2d");
                draw.drawImage(image, 0, 0);
                const pixels = draw.getImageData(0, 0, image.width, image.height).data;
                const counts = {};
                for (const [name, hex] of Object.entries(colours)) {
                    const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
                    let n = 0;
                    for (let i = 0; i < pixels.length; i += 4) {
                        if (Math.abs(pixels[i] - rgb[0]) <= tolerance && Math.abs(pixels[i + 1] - rgb[1]) <= tolerance
                            && Math.abs(pixels[i + 2] - rgb[2]) <= tolerance) n++;
                    }
                    counts[name] = n;
                }
                return counts;
            }""",
            [base64.b64encode(png).decode(), colours, tolerance],
        )
    finally:
        page.close()
