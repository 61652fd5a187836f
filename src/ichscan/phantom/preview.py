"""A PNG contact sheet of phantom slices in the brain window with lesions outlined per subtype."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ichscan.files import atomic_path
from ichscan.labels import SUBTYPES
from ichscan.phantom.hemorrhage import SUBTYPE_BIT

SUBTYPE_COLOURS: dict[str, str] = {
    "epidural": "#ff3b30",
    "intraparenchymal": "#ffcc00",
    "intraventricular": "#34c759",
    "subarachnoid": "#0a84ff",
    "subdural": "#ff2dd4",
}
BRAIN_WINDOW: tuple[float, float] = (40.0, 80.0)


class PreviewSlice(Protocol):
    hounsfield: np.ndarray
    mask: np.ndarray
    title: str


def write_preview(path: str | os.PathLike[str], slices: Sequence[PreviewSlice], columns: int = 4) -> None:
    """Draw `slices` (HU in the brain window 40/80) with each subtype's outline in its colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not slices:
        raise ValueError("no slices to preview")
    rows = int(np.ceil(len(slices) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows + 0.6), squeeze=False)
    centre, width = BRAIN_WINDOW
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, slices):
        shown = np.clip((item.hounsfield.astype(np.float32) - (centre - width / 2)) / width, 0, 1)
        ax.imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        for name in SUBTYPES:
            region = (item.mask & SUBTYPE_BIT[name]) > 0
            if region.any():
                ax.contour(region, levels=[0.5], colors=SUBTYPE_COLOURS[name], linewidths=0.9)
        ax.set_title(item.title, fontsize=8)
    handles = [Line2D([0], [0], color=c, lw=2, label=n) for n, c in SUBTYPE_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
