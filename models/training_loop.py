"""The training loop both trainers share: NLL loss on log-softmax, Adam, one validation pass per epoch.

    fit(model, train_loader, validation_loader, to_device, ...) -> best EpochResult

Per epoch: train over the shuffled loader, evaluate on the validation loader (groups carved out of
the training list, models/validation.py), hand the figures to the `TrainingReport` (table row,
later PNG and JSON) and call `on_best` when validation accuracy improves, which is where the
trainer saves its checkpoint. At the end the model holds the best epoch's weights again, for the
trainer to score the test split once (`evaluate_loader`). A rich progress bar shows the batches.

Fast paths: bfloat16 autocast on CPUs with native bf16 (AVX-512 bf16 / AMX), float16 autocast
with a GradScaler on CUDA; inputs are moved with non_blocking copies (pinned by the loader).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from models.hardware import cpu_supports_bf16
from models.training_report import EpochResult, TrainingReport

Batch = object
ToDevice = Callable[[Batch, torch.device], tuple[torch.Tensor, torch.Tensor]]


def choose_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Precision:
    """How a device runs mixed precision: the autocast dtype (None: float32) and whether to scale the loss."""

    device: torch.device
    dtype: torch.dtype | None

    @classmethod
    def choose(cls, device: torch.device, enabled: bool) -> "Precision":
        if not enabled:
            return cls(device, None)
        if device.type == "cuda":
            return cls(device, torch.float16)
        if device.type == "cpu" and cpu_supports_bf16():
            return cls(device, torch.bfloat16)
        return cls(device, None)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        # Loss scaling only matters for float16 (bfloat16 has float32's range).
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def describe(self) -> str:
        return {None: "float32", torch.bfloat16: "bfloat16 autocast", torch.float16: "float16 AMP"}[self.dtype]


def fit(model: nn.Module, train_loader: Iterable, validation_loader: Iterable, to_device: ToDevice, *, epochs: int,
        lr: float, device: torch.device, precision: Precision, report: TrainingReport,
        on_best: Callable[[EpochResult], None], progress: bool = True) -> EpochResult | None:
    """Train for `epochs`, validating after each; returns the best epoch (by validation accuracy), whose
    weights the model holds again on return."""
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = precision.scaler()
    loss_function = nn.NLLLoss()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    report.start()
    with Progress(*columns, console=report.console, disable=not progress, transient=True) as bar:
        task = bar.add_task("", total=None)
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            bar.reset(task, total=_length(train_loader) + _length(validation_loader),
                      description=f"{report.title} epoch {epoch}/{epochs}")
            model.train()
            train_loss, train_accuracy = _run_epoch(model, train_loader, to_device, device, precision,
                                                    loss_function, lambda: bar.advance(task), optimizer, scaler)
            model.eval()
            with torch.no_grad():
                validation_loss, validation_accuracy = _run_epoch(model, validation_loader, to_device, device,
                                                                  precision, loss_function, lambda: bar.advance(task))
            result = EpochResult(epoch, train_loss, train_accuracy, validation_loss, validation_accuracy,
                                 time.perf_counter() - started)
            if report.add(result):
                best_state = copy.deepcopy(model.state_dict())
                on_best(result)
    if report.best is not None:
        model.load_state_dict(best_state)
    return report.best


def evaluate_loader(model: nn.Module, loader: Iterable, to_device: ToDevice, device: torch.device,
                    precision: Precision) -> tuple[float, float]:
    """(mean NLL loss, accuracy) of a model over a loader."""
    model.eval()
    with torch.no_grad():
        return _run_epoch(model, loader, to_device, device, precision, nn.NLLLoss(), lambda: None)


def score_test_once(model: nn.Module, test_loader: Iterable, to_device: ToDevice, device: torch.device,
                    precision: Precision, title: str, unit: str, console) -> dict:
    """The test split's figures for the chosen epoch, computed once, after every choice was made on validation."""
    loss, accuracy = evaluate_loader(model, test_loader, to_device, device, precision)
    console.print(f"{title}: test {unit} accuracy {100 * accuracy:.1f}% (loss {loss:.4f}), scored once with the "
                  f"epoch chosen on validation")
    return {"test_loss": loss, "test_accuracy": accuracy}


def _run_epoch(model, loader, to_device, device, precision, loss_function, advance, optimizer=None, scaler=None):
    total_loss, correct, seen = 0.0, 0, 0
    for batch in loader:
        inputs, labels = to_device(batch, device)
        with precision.autocast():
            log_probabilities = model(inputs)
            loss = loss_function(log_probabilities.float(), labels)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        total_loss += float(loss.detach()) * len(labels)
        correct += int((log_probabilities.argmax(dim=1) == labels).sum())
        seen += len(labels)
        advance()
    if seen == 0:
        return float("nan"), 0.0
    return total_loss / seen, correct / seen


def _length(loader: Iterable) -> int:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return 0
