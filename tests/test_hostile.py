"""Peers that lie: an attacker process on loopback against a live pipeline.

`run.py up` runs one synthetic camera, `real`. A separate attacker process (tests/support/attacker.py)
connects to the LSTM worker's features port and the feature worker's frames port and sends forged
sessions, seqs, stream ends and stats, NaN and infinity, deep, wide and huge headers, and
features of 100,000 stream names. Then:
- the real stream's labels go on;
- the LSTM worker's memory stays within RSS_BOUND_MB of what it was before the attack;
- every forgery is counted, by reason, in the workers' stats.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from streamer.transport import wire
from tests.support.pipeline import ROOT, Listener, Pipeline, is_label, is_stats

# The LSTM worker may grow by at most this much while attacked (measured: see the test's printout).
# Without the limits, one 4 MB header of empty maps alone added 282 MB.
RSS_BOUND_MB = 100


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def counters_after(listener: Listener, process: str, since: float) -> dict[str, float]:
    return listener.wait_for(is_stats(process), 20, f"{process} stats", since=since).message.counters


def test_an_attacker_cannot_silence_a_stream_exhaust_memory_or_go_uncounted(tmp_path):
    with Pipeline(tmp_path, ["real=synthetic"]) as pipeline, Listener(pipeline.endpoints["labels"]) as listener:
        listener.wait_for(is_label("real", warming=False), 180, "a warm label of the real stream", since=0,
                          pipeline=pipeline)
        lstm_pid = pipeline.pid("lstm")
        before = {name: counters_after(listener, name, time.monotonic()) for name in ("lstm", "features:0")}
        rss_before = rss_mb(lstm_pid)
        peak = [rss_before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                peak[0] = max(peak[0], rss_mb(lstm_pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        attacker = subprocess.Popen([sys.executable, "-m", "tests.support.attacker", pipeline.endpoints["features"],
                                     pipeline.endpoints["frames"], "real"], cwd=ROOT, stdout=subprocess.PIPE,
                                    text=True)
        while attacker.poll() is None:
            listener.pump(0.5)  # keep receiving: the listener must not be the one that falls behind
            pipeline.assert_running()
            assert time.monotonic() - started < 300, "the attack did not finish in 300 s"
        sent = json.loads(attacker.stdout.read())
        attacked = time.monotonic()

        # The real stream's labels go on after the attack, from frames captured after it.
        wall = time.time()
        listener.wait_for(lambda m: is_label("real")(m) and m.t_capture > wall, 60,
                          "a label of the real stream after the attack", pipeline=pipeline)
        # And every forgery was counted (stats sent after the worker read the last of them).
        flood = sent["flood_streams"]

        def all_counted(counters: dict) -> bool:
            return counters.get("evicted_for_room", 0) - before["lstm"].get("evicted_for_room", 0) >= flood - 1000

        after = listener.wait_for(is_stats("lstm", all_counted), 120, "LSTM stats counting the flood",
                                  since=attacked, pipeline=pipeline).message.counters
        features = counters_after(listener, "features:0", time.monotonic())
        done.set()
        sampler.join()

    def delta(counters: dict, key: str, previous: dict) -> float:
        return counters.get(key, 0) - previous.get(key, 0)

    for reason in ("end_session", "end_unknown", "process", "not_finite", "undecodable", "header_size"):
        assert delta(after, f"dropped_{reason}", before["lstm"]) == sent[reason], (reason, after)
    # Each forged session starts a session of its own (the real one comes back after the reorder wait).
    assert delta(after, "session_changes", before["lstm"]) >= sent["session_changes"]
    assert delta(after, "streams", {}) <= 1000, "lstm.max_streams holds"
    assert delta(features, "dropped_not_finite", before["features:0"]) == sent["frames_not_finite"]
    grown = peak[0] - rss_before
    assert grown < RSS_BOUND_MB, f"the LSTM worker grew {grown:.0f} MB under attack"
    real = [item for item in listener.labels("real", since=started)]
    assert real, "no label of the real stream during or after the attack"
    print(f"\nattack of {sum(sent.values())} messages took {attacked - started:.1f} s; LSTM RSS {rss_before:.0f} MB "
          f"before, peak {peak[0]:.0f} MB (+{grown:.0f} MB, bound {RSS_BOUND_MB} MB); real-stream labels during "
          f"and after: {len(real)}; counted: " + ", ".join(
              f"{key} {delta(after, key, before['lstm']):.0f}" for key in
              ("session_changes", "evicted_for_room", "dropped_end_session", "dropped_end_unknown", "dropped_process",
               "dropped_not_finite", "dropped_undecodable", "dropped_header_size", "dropped_late")))
    assert not any(isinstance(item.message, wire.Stats) and "/" in item.message.process for item in listener.history)
