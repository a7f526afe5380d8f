"""Run a schedule of stages on a student, one checkpoint per finished stage so a killed run resumes."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from xdistil.batching import LengthBucketSampler, sorted_batches
from xdistil.config import DistillConfig
from xdistil.distill.losses import IGNORE, build_loss
from xdistil.distill.stages import Stage, set_trainable
from xdistil.loop import LoopSettings, StageHistory, fit
from xdistil.progress import log
from xdistil.student.inputs import pad_batch
from xdistil.student.vocab import PrunedVocab
from xdistil.transfer.cache import CacheRows, TransferCache, atomic_write_json


@dataclass
class DistillData:
    """Student inputs with the teacher's targets and gold labels (IGNORE where there is none).

    Classification: one target row per example. Tagging (`starts` given): one target row per word,
    examples' words in order, and batches carry `word_index` (first-piece positions) and `mask`.
    """

    ids: list[np.ndarray]
    teacher_logits: np.ndarray
    teacher_repr: np.ndarray
    labels: np.ndarray
    pad_id: int
    starts: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.starts is not None:
            self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in self.starts])]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        input_ids, lengths = pad_batch([self.ids[i] for i in indices], self.pad_id)
        batch = {"input_ids": input_ids, "lengths": lengths}
        if self.starts is None:
            rows: np.ndarray | list[int] = indices
        else:
            spans = [range(self.offsets[i], self.offsets[i + 1]) for i in indices]
            width = max(len(s) for s in spans)
            mask = torch.zeros((len(indices), width), dtype=torch.bool)
            word_index = torch.zeros((len(indices), width), dtype=torch.long)
            rows = np.zeros((len(indices), width), dtype=np.int64)
            for b, (i, span) in enumerate(zip(indices, spans)):
                mask[b, : len(span)] = True
                word_index[b, : len(span)] = torch.from_numpy(self.starts[i].astype(np.int64))
                rows[b, : len(span)] = span
            batch.update(mask=mask, word_index=word_index)
        labels = torch.from_numpy(self.labels[rows]).long()
        if self.starts is not None:
            labels[~batch["mask"]] = IGNORE
        batch.update(
            teacher_logits=torch.from_numpy(self.teacher_logits[rows]).float(),
            teacher_repr=torch.from_numpy(self.teacher_repr[rows]).float(),
            labels=labels,
        )
        return batch


def gold_for_rows(labels: Sequence, rows: range, word_counts: np.ndarray | None = None) -> np.ndarray:
    """Gold labels of cache rows: the first len(labels) rows are the labeled train set, the rest have none.

    Tagging (`word_counts` of the rows given): `labels` holds one label array per sentence and the
    result has one entry per word.
    """
    labeled = range(rows.start, min(rows.stop, len(labels)))
    if word_counts is None:
        gold = np.full(len(rows), IGNORE, dtype=np.int64)
        gold[: len(labeled)] = np.asarray(labels[labeled.start : labeled.stop], dtype=np.int64)
        return gold
    gold = np.full(int(word_counts.sum()), IGNORE, dtype=np.int64)
    known = [np.asarray(labels[i], dtype=np.int64) for i in labeled]
    if known:
        gold[: sum(len(k) for k in known)] = np.concatenate(known)
    return gold


def rows_gold(labels: Sequence, rows: CacheRows, first_row: int) -> np.ndarray:
    """Gold labels of cache rows that start at cache row `first_row`."""
    counts = rows.word_counts() if rows.starts is not None else None
    return gold_for_rows(labels, range(first_row, first_row + len(rows)), counts)


def distill_data(rows: CacheRows, vocab: PrunedVocab, gold: np.ndarray) -> DistillData:
    """Cache rows as student inputs (pruned vocabulary) with their gold labels."""
    return DistillData([vocab.encode(x) for x in rows.ids], rows.logits, rows.reps, gold, vocab.pad_id, rows.starts)


def cached_data(cache: TransferCache, vocab: PrunedVocab, labels: Sequence, stop: int | None = None) -> DistillData:
    """The first `stop` rows of a cache (all by default) in memory, with gold labels on the first len(labels)."""
    rows = cache.load(stop)
    return distill_data(rows, vocab, rows_gold(labels, rows, 0))


class TransferBatches:
    """Shuffled, length-bucketed batches over a transfer cache, read a window of chunks at a time.

    Memory holds one window (`window` chunks), whatever the transfer set's size. With `stop`, only
    the first `stop` rows are read (a transfer-set-size study needs no new annotation). Each epoch shuffles
    the order of the full chunks (the last, partial chunk stays last, so every epoch has the same
    number of batches) and the rows within each window; the order depends only on seed and epoch.
    """

    def __init__(
        self, cache: TransferCache, vocab: PrunedVocab, labels: Sequence, batch_size: int, seed: int,
        stop: int | None = None, window: int = 8,
    ):
        self.cache, self.vocab, self.labels = cache, vocab, labels
        self.batch_size, self.seed, self.stop, self.window = batch_size, seed, stop, window
        self.epoch = 0
        rows = len(cache) if stop is None else min(stop, len(cache))
        self.sizes: list[int] = []  # rows read from each chunk: all but the last chunk are whole
        for index in range(cache.num_chunks()):
            chunk = cache.chunk_rows(index)
            if chunk.start >= rows:
                break
            self.sizes.append(min(rows, chunk.stop) - chunk.start)
        self.chunks = len(self.sizes)

    def seeded(self, seed: int) -> TransferBatches:
        return TransferBatches(self.cache, self.vocab, self.labels, self.batch_size, seed, self.stop, self.window)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _windows(self) -> list[list[int]]:
        full = [i for i in range(self.chunks) if self.sizes[i] == self.sizes[0]]
        partial = [i for i in range(self.chunks) if i not in full]
        random.Random(self.seed * 7919 + self.epoch).shuffle(full)
        order = full + partial
        return [order[i : i + self.window] for i in range(0, len(order), self.window)]

    def __len__(self) -> int:
        return sum(-(-sum(self.sizes[i] for i in w) // self.batch_size) for w in self._windows())

    def _window_data(self, chunks: list[int]) -> DistillData:
        parts = [self.cache.chunk(i).head(self.sizes[i]) for i in chunks]
        gold = np.concatenate([rows_gold(self.labels, rows, self.cache.chunk_rows(i).start) for i, rows in zip(chunks, parts)])
        return distill_data(CacheRows.concat(parts), self.vocab, gold)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for number, chunks in enumerate(self._windows()):
            data = self._window_data(chunks)
            sampler = LengthBucketSampler([len(x) for x in data.ids], self.batch_size, self.seed * 7919 + number)
            sampler.set_epoch(self.epoch)
            for indices in sampler:
                yield data.collate(indices)


class StageCheckpoints:
    """One safetensors file and one history file per finished stage, tagged with the run's fingerprint."""

    def __init__(self, folder: Path, fingerprint: str):
        self.folder = folder
        self.fingerprint = fingerprint
        folder.mkdir(parents=True, exist_ok=True)

    def _paths(self, index: int) -> tuple[Path, Path]:
        return self.folder / f"stage-{index:02d}.safetensors", self.folder / f"stage-{index:02d}.json"

    def load(self, index: int, stage: Stage) -> tuple[dict[str, torch.Tensor], StageHistory] | None:
        weights, meta = self._paths(index)
        if not (weights.is_file() and meta.is_file()):
            return None
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            tensors = load_file(str(weights))
        except (OSError, ValueError, RuntimeError):
            return None
        if info.get("fingerprint") != self.fingerprint or info.get("stage") != stage.name:
            return None
        return tensors, StageHistory.from_dict(info["history"])

    def save(self, index: int, stage: Stage, tensors: dict[str, torch.Tensor], history: StageHistory) -> None:
        weights, meta = self._paths(index)
        tmp = weights.with_name(weights.name + ".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, weights)
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


def student_forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    """The student on a batch: per example, or per word when the batch has word positions (tagging)."""
    if "word_index" in batch:
        return model(batch["input_ids"], batch["lengths"], batch["word_index"])
    return model(batch["input_ids"], batch["lengths"])


def run_stages(
    model: torch.nn.Module,
    stages: list[Stage],
    data: dict[str, DistillData | TransferBatches],
    dev: DistillData,
    config: DistillConfig,
    accelerator: Accelerator,
    seed: int,
    checkpoints: StageCheckpoints,
    teacher_dim: int,
    dev_score: Callable[[list[np.ndarray]], float] | None = None,
    score_name: str = "accuracy",
) -> list[StageHistory]:
    """Train `model` through `stages` in order; finished stages are loaded from their checkpoints.

    `dev_score` turns the student's dev predictions (one array of label indices per example:
    a scalar for classification, one per word for tagging) into the figure a stage monitors;
    by default the accuracy against the dev data's labels.
    """
    score = dev_score or (lambda predicted: float(np.mean(np.concatenate(predicted) == dev.labels)))
    student_dim = model.config.dense_dim
    losses: dict[str, torch.nn.Module] = {
        name: build_loss(
            name,
            student_dim=student_dim,
            teacher_dim=teacher_dim,
            soft_kind=config.soft_loss,
            temperature=config.temperature,
            repr_kind=config.representation_loss,
        ).to(accelerator.device)
        for name in sorted({n for s in stages for n in s.losses})
    }
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
        train = data[stage.data]
        if isinstance(train, TransferBatches):
            loader = train.seeded(seed * 1000 + index)
        else:
            sampler = LengthBucketSampler([len(ids) for ids in train.ids], config.batch_size, seed * 1000 + index)
            loader = DataLoader(list(range(len(train))), batch_sampler=sampler, collate_fn=train.collate)

        def stage_loss(out, batch: dict, stage: Stage = stage) -> torch.Tensor:
            return sum(weight * stage_losses[name](out, batch, batch.get("mask")) for name, weight in stage.losses.items())

        def compute_loss(batch: dict) -> torch.Tensor:
            return stage_loss(student_forward(model, batch), batch)

        def evaluate(stage: Stage = stage) -> tuple[float, float | None]:
            total = 0.0
            predicted: list[np.ndarray] = [np.empty(0)] * len(dev)
            with torch.inference_mode():
                for indices in sorted_batches([len(ids) for ids in dev.ids], 512):
                    batch = {k: v.to(accelerator.device) for k, v in dev.collate(indices).items()}
                    out = student_forward(model, batch)
                    total += float(stage_loss(out, batch)) * len(indices)
                    labels = out.logits.argmax(-1).cpu().numpy()
                    lengths = batch["mask"].sum(1).tolist() if "mask" in batch else [None] * len(indices)
                    for row, i in enumerate(indices):
                        predicted[i] = labels[row, : lengths[row]] if lengths[row] is not None else labels[row : row + 1]
            return total / len(dev), score(predicted)

        settings = LoopSettings(
            name=stage.name,
            epochs=stage.epochs,
            lr=stage.lr,
            patience=config.patience,
            monitor=stage.monitor,
            restart_epochs=config.restart_epochs,
            grad_clip=config.grad_clip,
            score_name=score_name,
        )
        history = fit(model, trainable, compute_loss, loader, evaluate, settings, accelerator, extra)
        best = history.epochs[history.best_epoch - 1]
        accuracy = f", dev {history.score_name} {best.dev_score:.4f}" if best.dev_score is not None else ""
        log(f"stage {stage.name}: best epoch {history.best_epoch}/{len(history.epochs)}, dev loss {best.dev_loss:.4f}{accuracy}")
        checkpoints.save(index, stage, _state(model, losses), history)
        histories.append(history)
    set_trainable(model, tuple(model.layer_groups()))
    return histories
