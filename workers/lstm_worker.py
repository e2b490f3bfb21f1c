"""The LSTM worker: features from all streams -> rolling-window labels on the label topic.

It binds the features endpoint (feature workers connect and push) and the labels PUB endpoint
(dashboards subscribe). Per stream: features are put back in order (workers/reorder.py), and the
rolling window (models/window.py) advances all streams in one batched step per tick. Quiet
streams are evicted and announced. Upstream stats and stream start/end are republished, so a
dashboard needs one connection for everything.

A peer that can reach the features port cannot take the worker down: per-stream state is capped
(`lstm.max_streams`, the least recently seen stream is evicted and announced), a stream counts as
seen only when one of its features was accepted, an end names its session, and every message
thrown away is counted by reason. Quiet streams are found in O(1) each: `last_seen` is kept in
order of last acceptance.

On a cluster (streamer/ops/cluster/) its cell tells it, in an `Assignment` on the features
socket, which streams it labels from which epoch on. From then on it stamps every label with that
epoch and drops (counted as `unassigned`) the features of any other stream; a stream taken away
is forgotten at once, so a stream that comes back starts a fresh window. One host never sends an
assignment: every stream is labelled, at epoch 0.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter, OrderedDict, deque

import numpy as np
import zmq

from configs.settings import Config, add_config_arguments, from_args
from streamer.transport import wire
from streamer.transport.drops import DropCounter
from streamer.runtime.logs import setup_logging
from streamer.transport.sockets import StopFlag, make_socket
from models.segments import Segmenter, activity_settings, describe
from workers.reorder import Ready, StreamOrder

log = logging.getLogger("lstm")

MAX_DRAIN = 4096  # messages read per tick at most, so stats and eviction still run under flood


class LstmWorker:
    def __init__(self, config: Config):
        import torch  # torch and the models: after `--help` has answered

        from models.sequence_inputs import StreamInputs
        from models.window import StaggeredWindows
        from workers.loading import load_sequence_model

        self.config = config
        torch.set_num_threads(1)  # small matrices: one thread is faster than two fighting over them
        loaded = load_sequence_model(config)
        self.classes, self.window, self.model_id = loaded.classes, loaded.window, loaded.model_id
        self.feature_dim = loaded.model.lstm.input_size
        self.windows = StaggeredWindows(loaded.model, loaded.window)
        self.inputs = StreamInputs(loaded.inputs)  # features, or frame-to-frame differences
        self.activity, source = activity_settings(config.activity, loaded.metrics)
        log.info("activity segments: %s (%s)", describe(self.activity), source)
        self.orders: dict[str, StreamOrder] = {}
        self.ready: dict[str, deque[tuple[Ready, float]]] = {}
        self.last_seen: OrderedDict[str, float] = OrderedDict()  # least recently accepted first
        self.ended: OrderedDict[str, int] = OrderedDict()  # stream -> session that announced its end
        self.counters: Counter[str] = Counter()
        self.drop = DropCounter(log)
        self.step_ms_total = 0.0
        self.segmenters: dict[str, Segmenter] = {}  # stream -> its activity segments (models/segments.py)
        self.epoch = 0  # the cluster's assignment epoch stamped on labels (0: one host)
        self.assigned: set[str] | None = None  # the streams this worker labels (None: every stream, one host)

    def run(self, stop: StopFlag) -> int:
        config = self.config
        context = zmq.Context()
        # A feature message is a few kilobytes: its own size limit keeps the queue below 1000 x that. A
        # feature worker's batch travels as one message, so the limit is never below a full batch's buffer.
        batch_bytes = config.features.max_batch * self.feature_dim * 4
        features_in = make_socket(context, zmq.PULL, config.endpoints.features, bind=True, security=config.security,
                                  hwm=1000, max_message_bytes=max(config.security.max_feature_message_bytes, batch_bytes),
                                  setting="endpoints.features")
        labels_out = make_socket(context, zmq.PUB, config.endpoints.labels, bind=True, security=config.security,
                                 hwm=10000, setting="endpoints.labels")
        # Captures' preview thumbnails, republished for dashboards; a tiny queue, as only the newest matter.
        previews_in = (make_socket(context, zmq.PULL, config.endpoints.previews, bind=True, security=config.security,
                                   hwm=4, max_message_bytes=wire.MAX_PREVIEW_BYTES + 4096, setting="endpoints.previews")
                       if config.capture.preview_fps > 0 else None)
        poller = zmq.Poller()
        poller.register(features_in, zmq.POLLIN)
        if previews_in is not None:
            poller.register(previews_in, zmq.POLLIN)
        last_stats = time.monotonic()
        log.info("LSTM worker ready: features on %s, labels on %s (model %s, window %d, %d classes, reads %s)",
                 config.endpoints.features, config.endpoints.labels, self.model_id, self.window, len(self.classes),
                 self.inputs.kind)
        try:
            while not stop:
                ready = dict(poller.poll(self._poll_timeout_ms()))
                if features_in in ready:
                    self._drain(features_in, labels_out)
                if previews_in in ready:
                    self._relay_previews(previews_in, labels_out)
                self._release_gaps()
                self._advance(labels_out)
                self._evict_quiet(labels_out)
                if time.monotonic() - last_stats >= config.lstm.stats_interval_s:
                    last_stats = time.monotonic()
                    wire.publish(labels_out, wire.Stats(process="lstm", t=time.time(), counters=self.stats()))
        finally:
            features_in.close()
            labels_out.close()
            if previews_in is not None:
                previews_in.close()
            context.term()
        return 0

    def stats(self) -> dict[str, float]:
        steps = self.counters["steps"]
        return {**self.counters, **self.drop.counters(), "streams": len(self.orders),
                "held_for_order": sum(len(o.pending) for o in self.orders.values()),
                "ready_queue": sum(len(q) for q in self.ready.values()),
                "gaps": sum(o.gaps for o in self.orders.values()),
                "step_ms": self.step_ms_total / steps if steps else 0.0, "epoch": self.epoch}

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
                    self._accept(feature, received, labels_out)
            elif isinstance(message, wire.Feature):
                self._accept(message, received, labels_out)
            elif isinstance(message, wire.Stats):
                if message.process == "lstm":  # only this process reports as "lstm"
                    self.drop("process", "stats from upstream calling themselves lstm")
                    continue
                wire.publish(labels_out, message)
            elif isinstance(message, wire.Assignment):
                self._assign(message)
            elif isinstance(message, wire.StreamStart):
                if not self._other_cells(message.stream, "stream start"):
                    self.ended.pop(message.stream, None)
                    wire.publish(labels_out, message)
            elif isinstance(message, wire.StreamEnd):
                if not self._other_cells(message.stream, "stream end"):
                    self._end_stream(message, labels_out)
            else:
                self.drop("kind", f"a {type(message).__name__} message arrived on the features socket")

    def _other_cells(self, stream: str, what: str) -> bool:
        """Whether `stream` is another cell's now (dropped and counted); on one host never."""
        if self.assigned is None or stream in self.assigned:
            return False
        self.drop("unassigned", f"{what} of stream {stream}: not this cell's at epoch {self.epoch}")
        return True

    def _assign(self, assignment: wire.Assignment) -> None:
        """This cell's streams from the assignment's epoch on; older epochs are ignored."""
        if assignment.epoch < self.epoch:
            self.drop("old_epoch", f"assignment of epoch {assignment.epoch}, already at {self.epoch}")
            return
        if assignment.epoch > self.epoch or self.assigned is None:
            log.info("epoch %d: %d stream(s) assigned to cell %s", assignment.epoch, len(assignment.streams),
                     assignment.cell)
        self.epoch, self.assigned = assignment.epoch, set(assignment.streams)
        for stream in [s for s in self.orders if s not in self.assigned]:
            self.counters["moved_away"] += 1  # another cell labels it now: no end is announced for it here
            self.segmenters.pop(stream, None)
            self._forget(stream)

    def _relay_previews(self, previews_in: zmq.Socket, labels_out: zmq.Socket) -> None:
        for _ in range(MAX_DRAIN):
            try:
                parts = previews_in.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message = wire.unpack(parts)
            except wire.WireError as error:
                self.drop(error.reason, f"preview socket: {error}")
                continue
            if not isinstance(message, wire.Preview):
                self.drop("kind", f"a {type(message).__name__} message arrived on the previews socket")
                continue
            if self._other_cells(message.stream, "preview"):
                continue
            wire.publish(labels_out, message)
            self.counters["previews"] += 1

    def _accept(self, feature: wire.Feature, received: float, labels_out: zmq.Socket) -> None:
        if feature.vector.shape[0] != self.feature_dim:
            self.drop("feature_size", f"stream {feature.stream}: {feature.vector.shape[0]}-d feature, the LSTM "
                                       f"takes {self.feature_dim}-d; is the feature worker using the same bundle?")
            return
        if self._other_cells(feature.stream, "feature"):
            return
        if self.ended.get(feature.stream) == feature.session:
            self.drop("after_end", f"stream {feature.stream}: feature after its stream-end message")
            return
        order = self.orders.get(feature.stream)
        if order is None:
            if len(self.orders) >= self.config.lstm.max_streams:
                self._evict_least_recent(labels_out)
            order = self.orders[feature.stream] = StreamOrder(wait_s=self.config.lstm.reorder_wait_ms / 1000,
                                                              max_pending=self.window)
            self.ready[feature.stream] = deque()
        now = time.monotonic()
        before = (order.stale, order.session_changes, order.seq_jumps)
        for item in order.push(feature, now):
            self.ready[feature.stream].append((item, received))
        self.counters["session_changes"] += order.session_changes - before[1]
        self.counters["seq_jumps"] += order.seq_jumps - before[2]
        if order.stale != before[0]:
            self.drop("late", f"stream {feature.stream}: seq {feature.seq} came after its place was given up")
            return  # not accepted: does not keep the stream alive
        self.last_seen[feature.stream] = now
        self.last_seen.move_to_end(feature.stream)

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
                           truth_since=feature.truth_since, epoch=self.epoch)
        wire.publish(labels_out, label)
        self.counters["labels"] += 1
        segmenter = self.segmenters.get(feature.stream)
        if segmenter is None:
            settings = self.activity
            segmenter = self.segmenters[feature.stream] = Segmenter(self.classes, settings.ema_alpha, settings.enter,
                                                                     settings.leave, settings.min_frames)
        self._publish_activity(labels_out, feature.stream, segmenter.step(feature.seq, feature.t_capture,
                                                                          probabilities))

    def _publish_activity(self, labels_out: zmq.Socket, stream: str, events) -> None:
        for event in events:
            wire.publish(labels_out, wire.Activity(stream=stream, event=event.event, label=event.label,
                                                   confidence=event.confidence, start_seq=event.start_seq,
                                                   start_t=event.start_t, end_seq=event.end_seq, end_t=event.end_t))
            self.counters[f"activity_{event.event}s"] += 1

    def _close_activity(self, stream: str, labels_out: zmq.Socket) -> None:
        """The stream's open segment ends with the stream (before its end message)."""
        segmenter = self.segmenters.pop(stream, None)
        if segmenter is not None:
            self._publish_activity(labels_out, stream, segmenter.finish())

    def _end_stream(self, end: wire.StreamEnd, labels_out: zmq.Socket) -> None:
        stream, order = end.stream, self.orders.get(end.stream)
        if order is None:
            self.drop("end_unknown", f"stream {stream}: end of a stream with no features here")
            return
        if end.session != order.session:
            self.drop("end_session", f"stream {stream}: end of session {end.session}, not the stream's current one")
            return
        self.ended[stream] = order.session
        self.ended.move_to_end(stream)
        while len(self.ended) > self.config.lstm.max_streams:
            self.ended.popitem(last=False)
        self.ready[stream].extend((item, time.time()) for item in order.release(float("inf")))
        self._advance(labels_out)  # labels for what already arrived go out before the end
        self._close_activity(stream, labels_out)
        self._forget(stream)
        wire.publish(labels_out, wire.StreamEnd(stream=stream, reason=end.reason, t=time.time(), session=end.session))

    def _evict_quiet(self, labels_out: zmq.Socket) -> None:
        limit = time.monotonic() - self.config.lstm.evict_after_s
        while self.last_seen and next(iter(self.last_seen.values())) < limit:
            stream = next(iter(self.last_seen))
            log.info("stream %s silent for %.0f s: state evicted", stream, self.config.lstm.evict_after_s)
            self.counters["evicted"] += 1
            self._evict(stream, labels_out)

    def _evict_least_recent(self, labels_out: zmq.Socket) -> None:
        """Room for a new stream at lstm.max_streams: the least recently accepted one goes, announced."""
        stream = next(iter(self.last_seen), None) or next(iter(self.orders))
        self.counters["evicted_for_room"] += 1
        if self.counters["evicted_for_room"] in (1, 10, 100, 1000) or self.counters["evicted_for_room"] % 10000 == 0:
            log.warning("%d streams, the most lstm.max_streams allows: evicted the least recently seen (%s; %d so "
                        "far)", len(self.orders), stream, self.counters["evicted_for_room"])
        self._evict(stream, labels_out)

    def _evict(self, stream: str, labels_out: zmq.Socket) -> None:
        order = self.orders.get(stream)
        session = order.session if order is not None and order.session is not None else 0
        self._close_activity(stream, labels_out)
        self._forget(stream)
        wire.publish(labels_out, wire.StreamEnd(stream=stream, reason="evicted", t=time.time(), session=session))

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
