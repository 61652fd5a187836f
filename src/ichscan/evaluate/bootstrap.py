"""Study-level bootstrap: every metric under many resamplings at once, as weighted metrics.

Resampling n studies with replacement is the same as giving study j the weight c_j, the number of
times it was drawn, with ``c ~ Multinomial(n, 1/n)``; every slice of study j carries c_j. So all B
resamples are a weight matrix W (B, n) and each metric becomes a weighted metric, evaluated for
all rows of W with array operations:

- log loss per label: ``LL_b = Σ_i W_bi ℓ_i / Σ_i W_bi`` with ``ℓ = −(y log p + (1 − y) log(1 − p))``,
  p clipped to [ε, 1 − ε]; the RSNA score is ``(2 LL_any + Σ LL_subtypes) / 7``.
- ROC AUC (Mann–Whitney with ties counted ½): with distinct scores s_1 < … < s_G and, per group g,
  positive weight P_g and negative weight N_g, ``AUC = Σ_g P_g (Σ_{h<g} N_h + ½ N_g) / (ΣP · ΣN)``.
- Confusion counts at a threshold t (predicted positive ⇔ p ≥ t): ``TP = W (y ⊙ ŷ)``, etc., and
  precision, recall, specificity, accuracy and F_β from them.

With W = 1 these are the ordinary metrics (tested against scikit-learn). Percentile intervals
skip resamples where a metric is undefined (e.g. no positives drawn).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ichscan.labels import LABEL_WEIGHTS
from ichscan.metrics import binary_log_loss

THRESHOLD_METRICS: tuple[str, ...] = (
    "precision",
    "recall",
    "specificity",
    "f1",
    "f2",
    "accuracy",
)
BLOCK_ELEMENTS = 4_000_000  # weights per block: bounds memory at ~32 MB per (B, n) float64 array


def bootstrap_counts(n_groups: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n_groups) int counts: how often each study is drawn in each resample."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_bootstrap)


def weight_blocks(weights: np.ndarray) -> Iterator[slice]:
    """Row slices of `weights` (B, n) small enough to keep temporary arrays bounded."""
    n_rows, n_cols = weights.shape
    step = max(1, BLOCK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def weighted_log_loss_per_label(
    y_true: np.ndarray, y_prob: np.ndarray, weights: np.ndarray, eps: float = 1e-7
) -> np.ndarray:
    """(B, L) weighted binary log loss per label for `weights` (B, n), arrays (n, L)."""
    losses = binary_log_loss(y_true.astype(np.float64), y_prob.astype(np.float64), eps)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ losses) / weights.sum(axis=1, keepdims=True)


def rsna_log_loss(per_label: np.ndarray) -> np.ndarray:
    """The RSNA score from per-label log losses (…, 6): `any` weighs 2, each subtype 1."""
    w = np.asarray(LABEL_WEIGHTS)
    return per_label @ w / w.sum()


def weighted_auc(y_true: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B,) weighted ROC AUC of one label for `weights` (B, n); NaN where a class has no weight."""
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_score)) + 1])
    positive = y_true[order] > 0.5
    result = np.empty(weights.shape[0])
    for block in weight_blocks(weights):
        w = weights[block][:, order].astype(np.float64)
        pos = np.add.reduceat(np.where(positive, w, 0.0), starts, axis=1)
        neg = np.add.reduceat(np.where(positive, 0.0, w), starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        numerator = np.sum(pos * (below + 0.5 * neg), axis=1)
        denominator = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            result[block] = np.where(denominator > 0, numerator / denominator, np.nan)
    return result


def confusion_counts(
    y_true: np.ndarray, y_prob: np.ndarray, weights: np.ndarray, threshold: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Weighted TP, FP, FN, TN, each (B, L), predicted positive ⇔ p ≥ threshold."""
    predicted = (y_prob >= threshold).astype(np.float64)
    actual = (y_true > 0.5).astype(np.float64)
    w = weights.astype(np.float64)
    return {
        "tp": w @ (actual * predicted),
        "fp": w @ ((1.0 - actual) * predicted),
        "fn": w @ (actual * (1.0 - predicted)),
        "tn": w @ ((1.0 - actual) * (1.0 - predicted)),
    }


def rates_from_counts(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Precision, recall, specificity, F1, F2, accuracy from confusion counts (0 when undefined).

    F_β = (1 + β²) TP / ((1 + β²) TP + β² FN + FP); a zero denominator gives 0, as scikit-learn's
    ``zero_division=0``.
    """
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]

    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)

    def f_beta(beta: float) -> np.ndarray:
        b2 = beta * beta
        return ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)

    return {
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "f1": f_beta(1.0),
        "f2": f_beta(2.0),
        "accuracy": ratio(tp + tn, tp + fp + fn + tn),
    }


def weighted_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, weights: np.ndarray, threshold: float = 0.5
) -> dict[str, np.ndarray]:
    """Every per-label metric (B, L) and the overall scores (B,) under the weight rows `weights`.

    Keys: `log_loss`, `auc`, the THRESHOLD_METRICS (per label, (B, L)); `weighted_log_loss`,
    `mean_auc`, `macro_f1`, `macro_f2` (overall, (B,)). Labels with no positives or no negatives
    have AUC NaN and are left out of the mean.
    """
    per_label_ll = weighted_log_loss_per_label(y_true, y_prob, weights)
    auc = np.stack(
        [weighted_auc(y_true[:, k], y_prob[:, k], weights) for k in range(y_true.shape[1])], axis=1
    )
    rates = rates_from_counts(confusion_counts(y_true, y_prob, weights, threshold))
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(auc)
        mean_auc = np.where(
            valid.any(axis=1), np.nansum(auc, axis=1) / np.maximum(valid.sum(axis=1), 1), np.nan
        )
    return {
        "log_loss": per_label_ll,
        "auc": auc,
        **rates,
        "weighted_log_loss": rsna_log_loss(per_label_ll)
        if y_true.shape[1] == len(LABEL_WEIGHTS)
        else per_label_ll.mean(axis=1),
        "mean_auc": mean_auc,
        "macro_f1": rates["f1"].mean(axis=1),
        "macro_f2": rates["f2"].mean(axis=1),
    }


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds over axis 0, ignoring NaN resamples (NaN if all are)."""
    alpha = (1.0 - confidence) / 2.0
    finite = np.isfinite(samples)
    safe = np.where(finite, samples, np.nan)
    all_nan = ~finite.any(axis=0)
    filled = np.where(all_nan[None, ...], 0.0, safe)
    low, high = np.nanpercentile(filled, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return np.where(all_nan, np.nan, low), np.where(all_nan, np.nan, high)
