"""ImageNet ResNet-18 from a file already on this machine; nothing is ever downloaded.

torchvision's `ResNet18_Weights.IMAGENET1K_V1` names the file (resnet18-f37072fd.pth); we look
for it where torch hub keeps checkpoints (`torch.hub.get_dir()/checkpoints/`, i.e.
~/.cache/torch/hub/checkpoints unless TORCH_HOME says otherwise). When it is missing the error
says exactly which file to put where.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from configs.settings import ActionableError

WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


class ImageNetWeightsMissing(ActionableError, FileNotFoundError):
    """The ImageNet weights file is not on this machine (or is damaged); the message says what to do."""


def weights_path() -> Path:
    """Where the ImageNet ResNet-18 file must be: torch hub's checkpoint folder + the name from its URL."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(WEIGHTS.url).path).name


def imagenet_resnet18() -> nn.Module:
    """torchvision's ResNet-18 with ImageNet weights read from `weights_path()` (weights_only)."""
    path = weights_path()
    if not path.is_file():
        raise ImageNetWeightsMissing(
            f"ImageNet ResNet-18 weights not found: put the file {path.name} (from {WEIGHTS.url}) at {path} "
            f"(the folder follows TORCH_HOME; nothing is downloaded here), or train from scratch with "
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
