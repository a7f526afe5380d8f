"""Student embeddings from the teacher's: keep the student's rows, reduce them by PCA to emb_dim."""

from __future__ import annotations

import torch
from torch import nn


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
