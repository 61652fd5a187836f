"""PNG outputs: explanation overlays and t-SNE plots (written atomically, showing what they claim)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from ichscan.explain import label_categories, plot_tsne, save_explanation_figure, tsne_points

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_explanation_figure_draws_the_heatmap_where_it_is(tmp_path: Path) -> None:
    image = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    yy, xx = np.mgrid[:32, :32]
    heat = np.exp(-((yy - 6) ** 2 + (xx - 24) ** 2) / 8.0)  # a hot spot top right: row 6, column 24
    path = tmp_path / "out" / "slice.png"
    save_explanation_figure(path, image, {"Grad-CAM": heat, "saliency": heat}, title="ID_1 subdural")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in path.parent.iterdir()] == ["slice.png"]  # no temporary left behind
    one = tmp_path / "one.png"
    save_explanation_figure(one, image, {"Grad-CAM": heat})
    three_panels, two_panels = imread(path)[..., :3], imread(one)[..., :3]
    # one panel per heatmap next to the slice: 3 × 3.2 in and 2 × 3.2 in wide at 100 dpi
    assert three_panels.shape[1] == 960 and two_panels.shape[1] == 640
    grey = np.abs(three_panels - three_panels.mean(axis=-1, keepdims=True)).max(axis=-1) < 0.02
    assert grey[:, :300].all()  # the slice panel is the greyscale slice only
    panel = three_panels[:, 330:630]
    coloured = ~grey[:, 330:630]
    rows, cols = np.nonzero(coloured)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    redness = panel[..., 0] - panel[..., 2]
    peak_y, peak_x = np.unravel_index(np.argmax(np.where(coloured, redness, -1)), redness.shape)
    # the reddest point sits where the map peaks, in the panel's own coordinates (not transposed)
    assert abs((peak_y - top) / (bottom - top) - 6 / 31) < 0.1
    assert abs((peak_x - left) / (right - left) - 24 / 31) < 0.1
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
    rgb = imread(tmp_path / "tsne.png")[..., :3]
    assert rgb.shape[:2] == (720, 840)  # 7 × 6 in at 120 dpi
    # both categories are drawn, each in its own colour (matplotlib's cycle: blue, then orange)
    blue = (rgb[..., 2] - rgb[..., 0] > 0.15).sum()
    orange = (rgb[..., 0] - rgb[..., 2] > 0.4).sum()
    assert blue > 100 and orange > 100
    with pytest.raises(ValueError, match="at least 3"):
        tsne_points(embeddings[:2])
