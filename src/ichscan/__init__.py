"""ichscan: intracranial hemorrhage detection on head CT, from DICOM to explained predictions."""

from ichscan.labels import LABELS, SUBTYPES

__all__ = ["LABELS", "SUBTYPES", "__version__"]
__version__ = "0.1.0"
