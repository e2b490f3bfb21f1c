"""Activity segments: a per-stream smoothed label with hysteresis, from per-frame probabilities.

Per-frame labels flicker where an activity changes or the model hesitates. A segment is what a
person would call "the activity": the class probabilities are smoothed with an exponential
moving average; a class whose smoothed probability reaches `enter` becomes a candidate, and a
segment once it has stayed there for `min_frames` frames (it then starts at the frame where it
first reached `enter`); the segment ends at the last frame before its smoothed probability falls
below `leave`. `enter` > `leave` keeps a segment from toggling on noise around one threshold.

Pure computation: the LSTM worker runs one `Segmenter` per stream and publishes its events on
`activity/<stream>/`; `run.py label` and the measurements use `segment_all` on whole timelines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from configs.settings import Activity

TUNED_KEYS = ("ema_alpha", "enter", "leave", "min_frames")


@dataclass(frozen=True)
class SegmentEvent:
    event: str  # "start" (the segment is confirmed) or "end"
    label: str
    confidence: float  # mean smoothed probability of the label over the segment's frames so far
    start_seq: int
    start_t: float
    end_seq: int  # last frame of the segment (for a start event: the frame that confirmed it)
    end_t: float


def activity_settings(configured: Activity, lstm_metrics: dict) -> tuple[Activity, str]:
    """The thresholds a pipeline uses, and where they came from: the ones train-lstm chose on its
    validation split (recorded in the LSTM's metrics as `activity`) unless `from_bundle` is off or
    the bundle has none (older bundles, random weights); else the configured ones."""
    tuned = lstm_metrics.get("activity") or {}
    if configured.from_bundle and all(key in tuned for key in TUNED_KEYS):
        # each value as the type of the setting it replaces (min_frames an int, the others floats)
        chosen = replace(configured, **{key: type(getattr(configured, key))(tuned[key]) for key in TUNED_KEYS})
        return chosen, "chosen on the bundle's validation split"
    reason = "activity.from_bundle=false" if configured.from_bundle is False else "the bundle records none"
    return configured, f"configured ({reason})"


def describe(settings: Activity) -> str:
    return (f"ema_alpha={settings.ema_alpha:g}, enter={settings.enter:g}, leave={settings.leave:g}, "
            f"min_frames={settings.min_frames}")


class Segmenter:
    """One stream's segments, fed one frame at a time; `step` returns the events that frame causes."""

    def __init__(self, classes: list[str], ema_alpha: float, enter: float, leave: float, min_frames: int):
        if not 0 < ema_alpha <= 1:
            raise ValueError(f"ema_alpha must be in (0, 1], got {ema_alpha}")
        if not 0 <= leave <= enter <= 1:
            raise ValueError(f"need 0 <= leave <= enter <= 1, got enter={enter}, leave={leave}")
        self.classes, self.alpha, self.enter, self.leave = list(classes), ema_alpha, enter, leave
        self.min_frames = max(1, min_frames)
        self._ema: np.ndarray | None = None
        self._label: int | None = None  # the class of the candidate or the confirmed segment
        self._confirmed = False
        self._start = (0, 0.0)  # (seq, t) where it first reached `enter`
        self._last = (0, 0.0)  # the last frame still inside it
        self._frames = 0
        self._confidence_sum = 0.0

    def step(self, seq: int, t: float, probabilities: np.ndarray) -> list[SegmentEvent]:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        self._ema = probabilities if self._ema is None else self.alpha * probabilities + (1 - self.alpha) * self._ema
        events = []
        if self._label is not None and self._ema[self._label] < (self.leave if self._confirmed else self.enter):
            if self._confirmed:
                events.append(self._event("end"))
            self._label, self._confirmed = None, False
        if self._label is None:
            top = int(np.argmax(self._ema))
            if self._ema[top] < self.enter:
                return events
            self._label, self._start, self._frames, self._confidence_sum = top, (seq, t), 0, 0.0
        self._frames += 1
        self._confidence_sum += float(self._ema[self._label])
        self._last = (seq, t)
        if not self._confirmed and self._frames >= self.min_frames:
            self._confirmed = True
            events.append(self._event("start"))
        return events

    def finish(self) -> list[SegmentEvent]:
        """The stream ended: the open segment (if any) ends at its last frame."""
        events = [self._event("end")] if self._confirmed else []
        self._label, self._confirmed, self._ema = None, False, None
        return events

    def _event(self, kind: str) -> SegmentEvent:
        return SegmentEvent(kind, self.classes[self._label], self._confidence_sum / self._frames,
                            self._start[0], self._start[1], self._last[0], self._last[1])


def segment_all(classes: list[str], seqs, times, probabilities, *, ema_alpha: float, enter: float, leave: float,
                min_frames: int) -> list[SegmentEvent]:
    """The finished segments (their end events) of a whole timeline, in order."""
    segmenter = Segmenter(classes, ema_alpha, enter, leave, min_frames)
    events = []
    for seq, t, p in zip(seqs, times, probabilities):
        events += segmenter.step(int(seq), float(t), p)
    events += segmenter.finish()
    return [e for e in events if e.event == "end"]
