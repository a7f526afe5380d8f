"""The student interface: what the pipeline, the stage runner, evaluation and io may ask of any student family.

A family is one nn.Module subclass with its settings class, registered in `student/registry.py`.
It is built from its settings and a `StudentContext` (vocabulary, labels, task shape, teacher),
called on a batch dict, split into named layer groups for gradual unfreezing, and saved and
re-created from a plain config dict. Nothing outside `student/` names a concrete family.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from xdistil.student.embeddings import EmbeddingSource, pca_compress, sif_weights
from xdistil.student.inputs import batch_inputs, tensor_batch
from xdistil.student.settings import StudentSettings, TableSettings
from xdistil.student.vocab import PrunedVocab


class StudentOutput(NamedTuple):
    """Logits for the labels, the representation matched to the teacher's layer, and, where a family
    has them, per-layer hidden states (0 = embeddings). Attention is read by the losses that need it
    through hooks on the layers (`distill/relations.py`), so no family computes it unasked."""

    logits: torch.Tensor
    representation: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class StudentContext:
    """What a fresh student is built from besides its settings."""

    vocab: PrunedVocab
    num_labels: int
    per_word: bool  # tagging: one output per word instead of one per text
    teacher: nn.Module  # a Hugging Face model: its width and input embeddings
    embeddings: EmbeddingSource | None = None  # where embedding tables start; default: the teacher's alone, nothing cached

    def embedding_source(self) -> EmbeddingSource:
        if self.embeddings is not None:
            return self.embeddings
        config = self.teacher.config
        return EmbeddingSource(self.teacher, config.bos_token_id, config.eos_token_id)


class Student(nn.Module):
    """Base class of student families.

    Batches are dicts: `input_ids` (batch, time) padded with the vocabulary's pad id, `lengths`
    (batch,), and for per-word students `word_index` (batch, words), the position of each word's
    first piece. A per-word student returns (batch, words, ...) outputs when `word_index` is given,
    else one per piece; a per-text student returns (batch, ...).
    """

    arch: ClassVar[str]
    settings_class: ClassVar[type[StudentSettings]]

    @classmethod
    def build(cls, settings: StudentSettings, context: StudentContext) -> Student:
        """A fresh student (random parts drawn from torch's current generator)."""
        raise NotImplementedError

    @classmethod
    def tokenizer_source(cls, settings: StudentSettings, teacher: str) -> str:
        """The model whose tokenizer the student reads (by default the teacher's, `teacher`)."""
        return teacher

    @classmethod
    def preflight(cls, settings: StudentSettings, teacher_config) -> None:
        """Check the settings against the teacher's (transformers) config before anything trains; raise
        XDistilError naming the setting. Families with nothing to check need not override it."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Student:
        """The student's architecture from `config()` output, weights uninitialised (for loading)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Every size needed to re-create the architecture, JSON-safe."""
        raise NotImplementedError

    @property
    def per_word(self) -> bool:
        raise NotImplementedError

    @property
    def representation_dim(self) -> int:
        """Width of `StudentOutput.representation`."""
        raise NotImplementedError

    @property
    def hidden_layers(self) -> int | None:
        """How many layers `StudentOutput.hidden_states` has beyond the embeddings (None: it has none)."""
        return None

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by group, top first; every parameter in exactly one group."""
        raise NotImplementedError

    def embedding_parameters(self) -> list[nn.Parameter]:
        """The token-embedding parameters (reported apart: they grow with the vocabulary, not the model)."""
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> StudentOutput:
        raise NotImplementedError

    def export_module(self) -> nn.Module:
        """The student as a module of plain tensors for ONNX export: `(input_ids, lengths)` or, for a
        tagger, `(input_ids, lengths, word_index)` -> logits. It must compute exactly `forward`'s logits
        (export checks it); a family whose forward does not trace faithfully overrides this."""
        return _LogitsOnly(self)

    def example_inputs(self, batch_size: int = 2, length: int = 8) -> dict[str, torch.Tensor]:
        """A valid batch of the given shape (for latency measurement, tracing and export)."""
        generator = torch.Generator().manual_seed(0)
        vocab = self.embedding_parameters()[0].shape[0]
        ids = torch.randint(0, vocab, (batch_size, length), generator=generator).numpy()
        return batch_inputs(list(ids), pad_id=0)


class TableStudent(Student):
    """A family whose first layer is its own word-piece table (`self.embedding`, started by `start_table`) and whose
    sizes are one dataclass (`self.sizes`, of `config_class`) ending in a dense layer (`dense_dim` wide): the BiLSTM and
    the pooled student."""

    config_class: ClassVar[type]
    sizes: Any
    embedding: nn.Embedding

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TableStudent:
        return cls(cls.config_class(**config))

    def config(self) -> dict[str, Any]:
        return asdict(self.sizes)

    @property
    def representation_dim(self) -> int:
        return self.sizes.dense_dim

    def embedding_parameters(self) -> list[nn.Parameter]:
        return list(self.embedding.parameters())

    def start_table(self, settings: TableSettings, context: StudentContext) -> TableStudent:
        """The first table from the teacher's (`embedding_init`; random: left as drawn)."""
        if settings.embedding_init != "random":
            with torch.no_grad():
                self.embedding.weight.copy_(initial_table(settings, context))
        return self


def initial_table(settings: TableSettings, context: StudentContext) -> torch.Tensor:
    """A table student's first embedding table (vocabulary x emb_dim), at unit overall scale: the teacher's input table or
    each piece's output vector, PCA-reduced to emb_dim, optionally SIF-weighted by the pieces' transfer-set frequency."""
    source = context.embedding_source()
    ids = context.vocab.teacher_ids
    if settings.embedding_init == "teacher_pca":
        table = source.input_table(ids)
    else:
        table = source.output_vectors(ids, "teacher" if settings.embedding_init == "teacher_output" else "base")
    table = pca_compress(table, settings.emb_dim)
    if settings.embedding_sif is not None:
        if context.vocab.counts is None:
            raise ValueError("student.embedding_sif needs the vocabulary's piece counts")
        table = table * sif_weights(context.vocab.counts, settings.embedding_sif)[:, None]
        table = table / table.std().clamp(min=1e-12)  # back to unit overall scale: only the rows' relative sizes change
    return table


class _LogitsOnly(nn.Module):
    """Positional tensors in, logits out: the shape ONNX export and the runtime use."""

    def __init__(self, student: Student):
        super().__init__()
        self.student = student

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor, word_index: torch.Tensor | None = None) -> torch.Tensor:
        return self.student(tensor_batch(input_ids, lengths, word_index)).logits
