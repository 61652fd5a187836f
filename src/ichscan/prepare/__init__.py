"""The Hounsfield cache: one int16 HU volume per series, in anatomical order (`ichscan prepare`)."""

from ichscan.prepare.cache import CacheSettings, read_series, read_slices
from ichscan.prepare.crop import CropBox, head_box, resize_hounsfield
from ichscan.prepare.run import PrepareResult, prepare_cache

__all__ = [
    "CacheSettings",
    "CropBox",
    "PrepareResult",
    "head_box",
    "prepare_cache",
    "read_series",
    "read_slices",
    "resize_hounsfield",
]
