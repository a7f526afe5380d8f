"""Student embeddings from the teacher's: keep the student's rows, reduce them by PCA to emb_dim."""

from __future__ import annotations

import torch


def pca_compress(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """Project rows onto their top `dim` principal components, scaled to unit overall std.

    The unit scale keeps the LSTM's input in the range its default initialisation expects,
    whatever the teacher's embedding scale; relative variance across components is preserved.
    A matrix with fewer rows (a tiny vocabulary) or columns than `dim` has fewer components: the
    remaining columns start at zero and are learned like the rest.
    """
    data = matrix.detach().to(torch.float64)
    components = min(dim, *data.shape)
    centered = data - data.mean(dim=0, keepdim=True)
    _, _, v_t = torch.linalg.svd(centered, full_matrices=False)
    projected = centered @ v_t[:components].T
    projected = projected / projected.std().clamp(min=1e-12)
    out = torch.zeros(data.shape[0], dim, dtype=torch.float64)
    out[:, :components] = projected
    return out.to(torch.float32)
