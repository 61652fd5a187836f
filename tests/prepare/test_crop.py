"""Head box, crop with air padding, and the HU-keeping resize."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from series_factory import AIR, BRAIN, HEAD_REST, SKULL, head_volume

from ichscan.prepare.crop import (
    RESIZE_CHUNK_SLICES,
    CropBox,
    crop,
    full_box,
    head_box,
    resize_hounsfield,
)


def test_head_box_keeps_the_head_and_drops_head_rest_border_and_labels() -> None:
    volume = head_volume(depth=5, rows=64, columns=80, center=(28.0, 40.0), radii=(18.0, 14.0))
    volume[:, 2:5, 2:8] = 2000  # a burned-in annotation in the corner: a separate, small blob
    box = head_box(volume)
    head_rows = np.flatnonzero((volume == SKULL).any(axis=(0, 2)))
    head_columns = np.flatnonzero((volume == SKULL).any(axis=(0, 1)))
    # the whole head is inside …
    assert box.y0 <= head_rows[0] and box.y1 > head_rows[-1]
    assert box.x0 <= head_columns[0] and box.x1 > head_columns[-1]
    # … the head rest (rows 54–56) and the annotation (rows 2–4, columns 2–7) are not
    assert box.y1 <= 54
    assert not (box.y0 <= 4 and box.x0 <= 7)
    # square and tight: the head spans 37 rows; margin is a few pixels
    assert box.height == box.width
    assert head_rows[-1] - head_rows[0] + 1 <= box.height <= 48


def test_head_box_on_a_512_matrix_uses_subsampling_and_still_covers_the_head() -> None:
    volume = head_volume(depth=2, rows=512, columns=512, center=(240.0, 256.0), radii=(170.0, 140.0),
                         head_rest_row=440)
    box = head_box(volume)
    head = np.argwhere((volume[0] > -500) & (volume[0] != HEAD_REST))
    assert box.y0 <= head[:, 0].min() and box.y1 > head[:, 0].max()
    assert box.x0 <= head[:, 1].min() and box.x1 > head[:, 1].max()
    assert box.y1 <= 440 + 8  # at most the margin reaches toward the head rest
    assert box.height == box.width <= 2 * 170 + 30


def test_empty_series_falls_back_to_the_whole_matrix() -> None:
    volume = np.full((3, 20, 30), AIR, dtype=np.int16)
    assert head_box(volume) == CropBox(-5, 25, 0, 30)


def test_full_box_pads_the_short_axis_equally() -> None:
    assert full_box(20, 30, square=True) == CropBox(-5, 25, 0, 30)
    assert full_box(30, 20, square=True) == CropBox(0, 30, -5, 25)
    assert full_box(20, 30, square=False) == CropBox(0, 20, 0, 30)


def test_crop_copies_inside_and_pads_outside_with_air() -> None:
    volume = np.arange(2 * 4 * 5, dtype=np.int16).reshape(2, 4, 5)
    out = crop(volume, CropBox(-1, 3, 2, 7))
    assert out.shape == (2, 4, 5)
    np.testing.assert_array_equal(out[:, 0], AIR)  # row −1 is outside the matrix
    np.testing.assert_array_equal(out[:, 1:, 3:], AIR)  # columns 5, 6 are outside
    np.testing.assert_array_equal(out[:, 1:, :3], volume[:, 0:3, 2:5])


def test_resize_matches_an_independent_antialiased_bilinear() -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(-1024, 2000, size=(3, 90, 90)).astype(np.int16)
    resized = resize_hounsfield(volume, 40, 40)
    assert resized.dtype == np.int16 and resized.shape == (3, 40, 40)
    # Pillow's BILINEAR on float images is the same triangle filter widened by the scale factor
    reference = np.stack(
        [np.asarray(Image.fromarray(s.astype(np.float32)).resize((40, 40), Image.BILINEAR)) for s in volume]
    )
    assert np.abs(resized.astype(np.float64) - reference).max() <= 1.0
    assert resized.min() >= volume.min() and resized.max() <= volume.max()  # no overshoot


def test_resize_keeps_uniform_hounsfield_values_exactly() -> None:
    volume = np.full((2, 64, 64), BRAIN, dtype=np.int16)
    volume[1] = -1000
    resized = resize_hounsfield(volume, 17, 17)
    np.testing.assert_array_equal(resized[0], BRAIN)
    np.testing.assert_array_equal(resized[1], -1000)


@pytest.mark.parametrize("depth", [RESIZE_CHUNK_SLICES + 5])
def test_resize_in_chunks_equals_slice_by_slice(depth: int) -> None:
    rng = np.random.default_rng(1)
    volume = rng.integers(-1024, 3000, size=(depth, 24, 24)).astype(np.int16)
    whole = resize_hounsfield(volume, 10, 10)
    one_by_one = np.concatenate([resize_hounsfield(volume[z : z + 1], 10, 10) for z in range(depth)])
    np.testing.assert_array_equal(whole, one_by_one)
