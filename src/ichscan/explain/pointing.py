"""The pointing game (Zhang et al. 2016): does a heatmap's peak fall inside the lesion?

For each true-positive slice of a class (label 1 and predicted probability ≥ threshold) the hit is
``mask[argmax heatmap]``; the score of a class is hits / true positives. Phantom masks are bit-coded
(bit ``k − 1`` set ⇔ subtype ``k`` of LABELS present, ``k = 1 … 5``); ``any`` uses the union.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from ichscan.labels import LABELS

__all__ = ["label_masks", "pointing_game", "pointing_game_by_label"]


def pointing_game(heatmaps: np.ndarray, masks: np.ndarray, tolerance: int = 0) -> np.ndarray:
    """Hits ``(N,)`` bool: whether each heatmap ``(N, H, W)``'s maximum lies in its mask ``(N, H, W)``.

    ``tolerance`` > 0 counts a peak within that many pixels (city-block) of the mask as a hit. Ties
    go to the first maximum in row-major order.
    """
    if heatmaps.shape != masks.shape or heatmaps.ndim != 3:
        raise ValueError(f"heatmaps {heatmaps.shape} and masks {masks.shape} must both be (N, H, W)")
    region = masks.astype(bool)
    if tolerance > 0:
        structure = ndimage.generate_binary_structure(3, 1)
        structure[0] = structure[2] = False  # grow within each slice only
        region = ndimage.binary_dilation(region, structure=structure, iterations=tolerance)
    if len(heatmaps) == 0:
        return np.zeros(0, dtype=bool)
    peaks = heatmaps.reshape(len(heatmaps), -1).argmax(axis=1)
    return region.reshape(len(region), -1)[np.arange(len(region)), peaks]


def label_masks(mask_bits: np.ndarray) -> np.ndarray:
    """Bit-coded masks ``(N, H, W)`` uint8 → boolean masks ``(N, 6, H, W)`` in LABELS order."""
    bits = np.asarray(mask_bits, dtype=np.uint8)
    subtypes = (bits[:, None] >> np.arange(len(LABELS) - 1, dtype=np.uint8)[None, :, None, None]) & 1
    return np.concatenate([(bits != 0)[:, None], subtypes.astype(bool)], axis=1)


def pointing_game_by_label(
    heatmaps: np.ndarray,
    mask_bits: np.ndarray,
    y_true: np.ndarray,
    y_prob: np.ndarray,
    threshold: float = 0.5,
    tolerance: int = 0,
) -> pd.DataFrame:
    """Pointing game per label over true-positive slices → DataFrame ``label, true_positives, hits, hit_rate``.

    ``heatmaps`` ``(N, 6, H, W)`` (one map per label), ``mask_bits`` ``(N, H, W)``, ``y_true`` and
    ``y_prob`` ``(N, 6)``. ``hit_rate`` is NaN for a label without true positives.
    """
    masks = label_masks(mask_bits)
    if heatmaps.shape != masks.shape:
        raise ValueError(f"heatmaps {heatmaps.shape} must be (N, 6, H, W) matching masks {masks.shape}")
    true_positive = (np.asarray(y_true) == 1) & (np.asarray(y_prob) >= threshold)
    rows = []
    for column, label in enumerate(LABELS):
        selected = true_positive[:, column]
        hits = pointing_game(heatmaps[selected, column], masks[selected, column], tolerance)
        count = int(selected.sum())
        rows.append(
            {
                "label": label,
                "true_positives": count,
                "hits": int(hits.sum()),
                "hit_rate": float(hits.mean()) if count else float("nan"),
            }
        )
    return pd.DataFrame(rows)
