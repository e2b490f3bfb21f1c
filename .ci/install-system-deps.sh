#!/usr/bin/env bash
# System packages the tests need besides the virtualenv: GStreamer's RTSP server, so that
# tests/test_rtsp.py can run a real camera on loopback (it runs under the system Python,
# /usr/bin/python3, where Debian's python3-gi lives); Debian's chromium, the real browser the
# dashboard tests drive headless through Playwright; and ffmpeg, which the video-file tests use
# to write H.264 MP4, MKV and AVI-with-audio clips. Safe to run again: it returns at once when
# everything is already there. Debian/Ubuntu; run as root or with sudo.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

if [ -x /usr/bin/chromium ]; then
  echo "chromium: already installed"
else
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium
  echo "chromium: installed"
fi

PACKAGES=(gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base
          gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad gstreamer1.0-libav)
# The elements tests/support/rtsp_server.py puts in its pipeline.
ELEMENTS="multifilesrc jpegdec videoconvert x264enc rtph264pay"

usable() {
  [ -x /usr/bin/python3 ] && /usr/bin/python3 - "$ELEMENTS" <<'PY' 2>/dev/null
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
missing = [name for name in sys.argv[1].split() if Gst.ElementFactory.find(name) is None]
sys.exit(1 if missing else 0)
PY
}

has_ffmpeg() {
  command -v ffmpeg >/dev/null 2>&1
}

if usable && has_ffmpeg; then
  echo "GStreamer RTSP server and ffmpeg: already installed"
  exit 0
fi

$SUDO apt-get update
WANTED=()
usable || WANTED+=("${PACKAGES[@]}")
has_ffmpeg || WANTED+=(ffmpeg)
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${WANTED[@]}"

if ! usable; then
  echo "GStreamer's RTSP server is still not usable from /usr/bin/python3 after installing: ${PACKAGES[*]}" >&2
  exit 1
fi
if ! has_ffmpeg; then
  echo "ffmpeg is still missing after installing it" >&2
  exit 1
fi
echo "GStreamer RTSP server and ffmpeg: installed"
