"""`ichscan predict` on the command line: outputs, skipped files, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from run_factory import make_run_dir
from typer.testing import CliRunner

from ichscan.cli import app


def test_predict_command_on_a_dicom_folder(dicom_folder: Path, tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "train", "demo", seed=3)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "--model",
            str(run_dir),
            "--model",
            str(run_dir),
            str(dicom_folder),
            "-o",
            str(out),
            "--weights",
            "0.6,0.4",
            "--tta",
            "--threshold",
            "0.4",
            "--workers",
            "1",
            "--no-progress",
        ],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "broken.dcm" in result.output and "7 slices predicted, 1 file(s) skipped" in result.output
    for name in ("slices.parquet", "submission.csv", "studies.csv", "studies.json", "errors.csv"):
        assert (out / name).is_file(), name
    assert len(pd.read_csv(out / "submission.csv")) == 6 * 7


def test_predict_command_errors_are_one_line(dicom_folder: Path, tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "train", "demo", seed=3)
    cases = [
        (["--model", str(tmp_path / "no-run"), str(dicom_folder)], "no-run: no such run directory"),
        (["--model", str(run_dir), str(tmp_path / "absent")], "absent: no such file or folder"),
        (
            ["--model", str(run_dir), str(dicom_folder), "--weights", "1,2"],
            "2 weight(s) for 1 --model run(s)",
        ),
        (
            ["--model", str(run_dir), str(dicom_folder), "--checkpoint", "last"],
            "last.ckpt: checkpoint not found",
        ),
    ]
    for arguments, message in cases:
        result = CliRunner().invoke(
            app, ["predict", *arguments, "-o", str(tmp_path / "o"), "--no-progress"], env={"COLUMNS": "250"}
        )
        assert result.exit_code == 1, (arguments, result.output)
        assert "Traceback" not in result.output
        lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1 and message in lines[0], result.output
