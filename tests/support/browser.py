"""A real browser and a real dashboard for the dashboard tests.

- `chromium_page()`: Debian's /usr/bin/chromium (installed by .ci/install-system-deps.sh), headless,
  driven by Playwright; closed whatever happens in the test.
- `Dashboard`: `run.py dashboard` as a subprocess on a free loopback port, ready once it answers.
- `metric_samples`: its /metrics parsed by prometheus_client.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.pipeline import free_port, run_py, stop_process

CHROMIUM = Path("/usr/bin/chromium")


@contextmanager
def chromium_page(width: int = 1400, height: int = 800):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium with `bash .ci/install-system-deps.sh`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


def metric_samples(text: str) -> dict:
    """Prometheus text -> {(sample name, sorted label pairs): value}, through prometheus_client's parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def http_get(url: str, token: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@dataclass
class Dashboard:
    """`run.py dashboard --set ...` on a free port, logging to `folder/dashboard.log`."""

    folder: Path
    sets: list[str]
    token: str = ""
    port: int = field(default_factory=free_port)
    process: object = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def log_path(self) -> Path:
        return self.folder / "dashboard.log"

    def metrics(self) -> str:
        status, text = http_get(self.address + "metrics", self.token)
        assert status == 200, f"/metrics answered {status}: {text}"
        return text

    def __enter__(self) -> "Dashboard":
        self.folder.mkdir(parents=True, exist_ok=True)
        sets = self.sets + ([f"dashboard.token={self.token}"] if self.token else [])
        self.process = run_py(["dashboard", "--port", str(self.port)], sets, self.log_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"run.py dashboard exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                if http_get(self.address + "metrics", self.token)[0] == 200:
                    return self
            except OSError:
                pass  # not listening yet
            time.sleep(0.2)
        stop_process(self.process)
        pytest.fail(f"run.py dashboard did not answer within 60 s:\n{self.log_path.read_text()}")

    def __exit__(self, *exc) -> None:
        stop_process(self.process)
