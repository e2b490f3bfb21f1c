"""docs/cluster.md's byte tables are what the wire format and a real TCP connection say now."""

from pathlib import Path

import pytest

from configs.settings import Config
from streamer.bench import wire_sizes

DOC = Path(__file__).resolve().parent.parent / "docs" / "cluster.md"


@pytest.fixture(scope="module")
def measured() -> list[wire_sizes.Sized]:
    return wire_sizes.measure(wire_sizes.messages(Config()))


@pytest.fixture(scope="module")
def tables(measured) -> str:
    return wire_sizes.message_table(measured) + "\n\n" + wire_sizes.rate_table(measured, Config())


def test_the_doc_tables_are_current(tables, monkeypatch):
    monkeypatch.setattr(wire_sizes, "tables", lambda config=None: tables)
    text = DOC.read_text()
    assert wire_sizes.rewrite(text) == text, "docs/cluster.md is stale: run python -m streamer.bench.wire_sizes --write docs/cluster.md"


def test_a_measured_message_takes_its_parts_plus_zmtp_framing(measured):
    for item in measured:
        assert item.tcp == item.on_wire, item.name
        # CURVE wraps each part in a MESSAGE command: a nonce and a MAC, at least 33 bytes more a part
        assert item.tcp_curve >= item.tcp + 33 * len(item.parts), item.name


def test_a_label_grows_with_its_stream_name(monkeypatch):
    before = wire_sizes.published("label", "", wire_sizes.label(Config())).payload
    monkeypatch.setattr(wire_sizes, "STREAM", "lobby-entrance")
    after = wire_sizes.published("label", "", wire_sizes.label(Config())).payload
    assert after - before == 2 * (len("lobby-entrance") - len("cam0"))  # in the topic and in the header


def test_labels_per_second_follow_the_frame_rate(measured):
    table = wire_sizes.rate_table(measured, Config())
    label = next(s for s in measured if s.name.startswith("label")).tcp
    row = next(line for line in table.splitlines() if line.startswith("| labels (one per frame)"))
    assert f"{label * 15 / 1000:,.1f} kB/s" in row and f"{label * 30 / 1000:,.1f} kB/s" in row


def test_a_stale_doc_is_caught_and_rewritten(tables, tmp_path, monkeypatch):
    monkeypatch.setattr(wire_sizes, "tables", lambda config=None: tables)
    doc = tmp_path / "cluster.md"
    doc.write_text(DOC.read_text().replace("| label (top-3, 8 stages) |", "| label (top-3, 8 stages) | 1 |", 1))
    assert wire_sizes.main(["--check", str(doc)]) == 1
    assert wire_sizes.main(["--write", str(doc)]) == 0
    assert wire_sizes.main(["--check", str(doc)]) == 0
    assert doc.read_text() == DOC.read_text()
