"""Scanner model: noise level, blur and the upsampling used at 512²."""

from __future__ import annotations

import numpy as np
import pytest

from ichscan.phantom.scanner import ScannerEffects, gaussian_kernel
from ichscan.phantom.study import upsample


def _effects(sigma: float) -> ScannerEffects:
    return ScannerEffects(
        noise_sigma=sigma, blur_sigma=0.7, calibration_offset=0.0, bar_amplitude=0.0, streak_amplitude=0.0,
        streak_count=5, streak_phase=0.0, cupping=0.0,
    )


@pytest.mark.parametrize("sigma", [3.0, 10.0])
def test_noise_has_the_requested_standard_deviation(sigma: float) -> None:
    effects = _effects(sigma)
    rng = np.random.default_rng(1)
    image = np.zeros((3, 96, 96), dtype=np.float32)
    effects.add_noise(image, effects.noise_bank(rng, 96, 96), rng)
    assert image.std() == pytest.approx(sigma, rel=0.08)
    assert abs(image.mean()) < 0.06 * sigma
    # Correlated like CT noise: neighbours are positively correlated (the (1, 2, 1) kernel gives 2/3).
    corr = np.corrcoef(image[:, :, :-1].ravel(), image[:, :, 1:].ravel())[0, 1]
    assert corr == pytest.approx(2 / 3, abs=0.05)


def test_blur_keeps_the_mean_and_smooths_an_edge() -> None:
    kernel = gaussian_kernel(0.8)
    assert kernel.sum() == pytest.approx(1.0) and np.argmax(kernel) == len(kernel) // 2
    image = np.zeros((1, 20, 20), dtype=np.float32)
    image[:, :, 10:] = 100.0
    blurred = _effects(1.0).blur(image, step=1)
    assert blurred.mean() == pytest.approx(image.mean(), rel=1e-5)
    assert 0 < blurred[0, 5, 9] < 50 < blurred[0, 5, 10] < 100


def test_upsample_interpolates_linearly_between_rendered_pixels() -> None:
    coarse = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    fine = upsample(coarse, 2, 6, 8)
    assert fine.shape == (1, 6, 8)
    np.testing.assert_array_equal(fine[:, ::2, ::2], coarse)
    assert fine[0, 0, 1] == pytest.approx((coarse[0, 0, 0] + coarse[0, 0, 1]) / 2)
    assert fine[0, 1, 1] == pytest.approx(coarse[0, :2, :2].mean())
