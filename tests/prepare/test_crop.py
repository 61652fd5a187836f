"""Head box, crop with air padding, and the HU-keeping resize."""

from __future__ import annotations

import numpy as np
import pytest
from resize_reference import reference_resize
from scipy import ndimage
from series_factory import AIR, BRAIN, HEAD_REST, SKULL, head_volume

from ichscan.dicom.hounsfield import HU_MAX, HU_MIN
from ichscan.prepare.crop import (
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


def test_half_size_is_the_rounded_two_by_two_block_mean() -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(-1024, 3000, size=(3, 64, 48)).astype(np.int16)
    resized = resize_hounsfield(volume, 32, 24)
    blocks = volume.astype(np.float64).reshape(3, 32, 2, 24, 2).mean(axis=(2, 4))
    # block sums are integers: means end in .0/.25/.5/.75; a tie (.5) rounds up
    np.testing.assert_array_equal(resized, np.floor(blocks + 0.5))
    assert resized.dtype == np.int16


@pytest.mark.parametrize(
    ("shape", "size"),
    [((2, 90, 90), (40, 40)), ((2, 430, 380), (256, 256)), ((2, 61, 45), (20, 45)), ((1, 12, 9), (25, 30))],
)
def test_resize_matches_independent_area_and_bilinear_references(
    shape: tuple[int, int, int], size: tuple[int, int]
) -> None:
    """Non-integer shrink (area mean), shrink in one axis only, enlarge (bilinear)."""
    rng = np.random.default_rng(1)
    volume = rng.integers(-1024, 3000, size=shape).astype(np.int16)
    resized = resize_hounsfield(volume, *size)
    assert resized.dtype == np.int16 and resized.shape == (shape[0], *size)
    reference = reference_resize(volume, *size)
    # rounded to the nearest HU; OpenCV's float32 (area) and fixed-point-free float (bilinear)
    # arithmetic may land a hair past a .5 tie
    assert np.abs(resized - reference).max() <= 0.5 + 1e-2
    assert resized.min() >= volume.min() and resized.max() <= volume.max()  # no overshoot


@pytest.mark.parametrize("size", [17, 40, 64, 150])
def test_resize_keeps_uniform_hounsfield_values_exactly(size: int) -> None:
    volume = np.full((3, 64, 64), BRAIN, dtype=np.int16)
    volume[1] = -1000
    volume[2] = HU_MAX
    resized = resize_hounsfield(volume, size, size)
    np.testing.assert_array_equal(resized[0], BRAIN)
    np.testing.assert_array_equal(resized[1], -1000)
    np.testing.assert_array_equal(resized[2], HU_MAX)  # the top of the int16 range survives


def test_enlarged_values_are_rounded_and_stay_within_the_hounsfield_range() -> None:
    volume = np.array([[[HU_MIN, HU_MAX], [HU_MAX, HU_MIN]]], dtype=np.int16)
    resized = resize_hounsfield(volume, 7, 7)
    reference = reference_resize(volume, 7, 7)
    assert resized.min() >= HU_MIN and resized.max() <= HU_MAX
    assert np.abs(resized - reference).max() <= 0.5 + 1e-2


def test_resize_slice_by_slice_equals_whole_volume() -> None:
    rng = np.random.default_rng(1)
    volume = rng.integers(-1024, 3000, size=(37, 24, 24)).astype(np.int16)
    for height, width in ((10, 10), (31, 40)):
        whole = resize_hounsfield(volume, height, width)
        one_by_one = np.concatenate(
            [resize_hounsfield(volume[z : z + 1], height, width) for z in range(len(volume))]
        )
        np.testing.assert_array_equal(whole, one_by_one)


def _full_resolution_head_box(volume: np.ndarray) -> tuple[int, int, int, int]:
    """Rows/columns [y0, y1) × [x0, x1) of the largest 3-D component above −500 HU, no subsampling."""
    components, _ = ndimage.label(volume > -500)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    head = (components == np.argmax(sizes)).any(axis=0)
    rows, columns = np.flatnonzero(head.any(axis=1)), np.flatnonzero(head.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


@pytest.mark.parametrize(
    ("rows", "columns", "center", "radii", "head_rest_row"),
    [(64, 80, (28.0, 40.0), (18.0, 14.0), 54), (512, 512, (240.0, 256.0), (170.0, 140.0), 440),
     (512, 512, (250.0, 250.0), (150.0, 180.0), 420), (256, 256, (120.0, 128.0), (90.0, 70.0), 220)],
)
def test_subsampled_head_box_is_the_full_resolution_box_plus_a_few_pixels(
    rows: int, columns: int, center: tuple[float, float], radii: tuple[float, float], head_rest_row: int
) -> None:
    volume = head_volume(depth=3, rows=rows, columns=columns, center=center, radii=radii,
                         head_rest_row=head_rest_row)
    y0, y1, x0, x1 = _full_resolution_head_box(volume)
    box = head_box(volume)
    assert box.y0 <= y0 and box.y1 >= y1 and box.x0 <= x0 and box.x1 >= x1
    side = max(y1 - y0, x1 - x0)
    # the margin (2 % a side) plus one subsampling step a side, plus the step's rounding
    step = max(1, min(rows, columns) // 64)
    assert box.height == box.width <= side + 2 * (np.ceil(0.02 * (side + 2 * step)) + 2 * step)
