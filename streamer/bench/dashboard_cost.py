"""`run.py bench --dashboard`: what one dashboard and one browser cost the pipeline at saturation.

One pipeline runs the whole time (N synthetic streams offered faster than the model keeps up,
so throughput is what the machine can do). After the warm-up, phases alternate: without a
dashboard, then with `run.py dashboard` (its own process, as deployed) and a headless Chromium
showing its page, `--rounds` times, and a last phase without. Starting and stopping the
dashboard and the browser happen between phases and are not measured. Each phase with them is
compared with the mean of the phases just before and after it (so a load that drifts during the
run cancels out), and the median of those ratios is the result; the plain ratio of the means,
the dashboard's and the browser's CPU and the load average are printed too. The figures are
still only as steady as the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import zmq
from rich.console import Console
from rich.table import Table

from configs.settings import ActionableError, Config
from streamer.bench.phases import bracketed, median_or_none
from streamer.bench.procfs import cpu_seconds
from streamer.transport import wire
from streamer.transport.sockets import StopFlag, free_port, make_socket

SETTLE_S = 3.0  # after starting or stopping the dashboard and browser, before a phase is measured


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _browser_cpu_seconds(not_browser: list[int]) -> float:
    """CPU time of this process's descendants that are not the pipeline or the dashboard: the browser
    and its driver (processes that ended meanwhile are not counted)."""
    excluded = set(not_browser)
    for pid in not_browser:
        excluded |= _descendants(pid)
    return sum(cpu_seconds(pid) or 0.0 for pid in _descendants(os.getpid()) - excluded)


def _start_dashboard(config_path: Path, log_dir: Path) -> tuple[subprocess.Popen, str]:
    from streamer.ops.supervisor import RUN_PY

    port = free_port()
    log_file = open(log_dir / "dashboard.log", "ab")
    process = subprocess.Popen([sys.executable, str(RUN_PY), "dashboard", "--config", str(config_path),
                                "--port", str(port)], stdout=log_file, stderr=subprocess.STDOUT)
    log_file.close()
    address = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(address + "metrics", timeout=2):
                return process, address
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise ActionableError(f"the dashboard did not answer on {address} within 60 s; see {log_dir / 'dashboard.log'}")


def _open_browser(stack: ExitStack, browser_path: str, address: str):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise ActionableError("bench --dashboard drives a real browser through Playwright: "
                              "pip install playwright (it uses the Chromium at --browser)") from None
    if not Path(browser_path).exists():
        raise ActionableError(f"no browser at {browser_path}: install Debian's chromium "
                              f"(bash .ci/install-system-deps.sh) or pass --browser PATH")
    playwright = stack.enter_context(sync_playwright())
    browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
    stack.callback(browser.close)
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    page.goto(address)
    page.wait_for_selector(".card", timeout=30_000)
    return page


def measure(config: Config, sources: list[str], *, phase_s: float, rounds: int, warmup_s: float,
            browser_path: str, console: Console, stop: StopFlag) -> dict:
    from streamer.ops.supervisor import parse_source, pipeline_log_dir, prepare, supervise

    children = prepare(config, sources, config_name="dashboard-cost-config.toml")
    log_dir = pipeline_log_dir(config)  # where prepare() wrote the config the children read
    config_path = log_dir / "dashboard-cost-config.toml"
    streams = {parse_source(source, index)[0] for index, source in enumerate(sources)}
    context = zmq.Context()
    subscriber = make_socket(context, zmq.SUB, config.endpoints.labels, bind=False, security=config.security,
                             server_curve=False, hwm=100000)
    subscriber.setsockopt(zmq.SUBSCRIBE, b"label/")
    labels: list[float] = []  # received time of every label
    seen: set[str] = set()
    supervisor = threading.Thread(target=supervise, args=(children, config, stop, 0.0), daemon=True)

    def receive_until(deadline: float) -> None:
        while time.time() < deadline and not stop:
            if not supervisor.is_alive():
                raise ActionableError(f"the pipeline stopped; see the logs in {log_dir}")
            if subscriber.poll(50):
                for message, received in wire.received_messages(subscriber, limit=1000):
                    if isinstance(message, wire.Label):
                        labels.append(received)
                        seen.add(message.stream)

    phases = []
    try:
        supervisor.start()
        console.print(f"starting the pipeline: {len(sources)} streams at {config.capture.fps:g} fps ...")
        startup_deadline = time.time() + 180
        while seen != streams:
            if time.time() > startup_deadline:
                raise ActionableError(f"no labels from {sorted(streams - seen)} within 180 s; see {log_dir}")
            receive_until(time.time() + 0.5)
        receive_until(time.time() + warmup_s)
        for index in range(2 * rounds + 1):
            with_dashboard = index % 2 == 1
            with ExitStack() as stack:
                dashboard = None
                if with_dashboard:
                    dashboard, address = _start_dashboard(config_path, log_dir)
                    stack.callback(lambda process=dashboard: (process.terminate(), process.wait(10)))
                    _open_browser(stack, browser_path, address)
                receive_until(time.time() + SETTLE_S)
                not_browser = [c.process.pid for c in children if c.process is not None]
                cpu_before = cpu_seconds(dashboard.pid) if dashboard else None
                browser_before = _browser_cpu_seconds(not_browser + [dashboard.pid]) if dashboard else 0.0
                start = time.time()
                count_before = len(labels)
                receive_until(start + phase_s)
                end = time.time()
                phase = {"dashboard": with_dashboard, "seconds": end - start,
                         "labels_per_s": (len(labels) - count_before) / (end - start),
                         "loadavg": os.getloadavg()[0]}
                if dashboard:
                    used = cpu_seconds(dashboard.pid)
                    phase["dashboard_cpu_share"] = ((used - cpu_before) / (end - start)
                                                    if used is not None and cpu_before is not None else None)
                    phase["browser_cpu_share"] = ((_browser_cpu_seconds(not_browser + [dashboard.pid])
                                                   - browser_before) / (end - start))
                phases.append(phase)
                console.print(f"phase {index + 1}/{2 * rounds + 1} ({'with' if with_dashboard else 'without'} "
                              f"dashboard): {phase['labels_per_s']:.1f} labels/s")
            receive_until(time.time() + SETTLE_S)
    finally:
        stop.set()
        supervisor.join(timeout=30)
        subscriber.close()
        context.term()
    return {"phases": phases, **ratios(phases), "streams": len(sources), "fps": config.capture.fps}


def ratios(phases: list[dict]) -> dict:
    """Throughput with / without: per phase with the dashboard against its two neighbours (median), and of the means."""
    rates = [p["labels_per_s"] for p in phases]
    ratios_with = bracketed(rates, [p["dashboard"] for p in phases])
    without = [rate for rate, p in zip(rates, phases) if not p["dashboard"]]
    with_ = [rate for rate, p in zip(rates, phases) if p["dashboard"]]
    of_means = (sum(with_) / len(with_)) / (sum(without) / len(without)) if with_ and sum(without) else None
    return {"ratio_bracketed": ratios_with, "ratio_median": median_or_none(ratios_with),
            "ratio_of_means": of_means}


def render(result: dict) -> Table:
    table = Table(title=f"dashboard cost at saturation: {result['streams']} streams offered at {result['fps']:g} fps")
    for column in ("phase", "dashboard + browser", "seconds", "labels/s", "dashboard CPU", "browser CPU",
                   "load average (1 min)"):
        table.add_column(column, justify="left" if column == "dashboard + browser" else "right")
    for index, phase in enumerate(result["phases"], 1):
        shares = [phase.get(key) for key in ("dashboard_cpu_share", "browser_cpu_share")]
        table.add_row(str(index), "yes" if phase["dashboard"] else "no", f"{phase['seconds']:.1f}",
                      f"{phase['labels_per_s']:.1f}",
                      *[f"{100 * share:.1f}% of a core" if share is not None else "-" for share in shares],
                      f"{phase['loadavg']:.2f}")
    ratio, of_means = result["ratio_median"], result["ratio_of_means"]
    table.caption = ("throughput with / without, each phase with against its neighbours, median: "
                     + (f"{ratio:.3f} ({100 * (1 - ratio):.1f}% cost)" if ratio else "-")
                     + (f"; of the means: {of_means:.3f}" if of_means else "")
                     + "; phases alternate in one run; on a shared machine the load average moves the figures")
    return table
