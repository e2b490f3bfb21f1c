"""Prometheus metrics of the pipeline, as the dashboard sees it on the label topic.

Counted here, per message received: labels per stream, the end-to-end latency histogram (frame
captured -> label received here) and one histogram per stage (from the `stages` each label
carries). Read from the processes' own stats at scrape time: frames and drops by process and
reason, restarts, queue depths. Plus the streams live now and an info metric naming the model
and the inference backend. Names follow Prometheus' conventions: `_total`, `_seconds`, base units.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from streamer.apps.dashboard.state import DashboardState, backends, process_rows
from streamer.apps.subscriber import latency_ms
from streamer.transport import wire

PREFIX = "streamer"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class DashboardMetrics:
    def __init__(self, state: DashboardState):
        self.state = state
        self.registry = CollectorRegistry()
        self.labels = Counter(f"{PREFIX}_labels", "Label messages received, per stream", ["stream"],
                              registry=self.registry)
        self.latency = Histogram(f"{PREFIX}_latency_seconds", "End to end: frame captured -> label received here",
                                 ["stream"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stages = Histogram(f"{PREFIX}_stage_seconds", "Time a frame spent in each stage of the pipeline",
                                ["stage"], buckets=STAGE_BUCKETS, registry=self.registry)
        self.malformed = Counter(f"{PREFIX}_malformed_messages", "Messages on the label topic that could not be "
                                 "read (dropped)", registry=self.registry)
        self.registry.register(_FromStats(state))

    def observe(self, message: wire.Message | None, received: float) -> None:
        if message is None:
            self.malformed.inc()
        elif isinstance(message, wire.Label):
            self.labels.labels(message.stream).inc()
            self.latency.labels(message.stream).observe(max(0.0, latency_ms(message, received) / 1000))
            for stage, ms in message.stages.items():
                self.stages.labels(stage).observe(max(0.0, ms / 1000))
            self.stages.labels("publish").observe(max(0.0, received - message.t_publish))


class _FromStats:
    """Series read from the latest stats of every process when Prometheus scrapes."""

    def __init__(self, state: DashboardState):
        self.state = state

    def describe(self):
        return []  # computed at scrape time: nothing to check at registration

    def collect(self):
        with self.state.lock:
            stats = {process: dict(counters) for process, counters in self.state.stats.items()}
            model_ids = sorted({card.label.model_id for card in self.state.cards.values() if card.label})
        frames = CounterMetricFamily(f"{PREFIX}_frames", "Frames per process, by what happened to them "
                                     "(read, sent, processed, labelled)", labels=["process", "what"])
        dropped = CounterMetricFamily(f"{PREFIX}_dropped", "Frames and messages dropped, by process and reason",
                                      labels=["process", "reason"])
        restarts = CounterMetricFamily(f"{PREFIX}_restarts", "Restarts of each process by `run.py up`",
                                       labels=["process"])
        queues = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Items waiting in a process's queue",
                                   labels=["process", "queue"])
        for row in process_rows(stats):
            for what, value in row["frames"].items():
                frames.add_metric([row["process"], what], value)
            for reason, value in row["dropped"].items():
                dropped.add_metric([row["process"], reason], value)
            for queue, value in row["queues"].items():
                queues.add_metric([row["process"], queue], value)
            restarts.add_metric([row["process"]], row["restarts"])
        live = GaugeMetricFamily(f"{PREFIX}_streams_live", "Streams labelled and not ended")
        live.add_metric([], self.state.live_streams())
        info = InfoMetricFamily(f"{PREFIX}_model", "The model the labels come from and the feature backend",
                                labels=["model_id", "backend"])
        for model_id in model_ids or [""]:
            info.add_metric([model_id, ",".join(backends(stats))], {})
        yield from (frames, dropped, restarts, queues, live, info)
