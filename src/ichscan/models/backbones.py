"""Image backbones from timm by name: the seeds' networks under friendly names, any timm name too.

`create_model` builds a timm classifier with ``in_chans`` input channels (one per window × slice
offset) and ``num_classes`` logits (the six labels). Weights are random unless a local weights file
is given: ichscan never downloads (`ichscan.models.weights`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from types import MappingProxyType
from typing import Any, Final

import timm
import torch
from torch import Tensor, nn

from ichscan.labels import N_LABELS
from ichscan.models.weights import WeightsError, load_weights

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "create_model",
    "embed",
    "embedding_dim",
    "min_input_size",
    "num_params",
    "resolve_backbone",
    "to_channels_last",
]


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its timm name, what the seeds call it, the smallest usable input and
    the keywords its timm constructor takes on top of the name (e.g. narrower stages)."""

    timm_name: str
    description: str
    min_size: int = 32
    seeds: tuple[str, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


BACKBONES: Final[Mapping[str, BackboneSpec]] = MappingProxyType(
    {
        "resnet18": BackboneSpec("resnet18", "ResNet-18", seeds=("000", "002")),
        "resnet34": BackboneSpec("resnet34", "ResNet-34", seeds=("002",)),
        "resnet50": BackboneSpec("resnet50", "ResNet-50", seeds=("001", "002", "003", "004")),
        "resnext50_32x4d": BackboneSpec("resnext50_32x4d", "ResNeXt-50 32x4d", seeds=("000",)),
        "seresnext50_32x4d": BackboneSpec("seresnext50_32x4d", "SE-ResNeXt-50 32x4d", seeds=("000",)),
        "seresnet50": BackboneSpec("seresnet50", "SE-ResNet-50", seeds=("000",)),
        # Cadene's `pretrainedmodels.se_resnet50` layout (layer0.*, last_linear), used on Kaggle in 2019:
        # load its weight files with this name.
        "se_resnet50": BackboneSpec("legacy_seresnet50", "SE-ResNet-50 (pretrainedmodels layout)", seeds=("000",)),
        "densenet121": BackboneSpec("densenet121", "DenseNet-121", seeds=("001", "002")),
        "dpn68": BackboneSpec("dpn68", "DPN-68", seeds=("001",)),
        "dpn92": BackboneSpec("dpn92", "DPN-92", seeds=("001",)),
        # Keras' VGG16 (seed 003) has no batch norm: timm `vgg16`, not `vgg16_bn`.
        "vgg16": BackboneSpec("vgg16", "VGG-16", seeds=("003",)),
        "inception_v3": BackboneSpec("inception_v3", "Inception-v3", min_size=75, seeds=("003",)),
        # Keras' Xception (seed 003) is Chollet's original network = timm `legacy_xception`;
        # `xception41` is the modified (aligned) DeepLab variant.
        "xception": BackboneSpec("legacy_xception", "Xception", seeds=("003",)),
        "mobilenetv2_100": BackboneSpec("mobilenetv2_100", "MobileNet-V2 1.0", seeds=("003", "004")),
        "efficientnet_b0": BackboneSpec("efficientnet_b0", "EfficientNet-B0", seeds=("003",)),
        "efficientnet_b2": BackboneSpec("efficientnet_b2", "EfficientNet-B2", seeds=("003", "004")),
        "efficientnet_b3": BackboneSpec("efficientnet_b3", "EfficientNet-B3", seeds=("003",)),
        # ResNet-18 with half the channels per stage (32–256): a quarter of the convolution cost, so a
        # 2-core CPU can afford twice the resolution (thin subdural crescents survive at 128²).
        "resnet18_half": BackboneSpec(
            "resnet18", "ResNet-18, half width (32–256 channels)",
            kwargs=MappingProxyType({"channels": (32, 64, 128, 256)}),
        ),
    }
)


def resolve_backbone(backbone: str) -> str:
    """The timm model name for a registered friendly name or any timm name; ValueError otherwise."""
    if backbone in BACKBONES:
        return BACKBONES[backbone].timm_name
    if timm.is_model(backbone):
        return backbone
    known = sorted(set(BACKBONES) | set(timm.list_models()))
    close = difflib.get_close_matches(backbone, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; registered: {', '.join(BACKBONES)}"
    raise ValueError(f"unknown backbone {backbone!r}: neither an ichscan name nor a timm model{hint}")


def min_input_size(backbone: str) -> int:
    """Smallest input side (pixels) the backbone accepts: 75 for Inception-v3 (its stem has no
    padding), 32 otherwise (five stride-2 stages). Smoke configs should not go below it."""
    spec = BACKBONES.get(backbone)
    if spec is not None:
        return spec.min_size
    timm_name = resolve_backbone(backbone)
    matching = [s for s in BACKBONES.values() if s.timm_name == timm_name]
    return matching[0].min_size if matching else (75 if timm_name.endswith("inception_v3") else 32)


def create_model(
    backbone: str,
    in_chans: int,
    num_classes: int = N_LABELS,
    pretrained: bool = False,
    weights_path: str | PathLike[str] | None = None,
    drop_rate: float = 0.0,
    *,
    channels_last: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """A timm classifier ``(B, in_chans, H, W) float → (B, num_classes)`` logits.

    `backbone` is a friendly name of `BACKBONES` or any timm model name. Weights are random unless
    `weights_path` names a local timm/torchvision state dict (``.pth``/``.pt``/``.bin``/
    ``.safetensors``): its first convolution is adapted to `in_chans` (timm's ``adapt_input_conv``)
    and its classifier dropped when the class count differs. ``pretrained=True`` without
    `weights_path` is an error, since nothing is ever downloaded. `drop_rate` is the dropout before
    the classifier; other keywords (``drop_path_rate``, ``global_pool``…) go to ``timm.create_model``.
    ``channels_last=True`` returns the model in NHWC memory format (faster convolutions on CPU).
    """
    if in_chans < 1 or num_classes < 0:
        raise ValueError(f"in_chans must be >= 1 and num_classes >= 0, got {in_chans} and {num_classes}")
    timm_name = resolve_backbone(backbone)
    spec = BACKBONES.get(backbone)
    kwargs = {**(spec.kwargs if spec is not None else {}), **kwargs}
    if pretrained and weights_path is None:
        raise WeightsError(
            f"backbone {backbone!r}: pretrained=True needs weights_path (a local timm/torchvision weights "
            "file); ichscan never downloads weights"
        )
    if weights_path is not None:
        model = load_weights(timm_name, weights_path, in_chans=in_chans, num_classes=num_classes,
                             drop_rate=drop_rate, **kwargs)
    else:
        model = timm.create_model(timm_name, pretrained=False, in_chans=in_chans, num_classes=num_classes,
                                  drop_rate=drop_rate, **kwargs)
    return to_channels_last(model) if channels_last else model


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert the 4-D parameters and buffers to NHWC (``torch.channels_last``) in place; returns `model`.

    Feed it NHWC inputs too (``x.contiguous(memory_format=torch.channels_last)``) to avoid layout
    conversions inside the network.
    """
    return model.to(memory_format=torch.channels_last)


def num_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def embed(model: nn.Module, x: Tensor) -> Tensor:
    """The pooled pre-logits embedding ``(B, D)`` of a timm model: the input of its last linear layer.

    This is what seed 002's LSTM stage and the t-SNE plots consume; ``D = embedding_dim(model)``.
    """
    features = model.forward_features(x)
    return model.forward_head(features, pre_logits=True).flatten(1)


def embedding_dim(model: nn.Module) -> int:
    """Width ``D`` of `embed`'s output (timm's ``head_hidden_size`` when the head has a hidden layer,
    as in VGG, else ``num_features``)."""
    hidden = getattr(model, "head_hidden_size", None)
    return int(hidden if hidden is not None else model.num_features)
