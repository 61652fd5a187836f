"""Synthetic non-contrast head CT with known hemorrhages: ichscan's embedded data set.

`synthesize(out_dir, n_studies, seed, config)` writes studies in the RSNA layout (flat
``ID_<hex>.dcm``, ``train.csv``, per-series masks, ``studies.csv``); `PhantomConfig` sets sizes,
prevalence and the mix of DICOM storage variants.
"""

from ichscan.phantom.config import PhantomConfig, StorageMix
from ichscan.phantom.ct_writer import (
    CTSeriesWriter,
    CTSliceDescription,
    PatientDescription,
    PixelStorage,
    SeriesDescription,
    StudyDescription,
    build_ct_dataset,
    write_ct_slice,
)
from ichscan.phantom.hemorrhage import SUBTYPE_BIT
from ichscan.phantom.synthesize import (
    OutputExistsError,
    SynthesisSummary,
    iter_studies,
    slice_labels,
    synthesize,
)

__all__ = [
    "CTSeriesWriter",
    "CTSliceDescription",
    "OutputExistsError",
    "PatientDescription",
    "PhantomConfig",
    "PixelStorage",
    "SUBTYPE_BIT",
    "SeriesDescription",
    "StorageMix",
    "StudyDescription",
    "SynthesisSummary",
    "build_ct_dataset",
    "iter_studies",
    "slice_labels",
    "synthesize",
    "write_ct_slice",
]
