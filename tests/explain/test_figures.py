"""PNG outputs: explanation overlays and t-SNE plots (written atomically, valid PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ichscan.explain import label_categories, plot_tsne, save_explanation_figure, tsne_points

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_explanation_figure_is_a_png(tmp_path: Path) -> None:
    image = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    heat = np.zeros((32, 32))
    heat[5, 7] = 1.0
    path = tmp_path / "out" / "slice.png"
    save_explanation_figure(path, image, {"Grad-CAM": heat, "saliency": heat}, title="ID_1 subdural")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir()] == ["slice.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="does not match"):
        save_explanation_figure(tmp_path / "bad.png", image, {"x": np.zeros((4, 4))})
    assert not (tmp_path / "bad.png").exists()


def test_label_categories() -> None:
    labels = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [1, 0, 0, 0, 0, 1],
            [1, 1, 0, 0, 1, 0],
            [np.nan] * 6,
        ]
    )
    assert label_categories(labels).tolist() == ["none", "subdural", "multiple", "unlabelled"]


def test_tsne_separates_two_clusters_and_plots(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    embeddings = np.concatenate([rng.normal(0, 0.1, (20, 8)), rng.normal(5, 0.1, (20, 8))])
    points = tsne_points(embeddings, perplexity=5, seed=0)
    assert points.shape == (40, 2)
    first, second = points[:20].mean(axis=0), points[20:].mean(axis=0)
    spread = max(points[:20].std(axis=0).max(), points[20:].std(axis=0).max())
    assert np.linalg.norm(first - second) > 3 * spread
    categories = np.array(["none"] * 20 + ["subdural"] * 20)
    plot_tsne(points, categories, tmp_path / "tsne.png")
    assert (tmp_path / "tsne.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="at least 3"):
        tsne_points(embeddings[:2])
