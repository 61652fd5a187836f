"""DICOM → numbers: slice headers, slice order, RSNA labels, the manifest, Hounsfield units."""

from ichscan.dicom.headers import ErrorKind, HeaderError, read_header, read_headers
from ichscan.dicom.hounsfield import needs_rsna_fix, to_hounsfield
from ichscan.dicom.index import (
    ID_COLUMNS,
    MANIFEST_COLUMNS,
    IndexResult,
    find_files,
    index_folder,
    read_manifest,
    write_manifest,
)
from ichscan.dicom.labels import (
    LabelFileError,
    LabelJoin,
    LabelTable,
    join_labels,
    read_rsna_labels,
)
from ichscan.dicom.order import order_slices, slice_normals, slice_positions

__all__ = [
    "ID_COLUMNS",
    "MANIFEST_COLUMNS",
    "ErrorKind",
    "HeaderError",
    "IndexResult",
    "LabelFileError",
    "LabelJoin",
    "LabelTable",
    "find_files",
    "index_folder",
    "join_labels",
    "needs_rsna_fix",
    "order_slices",
    "read_header",
    "read_headers",
    "read_manifest",
    "read_rsna_labels",
    "slice_normals",
    "slice_positions",
    "to_hounsfield",
    "write_manifest",
]
