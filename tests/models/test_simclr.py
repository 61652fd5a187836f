"""SimCLR pieces: NT-Xent against a naive loop, projection head shapes, the backbone+head model."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from ichscan.models.simclr import ProjectionHead, SimCLRModel, nt_xent_loss

torch.set_num_threads(1)


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """The SimCLR paper's definition, one anchor at a time with Python loops."""
    views = [v / v.norm() for v in torch.cat([z1, z2])]
    n = z1.shape[0]
    total = 0.0
    for i, anchor in enumerate(views):
        positive = views[(i + n) % (2 * n)]
        numerator = math.exp(float(anchor @ positive) / temperature)
        denominator = sum(
            math.exp(float(anchor @ other) / temperature) for k, other in enumerate(views) if k != i
        )
        total += -math.log(numerator / denominator)
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_nt_xent_matches_naive_definition(temperature: float) -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(5, 3), torch.randn(5, 3)
    assert nt_xent_loss(z1, z2, temperature).item() == pytest.approx(
        naive_nt_xent(z1, z2, temperature), rel=1e-5
    )


def test_nt_xent_by_hand_for_two_orthogonal_pairs() -> None:
    # Views identical within a pair, pairs orthogonal: s = 1 for the positive, 0 for the two others.
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    expected = -math.log(math.e / (math.e + 2.0))  # τ = 1
    assert nt_xent_loss(z, z, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # Aligned views give a lower loss than shuffled ones.
    assert nt_xent_loss(z, z, 0.1) < nt_xent_loss(z, z.flip(0), 0.1)


def test_nt_xent_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(2, 3), 0.0)
    with pytest.raises(ValueError, match="views"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(3, 3))


def test_simclr_model_projects_pooled_embedding() -> None:
    torch.manual_seed(0)
    backbone = timm.create_model("resnet18", num_classes=6, in_chans=3)
    model = SimCLRModel(backbone, hidden=16, out_features=8)
    images = torch.randn(4, 3, 32, 32)
    out = model(images)
    assert out.shape == (4, 8)
    loss = nt_xent_loss(out, model(images.flip(-1)))
    loss.backward()
    assert backbone.conv1.weight.grad is not None and backbone.conv1.weight.grad.abs().sum() > 0
    assert backbone.fc.weight.grad is None  # the classifier is not part of SimCLR
    assert isinstance(model.projection, ProjectionHead)
