"""`ichscan evaluate` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

from test_evaluation import synthetic
from typer.testing import CliRunner

from ichscan.cli import app


def test_evaluate_command_writes_the_report(tmp_path: Path) -> None:
    predictions, labels = synthetic(n_studies=10, slices_per_study=4)
    predictions.to_parquet(tmp_path / "slices.parquet", index=False)
    labels.to_parquet(tmp_path / "manifest.parquet", index=False)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "slices.parquet"),
            "--labels",
            str(tmp_path / "manifest.parquet"),
            "-o",
            str(out),
            "--bootstrap",
            "30",
            "--seed",
            "1",
            "--no-figures",
            "--no-progress",
        ],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "40 labelled slices evaluated" in result.output and "report.html" in result.output
    assert (out / "report.html").is_file() and not list(out.glob("*.png"))
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["settings"] == {
        "threshold": 0.5,
        "n_bootstrap": 30,
        "seed": 1,
        "confidence": 0.95,
        "resampled_unit": "study",
        "split": None,  # no studies.json of `ichscan predict` beside it, no --model
    }
    assert "operating_point" not in stored and "no operating point for these predictions" in result.output


def test_evaluate_command_bad_labels_is_one_line(tmp_path: Path) -> None:
    predictions, _ = synthetic(n_studies=2)
    predictions.to_parquet(tmp_path / "slices.parquet", index=False)
    (tmp_path / "labels.csv").write_text("not,a,label,file\n1,2,3,4\n")
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(tmp_path / "slices.parquet"),
            "--labels",
            str(tmp_path / "labels.csv"),
            "-o",
            str(tmp_path / "r"),
            "--no-progress",
        ],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: ") and "labels.csv" in result.output
    assert len(result.output.strip().splitlines()) == 1
