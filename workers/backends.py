"""Inference backends for the feature worker: uint8 frames in, float32 512-d features out.

Each backend takes a batch of uint8 RGB frames [N, H, W, 3] (already cropped by the capture) and
returns float32 features [N, 512]. Normalisation happens inside, on the device that runs the
model, so a GPU receives 1-byte pixels, not 4-byte floats.

- TorchCuda: pinned host staging buffer, non-blocking upload, half precision.
- TorchCpu: channels-last; bfloat16 autocast where the CPU supports it, else float32.
- OpenVinoCpu (workers/openvino_backend.py): bfloat16 where the CPU has it.
`choose_backend` picks one for this machine unless the config names one, keeps it only if its
features match float32 (cosine >= 0.99 on a probe batch), and logs which.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from models.networks import FeatureExtractor
from models.presets import Preset, normalize_batch

log = logging.getLogger(__name__)

MIN_COSINE = 0.99


def cpu_supports_bf16() -> bool:
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class TorchCpu:
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


class TorchCuda:
    def __init__(self, extractor: FeatureExtractor, preset: Preset, max_batch: int, device: str = "cuda"):
        self.preset, self.device = preset, torch.device(device)
        self.model = extractor.eval().to(self.device, memory_format=torch.channels_last).half()
        side = preset.crop
        # One pinned staging buffer, reused: page-locked memory lets the upload run asynchronously.
        self._staging = torch.empty((max_batch, side, side, 3), dtype=torch.uint8).pin_memory()
        self._stream = torch.cuda.Stream(self.device)
        self.name = f"torch-cuda-fp16-pinned ({torch.cuda.get_device_name(self.device)})"

    @torch.inference_mode()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        n = len(images)
        if n > len(self._staging):
            self._staging = torch.empty((n, *images.shape[1:]), dtype=torch.uint8).pin_memory()
        staged = self._staging[:n]
        staged.numpy()[...] = images
        with torch.cuda.stream(self._stream):
            on_device = staged.to(self.device, non_blocking=True)
            features = self.model(normalize_batch(on_device, self.preset, dtype=torch.float16))
            result = features.float().cpu()
        return result.numpy()


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def probe_images(preset: Preset, count: int = 4, seed: int = 0) -> np.ndarray:
    """Frames for checking a backend against float32: synthetic camera frames, not noise."""
    from models.presets import geometric
    from streamer.synthetic import SyntheticCamera

    camera = SyntheticCamera(seed=seed, segment_frames=7)
    frames = []
    for _ in range(count * 7):
        frames.append(geometric(camera.next_frame()[0], preset))
    return np.stack(frames[::7][:count])


def choose_backend(extractor: FeatureExtractor, preset: Preset, *, backend: str = "auto", device: str = "auto",
                   max_batch: int = 16) -> object:
    """The fastest backend for this machine (or the one the config names), checked against float32.

    Any backend that is not plain float32 torch must give features within cosine 0.99 of it on
    synthetic-camera frames, else the worker falls back to float32 and says so.
    """
    if backend not in ("auto", "torch", "openvino"):
        raise ValueError(f"features.backend {backend!r}: choose auto, torch or openvino")
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"features.device {device!r}: choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("features.device = cuda but no CUDA device is visible; set features.device=auto or cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if backend == "openvino" and (use_cuda or not _openvino_available()):
        raise RuntimeError("features.backend = openvino needs the CPU (features.device=cpu) and the openvino "
                           "package (pip install openvino); or set features.backend=auto")
    reference = TorchCpu(extractor, preset, bfloat16=False)
    if use_cuda:
        candidate = TorchCuda(extractor, preset, max_batch=max_batch)
    elif backend in ("auto", "openvino") and _openvino_available():
        from workers.openvino_backend import OpenVinoCpu

        candidate = OpenVinoCpu(extractor, preset, max_batch=max_batch)
    elif cpu_supports_bf16():
        candidate = TorchCpu(extractor, preset, bfloat16=True)
    else:
        candidate = reference
    if candidate is not reference:
        images = probe_images(preset)
        cosine = float(cosine_similarity(candidate(images), reference(images)).min())
        if cosine < MIN_COSINE:
            log.warning("%s features differ from float32 (min cosine %.4f < %.2f): using %s instead",
                        candidate.name, cosine, MIN_COSINE, reference.name)
            candidate = reference
        else:
            log.info("%s features match float32 (min cosine %.5f)", candidate.name, cosine)
    log.info("feature backend: %s", candidate.name)
    return candidate


def _openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def time_backend(backend, images: np.ndarray, repeats: int = 10) -> float:
    """Seconds per call, after two warm-up calls."""
    for _ in range(2):
        backend(images)
    started = time.perf_counter()
    for _ in range(repeats):
        backend(images)
    return (time.perf_counter() - started) / repeats
