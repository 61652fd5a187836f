"""Limits checked before anything a header declares is allocated or decoded.

A DICOM header is a claim, not a fact: a file of a few kilobytes can declare 65535 × 65535 pixels
(8 GiB once decoded), a deflated data set can inflate to gigabytes, a valid slice can be followed
by gigabytes of trailing bytes. `PixelLimits` is the one typed set of bounds every reader checks
(`ichscan index`, `prepare`, `predict` and the network receiver of `serve`), each failure a
`LimitError` whose one-line message names the limit. The defaults hold any CT slice seen in
practice (512² to 1024², 2048² micro-CT) with room to spare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MIB: Final[int] = 1 << 20


class LimitError(ValueError):
    """The input exceeds a `PixelLimits` bound (or its declared size is implausible)."""


@dataclass(frozen=True)
class PixelLimits:
    """Bounds on what one file may declare; frozen so it can be shared across threads and workers.

    - `max_rows`, `max_columns`: matrix size (pixels).
    - `max_frames`: NumberOfFrames (ichscan reads one slice per file).
    - `bits_allocated`: the pixel containers accepted.
    - `max_compression_ratio`: an encapsulated (compressed) image whose fragments hold fewer
      than ``decoded bytes / ratio`` bytes is refused before decoding (a decompression bomb);
      lossless codecs compress CT by 2-4x, and even a blank slice needs a codec header.
    - `max_excess_pixel_bytes`: native Pixel Data or compressed fragments may exceed the
      decoded image size by at most this (padding, codec overhead); more is refused unread.
    - `max_header_bytes`: data-set bytes before the Pixel Data (tags, sequences, private data).
    """

    max_rows: int = 4096
    max_columns: int = 4096
    max_frames: int = 1
    bits_allocated: tuple[int, ...] = (8, 16, 32)
    max_compression_ratio: float = 10_000.0
    max_excess_pixel_bytes: int = 1 * MIB
    max_header_bytes: int = 16 * MIB

    def __post_init__(self) -> None:
        if min(self.max_rows, self.max_columns, self.max_frames) < 1:
            raise ValueError("max_rows, max_columns and max_frames must be at least 1")
        if not self.bits_allocated or any(bits not in (1, 8, 16, 32, 64) for bits in self.bits_allocated):
            raise ValueError(f"bits_allocated must be among 1, 8, 16, 32, 64, got {self.bits_allocated}")
        if self.max_compression_ratio < 1 or self.max_excess_pixel_bytes < 0 or self.max_header_bytes < 1:
            raise ValueError("max_compression_ratio ≥ 1, max_excess_pixel_bytes ≥ 0, max_header_bytes ≥ 1")

    @property
    def max_pixel_bytes(self) -> int:
        """The most decoded pixel bytes one file may need (largest matrix, container and frames)."""
        return self.max_rows * self.max_columns * max(self.bits_allocated) // 8 * self.max_frames

    @property
    def max_dataset_bytes(self) -> int:
        """The most bytes a reader ever holds for one data set (header + pixels + excess)."""
        return self.max_header_bytes + self.max_pixel_bytes + self.max_excess_pixel_bytes

    def check_geometry(
        self, rows: int, columns: int, bits_allocated: int, frames: int = 1, samples: int = 1
    ) -> int:
        """Raise `LimitError` when the declared image is out of bounds; return its decoded bytes."""
        if rows < 1 or columns < 1:
            raise LimitError(f"matrix {rows}x{columns} is empty")
        if rows > self.max_rows or columns > self.max_columns:
            raise LimitError(
                f"matrix {rows}x{columns} exceeds the limit {self.max_rows}x{self.max_columns}"
            )
        if frames < 1 or frames > self.max_frames:
            raise LimitError(f"NumberOfFrames={frames} exceeds the limit {self.max_frames}")
        if bits_allocated not in self.bits_allocated:
            raise LimitError(f"BitsAllocated={bits_allocated} is not among {self.bits_allocated}")
        if samples != 1:
            raise LimitError(f"SamplesPerPixel={samples} (greyscale CT has 1)")
        return rows * columns * frames * max(bits_allocated // 8, 1)

    def check_native_length(self, length: int, decoded_bytes: int) -> None:
        """Native Pixel Data: at least the image, at most `max_excess_pixel_bytes` more."""
        if length < decoded_bytes:
            raise LimitError(f"PixelData holds {length} bytes, the declared image needs {decoded_bytes}")
        if length > decoded_bytes + self.max_excess_pixel_bytes:
            raise LimitError(
                f"PixelData holds {length} bytes, {length - decoded_bytes} more than the declared "
                f"image (limit {self.max_excess_pixel_bytes})"
            )

    def check_encapsulated_length(self, fragment_bytes: int, decoded_bytes: int) -> None:
        """Compressed fragments: plausible for the declared image, before any decoding."""
        if fragment_bytes * self.max_compression_ratio < decoded_bytes:
            raise LimitError(
                f"compressed fragments hold {fragment_bytes} bytes for a declared image of "
                f"{decoded_bytes} bytes (ratio above the limit {self.max_compression_ratio:g})"
            )
        if fragment_bytes > 2 * decoded_bytes + self.max_excess_pixel_bytes:
            raise LimitError(
                f"compressed fragments hold {fragment_bytes} bytes, more than twice the declared "
                f"image of {decoded_bytes} bytes"
            )


DEFAULT_LIMITS: Final[PixelLimits] = PixelLimits()
