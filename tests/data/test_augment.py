"""Batch augmentation: identity when off, exact flips, per-sample randomness, channels kept aligned."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from ichscan.data.augment import AugmentConfig, create_augmentation

EVERYTHING = {
    "hflip": 0.5,
    "vflip": 0.5,
    "transpose": 0.5,
    "affine": {"p": 1.0, "degrees": 30},
    "crop": {"p": 0.5},
    "blur": {"p": 0.7},
    "noise": {"p": 0.5, "std": 0.05},
    "contrast": {"p": 0.5},
}


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _batch(batch: int = 8, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(batch, channels, size, size)


def test_eval_mode_and_disabled_config_are_identity() -> None:
    x = _batch()
    augment = create_augmentation(EVERYTHING)
    assert torch.equal(augment.eval()(x), x)
    assert torch.equal(create_augmentation(EVERYTHING, enabled=False)(x), x)
    assert not torch.equal(augment.train()(x), x)


def test_zero_probabilities_are_identity() -> None:
    x = _batch()
    augment = create_augmentation(hflip=0.0)
    assert len(augment.ops) == 0
    assert torch.equal(augment(x), x)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("hflip", lambda x: x.flip(-1)),
        ("vflip", lambda x: x.flip(-2)),
        ("transpose", lambda x: x.transpose(-1, -2)),
    ],
)
def test_certain_flips_are_exact(key: str, expected: object) -> None:
    x = _batch()
    settings = {"hflip": 0.0, key: 1.0}
    assert torch.equal(create_augmentation(settings)(x), expected(x))  # type: ignore[operator]


def test_flips_are_drawn_per_sample() -> None:
    x = _batch(batch=64)
    out = create_augmentation(hflip=0.5)(x)
    flipped = (out == x.flip(-1)).flatten(1).all(dim=1)
    kept = (out == x).flatten(1).all(dim=1)
    assert bool((flipped | kept).all())  # every sample is either flipped or untouched
    assert 10 < int(flipped.sum()) < 54  # both happen in one batch (Binomial(64, 0.5))


def test_transpose_is_drawn_per_sample_with_torch_where() -> None:
    x = _batch(batch=64)
    out = create_augmentation(hflip=0.0, transpose=0.5)(x)
    transposed = (out == x.transpose(-1, -2)).flatten(1).all(dim=1)
    kept = (out == x).flatten(1).all(dim=1)
    assert bool((transposed | kept).all()) and 10 < int(transposed.sum()) < 54


def test_every_channel_of_a_sample_gets_the_same_transform() -> None:
    """Channels are windows/neighbour slices of one anatomy: identical channels must stay identical."""
    single = _batch(batch=16, channels=1)
    x = single.repeat(1, 9, 1, 1)
    out = create_augmentation(EVERYTHING)(x)
    assert not torch.allclose(out, x)
    assert torch.allclose(out, out[:, :1].expand_as(out), atol=1e-6)


def test_shape_dtype_device_and_memory_format_survive() -> None:
    x = _batch(batch=4, channels=5, size=24).contiguous(memory_format=torch.channels_last)
    out = create_augmentation(EVERYTHING)(x)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.isfinite(out).all()


def test_shift_scale_rotate_moves_a_blob_within_the_configured_shift() -> None:
    size = 64
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    blob = torch.exp(-((yy - 31.5) ** 2 + (xx - 31.5) ** 2) / 50.0)
    x = blob.expand(32, 1, size, size).contiguous()
    out = create_augmentation(hflip=0.0, affine={"p": 1.0, "degrees": 180, "translate": 0.1, "scale": 0.0})(x)
    mass = out.sum(dim=(1, 2, 3))
    cx = (out[:, 0] * xx).sum(dim=(1, 2)) / mass
    cy = (out[:, 0] * yy).sum(dim=(1, 2)) / mass
    shift = torch.stack([cx - 31.5, cy - 31.5], dim=1).abs()
    assert (shift <= 0.1 * size + 0.5).all()  # translation bounded by 10 % of the side
    assert (shift > 0.5).any()  # and it does move some samples
    # A round blob only rotates/shifts: its mass is kept (no zoom).
    assert torch.allclose(mass, blob.sum().expand_as(mass), rtol=0.02)


def test_random_crop_zooms_in_and_keeps_the_size() -> None:
    ramp = torch.linspace(0, 1, 32).expand(8, 2, 32, 32).contiguous()
    out = create_augmentation(hflip=0.0, crop={"p": 1.0, "scale": [0.25, 0.5]})(ramp)
    assert out.shape == ramp.shape
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    slope_in = (ramp[..., -1] - ramp[..., 0]).mean()
    slope_out = (out[..., -1] - out[..., 0]).abs().mean(dim=(1, 2))
    assert (slope_out < 0.75 * slope_in).all()  # a crop of ≤ half the area spans ≤ ~71 % of the ramp


def test_box_and_median_blur_of_a_single_bright_pixel_by_hand() -> None:
    x = torch.zeros(2, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    box = create_augmentation(hflip=0.0, blur={"p": 1.0, "kinds": ["box"], "kernel_size": 3})(x)
    expected = torch.zeros(9, 9)
    expected[3:6, 3:6] = 1 / 9
    assert torch.allclose(box[:, 0], expected.expand(2, 9, 9), atol=1e-6)
    median = create_augmentation(hflip=0.0, blur={"p": 1.0, "kinds": ["median"]})(x)
    assert torch.equal(median, torch.zeros_like(x))  # an isolated impulse is removed


def test_gaussian_blur_lowers_pixel_noise_for_every_sample() -> None:
    x = _batch(batch=8, channels=1, size=32)
    out = create_augmentation(hflip=0.0, blur={"p": 1.0, "kinds": ["gaussian"], "sigma": [0.8, 1.0]})(x)
    assert (out.flatten(1).std(dim=1) < 0.8 * x.flatten(1).std(dim=1)).all()


def test_noise_has_the_configured_std_and_is_shared_by_channels() -> None:
    x = torch.full((4, 3, 64, 64), 0.5)
    out = create_augmentation(hflip=0.0, noise={"p": 1.0, "std": 0.1})(x)
    noise = out - x
    assert noise.std().item() == pytest.approx(0.1, rel=0.05)
    assert torch.equal(noise[:, 0], noise[:, 2])


def test_contrast_scales_each_sample_by_one_factor_in_range() -> None:
    x = torch.rand(16, 3, 16, 16) * 0.5 + 0.1
    out = create_augmentation(hflip=0.0, contrast={"p": 1.0, "contrast": 0.2, "brightness": 0.0})(x)
    ratio = out / x
    per_sample = ratio.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-5)
    assert ((per_sample[:, 0] >= 0.8 - 1e-6) & (per_sample[:, 0] <= 1.2 + 1e-6)).all()


def test_config_is_validated_and_accepts_dicts() -> None:
    config = AugmentConfig.model_validate({"vflip": 0.1, "affine": {"p": 0.3, "degrees": 20}})
    assert create_augmentation(config).config == config
    with pytest.raises(ValidationError, match="hfilp"):
        AugmentConfig.model_validate({"hfilp": 0.5})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        AugmentConfig(hflip=1.5)
    with pytest.raises(ValidationError, match="odd"):
        AugmentConfig.model_validate({"blur": {"kernel_size": 4}})
    with pytest.raises(ValueError, match="square"):
        create_augmentation(hflip=0.0, transpose=1.0)(torch.rand(2, 1, 8, 12))
