"""Evaluation reports (metrics with study-bootstrap intervals, curves, calibration, HTML) and the
comparison table of training runs."""

from ichscan.evaluate.bootstrap import bootstrap_counts, percentile_interval, weighted_auc, weighted_metrics
from ichscan.evaluate.evaluation import evaluate
from ichscan.evaluate.tables import EvaluationInputError, join_predictions, read_labels, read_predictions

__all__ = [
    "EvaluationInputError",
    "bootstrap_counts",
    "evaluate",
    "join_predictions",
    "percentile_interval",
    "read_labels",
    "read_predictions",
    "weighted_auc",
    "weighted_metrics",
]
