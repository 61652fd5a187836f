"""Independent NumPy references for the cache's resize: exact area averaging and bilinear.

Written from the definitions (not from OpenCV's code), in float64, as separable weight matrices:
``resized = rows_matrix @ image @ columns_matrix.T``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def area_weights(n_in: int, n_out: int) -> NDArray[np.float64]:
    """(n_out, n_in): output pixel j is the mean of input interval [j·s, (j+1)·s), s = n_in/n_out."""
    scale = n_in / n_out
    edges = np.arange(n_out + 1) * scale
    pixels = np.arange(n_in)[None, :]
    covered = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
    return np.clip(covered, 0.0, None) / scale


def bilinear_weights(n_in: int, n_out: int) -> NDArray[np.float64]:
    """(n_out, n_in): half-pixel-centred linear interpolation, edge pixels repeated outside."""
    source = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    fraction = source - low
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), low), 1.0 - fraction)
    np.add.at(weights, (np.arange(n_out), high), fraction)
    return weights


def reference_resize(volume: NDArray[np.integer], height: int, width: int) -> NDArray[np.float64]:
    """Unrounded float64 resize of a ``(z, H, W)`` volume: area when shrinking, else bilinear."""
    _, rows, columns = volume.shape
    shrink = height <= rows and width <= columns
    weights = area_weights if shrink else bilinear_weights
    return weights(rows, height) @ volume.astype(np.float64) @ weights(columns, width).T
