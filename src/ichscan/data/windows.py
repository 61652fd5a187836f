"""CT windows: Hounsfield units → model input channels in [0, 1].

A window (centre c, width w) maps HU to ``(clip(HU, c − w/2, c + w/2) − (c − w/2)) / w``, i.e.
``clip((HU − lo) / w, 0, 1)`` with ``lo = c − w/2``. A `ChannelSpec` combines windows with
neighbouring-slice offsets: the input stack ``(B, len(offsets), H, W)`` becomes
``(B, len(offsets) · len(windows), H, W)`` with offset-major channel order
``[off0/win0, off0/win1, …, off1/win0, …]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, field_serializer, field_validator

WINDOWS: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
        "brain": (40.0, 80.0),
        "subdural": (80.0, 200.0),
        "soft": (40.0, 380.0),
        "bone": (600.0, 2800.0),
        "stroke": (40.0, 40.0),
    }
)

DEFAULT_WINDOWS: Final[tuple[str, ...]] = ("brain", "subdural", "soft")
"""Seeds 000/003/004: three windows of one slice."""

_CUSTOM = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Window:
    """A CT display window: `center` (level) and `width`, both in HU."""

    center: float
    width: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.center) and np.isfinite(self.width)) or self.width <= 0:
            raise ValueError(
                f"window {self.center}/{self.width}: width must be a finite number > 0"
            )

    @property
    def low(self) -> float:
        """Lowest HU shown (maps to 0)."""
        return self.center - self.width / 2

    @property
    def high(self) -> float:
        """Highest HU shown (maps to 1)."""
        return self.center + self.width / 2

    @property
    def name(self) -> str:
        """The DOMAIN.md name when the window is a named one, else ``"c/w"``."""
        for name, (center, width) in WINDOWS.items():
            if (center, width) == (self.center, self.width):
                return name
        return f"{self.center:g}/{self.width:g}"

    @classmethod
    def parse(cls, value: Window | str | Sequence[float]) -> Window:
        """A window from a name (``"brain"``), a ``"c/w"`` string (``"40/80"``) or ``(c, w)``."""
        if isinstance(value, Window):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            if key in WINDOWS:
                return cls(*WINDOWS[key])
            match = _CUSTOM.match(key)
            if match is None:
                raise ValueError(
                    f"unknown window {value!r}: use one of {', '.join(WINDOWS)} or 'centre/width' "
                    "such as '40/80'"
                )
            return cls(float(match.group(1)), float(match.group(2)))
        if isinstance(value, Mapping):
            return cls(float(value["center"]), float(value["width"]))
        pair = tuple(value)
        if len(pair) != 2:
            raise ValueError(f"window {value!r}: expected (centre, width)")
        return cls(float(pair[0]), float(pair[1]))


class ChannelSpec(BaseModel):
    """Which windows of which neighbouring slices form the model's input channels.

    `windows`: names, ``"c/w"`` strings or ``(c, w)`` pairs (a comma-separated string is accepted
    too); `offsets`: slice offsets relative to the centre slice (``(-1, 0, 1)`` = s−1, s, s+1);
    `normalize`: ``"fixed"`` (the window formula) or ``"minmax"`` (then each image channel is
    rescaled to its own [min, max], seed 000).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    windows: tuple[Window, ...] = tuple(Window(*WINDOWS[name]) for name in DEFAULT_WINDOWS)
    offsets: tuple[int, ...] = (0,)
    normalize: Literal["fixed", "minmax"] = "fixed"

    @field_validator("windows", mode="before")
    @classmethod
    def _parse_windows(cls, value: Any) -> tuple[Window, ...]:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, Window) or (
            isinstance(value, Sequence) and len(value) == 2
            and all(isinstance(v, int | float) for v in value)
        ):
            value = [value]
        windows = tuple(Window.parse(item) for item in value)
        if not windows:
            raise ValueError("at least one window is needed")
        return windows

    @field_validator("offsets", mode="before")
    @classmethod
    def _check_offsets(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, int):
            value = (value,)
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        offsets = tuple(int(v) for v in value)
        if not offsets:
            raise ValueError("at least one slice offset is needed")
        return offsets

    @field_serializer("windows")
    def _serialize_windows(self, windows: tuple[Window, ...]) -> list[str]:
        return [window.name for window in windows]

    @property
    def n_channels(self) -> int:
        """Number of model input channels: ``len(offsets) · len(windows)``."""
        return len(self.offsets) * len(self.windows)

    @property
    def channel_names(self) -> list[str]:
        """One name per output channel in offset-major order, e.g. ``"s-1:brain"``."""
        return [
            f"s{offset:+d}:{window.name}" if offset else f"s:{window.name}"
            for offset in self.offsets
            for window in self.windows
        ]


def apply_windows(hu: ArrayT, spec: ChannelSpec) -> ArrayT:
    """Window a batch of HU stacks into float32 channels in [0, 1].

    `hu`: ``(B, len(offsets), H, W)`` (or one stack ``(len(offsets), H, W)``), any integer or float
    dtype, NumPy array or torch tensor on any device; returns the same kind (NumPy in → NumPy out,
    tensor stays on its device) of shape ``(B, len(offsets)·len(windows), H, W)``.

    fixed:  ``y = clip((x − lo) / w, 0, 1)``, ``lo = c − w/2`` (= ``(clip(x, lo, hi) − lo) / w``).
    minmax: the fixed result ``y`` per image and channel, then ``(y − min y) / (max y − min y)``
            over H×W; a constant channel (max = min) becomes 0.
    One torch code path serves NumPy (zero-copy view) and tensors, so both give identical values.
    """
    is_numpy = isinstance(hu, np.ndarray)
    x = torch.from_numpy(np.ascontiguousarray(hu)) if is_numpy else hu
    single = x.ndim == 3
    if single:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] != len(spec.offsets):
        raise ValueError(
            f"HU batch of shape {tuple(hu.shape)} does not match {len(spec.offsets)} slice "
            "offsets: expected (B, len(offsets), H, W)"
        )
    batch, n_offsets, height, width = x.shape
    n_windows = len(spec.windows)
    scale = torch.tensor([1.0 / w.width for w in spec.windows], dtype=torch.float32,
                         device=x.device)
    shift = torch.tensor([-w.low / w.width for w in spec.windows], dtype=torch.float32,
                         device=x.device)
    # y = x · (1/w) + (−lo/w), broadcast over a new window axis, written once, clamped in place.
    out = torch.empty((batch, n_offsets, n_windows, height, width), dtype=torch.float32,
                      device=x.device)
    torch.addcmul(shift.view(1, 1, n_windows, 1, 1), x.to(torch.float32).unsqueeze(2),
                  scale.view(1, 1, n_windows, 1, 1), out=out)
    out.clamp_(0.0, 1.0)
    out = out.view(batch, n_offsets * n_windows, height, width)
    if spec.normalize == "minmax":
        low = out.amin(dim=(-2, -1), keepdim=True)
        span = out.amax(dim=(-2, -1), keepdim=True) - low
        out = torch.where(span > 0, (out - low) / torch.where(span > 0, span, 1.0), 0.0)
    if single:
        out = out.squeeze(0)
    return out.numpy() if is_numpy else out
