"""`run.py label`: every sampled frame of each file labelled once, by the same processes and window
code as `up`; a timeline, segments and an annotated MP4 per video; bad files reported, the rest
still labelled. One real `run.py label` run over every format clip (tests/support/clips.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from configs.settings import load_config
from models.normalize import normalize_batch
from models.presets import geometric
from models.sequence_inputs import sequence_inputs
from models.window import offline_window_probabilities
from streamer.capture.sources import open_source, sampled_frames
from tests.support.clips import decodable_frames, format_clips
from tests.support.pipeline import FAST, RUN_PY, ROOT, free_endpoints
from workers.loading import load_extractor, load_sequence_model

# float32 features, so the streamed labels can be held to the offline model at 1e-4
SETS = FAST + ["capture.fps=15", "features.precision=fp32"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("label")
    clips = format_clips(folder / "clips")
    garbage = folder / "clips" / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    sets = SETS + [f"endpoints.{name}={value}" for name, value in free_endpoints().items()] + [
        f"supervisor.log_dir={folder / 'logs'}"]
    argv = [sys.executable, str(RUN_PY), "label", *[str(c.path) for c in clips], str(folder / "missing.avi"),
            str(garbage), "--out", str(folder / "out"), "--annotate"]
    for item in sets:
        argv += ["--set", item]
    result = subprocess.run(argv, cwd=folder, capture_output=True, text=True, timeout=400,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    return clips, folder / "out", result, sets


def _timeline(out, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{name}.labels.jsonl").read_text().splitlines()]


def test_bad_files_are_named_and_the_others_still_labelled(labelled):
    clips, out, result, _ = labelled
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "missing.avi" in output and "no such file" in output
    assert "garbage.mp4" in output and ("cannot open" in output or "no frame could be decoded" in output)
    assert all((out / f"{clip.path.stem}.labels.jsonl").exists() for clip in clips)
    assert "frames/s" in output and "segments" in output  # the closing table
    assert re.search(r"the model alone: \d+ frames/s", output), output


@pytest.mark.parametrize("index", range(7))
def test_label_gives_every_frame_of_each_format_exactly_one_label(labelled, index):
    clips, out, result, _ = labelled
    clip = clips[index]
    timeline = _timeline(out, clip.path.stem)
    assert [row["seq"] for row in timeline] == list(range(decodable_frames(clip.path))), result.stdout
    assert timeline[1]["time"] == pytest.approx(1 / clip.fps, abs=1e-3)
    assert all(set(row) == {"seq", "time", "label", "score", "top_k", "warming"} for row in timeline)


@pytest.mark.parametrize("index", [1, 4])  # 452x256 MJPG, 1920x1080 MPEG-4
def test_the_annotated_mp4_plays_with_one_frame_per_label(labelled, index):
    clips, out, _, _ = labelled
    clip = clips[index]
    video = cv2.VideoCapture(str(out / f"{clip.path.stem}.annotated.mp4"))
    source = cv2.VideoCapture(str(clip.path))
    frames = 0
    while True:
        ok, image = video.read()
        if not ok:
            break
        frames += 1
    assert frames == len(_timeline(out, clip.path.stem))
    assert (video.get(cv2.CAP_PROP_FRAME_WIDTH), video.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        source.get(cv2.CAP_PROP_FRAME_WIDTH), source.get(cv2.CAP_PROP_FRAME_HEIGHT))


def test_segments_are_written_per_video(labelled):
    clips, out, _, _ = labelled
    for clip in clips:
        segments = json.loads((out / f"{clip.path.stem}.segments.json").read_text())
        assert isinstance(segments, list)
        for segment in segments:
            assert 0 <= segment["start_seq"] <= segment["end_seq"]
            assert segment["end_time"] > segment["start_time"]


def test_labels_equal_the_offline_model_on_the_same_windows(labelled):
    clips, out, _, sets = labelled
    clip = clips[2]  # H.264 MP4
    config = load_config(None, sets)
    extractor, sequence = load_extractor(config), load_sequence_model(config)
    source = open_source(str(clip.path))
    try:
        images = np.stack([geometric(f.image_bgr, extractor.preset) for f in sampled_frames(source, 15.0)])
    finally:
        source.close()
    with torch.no_grad():
        features = extractor.extractor(normalize_batch(torch.from_numpy(images), extractor.preset))
    inputs = sequence_inputs(features.float(), sequence.inputs).numpy()
    expected = offline_window_probabilities(sequence.model, inputs, sequence.window)
    timeline = _timeline(out, clip.path.stem)
    assert len(timeline) == len(expected)
    worst = max(abs(p - expected[row["seq"], sequence.classes.index(name)])
                for row in timeline for name, p in row["top_k"])
    assert worst <= 1e-4, worst
