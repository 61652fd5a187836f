"""Input-gradient saliency against gradients computed by hand for linear models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ichscan.explain import input_gradient_saliency

torch.set_num_threads(1)


def linear_model(weight: torch.Tensor) -> nn.Module:
    """logit_c = Σ_{k,i,j} W_c[k, i, j] · x[k, i, j]: the gradient of class c is W_c exactly."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight[0].numel(), weight.shape[0], bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weight.flatten(1))
    return model.eval()


def test_vanilla_gradient_is_max_abs_weight_over_channels() -> None:
    torch.manual_seed(0)
    weight = torch.randn(3, 2, 5, 4)
    images = torch.randn(2, 2, 5, 4)
    maps = input_gradient_saliency(linear_model(weight), images, classes=[0, 2])
    for column, c in enumerate([0, 2]):
        expected = weight[c].abs().amax(dim=0)
        expected = (expected / expected.max()).numpy()
        np.testing.assert_allclose(maps[0, column], expected, rtol=1e-5)
        np.testing.assert_allclose(maps[1, column], expected, rtol=1e-5)


def test_gradient_times_input_by_hand() -> None:
    weight = torch.tensor([[[[1.0, -2.0]], [[3.0, 0.5]]]])  # (1 class, 2 channels, 1, 2)
    images = torch.tensor([[[[2.0, 1.0]], [[1.0, 4.0]]]])
    maps = input_gradient_saliency(linear_model(weight), images, [0], mode="gradient_x_input")
    # pixel 0: 1·2 + 3·1 = 5; pixel 1: −2·1 + 0.5·4 = 0
    np.testing.assert_allclose(maps[0, 0, 0], [1.0, 0.0], atol=1e-6)


def test_smoothgrad_of_a_linear_model_equals_vanilla_and_is_seeded() -> None:
    torch.manual_seed(0)
    weight = torch.randn(1, 1, 6, 6)
    model = linear_model(weight)
    images = torch.randn(3, 1, 6, 6)
    vanilla = input_gradient_saliency(model, images, [0])
    smooth = input_gradient_saliency(model, images, [0], smooth_samples=4, noise_level=0.2)
    np.testing.assert_allclose(smooth, vanilla, rtol=1e-5)

    relu_model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(144, 2)).eval()
    first = input_gradient_saliency(relu_model, images, [1], smooth_samples=5, seed=3)
    again = input_gradient_saliency(relu_model, images, [1], smooth_samples=5, seed=3)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, input_gradient_saliency(relu_model, images, [1]))


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown saliency mode"):
        input_gradient_saliency(linear_model(torch.ones(1, 1, 2, 2)), torch.ones(1, 1, 2, 2), [0], mode="x")  # type: ignore[arg-type]
