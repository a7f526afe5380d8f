"""The one training loop, used for the teacher's fine-tuning and for every distillation stage.

A stage is data: a model whose trainable parameters are already chosen, a loss function over a
batch, batches, a dev evaluation and optimisation settings. The loop runs epochs with a cosine
schedule (optionally with warm-up or warm restarts), evaluates on dev after each epoch, stops
early when the monitored figure stops improving and restores the best weights.
Device placement and mixed precision come from accelerate.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from accelerate import Accelerator

import xdistil.distributed as distributed
from xdistil.errors import XDistilError
from xdistil.progress import bar, log


@dataclass
class LoopSettings:
    """Optimisation settings of one stage."""

    name: str
    epochs: int
    lr: float
    patience: int
    monitor: str = "dev_loss"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    restart_epochs: int = 0
    grad_clip: float = 5.0
    score_name: str = "accuracy"


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    dev_loss: float
    dev_score: float | None
    seconds: float


@dataclass
class StageHistory:
    """What happened in one stage: per-epoch figures and which epoch's weights were kept."""

    name: str
    epochs: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    score_name: str = "accuracy"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StageHistory:
        epochs = [EpochRecord(**e) for e in data["epochs"]]
        return cls(data["name"], epochs, data["best_epoch"], data["stopped_early"], data.get("score_name", "accuracy"))


def _lr_lambda(total_steps: int, warmup_steps: int, period_steps: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay over the rest or over repeating periods (warm restarts)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        after = step - warmup_steps
        span = period_steps if period_steps else max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * (after % span) / span))

    return factor


def _score(monitor: str, dev_loss: float, dev_score: float | None) -> tuple[float, float]:
    if monitor == "dev_score" and dev_score is not None:
        return (dev_score, -dev_loss)
    return (-dev_loss, 0.0)


def fit(
    model: torch.nn.Module,
    parameters: list[torch.nn.Parameter] | list[dict],
    compute_loss: Callable[[dict], torch.Tensor],
    train_batches: Iterable[dict],
    evaluate: Callable[[], tuple[float, float | None]],
    settings: LoopSettings,
    accelerator: Accelerator,
    extra_modules: tuple[torch.nn.Module, ...] = (),
) -> StageHistory:
    """Train `parameters` (plus those of `extra_modules`, e.g. a loss projection) and keep the best epoch.

    `parameters` may be torch parameter groups (dicts with their own "lr"); others use `settings.lr`.
    `train_batches` is re-iterated every epoch (a DataLoader whose sampler reshuffles);
    `evaluate` returns (dev loss, the dev score or None) with the model in eval mode.
    A non-finite loss stops the stage with a one-line error after restoring the best weights.
    """
    groups = list(parameters) if parameters and isinstance(parameters[0], dict) else [{"params": list(parameters)}]
    extra_params = [p for m in extra_modules for p in m.parameters()]
    if extra_params:
        groups.append({"params": extra_params})
    all_params = [p for group in groups for p in group["params"]]
    if settings.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    else:
        optimizer = torch.optim.Adam(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    is_loader = isinstance(train_batches, torch.utils.data.DataLoader) and not distributed.active()
    if distributed.active():  # each process trains on its share of the batches (see distributed.py)
        train_batches = distributed.ShardedBatches(train_batches)
    sampler = getattr(train_batches, "batch_sampler", None) if is_loader else train_batches
    loader = accelerator.prepare_data_loader(train_batches) if is_loader else train_batches
    steps_per_epoch = len(loader)
    total = steps_per_epoch * settings.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        _lr_lambda(total, int(settings.warmup_ratio * total), settings.restart_epochs * steps_per_epoch),
    )
    optimizer, scheduler = accelerator.prepare(optimizer, scheduler)

    history = StageHistory(settings.name, score_name=settings.score_name)
    best_state = copy.deepcopy(model.state_dict())
    best_extra = [copy.deepcopy(m.state_dict()) for m in extra_modules]
    best_score: tuple[float, float] | None = None
    stale = 0
    with bar(total, f"{settings.name}") as progress:
        for epoch in range(1, settings.epochs + 1):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            model.train()
            for m in extra_modules:
                m.train()
            started, running, count = time.perf_counter(), 0.0, 0
            for step, batch in enumerate(loader, start=1):
                if not is_loader:  # a prepared DataLoader places batches itself
                    batch = {k: v.to(accelerator.device) for k, v in batch.items()}
                with accelerator.autocast():
                    loss = compute_loss(batch)
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                loss = distributed.average_gradients(all_params, loss)  # the loss itself with one process
                if not torch.isfinite(loss):  # before any step: the weights are still the last good ones
                    model.load_state_dict(best_state)
                    raise XDistilError(
                        f"stage '{settings.name}': loss became {loss.item()} at epoch {epoch}, step {step}; "
                        f"stopped, best weights so far restored (try a lower lr)"
                    )
                accelerator.clip_grad_norm_(all_params, settings.grad_clip)
                optimizer.step()
                scheduler.step()
                running += loss.item()
                count += 1
                progress.update(0, advance=1, info=f"epoch {epoch} loss {running / count:.4f}")
            model.eval()
            for m in extra_modules:
                m.eval()
            dev_loss, dev_score = distributed.from_main(evaluate())  # every process decides alike
            record = EpochRecord(epoch, running / max(count, 1), dev_loss, dev_score, time.perf_counter() - started)
            history.epochs.append(record)
            score = f", dev {settings.score_name} {dev_score:.4f}" if dev_score is not None else ""
            log(f"{settings.name} epoch {epoch}: train loss {record.train_loss:.4f}, dev loss {dev_loss:.4f}{score} ({record.seconds:.0f}s)")
            score = _score(settings.monitor, dev_loss, dev_score)
            if best_score is None or score > best_score:
                best_score, stale, history.best_epoch = score, 0, epoch
                best_state = copy.deepcopy(model.state_dict())
                best_extra = [copy.deepcopy(m.state_dict()) for m in extra_modules]
            else:
                stale += 1
                if stale >= settings.patience:
                    history.stopped_early = True
                    break
    model.load_state_dict(best_state)
    for module, state in zip(extra_modules, best_extra):
        module.load_state_dict(state)
    model.eval()
    return history
