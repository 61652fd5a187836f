"""ichscan.metrics against scikit-learn and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    fbeta_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from ichscan.labels import LABELS
from ichscan.metrics import (
    PROB_COLUMNS,
    best_thresholds,
    per_class_log_loss,
    roc_auc,
    study_level,
    study_level_arrays,
    summarize,
    threshold_metrics,
    weighted_log_loss,
)


@pytest.fixture
def predictions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    y_true = (rng.random((300, 6)) < [0.3, 0.05, 0.1, 0.1, 0.1, 0.15]).astype(float)
    y_true[:, 0] = y_true[:, 1:].max(axis=1)
    noise = rng.normal(0, 0.25, y_true.shape)
    y_prob = np.clip(0.2 + 0.5 * y_true + noise, 0.01, 0.99)
    return y_true, y_prob


def test_weighted_log_loss_hand_computed() -> None:
    y = [[1, 0, 0, 0, 0, 1]]
    p = [[0.9, 0.1, 0.2, 0.3, 0.4, 0.5]]
    expected = -(2 * math.log(0.9) + math.log(0.9) + math.log(0.8) + math.log(0.7)
                 + math.log(0.6) + math.log(0.5)) / 7
    assert weighted_log_loss(y, p) == pytest.approx(expected, rel=1e-12)


def test_weighted_log_loss_equals_sklearn_with_sample_weights(predictions) -> None:
    y_true, y_prob = predictions
    weights = np.tile([2, 1, 1, 1, 1, 1], len(y_true))
    expected = log_loss(y_true.ravel(), y_prob.ravel(), sample_weight=weights)
    assert weighted_log_loss(y_true, y_prob) == pytest.approx(expected, rel=1e-10)


def test_weighted_log_loss_clips_and_excludes_unlabelled_rows(predictions) -> None:
    y_true, y_prob = predictions
    assert weighted_log_loss([[1, 0, 0, 0, 0, 0]], [[0, 0, 0, 0, 0, 0]]) == pytest.approx(
        -2 * math.log(1e-7) / 7, rel=1e-6)
    with_gap = np.vstack([y_true, np.full((1, 6), np.nan)])
    prob_gap = np.vstack([y_prob, np.full((1, 6), 0.5)])
    assert weighted_log_loss(with_gap, prob_gap) == pytest.approx(weighted_log_loss(y_true, y_prob))


def test_per_class_log_loss_matches_sklearn(predictions) -> None:
    y_true, y_prob = predictions
    per_class = per_class_log_loss(y_true, y_prob)
    for k, label in enumerate(LABELS):
        assert per_class[label] == pytest.approx(log_loss(y_true[:, k], y_prob[:, k]), rel=1e-10)
    # the weighted metric is (2·LL_any + Σ LL_sub) / 7
    combined = (2 * per_class["any"] + sum(per_class[s] for s in LABELS[1:])) / 7
    assert weighted_log_loss(y_true, y_prob) == pytest.approx(combined, rel=1e-10)


def test_roc_auc_matches_sklearn_and_is_nan_for_one_class(predictions) -> None:
    y_true, y_prob = predictions
    auc = roc_auc(y_true, y_prob)
    for k, label in enumerate(LABELS):
        assert auc[label] == pytest.approx(roc_auc_score(y_true[:, k], y_prob[:, k]))
    assert auc["mean"] == pytest.approx(np.mean([auc[label] for label in LABELS]))
    y_true = y_true.copy()
    y_true[:, 1] = 0
    degenerate = roc_auc(y_true, y_prob)
    assert math.isnan(degenerate["epidural"])
    assert degenerate["mean"] == pytest.approx(
        np.mean([degenerate[label] for label in LABELS if label != "epidural"]))


def test_threshold_metrics_match_sklearn(predictions) -> None:
    y_true, y_prob = predictions
    result = threshold_metrics(y_true, y_prob, threshold=0.5)
    y_pred = (y_prob >= 0.5).astype(int)
    for k, label in enumerate(LABELS):
        t, p = y_true[:, k], y_pred[:, k]
        assert result[label]["precision"] == pytest.approx(precision_score(t, p, zero_division=0))
        assert result[label]["recall"] == pytest.approx(recall_score(t, p, zero_division=0))
        assert result[label]["f1"] == pytest.approx(f1_score(t, p, zero_division=0))
        assert result[label]["f2"] == pytest.approx(fbeta_score(t, p, beta=2, zero_division=0))
        assert result[label]["accuracy"] == pytest.approx(accuracy_score(t, p))
        assert result[label]["support"] == t.sum()
    for average in ("macro", "micro"):
        assert result[average]["precision"] == pytest.approx(
            precision_score(y_true, y_pred, average=average, zero_division=0))
        assert result[average]["recall"] == pytest.approx(
            recall_score(y_true, y_pred, average=average, zero_division=0))
        assert result[average]["f1"] == pytest.approx(
            f1_score(y_true, y_pred, average=average, zero_division=0))
        assert result[average]["f2"] == pytest.approx(
            fbeta_score(y_true, y_pred, beta=2, average=average, zero_division=0))


def test_per_class_thresholds_and_zero_division() -> None:
    y = np.array([[0, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0]], dtype=float)
    p = np.array([[0.6, 0.1, 0.3, 0.1, 0.1, 0.1], [0.7, 0.1, 0.35, 0.1, 0.1, 0.1]])
    result = threshold_metrics(y, p, threshold={"any": 0.65, "intraparenchymal": 0.32})
    assert (result["any"]["tp"], result["any"]["fp"], result["any"]["tn"]) == (1, 0, 1)
    assert result["intraparenchymal"]["f1"] == 1.0
    assert result["epidural"]["precision"] == 0.0 and result["epidural"]["accuracy"] == 1.0


def test_best_thresholds_maximise_fbeta_by_brute_force(predictions) -> None:
    y_true, y_prob = predictions
    for beta in (1.0, 2.0):
        best = best_thresholds(y_true, y_prob, beta=beta)
        for k, label in enumerate(LABELS):
            # every distinct score as a threshold, all at once
            predicted = y_prob[:, k][:, None] >= np.unique(y_prob[:, k])[None, :]
            positive = y_true[:, k][:, None] == 1
            tp = (predicted & positive).sum(0)
            fp = (predicted & ~positive).sum(0)
            fn = (~predicted & positive).sum(0)
            scores = (1 + beta**2) * tp / ((1 + beta**2) * tp + beta**2 * fn + fp)
            assert best[label]["fbeta"] == pytest.approx(scores.max())
            assert best[label]["fbeta"] == pytest.approx(fbeta_score(
                y_true[:, k], y_prob[:, k] >= best[label]["threshold"], beta=beta))
        thresholds = {label: best[label]["threshold"] for label in LABELS}
        at_best = threshold_metrics(y_true, y_prob, thresholds)
        key = "f1" if beta == 1.0 else "f2"
        for label in LABELS:
            assert at_best[label][key] == pytest.approx(best[label]["fbeta"])
    no_positive = y_true.copy()
    no_positive[:, 1] = 0
    assert math.isnan(best_thresholds(no_positive, y_prob)["epidural"]["threshold"])


def test_study_level_max_over_slices_hand_case() -> None:
    frame = pd.DataFrame({
        "study_instance_uid": ["b", "a", "a", "b", "c"],
        **{label: [0, 1, 0, 0, np.nan] for label in LABELS},
        **{col: [0.2, 0.9, 0.1, 0.4, 0.3] for col in PROB_COLUMNS},
    })
    frame.loc[3, "subdural"] = 1.0
    truth, prob = study_level(frame)
    assert truth.shape == (3, 6)
    np.testing.assert_array_equal(truth[:, 0], [1, 0, np.nan])  # studies a, b, c (c unlabelled)
    np.testing.assert_array_equal(truth[:, 5], [1, 1, np.nan])
    np.testing.assert_allclose(prob[:, 0], [0.9, 0.4, 0.3])
    _, _, studies = study_level_arrays(truth, prob, ["x", "x", "y"])
    assert list(studies) == ["x", "y"]


def test_summarize_has_slice_and_study_levels(predictions) -> None:
    y_true, y_prob = predictions
    studies = np.repeat(np.arange(100), 3)
    summary = summarize(y_true, y_prob, studies)
    assert summary["slice"]["weighted_log_loss"] == pytest.approx(weighted_log_loss(y_true, y_prob))
    assert summary["study"]["n"] == 100 and summary["slice"]["n_unlabelled_excluded"] == 0
    assert set(summary["slice"]) >= {"roc_auc", "at_threshold", "best_f1", "best_f2", "log_loss"}
    study_truth, study_prob, _ = study_level_arrays(y_true, y_prob, studies)
    assert summary["study"]["roc_auc"]["any"] == pytest.approx(
        roc_auc_score(study_truth[:, 0], study_prob[:, 0]))


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="shape"):
        weighted_log_loss(np.zeros((3, 5)), np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        weighted_log_loss(np.zeros((2, 6)), np.full((2, 6), np.nan))
    with pytest.raises(ValueError, match="outside"):
        roc_auc(np.zeros((2, 6)), np.full((2, 6), 1.5))
