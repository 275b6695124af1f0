"""Many processes, one run: torchrun's process group and the few places where ranks differ or agree.

``torchrun --nproc_per_node N -m netfit train SPEC`` starts N copies of netfit. Each finds
torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR) and joins one process group
(gloo for CPU tensors, NCCL for CUDA ones, each rank on cuda:LOCAL_RANK). From there:

- every rank draws the same permutation from the run's seed and trains on its slice of every
  global batch (``train.batch_size`` stays the global batch); ``DistributedDataParallel`` sums
  the slices' gradients, each weighted by its share of the batch, so a step is the step one
  process would take on the whole batch;
- validation sums are all-reduced before the division, so every rank reads the same figures;
- rank 0 alone writes the run folder and prints; the others follow the same checkpoint
  schedule without writing (``checkpoint.FollowerCheckpoints``);
- stopping (a signal, early stopping, the NaN guard) is decided on agreed figures or flags.

Without torchrun, :class:`Ranks` is one process and nothing here costs anything.
"""

from __future__ import annotations

import datetime
import gc
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .errors import NetfitError
from .signals import StopRequest

__all__ = ["Ranks", "joined", "launched_rank", "launched", "BatchShares", "AgreedStop", "TIMEOUT_ENV"]

TIMEOUT_ENV = "NETFIT_DIST_TIMEOUT_S"
# A dead or stuck rank makes the others fail at their next collective after this long, not hang.
DEFAULT_TIMEOUT_S = 300
_TORCHRUN_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")
T = TypeVar("T")


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets its variables)."""
    return all(name in os.environ for name in _TORCHRUN_ENV)


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 without one): who prints, even before or after the group."""
    return int(os.environ.get("RANK", "0")) if launched() else 0


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job; ``Ranks()`` is a job of one process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1  # processes on this machine: they share its cores
    job: bool = False  # started by torchrun (even as a job of one process)

    @property
    def many(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        """Rank 0: the one process that writes the run folder and prints."""
        return self.rank == 0

    def backend(self, device: torch.device) -> str:
        """What the training device's collectives run on (recorded in run.json)."""
        return "nccl" if device.type == "cuda" else "gloo"

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` rows; the first ``n % size`` ranks take one row more."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (on the device: no host sync on CUDA)."""
        if self.many:
            dist.all_reduce(tensor)
        return tensor

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor``'s largest value over the ranks, element by element, in place."""
        if self.many:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank (a collective: every rank must ask at the same point)."""
        if not self.many:
            return flag
        value = torch.tensor([int(flag)])
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def from_leader(self, work: Callable[[], T], share: bool = True) -> T | None:
        """``work()`` run on rank 0 alone, its result (or its user error) handed to every rank.

        Rank 0's work may fail: the others must then fail too rather than wait for it at the
        next collective. ``share=False`` hands them only the success (they get None).
        """
        if not self.many:
            return work()
        message: list[Any] = [None]
        if self.leader:
            try:
                result = work()
            except NetfitError as err:
                dist.broadcast_object_list([("error", str(err))])
                raise
            except BaseException as err:
                dist.broadcast_object_list([("error", f"rank 0 failed: {type(err).__name__}: {err}")])
                raise
            dist.broadcast_object_list([("ok", result if share else None)])
            return result
        dist.broadcast_object_list(message)
        kind, value = message[0]
        if kind == "error":
            raise NetfitError(value)
        return value

    def check_same(self, value: str, what: str) -> None:
        """Refuse to go on (on every rank) unless every rank holds the same ``value`` as rank 0."""
        if not self.many:
            return
        theirs: list[Any] = [value]
        dist.broadcast_object_list(theirs)
        if self.any(theirs[0] != value):
            raise NetfitError(f"{what} differ between the processes of this job; every process must read the same "
                              "data (same files at the same paths, same data.* settings)")

    def check_batch(self, batch_size: int, rows: int, batchnorm: bool) -> None:
        """Every rank needs rows in every batch (two with BatchNorm): refuse a global batch too small to split."""
        need = 2 if batchnorm else 1
        batch = min(batch_size, rows)
        if self.many and batch < need * self.size:
            what = "two rows (BatchNorm normalises over them)" if batchnorm else "one row"
            raise NetfitError(f"train.batch_size = {batch} cannot be split over {self.size} processes: each needs at "
                              f"least {what} of every batch; raise train.batch_size to {need * self.size} or more, "
                              "or start fewer processes")

    def wrap(self, model: nn.Module, device: torch.device) -> tuple[nn.Module, "BatchShares | None"]:
        """The network the steps run (DDP over ``model`` with several ranks) and the batch shares it weighs by."""
        if not self.many:
            return model, None
        from torch.nn.parallel import DistributedDataParallel

        # DDP copies rank 0's weights and buffers to every rank here; a resumed run already has them all.
        ddp = DistributedDataParallel(model, device_ids=[self.local_rank] if device.type == "cuda" else None)
        shares = BatchShares(self)
        ddp.register_comm_hook(shares, _weighted_sum)
        return ddp, shares


class BatchShares:
    """This rank's slice of each global batch, and the weight its gradients get in DDP's sum.

    Each rank's loss is the mean over its slice, so the global batch's mean gradient is the sum of
    the slices' gradients weighted by (slice rows / batch rows): 1/N when the batch splits evenly,
    exact also when it does not (the last, partial batch; a batch size N does not divide).
    """

    def __init__(self, ranks: Ranks) -> None:
        self.ranks = ranks
        self.weight = 1.0 / ranks.size

    def take(self, rows: int) -> slice:
        """This rank's part of a batch of ``rows`` rows; the next backward pass weighs its gradients to match."""
        part = self.ranks.shard(rows)
        self.weight = (part.stop - part.start) / rows
        return part


def _weighted_sum(shares: BatchShares, bucket):  # DDP checks the annotations' types: none given (a GradBucket)
    # DDP's default hook divides by the number of ranks before summing; this one weighs by rows.
    buffer = bucket.buffer().mul_(shares.weight)
    return dist.all_reduce(buffer, async_op=True).get_future().then(lambda done: done.value()[0])


class AgreedStop(StopRequest):
    """A SIGINT or SIGTERM that every rank acts on at the same step.

    torchrun passes a signal to every rank, but each receives it between different steps; the
    ranks compare flags every ``EVERY`` steps and at the epoch's last step (one tiny all-reduce,
    a host sync, each time), and all stop at the first step where any of them saw one.
    """

    EVERY = 16

    def __init__(self, local: StopRequest, ranks: Ranks, steps: int) -> None:
        super().__init__()
        self.local, self.ranks, self.steps = local, ranks, steps

    def poll(self, done: int) -> bool:
        if self.signum is None and (done % self.EVERY == 0 or done == self.steps):
            seen = torch.tensor([self.local.signum or 0])
            dist.all_reduce(seen, op=dist.ReduceOp.MAX)
            self.signum = int(seen.item()) or None
        return self.requested


def _timeout() -> datetime.timedelta:
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise NetfitError(f"{TIMEOUT_ENV} = {raw!r} is not a number of seconds above 0; set it to how long a "
                          f"process may wait for the others (default {DEFAULT_TIMEOUT_S})")
    return datetime.timedelta(seconds=seconds)


@contextmanager
def joined() -> Iterator[Ranks]:
    """Join torchrun's process group for the duration and leave it after; without torchrun, one process.

    A collective that fails because another rank died or hung becomes one line naming the cause.
    """
    if not launched():
        yield Ranks()
        return
    env = {name: int(os.environ.get(name, default)) for name, default in
           (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0), ("LOCAL_WORLD_SIZE", 1))}
    ranks = Ranks(env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["LOCAL_WORLD_SIZE"], job=True)
    owned = not dist.is_initialized()  # a script that set up its own group keeps it
    if owned:
        timeout = _timeout()
        backend = "gloo"
        if torch.cuda.is_available() and dist.is_nccl_available():
            # CPU tensors (the small agreements) go over gloo, CUDA ones (gradients, sums) over NCCL.
            torch.cuda.set_device(ranks.local_rank)
            backend = "cpu:gloo,cuda:nccl"
        dist.init_process_group(backend, timeout=timeout)
    try:
        yield ranks
    except Exception as err:
        if not _lost_contact(err):
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise NetfitError(f"another process of this job stopped or stopped answering ({first}); a process that "
                          f"failed printed why; a wait for one is bounded by {TIMEOUT_ENV} (now {_timeout().seconds} s)"
                          ) from None
    finally:
        if owned:
            # DDP's reducer (and the futures of its gradient hook) must go while the group and the
            # interpreter are alive: left to interpreter shutdown, gloo can abort the process
            # ("terminate called without an active exception", seen once under load).
            gc.collect()
            dist.destroy_process_group()


def _lost_contact(err: Exception) -> bool:
    """Whether ``err`` is a collective that failed: a rank gone, or a wait past the timeout.

    torch raises DistError from collectives, but a failure inside DDP's gradient hook reaches
    Python as a RuntimeError that only its text says comes from the backend.
    """
    return isinstance(err, dist.DistError) or (
        isinstance(err, RuntimeError) and any(word in str(err) for word in ("gloo", "NCCL", "c10d")))
