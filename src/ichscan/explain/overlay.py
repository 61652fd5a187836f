"""PNG figures of explanations: heatmaps overlaid on the windowed slice (matplotlib, Agg canvas)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ichscan.files import atomic_path

__all__ = ["save_explanation_figure"]


def save_explanation_figure(
    path: str | os.PathLike[str],
    image: np.ndarray,
    heatmaps: Mapping[str, np.ndarray],
    title: str = "",
    alpha: float = 0.45,
) -> None:
    """Write one PNG: the windowed slice ``image`` ``(H, W)`` in [0, 1], then each heatmap over it.

    ``heatmaps`` maps a panel title (e.g. ``"Grad-CAM"``) to a ``(H, W)`` map in [0, 1]; each is drawn
    with the jet colour map at ``alpha`` over the greyscale slice, its peak marked with a cross.
    """
    panels = 1 + len(heatmaps)
    figure = Figure(figsize=(3.2 * panels, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    axes[0].imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
    axes[0].set_title("slice")
    for ax, (name, heatmap) in zip(axes[1:], heatmaps.items(), strict=True):
        if heatmap.shape != image.shape:
            raise ValueError(f"{name}: heatmap {heatmap.shape} does not match the slice {image.shape}")
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
        ax.imshow(heatmap, cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
        y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
        ax.plot(x, y, marker="+", color="white", markersize=12, markeredgewidth=2)
        ax.set_title(name)
    for ax in axes:
        ax.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
