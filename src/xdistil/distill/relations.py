"""Self-attention relations (MiniLM v2): what the attention loss compares between two encoders.

For the queries, keys and values of one layer, the width is split into R relation heads (whatever
the layer's own head count, so teacher and student may differ in heads and width), and the scaled
dot products between positions within each head are turned into distributions over positions.
The query, key and value vectors are captured by forward hooks on the layer's projections, so no
model needs rewriting (BERT-style `query/key/value` and MPNet-style `q/k/v` names are found).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from xdistil.errors import XDistilError

QKV_NAMES = (("query", "key", "value"), ("q", "k", "v"))


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a Hugging Face encoder (the first `encoder.layer` list inside `model`)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and (name == "encoder.layer" or name.endswith(".encoder.layer")):
            return module
    raise XDistilError(f"a {type(model).__name__} has no `encoder.layer` list: attention relations need a BERT-like encoder")


def qkv_modules(layer: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module]:
    """The query, key and value projections of one transformer layer."""
    linear = {name.rsplit(".", 1)[-1]: module for name, module in layer.named_modules() if isinstance(module, nn.Linear)}
    for names in QKV_NAMES:
        if all(n in linear for n in names):
            return linear[names[0]], linear[names[1]], linear[names[2]]
    raise XDistilError(f"no query/key/value projections found in a {type(layer).__name__}")


class Capture:
    """Keeps the latest outputs of the query, key and value projections of a layer (forward hooks)."""

    def __init__(self, layer: nn.Module):
        self.outputs: list[torch.Tensor | None] = [None, None, None]
        self.handles = [m.register_forward_hook(self._keep(i)) for i, m in enumerate(qkv_modules(layer))]

    def _keep(self, index: int):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.outputs[index] = output

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def relations(vectors: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """Log-distributions over positions (batch, heads, length, length) of scaled dot products within
    each relation head; padding positions are never attended to."""
    batch, length, width = vectors.shape
    if width % heads:
        raise XDistilError(f"the attention loss's relation_heads: {heads} does not divide a width of {width}")
    split = vectors.float().view(batch, length, heads, width // heads).transpose(1, 2)
    scores = split @ split.transpose(-1, -2) / math.sqrt(width // heads)
    scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    return F.log_softmax(scores, dim=-1)


def relation_divergence(student: torch.Tensor, teacher: torch.Tensor, heads: int, mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher relations || student relations), averaged over the real query positions and heads."""
    s, t = relations(student, heads, mask), relations(teacher, heads, mask)
    terms = torch.where(torch.isfinite(t), t.exp() * (t - s), torch.zeros_like(t))  # padding keys: probability 0
    per_query = terms.sum(-1)  # (batch, heads, length)
    return per_query[mask.bool()[:, None, :].expand_as(per_query)].mean()
