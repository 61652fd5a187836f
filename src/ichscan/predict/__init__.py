"""Inference on DICOM folders, manifests or caches: ensembles, flip TTA, per-study summaries."""

from ichscan.predict.ensemble import (
    EnsembleMember,
    combine_probabilities,
    load_members,
    member_probabilities,
    normalize_weights,
)
from ichscan.predict.inputs import InputError, detect_input_kind, prepare_input
from ichscan.predict.outputs import SLICE_COLUMNS, submission_frame, submission_ids
from ichscan.predict.pipeline import PredictionResult, predict, predict_probabilities
from ichscan.predict.studies import STUDY_COLUMNS, label_thresholds, summarize_studies

__all__ = [
    "SLICE_COLUMNS",
    "STUDY_COLUMNS",
    "EnsembleMember",
    "InputError",
    "PredictionResult",
    "combine_probabilities",
    "detect_input_kind",
    "label_thresholds",
    "load_members",
    "member_probabilities",
    "normalize_weights",
    "predict",
    "predict_probabilities",
    "prepare_input",
    "submission_frame",
    "submission_ids",
    "summarize_studies",
]
