"""Turning text into padded student batches, shared by training, evaluation and prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from xdistil.predictor import pad_ids, word_index
from xdistil.student.vocab import PrunedVocab
from xdistil.text import EncodedSentence


def pad_batch(sequences: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids padded to the longest sequence, lengths): the predictor's layout (`predictor.pad_ids`) as tensors."""
    ids, lengths = pad_ids(sequences, pad_id)
    return torch.from_numpy(ids), torch.from_numpy(lengths)


def length_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(batch, width) True at the real positions of sequences of these lengths, False at padding."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def tensor_batch(input_ids: torch.Tensor, lengths: torch.Tensor, word_index: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """A student batch from positional tensors (as export and its checks pass them); `word_index` only for taggers."""
    batch = {"input_ids": input_ids, "lengths": lengths}
    if word_index is not None:
        batch["word_index"] = word_index
    return batch


def batch_inputs(sequences: Sequence[np.ndarray], pad_id: int) -> dict[str, torch.Tensor]:
    """A student batch (`input_ids`, `lengths`) of student id arrays."""
    input_ids, lengths = pad_batch(sequences, pad_id)
    return {"input_ids": input_ids, "lengths": lengths}


def word_batch(sentences: Sequence[EncodedSentence], vocab: PrunedVocab) -> dict[str, torch.Tensor]:
    """A per-word student batch of encoded sentences: inputs plus each word's first-piece position (the predictor's layout)."""
    batch = batch_inputs([vocab.encode(s.ids) for s in sentences], vocab.pad_id)
    batch["word_index"] = torch.from_numpy(word_index(sentences))
    return batch
