"""`predict --explain`: heatmaps of each study's most suspicious slices, in studies.json and report.html."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from run_factory import make_member, make_run_dir
from typer.testing import CliRunner

from ichscan.cli import app
from ichscan.labels import LABELS
from ichscan.explain.heatmaps import predict_explained
from ichscan.predict import predict

FIGURE_SIZE = (640, 360)  # two panels (slice + one method) of 3.2 × 3.6 in at 100 dpi


def run(models: list, source: Path, out: Path, explain: bool = False, **kwargs: object):
    function = predict_explained if explain else predict
    return function(models, source, out, batch_size=3, workers=1, progress=False, precision="fp32", **kwargs)


def test_explain_writes_heatmaps_referenced_by_studies_json_and_report(
    tiny_cache: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    cache, _ = tiny_cache
    out = tmp_path / "out"
    # An ensemble: its first member explains, the ensemble's probabilities choose the classes.
    result = run([make_member(1), make_member(2)], cache, out, explain=True, explain_top=2,
                 explain_method="gradcampp", threshold=0.5)
    payload = json.loads((out / "studies.json").read_text())
    slices = pd.read_parquet(out / "slices.parquet")
    report = (out / "report.html").read_text()
    assert result.files["report"] == out / "report.html"
    assert len(payload["studies"]) == 2
    for study in payload["studies"]:
        heatmaps = study["heatmaps"]
        explained = [h["image_id"] for h in heatmaps]
        top = [s["image_id"] for s in study["suspicious_slices"][:2]]
        assert list(dict.fromkeys(explained)) == top  # the summary's most suspicious slices, in order
        assert study["study_instance_uid"] in report
        for heatmap in heatmaps:
            row = slices[slices.image_id == heatmap["image_id"]].iloc[0]
            assert heatmap["sop_instance_uid"] == row["sop_instance_uid"]
            assert heatmap["method"] == "gradcam++" and heatmap["class"] in LABELS
            present = [label for label in LABELS if row[label] >= 0.5] or ["any"]
            assert heatmap["class"] in present
            assert heatmap["path"].startswith(f"explain/{study['study_instance_uid']}/")
            path = out / heatmap["path"]
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                assert image.format == "PNG" and image.size == FIGURE_SIZE
            assert f'src="{heatmap["path"]}"' in report
    # Nothing temporary is left behind.
    assert not list(out.rglob("*.tmp*"))


def test_without_explain_nothing_of_it_is_written(tiny_cache: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    cache, _ = tiny_cache
    out = tmp_path / "out"
    result = run([make_member(1)], cache, out)
    assert "report" not in result.files
    assert not (out / "explain").exists() and not (out / "report.html").exists()
    assert all("heatmaps" not in s for s in json.loads((out / "studies.json").read_text())["studies"])


def test_a_second_run_replaces_the_heatmaps_and_a_plain_run_removes_them(
    tiny_cache: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    cache, _ = tiny_cache
    out = tmp_path / "out"
    run([make_member(1)], cache, out, explain=True, explain_top=2, explain_method="saliency")
    first = {p.relative_to(out) for p in (out / "explain").rglob("*.png")}
    run([make_member(1)], cache, out, explain=True, explain_top=1, explain_method="saliency")
    second = {p.relative_to(out) for p in (out / "explain").rglob("*.png")}
    listed = {Path(h["path"]) for s in json.loads((out / "studies.json").read_text())["studies"]
              for h in s["heatmaps"]}
    # only the second run's maps remain, exactly those studies.json lists (top 1 < top 2)
    assert second == listed and len(second) < len(first)
    run([make_member(1)], cache, out)
    assert not (out / "explain").exists() and not (out / "report.html").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_unknown_explain_method_is_refused_before_predicting(
    tiny_cache: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    cache, _ = tiny_cache
    with pytest.raises(ValueError, match="gradcam, gradcampp or saliency"):
        run([make_member(1)], cache, tmp_path / "out", explain=True, explain_method="lime")
    assert not (tmp_path / "out").exists()


def test_predict_command_explain(dicom_folder: Path, tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "train", "demo", seed=3)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["predict", "--model", str(run_dir), str(dicom_folder), "-o", str(out), "--explain",
         "--explain-top", "1", "--explain-method", "saliency", "--workers", "1", "--no-progress"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    studies = json.loads((out / "studies.json").read_text())["studies"]
    assert len(studies) == 2
    for study in studies:
        assert len({h["image_id"] for h in study["heatmaps"]}) == 1
        for heatmap in study["heatmaps"]:
            assert heatmap["method"] == "saliency" and (out / heatmap["path"]).is_file()
    bad = CliRunner().invoke(
        app, ["predict", "--model", str(run_dir), str(dicom_folder), "-o", str(tmp_path / "x"),
              "--explain", "--explain-method", "lime"],
    )
    assert bad.exit_code == 1 and "--explain-method: explain method 'lime'" in bad.output


def test_hostile_uids_in_a_cache_never_choose_where_heatmaps_go(
    tiny_cache: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """A cache from elsewhere whose slices table holds `..` and `../` ids: every file stays in OUT
    (the study folder becomes study-<hash>, an image id that is not a file name gets no PNG)."""
    cache, slices = tiny_cache
    hostile = slices.copy()
    hostile.loc[hostile["study_instance_uid"] == "9.1", "study_instance_uid"] = ".."
    first = hostile.index[hostile["study_instance_uid"] == "9.2"]
    hostile.loc[first, "image_id"] = [f"../../escape{k}" for k in range(len(first))]
    hostile.to_parquet(cache / "slices.parquet")
    sandbox = tmp_path / "sandbox"
    out = sandbox / "out"
    run([make_member(1)], cache, out, explain=True, explain_top=2)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and cache not in p.parents and out not in p.parents]
    assert outside == []
    folders = sorted(p.name for p in (out / "explain").iterdir())
    assert folders[0].startswith("study-") and len(folders) == 1  # 9.2's PNGs were all refused
    assert not list(out.rglob("escape*"))
