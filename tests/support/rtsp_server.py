"""A real RTSP camera on loopback, for the tests. Run by the SYSTEM interpreter (/usr/bin/python3).

GStreamer's RTSP server and its Python bindings (python3-gi) come from Debian packages, which
live beside the system Python, not in the project's virtualenv; `.ci/install-system-deps.sh`
installs them. This file therefore imports nothing from the project and no numpy.

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --mount /cam --frames DIR/f%05d.jpg --fps 10

serves the numbered JPEG frames (written by the project's synthetic camera, see
tests/support/media.py) looped forever as H.264 at rtsp://127.0.0.1:PORT/MOUNT, and prints
`ready` once the port listens. Each client gets its own pipeline, so a reconnect starts on a
key frame.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def launch_line(frames: str, fps: int) -> str:
    # multifilesrc loop=true replays the numbered frames forever; key-int-max keeps key frames
    # frequent so a client that (re)connects can start decoding at once.
    return (f'( multifilesrc location="{frames}" loop=true caps="image/jpeg,framerate={fps}/1" '
            f"! jpegdec ! videoconvert ! video/x-raw,format=I420 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
            f"! rtph264pay name=pay0 pt=96 config-interval=1 )")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="/cam")
    parser.add_argument("--frames", required=True, help="printf-style pattern of numbered JPEG files")
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.frames, args.fps))
    factory.set_shared(False)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
