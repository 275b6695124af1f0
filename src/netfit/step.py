"""The training step: one batch forward, loss on logits, backward and optimizer step.

Every engine (``engines.py``) runs this same function; the learning-rate finder too.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

__all__ = ["train_step", "steps_per_epoch"]


def train_step(model: nn.Module, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
               x: torch.Tensor, y: torch.Tensor, clip_grad_norm: float | None = None,
               autocast_dtype: torch.dtype | None = None,
               grad_scaler: torch.amp.GradScaler | None = None,
               skip_nonfinite: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on one batch.

    Returns the batch loss and whether it was finite, both still on the device. With
    ``skip_nonfinite`` or ``clip_grad_norm`` the flag covers the gradients too, and with
    ``skip_nonfinite`` a step whose loss or gradients are not finite changes nothing.
    """
    optimizer.zero_grad(set_to_none=True)
    with _autocast(x.device, autocast_dtype):
        logits = model(x)
    # The loss is reduced in fp32 whatever the compute precision: logits go in, never probabilities.
    loss = loss_fn(logits.float(), y)
    if grad_scaler is None:
        loss.backward()
        grad_norm = None
        if clip_grad_norm is not None:
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        elif skip_nonfinite:
            grad_norm = _grad_norm(model)
        # Otherwise no extra pass over the gradients (it would cost a tenth of a CPU step): a bad
        # gradient poisons the weights, so the next step's loss shows it, and the loop checks the
        # weights themselves before every checkpoint. One device flag, read at the next sync.
        finite = torch.isfinite(loss.detach() if grad_norm is None else loss.detach() + grad_norm)
        if skip_nonfinite and not bool(finite):  # a host sync every step: the price of skipping
            optimizer.zero_grad(set_to_none=True)
            return loss.detach(), finite
        optimizer.step()
    else:  # fp16: scale the loss so small gradients do not underflow; the scaler skips steps that overflow
        grad_scaler.scale(loss).backward()
        if clip_grad_norm is not None:
            grad_scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        grad_scaler.step(optimizer)
        grad_scaler.update()
        finite = torch.isfinite(loss.detach())
    return loss.detach(), finite


def _grad_norm(model: nn.Module) -> torch.Tensor:
    # The sum of per-tensor norms is finite exactly when every gradient is: one fused pass.
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(model.parameters()).device)
    return torch.stack(torch._foreach_norm(grads)).sum()


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def steps_per_epoch(rows: int, batch_size: int, processes: int = 1) -> tuple[int, int]:
    """Full batches per epoch and the size of the last, partial one (0 if none is run).

    A trailing batch with fewer than two rows per process is dropped: BatchNorm cannot normalise
    a single row in train mode (with one process: a trailing batch of one row).
    """
    batch_size = min(batch_size, rows)
    full, rest = divmod(rows, batch_size)
    return full, (rest if rest >= 2 * processes else 0)
