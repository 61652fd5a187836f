"""Typed configuration of the synthetic head-CT phantom."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ichscan.labels import SUBTYPES

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]

# Probability that a positive study holds each subtype. Calibrated (bench/bench_phantom.py) so that
# the per-slice positive shares approach the RSNA training set (DOMAIN.md): any ≈ 14 %, EDH ≈ 0.4 %,
# IPH ≈ 4.8 %, IVH ≈ 3.5 %, SAH ≈ 4.7 %, SDH ≈ 6.3 %.
DEFAULT_SUBTYPE_PROBABILITY: dict[str, float] = {
    "epidural": 0.04,
    "intraparenchymal": 0.70,
    "intraventricular": 0.33,
    "subarachnoid": 0.55,
    "subdural": 0.22,
}


class StorageMix(BaseModel):
    """Relative frequencies of the ways series store their pixels (normalised when sampled).

    ``signed_1024``: int16, intercept −1024; ``unsigned_1024``: uint16 16-bit, intercept −1024;
    ``unsigned12_1024``: uint16 12-bit, intercept −1024; ``signed_0``: int16, intercept 0;
    ``unsigned_1000``: uint16 16-bit, intercept −1000; ``rsna_defect``: 12-bit unsigned with
    intercept 0, stored so that only the community fix of DOMAIN.md recovers Hounsfield units.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    signed_1024: float = Field(0.30, ge=0)
    unsigned_1024: float = Field(0.20, ge=0)
    unsigned12_1024: float = Field(0.15, ge=0)
    signed_0: float = Field(0.10, ge=0)
    unsigned_1000: float = Field(0.10, ge=0)
    rsna_defect: float = Field(0.15, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> StorageMix:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one storage variant needs a positive weight")
        return self


class PhantomConfig(BaseModel):
    """Everything that shapes a phantom data set; the seed is passed separately.

    Sizes are in pixels and millimetres. Prevalence: a study is positive with probability
    ``positive_fraction``; a positive study holds each subtype with ``subtype_probability``
    (times ``subtype_boost``, capped at 1) and at least one. Labels: a subtype is positive on a
    slice when its mask covers at least ``label_min_area_mm2`` there (and at least one pixel).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int = Field(512, ge=64, le=1024, description="rows = columns of every image")
    slice_thickness_mm: float = Field(5.0, gt=0.5, le=10.0)
    slices_per_series: int | None = Field(
        None, ge=4, le=200, description="None: skull base to vertex (about 28–34 at 5 mm)"
    )
    field_of_view_mm: tuple[float, float] = (225.0, 250.0)
    positive_fraction: Fraction = 0.42
    subtype_probability: dict[str, Fraction] = Field(
        default_factory=lambda: dict(DEFAULT_SUBTYPE_PROBABILITY)
    )
    subtype_boost: dict[str, Annotated[float, Field(ge=0.0)]] = Field(default_factory=dict)
    second_series_fraction: Fraction = 0.15
    tilted_fraction: Fraction = 0.2
    compressed_fraction: Fraction = 0.15
    storage: StorageMix = Field(default_factory=StorageMix)
    noise_sigma_hu: tuple[float, float] = (3.0, 10.0)
    blur_sigma_px: tuple[float, float] = (0.4, 0.8)
    label_min_area_mm2: float = Field(10.0, ge=0.0)
    chunk_slices: int = Field(8, ge=1, le=64, description="slices rendered at once (memory bound)")
    render_step: int | None = Field(
        None, ge=1, le=4,
        description="evaluate anatomy every n-th pixel and interpolate (None: 2 from 384 px up, else 1)",
    )

    @field_validator("subtype_probability", "subtype_boost")
    @classmethod
    def _known_subtypes(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(SUBTYPES))
        if unknown:
            raise ValueError(f"unknown subtype(s) {unknown}; expected some of {list(SUBTYPES)}")
        return value

    @field_validator("field_of_view_mm", "noise_sigma_hu", "blur_sigma_px")
    @classmethod
    def _ordered_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError(f"range must satisfy 0 <= low <= high, got {value}")
        return value

    @field_validator("field_of_view_mm")
    @classmethod
    def _head_fits(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 215.0:
            raise ValueError("field of view below 215 mm would cut the head")
        return value

    def probability_of(self, subtype: str) -> float:
        """Probability that a positive study holds `subtype` (boost applied, capped at 1)."""
        base = self.subtype_probability.get(subtype, DEFAULT_SUBTYPE_PROBABILITY[subtype])
        return min(1.0, base * self.subtype_boost.get(subtype, 1.0))
