"""Label statistics and the `ichscan stats` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from ichscan.data.statistics import compute_statistics
from ichscan.labels import LABELS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def manifest() -> pd.DataFrame:
    """Six slices in two studies of one patient; one slice unlabelled."""
    labels = np.array([
        [0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 1],
        [1, 0, 0, 0, 0, 1],
        [1, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [np.nan] * 6,
    ], dtype=np.float32)
    frame = pd.DataFrame(labels, columns=list(LABELS))
    frame["patient_id"] = "P1"
    frame["study_instance_uid"] = ["A", "A", "A", "B", "B", "B"]
    frame["series_instance_uid"] = ["a", "a", "a", "b", "b", "b"]
    return frame


def test_counts_cooccurrence_and_totals_by_hand(manifest: pd.DataFrame) -> None:
    stats = compute_statistics(manifest)
    assert (stats.n_slices, stats.n_labelled) == (6, 5)
    assert stats.totals == {"series": 2, "studies": 2, "patients": 1}
    assert stats.counts is not None and stats.cooccurrence is not None
    assert stats.counts["count"].to_dict() == {
        "any": 3, "epidural": 1, "intraparenchymal": 1, "intraventricular": 1, "subarachnoid": 0,
        "subdural": 2, "negative": 2,
    }
    assert stats.counts.loc["subdural", "percent"] == pytest.approx(40.0)
    assert stats.cooccurrence.loc["epidural", "subdural"] == 1
    assert stats.cooccurrence.loc["subdural", "subdural"] == 2
    assert stats.cooccurrence.loc["intraparenchymal", "intraventricular"] == 1
    assert stats.study_counts is not None
    assert stats.study_counts.loc["any", "studies"] == 2
    assert stats.study_counts.loc["any", "mean"] == pytest.approx(1.5)  # 2 in A, 1 in B


def test_cli_writes_png_charts_and_json(manifest: pd.DataFrame, tmp_path: Path) -> None:
    from ichscan.cli import app

    path = tmp_path / "manifest.parquet"
    manifest.to_parquet(path)
    result = CliRunner().invoke(app, ["stats", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "subdural" in result.output and "Co-occurrence" in result.output
    for name in ("label_distribution.png", "label_cooccurrence.png"):
        png = tmp_path / "out" / name
        assert png.read_bytes()[:8] == PNG_MAGIC
        image = imread(png)
        assert image.ndim == 3 and image.shape[0] > 200 and image[..., :3].std() > 0.01
    assert (tmp_path / "out" / "label_statistics.json").is_file()
    assert not list((tmp_path / "out").glob(".*tmp*"))  # no temporary leftovers


def test_cli_on_unlabelled_cache_table(manifest: pd.DataFrame, tmp_path: Path) -> None:
    from ichscan.cli import app

    path = tmp_path / "slices.parquet"
    manifest.drop(columns=list(LABELS)).to_parquet(path)
    result = CliRunner().invoke(app, ["stats", str(path)])
    assert result.exit_code == 0, result.output
    assert "no label columns" in result.output
    assert (tmp_path / "slices_stats" / "label_statistics.json").is_file()
    assert not (tmp_path / "slices_stats" / "label_distribution.png").exists()


def test_cli_bad_file_is_one_line_error(tmp_path: Path) -> None:
    from ichscan.cli import app

    bad = tmp_path / "broken.parquet"
    bad.write_text("not parquet")
    result = CliRunner().invoke(app, ["stats", str(bad)])
    assert result.exit_code == 1
    assert "broken.parquet" in result.output and "Traceback" not in result.output
    missing = CliRunner().invoke(app, ["stats", str(tmp_path / "nope.parquet")])
    assert missing.exit_code == 1 and "nope.parquet: no such file" in missing.output
