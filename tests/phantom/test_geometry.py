"""Scan geometry: head coordinates of voxels agree with the DICOM definition computed by hand."""

from __future__ import annotations

import numpy as np

from ichscan.phantom.geometry import HeadPose, SliceGrid, rotation_matrix


def _grid(tilt: float = 0.0) -> SliceGrid:
    return SliceGrid.centred(6, 8, (0.7, 0.6), 5.0, np.array([3.0, -4.0, 100.0]), tilt, 5)


def test_rotation_is_orthonormal_and_yaw_turns_left_towards_posterior() -> None:
    r = rotation_matrix(90.0, 0.0, 0.0)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(r @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_head_coordinates_match_the_dicom_voxel_formula() -> None:
    grid = _grid(tilt=17.0)
    pose = HeadPose(np.array([1.0, 2.0, 95.0]), rotation_matrix(8.0, -6.0, 3.0))
    x, y, z = grid.head_coordinates(pose, np.arange(grid.n_slices))
    row, col = grid.orientation[:3], grid.orientation[3:]
    for k, r, c in [(0, 0, 0), (4, 5, 7), (2, 3, 1)]:
        ipp = grid.first_position + k * 5.0 * np.cross(row, col)
        patient = ipp + c * 0.6 * row + r * 0.7 * col  # DICOM: column index along the row cosines
        expected = pose.rotation.T @ (patient - pose.centre)
        np.testing.assert_allclose([x[k, r, c], y[k, r, c], z[k, r, c]], expected, atol=1e-4)
    np.testing.assert_allclose(pose.to_patient(pose.to_head(np.array([[1.0, 2.0, 3.0]]))), [[1.0, 2.0, 3.0]])


def test_tilted_grid_is_centred_and_orthonormal() -> None:
    grid = _grid(tilt=20.0)
    row, col = grid.orientation[:3], grid.orientation[3:]
    assert abs(row @ col) < 1e-12 and np.isclose(np.linalg.norm(col), 1.0)
    centre = grid.position(0) + 3.5 * 0.6 * row + 2.5 * 0.7 * col  # middle of an 6 × 8 image
    np.testing.assert_allclose(centre, [3.0, -4.0, 100.0], atol=1e-9)
    assert np.isclose(np.degrees(np.arccos(grid.normal @ [0.0, 0.0, 1.0])), 20.0)


def test_subsampled_grid_keeps_every_other_voxel() -> None:
    grid = _grid()
    pose = HeadPose(np.zeros(3), np.eye(3))
    full = grid.head_coordinates(pose, np.array([1, 3]))
    coarse = grid.subsampled(2).head_coordinates(pose, np.array([1, 3]))
    for a, b in zip(full, coarse):
        np.testing.assert_allclose(a[:, ::2, ::2], b, atol=1e-4)
