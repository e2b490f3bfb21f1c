"""What both trainers show and save per epoch: a rich table printed as it goes, PNG curves, JSON history.

`epoch_table(results)` is a pure function (results -> Table) so it can be rendered anywhere and
tested with `Console(file=io.StringIO())`. `TrainingReport` prints one row per epoch as each
finishes (every k-th epoch for long runs, plus every new best and the last), and at the end
writes the loss and accuracy curves as a PNG (matplotlib's Agg canvas, no display needed) and the
history as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from models.files import write_json_atomically

MAX_PRINTED_ROWS = 40  # longer runs print every k-th epoch (plus bests and the last)
_COLUMNS = (("epoch", 7), ("train loss", 10), ("train acc", 9), ("val loss", 9), ("val acc", 8),
            ("seconds", 7), ("", 4))


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float
    validation_loss: float
    validation_accuracy: float
    seconds: float

    def better_than(self, other: "EpochResult | None") -> bool:
        """Higher validation accuracy wins; equal accuracy, lower validation loss (never the test split)."""
        if other is None:
            return True
        if self.validation_accuracy != other.validation_accuracy:
            return self.validation_accuracy > other.validation_accuracy
        return self.validation_loss < other.validation_loss


def _table(title: str | None = None, header: bool = True) -> Table:
    table = Table(title=title, show_header=header, box=None, pad_edge=False, title_justify="left")
    for name, width in _COLUMNS:
        table.add_column(name, justify="right", width=width, no_wrap=True)
    return table


def _add_row(table: Table, result: EpochResult, epochs: int, best: bool) -> None:
    table.add_row(f"{result.epoch}/{epochs}", f"{result.train_loss:.4f}", f"{100 * result.train_accuracy:.1f}%",
                  f"{result.validation_loss:.4f}", f"{100 * result.validation_accuracy:.1f}%", f"{result.seconds:.1f}",
                  "best" if best else "", style="bold green" if best else None)


def epoch_table(results: list[EpochResult], epochs: int | None = None, title: str | None = None) -> Table:
    """Every epoch's figures in one table; the best epoch is marked."""
    epochs = epochs or (results[-1].epoch if results else 0)
    best = best_epoch(results)
    table = _table(title)
    for result in results:
        _add_row(table, result, epochs, best is not None and result.epoch == best.epoch)
    return table


def best_epoch(results: list[EpochResult]) -> EpochResult | None:
    best = None
    for result in results:
        if result.better_than(best):
            best = result
    return best


class TrainingReport:
    """Rows as epochs finish, then curves (PNG) and history (JSON) next to the checkpoint."""

    def __init__(self, title: str, epochs: int, console: Console, curves_path: Path, history_path: Path):
        self.title, self.epochs, self.console = title, epochs, console
        self.curves_path, self.history_path = Path(curves_path), Path(history_path)
        self.results: list[EpochResult] = []
        self.best: EpochResult | None = None
        self._every = max(1, -(-epochs // MAX_PRINTED_ROWS))

    def start(self) -> None:
        self.console.print(_table(self.title))

    def add(self, result: EpochResult) -> bool:
        """Record an epoch; True when it is the best so far (the trainer then saves its checkpoint)."""
        self.results.append(result)
        improved = result.better_than(self.best)
        if improved:
            self.best = result
        if improved or result.epoch % self._every == 0 or result.epoch in (1, self.epochs):
            row = _table(header=False)
            _add_row(row, result, self.epochs, improved)
            self.console.print(row)
        return improved

    def finish(self, extra: dict | None = None) -> None:
        """Write the PNG and the JSON history; print where they are and the best epoch."""
        if not self.results:
            return
        save_curves(self.results, self.curves_path, self.title)
        payload = {"title": self.title, "epochs": [asdict(r) for r in self.results],
                   "best": asdict(self.best) if self.best else None, **(extra or {})}
        write_json_atomically(self.history_path, payload, indent=1)
        if self.best:
            self.console.print(f"{self.title}: best epoch {self.best.epoch} by validation accuracy "
                               f"{100 * self.best.validation_accuracy:.1f}% (loss {self.best.validation_loss:.4f}); "
                               f"curves {self.curves_path}, history {self.history_path}")


def save_curves(results: list[EpochResult], path: Path, title: str) -> Path:
    """Loss and accuracy per epoch, train and validation, as a PNG (Agg canvas: no display, no global backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r.epoch for r in results]
    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    loss_axes.plot(epochs, [r.train_loss for r in results], label="train")
    loss_axes.plot(epochs, [r.validation_loss for r in results], label="validation")
    loss_axes.set(xlabel="epoch", ylabel="NLL loss", title="loss")
    accuracy_axes.plot(epochs, [100 * r.train_accuracy for r in results], label="train")
    accuracy_axes.plot(epochs, [100 * r.validation_accuracy for r in results], label="validation")
    best = best_epoch(results)
    if best is not None:
        accuracy_axes.axvline(best.epoch, color="grey", linestyle=":", label=f"best (epoch {best.epoch})")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy", ylim=(0, 100))
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
