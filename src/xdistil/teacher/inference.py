"""Running the teacher efficiently: length-sorted batches, dynamic padding, inference mode."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from xdistil.batching import sorted_batches


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
