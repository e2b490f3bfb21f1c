"""The int8 feature model: made from a bundle with NNCF, guarded by labels, chosen by `features.precision`.

Real parts: a synthetic action set written as .avi files, `prepare`'s JPEG frames, a bundle
saved the way `train-lstm` saves one (weights seeded, not trained: the guard's verdict then
depends on numerics alone), OpenVINO and NNCF. The guard's figures are recomputed here from the
stored model and compared with what was recorded.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console

from configs.settings import ConfigError, load_config
from models import bundle
from models.evaluate import evaluate
from models.extract import extract
from models.frames import load_video_frames
from models.int8 import ATTEMPTS, MAX_ACCURACY_DROP_POINTS, MIN_WINDOW_AGREEMENT, guard, guard_videos, make_int8
from models.int8_report import model_file, read_guard
from models.networks import FeatureExtractor, FrameCNN, SequenceLSTM
from models.prepare import prepare
from models.presets import Preset
from models.synthetic_set import write_synthetic_set
from workers.backends import TorchCpu, choose_backend

WINDOW = 8


def _console() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root, work = tmp_path_factory.mktemp("synthetic"), tmp_path_factory.mktemp("work")
    write_synthetic_set(root, clips_per_class=3, frames_per_clip=12, seed=1, width=80, height=64, progress=False)
    config = load_config(None, [f'data.ucf_root="{root}"', f'data.work_dir="{work}"', "data.resize=72",
                                "data.crop=64", "cnn.workers=0", f"sequence.window={WINDOW}"])
    prepare(config, _console(), progress=False)
    classes = json.loads((work / "frames" / "manifest.json").read_text())["classes"]
    torch.manual_seed(3)
    bundle.save_cnn(work / "cnn.pt", FrameCNN(len(classes)), classes, Preset(resize=72, crop=64), metrics={})
    bundle.save_lstm(work / "lstm.pt", SequenceLSTM(len(classes), hidden=16, layers=1), classes, WINDOW,
                     metrics={"inputs": "features"})
    bundle_file = work / "bundle.pt"
    bundle.save_bundle(bundle_file, work / "cnn.pt", work / "lstm.pt")
    config = load_config(None, [f'data.ucf_root="{root}"', f'data.work_dir="{work}"', "data.resize=72",
                                "data.crop=64", "cnn.workers=0", f"features.bundle={bundle_file}",
                                f"lstm.bundle={bundle_file}"])
    output = _console()
    record = make_int8(config, bundle_file, output, progress=False, attempts=ATTEMPTS[:1])
    return {"config": config, "bundle": bundle_file, "record": record, "output": output.file.getvalue(),
            "work": work}


def test_int8_model_is_stored_beside_the_bundle_keyed_by_its_id(made):
    folder = made["bundle"].parent / "int8" / bundle.model_id(made["bundle"])
    assert (folder / "model.xml").is_file() and (folder / "model.bin").is_file()
    stored = read_guard(made["bundle"])
    assert stored["model_id"] == bundle.model_id(made["bundle"]) and stored["attempt"] == ATTEMPTS[0].name
    assert model_file(made["bundle"]) == folder / "model.xml"
    assert "window labels agree with float32" in made["output"]


def test_guard_figures_are_what_the_stored_model_gives(made):
    import openvino

    record, work = made["record"], made["work"]
    cnn, lstm = bundle.load_cnn(made["bundle"]), bundle.load_lstm(made["bundle"])
    classes, videos = guard_videos(work)
    reference_model = TorchCpu(FeatureExtractor(cnn.model), cnn.preset, bfloat16=False)
    compiled = openvino.Core().compile_model(str(model_file(made["bundle"])), "CPU")
    reference, candidate = [], []
    for video in videos:
        frames = load_video_frames(video, cnn.preset)
        reference.append(reference_model(frames))
        candidate.append(np.array(compiled.create_infer_request().infer([frames])[0], dtype=np.float32))
    labels = [classes.index(video.class_name) for video in videos]
    again = guard(labels, reference, candidate, lstm)
    assert again["windows"] == record["windows"] == sum(max(1, len(f) - WINDOW + 1) for f in reference)
    assert abs(again["window_agreement"] - record["window_agreement"]) <= 0.02
    assert abs(again["mean_cosine"] - record["mean_cosine"]) <= 1e-3
    assert 0.9 < record["min_cosine"] <= record["mean_cosine"] <= 1.0
    assert record["admitted"] == (record["window_agreement"] >= MIN_WINDOW_AGREEMENT
                                  and record["accuracy_drop_points"] <= MAX_ACCURACY_DROP_POINTS)


def test_precision_setting_chooses_the_int8_model(made):
    from dataclasses import replace

    cnn = bundle.load_cnn(made["bundle"])
    settings = made["config"].features
    frames = load_video_frames(guard_videos(made["work"])[1][0], cnn.preset)[:4]
    asked = choose_backend(FeatureExtractor(cnn.model), cnn.preset, settings=replace(settings, precision="int8"))
    assert asked.name == "openvino-cpu-int8" and asked(frames).shape == (4, 512)
    automatic = choose_backend(FeatureExtractor(cnn.model), cnn.preset, settings=replace(settings, precision="auto"))
    assert (automatic.name == "openvino-cpu-int8") == made["record"]["admitted"]
    opted_out = choose_backend(FeatureExtractor(cnn.model), cnn.preset, settings=replace(settings, precision="reduced"))
    assert "int8" not in opted_out.name
    elsewhere = replace(settings, precision="int8", bundle=str(made["work"] / "cnn.pt"))
    with pytest.raises(ConfigError, match="run.py quantize"):
        choose_backend(FeatureExtractor(cnn.model), cnn.preset, settings=elsewhere)


def test_evaluate_reports_the_int8_guard(made):
    config = made["config"]
    extract(config, _console(), progress=False)
    output = _console()
    results = evaluate(config, output, streams=2)
    assert results["int8"]["window_agreement"] == made["record"]["window_agreement"]
    assert "int8 feature model" in output.file.getvalue()
