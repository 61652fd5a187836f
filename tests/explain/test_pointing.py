"""The pointing game on hand-made heatmaps and bit-coded masks."""

from __future__ import annotations

import numpy as np
import pytest

from ichscan.explain import label_masks, pointing_game, pointing_game_by_label
from ichscan.labels import LABELS


def test_pointing_game_hits_and_misses() -> None:
    heatmaps = np.zeros((3, 5, 5))
    heatmaps[0, 1, 1] = 1.0  # inside
    heatmaps[1, 4, 4] = 1.0  # outside
    heatmaps[2, 2, 4] = 1.0  # one pixel right of the mask
    masks = np.zeros((3, 5, 5), dtype=bool)
    masks[:, 1:3, 1:4] = True
    assert pointing_game(heatmaps, masks).tolist() == [True, False, False]
    assert pointing_game(heatmaps, masks, tolerance=1).tolist() == [True, False, True]


def test_label_masks_decode_bits() -> None:
    bits = np.array([[[0, 1, 2, 17]]], dtype=np.uint8)  # 17 = epidural (bit 0) + subdural (bit 4)
    masks = label_masks(bits)
    assert masks.shape == (1, 6, 1, 4)
    assert masks[0, :, 0, 0].tolist() == [False] * 6
    assert masks[0, :, 0, 1].tolist() == [True, True, False, False, False, False]
    assert masks[0, :, 0, 2].tolist() == [True, False, True, False, False, False]
    assert masks[0, :, 0, 3].tolist() == [True, True, False, False, False, True]


def test_pointing_game_by_label_counts_true_positives_only() -> None:
    n = 4
    bits = np.zeros((n, 4, 4), dtype=np.uint8)
    bits[:, 0, 0] = 1 << 4  # subdural lesion at (0, 0)
    heatmaps = np.zeros((n, 6, 4, 4))
    heatmaps[:, :, 3, 3] = 1.0  # miss by default
    heatmaps[0, 5, 0, 0] = heatmaps[0, 0, 0, 0] = 2.0  # slice 0 hits for subdural and any
    heatmaps[2, 5, 0, 0] = 2.0  # slice 2 would hit but is a false negative
    y_true = np.zeros((n, 6))
    y_true[:, [0, 5]] = 1
    y_prob = np.full((n, 6), 0.9)
    y_prob[2] = 0.1
    table = pointing_game_by_label(heatmaps, bits, y_true, y_prob).set_index("label")
    assert list(table.index) == list(LABELS)
    assert table.loc["subdural", "true_positives"] == 3
    assert table.loc["subdural", "hits"] == 1
    assert table.loc["subdural", "hit_rate"] == pytest.approx(1 / 3)
    assert table.loc["any", "hits"] == 1
    assert np.isnan(table.loc["epidural", "hit_rate"])


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="must both be"):
        pointing_game(np.zeros((2, 3, 3)), np.zeros((2, 3, 4), dtype=bool))


def test_empty_selection_and_mask_geometry() -> None:
    from ichscan.explain.run import mask_to_input

    assert pointing_game(np.zeros((0, 3, 3)), np.zeros((0, 3, 3), dtype=bool)).shape == (0,)
    mask = np.zeros((1, 8, 8), dtype=np.uint8)
    mask[0, 2:4, 4:6] = 16  # subdural bit, in DICOM geometry
    # The cache cropped rows 2..6 and columns 4..8 (4 × 4) and kept that size; the model sees 8 × 8.
    resized = mask_to_input(mask, (2, 6, 4, 8), cached=(4, 4), size=8)
    expected = np.zeros((1, 8, 8), dtype=np.uint8)
    expected[0, 0:4, 0:4] = 16
    np.testing.assert_array_equal(resized, expected)
    np.testing.assert_array_equal(mask_to_input(mask, (2, 6, 4, 8), cached=(4, 4), size=0), expected[:, ::2, ::2])
    # A box reaching past the matrix (as the cache's square head crop may): outside is no lesion.
    beyond = mask_to_input(mask, (-2, 6, 2, 10), cached=(8, 8), size=0)
    expected = np.zeros((1, 8, 8), dtype=np.uint8)
    expected[0, 4:6, 2:4] = 16
    np.testing.assert_array_equal(beyond, expected)
