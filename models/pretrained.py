"""ImageNet ResNet-18, as torchvision does it: from torch hub's folder, downloaded when missing.

torchvision's `ResNet18_Weights.IMAGENET1K_V1` names the file (resnet18-f37072fd.pth); we look
for it where torch hub keeps checkpoints (`torch.hub.get_dir()/checkpoints/`, i.e.
~/.cache/torch/hub/checkpoints unless TORCH_HOME says otherwise). When it is missing and a
download is allowed (training with `--weights imagenet`), torch hub fetches it with a progress
bar and checks the sha256 prefix in its name; the feature worker's fallback never downloads.
When the file is neither there nor downloadable (offline), the error says which file to put where.
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from configs.settings import ActionableError

WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


class ImageNetWeightsMissing(ActionableError, FileNotFoundError):
    """The ImageNet weights file is not on this machine (or is damaged); the message says what to do."""


def weights_path(url: str = "") -> Path:
    """Where the ImageNet ResNet-18 file must be: torch hub's checkpoint folder + the name from its URL
    (torchvision's, unless a mirror is given; the name carries the file's sha256 prefix)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url or WEIGHTS.url).path).name


DOWNLOAD_TIMEOUT_S = 30.0  # per network operation: an unreachable host fails instead of hanging


def imagenet_resnet18(download: bool = False, url: str = "") -> nn.Module:
    """torchvision's ResNet-18 with ImageNet weights read from `weights_path()` (weights_only);
    with `download`, a missing file is first fetched from `url` (default: torchvision's)."""
    url = url or WEIGHTS.url
    path = weights_path(url)
    why = "nothing is downloaded here"
    if not path.is_file() and download:
        why = _download(url, path)
    if not path.is_file():
        raise ImageNetWeightsMissing(
            f"ImageNet ResNet-18 weights not found: put the file {path.name} (from {url}) at {path} "
            f"(the folder follows TORCH_HOME; {why}), or train from scratch with "
            f"--weights none (cnn.weights = \"none\")")
    _check_hash(path)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        model = resnet18(weights=None)
        model.load_state_dict(state_dict)
    except Exception as error:  # a truncated or foreign file: say which and what to do
        raise ImageNetWeightsMissing(f"{path} is not a usable ResNet-18 state_dict ({type(error).__name__}: "
                                     f"{str(error).splitlines()[0]}); replace it with {WEIGHTS.url}") from None
    return model


def _download(url: str, path: Path) -> str:
    """Fetch the weights into torch hub's folder under their own name (progress bar, sha256 checked);
    on failure, a few words on why, for the error message."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.load_state_dict_from_url(url, model_dir=str(path.parent), map_location="cpu", progress=True,
                                           check_hash=True, weights_only=True)
    except Exception as error:  # noqa: BLE001 - offline, refused, a bad hash: all end in the same advice
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"downloading it from {url} failed: {reason}"
    finally:
        socket.setdefaulttimeout(previous)
    return "it was downloaded"


def _check_hash(path: Path) -> None:
    """torchvision file names carry the first hex digits of the file's sha256: check them."""
    match = re.search(r"-([a-f0-9]{6,})\.", path.name)
    if not match:
        return
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        raise ImageNetWeightsMissing(f"{path} is damaged (its sha256 does not start with {match.group(1)}); "
                                     f"replace it with a fresh copy of {WEIGHTS.url}")
