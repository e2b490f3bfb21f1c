"""Reading and showing the int8 feature model's guard (models/int8.py makes it): for `evaluate`, `bench`, the worker."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table


def read_guard(bundle_path: Path) -> dict | None:
    """The stored guard of the int8 model made for this bundle, or None when there is none."""
    from models import bundle  # torch: only when a guard is read, so `--help` stays fast

    path = Path(bundle_path)
    if not path.exists():
        return None
    try:
        guard_file = bundle.int8_dir(path) / "guard.json"
    except bundle.BundleError:  # not a joined bundle (an lstm.pt, say): no model id, no int8 model
        return None
    if not guard_file.is_file() or not (guard_file.parent / "model.xml").is_file():
        return None
    return json.loads(guard_file.read_text())


def model_file(bundle_path: Path) -> Path:
    """The int8 OpenVINO IR made for this bundle (it may not exist)."""
    from models import bundle

    return bundle.int8_dir(Path(bundle_path)) / "model.xml"


def guard_line(figures: dict) -> str:
    return (f"int8 ({figures['attempt']}): window labels agree with float32 on "
            f"{100 * figures['window_agreement']:.2f}% of {figures['windows']} windows, LSTM window accuracy "
            f"{100 * figures['window_accuracy_fp32']:.2f}% -> {100 * figures['window_accuracy_int8']:.2f}% "
            f"({figures['accuracy_drop_points']:+.2f} points drop), cosine min {figures['min_cosine']:.4f} "
            f"mean {figures['mean_cosine']:.5f}: {'admitted' if figures['admitted'] else 'not admitted'}")


def guard_table(record: dict) -> Table:
    table = Table(title=f"int8 feature model (guard on the test split, {record['windows']} windows)",
                  title_justify="left")
    for column in ("attempt", "labels = float32", "accuracy fp32 -> int8", "drop", "cosine min / mean", "admitted"):
        table.add_column(column, justify="left" if column == "attempt" else "right")
    for figures in record["attempts"]:
        table.add_row(figures["attempt"], f"{100 * figures['window_agreement']:.2f}%",
                      f"{100 * figures['window_accuracy_fp32']:.2f}% -> {100 * figures['window_accuracy_int8']:.2f}%",
                      f"{figures['accuracy_drop_points']:+.2f}",
                      f"{figures['min_cosine']:.4f} / {figures['mean_cosine']:.5f}",
                      "[green]yes" if figures["admitted"] else "no")
    table.caption = (f"needs >= {100 * record['min_window_agreement']:.0f}% agreement and <= "
                     f"{record['max_accuracy_drop_points']} points drop; stored: {record['attempt']}")
    return table
