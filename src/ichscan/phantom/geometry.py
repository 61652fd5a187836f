"""Scan geometry: where each voxel of a series sits, in patient (LPS) and head coordinates.

Patient coordinates follow DICOM (x → patient left, y → posterior, z → superior, mm). The head
frame has its origin near the foramen of Monro with the same axes before the head's own pose
(rotation and translation on the table) is applied: p_patient = R · q_head + centre.
A voxel (slice k, row r, column c) sits at IPP_k + c·Δc·row_cosines + r·Δr·column_cosines, and
IPP_k advances along the slice normal, so every head coordinate is an affine function of
(k, r, c): we build each as one broadcast sum of three 1-D terms, never per voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rotation_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Head→patient rotation: yaw about z (in-plane turn), pitch about x (chin), roll about y."""
    yaw, pitch, roll = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    ry = np.array([[np.cos(roll), 0, np.sin(roll)], [0, 1, 0], [-np.sin(roll), 0, np.cos(roll)]])
    return rz @ rx @ ry


@dataclass(frozen=True)
class HeadPose:
    """Where the head lies in patient coordinates: p = rotation · q + centre."""

    centre: np.ndarray  # (3,) mm
    rotation: np.ndarray  # (3, 3), columns = head axes in patient coordinates

    def to_head(self, points: np.ndarray) -> np.ndarray:
        """Patient-coordinate points (..., 3) → head-frame points (..., 3)."""
        return (np.asarray(points) - self.centre) @ self.rotation

    def to_patient(self, points: np.ndarray) -> np.ndarray:
        """Head-frame points (..., 3) → patient coordinates (..., 3)."""
        return np.asarray(points) @ self.rotation.T + self.centre


@dataclass(frozen=True)
class SliceGrid:
    """The voxel grid of one series: an axial (optionally gantry-tilted) stack of equal slices."""

    rows: int
    columns: int
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    slice_spacing: float  # mm along the normal
    first_position: np.ndarray  # (3,) ImagePositionPatient of slice 0
    orientation: np.ndarray  # (6,) row cosines, column cosines
    n_slices: int

    @classmethod
    def centred(
        cls,
        rows: int,
        columns: int,
        pixel_spacing: tuple[float, float],
        slice_spacing: float,
        centre_of_first: np.ndarray,
        gantry_tilt_deg: float,
        n_slices: int,
    ) -> SliceGrid:
        """A stack whose first slice is centred on `centre_of_first`, tilted about the x axis."""
        tilt = np.deg2rad(gantry_tilt_deg)
        row_dir = np.array([1.0, 0.0, 0.0])
        col_dir = np.array([0.0, np.cos(tilt), -np.sin(tilt)])
        first = (
            np.asarray(centre_of_first, dtype=float)
            - (columns - 1) / 2 * pixel_spacing[1] * row_dir
            - (rows - 1) / 2 * pixel_spacing[0] * col_dir
        )
        return cls(rows, columns, pixel_spacing, slice_spacing, first,
                   np.concatenate([row_dir, col_dir]), n_slices)

    def subsampled(self, step: int) -> SliceGrid:
        """The grid of every `step`-th row and column (same first pixel, coarser spacing)."""
        return SliceGrid(
            -(-self.rows // step), -(-self.columns // step),
            (self.pixel_spacing[0] * step, self.pixel_spacing[1] * step),
            self.slice_spacing, self.first_position, self.orientation, self.n_slices,
        )

    @property
    def normal(self) -> np.ndarray:
        """Slice normal = row cosines × column cosines."""
        return np.cross(self.orientation[:3], self.orientation[3:])

    def position(self, slice_index: int) -> np.ndarray:
        """ImagePositionPatient of slice `slice_index` (0 = most inferior)."""
        return self.first_position + slice_index * self.slice_spacing * self.normal

    def patient_axes(self, slice_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The three 1-D position terms (slices, rows, columns), each (n, 3), whose sum is a voxel's position."""
        k = np.asarray(slice_indices, dtype=np.float64)[:, None]
        along_k = self.first_position + k * self.slice_spacing * self.normal
        along_r = np.arange(self.rows)[:, None] * self.pixel_spacing[0] * self.orientation[3:]
        along_c = np.arange(self.columns)[:, None] * self.pixel_spacing[1] * self.orientation[:3]
        return along_k, along_r, along_c

    def head_coordinates(
        self, pose: HeadPose, slice_indices: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Head-frame (x, y, z) of every voxel of the given slices, three float32 (n, rows, columns) arrays."""
        along_k, along_r, along_c = self.patient_axes(slice_indices)
        # q = Rᵀ (p − centre), split over the three terms (the centre goes with the slice term).
        qk = (along_k - pose.centre) @ pose.rotation
        qr = along_r @ pose.rotation
        qc = along_c @ pose.rotation
        return tuple(
            (qk[:, None, None, j] + qr[None, :, None, j]).astype(np.float32) + qc[None, None, :, j].astype(np.float32)
            for j in range(3)
        )  # type: ignore[return-value]
