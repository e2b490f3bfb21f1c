"""What a capture does for the model it feeds: the configured values, or the bundle's own.

A bundle records the capture it was trained for (crop, and for the synthetic set the length of
one activity); a capture setting left at 0 takes it, so frames fit the CNN and synthetic
activities change at the pace the LSTM learned. Kept apart from `presets.py` because it reads the
bundle (models/bundle.py imports presets), and only loads it (and torch) when the configuration
leaves something to the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from configs.settings import ActionableError, Config, replace
from models.presets import LECTURE_PRESET, Preset

FALLBACK_SEGMENT_FRAMES = 160  # synthetic activity length when neither the config nor a bundle says


@dataclass(frozen=True)
class FittedCapture:
    config: Config  # capture.resize, crop and synthetic_segment_frames resolved
    note: str | None  # one line saying what came from the bundle, or warning what differs from it
    synthetic_classes: bool  # the bundle's classes are the synthetic set's shapes


def capture_preset(config: Config) -> Preset:
    """What the capture crops to: the configured size, or (0) the bundle's preset, so frames fit the CNN."""
    capture = config.capture
    if capture.resize and capture.crop:
        return Preset(resize=capture.resize, crop=capture.crop)
    path = Path(config.features.bundle)
    if path.exists():
        from models import bundle  # imports torch: only when the bundle has to decide the crop

        preset = bundle.load_cnn(path).preset
    else:
        preset = LECTURE_PRESET
    return Preset(resize=capture.resize or preset.resize, crop=capture.crop or preset.crop)


def fit_capture(config: Config) -> FittedCapture:
    """The config with the capture resolved as every process of one pipeline must see it.

    `run.py up` and the bench resolve it once, so their captures never load the bundle (nor torch).
    An unreadable bundle leaves the crop as configured: the supervisor's preflight names the problem.
    """
    capture, path = config.capture, Path(config.features.bundle)
    trained = None
    if path.exists() and not (capture.resize and capture.crop and capture.synthetic_segment_frames):
        from models import bundle  # imports torch: only when the bundle has something to decide

        try:
            trained = bundle.trained_capture(path)
        except ActionableError:
            pass
    preset = Preset(resize=trained.resize, crop=trained.crop) if trained else LECTURE_PRESET
    resize, crop = capture.resize or preset.resize, capture.crop or preset.crop
    trained_segment = trained.synthetic_segment_frames if trained else None
    segment = capture.synthetic_segment_frames or trained_segment or FALLBACK_SEGMENT_FRAMES
    taken = []
    if trained and not (capture.resize and capture.crop):
        taken.append(f"{crop}-px crops of {resize}-px frames")
    if trained_segment and not capture.synthetic_segment_frames:
        taken.append(f"{segment}-frame synthetic activities")
    notes = []
    if taken:
        notes.append(f"capture as the model {path} was trained: {', '.join(taken)} "
                     f"(--set capture.crop/resize/synthetic_segment_frames=N to change)")
    if trained_segment and segment != trained_segment:
        notes.append(f"capture.synthetic_segment_frames={segment}, but the model {path} was trained on "
                     f"{trained_segment}-frame clips: live accuracy on synthetic cameras will be lower")
    note = "; ".join(notes) or None
    fitted = replace(config, "capture", resize=resize, crop=crop, synthetic_segment_frames=segment)
    return FittedCapture(fitted, note, trained is not None and trained.synthetic_classes)
