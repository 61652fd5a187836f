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
    assert result.exit_code == 3, result.output  # 25 files lost: a partial success is not 0
    assert f"Lost 25 of 28 files; 3 slices indexed (list: {tmp_path / 'manifest.errors.csv'})" in result.stderr
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


def test_empty_folder_and_all_failed_exit_1_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    result = runner.invoke(app, ["index", str(empty), "-o", str(tmp_path / "m.parquet"), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr == f"Error: no DICOM files under {empty} (1 skipped as not DICOM by name)\n"
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.dcm").write_text("x")
    result = runner.invoke(app, ["index", str(junk), "-o", str(tmp_path / "j.parquet"), "--no-progress"])
    assert result.exit_code == 1
    assert f"no slice indexed: all 1 files failed (list: {tmp_path / 'j.errors.csv'})" in result.stderr
    assert "Traceback" not in result.output
