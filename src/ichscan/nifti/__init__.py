"""NIfTI volumes as an input like DICOM: each volume a series of axial slices (`ichscan index`)."""

from ichscan.nifti.volume import (
    NIFTI_SUFFIXES,
    NiftiError,
    NiftiGeometry,
    from_axial,
    is_nifti,
    read_geometry,
    read_hounsfield,
    read_labels,
    to_axial,
)

__all__ = [
    "NIFTI_SUFFIXES",
    "NiftiError",
    "NiftiGeometry",
    "from_axial",
    "is_nifti",
    "read_geometry",
    "read_hounsfield",
    "read_labels",
    "to_axial",
]
