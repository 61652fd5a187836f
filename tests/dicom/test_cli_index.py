"""`ichscan index` through typer's test runner: outputs, summary, capped error lines, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from dicom_factory import SeriesWriter
from typer.testing import CliRunner

from ichscan.cli import app
from ichscan.labels import LABELS

runner = CliRunner()


def test_index_writes_manifest_and_reports(tmp_path: Path, write_series: SeriesWriter) -> None:
    dicom = tmp_path / "dicom"
    write_series(dicom, ["ID_0a.dcm", "ID_0b.dcm", "ID_0c.dcm"], [(0, 0, 10), (0, 0, 0), (0, 0, 5)])
    for i in range(25):
        (dicom / f"junk{i:02d}.dcm").write_text("x")
    labels = tmp_path / "train.csv"
    labels.write_text("ID,Label\n" + "".join(f"ID_0a_{name},1\n" for name in LABELS))
    out = tmp_path / "manifest.parquet"

    result = runner.invoke(
        app,
        [
            "index",
            str(dicom),
            "--labels",
            str(labels),
            "-o",
            str(out),
            "--workers",
            "1",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = pd.read_parquet(out)
    assert manifest["image_id"].tolist() == ["ID_0b", "ID_0c", "ID_0a"]
    assert manifest["any"].tolist()[2] == 1.0
    lines = result.output.splitlines()
    assert any(line.split() == ["slices:", "3"] for line in lines)
    assert any(line.split() == ["labelled", "slices:", "1"] for line in lines)
    assert any(line.split() == ["errors,", "not", "DICOM:", "25"] for line in lines)
    error_lines = [line for line in lines if line.startswith(str(dicom / "junk"))]
    assert len(error_lines) == 20
    assert error_lines[0] == f"{dicom / 'junk00.dcm'}: not DICOM: no 'DICM' prefix at byte 128"
    assert f"... and 5 more, see {tmp_path / 'manifest.errors.csv'}" in result.output
    assert len(pd.read_csv(tmp_path / "manifest.errors.csv")) == 25


def test_bad_arguments_give_one_line_errors(tmp_path: Path) -> None:
    missing = runner.invoke(
        app, ["index", str(tmp_path / "nope"), "-o", str(tmp_path / "m.parquet")]
    )
    assert missing.exit_code == 1
    assert missing.stderr == f"Error: {tmp_path / 'nope'}: no such file or folder\n"

    bad_labels = tmp_path / "labels.csv"
    bad_labels.write_text("a,b\n1,2\n")
    wrong = runner.invoke(
        app,
        ["index", str(tmp_path), "--labels", str(bad_labels), "-o", str(tmp_path / "m.parquet")],
    )
    assert wrong.exit_code == 1
    assert wrong.stderr == f"Error: {bad_labels}: expected columns ID,Label, found a,b\n"
    assert not (tmp_path / "m.parquet").exists()
