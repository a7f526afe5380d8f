"""Running the teacher efficiently: length-sorted batches, dynamic padding, inference mode."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from xdistil.batching import sorted_batches
from xdistil.teacher.alignment import EncodedSentence, window_inputs, windows_for


def pad_teacher(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """input_ids and attention_mask for a list of token id lists, padded to the longest."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.as_tensor(list(sequence), dtype=torch.long)
        mask[row, : len(sequence)] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def resolve_layer(model: torch.nn.Module, layer: int | None) -> int:
    """The hidden-state index of the representation layer: default the middle layer."""
    layers = model.config.num_hidden_layers
    chosen = layers // 2 if layer is None else layer
    if not 0 <= chosen <= layers:
        raise ValueError(f"teacher.layer must be between 0 and {layers}, got {chosen}")
    return chosen


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """First-token vector, or the mean over real (non-padding) tokens."""
    if pooling == "first":
        return hidden[:, 0]
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


@torch.inference_mode()
def teacher_outputs(
    model: torch.nn.Module,
    token_ids: Sequence[Sequence[int]],
    pad_id: int,
    batch_size: int,
    layer: int | None,
    pooling: str,
    label_order: Sequence[int] | None = None,
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray | None]]:
    """For length-sorted batches: (indices into token_ids, logits, pooled representation of `layer`).

    `layer=None` skips representations (plain prediction). `label_order` reorders logit columns.
    """
    model.eval()
    device = next(model.parameters()).device
    want_hidden = layer is not None
    for indices in sorted_batches([len(t) for t in token_ids], batch_size):
        inputs = pad_teacher([token_ids[i] for i in indices], pad_id, device)
        out = model(**inputs, output_hidden_states=want_hidden)
        logits = out.logits.float()
        if label_order is not None:
            logits = logits[:, list(label_order)]
        rep = pool(out.hidden_states[layer], inputs["attention_mask"], pooling).float().cpu().numpy() if want_hidden else None
        yield indices, logits.cpu().numpy(), rep


@torch.inference_mode()
def tagger_outputs(
    model: torch.nn.Module,
    encoded: Sequence[EncodedSentence],
    pad_id: int,
    batch_size: int,
    max_length: int,
    layer: int | None,
    label_order: Sequence[int] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray | None], int]:
    """Per-word teacher logits (words, C) and `layer` representations (words, H) for each sentence,
    read at each word's first piece; long sentences run as windows and are stitched back.

    Returns (logits per sentence, representations per sentence (None without a layer), number of
    sentences that were split). `on_batch(n)` is told how many sentences each batch finished.
    """
    model.eval()
    device = next(model.parameters()).device
    windows, split = windows_for(encoded, max_length)
    inputs = [window_inputs(encoded[w.row], w, max_length) for w in windows]
    logits: list[np.ndarray | None] = [None] * len(encoded)
    reps: list[np.ndarray | None] = [None] * len(encoded)
    for indices in sorted_batches([len(ids) for ids, _ in inputs], batch_size):
        batch = pad_teacher([inputs[i][0] for i in indices], pad_id, device)
        out = model(**batch, output_hidden_states=layer is not None)
        rows = torch.tensor([b for b, i in enumerate(indices) for _ in inputs[i][1]], dtype=torch.long, device=device)
        cols = torch.tensor([p for i in indices for p in inputs[i][1]], dtype=torch.long, device=device)
        word_logits = out.logits[rows, cols].float()
        if label_order is not None:
            word_logits = word_logits[:, list(label_order)]
        word_logits = word_logits.cpu().numpy()
        word_reps = out.hidden_states[layer][rows, cols].float().cpu().numpy() if layer is not None else None
        offset = 0
        finished = 0
        for i in indices:
            window, count = windows[i], len(inputs[i][1])
            sentence = len(encoded[window.row])
            if logits[window.row] is None:
                logits[window.row] = np.zeros((sentence, word_logits.shape[1]), dtype=np.float32)
                if word_reps is not None:
                    reps[window.row] = np.zeros((sentence, word_reps.shape[1]), dtype=np.float32)
            logits[window.row][window.keep_start : window.keep_stop] = word_logits[offset : offset + count]
            if word_reps is not None:
                reps[window.row][window.keep_start : window.keep_stop] = word_reps[offset : offset + count]
            offset += count
            finished += window.keep_stop == len(encoded[window.row])
        if on_batch is not None:
            on_batch(finished)
    return logits, reps, split  # type: ignore[return-value]
