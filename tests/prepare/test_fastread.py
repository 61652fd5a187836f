"""The fast uncompressed reader and the vectorised series path give pydicom's HU exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_ct_slice
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    generate_uid,
)
from resize_reference import reference_resize
from scipy import ndimage

from ichscan.dicom.hounsfield import to_hounsfield
from ichscan.prepare.cache import CacheSettings
from ichscan.prepare.crop import (
    CropBox,
    crop,
    crop_and_resize,
    open_in_plane,
    resize_hounsfield,
)
from ichscan.prepare.fastread import NotFast, read_fast
from ichscan.prepare.series import SeriesTask, read_volume


def _nested_sequence() -> Sequence:
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator = "113100", "DCM"
    item = Dataset()
    item.ReferencedSOPInstanceUID = generate_uid()
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    return Sequence([item, Dataset()])


CASES = {
    "explicit 16-bit signed": {"dtype": np.int16, "low": -2000, "high": 3000, "kw": {}},
    "implicit": {"dtype": np.int16, "low": -2000, "high": 3000,
                     "kw": {"transfer_syntax": ImplicitVRLittleEndian}},
    "12-bit unsigned RSNA fix": {"dtype": np.uint16, "low": 0, "high": 4096,
                                     "kw": {"bits_stored": 12, "intercept": 0.0}},
    "12-bit unsigned, junk high bits": {"dtype": np.uint16, "low": 0, "high": 65536,
                                            "kw": {"bits_stored": 12, "intercept": -1024.0}},
    "12-bit signed, junk high bits": {"dtype": np.int16, "low": -32768, "high": 32768,
                                          "kw": {"bits_stored": 12, "pixel_representation": 1}},
    "fractional rescale": {"dtype": np.uint16, "low": 0, "high": 4096,
                               "kw": {"slope": 2.5, "intercept": -1024.5, "bits_stored": 12}},
    "16-bit unsigned": {"dtype": np.uint16, "low": 0, "high": 65536, "kw": {}},
    "undefined-length sequences (explicit)": {
        "dtype": np.int16, "low": -1024, "high": 2000, "kw": {"extra": {"ReferencedImageSequence": None}}},
    "undefined-length sequences (implicit)": {
        "dtype": np.int16, "low": -1024, "high": 2000,
        "kw": {"extra": {"ReferencedImageSequence": None}, "transfer_syntax": ImplicitVRLittleEndian}},
}


def _write(folder: Path, case: dict, depth: int = 3, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, uids = [], []
    for z in range(depth):
        kw = dict(case["kw"])
        if "extra" in kw:
            kw["extra"] = {"ReferencedImageSequence": _nested_sequence()}
        stored = rng.integers(case["low"], case["high"], size=(12, 10)).astype(case["dtype"])
        uid = generate_uid()
        paths.append(str(write_ct_slice(folder / f"{z}.dcm", stored, sop_uid=uid, **kw)))
        uids.append(uid)
    return paths, uids


def _task(tmp_path: Path, paths: list[str], uids: list[str]) -> SeriesTask:
    return SeriesTask(generate_uid(), tuple(paths), tuple(uids), tmp_path, CacheSettings())


def _pydicom_volume(paths: list[str]) -> np.ndarray:
    return np.stack([to_hounsfield(pydicom.dcmread(path)) for path in paths])


@pytest.mark.parametrize("name", list(CASES))
def test_fast_reader_and_series_volume_match_pydicom(tmp_path: Path, name: str) -> None:
    paths, uids = _write(tmp_path / "dicom", CASES[name])
    for path, uid in zip(paths, uids, strict=True):
        fast = read_fast(path)  # every case here is one the fast path must take
        ds = pydicom.dcmread(path)
        assert fast.sop_instance_uid == uid
        assert (fast.rows, fast.columns) == (ds.Rows, ds.Columns)
        assert (fast.bits_stored, fast.pixel_representation) == (ds.BitsStored, ds.PixelRepresentation)
        assert (fast.slope, fast.intercept) == (float(ds.RescaleSlope), float(ds.RescaleIntercept))
        assert fast.pixels.tobytes() == ds.PixelData[: fast.pixels.nbytes]
    volume, failures = read_volume(_task(tmp_path, paths, uids))
    assert failures == []
    np.testing.assert_array_equal(volume, _pydicom_volume(paths))


def test_mixed_syntaxes_and_rescales_in_one_series_match_pydicom(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths, uids = [], []
    variants = [
        {"transfer_syntax": ExplicitVRLittleEndian, "intercept": -1024.0},
        {"transfer_syntax": ExplicitVRBigEndian, "intercept": -1024.0},  # pydicom path
        {"transfer_syntax": RLELossless, "intercept": -1024.0},  # pydicom path
        {"transfer_syntax": ImplicitVRLittleEndian, "intercept": -1000.0},
        {"transfer_syntax": ExplicitVRLittleEndian, "intercept": 0.0, "bits_stored": 12},
        {"transfer_syntax": ExplicitVRLittleEndian, "intercept": -1024.0},
    ]
    for z, kw in enumerate(variants):
        uid = generate_uid()
        stored = rng.integers(0, 4096, size=(8, 8)).astype(np.uint16)
        paths.append(str(write_ct_slice(tmp_path / f"{z}.dcm", stored, sop_uid=uid, **kw)))
        uids.append(uid)
    for path in paths[1:3]:
        with pytest.raises(NotFast):
            read_fast(path)
    volume, failures = read_volume(_task(tmp_path, paths, uids))
    assert failures == []
    np.testing.assert_array_equal(volume, _pydicom_volume(paths))


def test_fast_path_problems_are_reported_with_pydicom_reasons(tmp_path: Path) -> None:
    paths, uids = _write(tmp_path, CASES["explicit 16-bit signed"])
    uids[1] = generate_uid()  # manifest disagrees with the file
    volume, failures = read_volume(_task(tmp_path, paths, uids))
    assert volume is None
    assert [path for path, _ in failures] == [paths[1]]
    assert "SOPInstanceUID" in failures[0][1]
    truncated = Path(paths[2])
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with pytest.raises(NotFast):
        read_fast(str(truncated))


def test_opening_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    cross = ndimage.generate_binary_structure(2, 1)[None]
    for shape in ((3, 40, 37), (2, 1, 5), (1, 2, 2), (4, 3, 9)):
        mask = rng.random(shape) < 0.7
        for iterations in (1, 2):
            expected = ndimage.binary_opening(mask, structure=cross, iterations=iterations)
            np.testing.assert_array_equal(open_in_plane(mask, iterations), expected)


@pytest.mark.parametrize(
    "box", [CropBox(5, 45, 3, 43), CropBox(-6, 50, -4, 52), CropBox(0, 48, 0, 50), CropBox(60, 70, 60, 70)]
)
def test_crop_and_resize_matches_crop_then_resize(box: CropBox) -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(-1024, 3000, size=(37, 48, 50)).astype(np.int16)
    cropped = crop(volume, box)
    for side in (17, 80):  # shrink (area) and enlarge (bilinear)
        got = crop_and_resize(volume, box, side, side)
        np.testing.assert_array_equal(got, resize_hounsfield(cropped, side, side))
        assert np.abs(got - reference_resize(cropped, side, side)).max() <= 0.5 + 1e-2
