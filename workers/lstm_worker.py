"""The LSTM worker: features from all streams -> rolling-window labels on the label topic.

It binds the features endpoint (feature workers connect and push) and the labels PUB endpoint
(dashboards subscribe). Per stream: features are put back in order (workers/reorder.py), and the
rolling window (models/window.py) advances all streams in one batched step per tick. Quiet
streams are evicted and announced. Upstream stats and stream start/end are republished, so a
dashboard needs one connection for everything.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter, deque

import numpy as np
import torch
import zmq

from configs.settings import Config, add_config_arguments, from_args
from streamer.transport import wire
from streamer.transport.drops import DropCounter
from streamer.runtime.logs import setup_logging
from streamer.transport.sockets import StopFlag, make_socket
from models.sequence_inputs import StreamInputs
from workers.loading import load_sequence_model
from workers.reorder import Ready, StreamOrder
from models.window import StaggeredWindows

log = logging.getLogger("lstm")

MAX_DRAIN = 4096  # messages read per tick at most, so stats and eviction still run under flood


class LstmWorker:
    def __init__(self, config: Config):
        self.config = config
        torch.set_num_threads(1)  # small matrices: one thread is faster than two fighting over them
        loaded = load_sequence_model(config)
        self.classes, self.window, self.model_id = loaded.classes, loaded.window, loaded.model_id
        self.feature_dim = loaded.model.lstm.input_size
        self.windows = StaggeredWindows(loaded.model, loaded.window)
        self.inputs = StreamInputs(loaded.inputs)  # features, or frame-to-frame differences
        self.orders: dict[str, StreamOrder] = {}
        self.ready: dict[str, deque[tuple[Ready, float]]] = {}
        self.last_seen: dict[str, float] = {}
        self.ended: dict[str, int] = {}  # stream -> session that announced its end
        self.counters: Counter[str] = Counter()
        self.drop = DropCounter(log)
        self.step_ms_total = 0.0

    def run(self, stop: StopFlag) -> int:
        config = self.config
        context = zmq.Context()
        features_in = make_socket(context, zmq.PULL, config.endpoints.features, bind=True, security=config.security,
                                  hwm=1000)
        labels_out = make_socket(context, zmq.PUB, config.endpoints.labels, bind=True, security=config.security,
                                 hwm=10000)
        last_stats = time.monotonic()
        log.info("LSTM worker ready: features on %s, labels on %s (model %s, window %d, %d classes, reads %s)",
                 config.endpoints.features, config.endpoints.labels, self.model_id, self.window, len(self.classes),
                 self.inputs.kind)
        try:
            while not stop:
                if features_in.poll(self._poll_timeout_ms()):
                    self._drain(features_in, labels_out)
                self._release_gaps()
                self._advance(labels_out)
                self._evict_quiet(labels_out)
                if time.monotonic() - last_stats >= config.lstm.stats_interval_s:
                    last_stats = time.monotonic()
                    wire.publish(labels_out, wire.Stats(process="lstm", t=time.time(), counters=self.stats()))
        finally:
            features_in.close()
            labels_out.close()
            context.term()
        return 0

    def stats(self) -> dict[str, float]:
        steps = self.counters["steps"]
        return {**self.counters, **self.drop.counters(), "streams": len(self.orders),
                "held_for_order": sum(len(o.pending) for o in self.orders.values()),
                "ready_queue": sum(len(q) for q in self.ready.values()),
                "gaps": sum(o.gaps for o in self.orders.values()),
                "step_ms": self.step_ms_total / steps if steps else 0.0}

    def _poll_timeout_ms(self) -> int:
        deadlines = [d for d in (o.next_deadline() for o in self.orders.values()) if d is not None]
        if not deadlines:
            return 100
        return int(max(0.0, min(deadlines) - time.monotonic()) * 1000) + 1

    def _drain(self, features_in: zmq.Socket, labels_out: zmq.Socket) -> None:
        for _ in range(MAX_DRAIN):
            try:
                parts = features_in.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            received = time.time()
            try:
                message = wire.unpack(parts)
            except wire.WireError as error:
                self.drop(error.reason, str(error))
                continue
            if isinstance(message, wire.FeatureBatch):
                for feature in message.features:
                    self._accept(feature, received)
            elif isinstance(message, wire.Feature):
                self._accept(message, received)
            elif isinstance(message, wire.Stats):
                wire.publish(labels_out, message)
            elif isinstance(message, wire.StreamStart):
                self.ended.pop(message.stream, None)
                wire.publish(labels_out, message)
            elif isinstance(message, wire.StreamEnd):
                self._end_stream(message.stream, labels_out, message.reason)
            else:
                self.drop("kind", f"a {type(message).__name__} message arrived on the features socket")

    def _accept(self, feature: wire.Feature, received: float) -> None:
        if feature.vector.shape[0] != self.feature_dim:
            self.drop("feature_size", f"stream {feature.stream}: {feature.vector.shape[0]}-d feature, the LSTM "
                                       f"takes {self.feature_dim}-d; is the feature worker using the same bundle?")
            return
        if self.ended.get(feature.stream) == feature.session:
            self.drop("after_end", f"stream {feature.stream}: feature after its stream-end message")
            return
        order = self.orders.get(feature.stream)
        if order is None:
            order = self.orders[feature.stream] = StreamOrder(wait_s=self.config.lstm.reorder_wait_ms / 1000,
                                                              max_pending=self.window)
            self.ready[feature.stream] = deque()
        now = time.monotonic()
        self.last_seen[feature.stream] = now
        stale_before = order.stale
        for item in order.push(feature, now):
            self.ready[feature.stream].append((item, received))
        if order.stale != stale_before:
            self.drop("late", f"stream {feature.stream}: seq {feature.seq} came after its place was given up")

    def _release_gaps(self) -> None:
        now = time.monotonic()
        for stream, order in self.orders.items():
            if order.pending:
                self.ready[stream].extend((item, time.time()) for item in order.release(now))

    def _advance(self, labels_out: zmq.Socket) -> None:
        """One batched step per round: the next in-order frame of every stream that has one."""
        while True:
            heads = [(stream, queue.popleft()) for stream, queue in self.ready.items() if queue]
            if not heads:
                return
            for stream, (item, _) in heads:
                if item.restart:
                    if self.windows.frames_seen(stream):
                        self.counters["window_restarts"] += 1
                    self.windows.reset(stream)
                    self.inputs.reset(stream)
            started = time.time()
            outputs = self.windows.step([(stream, self.inputs.next(stream, item.feature.vector))
                                         for stream, (item, _) in heads])
            step_ms = (time.time() - started) * 1000
            self.step_ms_total += step_ms
            self.counters["steps"] += 1
            # every stream's top classes in one sort, not one per label
            tops = np.argsort(-np.stack([output.probabilities for output in outputs]), axis=1)[:, :self.config.lstm.top_k]
            for (stream, (item, received)), output, order in zip(heads, outputs, tops):
                self._publish_label(labels_out, item.feature, output, order, received, started, step_ms)

    def _publish_label(self, labels_out, feature: wire.Feature, output, order: np.ndarray, received: float,
                       started: float, step_ms: float) -> None:
        probabilities = output.probabilities
        stages = dict(feature.stages)
        stages["transport_features"] = max(0.0, (received - feature.t_sent) * 1000)
        stages["queue_lstm"] = max(0.0, (started - received) * 1000)
        stages["lstm"] = step_ms
        label = wire.Label(stream=feature.stream, seq=feature.seq, t_capture=feature.t_capture,
                           t_publish=time.time(), label=self.classes[order[0]], score=float(probabilities[order[0]]),
                           top_k=[(self.classes[i], float(probabilities[i])) for i in order],
                           warming=output.warming, frames_in_window=output.frames_in_window,
                           model_id=self.model_id, stages=stages, truth=feature.truth,
                           truth_since=feature.truth_since)
        wire.publish(labels_out, label)
        self.counters["labels"] += 1

    def _end_stream(self, stream: str, labels_out: zmq.Socket, reason: str) -> None:
        order = self.orders.get(stream)
        if order is not None:
            self.ended[stream] = order.session
            self.ready[stream].extend((item, time.time()) for item in order.release(float("inf")))
            self._advance(labels_out)  # labels for what already arrived go out before the end
        self._forget(stream)
        wire.publish(labels_out, wire.StreamEnd(stream=stream, reason=reason, t=time.time()))

    def _evict_quiet(self, labels_out: zmq.Socket) -> None:
        limit = time.monotonic() - self.config.lstm.evict_after_s
        for stream in [s for s, seen in self.last_seen.items() if seen < limit]:
            log.info("stream %s silent for %.0f s: state evicted", stream, self.config.lstm.evict_after_s)
            self.counters["evicted"] += 1
            self._forget(stream)
            wire.publish(labels_out, wire.StreamEnd(stream=stream, reason="evicted", t=time.time()))

    def _forget(self, stream: str) -> None:
        self.orders.pop(stream, None)
        self.ready.pop(stream, None)
        self.last_seen.pop(stream, None)
        self.windows.remove(stream)
        self.inputs.remove(stream)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)


def main(args: argparse.Namespace) -> int:
    setup_logging("lstm")
    return LstmWorker(from_args(args)).run(StopFlag())
