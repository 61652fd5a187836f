"""Hounsfield units from every pixel encoding, against values the tests compute themselves."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_ct_slice
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_rescale
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from ichscan.dicom.hounsfield import (
    HU_MAX,
    HU_MIN,
    keep_stored_bits,
    needs_rsna_fix,
    stored_values,
    to_hounsfield,
)

SHAPE = (32, 40)  # not square: a transposed read fails; ≥ 32 px: the JPEG 2000 encoder's minimum
SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
]


def expected_hu(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """The reference: stored × slope + intercept, rounded, clipped to the documented range."""
    return np.clip(np.rint(stored.astype(np.float64) * slope + intercept), HU_MIN, HU_MAX)


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda uid: uid.name)
@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_hu_is_stored_times_slope_plus_intercept(tmp_path: Path, syntax: str, signed: bool) -> None:
    rng = np.random.default_rng(7)
    if signed:  # signed scanners store HU directly (intercept 0); −2048…2047 is 12-bit signed
        stored = rng.integers(-2048, 2048, SHAPE).astype(np.int16)
        slope, intercept = 1.0, 0.0
    else:
        stored = rng.integers(0, 4096, SHAPE).astype(np.uint16)
        slope, intercept = 1.0, -1024.0
    stored[0, :3] = (stored.min(), stored.max(), 0)
    path = write_ct_slice(
        tmp_path / "slice.dcm",
        stored,
        slope=slope,
        intercept=intercept,
        bits_stored=12,
        transfer_syntax=syntax,
    )
    hounsfield = to_hounsfield(read(path))
    assert hounsfield.dtype == np.int16
    assert hounsfield.shape == SHAPE
    np.testing.assert_array_equal(hounsfield, expected_hu(stored, slope, intercept))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless])
def test_fractional_slope_and_intercept_round_to_nearest(tmp_path: Path, syntax: str) -> None:
    stored = np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16).reshape(SHAPE) * 3
    path = write_ct_slice(
        tmp_path / "s.dcm", stored, slope=0.5, intercept=-1000.25, transfer_syntax=syntax
    )
    hounsfield = to_hounsfield(read(path))
    # hand check of two pixels: 0 × 0.5 − 1000.25 → −1000; 9 × 0.5 − 1000.25 = −995.75 → −996
    assert hounsfield[0, 0] == -1000 and hounsfield[0, 3] == -996
    np.testing.assert_array_equal(hounsfield, expected_hu(stored, 0.5, -1000.25))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian],
                         ids=lambda uid: uid.name)
def test_unused_high_bits_are_ignored(tmp_path: Path, syntax: str) -> None:
    # 12 bits stored in 16: garbage in bits 12–15 must not change the value (PS3.5 8.1.1)
    clean = np.array([[0, 1, 2047, 4095]], dtype=np.uint16).repeat(4, axis=0)
    dirty = clean | np.uint16(0xF000)
    path = write_ct_slice(
        tmp_path / "u.dcm", dirty, bits_stored=12, intercept=-1024.0, transfer_syntax=syntax
    )
    ds = read(path)
    np.testing.assert_array_equal(to_hounsfield(ds), clean.astype(np.int32) - 1024)
    np.testing.assert_array_equal(stored_values(ds), clean)
    np.testing.assert_array_equal(stored_values(ds), ds.pixel_array)  # pydicom agrees


def test_signed_12_bit_values_are_sign_extended(tmp_path: Path) -> None:
    # 0x0830 holds the 12-bit two's complement of −2000 with the unused bits left at zero
    stored = np.array([[0x0830, 0x07FF, 0x0800, 0x0000]], dtype=np.uint16).view(np.int16)
    path = write_ct_slice(
        tmp_path / "s.dcm", stored, bits_stored=12, pixel_representation=1, intercept=0.0
    )
    ds = read(path)
    hounsfield = to_hounsfield(ds, clip=(-32768, 32767))
    np.testing.assert_array_equal(hounsfield, [[-2000, 2047, -2048, 0]])
    np.testing.assert_array_equal(stored_values(ds), ds.pixel_array)


def test_rsna_12_bit_defect_is_fixed_like_the_community_fix(tmp_path: Path) -> None:
    true_hu = np.array([[-1000, -999, -500, -1, 0, 40, 80, 1000, 2000, 3095]], dtype=np.int32)
    stored = (true_hu % 4096).astype(np.uint16)  # 12-bit two's complement read as unsigned
    path = write_ct_slice(
        tmp_path / "rsna.dcm", stored, bits_stored=12, pixel_representation=0, intercept=-1.0
    )
    # the community recipe, by hand: +1000, −4096 where ≥ 4096, intercept −1000
    fixed = stored.astype(np.int32) + 1000
    fixed[fixed >= 4096] = fixed[fixed >= 4096] - 4096
    expected = fixed * 1 + (-1000)
    hounsfield = to_hounsfield(read(path))
    np.testing.assert_array_equal(hounsfield, expected)
    np.testing.assert_array_equal(hounsfield, true_hu)  # and that is the real anatomy


def test_rsna_fix_applies_only_where_defined() -> None:
    assert needs_rsna_fix(12, 0, -1.0)
    assert needs_rsna_fix(12, 0, -99.0)
    assert not needs_rsna_fix(12, 0, -100.0)  # strictly greater than −100
    assert not needs_rsna_fix(12, 0, -1024.0)
    assert not needs_rsna_fix(12, 1, 0.0)
    assert not needs_rsna_fix(16, 0, 0.0)
    flags = needs_rsna_fix(
        np.array([12, 12, 16]), np.array([0, 0, 0]), np.array([0.0, -1024.0, 0.0])
    )
    np.testing.assert_array_equal(flags, [True, False, False])


def test_normal_12_bit_file_is_not_fixed(tmp_path: Path) -> None:
    stored = np.array([[0, 24, 1064, 4095]], dtype=np.uint16)
    path = write_ct_slice(tmp_path / "n.dcm", stored, bits_stored=12, intercept=-1024.0)
    np.testing.assert_array_equal(to_hounsfield(read(path)), [[-1024, -1000, 40, 3071]])


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_monochrome1_keeps_the_modality_lut_hu_by_default(tmp_path: Path, signed: bool) -> None:
    rng = np.random.default_rng(3)
    stored = (
        rng.integers(-2048, 2048, SHAPE).astype(np.int16)
        if signed
        else rng.integers(0, 4096, SHAPE).astype(np.uint16)
    )
    intercept = 0.0 if signed else -1024.0
    path1 = write_ct_slice(
        tmp_path / "m1.dcm", stored, bits_stored=12, intercept=intercept, photometric="MONOCHROME1"
    )
    path2 = write_ct_slice(tmp_path / "m2.dcm", stored, bits_stored=12, intercept=intercept)
    ds1 = read(path1)
    # HU are the Modality LUT output; MONOCHROME1 only says how to display them
    np.testing.assert_array_equal(to_hounsfield(ds1), to_hounsfield(read(path2)))
    np.testing.assert_array_equal(to_hounsfield(ds1), expected_hu(stored, 1.0, intercept))
    # inverted exports: s' = s_min + s_max − s over 12 bits, then the rescale
    inverted = (-1 - stored.astype(np.int32)) if signed else (4095 - stored.astype(np.int32))
    np.testing.assert_array_equal(
        to_hounsfield(ds1, invert_monochrome1=True), expected_hu(inverted, 1.0, intercept)
    )
    # and the option never touches MONOCHROME2
    np.testing.assert_array_equal(
        to_hounsfield(read(path2), invert_monochrome1=True), expected_hu(stored, 1.0, intercept)
    )


def test_clipping_turns_padding_into_air_and_keeps_dense_bone(tmp_path: Path) -> None:
    stored = np.array([[-3024, -2000, -1024, 0, 3000, 20000]], dtype=np.int16)
    path = write_ct_slice(tmp_path / "c.dcm", stored, intercept=0.0)
    np.testing.assert_array_equal(
        to_hounsfield(read(path)), [[-1024, -1024, -1024, 0, 3000, 20000]]
    )


def test_truncated_pixel_data_is_a_clear_error(tmp_path: Path) -> None:
    path = write_ct_slice(tmp_path / "t.dcm", np.zeros(SHAPE, dtype=np.uint16))
    ds = read(path)
    ds.PixelData = ds.PixelData[:100]
    with pytest.raises(ValueError, match="truncated"):
        to_hounsfield(ds)
    del ds.PixelData
    with pytest.raises(ValueError, match="no Pixel Data"):
        to_hounsfield(ds)


def test_corrupt_compressed_data_is_a_one_line_value_error(tmp_path: Path) -> None:
    path = write_ct_slice(
        tmp_path / "r.dcm", np.zeros(SHAPE, dtype=np.uint16), transfer_syntax=RLELossless
    )
    ds = read(path)
    ds.PixelData = ds.PixelData[:40]
    with pytest.raises(ValueError, match="cannot decode pixel data") as raised:
        to_hounsfield(ds)
    assert "\n" not in str(raised.value)


BUNDLED = [
    "CT_small.dcm",  # CT, explicit little endian, signed, intercept −1024
    "J2K_pixelrep_mismatch.dcm",  # CT, JPEG 2000 lossless, 13-bit signed with a sign mismatch
    "693_J2KI.dcm",  # CT, JPEG 2000 (lossy), 14-bit signed
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "JPGExtended.dcm",  # 12-bit greyscale through the libjpeg plugin (JPEG lossless's decoder)
]


@pytest.mark.parametrize("name", BUNDLED)
def test_pydicom_bundled_files_match_apply_rescale(name: str) -> None:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    if name == "JPGExtended.dcm":
        pytest.importorskip("libjpeg", reason="JPEG extended needs the optional `jpeg` extra (pylibjpeg-libjpeg)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        if "RescaleSlope" not in ds:  # the MR files: compare decoders at pydicom's own 1/0 rescale
            ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        reference = apply_rescale(ds.pixel_array, ds)
    hounsfield = to_hounsfield(ds)
    np.testing.assert_array_equal(hounsfield, np.clip(np.rint(reference), HU_MIN, HU_MAX))
    assert hounsfield.std() > 0  # a real image, not a constant


def test_missing_rescale_defaults_to_minus_1024_only_when_the_stored_values_prove_it(tmp_path: Path) -> None:
    head = np.full(SHAPE, 0, dtype=np.uint16)  # air stored at 0 around a 12-bit head
    head[8:-8, 8:-8] = 1064  # brain at 40 HU once 1/-1024 applies
    path = write_ct_slice(tmp_path / "a.dcm", head, without=["RescaleSlope", "RescaleIntercept"])
    np.testing.assert_array_equal(to_hounsfield(read(path)), head.astype(np.int16) - 1024)
    no_air = np.full(SHAPE, 1064, dtype=np.uint16)
    path = write_ct_slice(tmp_path / "b.dcm", no_air, without=["RescaleSlope", "RescaleIntercept"])
    with pytest.raises(ValueError, match="not proven"):
        to_hounsfield(read(path))
    wide = head.copy()
    wide[0, 0] = 40000
    path = write_ct_slice(tmp_path / "c.dcm", wide, without=["RescaleSlope", "RescaleIntercept"])
    with pytest.raises(ValueError, match="reach 40000"):
        to_hounsfield(read(path))
    path = write_ct_slice(tmp_path / "d.dcm", head, without=["RescaleIntercept"])
    with pytest.raises(ValueError, match="lacks RescaleIntercept"):
        to_hounsfield(read(path))


def test_bundled_ct_has_plausible_hounsfield_units() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hounsfield = to_hounsfield(ds)
    # independent: raw little-endian int16 bytes × 1 − 1024 read straight from the element
    raw = np.frombuffer(ds.PixelData, dtype="<i2").reshape(ds.Rows, ds.Columns)
    np.testing.assert_array_equal(hounsfield, np.clip(raw.astype(np.int32) - 1024, HU_MIN, HU_MAX))


def test_multi_frame_is_rejected_with_a_reason(tmp_path: Path) -> None:
    path = write_ct_slice(
        tmp_path / "mf.dcm", np.zeros(SHAPE, dtype=np.uint16), extra={"NumberOfFrames": 2}
    )
    with pytest.raises(ValueError, match="multi-frame"):
        to_hounsfield(read(path))


def test_missing_pixel_tag_is_named(tmp_path: Path) -> None:
    path = write_ct_slice(tmp_path / "m.dcm", np.zeros(SHAPE, dtype=np.uint16))
    ds = read(path)
    del ds.PixelRepresentation
    with pytest.raises(ValueError, match="lacks PixelRepresentation"):
        to_hounsfield(ds)


@pytest.mark.parametrize(("dtype", "bits", "signed"), [(np.uint16, 12, False), (np.int16, 12, True), (np.int16, 16, True)])
def test_keep_stored_bits_in_place_matches_a_hand_computed_reduction(dtype: type, bits: int, signed: bool) -> None:
    words = np.random.default_rng(bits).integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (4, 5), endpoint=True,
                                                 dtype=dtype)
    low = words.astype(np.int64) & ((1 << bits) - 1)  # the stored bits, unsigned
    expected = low - (low >= (1 << (bits - 1))) * (1 << bits) if signed else low  # two's complement of b bits
    fresh = keep_stored_bits(words, bits, signed)
    in_place = words.copy()
    assert keep_stored_bits(in_place, bits, signed, out=in_place) is in_place
    np.testing.assert_array_equal(fresh.astype(np.int64), expected)
    np.testing.assert_array_equal(in_place.astype(np.int64), expected)
