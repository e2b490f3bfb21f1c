"""What people read in the terminal: the live table at 80 columns, the waiting hints of `subscribe`
(real sockets), `up`'s summary and subscribe hint, and the capture settings a bundle carries."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import torch
import zmq
from rich.console import Console

from configs.settings import load_config
from models import bundle
from models.capture_preset import FALLBACK_SEGMENT_FRAMES, fit_capture
from models.networks import FrameCNN, SequenceLSTM
from models.presets import Preset
from streamer.apps.subscriber import View, render, subscribe
from streamer.ops.supervisor import subscribe_command
from streamer.ops.tally import Tally
from streamer.transport import wire
from streamer.transport.sockets import StopFlag, free_port

ROOT = Path(__file__).resolve().parent.parent
MARKUP = "[/t]"  # rich would raise MarkupError on this if it were read as markup
CLASSES = ["Assemble", "BounceBall", "Disperse", "FadeIn", "FadeOut", "GrowShape", "ShrinkShape", "SwingStripes"]


def _label(stream: str, label: str = "GrowShape", truth: str | None = "GrowShape", seq: int = 40,
           runner_up: str = "FadeIn", model_id: str = "cnnlstm-x") -> wire.Label:
    return wire.Label(stream=stream, seq=seq, t_capture=100.0, t_publish=100.01, label=label, score=0.8,
                      top_k=[(label, 0.8), (runner_up, 0.1)], warming=False, frames_in_window=32,
                      model_id=model_id, stages={}, truth=truth, truth_since=0 if truth else -1)


def _text(renderable, width: int = 80) -> str:
    console = Console(file=io.StringIO(), width=width)
    console.print(renderable)
    return console.file.getvalue()


# ------------------------------------------------------------------------------ the live table


def test_real_cameras_get_no_truth_or_accuracy_columns_and_synthetic_ones_do():
    real = View()
    real.add_label(_label("door", truth=None), received=100.02)
    text = _text(render(real, width=80))
    assert "truth" not in text and "acc" not in text.replace("camera", "")
    synthetic = View()
    synthetic.add_label(_label("cam0"), received=100.02)
    text = _text(render(synthetic, width=80))
    assert "truth" in text and "acc" in text and "100.0%" in text
    flat = " ".join(text.split())  # the legend wraps at 80 columns
    assert "live accuracy: labels equal to truth" in flat and "window: frames the label is computed over" in flat


def test_long_stream_names_and_sequence_numbers_are_never_cut_at_80_columns():
    view = View()
    view.add_label(_label("camera-lobby-east-entrance", label="SwingStripes", truth="ShrinkShape", seq=123456),
                   received=100.02)
    view.add_label(_label("cam1", label="Assemble", truth="Disperse", seq=7), received=100.02)
    text = _text(render(view, width=80), width=80)
    assert "camera-lobby-east-entrance" in text and "123456" in text  # other cells give way first
    assert all(len(line) <= 80 for line in text.splitlines())
    usual = View()
    for name in ("cam0", "cam1"):
        usual.add_label(_label(name, label="SwingStripes", truth="ShrinkShape", seq=123456), received=100.02)
    assert "…" not in _text(render(usual, width=80), width=80)  # usual names: nothing is cut
    assert "runner-up" not in text  # left out below 100 columns, shown on wider terminals
    assert "runner-up" in _text(render(view, width=120), width=120)


def test_markup_in_every_field_is_shown_as_text():
    view = View()
    view.add_label(_label(f"a{MARKUP}", label=MARKUP, truth=f"[bold]{MARKUP}", runner_up=MARKUP,
                          model_id=MARKUP), received=100.02)
    view.take(wire.StreamStart(stream=f"a{MARKUP}", source=MARKUP, fps=1.0, width=8, height=8, t=1.0), 100.0)
    view.take(wire.StreamEnd(stream=f"a{MARKUP}", reason=MARKUP, t=1.0), 100.0)
    text = _text(render(view, now=101.0, width=120), width=120)
    assert f"a{MARKUP}" in text and f"[bold]{MARKUP}" in text and f"ended: {MARKUP}" in text


def test_ended_and_silent_streams_are_not_shown_as_live():
    view = View()
    view.add_label(_label("cam0"), received=100.02)
    view.add_label(_label("cam1"), received=100.02)
    view.take(wire.StreamEnd(stream="cam0", reason="stopped", t=101.0), 101.0)
    text = _text(render(view, now=112.0, width=100), width=100)
    cam0 = next(line for line in text.splitlines() if line.startswith("cam0"))
    cam1 = next(line for line in text.splitlines() if line.startswith("cam1"))
    assert "ended: stopped" in cam0 and "20.0" not in cam0
    assert "silent 12 s" in cam1 and "20.0" not in cam1
    view.waiting = "nothing received for 10 s: nothing listens on tcp://127.0.0.1:1"
    assert "nothing listens on tcp://127.0.0.1:1" in _text(render(View(waiting=view.waiting), width=80))
    view.add_label(_label("cam0", seq=41), received=112.0)  # a new session: live again
    assert "ended" not in next(line for line in _text(render(view, now=112.0)).splitlines() if line.startswith("cam0"))


# ----------------------------------------------------------------- subscribe never waits silently


def test_subscribe_with_nothing_running_says_where_it_listens_what_to_check_and_gives_up():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), "subscribe", "--json", "--count", "5",
                           "--timeout", "7", "--set", f"endpoints.labels={endpoint}"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    notes = " ".join(done.stderr.split())  # rich wraps them at the terminal's width
    assert done.returncode == 1 and done.stdout == ""
    assert f"listening for labels on {endpoint} (CURVE off)" in notes
    assert f"nothing listens on {endpoint}. Is `run.py up` running" in notes
    assert "no label for 7 s; giving up" in notes
    assert time.monotonic() - started < 60
    table = subprocess.run([sys.executable, str(ROOT / "run.py"), "subscribe", "--seconds", "2", "--set",
                            f"endpoints.labels={endpoint}"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert table.returncode == 1, "--seconds with nothing received must not look like success"


def test_a_curve_publisher_and_a_plain_subscriber_get_a_curve_hint(capsys):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    public, secret = zmq.curve_keypair()
    context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.curve_server, publisher.curve_secretkey, publisher.curve_publickey = True, secret, public
    publisher.bind(endpoint)
    try:
        view = subscribe(load_config(None, [f"endpoints.labels={endpoint}"]), [], as_json=True, count=1,
                         seconds=0, timeout=6.5, stop=StopFlag())
    finally:
        publisher.close(linger=0)
        context.term()
    notes = " ".join(capsys.readouterr().err.split())
    assert view.timed_out and view.labels == 0
    assert f"{endpoint} refused the handshake" in notes and "try --set security.curve=true" in notes


# ----------------------------------------------------------------------------- up's console


def test_the_subscribe_hint_carries_the_real_endpoint_and_curve():
    assert subscribe_command(load_config()) == "python run.py subscribe"
    moved = load_config(None, ["endpoints.labels=tcp://127.0.0.1:6001", "security.curve=true",
                               "security.client_key=bob"])
    assert subscribe_command(moved) == ("python run.py subscribe --set endpoints.labels=tcp://127.0.0.1:6001 "
                                        "--set security.curve=true --set security.client_key=bob")


def test_the_summary_has_frames_labels_drops_by_reason_and_latency_per_stream():
    tally = Tally()
    for seq, latency_ms in enumerate(range(1, 101)):
        label = _label("cam0", seq=seq)
        tally.take(label, received=label.t_capture + latency_ms / 1000)
    tally.take(wire.Stats(process="capture:cam0", t=1.0, counters={"frames_read": 120, "frames_sent": 110,
                                                                    "dropped_stale": 10, "send_failures": 0}), 1.0)
    tally.take(wire.Stats(process="capture:door", t=1.0, counters={"frames_read": 5, "frames_sent": 5}), 1.0)
    tally.take(wire.Stats(process="lstm", t=1.0, counters={"dropped": 3, "dropped_malformed": 3}), 1.0)
    tally.take(wire.StreamEnd(stream="door", reason="source ended", t=1.0), 1.0)
    tally.take(None, 1.0)
    text = _text(tally.summary("up stopped"), width=100)
    cam0 = next(line for line in text.splitlines() if "cam0" in line)
    assert "120 read, 110 sent" in cam0 and "100" in cam0 and "10 stale" in cam0
    assert "50.5" in cam0 and "99.0" in cam0  # p50 and p99 of 1..100 ms
    door = next(line for line in text.splitlines() if "door" in line)
    cells = [cell.strip() for cell in door.split("│")]
    assert cells[2:7] == ["5 read, 5 sent", "0", "none", "-", "-"]  # no label: no latency
    assert "lstm 3 malformed" in text and "1 malformed messages" in text
    assert tally.first_label_at is not None and "no label arrived" not in text
    assert "no label arrived" in _text(Tally().summary("up stopped"))


# ---------------------------------------------------------------------- what a bundle carries


def _bundle(tmp_path: Path, capture: bundle.TrainedCapture | None) -> Path:
    torch.manual_seed(0)
    cnn, lstm = tmp_path / "cnn.pt", tmp_path / "lstm.pt"
    bundle.save_cnn(cnn, FrameCNN(num_classes=8), CLASSES, Preset(resize=72, crop=64), metrics={})
    bundle.save_lstm(lstm, SequenceLSTM(num_classes=8, hidden=8, layers=1), CLASSES, 8, {})
    path = tmp_path / "bundle.pt"
    bundle.save_bundle(path, cnn, lstm, capture)
    return path


def test_up_and_bench_capture_as_the_bundle_was_trained_unless_told_otherwise(tmp_path):
    path = _bundle(tmp_path, bundle.TrainedCapture(crop=64, resize=72, fps=25.0, synthetic_segment_frames=40))
    fitted = fit_capture(load_config(None, [f"features.bundle={path}"]))
    capture = fitted.config.capture
    assert (capture.crop, capture.resize, capture.synthetic_segment_frames) == (64, 72, 40)
    assert "64-px crops of 72-px frames, 40-frame synthetic activities" in fitted.note and fitted.synthetic_classes
    told = fit_capture(load_config(None, [f"features.bundle={path}", "capture.synthetic_segment_frames=160"]))
    assert told.config.capture.synthetic_segment_frames == 160
    assert "trained on 40-frame clips" in told.note


def test_a_bundle_from_before_the_capture_record_still_loads(tmp_path):
    path = _bundle(tmp_path, None)
    data = torch.load(path, weights_only=True)
    del data["capture"]  # as written before bundles recorded their capture
    torch.save(data, path)
    assert bundle.trained_capture(path) == bundle.TrainedCapture(crop=64, resize=72)
    fitted = fit_capture(load_config(None, [f"features.bundle={path}"]))
    assert fitted.config.capture.synthetic_segment_frames == FALLBACK_SEGMENT_FRAMES
    assert fitted.config.capture.crop == 64 and not fitted.synthetic_classes


def test_evaluate_says_in_words_what_the_live_check_found():
    from models.evaluate import live_check_sentence

    good = live_check_sentence({"streams": 4, "frames": 640, "max_abs_difference": 7.2e-7, "labels_equal": True,
                                "within_tolerance": True})
    assert good.startswith("[green]live == offline:[/]") and "within 7.2e-07" in good
    assert "the same label for every window" in good
    bad = live_check_sentence({"streams": 4, "frames": 640, "max_abs_difference": 0.2, "labels_equal": False,
                               "within_tolerance": False})
    assert "live != offline" in bad and "a different label for some windows" in bad


def test_every_help_shows_defaults_without_importing_torch_or_opencv():
    """`--help` answers before the heavy libraries load (timings are shown, not asserted: see the README)."""
    # capture and make-synthetic are OpenCV programs: they come last, so that every other one is
    # checked for OpenCV too (modules stay imported across the loop)
    script = ("import contextlib, io, sys, run\n"
              "last = ['capture', 'make-synthetic']\n"
              "for name in [n for n in run.SUBCOMMANDS if n not in last] + last:\n"
              "    text = io.StringIO()\n"
              "    with contextlib.redirect_stdout(text):\n"
              "        try:\n"
              "            run.main([name, '--help'])\n"
              "        except SystemExit:\n"
              "            pass\n"
              "    heavy = {'torch', 'torchvision', 'openvino', 'matplotlib'} | (set() if name in last else {'cv2'})\n"
              "    heavy = sorted(heavy & set(sys.modules))\n"
              "    print(name, '(default:' in text.getvalue(), heavy)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) > 10 and all(line.endswith("True []") for line in lines), done.stdout


def test_the_missing_key_hint_makes_exactly_the_pair_that_was_missing(tmp_path):
    import pytest

    from configs.settings import ConfigError, Security
    from streamer.transport.security import check_keys

    security = Security(curve=True, keys_dir=str(tmp_path / "keys"), client_key="bob")
    with pytest.raises(ConfigError) as error:
        check_keys(security)
    hint = str(error.value).split("make them with: ", 1)[1].split(" (")[0]
    command = hint.split()
    assert command[:3] == ["python", "run.py", "keys"]
    done = subprocess.run([sys.executable, str(ROOT / "run.py"), *command[2:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    check_keys(security)  # bob's pair, the server's and the allow-list are all there now
