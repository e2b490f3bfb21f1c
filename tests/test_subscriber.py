"""The subscriber's table and JSON lines, rendered without a terminal."""

from __future__ import annotations

import io
import json

from rich.console import Console

from streamer.transport import wire
from streamer.apps.subscriber import EVENTS_KEPT, View, is_settled, label_json, render
from streamer.ops.tally import LATENCY_SAMPLES


def _label(stream: str, seq: int, label: str, truth: str, truth_since: int = 0, warming: bool = False) -> wire.Label:
    return wire.Label(stream=stream, seq=seq, t_capture=100.0, t_publish=100.01, label=label, score=0.8,
                      top_k=[(label, 0.8), ("FadeIn", 0.1), ("Assemble", 0.05)], warming=warming,
                      frames_in_window=min(seq + 1, 32), model_id="cnnlstm-x", stages={}, truth=truth,
                      truth_since=truth_since)


def test_table_shows_latest_label_latency_and_live_accuracy_per_stream():
    view = View()
    view.add_label(_label("cam1", 40, "GrowShape", "GrowShape"), received=100.025)
    view.add_label(_label("cam1", 41, "FadeOut", "GrowShape"), received=100.030)
    view.add_label(_label("cam0", 5, "Assemble", "Disperse", warming=True), received=100.020)
    console = Console(file=io.StringIO(), width=200)
    console.print(render(view))
    text = console.file.getvalue()
    cam0, cam1 = [line for line in text.splitlines() if "cam0" in line][0], [l for l in text.splitlines() if "cam1" in l][0]
    assert "FadeOut" in cam1 and "30.0" in cam1 and "50.0%" in cam1  # 1 of 2 settled labels right
    assert "warming up" in cam0 and "Disperse" in cam0 and "-" in cam0.split("Disperse")[1]  # nothing judged yet


def test_only_labels_whose_whole_window_is_one_activity_are_judged():
    assert is_settled(_label("c", 40, "A", "A", truth_since=9))
    assert not is_settled(_label("c", 40, "A", "A", truth_since=10))  # window 9..40 starts before the switch
    assert not is_settled(_label("c", 10, "A", "A", warming=True))
    assert not is_settled(wire.Label(**{**_label("c", 40, "A", "A").__dict__, "truth": None}))


def test_json_line_is_the_whole_message_plus_latency():
    record = json.loads(label_json(_label("cam0", 40, "GrowShape", "GrowShape"), received=100.05))
    assert record["stream"] == "cam0" and record["top_k"][0] == ["GrowShape", 0.8]
    assert abs(record["latency_ms"] - 50.0) < 1e-6


def test_a_long_running_view_keeps_the_newest_latencies_and_events_only():
    view = View()
    label = _label("cam0", 40, "GrowShape", "GrowShape")
    for index in range(LATENCY_SAMPLES + 10):
        view.add_label(label, received=100.0 + index / 1000)  # latency_ms grows by 1 a label
    for index in range(EVENTS_KEPT + 5):
        view.take(wire.StreamStart(stream=f"cam{index}", source="synthetic", fps=30.0, width=64, height=64,
                                   t=0.0), received=0.0)
    assert view.labels == LATENCY_SAMPLES + 10  # every label counted
    assert len(view.latencies_ms) == LATENCY_SAMPLES and round(view.latencies_ms[0]) == 10  # the oldest 10 gone
    assert len(view.events) == EVENTS_KEPT and view.events[-1].startswith(f"cam{EVENTS_KEPT + 4}:")
    console = Console(file=io.StringIO(), width=200)
    console.print(render(view))
    assert f"cam{EVENTS_KEPT + 4}: started" in console.file.getvalue()
