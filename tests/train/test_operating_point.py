"""The triage operating point: Platt calibration of the study score and the threshold for a sensitivity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ichscan.train.operating_point import (
    OperatingPointError,
    fit_operating_point,
    operating_point_of,
    read_operating_point,
    study_scores,
    threshold_for_sensitivity,
    write_operating_point,
)

POSITIVES = np.array([0.9, 0.8, 0.7, 0.6])
NEGATIVES = np.array([0.65, 0.3, 0.2])


def test_threshold_for_a_sensitivity_by_hand() -> None:
    assert threshold_for_sensitivity(POSITIVES, 0.75) == 0.7  # ⌈0.75·4⌉ = 3rd highest
    assert threshold_for_sensitivity(POSITIVES, 0.95) == 0.6  # ⌈3.8⌉ = 4th
    assert threshold_for_sensitivity(POSITIVES, 0.5) == 0.8  # ⌈2⌉ = 2nd
    assert threshold_for_sensitivity(POSITIVES, 1.0) == 0.6
    with pytest.raises(OperatingPointError, match="no positive study"):
        threshold_for_sensitivity(np.array([]), 0.9)


def test_fit_operating_point_by_hand_and_against_scikit_learn() -> None:
    scores = np.concatenate([POSITIVES, NEGATIVES])
    labels = np.array([1, 1, 1, 1, 0, 0, 0])
    point = fit_operating_point(scores, labels, sensitivity=0.95, source="hand")
    # threshold 0.6 flags all 4 positives and the negative at 0.65: sensitivity 1, specificity 2/3
    assert point.score_threshold == 0.6
    assert point.sensitivity == 1.0 and point.specificity == pytest.approx(2 / 3)
    assert (point.n_studies, point.n_positive) == (7, 4)
    np.testing.assert_array_equal(point.detect(scores), [1, 1, 1, 1, 1, 0, 0])
    # Platt: logistic regression on logit(score) with smoothed targets 5/6 (positives), 1/5 (negatives)
    logit = np.log(scores / (1 - scores))
    targets = np.where(labels == 1, 5 / 6, 1 / 5)
    reference = LogisticRegression(C=np.inf, max_iter=1000).fit(
        np.r_[logit, logit][:, None], np.r_[np.ones(7), np.zeros(7)], sample_weight=np.r_[targets, 1 - targets])
    np.testing.assert_allclose(point.calibrate(scores), reference.predict_proba(logit[:, None])[:, 1], atol=1e-5)
    # a maximum-likelihood logistic fit with intercept reproduces the summed targets: 4·5/6 + 3·1/5
    assert point.calibrate(scores).sum() == pytest.approx(4 * 5 / 6 + 3 / 5, abs=1e-3)
    # the calibrated threshold decides exactly like the raw one (monotone map)
    assert point.threshold == pytest.approx(point.calibrate([0.6])[0])
    assert ((point.calibrate(scores) >= point.threshold) == point.detect(scores)).all()
    point75 = fit_operating_point(scores, labels, sensitivity=0.75)
    assert point75.score_threshold == 0.7 and point75.sensitivity == 0.75 and point75.specificity == 1.0


def test_no_operating_point_without_both_classes_or_with_inverted_scores() -> None:
    with pytest.raises(OperatingPointError, match="3 studies, 3 positive"):
        fit_operating_point(np.array([0.2, 0.5, 0.9]), np.array([1, 1, 1]))
    with pytest.raises(OperatingPointError, match="slope"):
        fit_operating_point(np.array([0.9, 0.8, 0.1, 0.2]), np.array([0, 0, 1, 1]))


def test_study_scores_pool_folds_and_round_trip(tmp_path: Path) -> None:
    # two folds' out-of-fold slices: study score = max p(any), study label = any slice positive
    rows = []
    for fold, studies in ((0, {"s1": ([0.2, 0.9], [0, 1]), "s2": ([0.3, 0.1], [0, 0])}),
                          (1, {"s3": ([0.7, 0.4], [1, 0]), "s4": ([0.6, 0.05], [0, 0])})):
        run = tmp_path / "cv" / f"fold{fold}"
        run.mkdir(parents=True)
        frame = pd.DataFrame([{"study_instance_uid": s, "any": p, "label_any": y}
                              for s, (ps, ys) in studies.items() for p, y in zip(ps, ys)])
        frame.to_parquet(run / "oof.parquet")
        rows.append(frame)
    scores, labels = study_scores(pd.concat(rows))
    np.testing.assert_array_equal(scores, [0.9, 0.3, 0.7, 0.6])
    np.testing.assert_array_equal(labels, [1, 0, 1, 0])
    pooled = operating_point_of([tmp_path / "cv" / "fold0", tmp_path / "cv" / "fold1"], sensitivity=1.0)
    assert pooled.score_threshold == 0.7 and pooled.specificity == 1.0 and pooled.n_studies == 4
    # the scores separate the studies perfectly, yet the smoothed targets keep the fit finite
    assert 0 < pooled.slope < 50 and 0.05 < pooled.calibrate([0.3])[0] < pooled.calibrate([0.9])[0] < 0.95
    assert "cv/fold0/oof.parquet, cv/fold1/oof.parquet" == pooled.source
    write_operating_point(tmp_path / "cv", pooled)
    assert read_operating_point(tmp_path / "cv") == pooled
    assert read_operating_point(tmp_path) is None
