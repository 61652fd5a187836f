"""Backbone registry, `create_model`, embeddings and channels_last."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from ichscan.models import (
    BACKBONES,
    create_model,
    embed,
    embedding_dim,
    min_input_size,
    num_params,
    resolve_backbone,
    to_channels_last,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_every_registered_name_is_a_timm_model() -> None:
    for name, spec in BACKBONES.items():
        assert timm.is_model(spec.timm_name), name
        assert resolve_backbone(name) == spec.timm_name


def test_registry_covers_the_seeds_backbones() -> None:
    required = {
        "resnet18", "resnet34", "resnet50", "resnext50_32x4d", "seresnext50_32x4d", "seresnet50",
        "densenet121", "dpn68", "dpn92", "vgg16", "inception_v3", "xception", "mobilenetv2_100",
        "efficientnet_b0", "efficientnet_b2", "efficientnet_b3",
    }
    assert required <= set(BACKBONES)
    # Keras' networks of seed 003: VGG16 without batch norm, Chollet's original Xception.
    assert BACKBONES["vgg16"].timm_name == "vgg16"
    assert BACKBONES["xception"].timm_name == "legacy_xception"


def test_timm_names_pass_through_and_unknown_names_fail_with_a_hint() -> None:
    assert resolve_backbone("resnet10t") == "resnet10t"
    with pytest.raises(ValueError, match="resnet50"):
        resolve_backbone("resnet5O")


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_each_backbone_builds_and_runs_forward(name: str) -> None:
    """One tiny forward per registered backbone: (2, 3, S, S) → (2, 6) finite logits, S = its minimum."""
    size = min_input_size(name)
    model = create_model(name, in_chans=3).eval()
    with torch.no_grad():
        x = torch.rand(2, 3, size, size)
        logits = model(x)
        embedding = embed(model, x)
    assert logits.shape == (2, 6)
    assert torch.isfinite(logits).all()
    assert embedding.shape == (2, embedding_dim(model))
    # The embedding is the classifier's input: logits = head(embedding) (DPN's head is a 1×1 conv).
    head = model.get_classifier()
    head_input = embedding[:, :, None, None] if isinstance(head, nn.Conv2d) else embedding
    assert torch.allclose(head(head_input).flatten(1), logits, atol=1e-4)


@pytest.mark.parametrize(("name", "in_chans"), [("resnet18", 1), ("resnet18", 9), ("efficientnet_b0", 9),
                                                ("densenet121", 1)])
def test_any_number_of_input_channels(name: str, in_chans: int) -> None:
    model = create_model(name, in_chans=in_chans, num_classes=4).eval()
    with torch.no_grad():
        out = model(torch.rand(2, in_chans, 64, 64))
    assert out.shape == (2, 4)


def test_num_params_matches_a_hand_count_and_trainable_filter() -> None:
    model = create_model("resnet18", in_chans=3)
    by_hand = sum(p.numel() for p in model.parameters())
    assert num_params(model) == by_hand
    # ResNet-18 with a 6-way head: 11,176,512 backbone weights (ImageNet 11,689,512 − 513,000 head)
    # + 512·6 + 6 head weights.
    assert num_params(model) == 11_689_512 - 513_000 + 512 * 6 + 6
    model.fc.requires_grad_(False)
    assert num_params(model, trainable_only=True) == by_hand - (512 * 6 + 6)


def test_drop_rate_and_timm_keywords_reach_the_model() -> None:
    model = create_model("resnet18", in_chans=3, drop_rate=0.3, global_pool="max")
    assert model.drop_rate == pytest.approx(0.3)
    assert model.global_pool.pool_type == "max"


def test_registered_keywords_shape_the_network_and_callers_can_override_them() -> None:
    half = create_model("resnet18_half", in_chans=9)
    full = create_model("resnet18", in_chans=9)
    assert [half.layer1[0].conv1.out_channels, half.layer4[0].conv1.out_channels] == [32, 256]
    assert embedding_dim(half) == 256 and half(torch.zeros(2, 9, 64, 64)).shape == (2, 6)
    # the convolutions of stages 1–4 have half the width, so about a quarter of the weights
    assert 0.2 < num_params(half) / num_params(full) < 0.3
    wider = create_model("resnet18_half", in_chans=9, channels=(64, 128, 256, 512))
    assert num_params(wider) == num_params(full)


def test_channels_last_keeps_the_outputs() -> None:
    torch.manual_seed(0)
    model = create_model("resnet18", in_chans=3).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        converted = to_channels_last(model)
        out = converted(x.contiguous(memory_format=torch.channels_last))
    assert converted.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, reference, atol=1e-4)
    built = create_model("resnet18", in_chans=3, channels_last=True)
    assert built.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_inception_needs_its_minimum_input_size() -> None:
    assert min_input_size("inception_v3") == 75
    assert min_input_size("tf_inception_v3") == 75
    assert min_input_size("resnet10t") == 32
    model = create_model("inception_v3", in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 1, 75, 75)).shape == (1, 6)
        with pytest.raises(RuntimeError):
            model(torch.rand(1, 1, 64, 64))


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="in_chans"):
        create_model("resnet18", in_chans=0)
    with pytest.raises(ValueError, match="unknown backbone"):
        create_model("not-a-network", in_chans=3)
