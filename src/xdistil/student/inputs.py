"""Turning text into padded student batches, shared by training, evaluation and prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xdistil.student.vocab import PrunedVocab


def tokenize(tokenizer, texts: Sequence[str], max_length: int) -> tuple[list[list[int]], int]:
    """Teacher token ids per text (truncated to max_length) and how many texts were truncated."""
    full = tokenizer(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    if not truncated:
        return full, 0
    clipped = [ids if len(ids) <= max_length else ids[: max_length - 1] + ids[-1:] for ids in full]
    return clipped, truncated


def pad_batch(sequences: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids padded to the longest sequence, lengths)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    ids = torch.full((len(sequences), int(lengths.max())), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.as_tensor(sequence, dtype=torch.long)
    return ids, lengths


def student_ids(tokenizer, vocab: PrunedVocab, texts: Sequence[str], max_length: int) -> list[np.ndarray]:
    """Student id arrays for texts, through the teacher's tokenizer and the pruned vocabulary."""
    teacher_ids, _ = tokenize(tokenizer, texts, max_length)
    return [vocab.encode(ids) for ids in teacher_ids]
