"""`run.py subscribe`: the latest label per stream, live, or one JSON object per label message.

`render(view) -> Table` is pure, so the table is tested with a string console; the Live loop
around it only receives and redraws.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import zmq
from rich.console import Console
from rich.live import Live
from rich.table import Table

from configs.exit_codes import ExitCode
from configs.settings import Config, add_config_arguments, from_args
from streamer.transport import wire
from streamer.transport.sockets import StopFlag, make_socket


@dataclass
class StreamView:
    label: wire.Label
    received: float  # wall clock when this subscriber got it
    messages: int = 0
    correct: int = 0  # settled labels that matched the ground truth (synthetic sources)
    judged: int = 0


@dataclass
class View:
    streams: dict[str, StreamView] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)  # every label's, capture -> received
    labels: int = 0
    malformed: int = 0

    def take(self, message: wire.Message | None, received: float) -> None:
        """One message off the label socket (None: a malformed one)."""
        if message is None:
            self.malformed += 1
        elif isinstance(message, wire.Label):
            self.add_label(message, received)
        elif isinstance(message, wire.StreamEnd):
            self.events.append(f"{message.stream}: ended ({message.reason})")
        elif isinstance(message, wire.StreamStart):
            self.events.append(f"{message.stream}: started ({message.source})")
        elif isinstance(message, wire.Stats):
            self.stats[message.process] = message.counters

    def add_label(self, label: wire.Label, received: float) -> None:
        self.labels += 1
        self.latencies_ms.append(latency_ms(label, received))
        previous = self.streams.get(label.stream)
        view = StreamView(label, received, previous.messages + 1 if previous else 1,
                          previous.correct if previous else 0, previous.judged if previous else 0)
        if is_settled(label):
            view.judged += 1
            view.correct += int(label.label == label.truth)
        self.streams[label.stream] = view


def received_messages(socket: zmq.Socket, limit: int | None = None) -> Iterator[tuple[wire.Message | None, float]]:
    """The published messages already waiting on `socket` (at most `limit`), each with the wall time
    it was taken off the socket; None stands for a malformed one, for the caller to count."""
    taken = 0
    while limit is None or taken < limit:
        try:
            parts = socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        taken += 1
        received = time.time()
        try:
            message = wire.unpack_published(parts)
        except wire.WireError:
            message = None
        yield message, received


def is_settled(label: wire.Label) -> bool:
    """A label that can be judged against ground truth: warm, and its whole window in one activity."""
    return (label.truth is not None and not label.warming and label.truth_since >= 0
            and label.seq - label.truth_since >= label.frames_in_window - 1)


def latency_ms(label: wire.Label, received: float) -> float:
    return (received - label.t_capture) * 1000


def render(view: View) -> Table:
    models = sorted({item.label.model_id for item in view.streams.values()})
    table = Table(title=f"live labels (model {', '.join(models) or '-'})", expand=False)
    for column in ("stream", "seq", "label", "score", "runner-up", "window", "latency ms", "truth", "live acc"):
        table.add_column(column, justify="right" if column in ("seq", "score", "latency ms", "live acc") else "left",
                         no_wrap=True)
    for name in sorted(view.streams):
        item = view.streams[name]
        label = item.label
        window = "warming up" if label.warming else "full"
        runner_up = f"{label.top_k[1][0]} {label.top_k[1][1]:.2f}" if len(label.top_k) > 1 else "-"
        accuracy = f"{100 * item.correct / item.judged:.1f}%" if item.judged else "-"
        table.add_row(name, str(label.seq), label.label, f"{label.score:.2f}", runner_up,
                      f"{window} {label.frames_in_window}", f"{latency_ms(label, item.received):.1f}",
                      label.truth or "-", accuracy)
    if view.events:
        table.caption = " | ".join(view.events[-3:])
    return table


def label_json(label: wire.Label, received: float) -> str:
    record = asdict(label)
    record["latency_ms"] = round(latency_ms(label, received), 3)
    return json.dumps(record)


def subscribe(config: Config, streams: list[str], *, as_json: bool, count: int, seconds: float,
              console: Console | None = None, stop: StopFlag | None = None) -> View:
    """Receive labels until `count` labels or `seconds` passed (0: no limit)."""
    stop = StopFlag() if stop is None else stop  # (an unset flag is falsy: `or` would replace it)
    context = zmq.Context()
    socket = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                         server_curve=False)
    for stream in streams or [""]:
        socket.setsockopt(zmq.SUBSCRIBE, wire.label_topic(stream) if stream else b"label/")
    if not as_json:
        socket.setsockopt(zmq.SUBSCRIBE, b"event/")
        socket.setsockopt(zmq.SUBSCRIBE, b"stats/")
    console = console or Console()
    view = View()
    deadline = time.monotonic() + seconds if seconds else float("inf")
    live = None if as_json else Live(render(view), console=console, refresh_per_second=4)
    try:
        if live:
            live.start()
        while not stop and time.monotonic() < deadline and not (count and view.labels >= count):
            if not socket.poll(100):
                continue
            for message, received in received_messages(socket, limit=1):  # one at a time: --count stops at N
                view.take(message, received)
                if as_json and isinstance(message, wire.Label):
                    print(label_json(message, received), flush=True)
            if live:
                live.update(render(view))
    finally:
        if live:
            live.stop()
        socket.close()
        context.term()
    if view.malformed:
        print(f"{view.malformed} malformed messages ignored", file=sys.stderr)
    return view


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object per label message")
    parser.add_argument("--count", type=int, default=0, help="exit after N label messages (0: never)")
    parser.add_argument("--seconds", type=float, default=0.0, help="exit after S seconds (0: never)")
    parser.add_argument("--stream", action="append", default=[], help="only this stream (repeatable)")


def main(args: argparse.Namespace) -> int:
    config = from_args(args)
    view = subscribe(config, args.stream, as_json=args.json, count=args.count, seconds=args.seconds)
    return ExitCode.OK if (not args.count or view.labels >= args.count) else ExitCode.FAILED
