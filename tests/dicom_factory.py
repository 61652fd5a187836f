"""Small CT slices written with pydicom for the tests: every oddity the readers must survive."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

# A fixture of tests/dicom/conftest.py: writes one series and returns its file paths.
SeriesWriter = Callable[..., list[Path]]

AXIAL: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def write_ct_slice(
    path: Path,
    stored: np.ndarray,
    *,
    position: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = AXIAL,
    slope: float = 1.0,
    intercept: float = -1024.0,
    bits_stored: int = 16,
    pixel_representation: int | None = None,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str = ExplicitVRLittleEndian,
    patient_id: str = "PAT0",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    window_center: object = 40,
    window_width: object = 80,
    instance_number: int = 1,
    pixel_spacing: Sequence[float] = (0.5, 0.5),
    modality: str = "CT",
    extra: dict[str, object] | None = None,
    without: Sequence[str] = (),
) -> Path:
    """Write one CT slice whose *stored* values are `stored` (2-D integer array); return `path`.

    `pixel_representation` defaults to the sign of `stored.dtype`. A compressed
    `transfer_syntax` (RLE, JPEG-LS, JPEG 2000 lossless) is encoded by pydicom's plugins.
    `without` names header keywords to leave out (e.g. a missing required tag).
    """
    stored = np.asarray(stored)
    signed = np.issubdtype(stored.dtype, np.signedinteger)
    if pixel_representation is None:
        pixel_representation = int(signed)
    sop_uid = sop_uid or generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in pixel_spacing]
    ds.SliceThickness = 5.0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.WindowCenter = window_center
    ds.WindowWidth = window_width
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = pixel_representation
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    for keyword in without:
        delattr(ds, keyword)

    dtype = np.int16 if pixel_representation else np.uint16
    pixels = stored.astype(dtype)
    if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian):
        little = transfer_syntax != ExplicitVRBigEndian
        ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<" if little else ">")).tobytes()
        meta.TransferSyntaxUID = transfer_syntax
        ds.save_as(
            path,
            enforce_file_format=True,
            implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
            little_endian=little,
        )
    else:
        ds.compress(transfer_syntax, pixels, generate_instance_uid=False)
        ds.save_as(path, enforce_file_format=True)
    return Path(path)
