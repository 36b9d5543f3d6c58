"""The browser front end: key press -> sound scheduled, measured inside the page (group "realtime").

Headless Chromium (Debian's, through Playwright) presses 50 keys on the page of
``python -m chiptuner.live --web``; the page times each key-down event to the moment it
schedules pulse1's note on its WebAudio graph: the WebSocket round trip and the engine's
processing included, the audio output's own buffer not (the browser's, as for any page).
Skipped with the reason where Chromium or Playwright is missing.
"""

from __future__ import annotations

import pytest

from bench.conftest import budget
from tests.browser import chromium, measure_latency, need_browser, open_page, percentile, web_server


@pytest.mark.benchmark(group="realtime")
def test_web_key_press_to_sound_scheduled(benchmark):
    sync_playwright = need_browser()
    limits = budget("web")
    with web_server() as server, chromium(sync_playwright) as context:
        page = open_page(context, server.url)
        latencies = benchmark.pedantic(measure_latency, args=(page,), rounds=1, iterations=1)
        assert page.errors == []
    median, p90 = percentile(latencies, 50), percentile(latencies, 90)
    benchmark.extra_info.update(presses=len(latencies), median_ms=median, p90_ms=p90, max_ms=max(latencies))
    assert len(latencies) >= 48
    assert median < limits["key_to_sound_median_ms"], latencies
    assert p90 < limits["key_to_sound_p90_ms"], latencies
