"""A user's own nn.Module, written as the tutorials write it (tests name it in model.module)."""

import os

import torch
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


class NaNAt(nn.Module):
    """A small MLP whose forward pass returns NaN on chosen training calls (the NaN-guard tests).

    ``NaNAt.bad_calls`` holds the 1-based training-mode call numbers that go wrong; the test sets it.
    """

    bad_calls: set[int] = set()

    def __init__(self, inputs: int = 12, classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(inputs, 16), nn.ReLU(), nn.Linear(16, classes))
        self.calls = 0

    def forward(self, x):
        out = self.body(x)
        if self.training:
            self.calls += 1
            if self.calls in NaNAt.bad_calls:
                out = out * float("nan")
        return out


class TutorialSoftmaxNet(nn.Module):
    """The first PyTorch tutorial's network, verbatim: it ends in softmax and is fed to CrossEntropyLoss."""

    def __init__(self, inputs: int = 784, classes: int = 10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(nn.Linear(inputs, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                               nn.Linear(512, classes))

    def forward(self, x):
        logits = self.linear_relu_stack(self.flatten(x))
        return torch.softmax(logits, dim=1)


class SigmoidNet(nn.Module):
    """A binary classifier that ends in sigmoid, the same mistake with BCE."""

    def __init__(self, inputs: int = 30):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(inputs, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())

    def forward(self, x):
        return self.body(x)


class CrashOnRank(nn.Module):
    """A small MLP that raises on one rank of a torchrun job at its ``at``-th training call (test_distributed)."""

    def __init__(self, inputs: int = 64, classes: int = 10, rank: int = 1, at: int = 5):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(inputs, 16), nn.ReLU(), nn.Linear(16, classes))
        self.rank, self.at, self.calls = rank, at, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.at and os.environ.get("RANK") == str(self.rank):
                raise RuntimeError(f"CrashOnRank: rank {self.rank} fails at training call {self.at}")
        return self.body(x)
