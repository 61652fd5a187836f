"""`index_folder` and `write_manifest` end to end: layouts, bad files, labels, schema, workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import SeriesWriter
from dicom_factory import write_ct_slice
from pydicom.data import get_testdata_file

from ichscan.dicom import MANIFEST_COLUMNS, index_folder, read_manifest, write_manifest
from ichscan.labels import LABELS

# Oblique series: normal (0, 0.6, 0.8); IPP = k · 3 mm · normal → position 3k.
OBLIQUE = (1.0, 0.0, 0.0, 0.0, 0.8, -0.6)


def _oblique(k: int) -> tuple[float, float, float]:
    return (-100.0, 3.0 * k * 0.6, 3.0 * k * 0.8)


def test_flat_rsna_layout_with_shuffled_names(tmp_path: Path, write_series: SeriesWriter) -> None:
    # File names sort in the reverse of the anatomical order.
    ks = [4, 3, 2, 1, 0]
    names = [f"ID_{i:04x}.dcm" for i in range(5)]
    write_series(tmp_path, names, [_oblique(k) for k in ks], orientation=OBLIQUE)
    result = index_folder(tmp_path, progress=False)
    manifest = result.manifest
    assert result.errors.empty
    assert manifest["image_id"].tolist() == ["ID_0004", "ID_0003", "ID_0002", "ID_0001", "ID_0000"]
    np.testing.assert_allclose(manifest["position"], [0.0, 3.0, 6.0, 9.0, 12.0], atol=1e-9)
    assert manifest["slice_index"].tolist() == [0, 1, 2, 3, 4]
    assert manifest["path"].tolist() == [str(tmp_path / f"ID_{i:04x}.dcm") for i in (4, 3, 2, 1, 0)]
    assert result.summary() == {
        "files": 5, "skipped": 0, "slices": 5, "series": 1, "studies": 1, "patients": 1, "errors": 0,
        "series with warnings": 0,
    }  # fmt: skip


def test_nested_layout_bad_files_and_labels(tmp_path: Path, write_series: SeriesWriter) -> None:
    root = tmp_path / "dicom"
    for patient in ("P1", "P2"):
        write_series(
            root / patient / "study" / "series",
            [f"IM{i}" for i in range(3)],  # no extension, as many scanners write
            [(0.0, 0.0, 5.0 * i) for i in range(3)],
            patient_id=patient,
            series_uid=f"1.2.3.{patient[-1]}",
            study_uid=f"1.2.{patient[-1]}",
        )
    series = root / "P1" / "study" / "series"
    (series / "notes.bin").write_text("not a dicom file")  # read and reported
    (series / "IM2").write_bytes((series / "IM2").read_bytes()[:-10])  # truncated pixel data
    write_ct_slice(series / "scout", np.zeros((4, 6), np.int16), modality="MR")
    (root / "labels.csv").write_text("ID,Label\n")  # skipped by extension
    (root / ".hidden").write_text("ignored")
    (root / ".git").mkdir()
    (root / ".git" / "x").write_text("ignored")

    result = index_folder(root, progress=False)
    assert len(result.manifest) == 5
    assert result.manifest.groupby("patient_id")["slice_index"].apply(list).to_dict() == {
        "P1": [0, 1],
        "P2": [0, 1, 2],
    }
    assert result.manifest.groupby("patient_id")["n_slices"].first().to_dict() == {"P1": 2, "P2": 3}
    reasons = dict(zip(result.errors["path"], result.errors["reason"]))
    assert set(reasons) == {str(series / "notes.bin"), str(series / "IM2"), str(series / "scout")}
    assert reasons[str(series / "notes.bin")].startswith("not DICOM:")
    assert reasons[str(series / "IM2")].startswith("truncated:")
    assert reasons[str(series / "scout")] == "not CT: Modality is 'MR'"
    assert result.skipped == [str(root / "labels.csv")]
    assert result.errors_by_kind() == {"not DICOM": 1, "truncated": 1, "not CT": 1}
    assert result.n_files == len(result.manifest) + len(result.errors)  # nothing dropped silently
    assert (result.manifest["image_id"] == result.manifest["sop_instance_uid"]).all()

    labels = tmp_path / "train.csv"
    labels.write_text("ID,Label\n" + "".join(f"ID_0abc_{name},0\n" for name in LABELS))  # no DICOM
    labelled = index_folder(root, labels_csv=labels, progress=False)
    assert labelled.label_join is not None
    assert labelled.label_join.unlabelled_slices == 5
    assert labelled.label_join.labels_without_dicom.tolist() == ["ID_0abc"]
    assert labelled.manifest[list(LABELS)].isna().all().all()


def test_manifest_schema_and_files(tmp_path: Path, write_series: SeriesWriter) -> None:
    write_series(tmp_path / "d", ["ID_01.dcm", "ID_02.dcm"], [(0, 0, 2.5), (0, 0, -2.5)])
    (tmp_path / "d" / "ID_03.dcm").write_text("junk")
    labels = tmp_path / "train.csv"
    labels.write_text(
        "ID,Label\n"
        + "".join(f"ID_01_{name},{int(name in ('any', 'subdural'))}\n" for name in LABELS)
        + "".join(f"ID_09_{name},0\n" for name in LABELS)
    )
    result = index_folder(tmp_path / "d", labels_csv=labels, progress=False)
    out = tmp_path / "out" / "manifest.parquet"
    written = write_manifest(result, out)
    assert written == [
        out,
        out.with_name("manifest.errors.csv"),
        out.with_name("manifest.warnings.csv"),
        out.with_name("manifest.label_issues.csv"),
    ]

    manifest = pd.read_parquet(out)
    expected = {**MANIFEST_COLUMNS, **{name: "float32" for name in LABELS}}
    assert list(manifest.columns) == list(expected)
    for column, dtype in expected.items():
        if dtype == "str":
            assert pd.api.types.is_string_dtype(manifest[column]), column
        else:
            assert manifest[column].dtype == np.dtype(dtype), column
    assert manifest["image_id"].tolist() == ["ID_02", "ID_01"]  # −2.5 mm before +2.5 mm
    assert manifest.loc[1, list(LABELS)].tolist() == [1, 0, 0, 0, 0, 1]
    assert manifest.loc[0, list(LABELS)].isna().all()
    pd.testing.assert_frame_equal(read_manifest(out), result.manifest)

    errors = pd.read_csv(out.with_name("manifest.errors.csv"))
    assert errors.to_dict("records") == [
        {
            "path": str(tmp_path / "d" / "ID_03.dcm"),
            "reason": "not DICOM: no 'DICM' prefix at byte 128",
        }
    ]
    issues = pd.read_csv(out.with_name("manifest.label_issues.csv"))
    assert issues.to_dict("records") == [
        {"image_id": "ID_09", "reason": "labelled image has no DICOM file"}
    ]
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        p.name for p in written
    )  # no temp files


def test_ct_small_indexed_like_pydicom_reads_it(tmp_path: Path) -> None:
    import pydicom

    source = Path(get_testdata_file("CT_small.dcm"))
    (tmp_path / source.name).write_bytes(source.read_bytes())
    ds = pydicom.dcmread(source)
    row = index_folder(tmp_path, progress=False).manifest.iloc[0]
    normal = np.cross(
        np.array(ds.ImageOrientationPatient[:3], float),
        np.array(ds.ImageOrientationPatient[3:], float),
    )
    assert row["position"] == pytest.approx(
        float(np.dot(np.array(ds.ImagePositionPatient, float), normal))
    )
    assert row["sop_instance_uid"] == ds.SOPInstanceUID
    assert (row["rows"], row["columns"], row["n_slices"], row["slice_index"]) == (
        ds.Rows,
        ds.Columns,
        1,
        0,
    )
    assert row["pixel_spacing_row"] == np.float32(ds.PixelSpacing[0])
    assert row["rescale_intercept"] == ds.RescaleIntercept


def test_worker_processes_give_the_same_manifest(
    tmp_path: Path, write_series: SeriesWriter
) -> None:
    positions = [(0.0, 0.0, float(z)) for z in np.random.default_rng(0).permutation(40)]
    write_series(tmp_path, [f"s{i:02d}.dcm" for i in range(40)], positions)
    (tmp_path / "s99.dcm").write_text("bad")
    serial = index_folder(tmp_path, workers=1, progress=False)
    parallel = index_folder(tmp_path, workers=2, progress=True, chunk_size=7)
    pd.testing.assert_frame_equal(serial.manifest, parallel.manifest)
    pd.testing.assert_frame_equal(serial.errors, parallel.errors)
    assert serial.manifest["position"].tolist() == [float(z) for z in range(40)]


def test_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such folder"):
        index_folder(tmp_path / "absent", progress=False)
    with pytest.raises(ValueError, match="workers"):
        index_folder(tmp_path, workers=0, progress=False)
