"""The live engine's own processing, drivers excluded (group "realtime").

The engine runs on virtual time (``Timeline``) so that no sleep or port is measured; its
``timer`` is the processor's clock, so the latencies it reports are the real cost of
handling a note (player's note in -> lead out) and a step (deadline -> voices out).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.conftest import budget
from chiptuner.live.engine import Engine, Recorder, Timeline
from chiptuner.model.arranger import Arranger, load_model, warmup


@pytest.fixture(scope="module")
def model():
    model = load_model()
    warmup(model)
    return model


def _melody(n_notes: int, offset_sec: float) -> list:
    rng = np.random.default_rng(0)
    messages = []
    for i in range(n_notes):
        t = 0.25 + i * 0.25 + offset_sec
        pitch = int(rng.choice([60, 62, 64, 65, 67]))  # five notes: lanes in buttons mode
        messages += [(t, (0x90, pitch, 100)), (t + 0.2, (0x80, pitch, 0))]
    return messages


@pytest.mark.benchmark(group="realtime")
@pytest.mark.parametrize("mode", ["keys", "buttons"])
def test_bench_engine_note_in_to_notes_out(benchmark, model, mode):
    reports = []

    def session():
        # Half the notes land inside the grace window (a replayed step), half between steps.
        messages = _melody(1000, 0.02)[::4] + _melody(1000, 0.07)[2::4] + _melody(1000, 0.07)[3::4]
        messages += _melody(1000, 0.02)[1::4]
        timeline = Timeline(messages)
        engine = Engine(Arranger(model, mode=mode), clock=timeline, inbox=timeline, recorder=Recorder(20_000))
        reports.append(engine.run(until_sec=251.0))

    benchmark.pedantic(session, rounds=1 if benchmark.disabled else 3, iterations=1)
    report = reports[-1]
    assert report.notes_in >= 995 and report.steps == 2008
    note_p99 = float(np.percentile(report.note_latency_us, 99))
    step_p99 = float(np.percentile(report.step_latency_us, 99))
    benchmark.extra_info.update(
        note_p50_us=round(float(np.median(report.note_latency_us)), 1), note_p99_us=round(note_p99, 1),
        step_p50_us=round(float(np.median(report.step_latency_us)), 1), step_p99_us=round(step_p99, 1),
    )  # fmt: skip
    assert note_p99 <= budget("engine")["note_to_lead_p99_us"]
    assert step_p99 <= budget("engine")["step_to_voices_p99_us"]
