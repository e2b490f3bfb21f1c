"""Every inference backend this machine has gives the features and labels of torch float32.

Checked on synthetic-camera frames (not noise): features within cosine 0.999 of float32, and the
LSTM's label over each 32-frame window the same in >= 99% of windows. With a trained bundle at
artifacts/bundle.pt its CNN and LSTM are used; without one, seeded random weights (the check
is then on numerics alone, and harder: a random LSTM's top classes are close together).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from configs.settings import DEFAULT_BUNDLE, ConfigError, load_config
from models.presets import Preset, geometric
from models.synthetic import SyntheticCamera
from workers.backends import MIN_COSINE, Backend, available_backends, choose_backend, cosine_similarity
from workers.loading import load_extractor, load_sequence_model

WINDOW_AGREEMENT = 0.99


def _config(tmp_path: Path):
    if DEFAULT_BUNDLE.exists():
        return load_config(overrides=[f"features.bundle={DEFAULT_BUNDLE}", f"lstm.bundle={DEFAULT_BUNDLE}"])
    # No bundle: random weights, at a smaller preset so the float32 reference stays quick on 2 cores.
    missing = tmp_path / "none.pt"
    return load_config(overrides=[f"features.bundle={missing}", f"lstm.bundle={missing}", "capture.resize=128",
                                  "capture.crop=112", "features.imagenet_fallback=false"])


def _frames(preset: Preset, segments: int = 4, per_segment: int = 40) -> np.ndarray:
    camera = SyntheticCamera(seed=7, segment_frames=per_segment)
    return np.stack([geometric(camera.next_frame()[0], preset) for _ in range(segments * per_segment)])


@torch.no_grad()
def _window_labels(model, features: np.ndarray, window: int) -> np.ndarray:
    x = torch.from_numpy(features).float()
    sequences = torch.stack([x[t - window + 1: t + 1] for t in range(window - 1, len(x))])
    return model(sequences).argmax(1).numpy()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    config = _config(tmp_path_factory.mktemp("backends"))
    loaded = load_extractor(config)
    frames = _frames(loaded.preset)
    sequence = load_sequence_model(config)
    factories = dict(available_backends(config.features))
    reference = factories["torch-fp32"](load_extractor(config).extractor, loaded.preset)
    expected = np.concatenate([reference(frames[i:i + 16]) for i in range(0, len(frames), 16)])
    return config, loaded.preset, frames, sequence, factories, expected


@pytest.mark.parametrize("name", ["torch-bf16", "openvino"])
def test_backend_matches_float32_features_and_labels(setup, name):
    config, preset, frames, sequence, factories, expected = setup
    if name not in factories:
        pytest.fail(f"backend {name} is not available on this machine; the project installs openvino and "
                    f"its CPUs have bf16")  # never skipped: a missing backend is a broken install
    backend = factories[name](load_extractor(config).extractor, preset)
    assert isinstance(backend, Backend)  # name, depth, __call__, has_room, submit
    got = np.concatenate([backend(frames[i:i + 16]) for i in range(0, len(frames), 16)])
    assert got.shape == expected.shape and got.dtype == np.float32
    assert cosine_similarity(got, expected).min() >= MIN_COSINE >= 0.999
    model, window = sequence.model.eval(), sequence.window
    agreement = (_window_labels(model, got, window) == _window_labels(model, expected, window)).mean()
    assert agreement >= WINDOW_AGREEMENT, f"{name}: same label in {agreement:.3f} of windows"


def test_batch_of_one_equals_a_row_of_a_batch(setup):
    config, preset, frames, _, _, _ = setup
    backend = choose_backend(load_extractor(config).extractor, preset, settings=config.features)
    batch = backend(frames[:4])
    single = backend(frames[2:3])
    assert cosine_similarity(single, batch[2:3]).min() >= 0.9999


def test_choose_backend_refuses_unknown_names_and_a_missing_gpu(setup):
    config, preset, *_ = setup
    extractor = load_extractor(config).extractor
    with pytest.raises(ValueError, match="features.backend"):
        choose_backend(extractor, preset, backend="tensorrt")
    with pytest.raises(ValueError, match="features.device"):
        choose_backend(extractor, preset, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            choose_backend(extractor, preset, device="cuda")


def test_precision_fp32_on_the_torch_backend_is_the_reference(setup):
    config, preset, frames, *_ = setup
    fp32 = load_config(overrides=["features.precision=fp32"]).features
    backend = choose_backend(load_extractor(config).extractor, preset, backend="torch", device="cpu", settings=fp32)
    assert backend.name.startswith("torch-cpu-fp32")


def test_openvino_batches_in_flight_give_the_features_of_one_call_in_submission_order(setup):
    config, preset, frames, _, _, _ = setup
    from workers.openvino_backend import OpenVinoCpu

    backend = OpenVinoCpu(load_extractor(config).extractor, preset, max_batch=16, requests=2)
    expected = backend(frames[:24])
    woken = threading.Semaphore(0)
    assert backend.has_room()
    lone = backend.submit(frames[:1], woken.release)  # a partial batch while idle: the latency request
    assert not backend.has_room()  # it uses every core: nothing starts beside it
    assert woken.acquire(timeout=30) and lone.done()
    np.testing.assert_allclose(lone.result(), expected[:1], rtol=1e-3, atol=1e-3)
    assert backend.has_room()
    first = backend.submit(frames[:16], woken.release)  # a full batch: a throughput request
    second = backend.submit(frames[16:24], woken.release)  # the other one, while the first runs
    assert backend.depth == 2 and not backend.has_room()
    for _ in range(2):
        assert woken.acquire(timeout=30)
    got = np.concatenate([first.result(), second.result()])
    assert backend.has_room()
    assert cosine_similarity(got, expected).min() >= 0.99999
    with pytest.raises(RuntimeError, match="has_room"):
        for _ in range(3):
            backend.submit(frames[:16])
