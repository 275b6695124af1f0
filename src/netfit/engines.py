"""Engines: how the steps of an epoch are executed. The step itself is ``step.train_step``.

- ``eager``: one Python call of ``train_step`` per batch. On the CPU there is no DataLoader and
  no collate: a batch is an ``index_select`` of rows that already sit in memory.
- ``compile``: the same, with the network wrapped by ``torch.compile``.
- ``graph`` (CUDA): the whole step (gather and scaling of the batch, forward, loss, backward,
  clipping, optimizer step, learning rate read from a device table) is captured as a CUDA graph
  of several steps and replayed, so an epoch costs a handful of launches instead of thousands.

The engine is chosen once per run (``train.engine``; "auto" takes ``graph`` on CUDA and ``eager``
elsewhere) and falls back to ``eager`` with one line saying why when capture is impossible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from .errors import NetfitError
from .features import Features
from .splits import Split
from .registry import Registry
from .step import train_step
from .streaming import StreamedEpoch, StreamedRows

if TYPE_CHECKING:
    from .augment import ImageAugment
    from .distributed import BatchShares

__all__ = ["StepPlan", "ENGINES", "choose_engine", "engine_name", "EagerEngine", "CompiledEngine", "GraphEngine"]

# Called with the number of steps done in the epoch so far; returns True to stop after them.
StepCallback = Callable[[int], bool]


@dataclass
class StepPlan:
    """Everything an engine needs to run the training steps of one run."""

    model: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    train: Split  # on the training device
    batch_size: int
    full_steps: int  # full batches per epoch
    rest: int  # rows in the last, partial batch (0 = none)
    rates: np.ndarray  # learning rate of every step of the run
    clip_grad_norm: float | None
    autocast_dtype: torch.dtype | None
    grad_scaler: torch.amp.GradScaler | None = None  # fp16 only; it syncs with the host every step
    first_step: int = 0  # steps run before this process started (a resumed run): the index into ``rates``
    skip_nonfinite: bool = False  # skip steps whose loss or gradients are NaN or infinite
    shares: "BatchShares | None" = None  # several processes: each steps on its slice of every batch
    augment: "ImageAugment | None" = None  # changes each training image before scaling (data.augment)

    @property
    def steps(self) -> int:
        return self.full_steps + (self.rest > 0)


class EagerEngine:
    """Runs ``train_step`` once per batch from Python, gathering batches into reused buffers."""

    name = "eager"

    def __init__(self, plan: StepPlan) -> None:
        self.notes: list[str] = []
        self.plan = plan
        self.network = plan.model
        self.step_count = plan.first_step  # steps run so far: the index into the learning-rate table
        self.skipped = 0  # steps skipped for a non-finite loss or gradient (skip_nonfinite only)
        X = plan.train.X
        # The run's first step with a non-finite loss or gradient (-1: none), kept on the device
        # and read at the loop's next deliberate sync.
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=X.device)
        # Allocated once per run: each step gathers into and scales within these buffers. Encoded
        # table rows (Features) are gathered by the split itself: their batches vary in size.
        self._table = isinstance(X, Features)
        if not self._table:
            self._stored = torch.empty((plan.batch_size, *X.shape[1:]), dtype=X.dtype, device=X.device)
            self._inputs = torch.empty(self._stored.shape, dtype=torch.float32, device=X.device)

    def _set_lr(self) -> None:
        rate = float(self.plan.rates[min(self.step_count, len(self.plan.rates) - 1)])
        for group in self.plan.optimizer.param_groups:
            group["lr"] = rate

    def _step(self, rows: torch.Tensor, stored: torch.Tensor | None = None) -> torch.Tensor:
        """One step on training rows ``rows``; ``stored`` holds them already when they were streamed."""
        p = self.plan
        self._set_lr()
        index = self.step_count
        self.step_count += 1
        n = len(rows)
        if self._table:
            x = p.train.inputs(rows)
        else:
            if stored is None:
                stored = torch.index_select(p.train.X, 0, rows, out=self._stored[:n])
            if p.augment is not None:
                stored = p.augment(stored, rows)
            x = p.train.scaler.apply(stored, out=self._inputs[:n])
        loss, finite = train_step(self.network, p.loss_fn, p.optimizer, x, p.train.y.index_select(0, rows),
                                  p.clip_grad_norm, p.autocast_dtype, p.grad_scaler, p.skip_nonfinite)
        self.first_bad_step.masked_fill_(~finite & (self.first_bad_step < 0), index)
        if p.skip_nonfinite and not bool(finite):  # already synced inside train_step
            self.skipped += 1
            return torch.zeros_like(loss)
        return loss

    def run_epoch(self, order: torch.Tensor | StreamedEpoch, on_step: StepCallback,
                  start: int = 0) -> tuple[torch.Tensor, int]:
        """Steps ``start``.. of the epoch whose permutation is ``order`` (or whose streamed batches).

        Returns the summed loss (weighted by batch size, on the device) and the steps done, which
        fall short of a full epoch only when ``on_step`` asked to stop.
        """
        p = self.plan
        loss_sum = torch.zeros((), device=self.first_bad_step.device)
        for i, (stored, rows) in enumerate(self._batches(order, start), start):
            loss_sum += self._step(rows, stored) * len(rows)
            if on_step(i + 1):
                return loss_sum, i + 1
        return loss_sum, p.steps

    def _batches(self, order: torch.Tensor | StreamedEpoch, start: int):
        p = self.plan
        if p.shares is None:
            yield from self._whole_batches(order, start)
            return
        for stored, rows in self._whole_batches(order, start):  # every rank draws every batch; it steps on its part
            part = p.shares.take(len(rows))
            yield (stored[part] if stored is not None else None), rows[part]

    def _whole_batches(self, order: torch.Tensor | StreamedEpoch, start: int):
        p = self.plan
        if isinstance(order, StreamedEpoch):  # rows read from disk a window at a time, already gathered
            yield from order.batches(start, p.batch_size, p.full_steps, p.rest)
            return
        for i in range(start, p.steps):
            first = i * p.batch_size
            yield None, order[first:first + (p.batch_size if i < p.full_steps else p.rest)]


class CompiledEngine(EagerEngine):
    """The eager loop over a ``torch.compile``d network (same parameters, same optimizer)."""

    name = "compile"

    def __init__(self, plan: StepPlan) -> None:
        super().__init__(plan)
        self.network = torch.compile(plan.model)


class GraphEngine:
    """Replays the training step as CUDA graphs of ``steps_per_graph`` steps each.

    Each replay reads its batch indices from a static buffer that is refilled from the epoch's
    permutation before the replay, and the learning rate from a device-side table indexed by a
    device-side step counter, so nothing in a replay waits on the host. The first steps of the
    run execute eagerly on a side stream (CUDA graphs need the optimizer state and the cuBLAS
    workspaces to exist before capture); they are real training steps on the epoch's first
    batches, so the trajectory is the one the eager engine takes.
    """

    name = "graph"
    WARMUP_STEPS = 3
    MAX_STEPS_PER_GRAPH = 16  # capture costs milliseconds per step; replays of 16 steps already hide launch costs

    def __init__(self, plan: StepPlan) -> None:
        if plan.train.X.device.type != "cuda":
            raise _CannotCapture("CUDA graphs need a CUDA device")
        self.plan = plan
        device = plan.train.X.device
        self.rates = torch.as_tensor(plan.rates, dtype=torch.float32, device=device)
        self.step_count = torch.full((), plan.first_step, dtype=torch.long, device=device)
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.skipped = 0  # never skips: skip_nonfinite runs on the eager engine
        first_rate = plan.rates[min(plan.first_step, len(plan.rates) - 1)]
        self.lr = torch.full((), float(first_rate), dtype=torch.float32, device=device)
        for group in plan.optimizer.param_groups:
            group["lr"] = self.lr  # a device tensor that the captured step writes into
        self.k = max(1, min(self.MAX_STEPS_PER_GRAPH, plan.full_steps))
        self.rows = torch.zeros(self.k * plan.batch_size, dtype=torch.long, device=device)
        self.loss_sum = torch.zeros((), device=device)
        self.graphs: dict[tuple[int, int], torch.cuda.CUDAGraph] = {}
        self.pool = None
        self.warmed_up = 0
        self.fallback: EagerEngine | None = None
        self.notes: list[str] = []

    def _step(self, rows: torch.Tensor) -> torch.Tensor:
        p = self.plan
        # Learning rate of this step, from the device table: no host value, so it can be captured.
        self.lr.copy_(self.rates.index_select(0, self.step_count.clamp(max=len(self.rates) - 1).view(1))[0])
        self.step_count += 1
        if p.augment is None:
            x = p.train.inputs(rows)
        else:
            x = p.train.scaler.apply(p.augment(p.train.X.index_select(0, rows), rows))
        loss, finite = train_step(p.model, p.loss_fn, p.optimizer, x, p.train.y.index_select(0, rows),
                                  p.clip_grad_norm, p.autocast_dtype)
        self.first_bad_step.copy_(torch.where(~finite & (self.first_bad_step < 0), self.step_count - 1,
                                              self.first_bad_step))
        return loss

    def _steps(self, count: int, rows_per_step: int) -> None:
        b = rows_per_step
        for j in range(count):
            self.loss_sum += self._step(self.rows[j * b:(j + 1) * b]) * b

    def _graph(self, count: int, rows_per_step: int) -> torch.cuda.CUDAGraph:
        """The graph of ``count`` steps of ``rows_per_step`` rows, captured on first use."""
        key = (count, rows_per_step)
        if key not in self.graphs:
            graph = torch.cuda.CUDAGraph()
            self.plan.optimizer.zero_grad(set_to_none=True)
            # One memory pool for all of the run's graphs: they never replay at the same time.
            try:
                with torch.cuda.graph(graph, pool=self.pool):
                    self._steps(count, rows_per_step)
            except RuntimeError as err:
                raise _CannotCapture(_first_line(err)) from err
            self.pool = graph.pool()
            self.graphs[key] = graph
        return self.graphs[key]

    def _replay(self, order: torch.Tensor, start: int, count: int, rows_per_step: int) -> None:
        # The only per-replay work: copy this chunk of the permutation into the static buffer.
        self.rows[:count * rows_per_step].copy_(order[start:start + count * rows_per_step])
        self._graph(count, rows_per_step).replay()

    def run_epoch(self, order: torch.Tensor, on_step: StepCallback, start: int = 0) -> tuple[torch.Tensor, int]:
        if self.fallback is not None:
            return self.fallback.run_epoch(order, on_step, start)
        p, b = self.plan, self.plan.batch_size
        self.loss_sum.zero_()
        done = start
        if self.warmed_up < self.WARMUP_STEPS and p.full_steps > done:
            count = min(self.WARMUP_STEPS, p.full_steps - done)
            self.rows[:count * b].copy_(order[done * b:(done + count) * b])
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._steps(count, b)
            torch.cuda.current_stream().wait_stream(side)
            self.warmed_up, done = count, done + count
            if on_step(done):
                return self.loss_sum.clone(), done
        try:
            while done < p.full_steps:
                count = min(self.k, p.full_steps - done)
                self._replay(order, done * b, count, b)
                done += count
                if on_step(done):
                    return self.loss_sum.clone(), done
            if p.rest and done < p.steps:
                # The last, partial batch has its own shape, so it gets a one-step graph of its own.
                self._replay(order, p.full_steps * b, 1, p.rest)
                done = p.steps
                on_step(done)
        except _CannotCapture as err:
            # Capture is impossible (a module that syncs with the host, say): no kernel ran
            # during the attempt, so the run goes on eagerly from exactly where it stood.
            return self._fall_back(err, order, done, on_step)
        return self.loss_sum.clone(), done

    def _fall_back(self, err: Exception, order: torch.Tensor, done: int,
                   on_step: StepCallback) -> tuple[torch.Tensor, int]:
        self.notes.append(f"netfit: cannot capture the training step as a CUDA graph ({err}); running eagerly")
        self.name = "eager"
        self.fallback = EagerEngine(self.plan)
        self.fallback.step_count = int(self.step_count)  # a sync, once, on the way out
        self.fallback.first_bad_step = self.first_bad_step
        loss = self.loss_sum.clone()
        tail, done = self.fallback.run_epoch(order, on_step, start=done)
        return loss + tail, done


class _CannotCapture(Exception):
    """Raised while setting up or capturing a graph; the run continues on the eager engine."""


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


ENGINES: Registry[type] = Registry("engine")
ENGINES.register("eager", EagerEngine)
ENGINES.register("compile", CompiledEngine)
ENGINES.register("graph", GraphEngine)


def engine_name(requested: str, device: torch.device, precision: torch.dtype | None = None) -> str:
    """``train.engine`` resolved for a device: "auto" is graph on CUDA, eager elsewhere."""
    if requested == "graph" and device.type != "cuda":
        raise NetfitError(f'train.engine = "graph" needs a CUDA device, not {device.type}; use "auto" or "eager"')
    if requested == "graph" and precision == torch.float16:
        raise NetfitError('train.precision = "fp16" needs a gradient scaler that reads back every step, which a '
                          'CUDA graph cannot; use precision "bf16" with the graph engine, or engine "eager"')
    if requested == "auto":
        return "graph" if device.type == "cuda" and precision != torch.float16 else "eager"
    return requested


def choose_engine(name: str, plan: StepPlan, device: torch.device):
    """The engine called ``name`` (already resolved) and a one-line note when another one runs."""
    if name == "graph" and isinstance(plan.train.X, Features):
        return EagerEngine(plan), ("netfit: a bag of words or category codes give batches of varying size, which a "
                                   "CUDA graph cannot replay; running eagerly")
    if name == "graph" and isinstance(plan.train.X, StreamedRows):
        return EagerEngine(plan), ("netfit: streamed rows arrive a window at a time from disk, which a CUDA graph "
                                   "cannot replay; running eagerly")
    if name == "graph" and plan.shares is not None:
        return EagerEngine(plan), ("netfit: DistributedDataParallel sums gradients from hooks outside the step, "
                                   "which netfit does not capture in a CUDA graph; running eagerly on each GPU")
    if name == "graph" and plan.skip_nonfinite:
        return EagerEngine(plan), ("netfit: train.on_nonfinite = \"skip_step\" checks every step on the host, "
                                   "which a CUDA graph cannot; running eagerly")
    if name == "graph":
        try:
            return _checked_graph_engine(plan), None
        except _CannotCapture as why:
            return EagerEngine(plan), f"netfit: graph engine unavailable ({why}); running eagerly"
    return ENGINES.get(name)(plan), None


def _checked_graph_engine(plan: StepPlan) -> GraphEngine:
    optimizer = plan.optimizer
    for group in optimizer.param_groups:
        if not (group.get("capturable") or group.get("fused")):
            raise _CannotCapture(f"{type(optimizer).__name__} was not built capturable")
    try:
        return GraphEngine(plan)
    except (RuntimeError, TypeError) as err:
        raise _CannotCapture(_first_line(err)) from None
