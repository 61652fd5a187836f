"""Windows: hand-computed values, NumPy ≡ torch, channel order, min-max, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ichscan.data.windows import WINDOWS, ChannelSpec, Window, apply_windows

HU = np.array([-1000, -150, -20, 0, 20, 30, 40, 60, 80, 600, 1000, 3000], dtype=np.int16)


def one_slice(values: np.ndarray) -> np.ndarray:
    """(1, 1, 1, n) batch of one slice holding `values`."""
    return values.reshape(1, 1, 1, -1)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # brain 40/80: lo = 0, hi = 80
        ("brain", [0, 0, 0, 0, 0.25, 0.375, 0.5, 0.75, 1, 1, 1, 1]),
        # subdural 80/200: lo = -20, hi = 180
        ("subdural", [0, 0, 0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 1, 1, 1]),
        # soft 40/380: lo = -150, hi = 230
        ("soft", [0, 0, 130 / 380, 150 / 380, 170 / 380, 180 / 380, 190 / 380, 210 / 380,
                  230 / 380, 1, 1, 1]),
        # bone 600/2800: lo = -800, hi = 2000
        ("bone", [0, 650 / 2800, 780 / 2800, 800 / 2800, 820 / 2800, 830 / 2800, 840 / 2800,
                  860 / 2800, 880 / 2800, 0.5, 1800 / 2800, 1]),
        # stroke 40/40: lo = 20, hi = 60
        ("stroke", [0, 0, 0, 0, 0, 0.25, 0.5, 1, 1, 1, 1, 1]),
    ],
)
def test_named_windows_match_hand_values(name: str, expected: list[float]) -> None:
    out = apply_windows(one_slice(HU), ChannelSpec(windows=(name,)))
    assert out.dtype == np.float32 and out.shape == (1, 1, 1, len(HU))
    np.testing.assert_allclose(out.ravel(), expected, atol=1e-6)


def test_numpy_and_torch_give_identical_results() -> None:
    rng = np.random.default_rng(0)
    hu = rng.integers(-1200, 3200, size=(4, 3, 16, 16)).astype(np.int16)
    spec = ChannelSpec(windows=("brain", "subdural", "bone", "35.5/77"), offsets=(-1, 0, 1))
    from_numpy = apply_windows(hu, spec)
    from_torch = apply_windows(torch.from_numpy(hu), spec)
    assert isinstance(from_numpy, np.ndarray) and isinstance(from_torch, torch.Tensor)
    np.testing.assert_array_equal(from_numpy, from_torch.numpy())
    # the formula written out independently: (clip(x, lo, hi) - lo) / w
    for channel, (offset, window) in enumerate(
        (o, w) for o in range(3) for w in spec.windows
    ):
        lo, hi = window.center - window.width / 2, window.center + window.width / 2
        reference = (np.clip(hu[:, offset].astype(np.float64), lo, hi) - lo) / window.width
        np.testing.assert_allclose(from_numpy[:, channel], reference, atol=1e-6)


def test_channel_order_is_offset_major() -> None:
    # offsets hold constant HU 10, 40, 70; brain maps them to 0.125, 0.5, 0.875
    hu = np.stack([np.full((4, 4), v, dtype=np.int16) for v in (10, 40, 70)])[None]
    spec = ChannelSpec(windows=("brain", "subdural", "soft"), offsets=(-1, 0, 1))
    out = apply_windows(hu, spec)
    assert out.shape == (1, 9, 4, 4) and spec.n_channels == 9
    expected = [
        (v - w.low) / w.width for v in (10, 40, 70) for w in spec.windows
    ]
    np.testing.assert_allclose(out[0, :, 0, 0], expected, atol=1e-6)
    assert spec.channel_names[:4] == ["s-1:brain", "s-1:subdural", "s-1:soft", "s:brain"]


def test_minmax_rescales_each_channel_and_guards_constant_images() -> None:
    rng = np.random.default_rng(1)
    hu = rng.integers(0, 60, size=(2, 1, 8, 8)).astype(np.int16)
    hu[1] = 25  # constant image
    out = apply_windows(hu, ChannelSpec(windows=("brain", "bone"), normalize="minmax"))
    fixed = apply_windows(hu, ChannelSpec(windows=("brain", "bone")))
    for channel in range(2):
        plane = fixed[0, channel].astype(np.float64)
        reference = (plane - plane.min()) / (plane.max() - plane.min())
        np.testing.assert_allclose(out[0, channel], reference, atol=1e-6)
        assert out[0, channel].min() == 0.0 and out[0, channel].max() == pytest.approx(1.0)
    assert np.all(out[1] == 0.0) and np.isfinite(out).all()


def test_single_stack_and_shape_errors() -> None:
    spec = ChannelSpec(windows="brain,subdural", offsets=(-1, 0, 1))
    stack = np.zeros((3, 5, 5), dtype=np.int16)
    assert apply_windows(stack, spec).shape == (6, 5, 5)
    with pytest.raises(ValueError, match="3 slice offsets"):
        apply_windows(np.zeros((2, 1, 5, 5), dtype=np.int16), spec)


def test_window_parsing_and_validation() -> None:
    assert Window.parse("brain") == Window(*WINDOWS["brain"])
    assert Window.parse(" 50 / 100 ") == Window(50, 100)
    assert Window.parse((-600, 1500)).low == -1350
    assert Window.parse("80/200").name == "subdural"
    with pytest.raises(ValueError, match="unknown window 'brian'"):
        ChannelSpec(windows=("brian",))
    with pytest.raises(ValueError, match="width"):
        Window(40, 0)
    with pytest.raises(ValueError, match="normalize"):
        ChannelSpec(normalize="zscore")  # type: ignore[arg-type]


def test_spec_round_trips_through_json() -> None:
    spec = ChannelSpec(windows=("brain", (60, 100)), offsets=(-2, 0, 2), normalize="minmax")
    dumped = spec.model_dump()
    assert dumped["windows"] == ["brain", "60/100"]
    assert ChannelSpec.model_validate_json(spec.model_dump_json()) == spec
