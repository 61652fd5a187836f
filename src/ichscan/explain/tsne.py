"""t-SNE maps of slice embeddings (scikit-learn), coloured by label, as PNG."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.manifold import TSNE

from ichscan.files import atomic_path
from ichscan.labels import LABELS, SUBTYPES

__all__ = ["label_categories", "plot_tsne", "tsne_points"]


def tsne_points(embeddings: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """2-D t-SNE coordinates ``(N, 2)`` of embeddings ``(N, D)``; perplexity capped below ``N``."""
    n = len(embeddings)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 embeddings, got {n}")
    tsne = TSNE(
        n_components=2,
        perplexity=min(perplexity, (n - 1) / 3),
        init="pca",
        random_state=seed,
    )
    return tsne.fit_transform(np.asarray(embeddings, dtype=np.float32))


def label_categories(labels: np.ndarray) -> np.ndarray:
    """One category per slice from ``(N, 6)`` labels: ``none``, the single subtype, ``multiple`` or ``unlabelled``."""
    labels = np.asarray(labels, dtype=np.float32)
    subtypes = labels[:, 1:] == 1
    count = subtypes.sum(axis=1)
    names = np.array(SUBTYPES, dtype=object)[subtypes.argmax(axis=1)]
    categories = np.where(count > 1, "multiple", names)
    categories = np.where(count == 0, np.where(labels[:, 0] == 1, "any", "none"), categories)
    return np.where(np.isnan(labels).any(axis=1), "unlabelled", categories).astype(str)


def plot_tsne(
    points: np.ndarray,
    categories: np.ndarray,
    path: str | os.PathLike[str],
    title: str = "t-SNE of slice embeddings",
) -> None:
    """Scatter ``points`` ``(N, 2)`` coloured by ``categories`` ``(N,)`` and write the PNG atomically."""
    figure = Figure(figsize=(7, 6), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    order = ["none", *LABELS, "multiple", "unlabelled"]
    present = [c for c in order if c in set(categories)] + sorted(set(categories) - set(order))
    for category in present:
        selected = categories == category
        axes.scatter(
            points[selected, 0],
            points[selected, 1],
            s=6 if category == "none" else 10,
            alpha=0.4 if category == "none" else 0.8,
            label=f"{category} ({int(selected.sum())})",
        )
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.legend(loc="best", fontsize=8, markerscale=2)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
