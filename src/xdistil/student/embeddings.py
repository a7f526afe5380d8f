"""Student embeddings from the teacher's: keep the student's rows, reduce them by PCA to emb_dim."""

from __future__ import annotations

import torch


def pca_compress(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """Project rows onto their top `dim` principal components, scaled to unit overall std.

    The unit scale keeps the LSTM's input in the range its default initialisation expects,
    whatever the teacher's embedding scale; relative variance across components is preserved.
    """
    if dim > min(matrix.shape):
        raise ValueError(f"cannot reduce a {tuple(matrix.shape)} matrix to {dim} dimensions")
    data = matrix.detach().to(torch.float64)
    centered = data - data.mean(dim=0, keepdim=True)
    _, _, v_t = torch.linalg.svd(centered, full_matrices=False)
    projected = centered @ v_t[:dim].T
    return (projected / projected.std()).to(torch.float32)
