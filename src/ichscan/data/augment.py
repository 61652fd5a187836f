"""Batch augmentation on the device, after windowing: `create_augmentation(cfg) -> nn.Module`.

The module acts on whole float batches ``(B, C, H, W)`` (values in [0, 1] after
`ichscan.data.windows.apply_windows`) on whatever device they live, with kornia. Every operation
has its own probability ``p`` and draws its parameters per sample, so one batch mixes augmented
and untouched images. A sample's channels are windows or neighbouring slices of the *same*
anatomy, so every operation transforms all channels of a sample identically (one flip, one
affine matrix, one blur, one noise field, one contrast factor per sample).

Operations, in the order applied (seeds 000–004):

* horizontal flip ``x[..., w] → x[..., W-1-w]``, vertical flip, transpose ``x[..., h, w] → x[..., w, h]``
  (seed 000; square images only);
* shift-scale-rotate: an affine map with rotation θ ~ U(−degrees, degrees), scale
  s ~ U(1 − scale, 1 + scale), shift t ~ U(−translate, translate) · (W, H); pixels from outside are
  0 (air after windowing);
* random resized crop: a box of area fraction ~ U(scale) and aspect ~ U(ratio), resized back to
  (H, W) (seed 001, 003);
* blur, one of Gaussian (σ ~ U(sigma)) / average (box k×k) / median (k×k) per sample (seed 001);
* Gaussian noise ``x + ε``, ε ~ N(0, std²) shared by the channels of a sample (seed 001);
* contrast/brightness jitter ``clip(x · c + (b − 1), 0, 1)``, c ~ U(1 ± contrast),
  b ~ U(1 ± brightness) (seed 002's mild colour jitter).

In eval mode (``module.eval()``) or with ``enabled=False`` the module returns its input unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import kornia.augmentation as K
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import Tensor, nn

__all__ = [
    "AffineConfig",
    "AugmentConfig",
    "BatchAugmentation",
    "BlurConfig",
    "ContrastConfig",
    "CropConfig",
    "NoiseConfig",
    "RandomBlur",
    "RandomResizedCropSameSize",
    "RandomSharedGaussianNoise",
    "RandomTranspose",
    "create_augmentation",
]

Probability = float
BlurKind = Literal["gaussian", "box", "median"]


class _Section(BaseModel):
    """Unknown keys are errors; assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AffineConfig(_Section):
    """Shift-scale-rotate (albumentations' ShiftScaleRotate defaults for the magnitudes)."""

    p: Probability = Field(0.0, ge=0.0, le=1.0)
    degrees: float = Field(15.0, ge=0.0, le=180.0, description="rotation drawn from U(-degrees, degrees)")
    translate: float = Field(0.0625, ge=0.0, le=0.5, description="shift as a fraction of width/height")
    scale: float = Field(0.1, ge=0.0, lt=1.0, description="zoom factor drawn from U(1 - scale, 1 + scale)")


class CropConfig(_Section):
    """Random resized crop back to the input size."""

    p: Probability = Field(0.0, ge=0.0, le=1.0)
    scale: tuple[float, float] = Field((0.7, 1.0), description="area fraction of the crop box")
    ratio: tuple[float, float] = Field((0.9, 1.1), description="aspect ratio (w/h) of the crop box")

    @field_validator("scale", "ratio")
    @classmethod
    def _ordered_positive(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        low, high = bounds
        if not 0.0 < low <= high:
            raise ValueError(f"expected 0 < low <= high, got {list(bounds)}")
        return bounds

    @field_validator("scale")
    @classmethod
    def _at_most_whole(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if bounds[1] > 1.0:
            raise ValueError(f"area fraction cannot exceed 1, got {list(bounds)}")
        return bounds


class BlurConfig(_Section):
    """One blur per chosen sample, picked uniformly among `kinds` (imgaug's OneOf in seed 001)."""

    p: Probability = Field(0.0, ge=0.0, le=1.0)
    kinds: tuple[BlurKind, ...] = Field(("gaussian", "box", "median"), min_length=1)
    kernel_size: int = Field(3, ge=3, le=31, description="odd side of the blur kernel")
    sigma: tuple[float, float] = Field((0.1, 1.0), description="Gaussian σ range in pixels")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, size: int) -> int:
        if size % 2 == 0:
            raise ValueError(f"kernel size must be odd, got {size}")
        return size

    @field_validator("sigma")
    @classmethod
    def _sigma_range(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < bounds[0] <= bounds[1]:
            raise ValueError(f"expected 0 < low <= high, got {list(bounds)}")
        return bounds

    @field_validator("kinds")
    @classmethod
    def _unique(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"blur kinds repeat: {list(kinds)}")
        return kinds


class NoiseConfig(_Section):
    """Additive Gaussian noise in window units (1.0 = one window width)."""

    p: Probability = Field(0.0, ge=0.0, le=1.0)
    std: float = Field(0.02, gt=0.0, le=0.5)


class ContrastConfig(_Section):
    """Mild contrast and brightness jitter (factors around 1)."""

    p: Probability = Field(0.0, ge=0.0, le=1.0)
    contrast: float = Field(0.1, ge=0.0, lt=1.0, description="contrast factor drawn from U(1 ± contrast)")
    brightness: float = Field(0.1, ge=0.0, lt=1.0, description="brightness shift drawn from U(± brightness)")


class AugmentConfig(_Section):
    """Per-operation probabilities and magnitudes of the training augmentation.

    Defaults: horizontal flip with p = 0.5 and nothing else, which is safe for every recipe
    (left/right symmetry of the head); the recipes switch the other operations on.
    """

    enabled: bool = True
    hflip: Probability = Field(0.5, ge=0.0, le=1.0)
    vflip: Probability = Field(0.0, ge=0.0, le=1.0)
    transpose: Probability = Field(0.0, ge=0.0, le=1.0)
    affine: AffineConfig = AffineConfig()
    crop: CropConfig = CropConfig()
    blur: BlurConfig = BlurConfig()
    noise: NoiseConfig = NoiseConfig()
    contrast: ContrastConfig = ContrastConfig()

    @model_validator(mode="after")
    def _nothing_contradictory(self) -> AugmentConfig:
        if self.contrast.p > 0 and self.contrast.contrast == 0 and self.contrast.brightness == 0:
            raise ValueError("contrast.p > 0 but both contrast and brightness are 0")
        return self


def _sample_mask(batch: int, p: float, device: torch.device) -> Tensor:
    """Boolean ``(batch,)`` mask, each entry True with probability `p`."""
    return torch.rand(batch, device=device) < p


class RandomTranspose(nn.Module):
    """Swap height and width (``x[b, c, h, w] → x[b, c, w, h]``) of each sample with probability `p`.

    Kornia has no transpose; per-sample selection is ``torch.where(mask, xᵀ, x)``. Square inputs only:
    the transpose of a non-square batch would not stack with its untransposed samples.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"transpose needs square images, got {tuple(x.shape[-2:])}")
        mask = _sample_mask(x.shape[0], self.p, x.device).view(-1, 1, 1, 1)
        return torch.where(mask, x.transpose(-1, -2), x)


class RandomSharedGaussianNoise(nn.Module):
    """Add ε ~ N(0, std²) with probability `p` per sample; one noise field ``(B, 1, H, W)`` shared by
    all channels of a sample (kornia's RandomGaussianNoise draws it per channel)."""

    def __init__(self, p: float, std: float) -> None:
        super().__init__()
        self.p = p
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        mask = _sample_mask(batch, self.p, x.device).view(-1, 1, 1, 1)
        noise = torch.randn(batch, 1, height, width, device=x.device, dtype=x.dtype) * self.std
        return x + noise * mask


class RandomBlur(nn.Module):
    """With probability `p` per sample, apply one blur chosen uniformly among `kinds` (kornia).

    Each chosen subset is blurred in one vectorised call, so the loop runs over the (≤ 3) kinds, not
    over samples.
    """

    def __init__(self, p: float, kinds: tuple[BlurKind, ...], kernel_size: int, sigma: tuple[float, float]) -> None:
        super().__init__()
        self.p = p
        self.kinds = kinds
        size = (kernel_size, kernel_size)
        blurs: dict[str, nn.Module] = {
            "gaussian": K.RandomGaussianBlur(size, sigma, p=1.0),
            "box": K.RandomBoxBlur(size, p=1.0),
            "median": K.RandomMedianBlur(size, p=1.0),
        }
        self.blurs = nn.ModuleDict({kind: blurs[kind] for kind in kinds})

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        chosen = _sample_mask(batch, self.p, x.device)
        kind_index = torch.randint(len(self.kinds), (batch,), device=x.device)
        out = x.clone()
        for index, kind in enumerate(self.kinds):
            rows = torch.nonzero(chosen & (kind_index == index)).flatten()
            if rows.numel():
                out[rows] = self.blurs[kind](x[rows]).to(x.dtype)
        return out


class RandomResizedCropSameSize(nn.Module):
    """Kornia's RandomResizedCrop with the output size taken from each batch (so one config serves
    every input size)."""

    def __init__(self, p: float, scale: tuple[float, float], ratio: tuple[float, float]) -> None:
        super().__init__()
        self.p = p
        self.scale = scale
        self.ratio = ratio

    def forward(self, x: Tensor) -> Tensor:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        crop = K.RandomResizedCrop(size, scale=self.scale, ratio=self.ratio, p=self.p, cropping_mode="resample")
        return crop(x)


class BatchAugmentation(nn.Module):
    """The configured operations in order; identity in eval mode or when the config is disabled."""

    def __init__(self, config: AugmentConfig) -> None:
        super().__init__()
        self.config = config
        ops: list[nn.Module] = []
        if config.hflip > 0:
            ops.append(K.RandomHorizontalFlip(p=config.hflip))
        if config.vflip > 0:
            ops.append(K.RandomVerticalFlip(p=config.vflip))
        if config.transpose > 0:
            ops.append(RandomTranspose(config.transpose))
        affine = config.affine
        if affine.p > 0:
            ops.append(
                K.RandomAffine(
                    degrees=affine.degrees,
                    translate=(affine.translate, affine.translate),
                    scale=(1.0 - affine.scale, 1.0 + affine.scale),
                    padding_mode="zeros",
                    p=affine.p,
                )
            )
        if config.crop.p > 0:
            ops.append(RandomResizedCropSameSize(config.crop.p, config.crop.scale, config.crop.ratio))
        blur = config.blur
        if blur.p > 0:
            ops.append(RandomBlur(blur.p, blur.kinds, blur.kernel_size, blur.sigma))
        if config.noise.p > 0:
            ops.append(RandomSharedGaussianNoise(config.noise.p, config.noise.std))
        jitter = config.contrast
        if jitter.p > 0:
            # Kornia applies the contrast factor and the brightness shift per sample, the same for
            # every channel; both clip to [0, 1].
            colour: list[nn.Module] = []
            if jitter.contrast > 0:
                colour.append(K.RandomContrast((1.0 - jitter.contrast, 1.0 + jitter.contrast), p=1.0))
            if jitter.brightness > 0:
                colour.append(K.RandomBrightness((1.0 - jitter.brightness, 1.0 + jitter.brightness), p=1.0))
            ops.append(_WithProbability(nn.Sequential(*colour), jitter.p))
        self.ops = nn.ModuleList(ops)

    def forward(self, x: Tensor) -> Tensor:
        """Augment a ``(B, C, H, W)`` float batch; same shape, dtype and device out."""
        if not self.training or not self.config.enabled or not len(self.ops):
            return x
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"augmentation expects a float (B, C, H, W) batch, got {x.dtype} {tuple(x.shape)}")
        dtype = x.dtype
        with torch.no_grad():
            for op in self.ops:
                x = op(x)
        return x.to(dtype)


class _WithProbability(nn.Module):
    """Apply `op` to the samples selected with probability `p` (one vectorised call on that subset)."""

    def __init__(self, op: nn.Module, p: float) -> None:
        super().__init__()
        self.op = op
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        rows = torch.nonzero(_sample_mask(x.shape[0], self.p, x.device)).flatten()
        if not rows.numel():
            return x
        out = x.clone()
        out[rows] = self.op(x[rows]).to(x.dtype)
        return out


def create_augmentation(config: AugmentConfig | Mapping[str, Any] | None = None, **overrides: Any) -> BatchAugmentation:
    """Build the batch augmentation from an `AugmentConfig`, a plain mapping of its fields, or keywords.

    ``create_augmentation(hflip=0.5, affine={"p": 0.3, "degrees": 20})`` and
    ``create_augmentation(cfg.augment)`` both work; invalid keys or values raise pydantic's
    ``ValidationError`` naming the field. Call ``.eval()`` on the result for identity.
    """
    if config is None:
        merged: dict[str, Any] = {}
    elif isinstance(config, AugmentConfig):
        merged = config.model_dump()
    else:
        merged = dict(config)
    merged.update(overrides)
    return BatchAugmentation(AugmentConfig.model_validate(merged))
