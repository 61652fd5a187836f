"""The fused CPU window kernel, uint8 output and `out=`: against NumPy references and the torch path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ichscan.data.windows import (
    GREY_LEVELS,
    ChannelSpec,
    _fixed_windows_torch,
    apply_windows,
)

SPEC = ChannelSpec(windows=("brain", "subdural", "soft", "bone", "35.5/77"), offsets=(-1, 0, 1))


def hounsfield_batch(seed: int = 0) -> np.ndarray:
    """(3, 3, 20, 24) int16 HU: every window's edges and their neighbours, plus random values."""
    rng = np.random.default_rng(seed)
    edges = [v for w in SPEC.windows for v in (w.low, w.high, w.center)]
    special = np.array([np.floor(v) + d for v in edges for d in (-1, 0, 1)], dtype=np.int16)
    hu = rng.integers(-1100, 3100, size=(3, 3, 20, 24)).astype(np.int16)
    hu.reshape(-1)[: special.size] = special
    return hu


def numpy_reference(hu: np.ndarray, spec: ChannelSpec) -> np.ndarray:
    """float32 ``clip(x · (1/w) + (−lo/w), 0, 1)`` in NumPy, offset-major channels."""
    x = hu.astype(np.float32)
    channels = [
        np.clip(x[:, o] * np.float32(1 / w.width) + np.float32(-w.low / w.width), 0, 1)
        for o in range(len(spec.offsets)) for w in spec.windows
    ]
    return np.stack(channels, axis=1).astype(np.float32)


def test_float_kernel_is_within_one_ulp_of_numpy_and_of_the_formula() -> None:
    hu = hounsfield_batch()
    got = apply_windows(hu, SPEC)
    reference = numpy_reference(hu, SPEC)
    assert got.dtype == np.float32 and got.shape == (3, 15, 20, 24)
    assert (np.abs(got - reference) <= np.spacing(np.maximum(np.abs(reference), 1e-30))).all()
    assert got.min() == 0.0 and got.max() == 1.0
    # exact at the clamps and at the window edges
    assert ((got == 0) == (reference == 0)).all() and ((got == 1) == (reference == 1)).all()


def test_float_kernel_agrees_with_the_torch_path() -> None:
    hu = torch.from_numpy(hounsfield_batch(1))
    fast = apply_windows(hu, SPEC)
    slow = _fixed_windows_torch(hu, SPEC.windows, quantize=False)
    assert (fast - slow).abs().max().item() <= torch.finfo(torch.float32).eps


def test_uint8_is_the_nearest_grey_level_of_the_float_result() -> None:
    hu = hounsfield_batch(2)
    got = apply_windows(hu, SPEC, dtype="uint8")
    assert got.dtype == np.uint8 and got.shape == (3, 15, 20, 24)
    exact = numpy_reference(hu, SPEC).astype(np.float64) * GREY_LEVELS
    assert np.abs(got - exact).max() <= 0.5 + 1e-3
    # the nearest level wherever float32 rounding cannot tip a tie (x.5) either way
    clear = np.abs(exact - np.floor(exact) - 0.5) > 1e-3
    np.testing.assert_array_equal(got[clear], np.floor(exact[clear] + 0.5))
    # and the torch path (GPU tensors) gives the same grey levels to within one
    slow = _fixed_windows_torch(torch.from_numpy(hu), SPEC.windows, quantize=True)
    assert (torch.from_numpy(got).int() - slow.int()).abs().max().item() <= 1


def test_uint8_hand_values() -> None:
    hu = np.array([-5, 0, 20, 40, 79, 80, 500], dtype=np.int16).reshape(1, 1, 1, -1)
    got = apply_windows(hu, ChannelSpec(windows=("brain",)), dtype="uint8")  # lo 0, w 80
    # 255·x/80: 0, 0, 63.75, 127.5 (tie: up), 251.8, 255, clipped
    np.testing.assert_array_equal(got.ravel(), [0, 0, 64, 128, 252, 255, 255])


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.float32, np.float64])
def test_input_dtypes_give_the_int16_result(dtype: type) -> None:
    hu = np.clip(hounsfield_batch(3), 0, 255) if dtype is np.uint8 else hounsfield_batch(3)
    np.testing.assert_array_equal(apply_windows(hu.astype(dtype), SPEC), apply_windows(hu, SPEC))


def test_tensors_without_a_numpy_dtype_take_the_torch_path() -> None:
    hu = torch.from_numpy(hounsfield_batch(4).clip(-256, 256))  # exact in bfloat16
    got = apply_windows(hu.to(torch.bfloat16), SPEC, dtype="uint8")
    assert got.dtype == torch.uint8
    assert (got.int() - apply_windows(hu, SPEC, dtype="uint8").int()).abs().max().item() <= 1


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_out_is_filled_and_returned(dtype: str) -> None:
    hu = hounsfield_batch(5)
    expected = apply_windows(hu, SPEC, dtype=dtype)  # type: ignore[arg-type]
    out = np.full(expected.shape, 7, dtype=expected.dtype)
    assert apply_windows(hu, SPEC, dtype=dtype, out=out) is out  # type: ignore[arg-type]
    np.testing.assert_array_equal(out, expected)
    tensor_out = torch.empty(expected.shape, dtype=getattr(torch, dtype))
    assert apply_windows(torch.from_numpy(hu), SPEC, dtype=dtype, out=tensor_out) is tensor_out  # type: ignore[arg-type]
    np.testing.assert_array_equal(tensor_out.numpy(), expected)
    single = np.empty(expected.shape[1:], dtype=expected.dtype)  # one stack (O, H, W)
    apply_windows(hu[1], SPEC, dtype=dtype, out=single)  # type: ignore[arg-type]
    np.testing.assert_array_equal(single, expected[1])


def test_out_with_minmax_and_uint8() -> None:
    hu = hounsfield_batch(6)
    spec = ChannelSpec(windows=("brain", "bone"), normalize="minmax")
    floats = apply_windows(hu[:, :1], spec)
    out = np.empty(floats.shape, dtype=np.uint8)
    apply_windows(hu[:, :1], spec, dtype="uint8", out=out)
    np.testing.assert_array_equal(out, np.floor(floats.astype(np.float64) * GREY_LEVELS + 0.5))


def test_bad_out_and_dtype_are_refused() -> None:
    hu = hounsfield_batch(7)
    with pytest.raises(ValueError, match="out must be"):
        apply_windows(hu, SPEC, out=np.empty((3, 15, 20, 24), dtype=np.uint8))
    with pytest.raises(ValueError, match="out must be"):
        apply_windows(hu, SPEC, out=np.empty((3, 14, 20, 24), dtype=np.float32))
    with pytest.raises(ValueError, match="dtype must be"):
        apply_windows(hu, SPEC, dtype="float16")  # type: ignore[arg-type]
