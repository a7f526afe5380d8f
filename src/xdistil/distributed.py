"""Several processes on one run (`accelerate launch` or `torchrun`): who writes, who waits, what is shared.

Every process trains a full replica; each takes its own share of the batches, and after each backward
pass the gradients (and the loss, for the log and the non-finite check) are averaged over the processes,
so the replicas stay identical. Dev evaluation runs on every process and the main process's figures are
broadcast, so early stopping decides the same everywhere. Only the main process writes run-folder files,
logs and progress bars; annotation is sharded by cache chunk (`transfer/cache.py`).
With one process every function here is a no-op, so the single-process path is unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist


def active() -> bool:
    """Whether this process is one of several (torch.distributed initialised with more than one process)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def launched() -> bool:
    """Whether a launcher started several processes for this run (before they have joined: WORLD_SIZE is set)."""
    return active() or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """The process that writes files, logs and progress bars."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process reaches this point."""
    if active():
        dist.barrier()


def finish() -> None:
    """End this process's part of a finished run: wait for the others, then tear the process group down.

    Left to interpreter exit, gloo's worker threads can outlive it and abort the process ("terminate called
    without an active exception", exit -6) after all its work is done. Called on success only: a process
    that failed alone may leave the others inside a collective, where a barrier would hang."""
    if dist.is_available() and dist.is_initialized():
        if active():
            dist.barrier()
        dist.destroy_process_group()


def from_main(value: Any) -> Any:
    """The main process's `value`, on every process (picklable values)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average_gradients(parameters: list[torch.nn.Parameter], loss: torch.Tensor) -> torch.Tensor:
    """Average the gradients of `parameters` and `loss` over the processes in one all-reduce; the mean loss.

    A parameter without a gradient on this process (unused in its batch) counts as a zero gradient."""
    if not active():
        return loss.detach()
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [loss.detach().float().reshape(1)])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p, g in zip(parameters, grads):
        size = g.numel()
        p.grad = flat[offset : offset + size].view_as(g).to(g.dtype)
        offset += size
    return flat[-1]


class ShardedBatches:
    """This process's share of a batch iterable: every `world_size()`-th batch, starting at its rank.

    Every process gets the same number of batches (the last `len % world_size` batches of an epoch are
    left out), so the all-reduces of a step always match up. `set_epoch` reaches the wrapped batches."""

    def __init__(self, batches: Iterable[dict]):
        self.batches, self.rank, self.world = batches, rank(), world_size()

    def set_epoch(self, epoch: int) -> None:
        target = getattr(self.batches, "batch_sampler", self.batches)
        if hasattr(target, "set_epoch"):
            target.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches) // self.world

    def __iter__(self) -> Iterator[dict]:
        stop = len(self) * self.world
        for index, batch in enumerate(self.batches):
            if index >= stop:
                break
            if index % self.world == self.rank:
                yield batch


def on_main(make: Callable[[], Any]) -> Any:
    """`make()` run by the main process alone (a write to the run folder), its result given to every process.

    A one-line error raised there is raised on every process, so none is left waiting at a barrier."""
    if not active():
        return make()
    from xdistil.errors import XDistilError

    result, error = None, None
    if is_main():
        try:
            result = make()
        except XDistilError as err:
            error = str(err)
    result, error = from_main((result, error))
    if error is not None:
        raise XDistilError(error)
    return result
