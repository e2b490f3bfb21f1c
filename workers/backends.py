"""Inference backends for the feature worker: uint8 frames in, float32 512-d features out.

Each backend takes a batch of uint8 RGB frames [N, H, W, 3] (already cropped by the capture) and
returns float32 features [N, 512]. Normalisation happens inside, on the device that runs the
model, so a GPU receives 1-byte pixels, not 4-byte floats.

- CUDA (workers/cuda_backend.py): half precision, two batches in flight through pinned staging
  buffers, the upload of one overlapping the compute of the other.
- TorchCpu: channels-last; bfloat16 autocast where the CPU supports it (models/hardware.py),
  else float32.
- OpenVinoCpu (workers/openvino_backend.py): bfloat16 where the CPU has it; the fastest on CPUs.
`choose_backend` picks one for this machine unless the config names one (`features.backend`,
`features.device`, `features.precision`), keeps it only if its features match torch float32
(cosine >= MIN_COSINE on synthetic-camera frames), and logs which one runs.

Two ways to call a backend (the `Backend` protocol): `backend(images)` returns the features; `backend.submit(images, wake)`
starts a batch and returns a handle (`done()`, `wait()`, `result()`), so the feature worker can
keep up to `backend.depth` batches running while it collects the next (OpenVINO: one infer
request per core group; CUDA: two staging slots). The torch CPU backends run `submit` at once (depth 1).
"""

from __future__ import annotations

import logging
import typing
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch

from configs.settings import DEFAULT_BUNDLE, BackendChoice, ConfigError, DeviceChoice, PrecisionChoice
from models.hardware import cpu_supports_bf16
from models.networks import FeatureExtractor
from models.normalize import normalize_batch
from models.presets import Preset

log = logging.getLogger(__name__)

MIN_COSINE = 0.999  # a backend whose features differ more than this from float32 is not used
BACKENDS = typing.get_args(BackendChoice)
DEVICES = typing.get_args(DeviceChoice)
PRECISIONS = typing.get_args(PrecisionChoice)


class PendingBatch(Protocol):
    """A batch started by `Backend.submit`."""

    def done(self) -> bool: ...

    def wait(self) -> None: ...

    def result(self) -> np.ndarray:
        """float32 features [N, 512], in the order of the submitted frames."""
        ...


@runtime_checkable
class Backend(Protocol):
    """What the feature worker and the bench need from an inference backend (TorchCpu, the CUDA backend in workers/cuda_backend.py, OpenVinoCpu)."""

    name: str  # what runs, for logs and reports, e.g. "openvino-cpu-bf16"
    depth: int  # batches `submit` can keep running at once

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB frames [N, H, W, 3] -> float32 features [N, 512], computed in the call."""
        ...

    def has_room(self) -> bool:
        """Whether `submit` can start a batch now."""
        ...

    def submit(self, images: np.ndarray, wake: Callable[[], None] | None = None) -> PendingBatch:
        """Start a batch; `wake()` is called (from any thread) when it is done."""
        ...


def configure_threads(settings) -> None:
    """torch intra-op threads for this process, when the config sets them (OpenVINO reads them itself)."""
    if getattr(settings, "threads", 0):
        torch.set_num_threads(settings.threads)


class Finished:
    """A batch that already has its features (what a synchronous backend's `submit` returns)."""

    def __init__(self, features: np.ndarray):
        self._features = features

    def done(self) -> bool:
        return True

    def wait(self) -> None:
        pass

    def result(self) -> np.ndarray:
        return self._features


class Synchronous:
    """`submit` for backends that compute a batch in the call: one batch at a time."""

    depth = 1

    def has_room(self) -> bool:
        return True

    def submit(self, images: np.ndarray, wake: Callable[[], None] | None = None) -> Finished:
        return Finished(self(images))


class TorchCpu(Synchronous):
    def __init__(self, extractor: FeatureExtractor, preset: Preset, bfloat16: bool):
        self.preset = preset
        self.model = extractor.eval().to(memory_format=torch.channels_last)
        self.bfloat16 = bfloat16
        self.name = f"torch-cpu-{'bf16' if bfloat16 else 'fp32'}-channels-last"

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        batch = normalize_batch(torch.from_numpy(images), self.preset)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            features = self.model(batch)
        return features.float().numpy()


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def probe_images(preset: Preset, count: int = 4, seed: int = 0) -> np.ndarray:
    """Frames for checking a backend against float32: synthetic camera frames, not noise."""
    from models.presets import geometric
    from models.synthetic import SyntheticCamera

    camera = SyntheticCamera(seed=seed, segment_frames=7)
    frames = []
    for _ in range(count * 7):
        frames.append(geometric(camera.next_frame()[0], preset))
    return np.stack(frames[::7][:count])


def _setting(settings, name: str, default):
    return getattr(settings, name, default) if settings is not None else default


def choose_backend(extractor: FeatureExtractor, preset: Preset, *, backend: str = "auto", device: str = "auto",
                   max_batch: int = 16, settings=None) -> Backend:
    """The fastest backend for this machine (or the one the config names), checked against float32.

    Order on `auto`: CUDA (float16) when a GPU is visible, else OpenVINO (the bundle's int8 model
    when its label guard admitted it, models/int8.py; else bfloat16 where the CPU has it), else torch
    bfloat16 channels-last, else torch float32. `settings` is the
    `features` config section (precision, threads, OpenVINO options); None means defaults.
    Any backend that is not plain float32 torch must give features within cosine MIN_COSINE of it
    on synthetic-camera frames, else the worker falls back to float32 and says so; the int8 model
    is held to its label guard instead (cosine is a proxy; labels are what users see).
    """
    precision = _setting(settings, "precision", "auto")
    if backend not in BACKENDS:
        raise ConfigError(f"features.backend {backend!r}: choose {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ConfigError(f"features.device {device!r}: choose {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"features.precision {precision!r}: choose {', '.join(PRECISIONS)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("features.device = cuda but no CUDA device is visible; set features.device=auto or cpu")
    use_cuda = device == "cuda" or (device == "auto" and backend != "openvino" and torch.cuda.is_available())
    if backend == "openvino" and (device == "cuda" or not _openvino_available()):
        raise ConfigError("features.backend = openvino needs the CPU (features.device=cpu) and the openvino "
                           "package (pip install openvino); or set features.backend=auto")
    if precision == "int8" and (use_cuda or backend == "torch" or not _openvino_available()):
        raise RuntimeError("features.precision = int8 runs on OpenVINO on the CPU (features.backend=auto or openvino, "
                           "features.device=cpu, the openvino package); or set features.precision=auto")
    reduced = precision != "fp32"
    int8 = None
    reference = TorchCpu(extractor, preset, bfloat16=False)
    if use_cuda:
        if not reduced:
            raise ConfigError("features.precision = fp32 on CUDA is not offered; use features.precision=auto")
        from workers.cuda_backend import torch_cuda

        candidate = torch_cuda(extractor, preset, max_batch=max_batch)
    elif backend in ("auto", "openvino") and _openvino_available():
        from workers.openvino_backend import OpenVinoCpu

        int8 = _int8_model(settings, precision)
        candidate = OpenVinoCpu(extractor, preset, max_batch=max_batch, reduced=reduced,
                                threads=_setting(settings, "threads", 0),
                                requests=_setting(settings, "openvino_requests", 2), int8_model=int8)
    elif reduced and cpu_supports_bf16():
        candidate = TorchCpu(extractor, preset, bfloat16=True)
    else:
        candidate = reference
    if candidate is not reference and int8 is None:  # int8 is guarded by labels on the test split, not by cosine
        images = probe_images(preset)
        cosine = float(cosine_similarity(candidate(images), reference(images)).min())
        if cosine < MIN_COSINE:
            log.warning("%s features differ from float32 (min cosine %.5f < %.3f): using %s instead",
                        candidate.name, cosine, MIN_COSINE, reference.name)
            candidate = reference
        else:
            log.info("%s features match float32 (min cosine %.5f)", candidate.name, cosine)
    log.info("feature backend: %s (asked: backend=%s device=%s precision=%s; CUDA %s, OpenVINO %s, CPU bf16 %s)",
             candidate.name, backend, device, precision,
             "visible" if torch.cuda.is_available() else "absent",
             "installed" if _openvino_available() else "absent", "yes" if cpu_supports_bf16() else "no")
    return candidate


def _int8_model(settings, precision: str) -> Path | None:
    """The bundle's int8 model: on "int8" whenever it exists, on "auto" only when its label guard admitted it."""
    if precision not in ("auto", "int8"):
        return None
    from models.int8_report import guard_line, model_file, read_guard

    path = Path(_setting(settings, "bundle", DEFAULT_BUNDLE))
    guard = read_guard(path)
    if guard is None:
        if precision == "int8":
            raise ConfigError(f"features.precision = int8 but no int8 model was made for {path}: run "
                               f"`python run.py quantize` (needs openvino and nncf), or set features.precision=auto")
        return None
    if not guard["admitted"] and precision == "auto":
        log.info("not using the bundle's int8 model: %s", guard_line(guard))
        return None
    log.info("%s: %s", "int8 asked for" if precision == "int8" else "int8 chosen", guard_line(guard))
    return model_file(path)


def available_backends(settings=None) -> list[tuple[str, Callable[[FeatureExtractor, Preset], Backend]]]:
    """(name, factory(extractor, preset)) for every backend this machine can run; torch float32 first."""
    max_batch = _setting(settings, "max_batch", 16)
    found: list[tuple[str, Callable]] = [("torch-fp32", lambda e, p: TorchCpu(e, p, bfloat16=False))]
    if cpu_supports_bf16():
        found.append(("torch-bf16", lambda e, p: TorchCpu(e, p, bfloat16=True)))
    if _openvino_available():
        from workers.openvino_backend import OpenVinoCpu

        threads, requests = _setting(settings, "threads", 0), _setting(settings, "openvino_requests", 2)
        found.append(("openvino", lambda e, p: OpenVinoCpu(e, p, max_batch=max_batch, threads=threads,
                                                           requests=requests)))
        from models.int8_report import model_file, read_guard

        bundle_path = Path(_setting(settings, "bundle", DEFAULT_BUNDLE))
        if read_guard(bundle_path) is not None:  # the bundle's int8 model, admitted or not (its guard says)
            found.append(("openvino-int8", lambda e, p: OpenVinoCpu(e, p, max_batch=max_batch, threads=threads,
                                                                    requests=requests,
                                                                    int8_model=model_file(bundle_path))))
    if torch.cuda.is_available():
        from workers.cuda_backend import torch_cuda

        found.append(("torch-cuda", lambda e, p: torch_cuda(e, p, max_batch=max_batch)))
    return found


def _openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True
