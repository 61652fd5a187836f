"""Header reading: values against pydicom's own reading, odd tags, and every kind of bad file."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_ct_slice
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from ichscan.dicom.headers import (
    HEADER_COLUMNS,
    HeaderError,
    image_id_for,
    numbers_of,
    read_header,
    read_headers,
    text_of,
)

PIXELS = np.arange(32 * 40, dtype=np.int16).reshape(32, 40)  # ≥ 32 px for JPEG 2000


def _raw(tag: str, vr: str | None, value: bytes, little: bool = True) -> RawDataElement:
    return RawDataElement(Tag(tag), vr, len(value), value, 0, vr is None, little)


def test_ct_small_matches_pydicom() -> None:
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    row = read_header(path)
    assert row["sop_instance_uid"] == ds.SOPInstanceUID
    assert row["image_id"] == ds.SOPInstanceUID  # file stem is not ID_<hex>
    assert row["series_instance_uid"] == ds.SeriesInstanceUID
    assert row["study_instance_uid"] == ds.StudyInstanceUID
    assert row["patient_id"] == ds.PatientID
    assert [row["ipp_x"], row["ipp_y"], row["ipp_z"]] == [float(v) for v in ds.ImagePositionPatient]
    iop = [row[k] for k in ("row_x", "row_y", "row_z", "col_x", "col_y", "col_z")]
    assert iop == [float(v) for v in ds.ImageOrientationPatient]
    assert (row["rows"], row["columns"]) == (ds.Rows, ds.Columns)
    assert (row["pixel_spacing_row"], row["pixel_spacing_col"]) == tuple(
        map(float, ds.PixelSpacing)
    )
    assert row["slice_thickness"] == float(ds.SliceThickness)
    assert (row["rescale_slope"], row["rescale_intercept"]) == (
        ds.RescaleSlope,
        ds.RescaleIntercept,
    )
    assert (row["bits_stored"], row["pixel_representation"]) == (
        ds.BitsStored,
        ds.PixelRepresentation,
    )
    assert row["photometric_interpretation"] == ds.PhotometricInterpretation
    assert row["transfer_syntax_uid"] == ds.file_meta.TransferSyntaxUID
    assert "WindowCenter" not in ds and math.isnan(row["window_center"])
    assert set(row) == set(HEADER_COLUMNS)


@pytest.mark.parametrize(
    "syntax",
    [
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        ExplicitVRBigEndian,
        RLELossless,
        JPEGLSLossless,
        JPEG2000Lossless,
    ],
)
def test_every_transfer_syntax_reads_the_same(tmp_path: Path, syntax: str) -> None:
    path = write_ct_slice(
        tmp_path / "ID_0a1b2c.dcm",
        PIXELS,
        position=(-125.0, -141.318451, 62.72094),
        orientation=(1.0, 0.0, 0.0, 0.0, 0.968148, -0.25038),
        slope=1.0,
        intercept=-1024.0,
        bits_stored=12,
        pixel_representation=0,
        photometric="MONOCHROME1",
        transfer_syntax=syntax,
        window_center=[40, 41],
        window_width=[80, 81],
        pixel_spacing=(0.488281, 0.45),
    )
    row = read_header(path)
    assert row["image_id"] == "ID_0a1b2c"
    assert row["transfer_syntax_uid"] == syntax
    assert (row["rows"], row["columns"]) == (32, 40)
    assert (row["ipp_x"], row["ipp_y"], row["ipp_z"]) == (-125.0, -141.318451, 62.72094)
    assert (row["col_y"], row["col_z"]) == (0.968148, -0.25038)
    assert (row["bits_allocated"], row["bits_stored"], row["pixel_representation"]) == (16, 12, 0)
    assert row["photometric_interpretation"] == "MONOCHROME1"
    assert (row["window_center"], row["window_width"]) == (40.0, 80.0)  # first of multi-valued
    assert (row["pixel_spacing_row"], row["pixel_spacing_col"]) == (0.488281, 0.45)


def test_odd_window_text_and_leading_zeros(tmp_path: Path) -> None:
    path = write_ct_slice(
        tmp_path / "a.dcm", PIXELS, window_center="36.00000", window_width="00080"
    )
    data = path.read_bytes()
    assert data.count(b"36.00000") == 1
    path.write_bytes(data.replace(b"36.00000", b"[36, 36]"))  # same length: still valid DICOM
    row = read_header(path)
    assert (row["window_center"], row["window_width"]) == (36.0, 80.0)


def test_missing_optional_tags_are_nan(tmp_path: Path) -> None:
    path = write_ct_slice(
        tmp_path / "a.dcm",
        PIXELS,
        without=["WindowCenter", "WindowWidth", "PixelSpacing", "SliceThickness", "PatientID"],
    )
    row = read_header(path)
    for column in (
        "window_center",
        "window_width",
        "pixel_spacing_row",
        "pixel_spacing_col",
        "slice_thickness",
    ):
        assert math.isnan(row[column]), column
    assert row["patient_id"] == ""


def test_numbers_of_decodes_binary_and_text() -> None:
    assert numbers_of(_raw("Rows", "US", (512).to_bytes(2, "big"), little=False)) == [512.0]
    assert numbers_of(_raw("Rows", None, (300).to_bytes(2, "little"))) == [300.0]  # implicit VR
    assert numbers_of(_raw("Rows", "IS", b"256 ")) == [256.0]  # writer declared text
    assert numbers_of(_raw("WindowCenter", "DS", b"00036\\00040")) == [36.0, 40.0]
    assert numbers_of(_raw("WindowCenter", "DS", b"[36, -4.5e1]")) == [36.0, -45.0]
    assert numbers_of(_raw("WindowCenter", "DS", b"")) == []
    assert text_of(_raw("Modality", "CS", b"CT\\MR ")) == "CT"
    assert text_of(_raw("SOPInstanceUID", "UI", b"1.2.3\x00")) == "1.2.3"


def test_image_id_from_stem_or_uid() -> None:
    assert image_id_for("/d/ID_00ab12.dcm", "1.2.3") == "ID_00ab12"
    assert image_id_for("/d/ID_00ab12", "1.2.3") == "ID_00ab12"
    assert image_id_for("/d/IM_0001.dcm", "1.2.3") == "1.2.3"
    assert image_id_for("/d/ID_xyz.dcm", "1.2.3") == "1.2.3"


def _pixel_data_offset(data: bytes) -> int:
    return data.index(b"\xe0\x7f\x10\x00")


BAD_FILES = {
    "not_dicom": ("not DICOM:", lambda p: p.write_text("patient,label\n1,0\n")),
    "empty": ("not DICOM:", lambda p: p.write_bytes(b"")),
    "header_cut": (
        "truncated:",
        lambda p: p.write_bytes(write_ct_slice(p, PIXELS).read_bytes()[:300]),
    ),
    "pixels_cut": (
        "truncated:",
        lambda p: p.write_bytes(write_ct_slice(p, PIXELS).read_bytes()[:-100]),
    ),
    "jpeg_cut": (
        "truncated:",
        lambda p: p.write_bytes(
            write_ct_slice(p, PIXELS, transfer_syntax=RLELossless).read_bytes()[:-50]
        ),
    ),
    "no_pixels": (
        "missing tag: PixelData",
        lambda p: p.write_bytes(
            (d := write_ct_slice(p, PIXELS).read_bytes())[: _pixel_data_offset(d)]
        ),
    ),
    "mr": ("not CT: Modality is 'MR'", lambda p: write_ct_slice(p, PIXELS, modality="MR")),
    "sr": (
        "not CT: SOP class",
        lambda p: write_ct_slice(p, PIXELS, extra={"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.11"}),
    ),
    "hostile_uid": (
        "invalid tag: SOPInstanceUID '../../escape' is not a UID",
        lambda p: write_ct_slice(p, PIXELS, extra={"SOPInstanceUID": "../../escape"}),
    ),
    "dotdot_study": (
        "invalid tag: StudyInstanceUID '..' is not a UID",
        lambda p: write_ct_slice(p, PIXELS, extra={"StudyInstanceUID": ".."}),
    ),
    "huge_matrix": (
        "limit: matrix 5000x5000 exceeds the limit 4096x4096",
        lambda p: write_ct_slice(p, PIXELS, extra={"Rows": 5000, "Columns": 5000}),
    ),
    "short_ipp": (
        "invalid tag: ImagePositionPatient",
        lambda p: write_ct_slice(p, PIXELS, position=(1.0, 2.0)),
    ),
    "multiframe": (
        "unsupported: multi-frame",
        lambda p: write_ct_slice(p, PIXELS, extra={"NumberOfFrames": 2}),
    ),
    "rgb": (
        "unsupported: PhotometricInterpretation 'RGB'",
        lambda p: write_ct_slice(p, PIXELS, photometric="RGB"),
    ),
}


def test_missing_position_and_rescale_are_kept_for_their_fallbacks(tmp_path: Path) -> None:
    """ImagePositionPatient and the rescale may be absent: the index orders such a series by
    SliceLocation/InstanceNumber and prepare applies the 1/-1024 default only when proven."""
    path = write_ct_slice(tmp_path / "a.dcm", PIXELS, without=["ImagePositionPatient", "RescaleSlope", "RescaleIntercept"])
    row = read_header(path)
    assert np.isnan([row["ipp_x"], row["ipp_y"], row["ipp_z"], row["rescale_slope"], row["rescale_intercept"]]).all()


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_raise_one_line_reason(tmp_path: Path, name: str) -> None:
    expected, make = BAD_FILES[name]
    path = tmp_path / f"{name}.dcm"
    make(path)
    with pytest.raises(HeaderError) as caught:
        read_header(path)
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


def test_read_headers_keeps_going_after_bad_files(tmp_path: Path) -> None:
    good = [write_ct_slice(tmp_path / f"g{i}.dcm", PIXELS, position=(0, 0, i)) for i in range(3)]
    bad = tmp_path / "bad.dcm"
    bad.write_text("hello")
    missing = tmp_path / "gone.dcm"
    rows, errors = read_headers([good[0], bad, good[1], missing, good[2]])
    assert rows["path"].tolist() == [str(p) for p in good]
    assert rows["ipp_z"].tolist() == [0.0, 1.0, 2.0]
    assert errors["path"].tolist() == [str(bad), str(missing)]
    assert errors["reason"].str.split(":").str[0].tolist() == ["not DICOM", "unreadable"]
    assert dict(rows.dtypes.astype(str)) == HEADER_COLUMNS


def test_rsna_style_file(tmp_path: Path) -> None:
    # RSNA files: "ID_…" strings in UID tags, no SOPClassUID, no SliceThickness, RSNA 12-bit layout.
    with pydicom.config.disable_value_validation():
        path = write_ct_slice(
            tmp_path / "ID_12cadc6af.dcm",
            PIXELS.astype(np.uint16),
            sop_uid="ID_12cadc6af",
            series_uid="ID_e8d04fb1c2",
            study_uid="ID_3c8a09c3e3",
            patient_id="ID_5fb6b9b2",
            bits_stored=12,
            intercept=-1024.0,
            window_center=["00036", "00036"],
            window_width=["00080", "00080"],
            without=["SOPClassUID", "SliceThickness"],
        )
    row = read_header(path)
    assert (row["image_id"], row["sop_instance_uid"]) == ("ID_12cadc6af", "ID_12cadc6af")
    assert (row["series_instance_uid"], row["study_instance_uid"], row["patient_id"]) == (
        "ID_e8d04fb1c2",
        "ID_3c8a09c3e3",
        "ID_5fb6b9b2",
    )
    assert (row["bits_stored"], row["pixel_representation"], row["window_center"]) == (12, 0, 36.0)
    assert math.isnan(row["slice_thickness"])


def test_deflated_file(tmp_path: Path) -> None:
    ds = pydicom.dcmread(write_ct_slice(tmp_path / "a.dcm", PIXELS, position=(1.0, 2.0, 3.5)))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    row = read_header(tmp_path / "deflated.dcm")
    assert row["transfer_syntax_uid"] == DeflatedExplicitVRLittleEndian
    assert (row["ipp_z"], row["rows"], row["columns"]) == (3.5, 32, 40)
