"""The stage schedule as data: expand gradual unfreezing and set which parameters train."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from xdistil.config import DistillConfig, StageConfig


@dataclass(frozen=True)
class Stage:
    """One pass of the training loop: its losses, data, trainable groups and optimisation settings."""

    name: str
    losses: dict[str, float]  # each loss's weight in the stage's sum (the losses' own settings: DistillConfig.loss_settings)
    data: str
    groups: tuple[str, ...]
    epochs: int
    lr: float
    monitor: str


def _groups(spec: StageConfig, top_down: tuple[str, ...]) -> tuple[str, ...]:
    if spec.train == "all":
        return top_down
    return tuple(g for g in top_down if g in spec.train)


def expand_stages(config: DistillConfig, layer_groups: Sequence[str]) -> list[Stage]:
    """Concrete stages in order. `unfreeze: gradual` becomes one stage per step of top-down unfreezing.

    `layer_groups` are the student's group names, top first (for the BiLSTM: output -> dense ->
    encoder -> embedding). Gradual unfreezing starts from the stage's `train` groups and adds the
    next group down each step until all groups train.
    """
    top_down = tuple(layer_groups)
    stages: list[Stage] = []
    for spec in config.stages:
        groups = _groups(spec, top_down)
        epochs = spec.epochs or config.epochs
        lr = spec.lr or config.lr
        monitor = spec.monitor or config.monitor
        if spec.unfreeze == "none":
            stages.append(Stage(spec.name, spec.weights(), spec.data, groups, epochs, lr, monitor))
            continue
        deepest = max(top_down.index(g) for g in groups)
        for depth in range(deepest, len(top_down)):
            step_groups = tuple(dict.fromkeys(groups + top_down[: depth + 1]))
            step_groups = tuple(g for g in top_down if g in step_groups)
            label = f"{spec.name}[{'+'.join(step_groups)}]"
            stages.append(Stage(label, spec.weights(), spec.data, step_groups, epochs, lr, monitor))
    return stages


def gold_only(groups: Sequence[str], epochs: int, lr: float) -> Stage:
    """The no-distillation baseline as one stage: cross-entropy on the gold labels, every group trains."""
    return Stage("gold only (no distillation)", {"gold": 1.0}, "labeled", tuple(groups), epochs, lr, "dev_score")


def set_trainable(model: nn.Module, groups: tuple[str, ...]) -> list[nn.Parameter]:
    """Freeze everything, then unfreeze the named groups; returns the parameters that train."""
    named = model.layer_groups()
    for params in named.values():
        for p in params:
            p.requires_grad_(False)
    trainable: list[nn.Parameter] = []
    for group in groups:
        for p in named[group]:
            p.requires_grad_(True)
            trainable.append(p)
    return trainable
