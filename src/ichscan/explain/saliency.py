"""Input-gradient saliency: how much each pixel moves a class logit (Simonyan et al. 2014).

For logit ``y_c(x)`` the vanilla map is ``max_channel |∂y_c/∂x|``; ``gradient_x_input`` is
``|Σ_channel x · ∂y_c/∂x|``. SmoothGrad (Smilkov et al. 2017) averages the gradient over ``n`` noisy
copies ``x + ε``, ``ε ~ N(0, (σ · (max x − min x))²)``, which removes much of the gradient's noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["SaliencyMode", "input_gradient_saliency"]

SaliencyMode = Literal["gradient", "gradient_x_input"]


def _class_gradient(model: nn.Module, images: Tensor, label: int) -> Tensor:
    """``∂ y_label / ∂ images`` for every image of the batch (the logits of one image depend on it only)."""
    x = images.detach().clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(x)[:, label].sum(), x)
    return gradient


def input_gradient_saliency(
    model: nn.Module,
    images: Tensor,
    classes: Sequence[int],
    mode: SaliencyMode = "gradient",
    smooth_samples: int = 0,
    noise_level: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Saliency maps ``(B, len(classes), H, W)``, each scaled to [0, 1] by its maximum.

    ``smooth_samples > 0`` turns on SmoothGrad with ``noise_level`` σ relative to each image's range;
    all noisy copies go through the model as one batch. The model should be in eval mode.
    """
    if mode not in ("gradient", "gradient_x_input"):
        raise ValueError(f"unknown saliency mode {mode!r}; choose 'gradient' or 'gradient_x_input'")
    batch = images.shape[0]
    if smooth_samples > 0:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        spread = (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3))).view(batch, 1, 1, 1)
        noise = torch.randn((smooth_samples, *images.shape), generator=generator).to(images)
        inputs = (images[None] + noise_level * spread[None] * noise).flatten(0, 1)
    else:
        inputs = images
    maps = np.zeros((batch, len(classes), *images.shape[-2:]), dtype=np.float32)
    for column, label in enumerate(classes):
        gradient = _class_gradient(model, inputs, int(label))
        gradient = gradient.view(-1, *images.shape).mean(dim=0) if smooth_samples > 0 else gradient
        if mode == "gradient":
            saliency = gradient.abs().amax(dim=1)
        else:
            saliency = (gradient * images).sum(dim=1).abs()
        peak = saliency.amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(saliency.dtype).tiny)
        maps[:, column] = (saliency / peak).detach().cpu().numpy()
    return maps
