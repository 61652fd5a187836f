"""`read_dataset`: a pydicom `Dataset` of one slice file, reading only what the data set needs.

`pydicom.dcmread` reads to the end of the file (a valid slice followed by 2 GB of trailing bytes
costs 2 GB) and inflates a deflated data set whole (a deflate bomb costs what it expands to). Here
the file is first located by ichscan's header scanner (`ichscan.dicom.headers`): the Pixel Data
element is found, the declared image is checked against `PixelLimits` and against the bytes
present, and only then are the bytes from the first element to the end of the Pixel Data read
(at most `limits.max_dataset_bytes`) and handed to pydicom. Anything after the Pixel Data is
never read. The same function serves `prepare`, `predict` and a network receiver.
"""

from __future__ import annotations

import math
import os
import warnings
from io import BytesIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset as pydicom_read_dataset
from pydicom.tag import Tag

from ichscan.dicom.headers import (
    ErrorKind,
    HeaderError,
    _first,
    _scan,
    as_header_errors,
    check_pixel_data,
    numbers_of,
)
from ichscan.dicom.limits import DEFAULT_LIMITS, LimitError, PixelLimits
from ichscan.files import open_regular

_PIXEL_TAGS: dict[str, int] = {
    keyword: int(Tag(keyword))
    for keyword in ("Rows", "Columns", "BitsAllocated", "NumberOfFrames", "SamplesPerPixel")
}


def read_dataset(path: str | os.PathLike[str], limits: PixelLimits = DEFAULT_LIMITS) -> Dataset:
    """The data set of the file at `path` up to the end of its Pixel Data, with its file meta.

    Raises `HeaderError` (one-line reason: not DICOM, truncated, limit, not a regular file,
    unreadable) before reading any pixel byte when the declared image is out of `limits` or
    larger than the file; `MemoryError` is not caught (the caller aborts the run).
    """
    with as_header_errors("data set"), open_regular(path) as fp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scan = _scan(fp, list(_PIXEL_TAGS.values()), limits, all_meta=True)
        if scan.pixels is None:
            raise HeaderError(ErrorKind.MISSING_TAG, "PixelData")
        value = {kw: _first(numbers_of(scan.elements.get(tag))) for kw, tag in _PIXEL_TAGS.items()}
        for keyword in ("Rows", "Columns", "BitsAllocated"):
            if math.isnan(value[keyword]):
                raise HeaderError(ErrorKind.MISSING_TAG, keyword)
        frames = value["NumberOfFrames"]
        samples = value["SamplesPerPixel"]
        check_pixel_data(
            scan.pixels,
            scan.syntax,
            int(value["Rows"]),
            int(value["Columns"]),
            int(value["BitsAllocated"]),
            frames=1 if math.isnan(frames) else int(frames),
            samples=1 if math.isnan(samples) else int(samples),
            limits=limits,
        )
        size = scan.pixels.end - scan.start
        if size > limits.max_dataset_bytes:
            raise LimitError(f"data set of {size} bytes (limit {limits.max_dataset_bytes})")
        scan.stream.seek(scan.start)
        data = scan.stream.read(size)
        if len(data) != size:
            raise HeaderError(ErrorKind.TRUNCATED, f"the file ends {size - len(data)} bytes early")
        dataset = pydicom_read_dataset(BytesIO(data), scan.implicit, scan.little)
        dataset.file_meta = FileMetaDataset(Dataset(scan.meta))
        dataset.set_original_encoding(scan.implicit, scan.little)
        return dataset
