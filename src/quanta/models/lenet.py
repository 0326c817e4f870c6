"""LeNet of the classic TensorFlow MNIST workflow.

conv 5x5x32 (same) -> ReLU -> maxpool 2 -> conv 5x5x64 (same) -> ReLU -> maxpool 2 -> fc 1024 ->
ReLU -> dropout 0.5 (training only) -> fc 10.

Contract: input ``image`` float32 ``(N, 1, 28, 28)`` with pixels in [0, 1]; output ``logits``
float32 ``(N, 10)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LeNet"]


class LeNet(nn.Module):
    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5, padding=2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 7 * 7, 1024)
        self.relu3 = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(image)))  # (N, 32, 14, 14)
        x = self.pool2(self.relu2(self.conv2(x)))  # (N, 64, 7, 7)
        x = self.flatten(x)  # (N, 3136)
        x = self.dropout(self.relu3(self.fc1(x)))  # (N, 1024)
        return self.fc2(x)  # (N, 10)
