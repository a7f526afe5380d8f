"""What the student trains and is evaluated on: teacher targets and gold labels beside student inputs.

Small parts (dev, test, the labeled rows) sit in memory as `DistillData`; the transfer set streams
from its cache as `TransferBatches`, a window of chunks at a time. `predict_rows` runs a student
over a `DistillData` for the stage runner's dev evaluation and for the final evaluation alike.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xdistil.batching import LengthBucketSampler, sorted_batches
from xdistil.progress import log
from xdistil.student.base import StudentOutput
from xdistil.student.inputs import length_mask, pad_batch
from xdistil.student.vocab import PrunedVocab
from xdistil.text import IGNORE
from xdistil.transfer.cache import CacheRows, TransferCache


@dataclass
class DistillData:
    """Student inputs with the teacher's targets and gold labels (IGNORE where there is none).

    Classification: one target row per example. Tagging (`starts` given): one target row per word,
    examples' words in order, and batches carry `word_index` (first-piece positions) and `mask`.
    """

    ids: list[np.ndarray]
    teacher_logits: np.ndarray
    teacher_representation: np.ndarray
    labels: np.ndarray
    pad_id: int
    starts: list[np.ndarray] | None = None
    teacher_input_ids: list[np.ndarray] | None = None  # given: batches also carry the teacher's inputs (online targets)
    teacher_pad_id: int = 0

    def __post_init__(self) -> None:
        if self.starts is not None:
            self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in self.starts])]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        input_ids, lengths = pad_batch([self.ids[i] for i in indices], self.pad_id)
        batch = {"input_ids": input_ids, "lengths": lengths}
        if self.teacher_input_ids is not None:
            teacher_input_ids, teacher_lengths = pad_batch([self.teacher_input_ids[i] for i in indices], self.teacher_pad_id)
            batch["teacher_input_ids"] = teacher_input_ids
            batch["teacher_attention_mask"] = length_mask(teacher_lengths, teacher_input_ids.size(1)).long()
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
            teacher_representation=torch.from_numpy(self.teacher_representation[rows]).float(),
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


def distill_data(rows: CacheRows, vocab: PrunedVocab, gold: np.ndarray, teacher_pad: int | None = None) -> DistillData:
    """Cache rows as student inputs (pruned vocabulary) with their gold labels; with `teacher_pad`
    (the teacher's pad id) batches also carry the teacher's own inputs."""
    ids = [vocab.encode(x) for x in rows.ids]
    teacher_input_ids = rows.teacher_input_ids if teacher_pad is not None else None
    return DistillData(ids, rows.logits, rows.representations, gold, vocab.pad_id, rows.starts, teacher_input_ids, teacher_pad or 0)


def cached_data(
    cache: TransferCache, vocab: PrunedVocab, labels: Sequence, stop: int | None = None, teacher_pad: int | None = None
) -> DistillData:
    """The first `stop` rows of a cache (all by default) in memory, with gold labels on the first len(labels)."""
    rows = cache.load(stop)
    return distill_data(rows, vocab, rows_gold(labels, rows, 0), teacher_pad)


class TransferBatches:
    """Shuffled, length-bucketed batches over a transfer cache, read a window of chunks at a time.

    Memory holds one window (`window` chunks), whatever the transfer set's size. With `stop`, only
    the first `stop` rows are read (a transfer-set-size study needs no new annotation). Each epoch shuffles
    the order of the full chunks (the last, partial chunk stays last, so every epoch has the same
    number of batches) and the rows within each window; the order depends only on seed and epoch.
    """

    def __init__(
        self, cache: TransferCache, vocab: PrunedVocab, labels: Sequence, batch_size: int, seed: int,
        stop: int | None = None, window: int = 8, teacher_pad: int | None = None,
    ):
        self.cache, self.vocab, self.labels = cache, vocab, labels
        self.batch_size, self.seed, self.stop, self.window, self.teacher_pad = batch_size, seed, stop, window, teacher_pad
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
        return TransferBatches(self.cache, self.vocab, self.labels, self.batch_size, seed, self.stop, self.window, self.teacher_pad)

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
        return distill_data(CacheRows.concat(parts), self.vocab, gold, self.teacher_pad)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for number, chunks in enumerate(self._windows()):
            data = self._window_data(chunks)
            sampler = LengthBucketSampler([len(x) for x in data.ids], self.batch_size, self.seed * 7919 + number)
            sampler.set_epoch(self.epoch)
            for indices in sampler:
                yield data.collate(indices)


@torch.inference_mode()
def predict_rows(
    model: torch.nn.Module,
    data: DistillData,
    device: torch.device | str,
    on_batch: Callable[[StudentOutput, dict[str, torch.Tensor], int], None] | None = None,
    batch_size: int = 512,
) -> list[np.ndarray]:
    """The student's logits for each example of `data`, in its order: a (1, C) array per example,
    or (words, C) per sentence. `on_batch(outputs, batch, examples)` sees every batch (e.g. to add up a loss)."""
    model.eval()
    rows: list[np.ndarray] = [np.empty(0)] * len(data)
    for indices in sorted_batches([len(x) for x in data.ids], batch_size):
        batch = {k: v.to(device) for k, v in data.collate(indices).items()}
        out = model(batch)
        if on_batch is not None:
            on_batch(out, batch, len(indices))
        logits = out.logits.float().cpu().numpy()
        words = batch["mask"].sum(1).tolist() if "mask" in batch else None
        for row, i in enumerate(indices):
            rows[i] = logits[row, : words[row]] if words is not None else logits[row : row + 1]
    return rows


def warn_if_constant(cache: TransferCache) -> None:
    """Say so when the teacher representation barely varies across texts: the representation loss then teaches little."""
    sample = cache.chunk(0).representations[:5000].astype(np.float32)
    if sample.size == 0:  # a cache without representations (labels from a file or a function): nothing to judge
        return
    spread = float(sample.var(axis=0).mean())
    scale = float((sample**2).mean()) or 1.0
    if spread < 1e-3 * scale:
        spec = cache.manifest
        log(
            f"warning: the teacher representation (layer {spec['layer']}, "
            f"pooling '{spec['pooling']}') is nearly the same for every text (variance {spread:.1e} vs mean square {scale:.1e}); "
            f"the representation stage will teach little - try teacher.pooling: mean or another teacher.layer"
        )
