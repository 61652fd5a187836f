"""`evaluate`: metrics equal ichscan.metrics and scikit-learn, study bootstrap, figures and report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ichscan import metrics
from ichscan.evaluate import EvaluationInputError, bootstrap_counts, evaluate
from ichscan.evaluate.evaluation import bootstrap_samples
from ichscan.labels import LABELS


def synthetic(
    n_studies: int = 30, slices_per_study: int = 6, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions (probabilities by label) and labels (manifest-like) for the same images."""
    rng = np.random.default_rng(seed)
    n = n_studies * slices_per_study
    study = np.repeat([f"1.9.{s}" for s in range(n_studies)], slices_per_study)
    bleeding_study = np.repeat(rng.random(n_studies) < 0.5, slices_per_study)
    subtypes = (rng.random((n, 5)) < [0.1, 0.4, 0.3, 0.4, 0.5]) & bleeding_study[:, None]
    y = np.column_stack([subtypes.any(axis=1), subtypes]).astype(np.float32)
    p = np.clip(0.4 * y + 0.6 * rng.random((n, 6)), 0.001, 0.999)
    image_id = [f"ID_{i:06x}" for i in range(n)]
    ids = {"image_id": image_id, "study_instance_uid": study}
    predictions = pd.DataFrame(
        {
            **ids,
            "series_instance_uid": study,
            "slice_index": np.tile(np.arange(slices_per_study), n_studies),
            **dict(zip(LABELS, p.T)),
        }
    )
    labels = pd.DataFrame({**ids, "patient_id": study, **dict(zip(LABELS, y.T))})
    return predictions, labels


@pytest.fixture()
def labelled(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    predictions, labels = synthetic()
    path = tmp_path / "manifest.parquet"
    labels.to_parquet(path, index=False)
    return predictions, path


def test_point_estimates_equal_ichscan_metrics_and_sklearn(
    labelled: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    predictions, labels_path = labelled
    result = evaluate(
        predictions, labels_path, tmp_path / "report", n_bootstrap=50, seed=0, figures=False, progress=False
    )
    labels = pd.read_parquet(labels_path)
    y, p = labels[list(LABELS)].to_numpy(float), predictions[list(LABELS)].to_numpy(float)
    slice_level = result["slice"]
    assert slice_level["overall"]["weighted_log_loss"]["value"] == pytest.approx(
        metrics.weighted_log_loss(y, p)
    )
    for k, label in enumerate(LABELS):
        assert slice_level["per_label"][label]["auc"]["value"] == pytest.approx(
            roc_auc_score(y[:, k], p[:, k])
        )
    at = metrics.threshold_metrics(y, p, 0.5)
    assert slice_level["per_label"]["subdural"]["f1"]["value"] == pytest.approx(at["subdural"]["f1"])
    # Study level: positive when any slice is, score the max over slices (computed here with pandas).
    frame = pd.concat(
        [labels[["study_instance_uid", *LABELS]], predictions[list(LABELS)].add_prefix("p_")], axis=1
    )
    per_study = frame.groupby("study_instance_uid").max()
    study_auc = roc_auc_score(per_study["any"], per_study["p_any"])
    assert result["study"]["per_label"]["any"]["auc"]["value"] == pytest.approx(study_auc)
    assert result["counts"]["n_studies"] == 30 and result["counts"]["n_evaluated"] == 180
    assert result["counts"]["positives"]["study"]["any"] == int(per_study["any"].sum())


def test_intervals_contain_the_estimate_and_follow_the_seed(
    labelled: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    predictions, labels_path = labelled
    first = evaluate(
        predictions, labels_path, tmp_path / "a", n_bootstrap=200, seed=7, figures=False, progress=False
    )
    again = evaluate(
        predictions, labels_path, tmp_path / "b", n_bootstrap=200, seed=7, figures=False, progress=False
    )
    other = evaluate(
        predictions, labels_path, tmp_path / "c", n_bootstrap=200, seed=8, figures=False, progress=False
    )
    for level in ("slice", "study"):
        for name, entry in first[level]["overall"].items():
            assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], (level, name)
            assert entry["ci_low"] < entry["ci_high"]
        any_auc = first[level]["per_label"]["any"]["auc"]
        assert any_auc["ci_low"] <= any_auc["value"] <= any_auc["ci_high"]
    assert first["slice"] == again["slice"] and first["study"] == again["study"]
    assert first["slice"]["overall"]["mean_auc"] != other["slice"]["overall"]["mean_auc"]


def test_bootstrap_resamples_whole_studies(labelled: tuple[pd.DataFrame, Path]) -> None:
    predictions, labels_path = labelled
    labels = pd.read_parquet(labels_path)
    y, p = labels[list(LABELS)].to_numpy(float), predictions[list(LABELS)].to_numpy(float)
    studies, group = np.unique(labels["study_instance_uid"], return_inverse=True)
    study_y, study_p, _ = metrics.study_level_arrays(y, p, labels["study_instance_uid"])
    samples = bootstrap_samples(
        {"slice": (y, p), "study": (study_y, study_p)},
        group,
        len(studies),
        n_bootstrap=4,
        seed=3,
        threshold=0.5,
        progress=False,
    )
    counts = bootstrap_counts(len(studies), 4, seed=3)
    for b in range(4):
        drawn = np.repeat(np.arange(len(studies)), counts[b])  # studies drawn with replacement
        rows = np.concatenate([np.flatnonzero(group == s) for s in drawn])
        assert samples["slice"]["weighted_log_loss"][b] == pytest.approx(
            metrics.weighted_log_loss(y[rows], p[rows])
        )
        assert samples["slice"]["auc"][b, 0] == pytest.approx(roc_auc_score(y[rows, 0], p[rows, 0]))
        assert samples["study"]["auc"][b, 0] == pytest.approx(
            roc_auc_score(study_y[drawn, 0], study_p[drawn, 0])
        )


def test_report_files_and_html_references(labelled: tuple[pd.DataFrame, Path], tmp_path: Path) -> None:
    predictions, labels_path = labelled
    out = tmp_path / "report"
    evaluate(predictions, labels_path, out, n_bootstrap=20, progress=False)
    stored = json.loads(
        (out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}")
    )
    assert set(stored) >= {"settings", "counts", "slice", "study", "files"}
    html = (out / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert sorted(sources) == sorted(
        ["roc_curves.png", "pr_curves.png", "calibration.png", "confusion_matrices.png"]
    )
    for source in sources:
        assert (out / source).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "weighted log loss" in html and "subdural" in html
    assert not list(out.glob(".*tmp*"))  # atomic writes left no temporary files


def test_rsna_csv_labels_and_kaggle_submission_predictions(tmp_path: Path) -> None:
    predictions, labels = synthetic(n_studies=8, slices_per_study=4, seed=2)
    rows = [
        (f"{i}_{label}", int(v))
        for i, values in zip(labels.image_id, labels[list(LABELS)].to_numpy())
        for label, v in zip(LABELS, values)
    ]
    csv_labels = tmp_path / "train.csv"
    pd.DataFrame(rows, columns=["ID", "Label"]).to_csv(csv_labels, index=False)
    from ichscan.predict import submission_frame

    submission = tmp_path / "submission.csv"
    submission_frame(predictions).to_csv(submission, index=False)
    from_csv = evaluate(
        submission, csv_labels, tmp_path / "r1", n_bootstrap=10, figures=False, progress=False
    )
    from_frame = evaluate(
        predictions, csv_labels, tmp_path / "r2", n_bootstrap=10, figures=False, progress=False
    )
    # The submission carries no study ids: slice level only, images resampled.
    assert "study" not in from_csv and from_csv["settings"]["resampled_unit"] == "image"
    assert "study" in from_frame
    assert from_csv["slice"]["overall"]["weighted_log_loss"]["value"] == pytest.approx(
        from_frame["slice"]["overall"]["weighted_log_loss"]["value"], rel=1e-6
    )


def test_unlabelled_and_unmatched_rows_are_counted(
    labelled: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    predictions, labels_path = labelled
    labels = pd.read_parquet(labels_path)
    labels.loc[:2, "epidural"] = np.nan  # 3 partially labelled images
    labels = labels.iloc[5:]  # images 0..4 have no label row at all (3 of them were partial anyway)
    extra = labels.iloc[:1].assign(image_id="ID_not_predicted")
    path = tmp_path / "labels.parquet"
    pd.concat([labels, extra]).to_parquet(path, index=False)
    result = evaluate(predictions, path, tmp_path / "r", n_bootstrap=10, figures=False, progress=False)
    counts = result["counts"]
    assert counts["n_predictions"] == 180 and counts["n_evaluated"] == 175
    assert counts["n_predictions_without_labels"] == 5 and counts["n_labels_without_predictions"] == 1


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    predictions, labels = synthetic(n_studies=3)
    labels_path = tmp_path / "labels.parquet"
    labels.drop(columns=["subdural"]).to_parquet(labels_path)
    with pytest.raises(EvaluationInputError, match=r"labels\.parquet: no label column\(s\) subdural"):
        evaluate(predictions, labels_path, tmp_path / "r", n_bootstrap=5, figures=False, progress=False)
    bad = predictions.assign(any=1.5)
    labels.to_parquet(labels_path)
    with pytest.raises(EvaluationInputError, match=r"in \[0, 1\]"):
        evaluate(bad, labels_path, tmp_path / "r", n_bootstrap=5, figures=False, progress=False)
    with pytest.raises(EvaluationInputError, match="no such file"):
        evaluate(tmp_path / "missing.parquet", labels_path, tmp_path / "r", figures=False, progress=False)
