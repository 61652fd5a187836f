"""Reading the header of one CT slice file, fast and tolerant, into one flat row.

Speed: pydicom's element parser (`data_element_generator`) walks the file, but only the tags in
`HEADER_TAGS` are read (the others are skipped with a seek), no `Dataset` is built and reading
stops at Pixel Data, whose length and offset are checked against the file size (truncation). This
is ~3x faster than `dcmread(stop_before_pixels=True)` plus attribute access (see
`docs/bench/index.md`).

Tolerance: values are decoded from the raw bytes by `numbers_of` / `text_of`, which accept
multi-valued tags (first value kept where one is wanted), DS strings with leading zeros or blanks,
odd text such as ``"[36, 36]"``, and binary integers whatever VR the writer declared. Optional tags
that are absent or unreadable become NaN; an absent or empty PatientID (DICOM type 2) is kept as
"" (grouping by patient then puts such slices together, never splitting one patient).

Every problem with a file is raised as `HeaderError` (a reason `"<kind>: <detail>"`, one line);
`read_headers` turns them into error rows so one bad file never stops an index.
"""

from __future__ import annotations

import math
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from io import BytesIO
from pathlib import Path
from typing import BinaryIO, Final

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.filereader import data_element_generator
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    LegacyConvertedEnhancedCTImageStorage,
)

from ichscan.dicom.limits import DEFAULT_LIMITS, LimitError, PixelLimits
from ichscan.files import (
    NotRegularFile,
    is_safe_component,
    is_utf8_path,
    open_regular,
    printable_path,
)


class ErrorKind(StrEnum):
    """Why a file is not in the manifest; the prefix of every error reason."""

    NOT_DICOM = "not DICOM"
    UNREADABLE = "unreadable"
    TRUNCATED = "truncated"
    NOT_CT = "not CT"
    UNSUPPORTED = "unsupported"
    MISSING_TAG = "missing tag"
    INVALID_TAG = "invalid tag"
    DUPLICATE_IMAGE = "duplicate image"
    INCONSISTENT_SERIES = "inconsistent series"
    MIXED_MATRIX = "mixed matrix"
    MIXED_ORIENTATION = "mixed orientation"
    DUPLICATE_POSITION = "duplicate position"
    LIMIT = "limit"
    NOT_REGULAR = "not a regular file"
    NAME = "file name"


def reason(kind: ErrorKind, detail: str) -> str:
    """The one-line error reason `"<kind>: <detail>"` (newlines flattened)."""
    return f"{kind.value}: {' '.join(detail.split())}"


def reason_kind(reasons: pd.Series) -> pd.Series:
    """The kind (text before the first colon) of each error reason, for counting."""
    return reasons.str.split(":", n=1).str[0]


class HeaderError(Exception):
    """A file that cannot be indexed; `str(error)` is its one-line reason."""

    def __init__(self, kind: ErrorKind, detail: str) -> None:
        super().__init__(reason(kind, detail))
        self.kind = kind


# Tags read from every file: keyword → whether the slice cannot be indexed without it.
REQUIRED_TAGS: Final[tuple[str, ...]] = (
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "ImageOrientationPatient",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "PhotometricInterpretation",
)
# Optional: absent or unreadable → NaN / "". ImagePositionPatient and the rescale have fallbacks
# (slice order by InstanceNumber/SliceLocation, `ichscan.dicom.hounsfield.default_rescale`).
OPTIONAL_TAGS: Final[tuple[str, ...]] = (
    "ImagePositionPatient",
    "RescaleSlope",
    "RescaleIntercept",
    "InstanceNumber",
    "SliceLocation",
    "SOPClassUID",
    "Modality",
    "PatientID",
    "PixelSpacing",
    "SliceThickness",
    "SamplesPerPixel",
    "NumberOfFrames",
    "WindowCenter",
    "WindowWidth",
)
HEADER_TAGS: Final[dict[str, int]] = {kw: int(Tag(kw)) for kw in REQUIRED_TAGS + OPTIONAL_TAGS}
_HEADER_TAG_LIST: Final[list[int]] = list(HEADER_TAGS.values())
_DICTIONARY_VR: Final[dict[int, str]] = {tag: dictionary_VR(tag) for tag in HEADER_TAGS.values()}
_TRANSFER_SYNTAX_TAG: Final[int] = int(Tag("TransferSyntaxUID"))
_PIXEL_DATA_TAG: Final[int] = int(Tag("PixelData"))
_FLOAT_PIXEL_TAGS: Final[dict[int, str]] = {
    int(Tag("FloatPixelData")): "FloatPixelData",
    int(Tag("DoubleFloatPixelData")): "DoubleFloatPixelData",
}
_LENGTH_32_VRS: Final[frozenset[str]] = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
_CT_SOP_CLASSES: Final[frozenset[str]] = frozenset(
    {CTImageStorage, EnhancedCTImageStorage, LegacyConvertedEnhancedCTImageStorage}
)
_NATIVE_SYNTAXES: Final[frozenset[str]] = frozenset(
    {
        ImplicitVRLittleEndian,
        "1.2.840.10008.1.2.1",
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    }
)
_BINARY_INTEGER_VRS: Final[dict[str, str]] = {"US": "H", "SS": "h", "UL": "L", "SL": "l"}
_NUMBER: Final[re.Pattern[str]] = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_RSNA_IMAGE_ID: Final[re.Pattern[str]] = re.compile(r"ID_[0-9a-fA-F]+")
_SEQUENCE_DELIMITER_LE: Final[bytes] = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"

# The columns of a header row, in order, and their dtypes (`read_headers` output).
HEADER_COLUMNS: Final[dict[str, str]] = {
    "path": "str",
    "image_id": "str",
    "sop_instance_uid": "str",
    "patient_id": "str",
    "study_instance_uid": "str",
    "series_instance_uid": "str",
    "ipp_x": "float64",
    "ipp_y": "float64",
    "ipp_z": "float64",
    "row_x": "float64",
    "row_y": "float64",
    "row_z": "float64",
    "col_x": "float64",
    "col_y": "float64",
    "col_z": "float64",
    "rows": "int32",
    "columns": "int32",
    "pixel_spacing_row": "float32",
    "pixel_spacing_col": "float32",
    "slice_thickness": "float32",
    "rescale_slope": "float64",
    "rescale_intercept": "float64",
    "bits_allocated": "int16",
    "bits_stored": "int16",
    "pixel_representation": "int16",
    "photometric_interpretation": "str",
    "transfer_syntax_uid": "str",
    "window_center": "float32",
    "window_width": "float32",
    "instance_number": "float64",
    "slice_location": "float64",
}
UID_KEYWORDS: Final[tuple[str, ...]] = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


def image_id_for(path: str | os.PathLike[str], sop_instance_uid: str) -> str:
    """The RSNA image id: the file stem when it looks like ``ID_<hex>``, else the SOPInstanceUID."""
    stem = Path(path).name.split(".", 1)[0]
    return stem if _RSNA_IMAGE_ID.fullmatch(stem) else sop_instance_uid


def text_of(raw: RawDataElement | None) -> str:
    """The text of a string element, first value when multi-valued, blanks and NULs stripped."""
    if raw is None or not raw.value:
        return ""
    value = raw.value
    if not isinstance(value, bytes):  # already decoded by pydicom (not expected, but harmless)
        return str(value).strip()
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("latin-1")
    return text.split("\\", 1)[0].strip(" \x00\t\r\n")


def numbers_of(raw: RawDataElement | None) -> list[float]:
    """Every number in an element: binary integers (US/SS/UL/SL) or decimal text (DS/IS or odd).

    The VR written in the file decides (the dictionary's when implicit or UN), so a Rows written as
    IS text or a WindowCenter written as ``"[36, 36]"`` still reads. Empty → ``[]``.
    """
    if raw is None or not raw.value:
        return []
    value = raw.value
    vr = raw.VR if raw.VR not in (None, "UN") else _DICTIONARY_VR.get(int(raw.tag), "UN")
    code = _BINARY_INTEGER_VRS.get(vr)
    if code is not None:
        size = struct.calcsize(code)
        usable = len(value) - len(value) % size
        endian = "<" if raw.is_little_endian else ">"
        return [float(v) for (v,) in struct.iter_unpack(endian + code, value[:usable])]
    text = value.decode("latin-1")
    try:
        return [float(part) for part in text.split("\\")]
    except ValueError:
        return [float(match) for match in _NUMBER.findall(text)]


@dataclass(frozen=True)
class PixelDataInfo:
    """Where the Pixel Data element's value sits in the data set stream, and how long it is."""

    value_offset: int
    length: int | None  # None: undefined length (encapsulated, compressed)
    end: int  # stream offset just after the element (after the sequence delimiter if encapsulated)
    fragment_bytes: int | None = None  # encapsulated: bytes in the image fragments (no offset table)


def _read_elements(
    stream: BinaryIO, implicit: bool, little: bool, stop: Callable[[int], bool], tags: list[int]
) -> tuple[dict[int, RawDataElement], tuple[int, str | None, int] | None]:
    """Raw top-level elements among `tags` up to the first tag where `stop(tag)`; and that
    element's (tag, VR, length), or None when the data set ended first.

    pydicom's generator ends quietly at end of file, even inside an element; here a data set
    that does not end exactly where its last element does raises `HeaderError(TRUNCATED)`.
    """
    start = stream.tell()
    end = stream.seek(0, os.SEEK_END)
    stream.seek(start)
    last = [0, start, 0]  # tag, value offset, length of the last element walked over
    stopped: list[tuple[int, str | None, int]] = []
    tell = stream.tell

    def stop_when(tag: int, vr: str | None, length: int) -> bool:
        if stop(tag):
            stopped.append((int(tag), vr, length))
            return True
        offset = tell()
        if length != 0xFFFFFFFF and offset + length > end:  # before pydicom reads (allocates) it
            raise HeaderError(
                ErrorKind.TRUNCATED,
                f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares {length} bytes, the file holds {end - offset}",
            )
        last[:] = (tag, offset, length)
        return False

    elements = {
        int(raw.tag): raw
        for raw in data_element_generator(
            stream, implicit, little, stop_when=stop_when, specific_tags=tags
        )
    }
    if not stopped and last[2] != 0xFFFFFFFF:
        end = stream.seek(0, os.SEEK_END)
        if last[1] + last[2] != end:
            tag = f"({last[0] >> 16:04X},{last[0] & 0xFFFF:04X})"
            raise HeaderError(ErrorKind.TRUNCATED, f"the file ends inside element {tag}")
    return elements, stopped[0] if stopped else None


class _InflatedHead(BytesIO):
    """The first bytes of an inflated data set, standing for all of it: seeking to the end gives
    the whole inflated size (so Pixel Data can be checked against it) without holding it."""

    def __init__(self, head: bytes, size: int) -> None:
        super().__init__(head)
        self.size = size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_END:
            return super().seek(self.size + offset - len(self.getbuffer()), os.SEEK_END)
        return super().seek(offset, whence)


def _inflate(fp: BinaryIO, limit: int, keep: int | None = None) -> BytesIO:
    """The deflated data set inflated, refused once it would exceed `limit` bytes (a deflate
    bomb costs at most `limit` bytes of memory, never what it expands to). With `keep`, only
    the first `keep` bytes are held (the header) and the rest is only counted."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    parts: list[bytes] = []
    size = kept = 0
    while not inflater.eof:
        chunk = inflater.unconsumed_tail or fp.read(1 << 20)
        if not chunk:
            break
        part = inflater.decompress(chunk, min(1 << 20, limit + 1 - size))
        size += len(part)
        if size > limit:
            raise LimitError(f"the deflated data set inflates to more than {limit} bytes")
        if keep is None or kept < keep:
            part = part if keep is None else part[: keep - kept]
            parts.append(part)
            kept += len(part)
    if keep is not None:
        return _InflatedHead(b"".join(parts), size)
    return BytesIO(b"".join(parts))  # BytesIO shares the joined bytes: no second copy


def _open_dataset(
    fp: BinaryIO, limits: PixelLimits = DEFAULT_LIMITS, *, all_meta: bool = False
) -> tuple[BinaryIO, bool, bool, str, dict[int, RawDataElement]]:
    """Check the preamble, read the file meta; return (data set stream, implicit, little,
    transfer syntax, raw file meta elements: all with `all_meta`, else the transfer syntax).
    A deflated data set is inflated within `limits`."""
    preamble = fp.read(132)
    if len(preamble) < 132 or preamble[128:132] != b"DICM":
        raise HeaderError(ErrorKind.NOT_DICOM, "no 'DICM' prefix at byte 128")
    meta, _ = _read_elements(
        fp, False, True, lambda tag: tag >> 16 != 2, None if all_meta else [_TRANSFER_SYNTAX_TAG]
    )
    syntax = text_of(meta.get(_TRANSFER_SYNTAX_TAG))
    if not syntax:
        raise HeaderError(ErrorKind.MISSING_TAG, "TransferSyntaxUID (file meta)")
    stream = fp
    if syntax == DeflatedExplicitVRLittleEndian:
        # a Dataset needs every byte; the header scan only the header (the rest is counted)
        stream = _inflate(fp, limits.max_dataset_bytes, None if all_meta else limits.max_header_bytes + 64)
    little = syntax != ExplicitVRBigEndian
    # Like pydicom: trust the bytes over the declared syntax for implicit/explicit VR.
    start = stream.tell()
    head = stream.read(6)
    stream.seek(start)
    implicit = syntax == ImplicitVRLittleEndian
    if len(head) == 6:
        implicit = not (65 <= head[4] <= 90 and 65 <= head[5] <= 90)
    return stream, implicit, little, syntax, meta


_ITEM_TAG_LE: Final[bytes] = b"\xfe\xff\x00\xe0"


def _encapsulated_end(stream: BinaryIO, value_offset: int, file_end: int) -> tuple[int, int]:
    """Walk the items of encapsulated Pixel Data (headers only, values skipped by seeking):
    (offset after the sequence delimiter, bytes in the fragments after the offset table).
    `HeaderError(TRUNCATED)` when the file ends first, `UNREADABLE` on a malformed item."""
    position = value_offset
    fragments = 0
    first = True
    while True:
        if position + 8 > file_end:
            raise HeaderError(ErrorKind.TRUNCATED, "encapsulated PixelData has no end")
        stream.seek(position)
        header = stream.read(8)
        if header == _SEQUENCE_DELIMITER_LE:
            return position + 8, fragments
        if header[:4] != _ITEM_TAG_LE:
            raise HeaderError(ErrorKind.UNREADABLE, f"encapsulated PixelData: no item at byte {position}")
        (length,) = struct.unpack("<I", header[4:])
        if length == 0xFFFFFFFF:
            raise HeaderError(ErrorKind.UNREADABLE, "encapsulated PixelData: item of undefined length")
        position += 8 + length
        if not first:
            fragments += length
        first = False


def _pixel_data_info(
    stream: BinaryIO, value_offset: int, length: int, little: bool
) -> PixelDataInfo:
    """Where Pixel Data ends; `HeaderError(TRUNCATED)` when the file ends before it does."""
    file_end = stream.seek(0, os.SEEK_END)
    if length != 0xFFFFFFFF:
        if value_offset + length > file_end:
            raise HeaderError(
                ErrorKind.TRUNCATED,
                f"PixelData needs {length} bytes, the file holds {file_end - value_offset}",
            )
        return PixelDataInfo(value_offset, length, value_offset + length)
    if not little:
        raise HeaderError(ErrorKind.UNSUPPORTED, "encapsulated PixelData in a big endian data set")
    end, fragments = _encapsulated_end(stream, value_offset, file_end)
    return PixelDataInfo(value_offset, None, end, fragments)


def _is_pixel_data(tag: int) -> bool:
    return tag == _PIXEL_DATA_TAG or tag in _FLOAT_PIXEL_TAGS


@dataclass
class Scan:
    """One file's data set, located: the raw elements among the wanted tags, the transfer
    syntax, the data set stream (inflated when deflated) and where its Pixel Data is."""

    elements: dict[int, RawDataElement]
    syntax: str
    pixels: PixelDataInfo | None
    stream: BinaryIO
    start: int  # stream offset of the first data set element
    implicit: bool
    little: bool
    meta: dict[int, RawDataElement]


def _scan(
    fp: BinaryIO,
    tags: list[int] | None = None,
    limits: PixelLimits = DEFAULT_LIMITS,
    *,
    all_meta: bool = False,
) -> Scan:
    """The raw elements among `tags` (default `HEADER_TAGS`), the syntax and where Pixel Data is."""
    stream, implicit, little, syntax, meta = _open_dataset(fp, limits, all_meta=all_meta)
    start = stream.tell()
    elements, pixels = _read_elements(
        stream, implicit, little, _is_pixel_data, _HEADER_TAG_LIST if tags is None else tags
    )
    if pixels is None:
        return Scan(elements, syntax, None, stream, start, implicit, little, meta)
    tag, vr, length = pixels
    if tag in _FLOAT_PIXEL_TAGS:
        raise HeaderError(
            ErrorKind.UNSUPPORTED, f"{_FLOAT_PIXEL_TAGS[tag]} (not integer CT pixels)"
        )
    header = 8 if implicit or vr not in _LENGTH_32_VRS else 12
    value_offset = stream.tell() + header
    if value_offset - start > limits.max_header_bytes:
        raise LimitError(
            f"{value_offset - start} bytes of header before PixelData (limit {limits.max_header_bytes})"
        )
    info = _pixel_data_info(stream, value_offset, length, little)
    return Scan(elements, syntax, info, stream, start, implicit, little, meta)


@contextmanager
def as_header_errors(part: str) -> Iterator[None]:
    """Turn every failure of reading a file into one `HeaderError` (kind + one-line reason).

    `part` names what was being read in the truncation message ("header", "data set"). Memory
    errors pass through: they are the environment's, not the file's.
    """
    try:
        yield
    except HeaderError:
        raise
    except LimitError as error:
        raise HeaderError(ErrorKind.LIMIT, str(error)) from error
    except NotRegularFile as error:
        raise HeaderError(ErrorKind.NOT_REGULAR, str(error)) from error
    except OSError as error:
        raise HeaderError(ErrorKind.UNREADABLE, error.strerror or str(error)) from error
    except (EOFError, struct.error) as error:
        raise HeaderError(ErrorKind.TRUNCATED, f"{part} ends early ({error})") from error
    except MemoryError:
        raise
    except Exception as error:  # pydicom raises many kinds on garbage; all mean "unreadable"
        raise HeaderError(ErrorKind.UNREADABLE, f"{type(error).__name__}: {error}") from error


def _scan_file(
    path: str, tags: list[int] | None = None, limits: PixelLimits = DEFAULT_LIMITS
) -> Scan:
    """`_scan` of the file at `path` (its stream read into memory only when inflated), every
    failure turned into a `HeaderError`."""
    with as_header_errors("header"), open_regular(path) as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on odd values we decode ourselves
        scan = _scan(fp, tags, limits)
        scan.stream = BytesIO() if scan.stream is fp else scan.stream  # fp closes here
        return scan


def _has_value(raw: RawDataElement | None) -> bool:
    return raw is not None and bool(raw.value)


def _first(values: list[float]) -> float:
    return values[0] if values else math.nan


def _require_numbers(elements: dict[int, RawDataElement], keyword: str, count: int) -> list[float]:
    values = numbers_of(elements.get(HEADER_TAGS[keyword]))
    if len(values) < count or not all(math.isfinite(v) for v in values[:count]):
        raw = elements.get(HEADER_TAGS[keyword])
        shown = (
            repr(raw.value.decode("latin-1"))
            if raw is not None and isinstance(raw.value, bytes)
            else "none"
        )
        raise HeaderError(
            ErrorKind.INVALID_TAG, f"{keyword} needs {count} finite number(s), found {shown}"
        )
    return values[:count]


def _check_is_ct(elements: dict[int, RawDataElement]) -> None:
    """CT means: Modality CT (or absent) and SOP class a CT image class (or absent), not both absent.

    So RSNA files (no SOPClassUID) pass, and CT-modality secondary captures or reports do not.
    """
    modality = text_of(elements.get(HEADER_TAGS["Modality"])).upper()
    sop_class = text_of(elements.get(HEADER_TAGS["SOPClassUID"]))
    if modality and modality != "CT":
        raise HeaderError(ErrorKind.NOT_CT, f"Modality is {modality!r}")
    if sop_class and sop_class not in _CT_SOP_CLASSES:
        raise HeaderError(ErrorKind.NOT_CT, f"SOP class {UID(sop_class).name}")
    if not modality and not sop_class:
        raise HeaderError(ErrorKind.MISSING_TAG, "Modality and SOPClassUID (cannot tell it is CT)")


def check_pixel_data(
    pixels: PixelDataInfo,
    syntax: str,
    rows: int,
    columns: int,
    bits_allocated: int,
    frames: int = 1,
    samples: int = 1,
    limits: PixelLimits = DEFAULT_LIMITS,
) -> None:
    """The declared image against `limits` and against the Pixel Data bytes present, before any
    decoding: `HeaderError` (LIMIT, TRUNCATED or INVALID_TAG) naming the limit or the mismatch."""
    try:
        decoded = limits.check_geometry(rows, columns, bits_allocated, frames, samples)
        native = syntax in _NATIVE_SYNTAXES
        if native != (pixels.length is not None):
            what = "encapsulated" if native else "native"
            raise HeaderError(ErrorKind.INVALID_TAG, f"{what} PixelData in transfer syntax {syntax}")
        if pixels.length is not None:
            if pixels.length < decoded:
                raise HeaderError(
                    ErrorKind.TRUNCATED,
                    f"PixelData holds {pixels.length} bytes, {rows}x{columns}x{bits_allocated} bits need {decoded}",
                )
            limits.check_native_length(pixels.length, decoded)
        else:
            limits.check_encapsulated_length(pixels.fragment_bytes or 0, decoded)
    except LimitError as error:
        raise HeaderError(ErrorKind.LIMIT, str(error)) from error


def _optional_numbers(elements: dict[int, RawDataElement], keyword: str, count: int) -> list[float]:
    """`count` numbers of an optional tag: NaNs when absent or empty, INVALID_TAG when unreadable."""
    if not _has_value(elements.get(HEADER_TAGS[keyword])):
        return [math.nan] * count
    return _require_numbers(elements, keyword, count)


def read_header(
    path: str | os.PathLike[str], limits: PixelLimits = DEFAULT_LIMITS
) -> dict[str, object]:
    """Read one file's header into a row of `HEADER_COLUMNS`; raise `HeaderError` if unusable."""
    path = os.fspath(path)
    if not is_utf8_path(path):  # it could not be stored in the manifest nor found again from it
        raise HeaderError(ErrorKind.NAME, "not valid UTF-8 (rename the file)")
    scan = _scan_file(path, limits=limits)
    elements, syntax, pixels = scan.elements, scan.syntax, scan.pixels
    _check_is_ct(elements)
    missing = [kw for kw in REQUIRED_TAGS if not _has_value(elements.get(HEADER_TAGS[kw]))]
    if pixels is None:
        missing.append("PixelData")
    if missing:
        raise HeaderError(ErrorKind.MISSING_TAG, ", ".join(missing))
    uids = {keyword: text_of(elements[HEADER_TAGS[keyword]]) for keyword in UID_KEYWORDS}
    for keyword, uid in uids.items():  # they name files and folders later: never a path
        if not is_safe_component(uid):
            raise HeaderError(ErrorKind.INVALID_TAG, f"{keyword} {uid[:80]!r} is not a UID")

    frames = _first(numbers_of(elements.get(HEADER_TAGS["NumberOfFrames"])))
    if frames > 1:
        raise HeaderError(ErrorKind.UNSUPPORTED, f"multi-frame image (NumberOfFrames={frames:g})")
    samples = _first(numbers_of(elements.get(HEADER_TAGS["SamplesPerPixel"])))
    if samples > 1:
        raise HeaderError(ErrorKind.UNSUPPORTED, f"SamplesPerPixel={samples:g} (not greyscale)")
    photometric = text_of(elements.get(HEADER_TAGS["PhotometricInterpretation"])).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise HeaderError(ErrorKind.UNSUPPORTED, f"PhotometricInterpretation {photometric!r}")

    ipp = _optional_numbers(elements, "ImagePositionPatient", 3)
    iop = _require_numbers(elements, "ImageOrientationPatient", 6)
    rows, columns, bits_allocated, bits_stored, pixel_representation = (
        int(_require_numbers(elements, kw, 1)[0])
        for kw in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation")
    )
    slope = _optional_numbers(elements, "RescaleSlope", 1)[0]
    intercept = _optional_numbers(elements, "RescaleIntercept", 1)[0]
    if rows <= 0 or columns <= 0:
        raise HeaderError(ErrorKind.INVALID_TAG, f"matrix {rows}x{columns}")
    if bits_allocated not in (8, 16, 32) or not 0 < bits_stored <= bits_allocated:
        raise HeaderError(
            ErrorKind.INVALID_TAG, f"BitsAllocated={bits_allocated}, BitsStored={bits_stored}"
        )
    if pixel_representation not in (0, 1):
        raise HeaderError(ErrorKind.INVALID_TAG, f"PixelRepresentation={pixel_representation}")
    if slope == 0:
        raise HeaderError(ErrorKind.INVALID_TAG, "RescaleSlope=0")
    check_pixel_data(pixels, syntax, rows, columns, bits_allocated, limits=limits)

    spacing = numbers_of(elements.get(HEADER_TAGS["PixelSpacing"]))
    sop_instance_uid = uids["SOPInstanceUID"]
    return {
        "path": os.path.abspath(path),
        "image_id": image_id_for(path, sop_instance_uid),
        "sop_instance_uid": sop_instance_uid,
        "patient_id": text_of(elements.get(HEADER_TAGS["PatientID"])),
        "study_instance_uid": uids["StudyInstanceUID"],
        "series_instance_uid": uids["SeriesInstanceUID"],
        "ipp_x": ipp[0],
        "ipp_y": ipp[1],
        "ipp_z": ipp[2],
        "row_x": iop[0],
        "row_y": iop[1],
        "row_z": iop[2],
        "col_x": iop[3],
        "col_y": iop[4],
        "col_z": iop[5],
        "rows": rows,
        "columns": columns,
        "pixel_spacing_row": spacing[0] if len(spacing) >= 1 else math.nan,
        "pixel_spacing_col": spacing[1] if len(spacing) >= 2 else math.nan,
        "slice_thickness": _first(numbers_of(elements.get(HEADER_TAGS["SliceThickness"]))),
        "rescale_slope": slope,
        "rescale_intercept": intercept,
        "bits_allocated": bits_allocated,
        "bits_stored": bits_stored,
        "pixel_representation": pixel_representation,
        "photometric_interpretation": photometric,
        "transfer_syntax_uid": syntax,
        "window_center": _first(numbers_of(elements.get(HEADER_TAGS["WindowCenter"]))),
        "window_width": _first(numbers_of(elements.get(HEADER_TAGS["WindowWidth"]))),
        "instance_number": _first(numbers_of(elements.get(HEADER_TAGS["InstanceNumber"]))),
        "slice_location": _first(numbers_of(elements.get(HEADER_TAGS["SliceLocation"]))),
    }


HeaderChunk = tuple[dict[str, np.ndarray], list[tuple[str, str]]]


def header_frame(columns: Mapping[str, ArrayLike] | None = None) -> pd.DataFrame:
    """A header table with the `HEADER_COLUMNS` dtypes from column arrays (None: empty table)."""
    columns = columns if columns is not None else {name: [] for name in HEADER_COLUMNS}
    return pd.DataFrame(
        {
            name: pd.array(np.asarray(columns[name]), dtype=dtype)
            for name, dtype in HEADER_COLUMNS.items()
        }
    )


def error_frame(errors: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """`(path, reason)` pairs as the error table (columns `path, reason`)."""
    pairs = list(errors)
    return pd.DataFrame(
        {
            "path": pd.array([path for path, _ in pairs], dtype="str"),
            "reason": pd.array([text for _, text in pairs], dtype="str"),
        }
    )


def read_header_chunk(paths: Sequence[str | os.PathLike[str]]) -> HeaderChunk:
    """Read many headers into column arrays (cheap to pickle and to join) and `(path, reason)`
    error pairs; never raises per file. The unit of work of the index's worker processes.
    """
    rows: list[dict[str, object]] = []
    errors: list[tuple[str, str]] = []
    for path in paths:
        try:
            rows.append(read_header(path))
        except HeaderError as error:
            errors.append((printable_path(os.path.abspath(path)), str(error)))
    columns = {
        name: np.array([row[name] for row in rows], dtype=object if dtype == "str" else dtype)
        for name, dtype in HEADER_COLUMNS.items()
    }
    return columns, errors


def join_chunks(chunks: Sequence[HeaderChunk]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The header table and the error table of many chunks, in chunk order."""
    if not chunks:
        return header_frame(), error_frame([])
    columns = {
        name: np.concatenate([chunk[0][name] for chunk in chunks]) for name in HEADER_COLUMNS
    }
    return header_frame(columns), error_frame(pair for chunk in chunks for pair in chunk[1])


def read_headers(paths: Sequence[str | os.PathLike[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read many headers: (table of `HEADER_COLUMNS`, errors `path, reason`); never raises per file."""
    return join_chunks([read_header_chunk(paths)])


def header_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """ImagePositionPatient ``(n, 3)`` and ImageOrientationPatient ``(n, 6)`` of a header table."""
    ipp = frame[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(np.float64)
    iop = frame[["row_x", "row_y", "row_z", "col_x", "col_y", "col_z"]].to_numpy(np.float64)
    return ipp, iop
