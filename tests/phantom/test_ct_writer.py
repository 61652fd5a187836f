"""The CT writer: validated descriptions, every storage variant round-trips through pydicom,
and dciodvfy (dicom3tools) finds no errors."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydantic import ValidationError
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from ichscan.phantom import (
    CTSeriesWriter,
    CTSliceDescription,
    PatientDescription,
    PixelStorage,
    SeriesDescription,
    StudyDescription,
    write_ct_slice,
)
from ichscan.phantom.study import STORAGE_VARIANTS

UID = "2.25.1234567890"
SYNTAXES = (str(ExplicitVRLittleEndian), str(RLELossless), str(JPEGLSLossless))


def _descriptions(storage: PixelStorage, size: int = 32) -> tuple[SeriesDescription, StudyDescription, PatientDescription]:
    when = dt.datetime(2020, 5, 17, 13, 45, 10)
    series = SeriesDescription(
        series_instance_uid=UID + "1", frame_of_reference_uid=UID + "2", series_number=2, series_datetime=when,
        rows=size, columns=size, pixel_spacing=(0.5, 0.5), slice_thickness=5.0, storage=storage,
        image_orientation=(1.0, 0.0, 0.0, 0.0, 0.9659258, -0.2588190), gantry_tilt_deg=15.0,
    )
    study = StudyDescription(study_instance_uid=UID + "3", study_id="1", accession_number="42", study_datetime=when)
    patient = PatientDescription(
        patient_id="ID_abc", patient_name="PHANTOM^ABC", birth_date=dt.date(1950, 1, 2), sex="F", age_years=70
    )
    return series, study, patient


def _hounsfield_from_file(ds: pydicom.Dataset) -> np.ndarray:
    """HU as DOMAIN.md defines it, including the community fix of the RSNA 12-bit defect."""
    stored = ds.pixel_array.astype(np.int32)
    intercept, slope = float(ds.RescaleIntercept), float(ds.RescaleSlope)
    if ds.BitsStored == 12 and ds.PixelRepresentation == 0 and intercept > -100:
        stored = stored + 1000
        stored[stored >= 4096] -= 4096
        intercept = -1000.0
    return stored * slope + intercept


def _test_image(storage: PixelStorage, size: int = 32) -> np.ndarray:
    lo, hi = storage.hounsfield_range
    rng = np.random.default_rng(0)
    hu = rng.integers(max(lo, -1024), min(hi, 3071) + 1, size=(size, size)).astype(np.int16)
    hu.flat[:4] = [max(lo, -1024), -1000, 40, min(hi, 3000)]  # air, water-ish, brain, bone
    return hu


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("variant", sorted(STORAGE_VARIANTS))
def test_every_storage_round_trips_through_pydicom(tmp_path: Path, variant: str, syntax: str) -> None:
    storage = PixelStorage(**STORAGE_VARIANTS[variant], transfer_syntax_uid=syntax)
    series, study, patient = _descriptions(storage)
    hu = _test_image(storage)
    image = CTSliceDescription(sop_instance_uid=UID + "4", instance_number=3, image_position=(-8.0, -7.0, 12.5))
    path = tmp_path / "ID_0123456789.dcm"
    write_ct_slice(path, series, study, patient, image, hu)

    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ds.SOPInstanceUID == UID + "4" and ds.SeriesInstanceUID == UID + "1"
    assert ds.BitsStored == storage.bits_stored and ds.PixelRepresentation == storage.pixel_representation
    np.testing.assert_array_equal(_hounsfield_from_file(ds), hu)
    normal = np.cross([1.0, 0.0, 0.0], [0.0, 0.9659258, -0.2588190])
    assert float(ds.SliceLocation) == pytest.approx(float(np.dot([-8.0, -7.0, 12.5], normal)), abs=1e-3)


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("variant", sorted(STORAGE_VARIANTS))
def test_series_writer_writes_the_bytes_pydicom_writes(tmp_path: Path, variant: str, syntax: str) -> None:
    """The pre-encoded series elements must give byte for byte what dcmwrite gives."""
    storage = PixelStorage(**STORAGE_VARIANTS[variant], transfer_syntax_uid=syntax)
    writer = CTSeriesWriter(*_descriptions(storage))
    hu = _test_image(storage)
    for number, z in enumerate((12.5, 17.5), start=1):
        image = CTSliceDescription(sop_instance_uid=f"{UID}5{number}", instance_number=number, image_position=(-8.0, -7.0, z))
        writer.write(tmp_path / "fast.dcm", image, hu)
        writer.dataset(image, hu).save_as(tmp_path / "pydicom.dcm", enforce_file_format=True)
        assert (tmp_path / "fast.dcm").read_bytes() == (tmp_path / "pydicom.dcm").read_bytes()


def test_rsna_defect_is_really_defective_without_the_fix() -> None:
    storage = PixelStorage(**STORAGE_VARIANTS["rsna_defect"])
    hu = np.array([[-1000, -500, 0, 40, 1500]], dtype=np.int16)
    stored = storage.encode(hu).astype(np.int32)
    naive = stored * storage.rescale_slope + storage.rescale_intercept
    assert not np.array_equal(naive, hu)  # reading it the ordinary way gives wrong HU for negatives
    np.testing.assert_array_equal(stored[0, 2:], hu[0, 2:])  # positives are stored as they are
    assert storage.rescale_intercept > -100 and storage.bits_stored == 12 and storage.pixel_representation == 0


def test_storage_refuses_values_it_cannot_hold() -> None:
    storage = PixelStorage(**STORAGE_VARIANTS["unsigned12_1024"])
    with pytest.raises(ValueError, match="outside the storable"):
        storage.encode(np.array([[5000]], dtype=np.int16))
    with pytest.raises(ValueError, match="integers"):
        storage.encode(np.array([[1.5]]))


def test_descriptions_are_validated_at_construction() -> None:
    with pytest.raises(ValidationError, match="RSNA defect"):
        PixelStorage(bits_stored=16, pixel_representation=0, rescale_intercept=0.0, rsna_defect=True)
    with pytest.raises(ValidationError, match="valid DICOM UID"):
        CTSliceDescription(sop_instance_uid="1.02.3", instance_number=1, image_position=(0.0, 0.0, 0.0))
    storage = PixelStorage()
    series, _, _ = _descriptions(storage)
    with pytest.raises(ValidationError, match="orthonormal"):
        SeriesDescription(**{**series.model_dump(), "image_orientation": (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)})
    with pytest.raises(ValidationError, match="cover at least"):
        PixelStorage(bits_stored=12, pixel_representation=0, rescale_intercept=0.0)  # cannot hold air


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) not installed")
@pytest.mark.parametrize("syntax", SYNTAXES)
def test_dciodvfy_reports_no_errors(tmp_path: Path, syntax: str) -> None:
    for variant in STORAGE_VARIANTS:
        storage = PixelStorage(**STORAGE_VARIANTS[variant], transfer_syntax_uid=syntax)
        series, study, patient = _descriptions(storage)
        path = tmp_path / f"{variant}.dcm"
        image = CTSliceDescription(sop_instance_uid=UID + "5", instance_number=1, image_position=(0.0, 0.0, 0.0))
        write_ct_slice(path, series, study, patient, image, _test_image(storage))
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        report = result.stdout + result.stderr
        assert "CTImage" in report, report
        assert "Error" not in report, f"{variant}: {report}"
