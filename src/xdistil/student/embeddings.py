"""Student embeddings from the teacher's: keep the student's rows, reduce them by PCA to emb_dim.

The rows come from the teacher's input table, or from each word piece's *output* vector: the piece run
through an encoder alone, as model2vec builds its static vectors (its ablation: +6.1% over input
embeddings). Output vectors are computed once per encoder and vocabulary and kept on disk.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xdistil.atomic import atomic_write
from xdistil.progress import log
from xdistil.storage import read_safetensors


def pca_factors(matrix: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows projected onto their top components, those components as rows, the row mean), float64.

    `projected @ components + mean` is the best rank-`dim` approximation of the rows; with fewer
    rows or columns than `dim` there are only as many components as exist.
    """
    data = matrix.detach().to(torch.float64)
    components = min(dim, *data.shape)
    mean = data.mean(dim=0, keepdim=True)
    centered = data - mean
    _, _, v_t = torch.linalg.svd(centered, full_matrices=False)
    return centered @ v_t[:components].T, v_t[:components], mean[0]


def pca_compress(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """Project rows onto their top `dim` principal components, scaled to unit overall std.

    The unit scale keeps the LSTM's input in the range its default initialisation expects,
    whatever the teacher's embedding scale; relative variance across components is preserved.
    A matrix with fewer rows (a tiny vocabulary) or columns than `dim` has fewer components: the
    remaining columns start at zero and are learned like the rest.
    """
    projected, _, _ = pca_factors(matrix, dim)
    projected = projected / projected.std().clamp(min=1e-12)
    out = torch.zeros(matrix.shape[0], dim, dtype=torch.float64)
    out[:, : projected.shape[1]] = projected
    return out.to(torch.float32)


class FactorizedEmbedding(nn.Module):
    """A narrow word-piece table and a linear map up to the encoder's width (ALBERT's factorisation):
    vocabulary x emb_dim + emb_dim x width parameters instead of vocabulary x width."""

    def __init__(self, rows: int, emb_dim: int, width: int, padding_idx: int | None = None):
        super().__init__()
        self.table = nn.Embedding(rows, emb_dim, padding_idx=padding_idx)  # first: its rows are the vocabulary's
        self.up = nn.Linear(emb_dim, width)

    @property
    def weight(self) -> torch.Tensor:
        """The table (what callers that read an input embedding's `weight` for its rows or dtype expect)."""
        return self.table.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.up(self.table(input_ids))

    @torch.no_grad()
    def init_from(self, matrix: torch.Tensor) -> None:
        """Start as the PCA of a full-width table: exact when emb_dim reaches its rank."""
        projected, components, mean = pca_factors(matrix, self.table.embedding_dim)
        self.table.weight.zero_()
        self.table.weight[:, : projected.shape[1]] = projected.to(self.table.weight.dtype)
        self.up.weight.zero_()
        self.up.weight[:, : components.shape[0]] = components.T.to(self.up.weight.dtype)
        self.up.bias.copy_(mean.to(self.up.bias.dtype))


@torch.no_grad()
def piece_vectors(encoder: nn.Module, teacher_ids: np.ndarray, cls_id: int, sep_id: int, batch_size: int = 512) -> torch.Tensor:
    """Each piece's output vector, float32 (len(teacher_ids), width): `[CLS] piece [SEP]` through the encoder, read at the piece."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    rows = []
    for start in range(0, len(teacher_ids), batch_size):
        ids = torch.as_tensor(teacher_ids[start : start + batch_size], dtype=torch.long)
        batch = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1).to(device)
        hidden = encoder(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
        rows.append(hidden[:, 1].float().cpu())
    encoder.train(was_training)
    return torch.cat(rows)


def sif_weights(counts: np.ndarray, coefficient: float) -> torch.Tensor:
    """SIF weights a / (a + p(piece)) from the pieces' counts in the transfer set: frequent pieces weigh less."""
    probability = counts / max(int(counts.sum()), 1)
    return torch.as_tensor(coefficient / (coefficient + probability), dtype=torch.float32)


@dataclass
class EmbeddingSource:
    """What a student's first embedding table can start from: the teacher's input table, or output
    vectors of the fine-tuned teacher's encoder (`teacher`) or of the encoder before fine-tuning (`base`)."""

    teacher: nn.Module  # a Hugging Face model with a `base_model`
    cls_id: int | None
    sep_id: int | None
    load_base: Callable[[], nn.Module] | None = None  # the pre-trained encoder, loaded only when asked for
    cache: Path | None = None  # a folder for computed output vectors
    identity: str = ""  # the teacher's fingerprint: the cache's key with the vocabulary

    @classmethod
    def of(cls, fine_tuned, tokenizer, name: str, cache: Path) -> EmbeddingSource:
        """The source for a run's teacher (a `teacher.store.Teacher`): `tokenizer` (its own) gives the piece's frame, `name`
        the pre-trained encoder."""
        teacher = fine_tuned.model

        def load_base() -> nn.Module:
            from transformers import AutoModel

            from xdistil.teacher.models import resolve_teacher

            return AutoModel.from_pretrained(resolve_teacher(name)).to(next(teacher.parameters()).device)

        cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        return cls(teacher, cls_id, sep_id, load_base, cache, fine_tuned.fingerprint)

    def input_table(self, teacher_ids: np.ndarray) -> torch.Tensor:
        return self.teacher.get_input_embeddings().weight.detach().float().cpu()[torch.as_tensor(teacher_ids)]

    def output_vectors(self, teacher_ids: np.ndarray, which: str) -> torch.Tensor:
        """Output vectors of `which` encoder ('teacher' or 'base') for these pieces, read from the cache when computed before."""
        key = hashlib.sha256(f"{which}:{self.identity}:".encode() + np.asarray(teacher_ids, dtype=np.int64).tobytes()).hexdigest()[:16]
        path = self.cache / f"piece-vectors-{which}-{key}.safetensors" if self.cache else None
        saved = read_safetensors(path) if path else None
        if saved is not None:
            return saved[0]["vectors"]
        if which == "base" and self.load_base is None:
            raise ValueError("no pre-trained encoder to take output vectors from")
        if self.cls_id is None or self.sep_id is None:
            raise ValueError("output vectors need the tokenizer's first and last special tokens ([CLS] and [SEP])")
        encoder = self.teacher.base_model if which == "teacher" else self.load_base()
        encoder_name = "fine-tuned teacher" if which == "teacher" else "pre-trained encoder"
        log(f"student embeddings: {len(teacher_ids):,} word pieces through the {encoder_name}, one at a time")
        vectors = piece_vectors(encoder, np.asarray(teacher_ids), self.cls_id, self.sep_id)
        if path:
            from safetensors.torch import save_file

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: save_file({"vectors": vectors.contiguous()}, str(tmp)))
        return vectors

