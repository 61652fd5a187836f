"""Slice normals, positions and order, and the series rules, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ichscan.dicom.headers import HEADER_COLUMNS, header_frame
from ichscan.dicom.order import order_slices, slice_normals, slice_positions

# Tilted axial: column cosines (0, 0.8, -0.6) → normal = (1,0,0) × (0,0.8,-0.6) = (0, 0.6, 0.8).
TILTED = (1.0, 0.0, 0.0, 0.0, 0.8, -0.6)
# Sagittal: rows along y, columns along -z → normal = (0,1,0) × (0,0,-1) = (-1, 0, 0).
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def test_normals_and_positions_by_hand() -> None:
    normals = slice_normals(np.array([TILTED, SAGITTAL, (1, 0, 0, 0, 1, 0)]))
    np.testing.assert_allclose(normals, [[0, 0.6, 0.8], [-1, 0, 0], [0, 0, 1]], atol=1e-12)
    ipp = np.array([[10.0, 5.0, 20.0], [7.0, -3.0, 2.0], [-158.1, -179.0, -75.7]])
    # 5·0.6 + 20·0.8 = 19; −7; −75.7
    np.testing.assert_allclose(
        slice_positions(ipp, np.array([TILTED, SAGITTAL, (1, 0, 0, 0, 1, 0)])), [19.0, -7.0, -75.7]
    )


def test_normal_is_unit_length_for_rounded_cosines() -> None:
    # RSNA-style cosines written with 6 decimals: |r × c| is 1 only to ~1e-6.
    normal = slice_normals(np.array([[1.0, 0.0, 0.0, 0.0, 0.968148, -0.250380]]))
    assert np.linalg.norm(normal) == pytest.approx(1.0, abs=1e-12)


def test_degenerate_orientation_is_nan() -> None:
    assert np.isnan(slice_normals(np.array([[1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]]))).all()


def _headers(**columns: object) -> pd.DataFrame:
    """A header table: `columns` given as lists, everything else a valid default."""
    n = len(next(iter(columns.values())))  # type: ignore[arg-type]
    defaults: dict[str, object] = {
        "path": [f"/d/f{i:03d}.dcm" for i in range(n)],
        "image_id": [f"ID_{i:04x}" for i in range(n)],
        "sop_instance_uid": [f"1.2.{i}" for i in range(n)],
        "patient_id": "P",
        "study_instance_uid": "1.1",
        "series_instance_uid": "1.1.1",
        "ipp_x": 0.0,
        "ipp_y": 0.0,
        "ipp_z": 0.0,
        "row_x": 1.0,
        "row_y": 0.0,
        "row_z": 0.0,
        "col_x": 0.0,
        "col_y": 1.0,
        "col_z": 0.0,
        "rows": 512,
        "columns": 512,
        "photometric_interpretation": "MONOCHROME2",
        "transfer_syntax_uid": "1.2.840.10008.1.2.1",
    }
    frame = pd.DataFrame({**defaults, **columns}, index=range(n))
    for column in HEADER_COLUMNS:
        if column not in frame:
            frame[column] = 1
    return header_frame(frame)


def test_order_ranks_by_position_not_by_name() -> None:
    # Tilted series: IPP moves along the normal (0, 0.6, 0.8) by 2.5 mm per slice, files shuffled.
    steps = np.array([3, 0, 4, 1, 2])
    headers = _headers(
        ipp_y=list(0.6 * 2.5 * steps),
        ipp_z=list(0.8 * 2.5 * steps),
        row_x=[1.0] * 5,
        col_y=[0.8] * 5,
        col_z=[-0.6] * 5,
    )
    ordered, errors = order_slices(headers)
    assert errors.empty
    np.testing.assert_allclose(ordered["position"], [0.0, 2.5, 5.0, 7.5, 10.0])
    assert ordered["path"].tolist() == [
        "/d/f001.dcm",
        "/d/f003.dcm",
        "/d/f004.dcm",
        "/d/f000.dcm",
        "/d/f002.dcm",
    ]
    assert ordered["slice_index"].tolist() == [0, 1, 2, 3, 4]
    assert ordered["n_slices"].tolist() == [5] * 5
    assert ordered["slice_index"].dtype == np.int32


def test_two_series_numbered_independently() -> None:
    headers = _headers(
        series_instance_uid=["b", "a", "b", "a", "a"], ipp_z=[5.0, -1.0, -5.0, 3.0, 1.0]
    )
    ordered, errors = order_slices(headers)
    assert errors.empty
    assert ordered["series_instance_uid"].tolist() == ["a", "a", "a", "b", "b"]
    assert ordered["position"].tolist() == [-1.0, 1.0, 3.0, -5.0, 5.0]
    assert ordered["slice_index"].tolist() == [0, 1, 2, 0, 1]
    assert ordered["n_slices"].tolist() == [3, 3, 3, 2, 2]


def test_minority_matrix_reported_and_majority_renumbered() -> None:
    headers = _headers(
        ipp_z=[0.0, 1.0, 2.0, 3.0], rows=[512, 256, 512, 512], columns=[512, 256, 512, 512]
    )
    ordered, errors = order_slices(headers)
    assert errors["path"].tolist() == ["/d/f001.dcm"]
    assert errors["reason"].iloc[0] == "mixed matrix: matrix 256x256; series majority is 512x512"
    assert ordered["slice_index"].tolist() == [0, 1, 2]
    assert ordered["n_slices"].tolist() == [3, 3, 3]


def test_matrix_tie_reports_the_whole_series() -> None:
    headers = _headers(ipp_z=[0.0, 1.0, 2.0, 3.0], rows=[512, 256, 512, 256])
    ordered, errors = order_slices(headers)
    assert ordered.empty
    assert len(errors) == 4
    assert errors["reason"].str.startswith("mixed matrix:").all()
    assert errors["reason"].str.endswith("no majority in the series").all()


def test_duplicate_positions_all_reported() -> None:
    headers = _headers(ipp_z=[0.0, 5.0, 5.004, 10.0, 15.0, 10.0])
    ordered, errors = order_slices(headers)
    assert sorted(errors["path"]) == ["/d/f001.dcm", "/d/f002.dcm", "/d/f003.dcm", "/d/f005.dcm"]
    assert errors["reason"].str.startswith("duplicate position:").all()
    assert ordered["position"].tolist() == [0.0, 15.0]
    assert ordered["slice_index"].tolist() == [0, 1]


def test_duplicate_image_ids_mixed_orientation_and_inconsistent_study() -> None:
    headers = _headers(
        image_id=["ID_a", "ID_a", "ID_b", "ID_c", "ID_d", "ID_e"],
        ipp_z=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
        row_x=[1.0, 1.0, 1.0, 0.0, 1.0, 1.0],
        row_y=[0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        col_x=[0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        col_y=[1.0, 1.0, 1.0, 0.0, 1.0, 1.0],
        study_instance_uid=["1.1", "1.1", "1.1", "1.1", "1.1", "9.9"],
    )
    ordered, errors = order_slices(headers)
    reasons = dict(zip(errors["path"], errors["reason"].str.split(":").str[0]))
    assert reasons == {
        "/d/f000.dcm": "duplicate image",
        "/d/f001.dcm": "duplicate image",
        "/d/f003.dcm": "mixed orientation",  # rows/columns swapped: normal (0, 0, -1)
        "/d/f005.dcm": "inconsistent series",
    }
    assert ordered["image_id"].tolist() == ["ID_b", "ID_d"]


def test_degenerate_orientation_reported() -> None:
    headers = _headers(ipp_z=[0.0, 1.0], col_x=[1.0, 0.0], col_y=[0.0, 1.0])
    ordered, errors = order_slices(headers)
    assert errors["path"].tolist() == ["/d/f000.dcm"]
    assert errors["reason"].iloc[0].startswith("invalid tag: ImageOrientationPatient")
    assert ordered["n_slices"].tolist() == [1]


def test_empty_input() -> None:
    ordered, errors = order_slices(header_frame())
    assert ordered.empty and errors.empty
    assert {"position", "slice_index", "n_slices"} <= set(ordered.columns)


def test_a_hole_splits_the_series_into_segments_and_is_reported() -> None:
    from ichscan.dicom.order import series_warnings

    # a regular 5 mm series missing its 15 mm slice: the step doubles
    ordered, errors = order_slices(_headers(ipp_z=[0.0, 5.0, 10.0, 20.0, 25.0]))
    assert errors.empty
    assert ordered["segment"].tolist() == [0, 0, 0, 1, 1]
    warning = series_warnings(ordered)["warning"].tolist()
    assert warning and warning[0].startswith("gap: 1 hole(s) (10.00 mm between slices 2 and 3")
    # irregular spacing (no step stands out), but a removed file lay between 12 and 16 mm
    ordered, errors = order_slices(
        _headers(ipp_z=[0.0, 5.0, 12.0, 14.0, 16.0, 21.0], rows=[512, 512, 512, 256, 512, 512])
    )
    assert errors["reason"].str.startswith("mixed matrix").tolist() == [True]
    assert ordered["segment"].tolist() == [0, 0, 0, 1, 1]
    # the ends of a series are not holes: a removed first slice leaves one segment
    ordered, _ = order_slices(_headers(ipp_z=[0.0, 5.0, 10.0, 15.0], rows=[256, 512, 512, 512]))
    assert ordered["segment"].tolist() == [0, 0, 0]
    assert series_warnings(ordered).empty


def test_missing_positions_fall_back_to_slice_location_then_instance_number() -> None:
    nan = float("nan")
    by_location, errors = order_slices(
        _headers(ipp_z=[nan, nan, nan], slice_location=[20.0, 10.0, 15.0], instance_number=[1, 2, 3])
    )
    assert errors.empty
    assert by_location["path"].tolist() == ["/d/f001.dcm", "/d/f002.dcm", "/d/f000.dcm"]
    assert set(by_location["ordered_by"]) == {"slice_location"}
    by_number, _ = order_slices(
        _headers(ipp_z=[nan, 1.0, nan], slice_location=[nan, 1.0, 2.0], instance_number=[3, 1, 2])
    )
    assert by_number["path"].tolist() == ["/d/f001.dcm", "/d/f002.dcm", "/d/f000.dcm"]
    assert set(by_number["ordered_by"]) == {"instance_number"}
    unorderable, errors = order_slices(
        _headers(ipp_z=[nan, 1.0], slice_location=[nan, 1.0], instance_number=[nan, 2.0])
    )
    assert unorderable.empty and len(errors) == 2
    assert errors["reason"].str.startswith("missing tag: ImagePositionPatient").all()
