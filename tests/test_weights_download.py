"""`--weights imagenet` downloads the ResNet-18 weights as torchvision does (torch hub, progress bar,
sha256 prefix in the file name checked) from a real HTTP server on loopback; offline, the clear
message that says which file to put where."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import pytest
import torch
from torchvision.models import resnet18

from models import pretrained
from tests.support.pipeline import free_port


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub" / "checkpoints"


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over tmp_path/served; yields (base URL, list of requested paths)."""
    served = tmp_path / "served"
    served.mkdir()
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requested
    finally:
        httpd.shutdown()
        httpd.server_close()


def _publish(served, state_dict, name_hash: str | None = None) -> str:
    """Save a state dict where the server serves it, named as torchvision names its files."""
    staging = served / "staging.pth"
    torch.save(state_dict, staging)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()
    name = f"resnet18-{(name_hash or digest)[:8]}.pth"
    staging.rename(served / name)
    return name


def test_missing_weights_are_downloaded_checked_and_loaded_once(hub, server):
    base, served, requested = server
    reference = resnet18(weights=None)
    name = _publish(served, reference.state_dict())
    model = pretrained.imagenet_resnet18(download=True, url=f"{base}/{name}")
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert (hub / name).is_file() and requested == [f"/{name}"]
    pretrained.imagenet_resnet18(download=True, url=f"{base}/{name}")  # now on this machine
    assert requested == [f"/{name}"]


def test_a_download_whose_checksum_is_wrong_is_refused(hub, server):
    base, served, _ = server
    name = _publish(served, resnet18(weights=None).state_dict(), name_hash="00000000")
    with pytest.raises(pretrained.ImageNetWeightsMissing) as error:
        pretrained.imagenet_resnet18(download=True, url=f"{base}/{name}")
    assert "failed" in str(error.value) and str(hub / name) in str(error.value)
    assert not (hub / name).exists()


def test_offline_the_message_says_which_file_to_put_where(hub):
    url = f"http://127.0.0.1:{free_port()}/resnet18-f37072fd.pth"  # nothing listens there
    with pytest.raises(pretrained.ImageNetWeightsMissing) as error:
        pretrained.imagenet_resnet18(download=True, url=url)
    message = str(error.value)
    assert str(hub / "resnet18-f37072fd.pth") in message and "--weights none" in message
    assert f"downloading it from {url} failed" in message


def test_the_workers_fallback_never_downloads(hub, server):
    base, served, requested = server
    name = _publish(served, resnet18(weights=None).state_dict())
    with pytest.raises(pretrained.ImageNetWeightsMissing, match="nothing is downloaded here"):
        pretrained.imagenet_resnet18(url=f"{base}/{name}")
    assert requested == []
