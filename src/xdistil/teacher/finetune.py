"""Fine-tune the teacher on the small labeled set through the project's one training loop."""

from __future__ import annotations

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from xdistil.batching import LengthBucketSampler
from xdistil.config import TeacherConfig
from xdistil.data.corpus import Split
from xdistil.loop import LoopSettings, StageHistory, fit
from xdistil.student.inputs import tokenize
from xdistil.teacher.inference import pad_teacher, teacher_outputs


def teacher_dev_eval(model: torch.nn.Module, token_ids: list[list[int]], labels: list[int], pad_id: int, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of the teacher on labeled token ids."""
    target = np.asarray(labels)
    logits = np.zeros((len(labels), model.config.num_labels), dtype=np.float32)
    for indices, batch_logits, _ in teacher_outputs(model, token_ids, pad_id, batch_size, None, "first"):
        logits[indices] = batch_logits
    loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(target)).item()
    return loss, float((logits.argmax(1) == target).mean())


def finetune_teacher(
    model: torch.nn.Module, tokenizer, train: Split, dev: Split, config: TeacherConfig, accelerator: Accelerator, seed: int
) -> StageHistory:
    """AdamW with linear warm-up and cosine decay, early stopping on dev accuracy, best weights restored."""
    pad_id = tokenizer.pad_token_id
    train_ids, _ = tokenize(tokenizer, train.texts, config.max_length)
    dev_ids, _ = tokenize(tokenizer, dev.texts, config.max_length)
    examples = list(zip(train_ids, train.labels))

    def collate(batch: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        inputs = pad_teacher([ids for ids, _ in batch], pad_id)
        inputs["labels"] = torch.tensor([label for _, label in batch], dtype=torch.long)
        return inputs

    sampler = LengthBucketSampler([len(ids) for ids in train_ids], config.batch_size, seed, bucket_batches=4)
    loader = DataLoader(examples, batch_sampler=sampler, collate_fn=collate)
    settings = LoopSettings(
        name="teacher fine-tuning",
        epochs=config.epochs,
        lr=config.lr,
        patience=config.patience,
        monitor="dev_accuracy",
        optimizer="adamw",
        weight_decay=config.weight_decay,
        warmup_ratio=config.warmup_ratio,
    )
    return fit(
        model,
        [p for p in model.parameters() if p.requires_grad],
        lambda batch: model(**batch).loss,
        loader,
        lambda: teacher_dev_eval(model, dev_ids, dev.labels, pad_id, 64),
        settings,
        accelerator,
    )
