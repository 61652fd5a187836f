"""Backbones initialised from local weights files: channel adaptation, classifier, layouts, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import timm.models._builder as timm_builder
import torch
import torchvision
from safetensors.torch import save_file

from ichscan.models import WeightsError, create_model


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to download weights fails the test."""
    torch.set_num_threads(1)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(timm_builder, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(timm_builder, "load_state_dict_from_hf", refuse)
    monkeypatch.setattr(timm_builder, "download_cached_file", refuse)


@pytest.fixture(scope="module")
def imagenet_resnet18() -> torch.nn.Module:
    """A timm ResNet-18 with a 1000-way head and non-trivial weights, standing in for ImageNet ones."""
    torch.manual_seed(123)
    return timm.create_model("resnet18", num_classes=1000)


def _same_backbone(model: torch.nn.Module, source: torch.nn.Module, skip: set[str]) -> bool:
    source_state = source.state_dict()
    return all(
        torch.equal(value, source_state[key]) for key, value in model.state_dict().items() if key not in skip
    )


def test_timm_weights_load_with_rgb_input_and_a_new_head(tmp_path: Path, imagenet_resnet18: torch.nn.Module) -> None:
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet_resnet18.state_dict(), path)
    model = create_model("resnet18", in_chans=3, pretrained=True, weights_path=path)
    assert _same_backbone(model, imagenet_resnet18, skip={"fc.weight", "fc.bias"})
    assert model.fc.weight.shape == (6, 512)


def test_first_conv_is_summed_for_one_channel_and_tiled_for_nine(
    tmp_path: Path, imagenet_resnet18: torch.nn.Module
) -> None:
    path = tmp_path / "resnet18.safetensors"
    save_file(imagenet_resnet18.state_dict(), str(path))
    rgb = imagenet_resnet18.conv1.weight.detach()  # (64, 3, 7, 7)

    mono = create_model("resnet18", in_chans=1, weights_path=path)
    assert torch.allclose(mono.conv1.weight, rgb.sum(dim=1, keepdim=True), atol=1e-6)

    nine = create_model("resnet18", in_chans=9, weights_path=path)
    expected = torch.cat([rgb, rgb, rgb], dim=1) * (3 / 9)  # RGB repeated, scaled to keep activations
    assert torch.allclose(nine.conv1.weight, expected, atol=1e-6)
    assert _same_backbone(nine, imagenet_resnet18, skip={"conv1.weight", "fc.weight", "fc.bias"})


def test_matching_head_is_kept_from_a_wrapped_checkpoint(tmp_path: Path) -> None:
    """A six-class model saved inside a Lightning-style checkpoint (``state_dict`` + ``model.`` prefix)."""
    torch.manual_seed(5)
    trained = timm.create_model("resnet18", num_classes=6, in_chans=2)
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}, "epoch": 3}, path)
    model = create_model("resnet18", in_chans=2, weights_path=path)
    assert _same_backbone(model, trained, skip=set())


def test_headless_backbone_file_loads(tmp_path: Path) -> None:
    """SimCLR-style backbones are saved without a classifier; the head then starts random."""
    torch.manual_seed(9)
    headless = timm.create_model("resnet18", num_classes=0, in_chans=3)
    path = tmp_path / "backbone.pth"
    torch.save(headless.state_dict(), path)
    model = create_model("resnet18", in_chans=3, weights_path=path)
    assert _same_backbone(model, headless, skip={"fc.weight", "fc.bias"})


def test_torchvision_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(2)
    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18-torchvision.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("resnet18", in_chans=3, num_classes=1000, weights_path=path).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference.eval()(x), atol=1e-4)


def test_weights_of_another_architecture_are_refused(tmp_path: Path, imagenet_resnet18: torch.nn.Module) -> None:
    """timm loads non-strictly when it drops the head; ResNet-18 weights must not half-fill a ResNet-34."""
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet_resnet18.state_dict(), path)
    with pytest.raises(WeightsError, match=r"resnet18\.pth.*resnet34.*no values for layer1\.2"):
        create_model("resnet34", in_chans=3, weights_path=path)
    with pytest.raises(WeightsError, match="do not fit backbone 'efficientnet_b0'"):
        create_model("efficientnet_b0", in_chans=3, weights_path=path)


def test_missing_unreadable_and_absent_weights(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="pretrained=True needs weights_path"):
        create_model("resnet18", in_chans=3, pretrained=True)
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match=r"nope\.pth: no such weights file"):
        create_model("resnet18", in_chans=3, weights_path=missing)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match=r"corrupt\.pth: not a readable weights file"):
        create_model("resnet18", in_chans=3, weights_path=corrupt)
