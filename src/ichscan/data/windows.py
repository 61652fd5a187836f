"""CT windows: Hounsfield units → model input channels in [0, 1].

A window (centre c, width w) maps HU to ``(clip(HU, c − w/2, c + w/2) − (c − w/2)) / w``, i.e.
``clip((HU − lo) / w, 0, 1)`` with ``lo = c − w/2``. A `ChannelSpec` combines windows with
neighbouring-slice offsets: the input stack ``(B, len(offsets), H, W)`` becomes
``(B, len(offsets) · len(windows), H, W)`` with offset-major channel order
``[off0/win0, off0/win1, …, off1/win0, …]``.

Output: float32 in [0, 1] (the default, what the models take), or uint8 grey levels
``round(255 · y)`` (a quarter of the bytes: for moving windowed batches around, normalised back
to float on the training device). On the CPU, fixed windows are one fused pass (a numba kernel:
each HU read once, each output value written once, no temporaries); elsewhere (GPU tensors,
dtypes numba does not take) the same formula runs as torch operations. docs/bench/loader.md
has the numbers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
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

OutputDtype = Literal["float32", "uint8"]
GREY_LEVELS: Final[int] = 255
"""uint8 output: y ∈ [0, 1] is stored as round(255 · y); divide by this to get y back."""

# Input dtypes of the fused CPU kernel (anything else takes the torch path).
_KERNEL_INPUTS: Final[frozenset[np.dtype[Any]]] = frozenset(
    np.dtype(name) for name in ("int8", "uint8", "int16", "uint16", "int32", "int64",
                                "float32", "float64")
)


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


def apply_windows(
    hu: ArrayT, spec: ChannelSpec, *, dtype: OutputDtype = "float32", out: ArrayT | None = None
) -> ArrayT:
    """Window a batch of HU stacks into channels: float32 in [0, 1], or uint8 grey levels.

    `hu`: ``(B, len(offsets), H, W)`` (or one stack ``(len(offsets), H, W)``), any integer or float
    dtype, NumPy array or torch tensor on any device; returns the same kind (NumPy in → NumPy out,
    tensor stays on its device) of shape ``(B, len(offsets)·len(windows), H, W)``.

    fixed:  ``y = clip((x − lo) / w, 0, 1)``, ``lo = c − w/2`` (= ``(clip(x, lo, hi) − lo) / w``),
            computed in float32 as ``x · (1/w) + (−lo/w)``.
    minmax: the fixed result ``y`` per image and channel, then ``(y − min y) / (max y − min y)``
            over H×W; a constant channel (max = min) becomes 0.
    `dtype` ``"uint8"``: ``round(255 · y)`` (ties up), i.e. within ½ grey level of the float
    result; ``out / GREY_LEVELS`` gives ``y`` back to within 1/510.
    `out`: a C-contiguous result array of that shape and dtype (same kind and device as `hu`) to
    write into and return. Reusing one across batches saves the page faults of a fresh result
    (151 MB float32 for 64 × 9 × 256²), which cost about as much as the windowing itself.

    NumPy arrays and CPU tensors share one kernel, so both give identical values; the torch path
    (other devices, bfloat16 input) agrees with it to 1 float32 ulp or 1 grey level.
    """
    if dtype not in ("float32", "uint8"):
        raise ValueError(f"dtype must be 'float32' or 'uint8', got {dtype!r}")
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
    batch, _, height, width = x.shape
    target = None if out is None else _checked_out(
        out, (batch, spec.n_channels, height, width), dtype, x.device, single=single
    )
    quantize = dtype == "uint8" and spec.normalize == "fixed"  # minmax quantises at the end
    result = _fixed_windows_cpu(x, spec.windows, quantize,
                                target if spec.normalize == "fixed" else None)
    if result is None:
        result = _fixed_windows_torch(x, spec.windows, quantize)
    if spec.normalize == "minmax":
        low = result.amin(dim=(-2, -1), keepdim=True)
        span = result.amax(dim=(-2, -1), keepdim=True) - low
        result = torch.where(span > 0, (result - low) / torch.where(span > 0, span, 1.0), 0.0)
        if dtype == "uint8":  # y ∈ [0, 1]: truncating y·255 + ½ rounds, ties up
            result = (result * GREY_LEVELS + 0.5).to(torch.uint8)
    if target is not None:
        if result.data_ptr() != target.data_ptr():
            target.copy_(result)
        return out  # type: ignore[return-value]
    if single:
        result = result.squeeze(0)
    return result.numpy() if is_numpy else result  # type: ignore[return-value]


def _checked_out(
    out: np.ndarray | torch.Tensor,
    shape: tuple[int, int, int, int],
    dtype: OutputDtype,
    device: torch.device,
    *,
    single: bool,
) -> torch.Tensor:
    """`out` as a 4-D tensor view after checking it can hold the result; else ValueError."""
    view = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
    expected = shape[1:] if single else shape
    if (
        tuple(view.shape) != expected
        or view.dtype != getattr(torch, dtype)
        or view.device != device
        or not view.is_contiguous()
    ):
        raise ValueError(
            f"out must be a contiguous {dtype} array of shape {expected} on {device}, got "
            f"{view.dtype} {tuple(view.shape)} on {view.device}"
        )
    return view.unsqueeze(0) if single else view


def _window_coefficients(
    windows: Sequence[Window], quantize: bool
) -> tuple[list[float], list[float], float, float]:
    """(scale, shift, low clamp, high clamp) per window: ``clamp(x · scale + shift)``.

    Quantised: scaled to grey levels with +½ folded into the shift and the clamp at [½, 255½],
    so that truncating to uint8 rounds to the nearest level (ties up).
    """
    factor = GREY_LEVELS if quantize else 1.0
    scale = [factor / w.width for w in windows]
    shift = [-factor * w.low / w.width + (0.5 if quantize else 0.0) for w in windows]
    return scale, shift, (0.5 if quantize else 0.0), (factor + 0.5 if quantize else 1.0)


def _fixed_windows_torch(
    x: torch.Tensor, windows: Sequence[Window], quantize: bool
) -> torch.Tensor:
    """The fixed windows as torch operations on `x`'s device: ``(B, O·K, H, W)``."""
    batch, n_offsets, height, width = x.shape
    n_windows = len(windows)
    scale_list, shift_list, low, high = _window_coefficients(windows, quantize)
    shape = (1, 1, n_windows, 1, 1)
    scale = torch.tensor(scale_list, dtype=torch.float32, device=x.device).view(shape)
    shift = torch.tensor(shift_list, dtype=torch.float32, device=x.device).view(shape)
    # y = x · scale + shift, broadcast over a new window axis, written once, clamped in place.
    out = torch.empty((batch, n_offsets, n_windows, height, width), dtype=torch.float32,
                      device=x.device)
    torch.addcmul(shift, x.to(torch.float32).unsqueeze(2), scale, out=out)
    out.clamp_(low, high)
    out = out.view(batch, n_offsets * n_windows, height, width)
    return out.to(torch.uint8) if quantize else out


def _fixed_windows_cpu(
    x: torch.Tensor, windows: Sequence[Window], quantize: bool, target: torch.Tensor | None
) -> torch.Tensor | None:
    """The fixed windows by the fused CPU kernel (into `target` if given), or None where it
    does not apply.

    Why a kernel: as torch operations the float32 conversion, the broadcast multiply-add and the
    clamp are three passes over batch-sized arrays that do not fit any cache (≈ 300 slices/s per
    thread for 9 channels); fused, each value is written once (float32 is then bound by the
    2.4 MB of writes per slice, uint8 by arithmetic).
    """
    if x.device.type != "cpu" or x.requires_grad:
        return None
    try:
        values = x.numpy()
    except TypeError:  # bfloat16 and friends: no NumPy dtype
        return None
    if values.dtype not in _KERNEL_INPUTS:
        return None
    batch, n_offsets, height, width = values.shape
    scale, shift, low, high = _window_coefficients(windows, quantize)
    if target is None:
        out = np.empty((batch, n_offsets * len(windows), height, width),
                       dtype=np.uint8 if quantize else np.float32)
    else:
        out = target.numpy()
    _window_kernel()(
        np.ascontiguousarray(values).reshape(batch, n_offsets, height * width),
        np.asarray(scale, dtype=np.float32),
        np.asarray(shift, dtype=np.float32),
        np.float32(low),
        np.float32(high),
        out.reshape(batch, n_offsets * len(windows), height * width),
    )
    return target if target is not None else torch.from_numpy(out)


@functools.cache
def _window_kernel() -> Callable[..., None]:
    """The numba kernel (compiled on first use per input/output dtype, cached on disk; numba is
    imported only here).

    ``out[b, o·K + k, p] = clamp(float32(x[b, o, p]) · scale[k] + shift[k], low, high)``, cast
    to `out`'s dtype (uint8: truncation, exact for the clamped non-negative values).
    """
    import numba

    @numba.njit(cache=True, nogil=True, boundscheck=False)
    def window(x, scale, shift, low, high, out):  # type: ignore[no-untyped-def]
        batch, n_offsets, n_pixels = x.shape
        n_windows = scale.shape[0]
        for b in range(batch):
            for o in range(n_offsets):
                source = x[b, o]
                for k in range(n_windows):
                    target = out[b, o * n_windows + k]
                    s, t = scale[k], shift[k]
                    for p in range(n_pixels):
                        target[p] = min(max(np.float32(source[p]) * s + t, low), high)

    return window
