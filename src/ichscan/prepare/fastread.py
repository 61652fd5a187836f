"""A minimal reader for the common case: an uncompressed little-endian 16-bit CT slice.

`pydicom.dcmread` costs about 1 ms per slice (it builds a whole `Dataset`), ten times reading the
file. `prepare` only needs a dozen tags and the offset of the Pixel Data, so for files in Explicit
or Implicit VR Little Endian this module walks the element headers itself (`struct`, no
`Dataset`), keeps the tags it needs and returns a view of the pixel bytes.

It accepts only what it can prove and raises `NotFast` for anything else, and the caller then
reads that file with `ichscan.dicom.reader.read_dataset` (pydicom) as before, so the reasons
reported for bad files stay pydicom's and ichscan's own. Proven means: a preamble, Explicit or
Implicit VR Little Endian, element tags strictly ascending, every VR one of PS3.5's, every value
inside the file, the wanted tags once each with their dictionary VR and length, RescaleSlope and
RescaleIntercept present as plain finite decimals (slope ≠ 0), 16-bit single-frame greyscale
within `PixelLimits`, and native Pixel Data (OW/OB) of exactly rows × columns × 2 bytes. Only the
bytes up to the end of the Pixel Data are read (`READ_AHEAD` first, then exactly the pixels):
trailing bytes cost nothing.
"""

from __future__ import annotations

import math
import os
import re
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from ichscan.dicom.limits import DEFAULT_LIMITS, LimitError, PixelLimits
from ichscan.files import open_regular

EXPLICIT_VR_LITTLE_ENDIAN: Final[str] = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN: Final[str] = "1.2.840.10008.1.2"
UNDEFINED_LENGTH: Final[int] = 0xFFFFFFFF
# explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2)
_LONG_VRS: Final[frozenset[bytes]] = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_TRANSFER_SYNTAX: Final[int] = 0x00020010
_PIXEL_DATA: Final[int] = 0x7FE00010
_ITEM: Final[int] = 0xFFFEE000
_ITEM_END: Final[int] = 0xFFFEE00D
_SEQUENCE_END: Final[int] = 0xFFFEE0DD
# the tags read, with the VR each must have in Explicit VR files
_WANTED: Final[dict[int, bytes]] = {
    0x00080018: b"UI",  # SOPInstanceUID
    0x00280002: b"US",  # SamplesPerPixel
    0x00280004: b"CS",  # PhotometricInterpretation
    0x00280008: b"IS",  # NumberOfFrames
    0x00280010: b"US",  # Rows
    0x00280011: b"US",  # Columns
    0x00280100: b"US",  # BitsAllocated
    0x00280101: b"US",  # BitsStored
    0x00280103: b"US",  # PixelRepresentation
    0x00281052: b"DS",  # RescaleIntercept
    0x00281053: b"DS",  # RescaleSlope
}
_KNOWN_VRS: Final[frozenset[bytes]] = frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
_DECIMAL: Final[re.Pattern[str]] = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
READ_AHEAD: Final[int] = 1 << 20  # first read: the header and, for slices up to ~700², the pixels
_HEADER: Final[struct.Struct] = struct.Struct("<HH")
_U16: Final[struct.Struct] = struct.Struct("<H")
_U32: Final[struct.Struct] = struct.Struct("<I")


class NotFast(Exception):
    """This file needs the generic pydicom path."""


@dataclass(frozen=True)
class FastSlice:
    """What `prepare` needs of one slice: identity, pixel layout, rescale, stored values."""

    sop_instance_uid: str
    rows: int
    columns: int
    bits_stored: int
    pixel_representation: int
    slope: float
    intercept: float
    photometric_interpretation: str
    pixels: NDArray[np.uint16]  # (rows, columns) raw little-endian 16-bit words, read-only view


def read_fast(path: str, limits: PixelLimits = DEFAULT_LIMITS) -> FastSlice:
    """Read one uncompressed 16-bit little-endian single-frame slice; `NotFast` otherwise."""
    with open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        buffer = file.read(min(size, READ_AHEAD))
        if len(buffer) < 132 or buffer[128:132] != b"DICM":
            raise NotFast("no DICOM preamble")
        position, syntax = _file_meta(buffer, 132)
        if syntax == EXPLICIT_VR_LITTLE_ENDIAN:
            explicit = True
        elif syntax == IMPLICIT_VR_LITTLE_ENDIAN:
            explicit = False
        else:
            raise NotFast(f"transfer syntax {syntax}")
        values, pixel_offset, pixel_length = _dataset(buffer, position, explicit)
        try:
            rows, columns = _us(values, 0x00280010), _us(values, 0x00280011)
            bits_allocated = _us(values, 0x00280100)
            pixel_representation = _us(values, 0x00280103)
            slope_raw, intercept_raw = values[0x00281053], values[0x00281052]
        except KeyError as error:
            raise NotFast("a required tag is missing") from error
        bits_stored = _us(values, 0x00280101) if 0x00280101 in values else bits_allocated
        samples = _us(values, 0x00280002) if 0x00280002 in values else 1
        frames_text = _text(values.get(0x00280008, b""))
        if bits_allocated != 16 or samples != 1 or frames_text not in ("", "1"):
            raise NotFast("not a 16-bit single-frame greyscale slice")
        if not 1 <= bits_stored <= 16 or pixel_representation not in (0, 1):
            raise NotFast("unusual pixel description")
        try:
            needed = limits.check_geometry(rows, columns, bits_allocated)
        except LimitError as error:
            raise NotFast(str(error)) from error
        if pixel_length != needed or pixel_offset + needed > size:
            raise NotFast("Pixel Data is not exactly the matrix")
        slope, intercept = _decimal(slope_raw), _decimal(intercept_raw)
        photometric = _text(values.get(0x00280004, b"")).upper()
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise NotFast(f"PhotometricInterpretation {photometric!r}")
        if slope == 0:
            raise NotFast("RescaleSlope 0")
        if pixel_offset + needed <= len(buffer):
            pixels = np.frombuffer(buffer, dtype="<u2", count=rows * columns, offset=pixel_offset)
        else:  # a large matrix: read exactly the pixels, nothing after them
            file.seek(pixel_offset)
            data = file.read(needed)
            if len(data) != needed:
                raise NotFast("the file ends inside Pixel Data")
            pixels = np.frombuffer(data, dtype="<u2", count=rows * columns)
    return FastSlice(
        sop_instance_uid=_text(values.get(0x00080018, b"")),
        rows=rows,
        columns=columns,
        bits_stored=bits_stored,
        pixel_representation=pixel_representation,
        slope=slope,
        intercept=intercept,
        photometric_interpretation=photometric,
        pixels=pixels.reshape(rows, columns),
    )


def _file_meta(buffer: bytes, position: int) -> tuple[int, str]:
    """Walk group 0002 (always Explicit VR Little Endian); return (end, TransferSyntaxUID)."""
    syntax = ""
    while position + 8 <= len(buffer):
        group, element = _HEADER.unpack_from(buffer, position)
        if group != 0x0002:
            break
        tag = (group << 16) | element
        position, length = _explicit_header(buffer, position)
        if length == UNDEFINED_LENGTH:
            raise NotFast("undefined length in the file meta")
        if tag == _TRANSFER_SYNTAX:
            syntax = _text(buffer[position : position + length])
        position += length
    return position, syntax


def _explicit_header(buffer: bytes, position: int) -> tuple[int, int]:
    """(value position, length) of the Explicit VR element header at `position`."""
    vr = buffer[position + 4 : position + 6]
    if vr not in _KNOWN_VRS:
        raise NotFast("unknown VR")
    if vr in _LONG_VRS:
        if position + 12 > len(buffer) or buffer[position + 6 : position + 8] != b"\x00\x00":
            raise NotFast("malformed long element header")
        return position + 12, _U32.unpack_from(buffer, position + 8)[0]
    return position + 8, _U16.unpack_from(buffer, position + 6)[0]


def _element(buffer: bytes, position: int, explicit: bool) -> tuple[int, bytes, int, int]:
    """(tag, VR or b"" when implicit, value position, length) of the element header at `position`."""
    group, element = _HEADER.unpack_from(buffer, position)
    if explicit:
        value_position, length = _explicit_header(buffer, position)
        return (group << 16) | element, buffer[position + 4 : position + 6], value_position, length
    return (group << 16) | element, b"", position + 8, _U32.unpack_from(buffer, position + 4)[0]


def _dataset(buffer: bytes, position: int, explicit: bool) -> tuple[dict[int, bytes], int, int]:
    """The wanted values (raw bytes) and (offset, length) of the top-level Pixel Data.

    Tags must ascend strictly and every value before Pixel Data must lie inside `buffer`."""
    values: dict[int, bytes] = {}
    end = len(buffer)
    previous = -1
    while position + 8 <= end:
        tag, vr, value_position, length = _element(buffer, position, explicit)
        if tag <= previous or tag >> 16 == 0x0002:
            raise NotFast("tags out of order")
        previous = tag
        if tag == _PIXEL_DATA:
            if length == UNDEFINED_LENGTH or (explicit and vr not in (b"OW", b"OB")):
                raise NotFast("encapsulated or unusual Pixel Data")
            return values, value_position, length
        if length == UNDEFINED_LENGTH:
            if explicit and vr != b"SQ":
                raise NotFast("undefined length outside a sequence")
            position = _skip_sequence(buffer, value_position, explicit)
            continue
        if value_position + length > end:
            raise NotFast("an element runs past the bytes read")
        if tag in _WANTED:
            if explicit and vr != _WANTED[tag]:
                raise NotFast(f"unexpected VR {vr!r} for tag {tag:08X}")
            values[tag] = buffer[value_position : value_position + length]
        position = value_position + length
    raise NotFast("no Pixel Data")


def _skip_sequence(buffer: bytes, position: int, explicit: bool) -> int:
    """Position after the delimiter of an undefined-length sequence starting at `position`."""
    while position + 8 <= len(buffer):
        group, element = _HEADER.unpack_from(buffer, position)
        tag = (group << 16) | element
        length = _U32.unpack_from(buffer, position + 4)[0]
        position += 8
        if tag == _SEQUENCE_END:
            return position
        if tag != _ITEM:
            raise NotFast("malformed sequence")
        position = _skip_item(buffer, position, explicit) if length == UNDEFINED_LENGTH else position + length
    raise NotFast("unterminated sequence")


def _skip_item(buffer: bytes, position: int, explicit: bool) -> int:
    """Position after the delimiter of an undefined-length item starting at `position`."""
    while position + 8 <= len(buffer):
        group, element = _HEADER.unpack_from(buffer, position)
        if (group << 16) | element == _ITEM_END:
            return position + 8
        _, vr, value_position, length = _element(buffer, position, explicit)
        if length == UNDEFINED_LENGTH:
            if explicit and vr != b"SQ":
                raise NotFast("undefined length outside a sequence")
            position = _skip_sequence(buffer, value_position, explicit)
        else:
            position = value_position + length
    raise NotFast("unterminated item")


def _text(raw: bytes) -> str:
    try:
        return raw.decode("ascii").strip("\x00 ") if raw else ""
    except UnicodeDecodeError as error:
        raise NotFast("non-ASCII text value") from error


def _us(values: dict[int, bytes], tag: int) -> int:
    raw = values[tag]
    if len(raw) != 2:
        raise NotFast(f"tag {tag:08X} is not one US value")
    return int(_U16.unpack(raw)[0])


def _decimal(raw: bytes) -> float:
    """One plain finite decimal (DS): anything else (empty, multi-valued, ``nan``, ``1_0``) is
    left to pydicom and ichscan's own checks."""
    text = _text(raw)
    if not _DECIMAL.fullmatch(text):
        raise NotFast("RescaleSlope/RescaleIntercept not one plain decimal")
    value = float(text)
    if not math.isfinite(value):
        raise NotFast("non-finite rescale")
    return value
