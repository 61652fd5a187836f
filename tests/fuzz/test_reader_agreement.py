"""The fast reader of `prepare` accepts only what the pydicom path accepts, with the same HU.

Thousands of seeded mutants of valid slices (truncations, bit and byte flips, overflowing lengths,
insertions, deletions, duplicated regions, overwritten tags) go through both readers:
`ichscan.prepare.fastread.read_fast` and the reference, `ichscan.dicom.reader.read_dataset` +
`to_hounsfield` (pydicom). Wherever the fast reader accepts, the reference must accept too and give
every HU value identically; where the fast reader declines, prepare uses the reference, so the two
paths together accept and refuse exactly what the reference does.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
from corpus import mutations, scaled

from ichscan.dicom.hounsfield import to_hounsfield
from ichscan.dicom.reader import read_dataset
from ichscan.prepare.fastread import NotFast, read_fast
from ichscan.prepare.series import _stored_words_to_hounsfield

MUTANTS = 1500  # × FUZZ_SCALE


def fast_hounsfield(path: Path) -> np.ndarray | None:
    """HU through the fast reader exactly as prepare computes them, or None when it declines."""
    try:
        fast = read_fast(str(path))
    except (NotFast, OSError, ValueError):
        return None
    words = fast.pixels.copy().view(np.int16)
    _stored_words_to_hounsfield(words, fast.bits_stored, fast.pixel_representation, fast.slope, fast.intercept)
    return words


def reference_hounsfield(path: Path) -> tuple[np.ndarray | None, str]:
    try:
        return to_hounsfield(read_dataset(path)), ""
    except Exception as error:  # noqa: BLE001 - every refusal, whatever pydicom raised
        return None, f"{type(error).__name__}: {error}"


def test_fast_reader_never_accepts_what_pydicom_refuses_and_agrees_on_every_hu(tmp_path: Path) -> None:
    counts: collections.Counter[str] = collections.Counter()
    disagreements: list[str] = []
    for what, path in mutations(tmp_path, seed=15, n=scaled(MUTANTS)):
        fast = fast_hounsfield(path)
        reference, reason = reference_hounsfield(path)
        counts["fast accepts" if fast is not None else "fast declines"] += 1
        counts["reference accepts" if reference is not None else "reference refuses"] += 1
        if fast is None:
            continue
        if reference is None:
            disagreements.append(f"{what}: fast accepted, reference refused ({reason})")
        elif fast.shape != reference.shape or not np.array_equal(fast, reference):
            disagreements.append(f"{what}: HU differ")
    assert not disagreements, f"{len(disagreements)} disagreements: {disagreements[:5]}"
    # the corpus exercises both sides: many mutants are refused, many still readable
    assert counts["fast accepts"] > scaled(MUTANTS) // 10, counts
    assert counts["reference refuses"] > scaled(MUTANTS) // 10, counts
