"""RSNA label parsing: pivot, duplicates, conflicts, gaps and bad rows, against hand-made files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ichscan.dicom.labels import LabelFileError, join_labels, read_rsna_labels
from ichscan.labels import LABELS


def _rows(image: str, values: tuple[int, ...]) -> list[str]:
    return [f"{image}_{name},{value}" for name, value in zip(LABELS, values, strict=True)]


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("ID,Label\n" + "\n".join(rows) + "\n")
    return path


def test_pivot_in_label_order_with_every_problem(tmp_path: Path) -> None:
    rows = (
        _rows("ID_00aa", (1, 0, 1, 0, 0, 1))
        + _rows("ID_00bb", (0, 0, 0, 0, 0, 0))
        + ["ID_00bb_subdural,0", "ID_00aa_any,1"]  # exact duplicates
        + _rows("ID_00cc", (1, 0, 0, 0, 0, 1))
        + ["ID_00cc_subdural,0"]  # conflicts with the 1 above
        + ["ID_00dd_any,1", "ID_00dd_epidural,1"]  # four subtypes missing
        + _rows("ID_00ee", (0, 1, 0, 0, 0, 0))  # any contradicts epidural
        + ["ID_00ff_bleeding,1", "not-an-id,0", "ID_00aa_epidural,2"]  # invalid rows
    )
    table = read_rsna_labels(_write(tmp_path / "train.csv", rows))

    assert list(table.labels.columns) == list(LABELS)
    assert table.labels.index.name == "image_id"
    assert table.labels.dtypes.eq(np.float32).all()
    assert table.labels.loc["ID_00aa"].tolist() == [1, 0, 1, 0, 0, 1]
    assert table.labels.loc["ID_00bb"].tolist() == [0] * 6
    assert table.labels.loc["ID_00cc"].isna().all()  # conflict: nothing guessed
    dd = table.labels.loc["ID_00dd"]
    assert dd[["any", "epidural"]].tolist() == [1, 1] and dd.iloc[2:].isna().all()
    assert table.labels.loc["ID_00ee"].tolist() == [0, 1, 0, 0, 0, 0]  # kept as given

    assert table.n_rows == len(rows)
    assert table.n_duplicate_rows == 2
    assert table.conflicts.to_dict("records") == [
        {"image_id": "ID_00cc", "subtype": "subdural", "labels": "0,1", "n_rows": 2}
    ]
    assert table.incomplete.to_dict("records") == [
        {
            "image_id": "ID_00dd",
            "missing": "intraparenchymal,intraventricular,subarachnoid,subdural",
        }
    ]
    assert table.inconsistent["image_id"].tolist() == ["ID_00ee"]
    first_invalid = len(rows) - 3 + 2  # 1-based file line, header is line 1
    assert table.invalid.to_dict("records") == [
        {
            "line": first_invalid,
            "ID": "ID_00ff_bleeding",
            "Label": "1",
            "reason": "unknown subtype",
        },
        {
            "line": first_invalid + 1,
            "ID": "not-an-id",
            "Label": "0",
            "reason": "ID is not ID_<hex>_<subtype>",
        },
        {
            "line": first_invalid + 2,
            "ID": "ID_00aa_epidural",
            "Label": "2",
            "reason": "Label is not 0 or 1",
        },
    ]
    issues = table.issues()
    assert list(issues.columns) == ["image_id", "reason"]
    assert len(issues) == 1 + 1 + 3 + 1


def test_matches_pandas_pivot_on_random_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = [f"ID_{i:06x}" for i in rng.choice(16**6, 300, replace=False)]
    frame = pd.DataFrame(
        [(f"{image}_{name}", int(rng.integers(0, 2))) for image in images for name in LABELS],
        columns=["ID", "Label"],
    ).sample(frac=1.0, random_state=1)
    frame.to_csv(tmp_path / "labels.csv", index=False)
    table = read_rsna_labels(tmp_path / "labels.csv")

    reference = frame.assign(
        image_id=frame["ID"].str.rsplit("_", n=1).str[0],
        subtype=frame["ID"].str.rsplit("_", n=1).str[1],
    ).pivot(index="image_id", columns="subtype", values="Label")[list(LABELS)]
    pd.testing.assert_frame_equal(
        table.labels.sort_index(),
        reference.astype(np.float32).sort_index(),
        check_names=False,
        check_index_type=False,
        check_column_type=False,
    )


def test_join_counts_both_directions(tmp_path: Path) -> None:
    table = read_rsna_labels(
        _write(tmp_path / "l.csv", _rows("ID_01", (1, 1, 0, 0, 0, 0)) + _rows("ID_02", (0,) * 6))
    )
    manifest = pd.DataFrame(
        {"image_id": pd.Series(["ID_01", "1.2.3"], dtype=str), "slice_index": [0, 1]}
    )
    joined, join = join_labels(manifest, table)
    assert joined.loc[0, list(LABELS)].tolist() == [1, 1, 0, 0, 0, 0]
    assert joined.loc[1, list(LABELS)].isna().all()
    assert joined["subdural"].dtype == np.float32
    assert (join.labelled_slices, join.unlabelled_slices) == (1, 1)
    assert join.labels_without_dicom.tolist() == ["ID_02"]


def test_unreadable_label_files(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="no such file"):
        read_rsna_labels(tmp_path / "missing.csv")
    (tmp_path / "wrong.csv").write_text("image,label\nID_01_any,1\n")
    with pytest.raises(LabelFileError, match="expected columns ID,Label"):
        read_rsna_labels(tmp_path / "wrong.csv")
