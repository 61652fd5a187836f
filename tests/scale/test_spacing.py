"""`prepare --spacing MM`: in-plane resampling to a fixed pixel spacing, against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import write_ct_slice
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from ichscan.cli import app
from ichscan.prepare import prepare_cache, read_series, read_slices
from ichscan.prepare.resample import SpacingError, resample_in_plane, resampled_shape


def test_shrinking_is_the_block_mean() -> None:
    volume = np.array([[[0, 2, 4, 6], [2, 4, 6, 8], [10, 10, -20, -20], [10, 14, -20, -24]]], dtype=np.int16)
    out = resample_in_plane(volume, (0.5, 0.5), 1.0)  # 2×2 blocks → one 1-mm pixel each
    np.testing.assert_array_equal(out, [[[2, 6], [11, -21]]])


def test_enlarging_is_bilinear_with_aligned_pixel_centres() -> None:
    volume = np.array([[[0, 100], [200, 300]]], dtype=np.int16)
    out = resample_in_plane(volume, (1.0, 1.0), 0.5)
    # output pixel x samples the input at (x + 0.5)/2 − 0.5 = −0.25, 0.25, 0.75, 1.25 (edges clamped)
    np.testing.assert_array_equal(
        out[0], [[0, 25, 75, 100], [50, 75, 125, 150], [150, 175, 225, 250], [200, 225, 275, 300]]
    )


def test_anisotropic_pixels_become_square() -> None:
    volume = np.array([[[0, 10], [20, 30], [40, 50], [60, 70]]], dtype=np.int16)
    out = resample_in_plane(volume, (0.5, 1.0), 1.0)  # rows 0.5 mm apart are paired, columns kept
    np.testing.assert_array_equal(out, [[[10, 20], [50, 60]]])
    assert resampled_shape(512, 512, (0.488, 0.488), 1.0) == (250, 250)  # round(249.856)
    assert resampled_shape(512, 400, (0.7, 0.9), 1.0) == (358, 360)
    with pytest.raises(SpacingError, match="no usable PixelSpacing"):
        resampled_shape(4, 4, (float("nan"), 0.5), 1.0)


def _series(folder: Path, volume: np.ndarray, spacing: tuple[float, float] | None) -> pd.DataFrame:
    """One DICOM file per slice (stored = HU, intercept 0) and its manifest rows."""
    series_uid, study_uid = generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    rows = []
    for z, plane in enumerate(volume):
        sop = generate_uid()
        path = write_ct_slice(
            folder / f"{z}.dcm", plane, position=(0.0, 0.0, 5.0 * z), intercept=0.0, series_uid=series_uid,
            study_uid=study_uid, sop_uid=sop, pixel_spacing=spacing or (0.5, 0.5),
        )
        rows.append({
            "image_id": sop, "sop_instance_uid": sop, "patient_id": "P", "study_instance_uid": study_uid,
            "series_instance_uid": series_uid, "position": 5.0 * z, "slice_index": z, "n_slices": len(volume),
            "rows": plane.shape[0], "columns": plane.shape[1], "path": str(path),
            "pixel_spacing_row": np.nan if spacing is None else spacing[0],
            "pixel_spacing_col": np.nan if spacing is None else spacing[1],
        })
    return pd.DataFrame(rows)


def test_prepare_resamples_records_and_keys_the_cache_on_spacing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(-256, 1000, size=(3, 8, 12)).astype(np.int16) * 4  # ≥ −1024 HU; sums divisible by 4
    manifest = _series(tmp_path / "a", volume, (0.5, 0.5))
    result = prepare_cache(manifest, tmp_path / "cache", size=0, crop=False, workers=1, progress=False, spacing=1.0)
    assert result.errors.empty
    cached = read_series(tmp_path / "cache", manifest["series_instance_uid"].iloc[0])
    expected = volume.reshape(3, 4, 2, 6, 2).mean(axis=(2, 4))  # hand: the 2×2 block means
    np.testing.assert_array_equal(cached, expected)
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["spacing"] == 1.0
    slices = read_slices(tmp_path / "cache")
    assert (slices["cached_spacing_row"] == 1.0).all() and (slices["cached_spacing_col"] == 1.0).all()

    with pytest.raises(ValueError, match="spacing=1.0; asked .*spacing=0.8"):
        prepare_cache(manifest, tmp_path / "cache", size=0, crop=False, workers=1, progress=False, spacing=0.8)

    # resized after resampling: 4×6 mm-pixels padded to 6×6, then 3×3 → 2 mm per cached pixel
    prepare_cache(manifest, tmp_path / "sized", size=3, crop=False, workers=1, progress=False, spacing=1.0)
    sized = read_slices(tmp_path / "sized")
    assert sized[["height", "width"]].drop_duplicates().values.tolist() == [[3, 3]]
    assert (sized["cached_spacing_row"] == 2.0).all()
    # without --spacing the cached spacing is the manifest's × box / size: 0.5 × 12 / 3
    prepare_cache(manifest, tmp_path / "plain", size=3, crop=False, workers=1, progress=False)
    assert (read_slices(tmp_path / "plain")["cached_spacing_col"] == 2.0).all()
    assert "spacing" not in json.loads((tmp_path / "plain" / "meta.json").read_text())


def test_series_without_spacing_is_reported_not_guessed(tmp_path: Path) -> None:
    manifest = _series(tmp_path / "b", np.zeros((2, 4, 4), np.int16), None)
    result = prepare_cache(manifest, tmp_path / "cache", size=0, crop=False, workers=1, progress=False, spacing=1.0)
    assert result.failed == 1 and len(result.errors) == 2
    assert result.errors["reason"].str.contains("no usable PixelSpacing").all()


def test_cli_prepare_spacing(tmp_path: Path) -> None:
    manifest = _series(tmp_path / "c", np.full((2, 8, 8), 40, np.int16), (0.25, 0.25))
    manifest.to_parquet(tmp_path / "m.parquet")
    outcome = CliRunner().invoke(
        app, ["prepare", str(tmp_path / "m.parquet"), "-o", str(tmp_path / "cache"), "--size", "0", "--spacing", "1", "-q"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert read_series(tmp_path / "cache", manifest["series_instance_uid"].iloc[0]).shape == (2, 2, 2)
    assert json.loads((tmp_path / "cache" / "meta.json").read_text())["spacing"] == 1.0
