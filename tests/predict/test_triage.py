"""Triage at the run's operating point: predict decides ICH with it, evaluate reports it (by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from run_factory import make_run_dir
from typer.testing import CliRunner

from ichscan.labels import LABELS
from ichscan.train.operating_point import OperatingPoint, write_operating_point


def point_between(threshold: float) -> OperatingPoint:
    return OperatingPoint(slope=2.0, intercept=-1.0, target_sensitivity=0.95, score_threshold=threshold,
                          threshold=0.0, sensitivity=1.0, specificity=0.5, n_studies=10, n_positive=4, source="hand")


def test_predict_and_evaluate_use_the_stored_operating_point(tiny_cache: tuple[Path, pd.DataFrame],
                                                              tmp_path: Path) -> None:
    from ichscan.cli import app

    cache, slices = tiny_cache
    run = make_run_dir(tmp_path, "triage", seed=5)
    runner = CliRunner()
    base = ["predict", str(cache), "--model", str(run), "--no-progress", "--precision", "fp32"]
    result = runner.invoke(app, [*base, "-o", str(tmp_path / "raw")])
    assert result.exit_code == 0, result.output
    assert "uncalibrated (no operating point" in result.output
    raw = pd.read_csv(tmp_path / "raw" / "studies.csv", dtype={"study_instance_uid": str}).set_index("study_instance_uid")
    high, low = raw["any"].idxmax(), raw["any"].idxmin()
    assert raw["ich_probability"].isna().all()
    # a threshold between the two studies' scores: only the higher one is flagged
    middle = float((raw.loc[high, "any"] + raw.loc[low, "any"]) / 2)
    write_operating_point(run, point_between(middle))
    result = runner.invoke(app, [*base, "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert f"max p(any) ≥ {middle:.4f}" in result.output
    studies = pd.read_csv(tmp_path / "out" / "studies.csv", dtype={"study_instance_uid": str}).set_index("study_instance_uid")
    assert bool(studies.loc[high, "ich_detected"]) and not bool(studies.loc[low, "ich_detected"])
    m = studies["any"].to_numpy()
    np.testing.assert_allclose(studies["ich_probability"], 1 / (1 + np.exp(-(2 * np.log(m / (1 - m)) - 1))),
                               rtol=1e-6)
    stored = json.loads((tmp_path / "out" / "studies.json").read_text())
    assert stored["operating_point"]["score_threshold"] == middle
    assert stored["splits"] == [{"method": "patient", "n_folds": 5, "seed": 0, "fold": 0, "group": "patient_id"}]

    # evaluate: the higher study is truly positive, the lower negative → sensitivity 1/1, specificity 1/1
    labels = slices[["image_id", "study_instance_uid"]].copy()
    for label in LABELS:
        labels[label] = (labels["study_instance_uid"] == high).astype(np.float32)
    labels.to_parquet(tmp_path / "labels.parquet")
    evaluate = ["evaluate", str(tmp_path / "out" / "slices.parquet"), "--labels", str(tmp_path / "labels.parquet"),
                "--bootstrap", "5", "--no-figures", "--no-progress"]
    result = runner.invoke(app, [*evaluate, "-o", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "sensitivity 1.000 (1/1), specificity 1.000 (1/1)" in result.output, result.output
    assert "model validated on a patient, 5 folds split" in result.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["operating_point"]["evaluated"] == {"sensitivity": 1.0, "specificity": 1.0, "tp": 1, "fn": 0,
                                                       "tn": 1, "fp": 0, "n_studies": 2}
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Triage operating point" in html and "patient, 5 folds split" in html
    # --model RUN takes the run's point instead; one above both studies flags neither: sensitivity 0
    write_operating_point(run, point_between(min(0.999999, float(raw["any"].max()) + 1e-4)))
    result = runner.invoke(app, [*evaluate, "-o", str(tmp_path / "report2"), "--model", str(run)])
    assert result.exit_code == 0, result.output
    assert "sensitivity 0.000 (0/1), specificity 1.000 (1/1)" in result.output
