"""What the scanner adds to the anatomy: artefacts, partial volume, blur and noise.

* beam hardening at the skull base: a dark Hounsfield bar between the petrous bones,
  −A exp(−((y − 20)/6)²) exp(−(x/38)²), and streaks A_s cos(n θ + φ) radiating from there;
* cupping near the inner table: + c exp(−depth / 6 mm) (denser-looking peripheral brain);
* calibration offset: a per-series shift of every non-air voxel;
* blur: a separable Gaussian of width σ_b pixels;
* noise: correlated Gaussian noise of the requested σ; a few fields are drawn per series and each
  slice adds a randomly shifted window of one (noise generation would otherwise dominate the
  cost of a 512² slice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import correlate1d

from ichscan.phantom.anatomy import F32, AnatomyVolume, head_box

NOISE_MARGIN = 32  # pixels of shift between the noise windows of different slices


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian weights over ±3σ (at least ±1 sample)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (t / max(sigma, 1e-3)) ** 2)
    return w / w.sum()


@dataclass(frozen=True)
class ScannerEffects:
    """Per-series artefact and noise parameters."""

    noise_sigma: float
    blur_sigma: float
    calibration_offset: float
    bar_amplitude: float
    streak_amplitude: float
    streak_count: int
    streak_phase: float
    cupping: float

    @classmethod
    def sample(cls, rng: np.random.Generator, noise: tuple[float, float], blur: tuple[float, float]) -> ScannerEffects:
        return cls(
            noise_sigma=float(rng.uniform(*noise)),
            blur_sigma=float(rng.uniform(*blur)),
            calibration_offset=float(np.clip(rng.normal(0, 4.0), -8, 8)),
            bar_amplitude=float(rng.uniform(8, 30)),
            streak_amplitude=float(rng.uniform(4, 30)),
            streak_count=int(rng.integers(5, 12)),
            streak_phase=float(rng.uniform(0, 2 * np.pi)),
            cupping=float(rng.uniform(0, 18)),
        )

    def apply(
        self, hu: np.ndarray, anatomy: AnatomyVolume, x: np.ndarray, y: np.ndarray, z: np.ndarray
    ) -> None:
        """Add the artefacts that depend on anatomy (in place, float32)."""
        inside = anatomy.intracranial
        hu[inside] += F32(self.cupping) * np.exp(-anatomy.depth[inside] * F32(1 / 6))
        box = head_box(x, y, z, (-70, -10, -62), (70, 75, -18))
        if box is not None:
            bx, by, bz, bin_ = x[box], y[box], z[box], inside[box]
            height = np.exp(-(((bz + F32(38.0)) / F32(10.0)) ** 2))
            bar = -F32(self.bar_amplitude) * np.exp(-(((by - F32(20.0)) / F32(6.0)) ** 2) - (bx / F32(38.0)) ** 2)
            theta = np.arctan2(by - F32(20.0), bx)
            streaks = F32(self.streak_amplitude) * np.cos(F32(self.streak_count) * theta + F32(self.streak_phase)) ** 9
            hu[box][bin_] += ((bar + streaks) * height)[bin_]
        hu[hu > -500] += F32(self.calibration_offset)

    def blur(self, hu: np.ndarray, step: int) -> np.ndarray:
        """Gaussian blur of σ_b full-resolution pixels on an image rendered every `step` pixels."""
        kernel = gaussian_kernel(self.blur_sigma / step).astype(np.float32)
        out = correlate1d(hu, kernel, axis=1, mode="nearest")
        return correlate1d(out, kernel, axis=2, mode="nearest")

    def noise_bank(self, rng: np.random.Generator, rows: int, columns: int, fields: int = 2) -> np.ndarray:
        """A few correlated noise fields of standard deviation `noise_sigma`, with a margin of
        `NOISE_MARGIN` pixels so that each slice can take a randomly shifted window of one.

        White noise smoothed by h = (1, 2, 1)/4 along rows and columns: the 2-D kernel's
        Σ h² = (3/8)², so the smoothed noise has σ = 3/8 and is scaled by noise_sigma / (3/8).
        """
        h, w = rows + NOISE_MARGIN, columns + NOISE_MARGIN
        white = rng.standard_normal((fields, h + 2, w + 2), dtype=np.float32)
        smooth_rows = white[:, :-2] + white[:, 2:]
        smooth_rows += F32(2.0) * white[:, 1:-1]
        bank = smooth_rows[:, :, :-2] + smooth_rows[:, :, 2:]
        bank += F32(2.0) * smooth_rows[:, :, 1:-1]
        bank *= F32(self.noise_sigma / (16.0 * 0.375))
        return bank

    @staticmethod
    def add_noise(hu: np.ndarray, bank: np.ndarray, rng: np.random.Generator) -> None:
        """Add to each slice of `hu` (in place) a randomly chosen, shifted and flipped noise field."""
        _, rows, columns = hu.shape
        picks = rng.integers(0, [bank.shape[0], NOISE_MARGIN + 1, NOISE_MARGIN + 1, 2, 2], size=(hu.shape[0], 5))
        for image, (field, dy, dx, flip_rows, flip_columns) in zip(hu, picks):
            window = bank[field, dy : dy + rows, dx : dx + columns]
            image += window[:: 1 - 2 * flip_rows, :: 1 - 2 * flip_columns]
