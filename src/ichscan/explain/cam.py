"""Class activation maps (Grad-CAM, Grad-CAM++) of a timm classifier, via the grad-cam package.

Grad-CAM (Selvaraju et al. 2017) weighs the target layer's activation maps ``A^k`` by the spatial mean
of the class score's gradient, ``α_k = mean_ij ∂y_c/∂A^k_ij``, and keeps ``ReLU(Σ_k α_k A^k)``;
Grad-CAM++ (Chattopadhay et al. 2018) uses higher-order weights that credit several instances of a
class better. Maps are upsampled to the input size and min–max scaled to [0, 1] per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

__all__ = ["CAM_METHODS", "CamMethod", "class_activation_maps", "find_target_layer"]

CamMethod = Literal["gradcam", "gradcam++"]
CAM_METHODS: Final[dict[str, type[GradCAM] | type[GradCAMPlusPlus]]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
}


MIN_CAM_SIDE = 4  # a coarser map can only point at a quadrant of the slice


def find_target_layer(model: nn.Module, example: Tensor, min_side: int = MIN_CAM_SIDE) -> nn.Module:
    """The last top-level child of ``model`` whose output map ``(B, C, h, w)`` has ``h, w ≥ min_side``.

    For timm CNNs on usual input sizes this is the last convolutional stage (``layer4`` of a
    ResNet, ``bn2`` after the ``conv_head`` of an EfficientNet, ``features`` of a DenseNet). On
    small inputs that stage's map shrinks to 2×2 (64² through a stride-32 network), whose upsampled
    maximum can only name a quadrant, so the last stage with at least ``min_side`` pixels a side is
    taken instead (``layer3``, 4×4, for a ResNet at 64²). Found by one probing forward pass on
    ``example`` with hooks; when no map is that large, the largest-index spatial one is used.
    """
    outputs: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [
        child.register_forward_hook(
            lambda module, _inputs, output: outputs.append((module, tuple(output.shape)))
            if isinstance(output, Tensor) and output.ndim == 4
            else None
        )
        for child in model.children()
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not outputs:
        raise ValueError(f"{type(model).__name__} has no child producing a (B, C, h, w) map for Grad-CAM")
    fine = [module for module, shape in outputs if min(shape[2], shape[3]) >= min_side]
    spatial = [module for module, shape in outputs if shape[2] * shape[3] > 1]
    return fine[-1] if fine else spatial[-1] if spatial else outputs[-1][0]


def class_activation_maps(
    model: nn.Module,
    images: Tensor,
    classes: Sequence[int],
    method: CamMethod = "gradcam",
    target_layer: nn.Module | None = None,
) -> np.ndarray:
    """Heatmaps ``(B, len(classes), H, W)`` in [0, 1] of ``model`` (logits ``(B, K)``) for each class.

    ``images`` ``(B, C, H, W)`` are the model inputs; the model should be in eval mode.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {sorted(CAM_METHODS)}")
    layer = target_layer if target_layer is not None else find_target_layer(model, images[:1])
    maps = np.zeros((images.shape[0], len(classes), *images.shape[-2:]), dtype=np.float32)
    with CAM_METHODS[method](model=model, target_layers=[layer]) as cam:
        for column, label in enumerate(classes):
            targets = [ClassifierOutputTarget(int(label))] * images.shape[0]
            maps[:, column] = cam(input_tensor=images, targets=targets)
    return maps
