"""A typed CT Image writer: descriptions validated at construction, written with pydicom.

In the spirit of highdicom: a series is described once (`CTSeriesDescription`: patient, study,
series, equipment, pixel storage), each slice by a `CTSliceDescription` (position, orientation,
UIDs). `write_ct_slice` turns one description and its Hounsfield units into a CT Image Storage
file holding the Patient, General Study, General Series, Frame of Reference, General Equipment,
General Image, Image Plane, Image Pixel, CT Image, VOI LUT and SOP Common modules.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.pixels import get_encoder
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import format_number_as_ds
from pydicom.uid import (
    RE_VALID_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)

from ichscan import __version__

TRANSFER_SYNTAXES: tuple[str, ...] = (str(ExplicitVRLittleEndian), str(RLELossless), str(JPEGLSLossless))
_FROZEN = ConfigDict(extra="forbid", frozen=True)
# The elements that differ between the slices of a series, in ascending tag order.
_PER_SLICE_TAGS: tuple[BaseTag, ...] = tuple(
    Tag(keyword)
    for keyword in ("SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "SliceLocation", "PixelData")
)


def _valid_uid(value: str) -> str:
    if len(value) > 64 or not RE_VALID_UID.match(value):
        raise ValueError(f"{value!r} is not a valid DICOM UID")
    return value


class PixelStorage(BaseModel):
    """How Hounsfield units become stored pixel values: HU = stored × slope + intercept.

    With ``rsna_defect`` the file reproduces the RSNA 12-bit defect (BitsStored 12,
    PixelRepresentation 0, intercept > −100): stored = HU mod 4096, so that the community fix
    (add 1000, subtract 4096 where ≥ 4096, intercept −1000) recovers HU in [−1000, 3095].
    """

    model_config = _FROZEN

    bits_stored: int = Field(16, ge=12, le=16)
    pixel_representation: Literal[0, 1] = 1
    rescale_intercept: float = -1024.0
    rescale_slope: Literal[1.0] = 1.0
    rsna_defect: bool = False
    transfer_syntax_uid: str = str(ExplicitVRLittleEndian)

    @field_validator("transfer_syntax_uid")
    @classmethod
    def _supported_syntax(cls, value: str) -> str:
        if value not in TRANSFER_SYNTAXES:
            raise ValueError(f"transfer syntax {value} not supported; use one of {TRANSFER_SYNTAXES}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PixelStorage:
        if self.rsna_defect and not (
            self.bits_stored == 12 and self.pixel_representation == 0 and self.rescale_intercept > -100
        ):
            raise ValueError("the RSNA defect needs BitsStored 12, PixelRepresentation 0, intercept > -100")
        lo, hi = self.hounsfield_range
        if lo > -1000 or hi < 1500:
            raise ValueError(f"storage can only hold HU {lo}..{hi}; it must cover at least -1000..1500")
        return self

    @property
    def stored_range(self) -> tuple[int, int]:
        """Smallest and largest representable stored value."""
        if self.pixel_representation:
            return -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        return 0, 2**self.bits_stored - 1

    @property
    def hounsfield_range(self) -> tuple[int, int]:
        """Smallest and largest Hounsfield unit this storage round-trips exactly."""
        if self.rsna_defect:
            return -1000, 3095
        lo, hi = self.stored_range
        return int(max(lo + self.rescale_intercept, -32768)), int(min(hi + self.rescale_intercept, 32767))

    def encode(self, hounsfield: np.ndarray) -> np.ndarray:
        """Stored pixel values (int16 or uint16) for integer `hounsfield`; raises when out of range."""
        hu = np.asarray(hounsfield)
        if not np.issubdtype(hu.dtype, np.integer):
            raise ValueError(f"Hounsfield units must be integers, got {hu.dtype}")
        lo, hi = self.hounsfield_range
        if hu.size and (int(hu.min()) < lo or int(hu.max()) > hi):
            raise ValueError(f"HU {int(hu.min())}..{int(hu.max())} outside the storable {lo}..{hi}")
        if self.rsna_defect:
            stored = np.mod(hu.astype(np.int32), 4096)
        else:
            stored = hu.astype(np.int32) - int(self.rescale_intercept)
        return stored.astype(np.int16 if self.pixel_representation else np.uint16)


class PatientDescription(BaseModel):
    """Patient module (and the age/sex of Patient Study)."""

    model_config = _FROZEN

    patient_id: str = Field(min_length=1, max_length=64)
    patient_name: str = Field(min_length=1, max_length=64)
    birth_date: dt.date
    sex: Literal["M", "F", "O"]
    age_years: int = Field(ge=0, le=120)


class StudyDescription(BaseModel):
    """General Study module."""

    model_config = _FROZEN

    study_instance_uid: str
    study_id: str = Field(min_length=1, max_length=16)
    accession_number: str = Field(max_length=16)
    study_datetime: dt.datetime
    description: str = Field("CT HEAD WO CONTRAST", max_length=64)

    _uid = field_validator("study_instance_uid")(_valid_uid)


class SeriesDescription(BaseModel):
    """General Series, Frame of Reference and General Equipment modules, plus acquisition."""

    model_config = _FROZEN

    series_instance_uid: str
    frame_of_reference_uid: str
    series_number: int = Field(ge=1)
    description: str = Field("HEAD 5mm", max_length=64)
    series_datetime: dt.datetime
    manufacturer: str = Field("ichscan phantom", max_length=64)
    model_name: str = Field("analytic head", max_length=64)
    software_version: str = Field(f"ichscan {__version__}", max_length=64)
    kvp: float = Field(120.0, gt=0)
    convolution_kernel: str = Field("H30s", max_length=16)
    gantry_tilt_deg: float = Field(0.0, ge=-45, le=45)
    rows: int = Field(ge=16)
    columns: int = Field(ge=16)
    pixel_spacing: tuple[float, float]
    slice_thickness: float = Field(gt=0)
    window_center: float = 40.0
    window_width: float = Field(80.0, gt=0)
    image_orientation: tuple[float, float, float, float, float, float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    storage: PixelStorage

    _uids = field_validator("series_instance_uid", "frame_of_reference_uid")(_valid_uid)

    @field_validator("image_orientation")
    @classmethod
    def _orthonormal(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        row, col = np.asarray(value[:3]), np.asarray(value[3:])
        if not (
            abs(np.linalg.norm(row) - 1) < 1e-4
            and abs(np.linalg.norm(col) - 1) < 1e-4
            and abs(float(row @ col)) < 1e-4
        ):
            raise ValueError(f"ImageOrientationPatient {value} is not two orthonormal vectors")
        return value

    @property
    def normal(self) -> np.ndarray:
        """Slice normal = row cosines × column cosines."""
        return np.cross(self.image_orientation[:3], self.image_orientation[3:])

    @field_validator("pixel_spacing")
    @classmethod
    def _positive_spacing(cls, value: tuple[float, float]) -> tuple[float, float]:
        if min(value) <= 0:
            raise ValueError(f"pixel spacing must be positive, got {value}")
        return value


class CTSliceDescription(BaseModel):
    """The per-image part: identity and position in patient coordinates (LPS, mm); the
    orientation is the series' (SliceLocation is written as position · series normal)."""

    model_config = _FROZEN

    sop_instance_uid: str
    instance_number: int = Field(ge=1)
    image_position: tuple[float, float, float]

    _uid = field_validator("sop_instance_uid")(_valid_uid)


def _ds_value(value: float) -> str:
    """The most precise decimal string (DS) of at most 16 characters."""
    return format_number_as_ds(float(value))


class CTSeriesWriter:
    """Writes the slices of one series: the modules shared by the series are built once (a
    template dataset); each slice adds only its identity, position and pixel data."""

    def __init__(self, series: SeriesDescription, study: StudyDescription, patient: PatientDescription) -> None:
        self.series = series
        self._template = _series_template(series, study, patient)
        self._segments = _encoded_segments(self._template)
        syntax = series.storage.transfer_syntax_uid
        self._encoder = None if syntax == ExplicitVRLittleEndian else get_encoder(syntax)

    def dataset(self, image: CTSliceDescription, hounsfield: np.ndarray) -> Dataset:
        """The CT Image Storage dataset of one slice (pixel data encoded as the storage says)."""
        series = self.series
        if hounsfield.shape != (series.rows, series.columns):
            raise ValueError(f"image shape {hounsfield.shape} != ({series.rows}, {series.columns})")
        stored = series.storage.encode(hounsfield)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = image.sop_instance_uid
        meta.TransferSyntaxUID = series.storage.transfer_syntax_uid
        meta.ImplementationVersionName = "ICHSCAN_PHANTOM"
        ds = Dataset(self._template)  # a new element dictionary sharing the series' elements
        ds.file_meta = meta
        ds.SOPInstanceUID = image.sop_instance_uid
        ds.InstanceNumber = image.instance_number
        ds.ImagePositionPatient = [_ds_value(v) for v in image.image_position]
        ds.SliceLocation = _ds_value(float(np.dot(image.image_position, series.normal)))
        if self._encoder is None:
            ds.PixelData = np.ascontiguousarray(stored, dtype=stored.dtype.newbyteorder("<")).tobytes()
            ds["PixelData"].VR = "OW"  # native 16-bit pixels (PS3.5 8.2)
        else:
            frame = self._encoder.encode(
                stored, rows=series.rows, columns=series.columns, samples_per_pixel=1, bits_allocated=16,
                bits_stored=series.storage.bits_stored, pixel_representation=series.storage.pixel_representation,
                photometric_interpretation="MONOCHROME2", number_of_frames=1,
            )
            ds.PixelData = encapsulate([frame])
            ds["PixelData"].VR = "OB"
            ds["PixelData"].is_undefined_length = True  # encapsulated (PS3.5 A.4)
        return ds

    def write(self, path: str | os.PathLike[str], image: CTSliceDescription, hounsfield: np.ndarray) -> None:
        """Write one slice as a DICOM Part 10 file at `path` (the caller makes it atomic).

        The bytes are those of `dataset(...).save_as(path, enforce_file_format=True)`, but the
        elements shared by the series were encoded once (by pydicom) in `__init__`: per slice,
        pydicom encodes only the file meta and the five per-slice elements.
        """
        ds = self.dataset(image, hounsfield)
        fp = _explicit_little_endian_buffer()
        fp.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
        for segment, tag in zip(self._segments, _PER_SLICE_TAGS):
            fp.write(segment)
            write_data_element(fp, ds[tag])
        fp.write(self._segments[-1])
        with open(path, "wb") as out:
            out.write(fp.getvalue())


def _explicit_little_endian_buffer() -> DicomBytesIO:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = False, True
    return fp


def _encoded_segments(template: Dataset) -> list[bytes]:
    """The template's elements encoded (explicit VR little endian) in the runs that lie before,
    between and after the per-slice tags: len(_PER_SLICE_TAGS) + 1 byte strings."""
    bounds = (*_PER_SLICE_TAGS, Tag(0xFFFF, 0xFFFF))
    segments: list[bytes] = []
    start = Tag(0, 0)
    for stop in bounds:
        part = Dataset()
        for element in template:
            if start <= element.tag < stop:
                part.add(element)
        fp = _explicit_little_endian_buffer()
        write_dataset(fp, part, parent_encoding=template.get("SpecificCharacterSet"))
        segments.append(fp.getvalue())
        start = stop
    return segments


def _series_template(series: SeriesDescription, study: StudyDescription, patient: PatientDescription) -> Dataset:
    """Every element shared by the slices of a series (the per-slice ones are added later)."""
    storage = series.storage
    ds = Dataset()
    # SOP Common
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.InstanceCreationDate = series.series_datetime.strftime("%Y%m%d")
    ds.InstanceCreationTime = series.series_datetime.strftime("%H%M%S")
    # Patient
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    # General Study + Patient Study
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_datetime.strftime("%Y%m%d")
    ds.StudyTime = study.study_datetime.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.description
    ds.PatientAge = f"{patient.age_years:03d}Y"
    # General Series
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.SeriesNumber = series.series_number
    ds.SeriesDate = series.series_datetime.strftime("%Y%m%d")
    ds.SeriesTime = series.series_datetime.strftime("%H%M%S")
    ds.SeriesDescription = series.description
    ds.BodyPartExamined = "HEAD"
    ds.PatientPosition = "HFS"
    # Frame of Reference
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = series.manufacturer
    ds.ManufacturerModelName = series.model_name
    ds.SoftwareVersions = series.software_version
    # General Image
    ds.ContentDate = series.series_datetime.strftime("%Y%m%d")
    ds.ContentTime = series.series_datetime.strftime("%H%M%S")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"
    # Image Plane (position and slice location are per slice)
    ds.PixelSpacing = [_ds_value(v) for v in series.pixel_spacing]
    ds.ImageOrientationPatient = [_ds_value(v) for v in series.image_orientation]
    ds.SliceThickness = _ds_value(series.slice_thickness)
    ds.SpacingBetweenSlices = _ds_value(series.slice_thickness)
    # CT Image
    ds.AcquisitionNumber = 1
    ds.KVP = _ds_value(series.kvp)
    ds.GantryDetectorTilt = _ds_value(series.gantry_tilt_deg)
    ds.ConvolutionKernel = series.convolution_kernel
    ds.RescaleIntercept = _ds_value(storage.rescale_intercept)
    ds.RescaleSlope = _ds_value(storage.rescale_slope)
    ds.RescaleType = "HU"
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = series.rows, series.columns
    ds.BitsAllocated = 16
    ds.BitsStored = storage.bits_stored
    ds.HighBit = storage.bits_stored - 1
    ds.PixelRepresentation = storage.pixel_representation
    # VOI LUT
    ds.WindowCenter = _ds_value(series.window_center)
    ds.WindowWidth = _ds_value(series.window_width)
    return ds


def build_ct_dataset(
    series: SeriesDescription,
    study: StudyDescription,
    patient: PatientDescription,
    image: CTSliceDescription,
    hounsfield: np.ndarray,
) -> Dataset:
    """The CT Image Storage dataset of one slice (see `CTSeriesWriter` to write many)."""
    return CTSeriesWriter(series, study, patient).dataset(image, hounsfield)


def write_ct_slice(
    path: str | os.PathLike[str],
    series: SeriesDescription,
    study: StudyDescription,
    patient: PatientDescription,
    image: CTSliceDescription,
    hounsfield: np.ndarray,
) -> None:
    """Write one CT Image Storage file (Part 10) at `path` (the caller makes it atomic)."""
    CTSeriesWriter(series, study, patient).write(path, image, hounsfield)
