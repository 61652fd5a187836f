"""RSNA label files (`ID_<hex>_<subtype>,Label` rows) → one row of six labels per image.

Nothing is guessed: exact duplicate rows are dropped (counted); an (image, subtype) given both 0
and 1 is a conflict, reported in `LabelTable.conflicts`, and every label of that image is left NaN;
images lacking some subtype rows keep NaN there and are listed in `.incomplete`; rows that do not
parse (bad ID, unknown subtype, label not 0/1) are listed in `.invalid`; images whose `any`
differs from the max of their subtypes are listed in `.inconsistent` (labels kept as given).
All parsing is vectorised (pyarrow regex and dictionary encoding, NumPy bincount): the 4.5 M
rows of the RSNA training file take a few seconds (docs/bench/index.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv

from ichscan.labels import LABELS

_ROW_ID: Final[str] = r"^(?P<image_id>ID_[0-9a-fA-F]+)_(?P<subtype>[A-Za-z]+)$"


class LabelFileError(ValueError):
    """A label file that cannot be read at all (missing, not CSV, wrong columns)."""


@dataclass(frozen=True)
class LabelTable:
    """Parsed labels and everything about the file that could not be used as is."""

    labels: pd.DataFrame  # index `image_id`, columns LABELS, float32 0/1, NaN when unknown
    conflicts: pd.DataFrame  # image_id, subtype, labels ("0,1"), n_rows
    incomplete: pd.DataFrame  # image_id, missing ("epidural,subdural")
    invalid: pd.DataFrame  # line (1-based, header = 1), ID, Label, reason
    inconsistent: pd.DataFrame  # image_id, any, max_subtype
    n_rows: int = 0
    n_duplicate_rows: int = 0

    def issues(self) -> pd.DataFrame:
        """Every label problem as `image_id, reason` rows (the `.label_issues.csv` table)."""
        parts = [
            pd.DataFrame(
                {
                    "image_id": self.conflicts["image_id"],
                    "reason": "conflicting labels for "
                    + self.conflicts["subtype"]
                    + " ("
                    + self.conflicts["labels"]
                    + "); all labels of the image left empty",
                }
            ),
            pd.DataFrame(
                {
                    "image_id": self.incomplete["image_id"],
                    "reason": "no label row for " + self.incomplete["missing"],
                }
            ),
            pd.DataFrame(
                {
                    "image_id": self.invalid["ID"],
                    "reason": "line "
                    + self.invalid["line"].astype(str)
                    + ": "
                    + self.invalid["reason"],
                }
            ),
            pd.DataFrame(
                {
                    "image_id": self.inconsistent["image_id"],
                    "reason": "any is "
                    + self.inconsistent["any"].astype(int).astype(str)
                    + " but the max of the subtypes is "
                    + self.inconsistent["max_subtype"].astype(int).astype(str),
                }
            ),
        ]
        return pd.concat(parts, ignore_index=True).astype(str)


def _read_rows(path: Path) -> tuple[pa.Array, pa.Array]:
    """The `ID` and `Label` columns as arrow string arrays."""
    try:
        table = pa_csv.read_csv(
            path,
            convert_options=pa_csv.ConvertOptions(
                column_types={"ID": pa.string(), "Label": pa.string()}, strings_can_be_null=False
            ),
        )
    except FileNotFoundError as error:
        raise LabelFileError(f"{path}: no such file") from error
    except (pa.ArrowInvalid, OSError) as error:
        raise LabelFileError(
            f"{path}: not a readable CSV ({' '.join(str(error).split())})"
        ) from error
    if table.column_names[:2] != ["ID", "Label"]:
        raise LabelFileError(
            f"{path}: expected columns ID,Label, found {','.join(table.column_names)}"
        )
    return table.column("ID").combine_chunks(), table.column("Label").combine_chunks()


def read_rsna_labels(csv_path: str | os.PathLike[str]) -> LabelTable:
    """Parse an RSNA label CSV into a `LabelTable` (see the module docstring for the rules).

    Per (image, subtype) cell with n rows summing to s (labels 0/1): n = 0 → missing, s ∈ {0, n}
    → label s / n (n − 1 exact duplicates), 0 < s < n → conflict (n − 2 exact duplicates).
    """
    ids, raw_labels = _read_rows(Path(csv_path))
    parts = pc.extract_regex(ids, _ROW_ID)
    image_id = pc.struct_field(parts, "image_id")
    subtype_code = pc.index_in(
        pc.utf8_lower(pc.struct_field(parts, "subtype")), value_set=pa.array(LABELS)
    )
    label_text = pc.utf8_trim_whitespace(raw_labels)

    bad_id = pc.is_null(image_id).to_numpy(zero_copy_only=False)
    bad_subtype = ~bad_id & pc.is_null(subtype_code).to_numpy(zero_copy_only=False)
    label_ok = pc.is_in(label_text, value_set=pa.array(["0", "1", "0.0", "1.0"]))
    bad_label = ~bad_id & ~bad_subtype & ~label_ok.to_numpy(zero_copy_only=False)
    invalid_mask = bad_id | bad_subtype | bad_label
    invalid_at = np.flatnonzero(invalid_mask)
    invalid = pd.DataFrame(
        {
            "line": invalid_at + 2,
            "ID": pd.Series(ids.take(invalid_at).to_pylist(), dtype=str),
            "Label": pd.Series(raw_labels.take(invalid_at).to_pylist(), dtype=str),
            "reason": np.select(
                [bad_id[invalid_at], bad_subtype[invalid_at]],
                ["ID is not ID_<hex>_<subtype>", "unknown subtype"],
                default="Label is not 0 or 1",
            ),
        }
    )

    valid = pa.array(~invalid_mask)
    encoded = pc.dictionary_encode(pc.filter(image_id, valid))
    images = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    n_cells = len(images) * len(LABELS)
    cell = (
        encoded.indices.to_numpy().astype(np.int64) * len(LABELS)
        + pc.filter(subtype_code, valid).to_numpy()
    )
    ones = pc.starts_with(pc.filter(label_text, valid), "1").to_numpy(zero_copy_only=False)
    n = np.bincount(cell, minlength=n_cells).reshape(-1, len(LABELS))
    s = np.bincount(cell, weights=ones, minlength=n_cells).reshape(-1, len(LABELS))

    present = n > 0
    conflict = (s > 0) & (s < n)
    n_duplicate_rows = int((n - present - conflict).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(present & ~conflict, s / n, np.nan).astype(np.float32)
    matrix[conflict.any(axis=1)] = np.nan

    conflict_image, conflict_label = np.nonzero(conflict)
    conflicts = pd.DataFrame(
        {
            "image_id": pd.Series(images[conflict_image], dtype=str),
            "subtype": pd.Series(np.asarray(LABELS)[conflict_label], dtype=str),
            "labels": "0,1",  # valid labels are 0 or 1, so a conflict is always both
            "n_rows": n[conflict_image, conflict_label],
        }
    )
    incomplete_rows = ~present.all(axis=1)
    missing = pd.Series("", index=pd.RangeIndex(int(incomplete_rows.sum())), dtype=str)
    for k, name in enumerate(LABELS):
        missing = missing + np.where(present[incomplete_rows, k], "", f"{name},")
    incomplete = pd.DataFrame(
        {
            "image_id": pd.Series(images[incomplete_rows], dtype=str),
            "missing": missing.str.rstrip(","),
        }
    )
    complete = ~np.isnan(matrix).any(axis=1)
    max_subtype = matrix[:, 1:].max(axis=1, initial=0.0)
    wrong_any = complete & (matrix[:, 0] != max_subtype)
    inconsistent = pd.DataFrame(
        {
            "image_id": pd.Series(images[wrong_any], dtype=str),
            "any": matrix[wrong_any, 0],
            "max_subtype": max_subtype[wrong_any],
        }
    )
    labels = pd.DataFrame(
        matrix, index=pd.Index(images, name="image_id", dtype=str), columns=list(LABELS)
    )
    return LabelTable(
        labels=labels,
        conflicts=conflicts,
        incomplete=incomplete,
        invalid=invalid,
        inconsistent=inconsistent,
        n_rows=len(ids),
        n_duplicate_rows=n_duplicate_rows,
    )


@dataclass(frozen=True)
class LabelJoin:
    """How the labels met the DICOM files: nothing is dropped without being counted here."""

    labelled_slices: int  # manifest rows with a label row
    unlabelled_slices: int  # DICOM files with no label row
    labels_without_dicom: pd.Index = field(default_factory=lambda: pd.Index([], dtype=str))


def join_labels(manifest: pd.DataFrame, table: LabelTable) -> tuple[pd.DataFrame, LabelJoin]:
    """Add the six label columns (float32, NaN when unlabelled) to `manifest` by `image_id`."""
    joined = manifest.join(table.labels, on="image_id", how="left")
    joined[list(LABELS)] = joined[list(LABELS)].astype(np.float32)
    has_label = manifest["image_id"].isin(table.labels.index)
    missing = table.labels.index.difference(pd.Index(manifest["image_id"]))
    return joined, LabelJoin(
        labelled_slices=int(has_label.sum()),
        unlabelled_slices=int((~has_label).sum()),
        labels_without_dicom=missing,
    )
