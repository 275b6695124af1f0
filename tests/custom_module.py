"""A user's own nn.Module, written as the tutorials write it (tests name it in model.module)."""

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, inputs: int = 64, width: int = 8, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, classes))

    def forward(self, x):
        return self.body(x)
