"""From the Hounsfield cache to model inputs: windows, datasets, splits, samplers, statistics.

`ichscan.data.augment` (kornia) is imported on its own so that loading data does not pull it in.
"""

from ichscan.data.dataset import (
    SeriesDataset,
    SliceDataset,
    collate_series,
    create_loader,
    series_path,
)
from ichscan.data.windows import WINDOWS, ChannelSpec, Window, apply_windows

__all__ = [
    "WINDOWS",
    "ChannelSpec",
    "SeriesDataset",
    "SliceDataset",
    "Window",
    "apply_windows",
    "collate_series",
    "create_loader",
    "series_path",
]
