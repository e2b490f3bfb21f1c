"""`run.py subscribe`: the latest label per stream, live, or one JSON object per label message.

`render(view) -> Table` is pure, so the table is tested with a string console; the Live loop
around it only receives and redraws. It never waits in silence: it says where it listens and,
while nothing arrives, what to check (is `up` running, the same endpoint, the same CURVE setting),
told apart by what the socket saw (nobody listening, a refused handshake, connected but quiet).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field

import zmq
from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from zmq.utils.monitor import recv_monitor_message

from configs.exit_codes import ExitCode
from configs.settings import Config, add_config_arguments, from_args
from streamer.ops.tally import LATENCY_SAMPLES
from streamer.transport import wire
from streamer.transport.sockets import StopFlag, make_socket
from streamer.transport.wire import received_messages

HINT_EVERY_S = 5.0  # with nothing arriving, say what to check this often
RUNNER_UP_FROM_COLUMNS = 100  # narrower terminals leave the runner-up out, so nothing else is cut
SILENT_AFTER_S = 5.0  # a stream with no label for this long is shown as silent, not live
NO_LABEL_TIMEOUT_S = 30.0  # --count/--json give up after this long without a label (--timeout)
EVENTS_KEPT = 100  # stream starts and ends remembered (the view shows the last 3)
LEGEND = {
    "window": "frames the label is computed over (32: a full window; fewer while warming up)",
    "truth": "what the synthetic camera shows",
    "acc": "live accuracy: labels equal to truth, among those whose whole window is one activity",
}


@dataclass
class StreamView:
    label: wire.Label
    received: float  # wall clock when this subscriber got it
    messages: int = 0
    correct: int = 0  # settled labels that matched the ground truth (synthetic sources)
    judged: int = 0
    ended: str | None = None  # why the stream ended (its stream_end), None while it is live


@dataclass
class View:
    streams: dict[str, StreamView] = field(default_factory=dict)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=EVENTS_KEPT))
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    # capture -> received, the newest LATENCY_SAMPLES labels': a subscriber left running for days does not grow
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    labels: int = 0
    malformed: int = 0
    timed_out: bool = False  # gave up waiting for a label (--timeout)
    waiting: str | None = None  # what to check while nothing arrives (shown under the table)

    def take(self, message: wire.Message | None, received: float) -> None:
        """One message off the label socket (None: a malformed one)."""
        if message is None:
            self.malformed += 1
        elif isinstance(message, wire.Label):
            self.add_label(message, received)
        elif isinstance(message, wire.StreamEnd):
            self.events.append(f"{message.stream}: ended ({message.reason})")
            if message.stream in self.streams:
                self.streams[message.stream].ended = message.reason
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


def is_settled(label: wire.Label) -> bool:
    """A label that can be judged against ground truth: warm, and its whole window in one activity."""
    return (label.truth is not None and not label.warming and label.truth_since >= 0
            and label.seq - label.truth_since >= label.frames_in_window - 1)


def latency_ms(label: wire.Label, received: float) -> float:
    return (received - label.t_capture) * 1000


def render(view: View, now: float | None = None, width: int | None = None) -> Table:
    """The latest label per stream. Columns empty for every stream (truth and live accuracy for real
    cameras) are left out, and the runner-up below RUNNER_UP_FROM_COLUMNS of `width`; with `now`, a
    stream silent for SILENT_AFTER_S is shown as such."""
    models = sorted({item.label.model_id for item in view.streams.values()})
    table = Table(title=Text(f"live labels (model {', '.join(models) or '-'})"), expand=False,
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  caption_justify="left", min_width=None if view.streams else width)  # room for the hints
    runner_up_shown = width is None or width >= RUNNER_UP_FROM_COLUMNS
    has_truth = any(item.label.truth is not None for item in view.streams.values())
    # Narrow terminals wrap the label, runner-up, window and truth cells onto more lines; the stream
    # name, seq and figures are never cut (rich shrinks wrappable columns first).
    table.add_column("stream", no_wrap=True)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("label")
    if runner_up_shown:
        table.add_column("runner-up")
    table.add_column("window")
    table.add_column("ms", justify="right", no_wrap=True)
    if has_truth:
        table.add_column("truth")
        table.add_column("acc", justify="right", no_wrap=True)
    for name in sorted(view.streams):
        item = view.streams[name]
        label = item.label
        silent = now is not None and now - item.received >= SILENT_AFTER_S
        if item.ended:
            window, latency, style = f"ended: {item.ended}", "-", "dim"
        elif silent:
            window, latency, style = f"silent {now - item.received:.0f} s", "-", "dim"
        else:
            window = f"{'warming up' if label.warming else 'full'} {label.frames_in_window}"
            latency, style = f"{latency_ms(label, item.received):.1f}", None
        runner_up = f"{label.top_k[1][0]} {label.top_k[1][1]:.2f}" if len(label.top_k) > 1 else "-"
        cells = [name, str(label.seq), f"{label.label} {label.score:.2f}"] + ([runner_up] if runner_up_shown else [])
        cells += [window, latency]
        if has_truth:
            cells += [label.truth or "-", f"{100 * item.correct / item.judged:.1f}%" if item.judged else "-"]
        table.add_row(*(Text(cell) for cell in cells), style=style)  # Text: names are never read as markup
    legend = ["ms: camera frame -> label here", f"window: {LEGEND['window']}"]
    if has_truth:
        legend += [f"truth: {LEGEND['truth']}", f"acc: {LEGEND['acc']}"]
    lines = ([view.waiting] if view.waiting else []) + ([" | ".join(list(view.events)[-3:])] if view.events else [])
    table.caption = Text("\n".join(lines + ["; ".join(legend)]))
    return table


def label_json(label: wire.Label, received: float) -> str:
    record = asdict(label)
    record["latency_ms"] = round(latency_ms(label, received), 3)
    return json.dumps(record)


class ConnectionWatch:
    """What the label socket saw of its publisher (ZeroMQ's socket monitor): connected, or a refused
    handshake (CURVE on one side only, or a key not allowed), so a silent wait can say why."""

    def __init__(self, socket: zmq.Socket):
        self.monitor = socket.get_monitor_socket()
        self.connected = False
        self.handshake_failed = False
        self.handshake_ok = False

    def update(self) -> None:
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)["event"]
            if event == zmq.EVENT_CONNECTED:
                self.connected = True
            elif event in (zmq.EVENT_DISCONNECTED, zmq.EVENT_CLOSED):
                self.connected = False
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshake_ok, self.handshake_failed = True, False
            elif event & (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                          | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self.handshake_failed = True

    def close(self) -> None:
        self.monitor.close()


def waiting_hint(config: Config, watch: ConnectionWatch, waited_s: float, streams: list[str]) -> str:
    """Why nothing arrived yet, as far as this side can tell, and what to check."""
    endpoint, curve = config.endpoints.labels, config.security.curve
    if watch.handshake_failed:
        other = "false" if curve else "true"
        return (f"nothing received for {waited_s:.0f} s: {endpoint} refused the handshake. CURVE must match on both "
                f"sides: this side has security.curve={str(curve).lower()}; try --set security.curve={other}"
                + (" or check that this client's key is allowed (run.py keys --client NAME)" if curve else ""))
    if not watch.connected:
        return (f"nothing received for {waited_s:.0f} s: nothing listens on {endpoint}. Is `run.py up` running, "
                f"and on this endpoint? (its start-up line prints the subscribe command to use; "
                f"--set endpoints.labels=... to change)")
    only = f"; only streams {', '.join(streams)} are shown (--stream)" if streams else ""
    return (f"nothing received for {waited_s:.0f} s: connected to {endpoint}, but no labels yet. The pipeline may "
            f"still be loading its models (up prints 'ready' when the first label leaves){only}")


def subscribe(config: Config, streams: list[str], *, as_json: bool, count: int, seconds: float,
              console: Console | None = None, stop: StopFlag | None = None, timeout: float = 0.0) -> View:
    """Receive labels until `count` labels, `seconds` passed, or `timeout` seconds without a label (0: no limit)."""
    stop = StopFlag() if stop is None else stop  # (an unset flag is falsy: `or` would replace it)
    context = zmq.Context()
    socket = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                         server_curve=False)
    watch = ConnectionWatch(socket)
    for stream in streams or [""]:
        socket.setsockopt(zmq.SUBSCRIBE, wire.label_topic(stream) if stream else b"label/")
    if not as_json:
        socket.setsockopt(zmq.SUBSCRIBE, b"event/")
        socket.setsockopt(zmq.SUBSCRIBE, b"stats/")
    console = console or Console()
    notes = Console(stderr=True) if as_json else console  # JSON lines alone on stdout
    notes.print(Text(f"subscribe: listening for labels on {config.endpoints.labels} "
                     f"(CURVE {'on' if config.security.curve else 'off'}); Ctrl-C stops"))
    view = View()
    started = last_arrival = last_hint = time.monotonic()
    deadline = started + seconds if seconds else float("inf")
    live = None if as_json else Live(render(view, width=console.width), console=console, refresh_per_second=4)
    try:
        if live:
            live.start()
        while not stop and time.monotonic() < deadline and not (count and view.labels >= count):
            now = time.monotonic()
            if timeout and now - last_arrival >= timeout:
                view.timed_out = True
                notes.print(Text(f"subscribe: no label for {timeout:.0f} s; giving up (--timeout)"))
                break
            if now - max(last_arrival, last_hint) >= HINT_EVERY_S and (view.labels == 0 or now - last_arrival
                                                                         >= HINT_EVERY_S):
                watch.update()
                last_hint = now
                view.waiting = waiting_hint(config, watch, now - last_arrival, streams)
                if as_json:  # the table shows it in place; JSON lines keep stdout to themselves
                    notes.print(Text(view.waiting))
            if socket.poll(100):
                for message, received in received_messages(socket, limit=1):  # one at a time: --count stops at N
                    view.take(message, received)
                    if isinstance(message, wire.Label):
                        last_arrival, view.waiting = time.monotonic(), None
                        if as_json:
                            print(label_json(message, received), flush=True)
            if live:
                live.update(render(view, now=time.time(), width=console.width))
    finally:
        if live:
            live.update(render(view, now=time.time(), width=console.width))
            live.stop()
        watch.close()
        socket.close()
        context.term()
    if view.malformed:
        print(f"{view.malformed} malformed messages ignored", file=sys.stderr)
    return view


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object per label message")
    parser.add_argument("--count", type=int, default=0, help="exit after N label messages (0: never)")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="exit after S seconds (0: never); exit code 1 when no label arrived")
    parser.add_argument("--timeout", type=float, default=NO_LABEL_TIMEOUT_S,
                        help="with --count or --json: give up, exit code 1, after this many seconds without a "
                             "label (0: wait forever)")
    parser.add_argument("--stream", action="append", default=[], help="only this stream (repeatable)")


def main(args: argparse.Namespace) -> int:
    config = from_args(args)
    timeout = args.timeout if (args.count or args.json) else 0.0
    view = subscribe(config, args.stream, as_json=args.json, count=args.count, seconds=args.seconds,
                     timeout=timeout)
    if view.timed_out or (args.count and view.labels < args.count) or (args.seconds and not view.labels):
        return ExitCode.FAILED
    return ExitCode.OK
