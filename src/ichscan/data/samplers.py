"""Samplers against class imbalance (≈86% of RSNA slices are negative, epidural ≈0.4%).

Every weighted sampler is a `torch.utils.data.WeightedRandomSampler` (draws with replacement,
``P(draw row i) = w_i / Σ_j w_j`` independently per draw) with weights chosen as follows:

- ``shuffle``: a plain permutation per epoch (`RandomSampler`, no weights).
- ``oversample`` (seed 003's epidural ×8): ``w_i = max_{k: y_ik = 1} m_k`` (1 when no listed class
  is positive; key ``"negative"`` sets the multiplier of all-negative rows). The default epoch
  has ``Σ_i w_i`` draws, so row i is drawn ``m_i`` times per epoch in expectation — as if its
  copies were concatenated ``m_i`` times, but re-drawn each epoch.
- ``posneg`` (seed 001): each draw is a positive row (any label 1) with probability ``p``:
  ``w_i = p / n_pos`` for positives, ``(1 − p) / n_neg`` for negatives. (Seed 001's acceptance
  probabilities a_pos, a_neg correspond to ``p = a_pos n_pos / (a_pos n_pos + a_neg n_neg)``.)
- ``balanced``: each draw picks one of the G non-empty groups {each subtype, negatives}
  uniformly, then a member uniformly: ``w_i = Σ_{g ∋ i} 1 / (G n_g)``. Each group is picked
  ``N / G`` times per epoch in expectation; a slice with several subtypes belongs to several
  groups, so the share of draws positive for a subtype is ≥ 1/G. A row in no group (``any``
  without a subtype) gets the mean weight of the others, so it is still drawn.
Unlabelled labels (NaN) count as negative. The epoch length (`num_samples`) defaults to the
number of rows except for ``oversample``. Draws are reproducible from `seed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, get_args

import numpy as np
import pandas as pd
import torch
from torch.utils.data import RandomSampler, Sampler, WeightedRandomSampler

from ichscan.labels import LABELS, N_LABELS, SUBTYPES

SamplerName = Literal["shuffle", "oversample", "posneg", "balanced"]
SAMPLERS: Final[tuple[str, ...]] = get_args(SamplerName)
NEGATIVE: Final[str] = "negative"


def _positives(labels: np.ndarray | pd.DataFrame) -> np.ndarray:
    """``(n, 6)`` bool: label present and equal to 1 (NaN → False)."""
    if isinstance(labels, pd.DataFrame):
        missing = [label for label in LABELS if label not in labels.columns]
        if missing:
            raise ValueError(f"label table lacks column(s) {missing}")
        labels = labels[list(LABELS)].to_numpy(dtype=np.float64, na_value=np.nan)
    array = np.asarray(labels, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != N_LABELS:
        raise ValueError(f"labels must have shape (n, {N_LABELS}), got {array.shape}")
    return np.nan_to_num(array, nan=0.0) >= 0.5


def oversample_weights(labels: np.ndarray | pd.DataFrame, multipliers: Mapping[str, float]
                       ) -> np.ndarray:
    """``w_i = max over the positive classes of row i of their multiplier`` (default 1)."""
    unknown = set(multipliers) - set(LABELS) - {NEGATIVE}
    if unknown:
        raise ValueError(f"multipliers for unknown class(es) {sorted(unknown)}: use "
                         f"{', '.join((*LABELS, NEGATIVE))}")
    if any(value < 0 for value in multipliers.values()):
        raise ValueError("multipliers must be ≥ 0")
    positive = _positives(labels)
    per_class = np.array([float(multipliers.get(label, 1.0)) for label in LABELS])
    weights = np.where(positive, per_class, -np.inf).max(axis=1)
    negative = ~positive.any(axis=1)
    weights[negative] = float(multipliers.get(NEGATIVE, 1.0))
    return weights


def posneg_weights(labels: np.ndarray | pd.DataFrame, positive_probability: float) -> np.ndarray:
    """Weights drawing a positive row (any label 1) with probability `positive_probability`."""
    if not 0.0 <= positive_probability <= 1.0:
        raise ValueError(f"positive_probability must lie in [0, 1], got {positive_probability}")
    positive = _positives(labels).any(axis=1)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if (n_pos == 0 and positive_probability > 0) or (n_neg == 0 and positive_probability < 1):
        raise ValueError(f"cannot draw positives with probability {positive_probability}: "
                         f"{n_pos} positive and {n_neg} negative rows")
    return np.where(positive, positive_probability / max(n_pos, 1),
                    (1.0 - positive_probability) / max(n_neg, 1))


def balanced_weights(labels: np.ndarray | pd.DataFrame) -> np.ndarray:
    """``w_i = Σ_{g ∋ i} 1 / (G n_g)`` over the non-empty groups (each subtype, negatives)."""
    positive = _positives(labels)
    subtype_members = positive[:, [LABELS.index(s) for s in SUBTYPES]]
    negative = ~positive.any(axis=1)
    members = np.column_stack([subtype_members, negative])
    sizes = members.sum(axis=0)
    present = sizes > 0
    if not present.any():
        raise ValueError("no rows to sample")
    per_group = np.where(present, 1.0 / (present.sum() * np.maximum(sizes, 1)), 0.0)
    weights = members @ per_group
    # Rows labelled only `any` (no subtype, not negative) still get the mean weight: never starved.
    orphan = weights == 0
    if orphan.any():
        weights[orphan] = weights[~orphan].mean() if (~orphan).any() else 1.0
    return weights


def create_sampler(
    name: SamplerName,
    labels: np.ndarray | pd.DataFrame,
    *,
    num_samples: int | None = None,
    seed: int = 0,
    multipliers: Mapping[str, float] | None = None,
    positive_probability: float = 0.5,
) -> Sampler[int]:
    """A sampler over the rows of `labels` (``(n, 6)`` in LABELS order or a table with the label
    columns); see the module docstring for each strategy's maths.

    `multipliers` (``oversample``), e.g. ``{"epidural": 8}``; `positive_probability` (``posneg``);
    `num_samples`: draws per epoch.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}: use one of {', '.join(SAMPLERS)}")
    if num_samples is not None and num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    n = len(labels)
    generator = torch.Generator().manual_seed(seed)
    if name == "shuffle":
        _positives(labels)
        return RandomSampler(range(n), num_samples=num_samples, generator=generator)
    if name == "oversample":
        weights = oversample_weights(labels, multipliers or {})
        default_length = int(round(weights.sum()))
    elif name == "posneg":
        weights = posneg_weights(labels, positive_probability)
        default_length = n
    else:
        weights = balanced_weights(labels)
        default_length = n
    if not weights.sum() > 0:
        raise ValueError(f"sampler {name!r}: all weights are zero")
    return WeightedRandomSampler(
        torch.as_tensor(weights, dtype=torch.float64),
        num_samples=num_samples or max(default_length, 1),
        replacement=True,
        generator=generator,
    )
