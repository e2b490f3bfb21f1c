"""Every training stage on a tiny synthetic set (64 px, a few clips, tiny epochs), called as Python functions.

One module-scoped run goes prepare -> train-cnn -> extract -> train-lstm -> evaluate; the tests
below check what each stage left behind. The set has one unreadable video planted in it.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

import run
from configs.exit_codes import ExitCode
from configs.settings import load_config, replace
from models import bundle, pretrained
from models.evaluate import evaluate
from models.extract import extract, feature_path, load_features, video_features
from models.frames import frame_name, load_video_frames, prepared_videos, read_manifest
from models.networks import FeatureExtractor
from models.prepare import FrameSampler, prepare
from models.synthetic_set import write_synthetic_set
from models.train_cnn import train_cnn
from models.sequence_inputs import StreamInputs, checkpoint_inputs, sequence_inputs
from models.train_lstm import WindowDataset, channel_dropout, load_split_features, train_lstm, window_starts
from models.training_loop import Precision
from models.training_report import EpochResult, epoch_table
from tests.support.pipeline import free_port
from models.synthetic import ACTIVITIES, REVERSED_PAIRS

FRAMES_PER_CLIP = 12
CORRUPT = "SwingStripes/v_SwingStripes_g04_c01.avi"  # a train video overwritten with junk


def tiny_config(root: Path, work_dir: Path, *extra: str):
    return load_config(None, [
        f'data.ucf_root="{root}"', f'data.work_dir="{work_dir}"', "data.resize=64", "data.crop=64",
        "cnn.epochs=2", "cnn.batch_size=32", "cnn.workers=0", "cnn.test_frame_stride=2",
        "sequence.hidden=16", "sequence.layers=2", "sequence.window=8", "sequence.window_stride=2",
        "sequence.epochs=3", "sequence.batch_size=16", *extra])


def console() -> Console:
    return Console(file=io.StringIO(), width=200)


def text(output: Console) -> str:
    return output.file.getvalue()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_set(root, clips_per_class=3, frames_per_clip=FRAMES_PER_CLIP, seed=1, width=80, height=64,
                        progress=False)
    (root / "UCF-101" / CORRUPT).write_bytes(b"this is not a video" * 100)
    work_dir = tmp_path_factory.mktemp("work")
    config = tiny_config(root, work_dir)
    out = {"config": config, "root": root, "work_dir": work_dir, "consoles": {}}
    for stage, call in [
        ("prepare", lambda c: prepare(config, c, progress=False)),
        ("prepare_again", lambda c: prepare(config, c, progress=False)),
        ("train_cnn", lambda c: train_cnn(config, c, progress=False)),
        ("extract", lambda c: extract(config, c, progress=False)),
        ("extract_again", lambda c: extract(config, c, progress=False)),
        ("train_lstm", lambda c: train_lstm(config, work_dir / "out" / "bundle.pt", c, progress=False)),
        ("evaluate", lambda c: evaluate(config, c, streams=5)),
    ]:
        out["consoles"][stage] = console()
        out[stage] = call(out["consoles"][stage])
    return out


def test_prepare_writes_frames_and_manifest(pipeline):
    work_dir, result = pipeline["work_dir"], pipeline["prepare"]
    manifest = read_manifest(work_dir)
    assert manifest["classes"] == list(ACTIVITIES)
    assert len(result.written) == 3 * len(ACTIVITIES) - 1
    entry = manifest["videos"]["train/GrowShape/v_GrowShape_g04_c01"]
    assert entry["class"] == "GrowShape" and entry["split"] == "train" and entry["frames"] == FRAMES_PER_CLIP
    assert entry["source_fps"] == pytest.approx(25.0) and entry["source"].endswith("v_GrowShape_g04_c01.avi")
    folder = work_dir / "frames" / "train" / "GrowShape" / "v_GrowShape_g04_c01"
    assert sorted(p.name for p in folder.iterdir()) == [frame_name(i) for i in range(1, FRAMES_PER_CLIP + 1)]
    assert {e["split"] for e in manifest["videos"].values()} == {"train", "test"}


def test_prepare_reports_and_skips_the_corrupt_video(pipeline):
    result, log = pipeline["prepare"], text(pipeline["consoles"]["prepare"])
    assert list(result.failed) == [str(pipeline["root"] / "UCF-101" / CORRUPT)]
    assert "v_SwingStripes_g04_c01.avi" in log and "skipped" in log
    assert "train/SwingStripes/v_SwingStripes_g04_c01" not in read_manifest(pipeline["work_dir"])["videos"]
    assert str(pipeline["root"] / "UCF-101" / CORRUPT) in read_manifest(pipeline["work_dir"])["failed"]


def test_prepare_again_skips_finished_videos(pipeline):
    first, again = pipeline["prepare"], pipeline["prepare_again"]
    assert again.written == [] and sorted(again.skipped) == sorted(first.written)
    assert list(again.failed) == list(first.failed)  # still reported, still not fatal


def test_prepare_redoes_a_half_written_video(pipeline, tmp_path):
    work_dir = tmp_path / "work"
    shutil.copytree(pipeline["work_dir"] / "frames", work_dir / "frames")
    victim = work_dir / "frames" / "test" / "FadeIn" / "v_FadeIn_g01_c01"
    (victim / frame_name(FRAMES_PER_CLIP)).unlink()
    result = prepare(replace(pipeline["config"], "data", work_dir=str(work_dir)), console(), progress=False)
    assert result.written == ["test/FadeIn/v_FadeIn_g01_c01"]
    assert (victim / frame_name(FRAMES_PER_CLIP)).is_file()


def test_frame_sampler_takes_the_chosen_rate():
    def kept(source, wanted, n):
        sampler = FrameSampler(source, wanted)
        return [i for i in range(n) if sampler.keep(i)]
    assert kept(25, 5, 26) == [0, 5, 10, 15, 20, 25]
    assert len(kept(30, 25, 300)) == 250
    assert kept(10, 25, 7) == list(range(7))  # slower video: every frame
    assert kept(0, 25, 4) == list(range(4))  # unknown source rate: every frame


def test_train_cnn_checkpoint_rebuilds_and_curves_are_written(pipeline):
    trained, work_dir = pipeline["train_cnn"], pipeline["work_dir"]
    checkpoint = bundle.load_cnn(trained.checkpoint)
    assert trained.checkpoint == work_dir / "cnn.pt"
    assert checkpoint.classes == list(ACTIVITIES)
    assert (checkpoint.preset.resize, checkpoint.preset.crop) == (64, 64)
    assert checkpoint.metrics["epoch"] == trained.best.epoch
    assert checkpoint.metrics["validation_accuracy"] == pytest.approx(trained.best.validation_accuracy)
    assert checkpoint.metrics["test_accuracy"] == pytest.approx(trained.test_accuracy)
    with torch.no_grad():
        output = checkpoint.model.eval()(torch.randn(2, 3, 64, 64))
    assert output.shape == (2, len(ACTIVITIES)) and torch.allclose(output.exp().sum(1), torch.ones(2), atol=1e-5)
    png = work_dir / "cnn_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    history = json.loads((work_dir / "cnn_history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    log = text(pipeline["consoles"]["train_cnn"])
    assert "train loss" in log and "val acc" in log and "2/2" in log
    assert "by validation accuracy" in log and "scored once" in log
    assert history["test_accuracy"] == pytest.approx(trained.test_accuracy)


def test_extract_writes_one_feature_tensor_per_video(pipeline):
    work_dir, config = pipeline["work_dir"], pipeline["config"]
    assert pipeline["extract"].written == 3 * len(ACTIVITIES) - 1
    checkpoint = bundle.load_cnn(work_dir / "cnn.pt")
    for split in ("train", "test"):
        _, videos = prepared_videos(work_dir, split)
        for video in videos:
            features = load_features(feature_path(work_dir, video.key))
            assert features.dtype == torch.float32 and features.shape == (FRAMES_PER_CLIP, 512)
    # Stored features are what the extractor gives for the video's frames under the same preset.
    frames = torch.from_numpy(load_video_frames(videos[0], checkpoint.preset))
    extractor = FeatureExtractor(checkpoint.model.to(memory_format=torch.channels_last)).eval()
    again = video_features(extractor, frames, checkpoint.preset, torch.device("cpu"),
                           Precision.choose(torch.device("cpu"), config.cnn.mixed_precision), config.cnn.batch_size)
    assert torch.allclose(again, load_features(feature_path(work_dir, videos[0].key)), atol=2e-2)


def test_extract_again_skips_videos_already_done(pipeline):
    again = pipeline["extract_again"]
    assert again.written == 0 and again.skipped == 3 * len(ACTIVITIES) - 1


def test_train_lstm_writes_a_loadable_bundle(pipeline):
    trained, work_dir = pipeline["train_lstm"], pipeline["work_dir"]
    assert trained.bundle == work_dir / "bundle.pt"
    cnn, lstm = bundle.load_cnn(trained.bundle), bundle.load_lstm(trained.bundle)
    assert cnn.classes == lstm.classes == list(ACTIVITIES)
    assert (lstm.hidden, lstm.layers, lstm.window) == (16, 2, 8)
    assert bundle.model_id(trained.bundle) == trained.model_id
    assert trained.model_id in text(pipeline["consoles"]["train_lstm"])
    copied = work_dir / "out" / "bundle.pt"
    assert copied.read_bytes() == trained.bundle.read_bytes()
    assert (work_dir / "lstm_curves.png").read_bytes()[:4] == b"\x89PNG"
    metrics = bundle.load_lstm(work_dir / "lstm.pt").metrics
    assert metrics["epoch"] == trained.best.epoch
    assert metrics["validation_window_accuracy"] == pytest.approx(trained.best.validation_accuracy)
    assert metrics["test_window_accuracy"] == pytest.approx(trained.test_window_accuracy)


def test_windows_cover_each_video_with_the_stride(pipeline):
    _, videos = load_split_features(pipeline["work_dir"], "test")
    assert list(window_starts(12, 8, 2)) == [0, 2, 4] and list(window_starts(7, 8, 2)) == []
    dataset = WindowDataset(videos, window=8, stride=2)
    assert len(dataset) == 3 * len(videos)
    sequence, label = dataset[4]
    assert sequence.shape == (8, 512) and label == videos[1].label
    assert torch.equal(sequence, videos[1].features[2:10])


def test_evaluate_writes_json_and_streaming_equals_offline(pipeline):
    results, work_dir = pipeline["evaluate"], pipeline["work_dir"]
    saved = json.loads((work_dir / "evaluation.json").read_text())
    assert saved["streamed_vs_offline"] == results["streamed_vs_offline"]
    stream = saved["streamed_vs_offline"]
    assert stream["streams"] == 5 and stream["frames"] == 5 * FRAMES_PER_CLIP
    assert stream["max_abs_difference"] <= 1e-4 and stream["labels_equal"] and stream["within_tolerance"]
    test_videos = len(ACTIVITIES)
    assert saved["test_videos"] == test_videos
    assert saved["cnn"]["frames"] == test_videos * FRAMES_PER_CLIP
    assert saved["lstm"]["windows"] == test_videos * (FRAMES_PER_CLIP - 8 + 1)
    assert np.array(saved["lstm"]["confusion"]).sum() == saved["lstm"]["windows"]
    assert saved["reversed_pairs"] == [name for pair in REVERSED_PAIRS for name in pair]
    for figure in (saved["cnn"]["frame_accuracy"], saved["cnn"]["reversed_pairs_frame_accuracy"],
                   saved["lstm"]["window_accuracy"], saved["lstm"]["reversed_pairs_window_accuracy"],
                   saved["lstm"]["video_accuracy"]):
        assert 0.0 <= figure <= 1.0
    assert (work_dir / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert "LSTM per 8-frame window" in text(pipeline["consoles"]["evaluate"])


def test_imagenet_without_the_file_gives_the_clear_error(pipeline, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert pretrained.weights_path() == expected
    offline = f"http://127.0.0.1:{free_port()}/resnet18-f37072fd.pth"  # as offline: nothing listens there
    config = replace(pipeline["config"], "cnn", weights="imagenet", weights_url=offline)
    with pytest.raises(pretrained.ImageNetWeightsMissing) as error:
        train_cnn(config, console(), progress=False)
    assert str(expected) in str(error.value) and offline in str(error.value)
    assert "--weights none" in str(error.value)
    code = run.main(["train-cnn", "--weights", "imagenet", "--set", f'data.work_dir="{pipeline["work_dir"]}"',
                     "--set", f'cnn.weights_url="{offline}"'])
    printed = capsys.readouterr().err
    assert code == ExitCode.USER_ERROR and "run.py train-cnn: error:" in printed and "resnet18-f37072fd.pth" in printed


def test_imagenet_file_is_checked_and_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = pretrained.weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"junk")
    with pytest.raises(pretrained.ImageNetWeightsMissing, match="damaged"):
        pretrained.imagenet_resnet18()
    from torchvision.models import resnet18
    reference = resnet18(weights=None)
    torch.save(reference.state_dict(), path)
    monkeypatch.setattr(pretrained, "_check_hash", lambda _: None)  # a random net cannot have the real hash
    loaded = pretrained.imagenet_resnet18()
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)


def test_epoch_table_marks_the_best_epoch():
    results = [EpochResult(1, 1.0, 0.5, 1.2, 0.4, 1.0), EpochResult(2, 0.8, 0.6, 1.0, 0.7, 1.0),
               EpochResult(3, 0.7, 0.7, 1.1, 0.7, 1.0)]
    output = console()
    output.print(epoch_table(results))
    lines = [line for line in text(output).splitlines() if "/3" in line]
    assert len(lines) == 3 and "best" in lines[1] and "best" not in lines[0] + lines[2]


def copy_of_work_dir(pipeline, tmp_path) -> Path:
    work_dir = tmp_path / "work"
    shutil.copytree(pipeline["work_dir"], work_dir, ignore=shutil.ignore_patterns("out"))
    return work_dir


def test_extract_starts_again_when_the_cnn_changed(pipeline, tmp_path):
    work_dir = copy_of_work_dir(pipeline, tmp_path)
    checkpoint = bundle.load_cnn(work_dir / "cnn.pt")
    with torch.no_grad():
        checkpoint.model.backbone.layer4[1].bn2.bias.add_(1.0)
    bundle.save_cnn(work_dir / "cnn.pt", checkpoint.model, checkpoint.classes, checkpoint.preset, {})
    output = console()
    result = extract(replace(pipeline["config"], "data", work_dir=str(work_dir)), output, progress=False)
    assert result.written == 3 * len(ACTIVITIES) - 1 and result.skipped == 0
    assert "changed" in text(output)
    key = "test/FadeIn/v_FadeIn_g01_c01"
    assert not torch.allclose(load_features(feature_path(work_dir, key)),
                              load_features(feature_path(pipeline["work_dir"], key)))


def test_lstm_on_raw_features_also_streams_exactly(pipeline, tmp_path):
    work_dir = copy_of_work_dir(pipeline, tmp_path)
    config = replace(replace(pipeline["config"], "data", work_dir=str(work_dir)), "sequence", inputs="features",
                     input_dropout=0.0, layers=1, epochs=2)
    trained = train_lstm(config, None, console(), progress=False)
    lstm = bundle.load_lstm(trained.bundle)
    assert lstm.metrics["inputs"] == "features" and lstm.layers == 1
    assert bundle.load_lstm(pipeline["train_lstm"].bundle).metrics["inputs"] == "differences"
    results = evaluate(config, console(), streams=3)
    assert results["lstm"]["inputs"] == "features"
    assert results["streamed_vs_offline"]["max_abs_difference"] <= 1e-4
    assert results["streamed_vs_offline"]["labels_equal"]


def test_stream_inputs_equal_whole_video_inputs():
    features = torch.randn(10, 512)
    differences = sequence_inputs(features, "differences")
    assert torch.equal(differences[0], torch.zeros(512))
    assert torch.equal(differences[1:], features[1:] - features[:-1])
    assert torch.equal(sequence_inputs(features, "features"), features)
    live = StreamInputs("differences")
    streamed = np.stack([live.next("cam", f.numpy()) for f in features])
    assert np.array_equal(streamed, differences.numpy())
    live.reset("cam")  # after a gap the stream starts again, like a new video
    assert np.array_equal(live.next("cam", features[3].numpy()), np.zeros(512, dtype=np.float32))
    assert checkpoint_inputs({}) == "features" and checkpoint_inputs({"inputs": "differences"}) == "differences"
    with pytest.raises(ValueError, match="sequence.inputs"):
        sequence_inputs(features, "deltas")


def test_channel_dropout_drops_whole_channels_and_keeps_the_mean():
    torch.manual_seed(0)
    sequences = torch.ones(4000, 8, 16)
    dropped = channel_dropout(sequences, 0.5)
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # same channels at every step
    assert set(dropped.unique().tolist()) == {0.0, 2.0}
    assert dropped.mean().item() == pytest.approx(1.0, abs=0.02)


def test_validation_groups_come_out_of_the_training_list_apart_from_test(pipeline):
    from models.validation import carve_validation

    work_dir, config = pipeline["work_dir"], pipeline["config"]
    _, train_list = prepared_videos(work_dir, "train")
    _, test_list = prepared_videos(work_dir, "test")
    train, validation = carve_validation(train_list, config.data.validation_fraction)
    groups = {name: {video.group for video in videos}
              for name, videos in (("train", train), ("validation", validation), ("test", test_list))}
    assert groups["validation"] and groups["train"] and all(groups.values())
    assert not groups["validation"] & groups["train"] and not groups["validation"] & groups["test"]
    assert {v.key for v in validation} <= {v.key for v in train_list}
    assert "validation" in text(pipeline["consoles"]["train_lstm"])
    tuned = bundle.load_lstm(work_dir / "lstm.pt").metrics["activity"]
    assert set(tuned) >= {"ema_alpha", "enter", "leave", "min_frames", "score", "configured_score"}
    assert tuned["score"] >= tuned["configured_score"]
