"""The input contract of a trained run: how DICOM becomes the exact tensor the network learnt on.

Like timm's ``pretrained_cfg``, a run carries its own input recipe. `InputContract` records every
step from a DICOM slice to the network's input, so that `predict`, `explain`, `embed`, `evaluate`
(and ONNX export, the service) rebuild that tensor from the run itself, never from a config path
that may be relative or gone, never from a default size:

1. **Cache** (`ichscan.prepare`): Hounsfield units, the square head crop (`crop`: on/off and the
   search parameters), resized to ``cache_size`` × ``cache_size`` with OpenCV (``resize``: area
   averaging when shrinking, bilinear when enlarging, rounded to whole HU; `opencv_version`).
2. **Network grid**: the same OpenCV resize again, from ``cache_size`` to ``input_size``
   (`to_input_grid`), on the CPU in the data path, identically in training and prediction. No
   other resize exists: a DICOM folder and the training cache give the same tensor.
3. **Channels** (`ichscan.data.windows.apply_windows`): ``windows`` of the slices at ``offsets``,
   ``normalize``, channel order offset-major ``[off0/win0, off0/win1, …, off1/win0, …]``.
4. **Outputs**: six logits in ``labels`` order.

It also records the ichscan version that trained the run and the split its validation came from.
Written as ``RUN/input.json`` (`write_contract`, atomically) and into every checkpoint;
`read_contract` is the one loader. `SliceGeometry` maps a map on the network grid back to the
original DICOM pixel grid (the inverse of crop + resize), so a heatmap overlays the original image
where the network looked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import cv2
import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ichscan.data.windows import ChannelSpec, Window, apply_windows
from ichscan.files import atomic_path
from ichscan.labels import LABELS

__all__ = [
    "CONTRACT_FILE",
    "CONTRACT_VERSION",
    "ContractError",
    "CropRecipe",
    "InputContract",
    "SliceGeometry",
    "SplitRecipe",
    "read_contract",
    "to_input_grid",
    "write_contract",
]

CONTRACT_FILE: Final[str] = "input.json"
CONTRACT_VERSION: Final[int] = 1
RESIZE_KERNEL: Final[str] = "opencv: INTER_AREA when shrinking, INTER_LINEAR when enlarging; whole HU"
CHANNEL_ORDER: Final[str] = "offset-major"


class ContractError(ValueError):
    """A run without a usable input contract; the message names the file and the reason."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CropRecipe(_Frozen):
    """The cache's head crop (`ichscan.prepare.crop.head_box`): on/off and its parameters."""

    enabled: bool
    threshold_hu: float
    margin_fraction: float
    search_side_px: int
    opening_iterations: int

    @classmethod
    def current(cls, enabled: bool) -> CropRecipe:
        """The crop `ichscan prepare` applies today (its module constants)."""
        from ichscan.prepare import crop

        return cls(
            enabled=enabled,
            threshold_hu=float(crop.HEAD_THRESHOLD_HU),
            margin_fraction=float(crop.MARGIN_FRACTION),
            search_side_px=int(crop.SEARCH_SIDE_PX),
            opening_iterations=int(crop.OPENING_ITERATIONS),
        )


class SplitRecipe(_Frozen):
    """How the run's validation fold was drawn (`ichscan.data.splits.assign_folds`)."""

    method: str
    n_folds: int
    seed: int
    fold: int
    group: str = "patient_id"


class InputContract(_Frozen):
    """Everything that turns a DICOM slice into the network's input, and the output's order.

    ``cache_size`` and ``input_size`` are square sides in pixels; ``cache_size`` 0 means the cache
    kept each matrix's own size (then ``input_size`` is required to be set).
    """

    contract_version: int = CONTRACT_VERSION
    ichscan_version: str
    cache_size: int = Field(ge=0)
    cache_version: int
    crop: CropRecipe
    spacing: float | None = Field(default=None, gt=0)  # `prepare --spacing`: in-plane mm per pixel before crop
    resize: str = RESIZE_KERNEL
    opencv_version: str
    input_size: int = Field(ge=1)
    windows: tuple[str, ...] = Field(min_length=1)
    offsets: tuple[int, ...] = Field(min_length=1)
    normalize: Literal["fixed", "minmax"] = "fixed"
    channel_order: Literal["offset-major"] = CHANNEL_ORDER
    labels: tuple[str, ...] = LABELS
    split: SplitRecipe | None = None

    @field_validator("windows")
    @classmethod
    def _known_windows(cls, windows: tuple[str, ...]) -> tuple[str, ...]:
        for window in windows:
            Window.parse(window)
        return windows

    @field_validator("labels")
    @classmethod
    def _label_order(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        if tuple(labels) != LABELS:
            raise ValueError(f"label order {list(labels)} is not this ichscan's {list(LABELS)}")
        return labels

    @classmethod
    def build(
        cls,
        *,
        cache_size: int,
        crop: bool,
        windows: tuple[str, ...],
        offsets: tuple[int, ...],
        normalize: Literal["fixed", "minmax"] = "fixed",
        input_size: int | None = None,
        cache_version: int | None = None,
        opencv_version: str | None = None,
        split: SplitRecipe | None = None,
        spacing: float | None = None,
    ) -> InputContract:
        """A contract for today's prepare code: ``input_size`` None means the cache's own size."""
        from ichscan import __version__
        from ichscan.prepare.cache import CACHE_VERSION

        size = input_size or cache_size
        if not size:
            raise ContractError("a cache kept at each matrix's own size (size 0) needs an explicit input size")
        return cls(
            ichscan_version=__version__,
            cache_size=int(cache_size),
            cache_version=CACHE_VERSION if cache_version is None else int(cache_version),
            crop=CropRecipe.current(bool(crop)),
            spacing=None if spacing is None else float(spacing),
            opencv_version=opencv_version or cv2.__version__,
            input_size=int(size),
            windows=tuple(windows),
            offsets=tuple(int(o) for o in offsets),
            normalize=normalize,
            split=split,
        )

    @property
    def channel_spec(self) -> ChannelSpec:
        """The `ChannelSpec` of the channels step (windows × offsets, normalisation)."""
        return ChannelSpec(windows=self.windows, offsets=self.offsets, normalize=self.normalize)

    @property
    def in_chans(self) -> int:
        """Network input channels: one per (offset, window) pair."""
        return len(self.windows) * len(self.offsets)

    @property
    def cache_key(self) -> tuple[int, bool, float | None]:
        """What a prepared cache must match to feed this contract: (cache size, crop on/off,
        resampling spacing in mm or None)."""
        return self.cache_size, self.crop.enabled, self.spacing

    def check_cache(self, cache_dir: Path) -> None:
        """ContractError unless the cache at `cache_dir` was prepared as this contract says."""
        meta_path = Path(cache_dir) / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            size, crop = int(meta["size"]), bool(meta["crop"])
            spacing = None if meta.get("spacing") is None else float(meta["spacing"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ContractError(f"{meta_path}: not a readable cache meta.json ({exc})") from exc
        if (size, crop, spacing) != self.cache_key:
            wanted = f"--size {self.cache_size}" + ("" if self.spacing is None else f" --spacing {self.spacing:g}")
            raise ContractError(
                f"{cache_dir}: cache prepared with size={size}, crop={crop}, spacing={spacing}, but the model "
                f"was trained on size={self.cache_size}, crop={self.crop.enabled}, spacing={self.spacing}; give "
                f"the DICOM folder or a manifest (prepared as the model needs), or a cache made with "
                f"`ichscan prepare {wanted}`"
            )

    def network_input(self, hu: NDArray[np.int16], device: str | torch.device = "cpu") -> torch.Tensor:
        """int16 HU stacks ``(B, len(offsets), H, W)`` on the cache grid → the network's float32
        input ``(B, in_chans, input_size, input_size)`` on `device`: `to_input_grid` on the CPU,
        then the windows on the device (as the training module does)."""
        grid = np.ascontiguousarray(to_input_grid(hu, self.input_size))
        return apply_windows(torch.from_numpy(grid).to(device), self.channel_spec)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the content of ``RUN/input.json``)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], source: str = "<contract>") -> InputContract:
        """Validate a stored contract; ContractError naming `source` and the bad key."""
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise ContractError(f"{source}: invalid input contract ({problems})") from exc


def write_contract(run_dir: Path, contract: InputContract) -> Path:
    """Write ``RUN/input.json`` atomically; return its path."""
    path = Path(run_dir) / CONTRACT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(contract.to_json(), indent=2) + "\n", encoding="utf-8")
    return path


def read_contract(run_dir: Path, checkpoint: Mapping[str, Any] | None = None) -> InputContract:
    """The input contract of a run: ``RUN/input.json``, else the copy inside `checkpoint` (the
    loaded checkpoint dict, key ``ichscan.input``). ContractError (one line) when neither has it."""
    path = Path(run_dir) / CONTRACT_FILE
    if path.is_file():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ContractError(f"{path}: unreadable input contract ({exc})") from exc
        return InputContract.from_json(raw, str(path))
    stored = (checkpoint or {}).get("ichscan", {}).get("input") if checkpoint is not None else None
    if stored is not None:
        return InputContract.from_json(stored, f"{run_dir} (checkpoint)")
    raise ContractError(
        f"{run_dir}: no input contract ({CONTRACT_FILE}); the run predates it: write it with "
        f"`ichscan contract {run_dir} --write --cache CACHE` (CACHE: the cache it trained on)"
    )


def to_input_grid(hu: NDArray[np.int16], size: int) -> NDArray[np.int16]:
    """Resize int16 HU ``(..., H, W)`` to ``(..., size, size)`` with the cache's own resize.

    The one second resize of ichscan: `ichscan.prepare.resize_hounsfield` (OpenCV area averaging
    when shrinking, bilinear when enlarging, whole HU) applied slice by slice, on the CPU. The
    training data path and every prediction path call it, so a network sees the same pixels from
    its training cache and from DICOM prepared at the contract's cache size. A no-op (the same
    array) when the grid already is ``size`` × ``size``.
    """
    from ichscan.prepare import resize_hounsfield

    if hu.shape[-2:] == (size, size):
        return hu
    flat = np.ascontiguousarray(hu, dtype=np.int16).reshape(-1, *hu.shape[-2:])
    return resize_hounsfield(flat, size, size).reshape(*hu.shape[:-2], size, size)


@dataclass(frozen=True)
class SliceGeometry:
    """Where the network grid sits on the original DICOM matrix (an invertible transform).

    The cache cuts the box ``[y0, y1) × [x0, x1)`` of the ``rows × columns`` matrix (it may reach
    past the matrix: air) and both resizes scale it to ``size × size``. Network pixel ``(i, j)``
    has its centre at matrix coordinates ``y = y0 + (i + ½)·(y1 − y0)/size − ½`` (and likewise
    x): the half-pixel-centre convention of OpenCV's resize.
    """

    y0: int
    y1: int
    x0: int
    x1: int
    rows: int
    columns: int

    @classmethod
    def of_slice(cls, row: Mapping[str, Any]) -> SliceGeometry:
        """From one row of a cache's slices table (crop box + the manifest's matrix size)."""
        return cls(int(row["crop_y0"]), int(row["crop_y1"]), int(row["crop_x0"]), int(row["crop_x1"]),
                   int(row["rows"]), int(row["columns"]))

    def to_dicom(self, grid_map: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """A ``(size, size)`` map on the network grid → ``(rows, columns)`` on the DICOM matrix.

        Bilinear (OpenCV ``INTER_LINEAR``) from the grid to the box, then the part of the box
        inside the matrix is kept; matrix pixels outside the box get 0 (the network never saw them).
        """
        height, width = self.y1 - self.y0, self.x1 - self.x0
        box = cv2.resize(np.asarray(grid_map, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        out = np.zeros((self.rows, self.columns), dtype=np.float32)
        top, bottom = max(self.y0, 0), min(self.y1, self.rows)
        left, right = max(self.x0, 0), min(self.x1, self.columns)
        if top < bottom and left < right:
            out[top:bottom, left:right] = box[top - self.y0 : bottom - self.y0, left - self.x0 : right - self.x0]
        return out

    def to_grid_point(self, y: float, x: float, size: int) -> tuple[float, float]:
        """Matrix coordinates (pixel centres) → network grid coordinates (the forward map)."""
        return ((y - self.y0 + 0.5) * size / (self.y1 - self.y0) - 0.5,
                (x - self.x0 + 0.5) * size / (self.x1 - self.x0) - 0.5)
