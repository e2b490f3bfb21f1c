"""A capture process with its crop given (as `run.py up` gives it) stays small: no torch in it."""

from __future__ import annotations

from pathlib import Path

from streamer.transport import wire
from tests.support.credit_worker import CreditingFrames
from tests.support.pipeline import free_port, run_py, stop_process


def _mapped_libraries(pid: int) -> set[str]:
    lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {Path(line.split()[-1]).name for line in lines if line.split()[-1].startswith("/")}


def _resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def test_a_capture_with_a_resolved_crop_sends_frames_without_loading_torch(tmp_path, zmq_context):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    frames_in = CreditingFrames(zmq_context, endpoint)
    capture = run_py(["capture", "--source", "synthetic", "--stream", "cam0"],
                     [f"endpoints.frames={endpoint}", "capture.resize=72", "capture.crop=64", "capture.fps=10",
                      "features.bundle=absent.pt"], tmp_path / "capture.log")
    try:
        frames = []
        while len(frames) < 3:
            message = frames_in.recv(20_000)
            assert message is not None, "no frame from the capture within 20 s"
            if isinstance(message, wire.Frame):
                frames.append(message)
        assert frames[0].image.shape == (64, 64, 3)
        libraries = _mapped_libraries(capture.pid)
        assert not any(name.startswith(("libtorch", "libc10")) for name in libraries), sorted(libraries)
        # With torch it was ~1 GB resident; without, OpenCV + NumPy + ZeroMQ.
        assert _resident_mib(capture.pid) < 250
    finally:
        stop_process(capture)
        frames_in.close()
