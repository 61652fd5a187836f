"""`compare_runs` and `ichscan compare`: the seeds' comparison table from run directories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
from sklearn.metrics import f1_score, roc_auc_score
from typer.testing import CliRunner

from ichscan.evaluate.compare import COMPARE_COLUMNS, compare_runs

from run_factory import make_run_dir

from ichscan.labels import LABELS


@pytest.fixture()
def two_runs(tmp_path: Path) -> list[Path]:
    return [
        make_run_dir(
            tmp_path / "a",
            "resnet",
            backbone="resnet18",
            val_wll=(0.30, 0.21, 0.25),
            seed=1,
            checkpoint=False,
        ),
        make_run_dir(
            tmp_path / "b",
            "mobile",
            backbone="mobilenetv2_100",
            windows=("brain",),
            val_wll=(0.40, 0.19),
            seed=2,
            checkpoint=False,
        ),
    ]


def test_comparison_table_values(two_runs: list[Path]) -> None:
    comparison = compare_runs(two_runs)
    table = comparison.table
    assert list(table.columns) == list(COMPARE_COLUMNS)
    assert comparison.errors == [] and comparison.notes == []
    # Best validation log loss first.
    assert table["run"].tolist() == ["mobile/fold0", "resnet/fold0"]
    resnet = table.set_index("run").loc["resnet/fold0"]
    expected_params = sum(
        p.numel() for p in timm.create_model("resnet18", num_classes=6, in_chans=3).parameters()
    )
    assert resnet["params"] == expected_params
    mobile = table.set_index("run").loc["mobile/fold0"]
    assert mobile["params"] == sum(
        p.numel() for p in timm.create_model("mobilenetv2_100", num_classes=6, in_chans=1).parameters()
    )
    assert (resnet["best_val_wll"], resnet["best_epoch"], resnet["epochs"]) == (0.21, 1, 3)
    assert resnet["train_time_s"] == pytest.approx(1.5 + 2.5 + 3.5)
    oof = pd.read_parquet(two_runs[0] / "oof.parquet")
    y = oof[[f"label_{label}" for label in LABELS]].to_numpy()
    p = oof[list(LABELS)].to_numpy()
    assert resnet["any_auc"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))
    assert resnet["mean_auc"] == pytest.approx(np.mean([roc_auc_score(y[:, k], p[:, k]) for k in range(6)]))
    assert resnet["macro_f1"] == pytest.approx(np.mean([f1_score(y[:, k], p[:, k] >= 0.5) for k in range(6)]))


def test_unreadable_and_unfinished_runs_are_reported(two_runs: list[Path], tmp_path: Path) -> None:
    (two_runs[1] / "oof.parquet").unlink()
    comparison = compare_runs([*two_runs, tmp_path / "nowhere"])
    assert len(comparison.table) == 2
    assert np.isnan(comparison.table.set_index("run").loc["mobile/fold0", "mean_auc"])
    assert len(comparison.notes) == 1 and "oof.parquet: missing" in comparison.notes[0]
    assert comparison.errors == [f"{tmp_path / 'nowhere'}: no such run directory"]


def test_compare_command_prints_and_writes_markdown_and_csv(two_runs: list[Path], tmp_path: Path) -> None:
    from ichscan.cli import app

    out = tmp_path / "table.md"
    result = CliRunner().invoke(app, ["compare", *map(str, two_runs), "-o", str(out)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "resnet/fold0" in result.output and "mobilenetv2_100" in result.output
    markdown = out.read_text().splitlines()
    assert markdown[0].startswith("| run | backbone | split | params | best val weighted log loss |")
    assert len(markdown) == 2 + 2
    assert "| mobile/fold0 | mobilenetv2_100 |" in markdown[2]
    csv = pd.read_csv(out.with_suffix(".csv"))
    assert list(csv.columns) == list(COMPARE_COLUMNS) and len(csv) == 2


def test_compare_command_without_readable_runs_fails_in_one_line(tmp_path: Path) -> None:
    from ichscan.cli import app

    result = CliRunner().invoke(app, ["compare", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "Error: no readable run among" in result.output


def test_a_run_folder_gives_one_row_per_fold_with_its_split(tmp_path: Path) -> None:
    folds = [make_run_dir(tmp_path, "cv", fold=k, seed=k, checkpoint=False) for k in (0, 1)]
    comparison = compare_runs([folds[0].parent])
    assert sorted(comparison.table["run"]) == ["cv/fold0", "cv/fold1"]
    assert set(comparison.table["split"]) == {"patient, 5 folds"}
