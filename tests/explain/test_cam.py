"""Grad-CAM / Grad-CAM++ through the grad-cam package, and the automatic target layer."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from torch import nn

from ichscan.explain import class_activation_maps, find_target_layer

torch.set_num_threads(1)


def test_target_layer_is_last_stage_with_a_map_of_at_least_4_pixels_a_side() -> None:
    resnet = timm.create_model("resnet18", num_classes=6).eval()
    effnet = timm.create_model("efficientnet_b0", num_classes=6).eval()
    usual = torch.randn(1, 3, 128, 128)  # stride 32: 4×4 after the last stage
    assert find_target_layer(resnet, usual) is resnet.layer4
    assert find_target_layer(effnet, usual) is effnet.bn2
    small = torch.randn(1, 3, 64, 64)  # last stage 2×2: one stage earlier (4×4)
    assert find_target_layer(resnet, small) is resnet.layer3
    assert find_target_layer(resnet, small, min_side=2) is resnet.layer4
    tiny = torch.randn(1, 3, 32, 32)  # layer2 is 4×4, layer3 2×2
    assert find_target_layer(resnet, tiny) is resnet.layer2


class SpotNet(nn.Module):
    """Class c's logit is the global max-pool of channel c of a 1×1 conv: the hot pixel decides."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(2, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        self.pool = nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_cam_peaks_on_the_pixel_driving_each_class(method: str) -> None:
    images = torch.zeros(2, 2, 16, 16)
    images[:, 0, 3, 4] = 5.0  # class 0 is driven by (3, 4)
    images[:, 1, 12, 9] = 5.0  # class 1 by (12, 9)
    images[1, 1, 12, 9] = 7.0
    model = SpotNet().eval()
    maps = class_activation_maps(model, images, classes=[0, 1], method=method)  # type: ignore[arg-type]
    assert maps.shape == (2, 2, 16, 16)
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    for b in range(2):
        assert np.unravel_index(maps[b, 0].argmax(), (16, 16)) == (3, 4)
        assert np.unravel_index(maps[b, 1].argmax(), (16, 16)) == (12, 9)


def test_cam_on_timm_resnet_shapes() -> None:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=6, in_chans=3).eval()
    maps = class_activation_maps(model, torch.randn(2, 3, 32, 32), classes=[0, 5])
    assert maps.shape == (2, 2, 32, 32)
    assert np.isfinite(maps).all()


def test_unknown_cam_method() -> None:
    with pytest.raises(ValueError, match="unknown CAM method"):
        class_activation_maps(SpotNet(), torch.zeros(1, 2, 4, 4), [0], method="scorecam")  # type: ignore[arg-type]
