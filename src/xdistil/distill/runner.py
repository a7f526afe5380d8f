"""Run a schedule of stages on a student, one checkpoint per finished stage so a killed run resumes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import save_file
from torch.utils.data import DataLoader

import xdistil.distributed as distributed
from xdistil.batching import LengthBucketSampler
from xdistil.config import DistillConfig
from xdistil.distill.data import DistillData, TransferBatches, cached_data, predict_rows, warn_if_constant
from xdistil.distill.losses import LossContext, build_loss, needs_teacher
from xdistil.distill.stages import Stage, set_trainable
from xdistil.loop import LoopSettings, StageHistory, fit
from xdistil.progress import log
from xdistil.atomic import atomic_write, atomic_write_json
from xdistil.storage import read_safetensors
from xdistil.transfer.cache import TransferCache
from xdistil.student.base import Student
from xdistil.student.vocab import PrunedVocab


class Trained(NamedTuple):
    """A student after its schedule, with one history per stage."""

    model: Student
    histories: list[StageHistory]


@dataclass
class StageData:
    """The data a schedule trains on, by the name stages use (`transfer`, `labeled`), and how the dev
    split is scored: `dev_score` turns the student's dev predictions (one array of label indices per
    example: one label, or one per word) into the figure a stage monitors, called `score_name`."""

    train: dict[str, DistillData | TransferBatches]
    dev: DistillData
    dev_score: Callable[[list[np.ndarray]], float]
    score_name: str


def stage_data(transfer: TransferCache, dev: TransferCache, vocab: PrunedVocab, train_labels: list, dev_labels: list, distill: DistillConfig,
               seed: int, teacher_pad_id: int, dev_score: Callable[[list[np.ndarray]], float], score_name: str) -> StageData:
    """The transfer set streams from its cache; the labeled rows (its first rows) and dev are small, in memory. The
    teacher's own token ids come along when a stage's loss runs the teacher on each batch."""
    warn_if_constant(transfer)
    limit = distill.transfer_limit  # the labeled rows plus the first `limit` others
    rows = None if limit is None else len(train_labels) + limit
    pad = teacher_pad_id if needs_teacher({n for s in distill.stages for n in s.losses}) else None
    batches = TransferBatches(transfer, vocab, train_labels, distill.batch_size, seed, rows, teacher_pad=pad)
    return StageData(
        train={"transfer": batches, "labeled": cached_data(transfer, vocab, train_labels, len(train_labels), pad)},
        dev=cached_data(dev, vocab, dev_labels, teacher_pad=pad), dev_score=dev_score, score_name=score_name,
    )


@dataclass
class TrainSetup:
    """How to train: the distillation settings, devices, the seed, and the teacher (its layer's width;
    the model itself for losses that read its states on each batch)."""

    config: DistillConfig
    accelerator: Accelerator
    seed: int
    teacher_dim: int
    teacher: torch.nn.Module | None = None


class StageCheckpoints:
    """One safetensors file and one history file per finished stage, tagged with the run's fingerprint."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder = folder
        self.fingerprint = fingerprint
        folder.mkdir(parents=True, exist_ok=True)

    def discard_stale(self) -> int:
        """Delete the stage files another fingerprint made (an earlier config's student); how many stages they were.
        (With several processes, the main one deletes and tells the others.)"""
        return distributed.on_main(self._discard_stale)

    def _discard_stale(self) -> int:
        stale = 0
        for meta in sorted(self.folder.glob("stage-*.json")):
            try:
                same = json.loads(meta.read_text(encoding="utf-8")).get("fingerprint") == self.fingerprint
            except (OSError, ValueError):
                same = False
            if not same:
                stale += 1
                meta.unlink()
                meta.with_suffix(".safetensors").unlink(missing_ok=True)
        for torn in self.folder.glob("stage-*.tmp"):  # what a killed writer left (a failed write removes its own)
            torn.unlink(missing_ok=True)
        return stale

    def _paths(self, index: int) -> tuple[Path, Path]:
        return self.folder / f"stage-{index:02d}.safetensors", self.folder / f"stage-{index:02d}.json"

    def load(self, index: int, stage: Stage) -> tuple[dict[str, torch.Tensor], StageHistory] | None:
        weights, meta = self._paths(index)
        if not (weights.is_file() and meta.is_file()):
            return None
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        read = read_safetensors(weights)
        if read is None:
            return None
        tensors = read[0]
        if info.get("fingerprint") != self.fingerprint or info.get("stage") != stage.name:
            return None
        return tensors, StageHistory.from_dict(info["history"])

    def save(self, index: int, stage: Stage, tensors: dict[str, torch.Tensor], history: StageHistory) -> None:
        """Write a finished stage (the main process writes; every process waits until it is written)."""
        if distributed.is_main():
            self._save(index, stage, tensors, history)
        distributed.barrier()

    def _save(self, index: int, stage: Stage, tensors: dict[str, torch.Tensor], history: StageHistory) -> None:
        weights, meta = self._paths(index)
        cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(weights, lambda tmp: save_file(cpu, str(tmp)))
        atomic_write_json(meta, {"fingerprint": self.fingerprint, "stage": stage.name, "history": history.to_dict()})


def _state(model: torch.nn.Module, losses: dict[str, torch.nn.Module]) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    for name, loss in losses.items():
        state.update({f"loss.{name}.{k}": v for k, v in loss.state_dict().items()})
    return state


def _restore(model: torch.nn.Module, losses: dict[str, torch.nn.Module], tensors: dict[str, torch.Tensor]) -> None:
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, loss in losses.items():
        prefix = f"loss.{name}."
        own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if own:
            loss.load_state_dict(own)


def teacher_states(teacher: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, object]:
    """The teacher's hidden states on the batch's teacher inputs (constants: no gradient flows to the teacher)."""
    teacher.eval()
    with torch.no_grad():
        out = teacher.base_model(
            input_ids=batch["teacher_input_ids"], attention_mask=batch["teacher_attention_mask"], output_hidden_states=True
        )
    return {"teacher_hidden_states": out.hidden_states}


def run_stages(model: Student, stages: list[Stage], data: StageData, setup: TrainSetup, checkpoints: StageCheckpoints) -> list[StageHistory]:
    """Train `model` through `stages` in order; finished stages are loaded from their checkpoints."""
    config, accelerator, seed = setup.config, setup.accelerator, setup.seed
    teacher_layers = setup.teacher.config.num_hidden_layers if setup.teacher is not None else None
    context = LossContext(model.representation_dim, setup.teacher_dim, config, model.hidden_layers, teacher_layers, model, setup.teacher)
    own = config.loss_settings()  # each loss's settings, the same in every stage (a gold-only baseline: the defaults)
    losses = {name: build_loss(name, context, own.get(name)).to(accelerator.device) for name in sorted({n for s in stages for n in s.losses})}
    histories: list[StageHistory] = []
    for index, stage in enumerate(stages):
        done = checkpoints.load(index, stage)
        if done is not None:
            _restore(model, losses, done[0])
            histories.append(done[1])
            log(f"stage {stage.name}: already finished, loaded from checkpoint")
            continue
        torch.manual_seed(seed * 1000 + index)
        trainable = set_trainable(model, stage.groups)
        stage_losses = {name: losses[name] for name in stage.losses}
        extra = tuple(loss for loss in stage_losses.values() if list(loss.parameters()))  # e.g. a projection
        train = data.train[stage.data]
        if isinstance(train, TransferBatches):
            loader = train.seeded(seed * 1000 + index)
        else:
            sampler = LengthBucketSampler([len(ids) for ids in train.ids], config.batch_size, seed * 1000 + index)
            loader = DataLoader(list(range(len(train))), batch_sampler=sampler, collate_fn=train.collate)

        online = needs_teacher(stage.losses)

        def stage_loss(out, batch: dict, stage: Stage = stage, online: bool = online) -> torch.Tensor:
            if online:
                batch = {**batch, **teacher_states(setup.teacher, batch)}
            return sum(weight * stage_losses[name](out, batch, batch.get("mask")) for name, weight in stage.losses.items())

        def evaluate(stage_loss: Callable = stage_loss) -> tuple[float, float | None]:
            total = 0.0

            def add_loss(out, batch: dict, examples: int) -> None:
                nonlocal total
                total += float(stage_loss(out, batch)) * examples

            rows = predict_rows(model, data.dev, accelerator.device, add_loss)
            return total / len(data.dev), data.dev_score([r.argmax(-1) for r in rows])

        settings = LoopSettings(
            name=stage.name,
            epochs=stage.epochs,
            lr=stage.lr,
            patience=config.patience,
            monitor=stage.monitor,
            restart_epochs=config.restart_epochs,
            grad_clip=config.grad_clip,
            score_name=data.score_name,
        )
        history = fit(model, trainable, lambda batch: stage_loss(model(batch), batch), loader, evaluate, settings, accelerator, extra)
        best = history.epochs[history.best_epoch - 1]
        score = f", dev {history.score_name} {best.dev_score:.4f}" if best.dev_score is not None else ""
        log(f"stage {stage.name}: best epoch {history.best_epoch}/{len(history.epochs)}, dev loss {best.dev_loss:.4f}{score}")
        checkpoints.save(index, stage, _state(model, losses), history)
        histories.append(history)
    for loss in losses.values():
        loss.release()
    set_trainable(model, tuple(model.layer_groups()))
    return histories
