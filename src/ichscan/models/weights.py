"""Backbones initialised from a local weights file (never a download).

timm does the model-specific work: its checkpoint filters (torchvision VGG/DenseNet layouts), the
adaptation of the first convolution to any number of input channels (``adapt_input_conv``: summed
over RGB for one channel, repeated and scaled by 3/C for C channels) and dropping an ImageNet
classifier. The file is read here so that nothing is fetched, and the result is checked: every
weight of the model outside the first convolution and a dropped classifier must come from the
file, otherwise the run would silently start from random weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import timm
from timm.models import get_pretrained_cfg, load_state_dict
from torch import Tensor, nn

__all__ = ["WeightsError", "load_weights", "read_state_dict"]

_PREFIXES = ("model.", "backbone.", "encoder.", "module.")


class WeightsError(ValueError):
    """A weights file that is missing, unreadable or does not fit the requested backbone."""


def read_state_dict(path: str | PathLike[str]) -> dict[str, Tensor]:
    """Tensors of a ``.pth``/``.pt``/``.bin``/``.safetensors`` file (nested ``state_dict``/``model``
    entries and ``module.`` prefixes unwrapped by timm); WeightsError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        state_dict = load_state_dict(str(path), use_ema=False, device="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for corrupt or foreign files
        raise WeightsError(f"{path}: not a readable weights file ({exc.__class__.__name__}: {exc})") from exc
    tensors = {key: value for key, value in state_dict.items() if isinstance(value, Tensor)}
    if not tensors:
        raise WeightsError(f"{path}: holds no tensors")
    return tensors


def _strip_prefix(state_dict: dict[str, Tensor], first_conv: str | None) -> dict[str, Tensor]:
    """Remove a wrapper prefix (``model.``, ``backbone.``…) shared by every key, e.g. of a Lightning
    checkpoint, unless the first convolution is already found without it."""
    if first_conv is not None and f"{first_conv}.weight" in state_dict:
        return state_dict
    for prefix in _PREFIXES:
        if all(key.startswith(prefix) for key in state_dict):
            return {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def _names(cfg_value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if cfg_value is None:
        return ()
    return (cfg_value,) if isinstance(cfg_value, str) else tuple(cfg_value)


def _fingerprint(tensor: Tensor) -> tuple[int, float, float]:
    """Layout-independent identity of a tensor: element count, sum and sum of squares (float64)."""
    flat = tensor.detach().double().flatten()
    return flat.numel(), round(float(flat.sum()), 6), round(float((flat * flat).sum()), 6)


def load_weights(
    timm_name: str,
    weights_path: str | PathLike[str],
    in_chans: int,
    num_classes: int,
    **kwargs: Any,
) -> nn.Module:
    """Build timm model `timm_name` from the tensors of `weights_path` (see the module docstring).

    The file's classifier is kept when it has `num_classes` outputs and dropped otherwise (an
    ImageNet head, or none at all for a headless backbone). Raises WeightsError naming the file and
    the reason when the file is unreadable or its tensors do not fit the architecture.
    """
    path = Path(weights_path)
    pretrained_cfg = get_pretrained_cfg(timm_name)
    cfg: Mapping[str, Any] = pretrained_cfg.to_dict() if pretrained_cfg is not None else {}
    first_convs = _names(cfg.get("first_conv"))
    state_dict = _strip_prefix(read_state_dict(path), first_convs[0] if first_convs else None)
    classifiers = _names(cfg.get("classifier"))
    file_chans = next(
        (int(state_dict[f"{name}.weight"].shape[1]) for name in first_convs if f"{name}.weight" in state_dict), 3
    )
    classifier_weights = [state_dict[f"{name}.weight"] for name in classifiers if f"{name}.weight" in state_dict]
    # timm drops the classifier when the declared class count differs from num_classes: declare the
    # file's own count (or an impossible one for a headless file, so nothing is required of it).
    file_classes = int(classifier_weights[0].shape[0]) if classifier_weights else -1
    input_size = (file_chans, *tuple(cfg.get("input_size", (3, 224, 224)))[1:])
    overlay = {"state_dict": state_dict, "source": "", "num_classes": file_classes, "input_size": input_size}
    try:
        model = timm.create_model(
            timm_name,
            pretrained=True,
            pretrained_cfg_overlay=overlay,
            in_chans=in_chans,
            num_classes=num_classes,
            **kwargs,
        )
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise WeightsError(f"{path}: weights do not fit backbone {timm_name!r} ({reason[:300]})") from exc

    skipped = {f"{name}.weight" for name in first_convs}
    if file_classes != num_classes:
        skipped |= {f"{name}.{part}" for name in classifiers for part in ("weight", "bias")}
    available = {_fingerprint(value) for value in state_dict.values()}
    missing = [
        key
        for key, value in model.state_dict().items()
        if key not in skipped and value.ndim >= 2 and _fingerprint(value) not in available
    ]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise WeightsError(f"{path}: weights do not fit backbone {timm_name!r}: no values for {shown}")
    return model
