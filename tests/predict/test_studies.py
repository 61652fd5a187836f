"""Per-study summary and Kaggle submission, checked against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ichscan.labels import LABELS
from ichscan.predict import (
    STUDY_COLUMNS,
    label_thresholds,
    submission_frame,
    submission_ids,
    summarize_studies,
)


def slice_predictions() -> pd.DataFrame:
    # Study A: two series; study B: one series. Columns any, edh, iph, ivh, sah, sdh.
    rows = [
        ("A", "A.1", 0, "ID_a0", [0.10, 0.01, 0.05, 0.00, 0.02, 0.08]),
        ("A", "A.1", 1, "ID_a1", [0.90, 0.02, 0.70, 0.10, 0.05, 0.20]),
        ("A", "A.2", 0, "ID_a2", [0.90, 0.60, 0.10, 0.05, 0.01, 0.30]),
        ("A", "A.2", 1, "ID_a3", [0.40, 0.03, 0.20, 0.55, 0.01, 0.10]),
        ("B", "B.1", 0, "ID_b0", [0.05, 0.00, 0.01, 0.00, 0.30, 0.49]),
        ("B", "B.1", 1, "ID_b1", [0.20, 0.00, 0.02, 0.00, 0.10, 0.50]),
    ]
    frame = pd.DataFrame(
        [
            {
                "study_instance_uid": s,
                "series_instance_uid": se,
                "slice_index": i,
                "image_id": im,
                "patient_id": f"P{s}",
                **dict(zip(LABELS, p)),
            }
            for s, se, i, im, p in rows
        ]
    )
    return frame


def test_study_probabilities_are_the_max_over_slices() -> None:
    table, records = summarize_studies(slice_predictions(), threshold=0.5, top_k=3)
    assert list(table.columns) == list(STUDY_COLUMNS)
    # Highest p(any) first: A (0.9) then B (0.2).
    assert table["study_instance_uid"].tolist() == ["A", "B"]
    a, b = table.iloc[0], table.iloc[1]
    assert (a.n_series, a.n_slices, b.n_series, b.n_slices) == (2, 4, 1, 2)
    np.testing.assert_allclose(a[list(LABELS)].to_numpy(float), [0.90, 0.60, 0.70, 0.55, 0.05, 0.30])
    np.testing.assert_allclose(b[list(LABELS)].to_numpy(float), [0.20, 0.00, 0.02, 0.00, 0.30, 0.50])
    assert a.subtypes_present == "epidural;intraparenchymal;intraventricular"
    assert b.subtypes_present == "subdural"  # 0.50 reaches the threshold, 0.49 would not
    assert bool(a.ich_detected) and not bool(b.ich_detected)
    assert records[0]["subtypes_present"] == ["epidural", "intraparenchymal", "intraventricular"]
    assert records[1]["max_probability"]["subdural"] == pytest.approx(0.5)


def test_top_slices_ordered_by_p_any_then_series_and_index() -> None:
    _, records = summarize_studies(slice_predictions(), threshold=0.5, top_k=3)
    top_a = [(s["image_id"], s["slice_index"], s["probability_any"]) for s in records[0]["suspicious_slices"]]
    # Tie at 0.9 between A.1/1 and A.2/0: series A.1 first; then 0.4.
    assert top_a == [
        ("ID_a1", 1, pytest.approx(0.9)),
        ("ID_a2", 0, pytest.approx(0.9)),
        ("ID_a3", 1, pytest.approx(0.4)),
    ]
    assert [s["image_id"] for s in records[1]["suspicious_slices"]] == ["ID_b1", "ID_b0"]


def test_per_label_thresholds() -> None:
    table, _ = summarize_studies(
        slice_predictions(), threshold={"subdural": 0.6, "subarachnoid": 0.25}, top_k=1
    )
    assert table.set_index("study_instance_uid").loc["B", "subtypes_present"] == "subarachnoid"
    assert label_thresholds({"any": 0.2})["epidural"] == 0.5
    with pytest.raises(ValueError, match="unknown labels"):
        label_thresholds({"bleed": 0.3})
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        label_thresholds(1.5)


def test_submission_has_six_rows_per_image_with_kaggle_ids() -> None:
    frame = slice_predictions().iloc[:2].copy()
    frame.loc[1, "image_id"] = "1.2.840.99"  # a non-RSNA image id (SOPInstanceUID)
    submission = submission_frame(frame)
    assert list(submission.columns) == ["ID", "Label"]
    assert len(submission) == 6 * len(frame)
    assert submission["ID"].tolist()[:7] == [
        "ID_a0_any",
        "ID_a0_epidural",
        "ID_a0_intraparenchymal",
        "ID_a0_intraventricular",
        "ID_a0_subarachnoid",
        "ID_a0_subdural",
        "ID_1.2.840.99_any",
    ]
    np.testing.assert_allclose(
        submission["Label"].to_numpy()[6:], frame.iloc[1][list(LABELS)].to_numpy(float)
    )
    assert submission_ids(np.array([], dtype=object)).size == 0
