"""Multi-label losses on logits ``(B, C)`` and 0/1 targets with NaN where a label is unknown.

Every loss here is an element-wise loss ℓ_ic(x, y) reduced by the same masked, class-weighted mean

    L = Σ_ic m_ic w_c ℓ_ic / Σ_ic m_ic w_c,    m_ic = 0 where y_ic is NaN, else 1,

so partially labelled batches work, class weights change the balance between labels but not the
scale of the loss, and with w = (2, 1, 1, 1, 1, 1) the loss of fully labelled data is the RSNA
metric (`ichscan.metrics.weighted_log_loss`). A batch without any label gives a zero loss that
still carries the graph (zero gradients). `create_loss(name, **kw)` builds one by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from ichscan.labels import LABEL_WEIGHTS

__all__ = [
    "LOSSES",
    "AsymmetricLoss",
    "BCELoss",
    "FocalLoss",
    "MaskedMultilabelLoss",
    "RSNALoss",
    "WeightedBCELoss",
    "create_loss",
    "needs_label_counts",
    "pos_weight_from_counts",
]

FloatSequence = Sequence[float] | np.ndarray | Tensor


def _vector(values: FloatSequence | None, name: str) -> Tensor | None:
    """A float32 1-D tensor of finite values, or None."""
    if values is None:
        return None
    vector = torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32).flatten()
    if vector.numel() == 0 or not torch.isfinite(vector).all():
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, got {values!r}")
    return vector


class MaskedMultilabelLoss(nn.Module):
    """Base class: the masked, class-weighted mean of an element-wise loss (see the module docstring).

    Subclasses implement `elementwise(logits, targets) -> (B, C)` on targets with NaN replaced by 0.
    """

    def __init__(self, class_weights: FloatSequence | None = None) -> None:
        super().__init__()
        weights = _vector(class_weights, "class_weights")
        if weights is not None and (weights < 0).any():
            raise ValueError(f"class_weights must be >= 0, got {weights.tolist()}")
        self.register_buffer("class_weights", weights, persistent=False)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Per-(sample, class) loss ℓ_ic, shape ``(B, C)``."""
        raise TypeError(f"{type(self).__name__} must define elementwise()")

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Scalar loss of logits ``(B, C)`` against targets ``(B, C)`` in [0, 1] or NaN."""
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
        targets = targets.to(logits.dtype)
        known = ~torch.isnan(targets)
        loss = self.elementwise(logits, torch.where(known, targets, torch.zeros_like(targets)))
        weight = known.to(logits.dtype)
        if self.class_weights is not None:
            if self.class_weights.numel() != logits.shape[1]:
                raise ValueError(
                    f"{self.class_weights.numel()} class weights for {logits.shape[1]} classes"
                )
            weight = weight * self.class_weights.to(logits.dtype)
        # where() rather than multiplication keeps NaN/inf of masked entries out of the sum and grad;
        # with no labelled entry the numerator is exactly 0, so the clamp only avoids 0/0.
        weighted = torch.where(weight > 0, loss * weight, torch.zeros_like(loss)).sum()
        return weighted / weight.sum().clamp_min(torch.finfo(logits.dtype).tiny)


class BCELoss(MaskedMultilabelLoss):
    """Binary cross-entropy on logits: ℓ = −[y log σ(x) + (1 − y) log(1 − σ(x))].

    Computed as ``binary_cross_entropy_with_logits`` (log-sum-exp stable). Without class weights and
    NaN labels it equals ``torch.nn.BCEWithLogitsLoss()``.
    """

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


class RSNALoss(BCELoss):
    """BCE with the competition weighting: `any` counts twice, each subtype once.

    L = Σ_i (2 ℓ_i,any + Σ_subtypes ℓ_ic) / (7 n): the RSNA weighted log loss of σ(x), up to its
    probability clipping (1e-7).
    """

    def __init__(self, class_weights: FloatSequence | None = LABEL_WEIGHTS) -> None:
        super().__init__(class_weights=class_weights)


def pos_weight_from_counts(positives: FloatSequence, negatives: FloatSequence) -> Tensor:
    """Per-class positive weight ``n_c / p_c`` (PyTorch's convention for ``pos_weight``).

    Seed 000 defines W_c = p_c / n_c, the positive/negative ratio. Weighting each class's negative
    terms by W_c, or equivalently (up to the per-class factor W_c) its positive terms by
    1 / W_c = n_c / p_c, makes positives and negatives of every class contribute equally in
    expectation — the imbalance correction the seed describes. A class without positives gets 1.
    """
    pos = _vector(positives, "positives")
    neg = _vector(negatives, "negatives")
    assert pos is not None and neg is not None
    if pos.shape != neg.shape:
        raise ValueError(f"positives ({pos.numel()}) and negatives ({neg.numel()}) differ in length")
    if (pos < 0).any() or (neg < 0).any():
        raise ValueError("label counts must be >= 0")
    return torch.where(pos > 0, neg / pos.clamp_min(1.0), torch.ones_like(pos))


class WeightedBCELoss(MaskedMultilabelLoss):
    """BCE with per-class positive weights (seed 000): ℓ = −[π_c y log σ(x) + (1 − y) log(1 − σ(x))].

    π_c = `pos_weight`, or ``n_c / p_c`` from the training fold's `positives`/`negatives` counts
    (`pos_weight_from_counts`), optionally capped at `max_pos_weight` (epidural's n/p ≈ 240 on
    RSNA). `class_weights` w_c additionally weight whole classes in the masked mean (e.g.
    ``[2, 1, 1, 1, 1, 1]`` for the competition weighting).
    """

    def __init__(
        self,
        pos_weight: FloatSequence | None = None,
        positives: FloatSequence | None = None,
        negatives: FloatSequence | None = None,
        class_weights: FloatSequence | None = None,
        max_pos_weight: float | None = None,
    ) -> None:
        super().__init__(class_weights=class_weights)
        if pos_weight is not None and (positives is not None or negatives is not None):
            raise ValueError("weighted_bce: give pos_weight or positives/negatives counts, not both")
        if pos_weight is not None:
            weights = _vector(pos_weight, "pos_weight")
        elif positives is not None and negatives is not None:
            weights = pos_weight_from_counts(positives, negatives)
        else:
            raise ValueError("weighted_bce needs pos_weight or both positives and negatives (label counts)")
        assert weights is not None
        if (weights <= 0).any():
            raise ValueError(f"pos_weight must be > 0, got {weights.tolist()}")
        if max_pos_weight is not None:
            if max_pos_weight <= 0:
                raise ValueError(f"max_pos_weight must be > 0, got {max_pos_weight}")
            weights = weights.clamp_max(max_pos_weight)
        self.register_buffer("pos_weight", weights, persistent=False)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.pos_weight.numel() != logits.shape[1]:
            raise ValueError(f"{self.pos_weight.numel()} positive weights for {logits.shape[1]} classes")
        return F.binary_cross_entropy_with_logits(
            logits, targets, pos_weight=self.pos_weight.to(logits.dtype), reduction="none"
        )


class FocalLoss(MaskedMultilabelLoss):
    """Focal loss (Lin et al. 2017), element-wise with p = σ(x):

    ℓ = −α y (1 − p)^γ log p − (1 − α)(1 − y) p^γ log(1 − p);

    ``alpha=None`` drops the α factors (then γ = 0 is plain BCE). torchvision's
    ``sigmoid_focal_loss`` computes it.
    """

    def __init__(
        self, gamma: float = 2.0, alpha: float | None = 0.25, class_weights: FloatSequence | None = None
    ) -> None:
        super().__init__(class_weights=class_weights)
        if gamma < 0:
            raise ValueError(f"focal gamma must be >= 0, got {gamma}")
        if alpha is not None and not 0.0 <= alpha <= 1.0:
            raise ValueError(f"focal alpha must be in [0, 1] or None, got {alpha}")
        self.gamma = float(gamma)
        self.alpha = alpha

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        alpha = -1.0 if self.alpha is None else self.alpha  # torchvision: alpha < 0 disables weighting
        return sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=self.gamma, reduction="none")


class AsymmetricLoss(MaskedMultilabelLoss):
    """Asymmetric loss (Ridnik et al. 2021, ASL; seed 002), element-wise with p = σ(x):

    ℓ = −y (1 − p)^γ₊ log p − (1 − y) p_m^γ₋ log(1 − p_m),   p_m = max(p − m, 0).

    γ₋ > γ₊ down-weights the many easy negatives; the probability margin m ("clip") discards
    negatives the model already scores below m. Defaults are the paper's multi-label setting
    (γ₊ = 0, γ₋ = 4, m = 0.05). With γ₊ = γ₋ = 0 and m = 0 it is BCE. The focusing factors keep
    their gradient (as in the paper's formula).
    """

    def __init__(
        self,
        gamma_pos: float = 0.0,
        gamma_neg: float = 4.0,
        clip: float = 0.05,
        class_weights: FloatSequence | None = None,
    ) -> None:
        super().__init__(class_weights=class_weights)
        if gamma_pos < 0 or gamma_neg < 0:
            raise ValueError(f"ASL gammas must be >= 0, got gamma_pos={gamma_pos}, gamma_neg={gamma_neg}")
        if not 0.0 <= clip < 1.0:
            raise ValueError(f"ASL clip must be in [0, 1), got {clip}")
        self.gamma_pos = float(gamma_pos)
        self.gamma_neg = float(gamma_neg)
        self.clip = float(clip)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        prob = torch.sigmoid(logits)
        log_p = F.logsigmoid(logits)
        if self.clip > 0:
            # 1 − p_m = min(1 − p + m, 1) ≥ m > 0, so the log is finite.
            shifted_neg = (torch.sigmoid(-logits) + self.clip).clamp(max=1.0)
            log_neg = torch.log(shifted_neg)
            prob_neg = (prob - self.clip).clamp(min=0.0)
        else:
            log_neg = F.logsigmoid(-logits)
            prob_neg = prob
        loss_pos = targets * log_p
        loss_neg = (1.0 - targets) * log_neg
        if self.gamma_pos > 0:
            loss_pos = loss_pos * (1.0 - prob).pow(self.gamma_pos)
        if self.gamma_neg > 0:
            loss_neg = loss_neg * prob_neg.pow(self.gamma_neg)
        return -(loss_pos + loss_neg)


LOSSES: Final[Mapping[str, Callable[..., MaskedMultilabelLoss]]] = {
    "bce": BCELoss,
    "weighted_bce": WeightedBCELoss,
    "rsna": RSNALoss,
    "focal": FocalLoss,
    "asymmetric": AsymmetricLoss,
}


def create_loss(name: str, **kwargs: Any) -> MaskedMultilabelLoss:
    """The loss registered as `name` (`LOSSES`) built with `kwargs`; ValueError naming bad arguments.

    ``create_loss("weighted_bce", positives=[...], negatives=[...])``,
    ``create_loss("asymmetric", gamma_neg=4, clip=0.05)``, ``create_loss("rsna")``.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    factory = LOSSES[name]
    accepted = set(inspect.signature(factory).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"loss {name!r} has no argument(s) {unknown}; it takes {sorted(accepted)}")
    return factory(**kwargs)


def needs_label_counts(name: str, params: Mapping[str, Any]) -> bool:
    """Whether `create_loss(name, **params)` still needs the training fold's label counts
    (``positives``/``negatives``) — true for ``weighted_bce`` without an explicit ``pos_weight``."""
    return name == "weighted_bce" and "pos_weight" not in params and "positives" not in params
