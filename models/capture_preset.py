"""What a capture crops to: the configured size, or the bundle's preset so frames fit the CNN.

Kept apart from `presets.py` because it reads the bundle (models/bundle.py imports presets), and
only loads it (and torch) when the configuration leaves the size to the bundle.
"""

from __future__ import annotations

from pathlib import Path

from configs.settings import ActionableError, Config, replace
from models.presets import LECTURE_PRESET, Preset


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


def with_capture_preset(config: Config) -> Config:
    """The config with capture.resize/crop resolved, as every process of one pipeline must see them.

    `run.py up` and the bench resolve it once, so their captures never load the bundle (nor torch).
    An unreadable bundle leaves the config as it is: the supervisor's preflight names the problem.
    """
    try:
        preset = capture_preset(config)
    except ActionableError:  # models.bundle.BundleError, without importing torch to name it
        return config
    return replace(config, "capture", resize=preset.resize, crop=preset.crop)
