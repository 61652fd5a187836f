"""The vectorised weighted metrics behind the bootstrap, against scikit-learn and ichscan.metrics."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, fbeta_score, log_loss, precision_score, recall_score, roc_auc_score

from ichscan import metrics
from ichscan.evaluate.bootstrap import (
    bootstrap_counts,
    percentile_interval,
    weighted_auc,
    weighted_log_loss_per_label,
    weighted_metrics,
)
from ichscan.labels import LABELS


def sample(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    subtypes = (rng.random((n, 5)) < [0.05, 0.2, 0.15, 0.2, 0.25]).astype(float)
    y = np.column_stack([subtypes.max(axis=1), subtypes])
    # Scores rounded to 2 decimals so that ties occur.
    p = np.clip(np.round(0.6 * y + 0.5 * rng.random((n, 6)) - 0.05, 2), 0.0, 1.0)
    return y, p


def test_weighted_auc_with_ties_equals_sklearn_with_sample_weights() -> None:
    y, p = sample()
    rng = np.random.default_rng(1)
    weights = np.vstack([np.ones(len(y)), rng.integers(0, 4, size=(3, len(y)))]).astype(float)
    for k in range(6):
        got = weighted_auc(y[:, k], p[:, k], weights)
        expected = [roc_auc_score(y[:, k], p[:, k], sample_weight=w) for w in weights]
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_integer_weights_equal_repeating_rows() -> None:
    y, p = sample(120, seed=3)
    counts = np.random.default_rng(2).integers(0, 3, size=len(y))
    repeated = np.repeat(np.arange(len(y)), counts)
    auc = weighted_auc(y[:, 0], p[:, 0], counts[None, :].astype(float))[0]
    assert auc == pytest.approx(roc_auc_score(y[repeated, 0], p[repeated, 0]), rel=1e-12)
    ll = weighted_log_loss_per_label(y, p, counts[None, :].astype(float))[0]
    np.testing.assert_allclose(
        ll, list(metrics.per_class_log_loss(y[repeated], p[repeated]).values()), rtol=1e-10
    )


def test_unit_weights_reproduce_ichscan_metrics_and_sklearn() -> None:
    y, p = sample()
    got = {k: v[0] for k, v in weighted_metrics(y, p, np.ones((1, len(y))), threshold=0.5).items()}
    assert got["weighted_log_loss"] == pytest.approx(metrics.weighted_log_loss(y, p), rel=1e-10)
    auc = metrics.roc_auc(y, p)
    np.testing.assert_allclose(got["auc"], [auc[label] for label in LABELS], rtol=1e-12)
    assert got["mean_auc"] == pytest.approx(auc["mean"], rel=1e-12)
    at = metrics.threshold_metrics(y, p, 0.5)
    for name in ("precision", "recall", "f1", "f2", "accuracy"):
        np.testing.assert_allclose(got[name], [at[label][name] for label in LABELS], rtol=1e-12)
    assert got["macro_f1"] == pytest.approx(at["macro"]["f1"], rel=1e-12)
    assert got["macro_f2"] == pytest.approx(at["macro"]["f2"], rel=1e-12)
    predicted = p >= 0.5
    for k in range(6):
        assert got["log_loss"][k] == pytest.approx(
            log_loss(y[:, k], np.clip(p[:, k], 1e-7, 1 - 1e-7)), rel=1e-9
        )
        assert got["precision"][k] == pytest.approx(
            precision_score(y[:, k], predicted[:, k], zero_division=0)
        )
        assert got["recall"][k] == pytest.approx(recall_score(y[:, k], predicted[:, k]))
        assert got["f1"][k] == pytest.approx(f1_score(y[:, k], predicted[:, k]))
        assert got["f2"][k] == pytest.approx(fbeta_score(y[:, k], predicted[:, k], beta=2))
        assert got["specificity"][k] == pytest.approx(recall_score(1 - y[:, k], ~predicted[:, k]))


def test_auc_undefined_without_positives_is_nan_and_left_out_of_the_mean() -> None:
    y, p = sample(50)
    y[:, 1] = 0.0
    got = weighted_metrics(y, p, np.ones((2, len(y))))
    assert np.isnan(got["auc"][:, 1]).all()
    np.testing.assert_allclose(got["mean_auc"], np.nanmean(got["auc"], axis=1))


def test_bootstrap_counts_resample_every_group_and_follow_the_seed() -> None:
    counts = bootstrap_counts(7, 500, seed=4)
    assert counts.shape == (500, 7)
    assert (counts.sum(axis=1) == 7).all()
    np.testing.assert_array_equal(counts, bootstrap_counts(7, 500, seed=4))
    assert not np.array_equal(counts, bootstrap_counts(7, 500, seed=5))
    # Each study is drawn on average once per resample.
    assert counts.mean() == pytest.approx(1.0, abs=0.05)


def test_percentile_interval_ignores_undefined_resamples() -> None:
    samples = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])
    low, high = percentile_interval(samples, confidence=0.5)
    assert (low[0], high[0]) == (1.5, 2.5)  # 25th and 75th percentile of 1, 2, 3
    assert np.isnan(low[1]) and np.isnan(high[1])
