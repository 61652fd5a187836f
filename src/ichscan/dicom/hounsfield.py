"""Stored pixel values → Hounsfield units, with the RSNA 12-bit fix.

HU = stored × RescaleSlope + RescaleIntercept (the DICOM Modality LUT, PS3.3 C.11.1).

Choices, and why:

* **RSNA 12-bit defect.** Some RSNA files have BitsStored 12, PixelRepresentation 0 and
  RescaleIntercept > −100 although their values are 12-bit two's complement (air −1000 is stored
  as 3096). The community fix, reproduced exactly: ``s' = s + 1000``; ``s' -= 4096`` where
  ``s' ≥ 4096``; intercept := −1000 (the slope is kept). For slope 1 this is
  ``HU = ((s + 1000) mod 4096) − 1000``.
* **MONOCHROME1.** The photometric interpretation is a *display* instruction: PS3.3 C.7.6.3.1.2
  says the minimum value is shown white "after any VOI gray scale transformations", i.e. after
  the Modality LUT that yields HU. A conformant MONOCHROME1 CT therefore already gives correct HU
  from the rescale (air stays −1000), and inverting it would turn air into bone. By default
  MONOCHROME1 is thus *not* inverted. ``invert_monochrome1=True`` handles non-conformant exports
  that inverted the stored values but kept the original rescale: the inversion is then done in
  stored-value space, before the rescale (``s' = s_min + s_max − s`` over the BitsStored range:
  ``2^b − 1 − s`` unsigned, ``−1 − s`` signed).
* **Unused bits.** Values are masked (unsigned) or sign-extended (signed) to BitsStored, as
  pydicom does (PS3.5 8.1.1: unused high bits carry no meaning).
* **Clipping.** HU are clipped to ``[−1024, 32767]``. Nothing physical is below air (−1000);
  padding outside the field of view (−2000, −3024, …) becomes air so that resizing does not drag
  the skin edge down. The top is the int16 maximum, so dense bone and metal keep their values.

Uncompressed 16-bit little- and big-endian slices are read straight from the Pixel Data bytes with
`np.frombuffer`; every other case (JPEG-LS, JPEG 2000, RLE, JPEG lossless, 8-bit, …) goes through
pydicom's `pixel_array` and its pylibjpeg / pyjpegls plugins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ichscan.dicom.limits import DEFAULT_LIMITS, PixelLimits

HU_MIN: Final[int] = -1024
HU_MAX: Final[int] = int(np.iinfo(np.int16).max)

RSNA_FIX_BITS_STORED: Final[int] = 12
RSNA_FIX_OFFSET: Final[int] = 1000
RSNA_FIX_MODULUS: Final[int] = 4096
RSNA_FIX_INTERCEPT: Final[float] = -1000.0
RSNA_FIX_MIN_INTERCEPT: Final[float] = -100.0

# Missing RescaleSlope/RescaleIntercept: the usual CT convention 1 / −1024, applied only when the
# stored values prove it (`default_rescale_refusal`): unsigned, at most 12 bits of values (≤ 4095,
# so HU ≤ 3071) and air where air must be (a head slice is surrounded by air: at least
# `DEFAULT_RESCALE_MIN_AIR` of its pixels stored at ≤ `DEFAULT_RESCALE_AIR_STORED`, i.e. ≤ −924 HU).
DEFAULT_RESCALE: Final[tuple[float, float]] = (1.0, -1024.0)
DEFAULT_RESCALE_AIR_STORED: Final[int] = 100
DEFAULT_RESCALE_MIN_AIR: Final[float] = 0.05
DEFAULT_RESCALE_MAX_STORED: Final[int] = 4095

# Uncompressed transfer syntaxes whose Pixel Data bytes can be viewed directly: byte order.
_NATIVE_BYTE_ORDER: Final[dict[str, str]] = {
    ExplicitVRLittleEndian: "<",
    ImplicitVRLittleEndian: "<",
    DeflatedExplicitVRLittleEndian: "<",  # pydicom inflates the whole dataset when reading
    ExplicitVRBigEndian: ">",
}


@overload
def needs_rsna_fix(
    bits_stored: int, pixel_representation: int, rescale_intercept: float
) -> bool: ...
@overload
def needs_rsna_fix(
    bits_stored: ArrayLike, pixel_representation: ArrayLike, rescale_intercept: ArrayLike
) -> bool | NDArray[np.bool_]: ...
def needs_rsna_fix(
    bits_stored: ArrayLike, pixel_representation: ArrayLike, rescale_intercept: ArrayLike
) -> bool | NDArray[np.bool_]:
    """True where the RSNA 12-bit defect applies: BitsStored 12, unsigned, intercept > −100.

    Works on scalars (returns `bool`) and on arrays or manifest columns (returns a bool array).
    """
    result = (
        (np.asarray(bits_stored) == RSNA_FIX_BITS_STORED)
        & (np.asarray(pixel_representation) == 0)
        & (np.asarray(rescale_intercept, dtype=np.float64) > RSNA_FIX_MIN_INTERCEPT)
    )
    return bool(result) if result.ndim == 0 else result


@dataclass(frozen=True)
class PixelFormat:
    """The tags that say how to turn a slice's Pixel Data into HU, read once."""

    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    slope: float | None  # None: RescaleSlope and RescaleIntercept absent (see DEFAULT_RESCALE)
    intercept: float | None
    transfer_syntax: str | None


def _required(ds: Dataset, keyword: str) -> int:
    value = ds.get(keyword)
    if value in (None, ""):
        raise ValueError(f"lacks {keyword}")
    return int(value)


def pixel_format(ds: Dataset, limits: PixelLimits = DEFAULT_LIMITS) -> PixelFormat:
    """Read the pixel-describing tags; ValueError naming what is missing, unsupported or beyond
    `limits` (checked here too, so a data set from anywhere, e.g. the network, is bounded before
    it is decoded)."""
    if "PixelData" not in ds:
        raise ValueError("no Pixel Data")
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    if frames != 1:
        raise ValueError(f"multi-frame image ({frames} frames), expected one slice per file")
    if samples != 1:
        raise ValueError(f"{samples} samples per pixel, expected a greyscale image")
    bits_allocated = _required(ds, "BitsAllocated")
    rows, columns = _required(ds, "Rows"), _required(ds, "Columns")
    decoded = limits.check_geometry(rows, columns, bits_allocated, frames, samples)
    slope, intercept = rescale_of(ds)
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if syntax is not None and str(syntax) not in _NATIVE_BYTE_ORDER:
        limits.check_encapsulated_length(len(ds.PixelData), decoded)
    return PixelFormat(
        rows=rows,
        columns=columns,
        bits_allocated=bits_allocated,
        bits_stored=int(ds.get("BitsStored") or bits_allocated),
        pixel_representation=_required(ds, "PixelRepresentation"),
        photometric_interpretation=str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        .strip()
        .upper(),
        slope=slope,
        intercept=intercept,
        transfer_syntax=str(syntax) if syntax is not None else None,
    )


def stored_values(ds: Dataset, layout: PixelFormat | None = None) -> NDArray[np.integer]:
    """The 2-D array of stored values of a single-frame slice (no rescale, no inversion).

    Raises `ValueError` with the reason when the pixel data are missing, truncated, multi-frame,
    colour, or cannot be decoded.
    """
    layout = layout or pixel_format(ds)
    rows, columns = layout.rows, layout.columns
    bits_allocated, bits_stored = layout.bits_allocated, layout.bits_stored
    signed = layout.pixel_representation == 1
    syntax = layout.transfer_syntax
    byte_order = _NATIVE_BYTE_ORDER.get(syntax) if syntax is not None else None

    if byte_order is not None and bits_allocated == 16:
        needed = rows * columns * 2
        data = ds.PixelData
        if len(data) < needed:
            raise ValueError(f"Pixel Data has {len(data)} bytes, expected {needed} (truncated)")
        dtype = np.dtype(np.int16 if signed else np.uint16)
        values = np.frombuffer(data, dtype=dtype.newbyteorder(byte_order), count=rows * columns)
        return keep_stored_bits(values.reshape(rows, columns), bits_stored, signed)

    try:
        values = ds.pixel_array
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as error:  # noqa: BLE001 - pydicom raises many types, and the Rust
        # decoders' PyO3 panics (e.g. on damaged RLE) derive from BaseException: all mean "bad file"
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"cannot decode pixel data ({syntax}): {type(error).__name__}: {reason}") from error
    if values.shape != (rows, columns):
        raise ValueError(f"decoded pixel array has shape {values.shape}, expected {(rows, columns)}")
    return keep_stored_bits(values, bits_stored, signed)


def keep_stored_bits(
    values: NDArray[np.integer], bits_stored: int, signed: bool, out: NDArray[np.integer] | None = None
) -> NDArray[np.integer]:
    """Values reduced to their low `bits_stored` bits: masked if unsigned, sign-extended if signed.

    A no-op when the stored bits fill the container. Returns native byte order when it works.
    `out` (may be `values` itself, for in place) receives the result.
    """
    container = values.dtype.itemsize * 8
    if bits_stored >= container:
        if out is None:
            return values
        np.copyto(out, values)
        return out
    if not signed:  # one pass, native order
        return np.bitwise_and(values, values.dtype.type((1 << bits_stored) - 1), out=out)
    shift = container - bits_stored  # shift up, then arithmetic shift down: sign-extends bit b−1
    shifted = np.left_shift(values, shift, out=out)
    np.right_shift(shifted, shift, out=shifted)
    return shifted


def hounsfield_from_stored(
    stored: NDArray[np.integer],
    *,
    slope: float,
    intercept: float,
    bits_stored: int,
    pixel_representation: int,
    invert: bool = False,
    clip: tuple[int, int] = (HU_MIN, HU_MAX),
    out: NDArray[np.int16] | None = None,
) -> NDArray[np.int16]:
    """HU = stored × slope + intercept on any array of stored values, as int16.

    Applies, in order: the optional stored-value inversion (``s_min + s_max − s``), the RSNA
    12-bit fix (when `needs_rsna_fix`), the rescale (integer arithmetic when slope is 1 and the
    intercept integral, else float64 then rounding to nearest), and clipping to `clip`. The
    result is written to `out` when given (e.g. one slice of a preallocated volume).
    """
    stored = np.asarray(stored)
    low = -(1 << (bits_stored - 1)) if pixel_representation else 0
    high = (1 << (bits_stored - 1)) - 1 if pixel_representation else (1 << bits_stored) - 1
    rsna_fix = needs_rsna_fix(bits_stored, pixel_representation, intercept)
    int16 = np.iinfo(np.int16)
    if (
        slope == 1.0
        and float(intercept).is_integer()
        and not (invert or rsna_fix)
        and stored.dtype.itemsize <= 2
        and int16.min <= low + intercept
        and high + intercept <= int16.max
    ):
        # every possible HU fits int16: add and clip in place in int16 (the common CT case)
        if out is None:
            out = np.empty(stored.shape, dtype=np.int16)
        # unsigned values below 2^15 have the same bits as int16: view them, no conversion pass
        as_int16 = stored.view(np.int16) if stored.dtype == np.dtype(np.uint16) else stored
        np.add(as_int16, np.int16(intercept), out=out, casting="unsafe")
        if clip[0] <= low + intercept and high + intercept <= clip[1]:
            return out  # every storable value lands inside `clip`: clipping would change nothing
        # typed bounds: with Python ints NumPy 2 takes a ~20× slower clip loop
        return np.clip(out, np.int16(clip[0]), np.int16(clip[1]), out=out)
    wide = np.int32 if np.can_cast(stored.dtype, np.int32) else np.int64
    values = stored.astype(wide)  # plain same-type loops below are the fast ones
    if invert:
        np.subtract(wide(low + high), values, out=values)
    if rsna_fix:
        values += RSNA_FIX_OFFSET
        values -= RSNA_FIX_MODULUS * (values >= RSNA_FIX_MODULUS)
        intercept = RSNA_FIX_INTERCEPT
    if slope == 1.0 and float(intercept).is_integer():
        values += wide(intercept)
        hounsfield: NDArray[np.signedinteger] | NDArray[np.float64] = values
    else:
        hounsfield = values * float(slope)
        hounsfield += float(intercept)
        np.rint(hounsfield, out=hounsfield)
    bound = hounsfield.dtype.type
    np.clip(hounsfield, bound(clip[0]), bound(clip[1]), out=hounsfield)
    if out is None:
        return hounsfield.astype(np.int16)
    np.copyto(out, hounsfield, casting="unsafe")
    return out


def rescale_of(ds: Dataset) -> tuple[float, float] | tuple[None, None]:
    """(RescaleSlope, RescaleIntercept); (None, None) when both are absent (then
    `default_rescale_refusal` decides); ValueError when only one is present."""
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    absent = slope in (None, ""), intercept in (None, "")
    if all(absent):
        return None, None
    if any(absent):
        raise ValueError(f"lacks {'RescaleSlope' if absent[0] else 'RescaleIntercept'} (the other is present)")
    return float(slope), float(intercept)


def default_rescale_refusal(stored: NDArray[np.integer], pixel_representation: int) -> str | None:
    """None when the stored values prove the 1 / −1024 default rescale of a CT slice without
    RescaleSlope/RescaleIntercept (see `DEFAULT_RESCALE`); else why it is refused, one line."""
    if pixel_representation != 0:
        return "RescaleSlope/RescaleIntercept absent and the stored values are signed (no default applies)"
    if stored.size == 0:
        return "RescaleSlope/RescaleIntercept absent and no pixels"
    highest = int(stored.max())
    if highest > DEFAULT_RESCALE_MAX_STORED:
        return (f"RescaleSlope/RescaleIntercept absent and stored values reach {highest} "
                f"(the 1/-1024 default needs 12-bit values, at most {DEFAULT_RESCALE_MAX_STORED})")
    air = float(np.count_nonzero(stored <= DEFAULT_RESCALE_AIR_STORED)) / stored.size
    if air < DEFAULT_RESCALE_MIN_AIR:
        return (f"RescaleSlope/RescaleIntercept absent and only {air:.1%} of pixels are at air "
                f"(stored <= {DEFAULT_RESCALE_AIR_STORED}); the 1/-1024 default is not proven")
    return None


def to_hounsfield(
    ds: Dataset,
    *,
    invert_monochrome1: bool = False,
    clip: tuple[int, int] = (HU_MIN, HU_MAX),
    out: NDArray[np.int16] | None = None,
    limits: PixelLimits = DEFAULT_LIMITS,
) -> NDArray[np.int16]:
    """Hounsfield units of one CT slice as an int16 ``(rows, columns)`` array (into `out`).

    stored × RescaleSlope + RescaleIntercept with the RSNA 12-bit fix; MONOCHROME1 is inverted
    only with ``invert_monochrome1=True`` (see the module docstring for why). Without
    RescaleSlope/RescaleIntercept the 1/−1024 default applies only when the stored values prove it
    (`default_rescale_refusal`). Raises `ValueError` with a one-line reason when the pixels cannot
    be read or exceed `limits`.
    """
    layout = pixel_format(ds, limits)
    stored = stored_values(ds, layout)
    slope, intercept = layout.slope, layout.intercept
    if slope is None or intercept is None:
        refusal = default_rescale_refusal(stored, layout.pixel_representation)
        if refusal is not None:
            raise ValueError(refusal)
        slope, intercept = DEFAULT_RESCALE
    return hounsfield_from_stored(
        stored,
        slope=slope,
        intercept=intercept,
        bits_stored=layout.bits_stored,
        pixel_representation=layout.pixel_representation,
        invert=invert_monochrome1 and layout.photometric_interpretation == "MONOCHROME1",
        clip=clip,
        out=out,
    )
