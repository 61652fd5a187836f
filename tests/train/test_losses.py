"""Losses against torch/torchvision/ichscan.metrics references and values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from ichscan.metrics import weighted_log_loss
from ichscan.train.losses import (
    AsymmetricLoss,
    create_loss,
    needs_label_counts,
    pos_weight_from_counts,
)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 6, generator=generator, dtype=torch.float64) * 2
    targets = (torch.rand(16, 6, generator=generator) < 0.3).to(torch.float64)
    return logits, targets


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_bce_equals_torch_bce_with_logits(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, targets = batch
    expected = torch.nn.BCEWithLogitsLoss()(logits, targets)
    assert torch.allclose(create_loss("bce")(logits, targets), expected, atol=1e-12)


def test_nan_labels_are_masked_out(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, targets = batch
    partial = targets.clone()
    partial[0, :] = float("nan")
    partial[3, 2] = float("nan")
    known = ~torch.isnan(partial)
    expected = F.binary_cross_entropy_with_logits(logits[known], partial[known])
    logits = logits.clone().requires_grad_(True)
    loss = create_loss("bce")(logits, partial)
    assert torch.allclose(loss, expected, atol=1e-12)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert (logits.grad[0] == 0).all() and logits.grad[3, 2] == 0


def test_fully_unlabelled_batch_gives_zero_loss_and_zero_gradient() -> None:
    logits = torch.randn(4, 6, requires_grad=True)
    loss = create_loss("rsna")(logits, torch.full((4, 6), float("nan")))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad is not None and (logits.grad == 0).all()


def test_rsna_loss_is_the_competition_metric(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, targets = batch
    loss = create_loss("rsna")(logits, targets).item()
    probs = torch.sigmoid(logits).numpy()
    assert loss == pytest.approx(weighted_log_loss(targets.numpy(), probs), abs=1e-9)
    # The same by hand: (2 ℓ_any + Σ ℓ_subtypes) / 7, averaged over images.
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    y = targets.numpy()
    ll = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert loss == pytest.approx(np.mean((2 * ll[:, 0] + ll[:, 1:].sum(axis=1)) / 7), abs=1e-9)


def test_rsna_loss_on_one_image_by_hand() -> None:
    logits = torch.tensor([[0.0, 1.0, -1.0, 2.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 1.0]])
    terms = [
        -math.log(0.5),  # any, y=1, p=0.5 (weight 2)
        -math.log(_sig(1.0)),
        -math.log(1 - _sig(-1.0)),
        -math.log(1 - _sig(2.0)),
        -math.log(0.5),
        -math.log(0.5),
    ]
    expected = (2 * terms[0] + sum(terms[1:])) / 7
    assert create_loss("rsna")(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_bce_uses_negatives_over_positives(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, targets = batch
    positives = [10, 1, 4, 3, 4, 5]
    negatives = [90, 99, 96, 97, 96, 95]
    pos_weight = pos_weight_from_counts(positives, negatives)
    assert torch.allclose(pos_weight, torch.tensor([9.0, 99.0, 24.0, 97 / 3, 24.0, 19.0]))
    loss = create_loss("weighted_bce", positives=positives, negatives=negatives)(logits, targets)
    expected = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight.double())
    assert torch.allclose(loss, expected, atol=1e-12)


def test_weighted_bce_with_class_weights_and_cap_by_hand() -> None:
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = create_loss("weighted_bce", pos_weight=[4.0, 50.0], max_pos_weight=10.0, class_weights=[2.0, 1.0])
    # Element losses: positives weighted by π = (4, 10 after the cap); classes by w = (2, 1).
    l00 = 4.0 * -math.log(0.5)
    l01 = -math.log(1 - _sig(2.0))
    l10 = -math.log(1 - _sig(1.0))
    l11 = 10.0 * -math.log(_sig(-1.0))
    expected = (2 * l00 + l01 + 2 * l10 + l11) / (2 + 1 + 2 + 1)
    assert loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_pos_weight_of_a_class_without_positives_is_one() -> None:
    assert pos_weight_from_counts([0, 5], [10, 5]).tolist() == [1.0, 1.0]


def test_focal_with_gamma_zero_and_no_alpha_is_bce(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, targets = batch
    focal = create_loss("focal", gamma=0.0, alpha=None)(logits, targets)
    assert torch.allclose(focal, torch.nn.BCEWithLogitsLoss()(logits, targets), atol=1e-12)


def test_focal_matches_its_formula(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, targets = batch
    gamma, alpha = 2.0, 0.25
    p = torch.sigmoid(logits)
    by_hand = -(
        alpha * targets * (1 - p) ** gamma * torch.log(p)
        + (1 - alpha) * (1 - targets) * p**gamma * torch.log(1 - p)
    ).mean()
    loss = create_loss("focal", gamma=gamma, alpha=alpha)(logits, targets)
    assert torch.allclose(loss, by_hand, atol=1e-10)
    assert torch.allclose(loss, sigmoid_focal_loss(logits, targets, alpha, gamma, reduction="mean"), atol=1e-12)


def test_asymmetric_without_focusing_or_clip_is_bce(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, targets = batch
    asl = create_loss("asymmetric", gamma_pos=0.0, gamma_neg=0.0, clip=0.0)(logits, targets)
    assert torch.allclose(asl, torch.nn.BCEWithLogitsLoss()(logits, targets), atol=1e-12)


def test_asymmetric_by_hand() -> None:
    """ℓ+ = −(1−p)^γ+ log p, ℓ− = −p_m^γ− log(1 − p_m), p_m = max(p − m, 0)."""
    loss = AsymmetricLoss(gamma_pos=1.0, gamma_neg=4.0, clip=0.05)
    logits = torch.tensor([[1.0, 0.5, -3.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    p = [_sig(1.0), _sig(0.5), _sig(-3.0)]
    pos = -(1 - p[0]) * math.log(p[0])
    pm = p[1] - 0.05
    neg = -(pm**4) * math.log(1 - pm)
    easy = 0.0  # p = 0.047 < m: this negative is discarded entirely
    assert p[2] < 0.05
    assert loss(logits, targets).item() == pytest.approx((pos + neg + easy) / 3, rel=1e-6)


def test_asymmetric_gradients_are_finite_for_extreme_logits() -> None:
    logits = torch.tensor([[40.0, -40.0, 0.0], [-40.0, 40.0, 3.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    loss = create_loss("asymmetric")(logits, targets)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None and torch.isfinite(logits.grad).all()


def test_losses_learn_on_a_separable_toy_problem() -> None:
    """A few gradient steps on each loss lower the competition metric of a linear model."""
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(64, 6, generator=generator)
    targets = (features > 0.5).float()
    for name, kwargs in [("bce", {}), ("rsna", {}), ("focal", {}), ("asymmetric", {}),
                         ("weighted_bce", {"positives": [20] * 6, "negatives": [44] * 6})]:
        torch.manual_seed(0)
        layer = torch.nn.Linear(6, 6)
        criterion = create_loss(name, **kwargs)
        optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
        before = weighted_log_loss(targets.numpy(), torch.sigmoid(layer(features)).detach().numpy())
        for _ in range(30):
            optimizer.zero_grad()
            criterion(layer(features), targets).backward()
            optimizer.step()
        after = weighted_log_loss(targets.numpy(), torch.sigmoid(layer(features)).detach().numpy())
        assert after < before, name


def test_registry_errors_and_label_count_needs() -> None:
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        create_loss("hinge")
    with pytest.raises(ValueError, match="no argument"):
        create_loss("focal", gama=2)
    with pytest.raises(ValueError, match="needs pos_weight or both positives and negatives"):
        create_loss("weighted_bce")
    with pytest.raises(ValueError, match="differ in shape"):
        create_loss("bce")(torch.zeros(2, 6), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="class weights for 6 classes"):
        create_loss("bce", class_weights=[1.0, 2.0])(torch.zeros(2, 6), torch.zeros(2, 6))
    assert needs_label_counts("weighted_bce", {})
    assert not needs_label_counts("weighted_bce", {"pos_weight": [1.0] * 6})
    assert not needs_label_counts("bce", {})
