"""A user's own nn.Module, written as the tutorials write it (tests name it in model.module)."""

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, inputs: int = 64, width: int = 8, classes: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, classes))

    def forward(self, x):
        return self.body(x)


class DataDependentNet(nn.Module):
    """Branches on a value computed from the batch: Python must read it, so no CUDA graph can hold it."""

    def __init__(self, inputs: int = 784, classes: int = 10):
        super().__init__()
        self.a = nn.Linear(inputs, classes)
        self.b = nn.Linear(inputs, classes)

    def forward(self, x):
        return self.a(x) if x.mean() > 0.3 else self.b(x)
