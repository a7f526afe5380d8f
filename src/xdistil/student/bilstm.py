"""The BiLSTM student: embedding -> dropout -> BiLSTM -> max-pool -> dense (teacher width) -> output.

As a tagger (`tagging=True`) there is no pooling: dense and output apply to every position, read
at each word's first piece when word positions are given. Its embeddings start as the teacher's
input table or each piece's output vector from an encoder (`embedding_init`), reduced by PCA, over
the pruned vocabulary, optionally SIF-weighted by the pieces' frequency in the transfer set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from xdistil.student.base import StudentContext, StudentOutput, TableStudent
from xdistil.student.inputs import length_mask, tensor_batch
from xdistil.student.registry import register
from xdistil.student.settings import TableSettings

GROUPS = ("output", "dense", "encoder", "embedding")


class BiLSTMSettings(TableSettings):
    """The BiLSTM's sizes; dense_dim defaults to the teacher's width."""

    arch: Literal["bilstm"] = "bilstm"
    hidden: int = Field(128, ge=2)
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    dense_dim: int | None = None

    def layer_groups(self) -> tuple[str, ...]:
        return GROUPS


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


@register
class BiLSTMStudent(TableStudent):
    """Sequence classifier or tagger whose dense layer has the teacher's width, so its output can mimic a teacher layer."""

    arch = "bilstm"
    settings_class = BiLSTMSettings
    config_class = BiLSTMConfig

    def __init__(self, config: BiLSTMConfig):
        super().__init__()
        self.sizes = config
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

    @classmethod
    def build(cls, settings: BiLSTMSettings, context: StudentContext) -> BiLSTMStudent:
        teacher = context.teacher
        model = cls(
            BiLSTMConfig(
                vocab_size=len(context.vocab),
                num_labels=context.num_labels,
                emb_dim=settings.emb_dim,
                hidden=settings.hidden,
                layers=settings.layers,
                dropout=settings.dropout,
                dense_dim=settings.dense_dim or teacher.config.hidden_size,
                pad_id=context.vocab.pad_id,
                tagging=context.per_word,
            )
        )
        return model.start_table(settings, context)

    @property
    def per_word(self) -> bool:
        return self.sizes.tagging

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        modules = {"output": self.output, "dense": self.dense, "encoder": self.encoder, "embedding": self.embedding}
        return {name: list(modules[name].parameters()) for name in GROUPS}

    def forward(self, batch: dict[str, torch.Tensor]) -> StudentOutput:
        """Padding never reaches the pool; a tagger reads its outputs at `word_index` when the batch has it."""
        input_ids, lengths = batch["input_ids"], batch["lengths"]
        embedded = self.dropout(self.embedding(input_ids))
        packed = pack_padded_sequence(embedded, lengths.cpu(), batch_first=True, enforce_sorted=False)
        encoded, _ = self.encoder(packed)
        encoded, _ = pad_packed_sequence(encoded, batch_first=True, total_length=input_ids.size(1))
        return self._head(encoded, batch)

    def _head(self, encoded: torch.Tensor, batch: dict[str, torch.Tensor]) -> StudentOutput:
        """From the BiLSTM's outputs at every position to logits: pooled, or read at each word."""
        input_ids, lengths, word_index = batch["input_ids"], batch["lengths"], batch.get("word_index")
        if self.sizes.tagging:
            if word_index is not None:
                encoded = encoded.gather(1, word_index[:, :, None].expand(-1, -1, encoded.size(-1)))
            representation = self.dense(self.dropout(encoded))
            return StudentOutput(self.output(self.dropout(nn.functional.gelu(representation))), representation)
        padding = ~length_mask(lengths.to(input_ids.device), input_ids.size(1))
        pooled = encoded.masked_fill(padding[:, :, None], float("-inf")).max(dim=1).values
        representation = self.dense(self.dropout(pooled))
        logits = self.output(self.dropout(nn.functional.gelu(representation)))
        return StudentOutput(logits, representation)

    def export_module(self) -> nn.Module:
        """Packed sequences do not export; this runs each direction as a one-way LSTM over the padded
        batch, the backward one on each sequence reversed within its own length, which gives exactly
        the packed BiLSTM's outputs at every real position (padding never enters a real position's state)."""
        return _UnpackedBiLSTM(self)


def _reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence's first `length` positions in reverse order; padding positions stay where they are."""
    positions = torch.arange(x.size(1), device=x.device)[None, :]
    last = lengths[:, None] - 1
    index = torch.where(positions <= last, last - positions, positions)
    return x.gather(1, index[:, :, None].expand(-1, -1, x.size(2)))


class _UnpackedBiLSTM(nn.Module):
    """The BiLSTM student without packed sequences (export only; the weights are the student's)."""

    def __init__(self, student: BiLSTMStudent):
        super().__init__()
        self.student = student
        lstm = student.encoder
        self.directions = nn.ModuleList()
        for layer in range(lstm.num_layers):
            pair = nn.ModuleList()
            for suffix in ("", "_reverse"):
                one_way = nn.LSTM(lstm.input_size if layer == 0 else 2 * lstm.hidden_size, lstm.hidden_size, batch_first=True)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    setattr(one_way, f"{name}_l0", getattr(lstm, f"{name}_l{layer}{suffix}"))
                pair.append(one_way)
            self.directions.append(pair)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, word_index: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.student.embedding(input_ids)
        for forward_lstm, backward_lstm in self.directions:
            ahead, _ = forward_lstm(hidden)
            behind, _ = backward_lstm(_reverse_within(hidden, lengths))
            hidden = torch.cat([ahead, _reverse_within(behind, lengths)], dim=-1)
        return self.student._head(hidden, tensor_batch(input_ids, lengths, word_index)).logits
