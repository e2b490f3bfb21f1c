"""The two networks: a per-frame ResNet-18 and an LSTM over sequences of its 512-d features."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tv_models

FEATURE_DIM = 512  # ResNet-18's pooled feature size


class FrameCNN(nn.Module):
    """ResNet-18 whose last layer maps 512 -> classes; `features` is everything before that layer."""

    def __init__(self, num_classes: int, backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else tv_models.resnet18(weights=None)
        self.backbone.fc = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(images))))
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))
        return torch.flatten(b.avgpool(x), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Log-probabilities per class (the lecture trains with NLL on log-softmax)."""
        return torch.log_softmax(self.backbone.fc(self.features(images)), dim=1)


class FeatureExtractor(nn.Module):
    """The CNN minus its last layer: images -> 512-d features. What the live feature worker runs."""

    def __init__(self, cnn: FrameCNN):
        super().__init__()
        self.cnn = cnn

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.cnn.features(images)


class SequenceLSTM(nn.Module):
    """LSTM over [batch, time, features]; classifies from the last time step."""

    def __init__(self, num_classes: int, hidden: int, layers: int, input_size: int = FEATURE_DIM,
                 dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:
        """Log-probabilities from the last step of each sequence."""
        outputs, _ = self.lstm(sequences)
        return torch.log_softmax(self.head(outputs[:, -1]), dim=1)
