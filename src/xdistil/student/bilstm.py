"""The BiLSTM student: embedding -> dropout -> BiLSTM -> max-pool -> dense (teacher width) -> output.

As a tagger (`tagging=True`) there is no pooling: dense and output apply to every position, read
at each word's first piece when word positions are given.""" 

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class BiLSTMConfig:
    """Every size of the student, saved with its weights."""

    vocab_size: int
    num_labels: int
    emb_dim: int = 128
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.2
    dense_dim: int = 384
    pad_id: int = 0
    tagging: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class StudentOutput(NamedTuple):
    """Logits for the labels and the dense-layer representation matched to the teacher's layer."""

    logits: torch.Tensor
    representation: torch.Tensor


class BiLSTMStudent(nn.Module):
    """Sequence classifier whose dense layer has the teacher's width, so its output can mimic a teacher layer."""

    def __init__(self, config: BiLSTMConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.emb_dim, padding_idx=config.pad_id)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = nn.LSTM(
            config.emb_dim,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.dense = nn.Linear(2 * config.hidden, config.dense_dim)
        self.output = nn.Linear(config.dense_dim, config.num_labels)

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by group, named top-down for gradual unfreezing."""
        return {
            "output": list(self.output.parameters()),
            "dense": list(self.dense.parameters()),
            "encoder": list(self.encoder.parameters()),
            "embedding": list(self.embedding.parameters()),
        }

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, word_index: torch.Tensor | None = None) -> StudentOutput:
        """input_ids: (batch, time) padded; lengths: (batch,) real lengths. Padding never reaches the pool.

        A tagger returns (batch, words, ...) outputs read at `word_index` (batch, words) when given,
        else (batch, time, ...) for every piece.
        """
        embedded = self.dropout(self.embedding(input_ids))
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        encoded, _ = self.encoder(packed)
        encoded, _ = pad_packed_sequence(encoded, batch_first=True, total_length=input_ids.size(1))
        if self.config.tagging:
            if word_index is not None:
                encoded = encoded.gather(1, word_index[:, :, None].expand(-1, -1, encoded.size(-1)))
            representation = self.dense(self.dropout(encoded))
            return StudentOutput(self.output(self.dropout(nn.functional.gelu(representation))), representation)
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        padding = positions[None, :] >= lengths.to(input_ids.device)[:, None]
        pooled = encoded.masked_fill(padding[:, :, None], float("-inf")).max(dim=1).values
        representation = self.dense(self.dropout(pooled))
        logits = self.output(self.dropout(nn.functional.gelu(representation)))
        return StudentOutput(logits, representation)
