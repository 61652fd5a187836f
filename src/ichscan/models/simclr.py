"""SimCLR (Chen et al. 2020): self-supervised pre-training of a backbone on unlabelled slices.

Two random augmentations of each slice are embedded by the backbone, mapped by a small projection
head, and the NT-Xent loss pulls the two views of a slice together and pushes other slices away. The
projection head is thrown away afterwards; the backbone initialises supervised training (seed 002,
small-label setting).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ichscan.models.backbones import embed, embedding_dim

__all__ = ["ProjectionHead", "SimCLRModel", "nt_xent_loss"]


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """Normalised temperature-scaled cross-entropy of two views ``z1, z2`` ``(N, P)``.

    With the ``2N`` vectors ``u = normalise([z1; z2])``, cosine similarities ``s_ij = u_i · u_j`` and
    ``j(i)`` the other view of ``i``::

        ℓ_i = −log( exp(s_{i j(i)} / τ) / Σ_{k ≠ i} exp(s_ik / τ) ),     L = (1 / 2N) Σ_i ℓ_i

    i.e. a ``2N − 1``-way softmax classification of the positive pair among all other vectors of the
    batch. Computed as one cross-entropy over the similarity matrix with its diagonal masked out.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"views must be two (N, P) tensors of one shape, got {z1.shape} and {z2.shape}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    similarity = (u @ u.T) / temperature
    similarity = similarity.masked_fill(
        torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf")
    )
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(u.device)
    return F.cross_entropy(similarity, positive)


class ProjectionHead(nn.Module):
    """SimCLR projection ``g(h) = W₂ · ReLU(BN(W₁ · h))`` from the embedding to the loss space."""

    def __init__(self, in_features: int, hidden: int = 512, out_features: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_features),
        )

    def forward(self, embedding: Tensor) -> Tensor:
        """Projections ``(N, out_features)`` of embeddings ``(N, in_features)``."""
        return self.net(embedding)


class SimCLRModel(nn.Module):
    """A timm backbone (its pooled embedding) followed by a projection head."""

    def __init__(self, backbone: nn.Module, hidden: int = 512, out_features: int = 128) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = ProjectionHead(embedding_dim(backbone), hidden, out_features)

    def forward(self, images: Tensor) -> Tensor:
        """Projections ``(N, out_features)`` of images ``(N, C, H, W)``."""
        return self.projection(embed(self.backbone, images))
