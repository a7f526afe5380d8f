"""Fine-tune the teacher on the small labeled set through the project's one training loop."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from xdistil.batching import LengthBucketSampler
from xdistil.config import TeacherConfig
from xdistil.data.corpus import Split
from xdistil.loop import LoopSettings, StageHistory, fit
from xdistil.teacher.alignment import window_inputs, windows_for
from xdistil.teacher.inference import pad_teacher, tagger_outputs, teacher_outputs
from xdistil.text import IGNORE, Encode, EncodedSentence, encode_words, tokenize

# predicted label indices, one array per sentence -> the dev figure (the task's, e.g. entity F1)
RowScore = Callable[[list[np.ndarray]], float]


def teacher_dev_eval(model: torch.nn.Module, token_ids: list[list[int]], labels: list[int], pad_id: int, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the teacher on labeled token ids."""
    target = np.asarray(labels)
    logits = np.zeros((len(labels), model.config.num_labels), dtype=np.float32)
    for indices, batch_logits, _ in teacher_outputs(model, token_ids, pad_id, batch_size, None, "first"):
        logits[indices] = batch_logits
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target)).item()
    return loss, float((logits.argmax(1) == target).mean())


def parameter_groups(model: torch.nn.Module, config: TeacherConfig) -> list[dict]:
    """The pre-trained encoder at `lr`, the new task head at `head_lr` (a head on a sentence
    encoder whose last layer is compressed can need a far larger step than the encoder)."""
    encoder = {id(p) for p in model.base_model.parameters()}
    head = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder]
    body = [p for p in model.parameters() if p.requires_grad and id(p) in encoder]
    return [{"params": body, "lr": config.lr}, {"params": head, "lr": config.head_lr or config.lr}]


def _fit_teacher(
    model: torch.nn.Module, examples: list, lengths: list[int], collate: Callable, evaluate: Callable[[], tuple[float, float]],
    config: TeacherConfig, accelerator: Accelerator, seed: int, score_name: str,
) -> StageHistory:
    """The teacher through the one loop: AdamW, linear warm-up and cosine decay, length-bucketed
    batches, early stopping on the dev score with the best weights restored."""
    sampler = LengthBucketSampler(lengths, config.batch_size, seed, bucket_batches=4)
    settings = LoopSettings(
        name="teacher fine-tuning",
        epochs=config.epochs,
        lr=config.lr,
        patience=config.patience,
        monitor="dev_score",
        optimizer="adamw",
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
        score_name=score_name,
    )
    loader = DataLoader(examples, batch_sampler=sampler, collate_fn=collate)
    return fit(model, parameter_groups(model, config), lambda batch: model(**batch).loss, loader, evaluate, settings, accelerator)


def finetune_teacher(
    model: torch.nn.Module, tokenizer, train: Split, dev: Split, config: TeacherConfig, accelerator: Accelerator, seed: int,
    encode: Encode = tokenize,
) -> StageHistory:
    """AdamW with linear warm-up and cosine decay, early stopping on dev accuracy, best weights restored."""
    pad_id = tokenizer.pad_token_id
    train_ids, _ = encode(tokenizer, train.texts, config.max_length)  # the task's text -> ids (`text.tokenize` by default)
    dev_ids, _ = encode(tokenizer, dev.texts, config.max_length)
    examples = list(zip(train_ids, train.labels))

    def collate(batch: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        inputs = pad_teacher([ids for ids, _ in batch], pad_id)
        inputs["labels"] = torch.tensor([label for _, label in batch], dtype=torch.long)
        return inputs

    evaluate = lambda: teacher_dev_eval(model, dev_ids, dev.labels, pad_id, 64)  # noqa: E731
    return _fit_teacher(model, examples, [len(ids) for ids in train_ids], collate, evaluate, config, accelerator, seed, "accuracy")


def teacher_tagging_eval(
    model: torch.nn.Module, encoded: list[EncodedSentence], labels: list[list[int]], score: RowScore, pad_id: int, max_length: int
) -> tuple[float, float]:
    """(mean per-word cross-entropy, dev score) of the tagging teacher on labeled sentences."""
    logits, _, _ = tagger_outputs(model, encoded, pad_id, 64, max_length, None)
    flat = torch.from_numpy(np.concatenate(logits))
    target = torch.from_numpy(np.concatenate([np.asarray(x) for x in labels]))
    loss = torch.nn.functional.cross_entropy(flat, target).item()
    return loss, score([row.argmax(1) for row in logits])


def finetune_tagger(
    model: torch.nn.Module, tokenizer, train: Split, dev: Split, score: RowScore, score_name: str,
    config: TeacherConfig, accelerator: Accelerator, seed: int,
) -> StageHistory:
    """The token-classification teacher: each word's first piece carries its label, other pieces and
    padding are ignored; long sentences train as windows. Early stopping on the dev `score` (entity F1)."""
    pad_id = tokenizer.pad_token_id
    encoded = encode_words(tokenizer, train.texts)
    windows, _ = windows_for(encoded, config.max_length)
    examples = []
    for window in windows:
        ids, positions = window_inputs(encoded[window.row], window, config.max_length)
        examples.append((ids, positions, train.labels[window.row][window.keep_start : window.keep_stop]))
    dev_encoded = encode_words(tokenizer, dev.texts)

    def collate(batch: list[tuple[list[int], list[int], list[int]]]) -> dict[str, torch.Tensor]:
        inputs = pad_teacher([ids for ids, _, _ in batch], pad_id)
        labels = torch.full_like(inputs["input_ids"], IGNORE)
        for row, (_, positions, tags) in enumerate(batch):
            labels[row, positions] = torch.as_tensor(tags, dtype=torch.long)
        inputs["labels"] = labels
        return inputs

    evaluate = lambda: teacher_tagging_eval(model, dev_encoded, dev.labels, score, pad_id, config.max_length)  # noqa: E731
    lengths = [len(ids) for ids, _, _ in examples]
    return _fit_teacher(model, examples, lengths, collate, evaluate, config, accelerator, seed, score_name)
