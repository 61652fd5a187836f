"""`PixelLimits`: what a header declares is checked before anything is allocated or decoded."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_ct_slice
from pydicom.uid import JPEG2000Lossless, RLELossless

from ichscan.dicom.headers import HeaderError, read_header
from ichscan.dicom.hounsfield import to_hounsfield
from ichscan.dicom.limits import LimitError, PixelLimits
from ichscan.dicom.reader import read_dataset

HEAD = np.full((32, 32), 1064, dtype=np.uint16)


def test_limits_are_validated_and_name_the_bound() -> None:
    with pytest.raises(ValueError):
        PixelLimits(max_rows=0)
    with pytest.raises(ValueError):
        PixelLimits(bits_allocated=(12,))
    limits = PixelLimits(max_rows=512, max_columns=512)
    assert limits.check_geometry(512, 512, 16) == 512 * 512 * 2
    with pytest.raises(LimitError, match="matrix 513x512 exceeds the limit 512x512"):
        limits.check_geometry(513, 512, 16)
    with pytest.raises(LimitError, match="NumberOfFrames=2"):
        limits.check_geometry(8, 8, 16, frames=2)
    with pytest.raises(LimitError, match="ratio above the limit"):
        limits.check_encapsulated_length(10, 512 * 512 * 2)
    with pytest.raises(LimitError, match="more than the declared"):
        limits.check_native_length(512 * 512 * 2 + (2 << 20), 512 * 512 * 2)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_a_compressed_bomb_is_refused_before_decoding(tmp_path: Path, syntax: str) -> None:
    """65535² declared over a 32² codestream: index, the bounded reader and `to_hounsfield`
    on an already-parsed data set (the network receiver's case) all refuse it without decoding."""
    path = write_ct_slice(tmp_path / "bomb.dcm", HEAD, transfer_syntax=syntax)
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 65535
    ds.save_as(path)
    with pytest.raises(HeaderError, match="limit: matrix 65535x65535 exceeds the limit 4096x4096"):
        read_header(path)
    with pytest.raises(HeaderError, match="limit: matrix 65535x65535"):
        read_dataset(path)
    with pytest.raises(ValueError, match="exceeds the limit"):
        to_hounsfield(pydicom.dcmread(path))


def test_custom_limits_apply_everywhere(tmp_path: Path) -> None:
    path = write_ct_slice(tmp_path / "a.dcm", HEAD)
    small = PixelLimits(max_rows=16, max_columns=16)
    with pytest.raises(HeaderError, match="exceeds the limit 16x16"):
        read_header(path, small)
    with pytest.raises(HeaderError, match="exceeds the limit 16x16"):
        read_dataset(path, small)
    assert read_header(path)["rows"] == 32


def test_trailing_bytes_are_never_read(tmp_path: Path) -> None:
    """A valid slice followed by 1 GB of sparse tail: read as if the tail were not there."""
    path = write_ct_slice(tmp_path / "a.dcm", HEAD)
    expected = to_hounsfield(pydicom.dcmread(path))
    os.truncate(path, 1 << 30)
    assert read_header(path)["rows"] == 32
    np.testing.assert_array_equal(to_hounsfield(read_dataset(path)), expected)


def test_a_deflate_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    path = write_ct_slice(tmp_path / "a.dcm", HEAD)
    data = path.read_bytes()
    meta_end = 132 + 12 + struct.unpack_from("<I", data, 140)[0]
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    deflated = path.read_bytes()
    meta_end = 132 + 12 + struct.unpack_from("<I", deflated, 140)[0]
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(zlib.decompress(deflated[meta_end:], -zlib.MAX_WBITS))
    body += compressor.compress(bytes(64 << 20)) + compressor.flush()
    path.write_bytes(deflated[:meta_end] + body)
    small = PixelLimits(max_header_bytes=1 << 20, max_rows=64, max_columns=64)
    with pytest.raises(HeaderError, match="limit: the deflated data set inflates to more than"):
        read_header(path, small)
    with pytest.raises(HeaderError, match="limit: the deflated data set inflates"):
        read_dataset(path, small)
