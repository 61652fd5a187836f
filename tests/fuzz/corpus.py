"""Seeded hostile inputs: mutations of valid slices, and a folder of every kind of bad file.

`mutations(seed, n)` damages valid CT slices (ichscan's own writer and pydicom's bundled CT) in the
ways files get damaged: truncation at any offset, bit and byte flips in the header and in the
pixels, element lengths made to overflow, bytes inserted or deleted, a region duplicated, random
values written over a tag. `hostile_folder(root)` writes good series next to one file (or folder
entry) of every hostile kind the fuzz suite checks, with what each must produce.

Scale: `FUZZ_SCALE` (environment) multiplies the counts; `make fuzz` sets it.
"""

from __future__ import annotations

import os
import random
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from dicom_factory import write_ct_slice
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
SIDE = 32


def head_slice(rng: np.random.Generator, side: int = SIDE, *, unsigned12: bool = True) -> np.ndarray:
    """Stored values of a small head-like slice: air at 0 around a noisy disc (brain ~1064)."""
    yy, xx = np.mgrid[:side, :side]
    inside = (yy - side / 2) ** 2 + (xx - side / 2) ** 2 < (side * 0.4) ** 2
    values = np.where(inside, 1064 + rng.integers(-40, 40, (side, side)), rng.integers(0, 30, (side, side)))
    if unsigned12:
        return values.astype(np.uint16)
    return (values - 1024).astype(np.int16)


def _base_files(folder: Path) -> list[Path]:
    """Valid slices the mutations start from (every layout the fast reader accepts, and more)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    items = Dataset()
    items.ReferencedSOPInstanceUID = generate_uid()
    bases = [
        write_ct_slice(folder / "explicit12.dcm", head_slice(rng), bits_stored=12),
        write_ct_slice(folder / "implicit_signed.dcm", head_slice(rng, unsigned12=False),
                       transfer_syntax=ImplicitVRLittleEndian),
        write_ct_slice(folder / "sequence.dcm", head_slice(rng),
                       extra={"ReferencedImageSequence": Sequence([items])}),
        write_ct_slice(folder / "rsna_fix.dcm", head_slice(rng) + 1000, bits_stored=12, intercept=0.0),
        write_ct_slice(folder / "slope.dcm", head_slice(rng), slope=0.5, intercept=-1000.5),
    ]
    from ichscan.phantom.config import PhantomConfig
    from ichscan.phantom.synthesize import synthesize

    synthesize(folder / "phantom", 2, seed=5, config=PhantomConfig(size=64, slices_per_series=4), progress=False)
    bases += sorted((folder / "phantom").glob("*.dcm"))[:4]  # the project's own writer, as in the demo
    bundled = get_testdata_file("CT_small.dcm", download=False)
    if bundled is not None:
        target = folder / "CT_small.dcm"
        target.write_bytes(Path(bundled).read_bytes())
        bases.append(target)
    return bases


def _element_offsets(data: bytes) -> list[tuple[int, bool]]:
    """Offsets of the top-level element headers after the preamble: (offset, explicit VR)."""
    offsets: list[tuple[int, bool]] = []
    position = 132
    while position + 8 <= len(data):
        group = struct.unpack_from("<H", data, position)[0]
        vr = data[position + 4 : position + 6]
        explicit = vr.isalpha() and vr.isupper()
        offsets.append((position, explicit))
        if explicit:
            if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"OF", b"OD", b"OL", b"UC", b"UR", b"OV", b"SV", b"UV"):
                length = struct.unpack_from("<I", data, position + 8)[0]
                position += 12
            else:
                length = struct.unpack_from("<H", data, position + 6)[0]
                position += 8
        else:
            length = struct.unpack_from("<I", data, position + 4)[0]
            position += 8
        if length == 0xFFFFFFFF or group == 0x7FE0:
            break
        position += length
    return offsets


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random damage of `data`: (what was done, the damaged bytes)."""
    kind = rng.choice(["truncate", "flip_bit", "flip_byte_header", "flip_byte", "length", "insert",
                       "delete", "duplicate", "overwrite_tag", "zero_run"])
    buffer = bytearray(data)
    headers = _element_offsets(data)
    header_end = headers[-1][0] if headers else 300
    if kind == "truncate":
        cut = rng.randrange(0, len(data))
        return f"truncate@{cut}", bytes(buffer[:cut])
    if kind == "flip_bit":
        at = rng.randrange(0, len(data))
        buffer[at] ^= 1 << rng.randrange(8)
        return f"flip_bit@{at}", bytes(buffer)
    if kind == "flip_byte_header":
        at = rng.randrange(128, max(129, header_end + 12))
        buffer[at] = rng.randrange(256)
        return f"flip_byte_header@{at}", bytes(buffer)
    if kind == "flip_byte":
        at = rng.randrange(0, len(data))
        buffer[at] = rng.randrange(256)
        return f"flip_byte@{at}", bytes(buffer)
    if kind == "length" and headers:
        at, explicit = rng.choice(headers)
        value = rng.choice([0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, len(data), rng.randrange(1 << 32), 1, 3])
        vr = bytes(buffer[at + 4 : at + 6])
        if explicit and vr not in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
            struct.pack_into("<H", buffer, at + 6, value & 0xFFFF)
        else:
            struct.pack_into("<I", buffer, at + (8 if explicit else 4), value)
        return f"length@{at}={value:#x}", bytes(buffer)
    if kind == "insert":
        at = rng.randrange(132, len(data))
        return f"insert@{at}", bytes(buffer[:at] + bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 4, 8]))) + buffer[at:])
    if kind == "delete":
        at = rng.randrange(132, len(data))
        return f"delete@{at}", bytes(buffer[:at] + buffer[at + rng.choice([1, 2, 4, 8]):])
    if kind == "duplicate":
        at = rng.randrange(132, len(data) - 16)
        size = rng.randrange(8, 64)
        return f"duplicate@{at}", bytes(buffer[:at] + buffer[at : at + size] + buffer[at:])
    if kind == "overwrite_tag" and headers:
        at, explicit = rng.choice(headers)
        start = at + 8
        for k in range(start, min(len(buffer), start + rng.choice([1, 2, 4]))):
            buffer[k] = rng.randrange(256)
        return f"overwrite_tag@{at}", bytes(buffer)
    at = rng.randrange(132, len(data))
    size = rng.randrange(1, 32)
    buffer[at : at + size] = bytes(len(buffer[at : at + size]))
    return f"zero_run@{at}", bytes(buffer)


def mutations(folder: Path, seed: int, n: int) -> Iterator[tuple[str, Path]]:
    """`n` damaged copies of the base slices under `folder`: (description, path)."""
    rng = random.Random(seed)
    bases = [(path.name, path.read_bytes()) for path in _base_files(folder / "bases")]
    out = folder / "mutants"
    out.mkdir(parents=True, exist_ok=True)
    for index in range(n):
        name, data = bases[index % len(bases)]
        what, damaged = mutate(data, rng)
        path = out / f"{index:05d}.dcm"
        path.write_bytes(damaged)
        yield f"{name}:{what}", path


# --- the hostile folder --------------------------------------------------------------------


@dataclass
class Expectation:
    """What one hostile entry must produce: refused (listed with a reason containing `reason`,
    by index or by prepare), or accepted (cached); `skipped` entries are not read (by name)."""

    path: Path
    outcome: str  # "refused" | "accepted" | "skipped"
    reason: str = ""


@dataclass
class HostileFolder:
    root: Path
    good_series: dict[str, list[Path]] = field(default_factory=dict)  # the reference series
    expectations: list[Expectation] = field(default_factory=list)
    good_uids: list[str] = field(default_factory=list)  # SeriesInstanceUID of the good series
    gap_series: str = ""  # series with holes (duplicates, mixed matrix, ... removed from it)
    fallback_series: str = ""  # series ordered by SliceLocation (no ImagePositionPatient)


def _series(folder: Path, name: str, depth: int, rng: np.random.Generator, **kwargs: object) -> list[Path]:
    series_uid, study_uid = generate_uid(), generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_ct_slice(folder / f"{name}_{z:02d}.dcm", head_slice(rng), position=(0.0, 0.0, 5.0 * z),
                       series_uid=series_uid, study_uid=study_uid, instance_number=z + 1, bits_stored=12, **kwargs)
        for z in range(depth)
    ]


def _single(path: Path, rng: np.random.Generator, **kwargs: object) -> Path:
    """A one-slice series of its own (so a bad file never touches the good series)."""
    deflate = kwargs.get("transfer_syntax") == DeflatedExplicitVRLittleEndian
    if deflate:
        kwargs["transfer_syntax"] = ExplicitVRLittleEndian
    written = write_ct_slice(path, head_slice(rng), series_uid=generate_uid(), study_uid=generate_uid(),
                             bits_stored=12, **kwargs)
    if deflate:  # pydicom deflates the data set when writing this syntax
        ds = pydicom.dcmread(written)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(written, enforce_file_format=True)
    return written


def _set(path: Path, **values: object) -> Path:
    """Rewrite header values of a written file, leaving its Pixel Data bytes as they are."""
    ds = pydicom.dcmread(path)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def _deflate_bomb(path: Path, rng: np.random.Generator, inflated_bytes: int) -> Path:
    """A small deflated file whose data set inflates to `inflated_bytes` (mostly zeros)."""
    good = _single(path, rng, transfer_syntax=DeflatedExplicitVRLittleEndian)
    data = good.read_bytes()
    meta_length = struct.unpack_from("<I", data, 132 + 8)[0]
    meta_end = 132 + 12 + meta_length
    dataset = zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)
    compressor = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunks = [compressor.compress(dataset)]
    zeros = bytes(1 << 20)
    for _ in range(inflated_bytes >> 20):
        chunks.append(compressor.compress(zeros))
    chunks.append(compressor.flush())
    path.write_bytes(data[:meta_end] + b"".join(chunks))
    return path


def hostile_folder(root: Path, *, sparse_bytes: int = 2 << 30, deflate_bomb_bytes: int = 1 << 30) -> HostileFolder:
    """Three good series and one entry of every hostile kind (see the module docstring)."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    folder = HostileFolder(root)
    for k in range(3):
        folder.good_series[f"good{k}"] = _series(root / f"good{k}", f"g{k}", 6, rng)
        folder.good_uids.append(str(pydicom.dcmread(folder.good_series[f"good{k}"][0], stop_before_pixels=True).SeriesInstanceUID))
    refused = folder.expectations

    def expect(path: Path, reason: str, outcome: str = "refused") -> None:
        refused.append(Expectation(path, outcome, reason))

    bad = root / "bad"
    bad.mkdir()
    # truncations and flips
    data = _single(bad / "whole.dcm", rng).read_bytes()
    for cut in (0, 100, 131, 140, 200, 400, len(data) // 2, len(data) - 1):
        (bad / f"cut{cut}.dcm").write_bytes(data[:cut])
        expect(bad / f"cut{cut}.dcm", "")
    (bad / "whole.dcm").unlink()
    flipped = bytearray(_single(bad / "magic.dcm", rng).read_bytes())
    flipped[128] ^= 0xFF
    (bad / "magic.dcm").write_bytes(bytes(flipped))
    expect(bad / "magic.dcm", "not DICOM")
    # an overflowing element length (implicit VR: 32-bit lengths)
    implicit = bytearray(_single(bad / "overflow.dcm", rng, transfer_syntax=ImplicitVRLittleEndian).read_bytes())
    at = bytes(implicit).index(b"\x10\x00\x20\x00")  # (0010,0020) PatientID
    struct.pack_into("<I", implicit, at + 4, 0x7FFFFFF0)
    (bad / "overflow.dcm").write_bytes(bytes(implicit))
    expect(bad / "overflow.dcm", "truncated")
    # declared-size bombs, every transfer syntax
    for name, syntax in (("explicit", ExplicitVRLittleEndian), ("implicit", ImplicitVRLittleEndian),
                         ("bigendian", ExplicitVRBigEndian), ("deflate", DeflatedExplicitVRLittleEndian),
                         ("rle", RLELossless), ("jpegls", JPEGLSLossless), ("j2k", JPEG2000Lossless)):
        path = _set(_single(bad / f"bomb_{name}.dcm", rng, transfer_syntax=syntax), Rows=65535, Columns=65535)
        expect(path, "limit: matrix 65535x65535")
    path = _set(_single(bad / "bomb_ratio.dcm", rng, transfer_syntax=RLELossless), Rows=4096, Columns=4096)
    expect(path, "limit: compressed fragments")
    expect(_deflate_bomb(bad / "deflate_bomb.dcm", rng, deflate_bomb_bytes), "limit: the deflated data set inflates")
    # wrong pixel description
    expect(_set(_single(bad / "bits12.dcm", rng), BitsAllocated=12), "BitsAllocated=12")
    expect(_set(_single(bad / "samples3.dcm", rng), SamplesPerPixel=3), "SamplesPerPixel=3")
    # missing rescale: refused unless the stored values prove the default; proven: accepted
    expect(write_ct_slice(bad / "norescale_signed.dcm", head_slice(rng, unsigned12=False), series_uid=generate_uid(),
                          without=["RescaleSlope", "RescaleIntercept"]), "RescaleSlope/RescaleIntercept absent")
    expect(_single(bad / "norescale_proven.dcm", rng, without=["RescaleSlope", "RescaleIntercept"]), "", "accepted")
    # non-CT objects and a DICOMDIR
    expect(_single(bad / "mr.dcm", rng, modality="MR"), "not CT")
    dicomdir = get_testdata_file("DICOMDIR", download=False)
    if dicomdir is not None:
        (bad / "DICOMDIR").write_bytes(Path(dicomdir).read_bytes())
        expect(bad / "DICOMDIR", "", "skipped")
        (bad / "dicomdir_renamed").write_bytes(Path(dicomdir).read_bytes())
        expect(bad / "dicomdir_renamed", "")
    # unusual but valid encodings: accepted
    expect(_single(bad / "bigendian_ok.dcm", rng, transfer_syntax=ExplicitVRBigEndian), "", "accepted")
    expect(_single(bad / "deflate_ok.dcm", rng, transfer_syntax=DeflatedExplicitVRLittleEndian), "", "accepted")
    expect(_single(bad / "monochrome1_ok.dcm", rng, photometric="MONOCHROME1"), "", "accepted")
    # hostile UIDs
    expect(_single(bad / "uid_traversal.dcm", rng, sop_uid="../../escape"), "SOPInstanceUID '../../escape' is not a UID")
    expect(_single(bad / "uid_absolute.dcm", rng, extra={"SeriesInstanceUID": "/tmp/escape"}), "is not a UID")
    expect(_set(_single(bad / "uid_dotdot.dcm", rng), StudyInstanceUID=".."), "StudyInstanceUID '..' is not a UID")
    # hostile names: spaces and non-ASCII are fine, bytes that are not UTF-8 cost that file only
    expect(_single(bad / "with space.dcm", rng), "", "accepted")
    expect(_single(bad / "nön-ascii 切片.dcm", rng), "", "accepted")
    raw = os.fsencode(bad) + b"/latin1-\xe9\xff.dcm"
    with open(raw, "wb") as handle:
        handle.write(_single(bad / "tmp_latin.dcm", rng).read_bytes())
    (bad / "tmp_latin.dcm").unlink()
    expect(Path(os.fsdecode(raw)), "file name: not valid UTF-8")
    # a FIFO and a symlink loop
    os.mkfifo(bad / "pipe.dcm")
    expect(bad / "pipe.dcm", "not a regular file: FIFO")
    os.symlink("loop_b", bad / "loop_a")
    os.symlink("loop_a", bad / "loop_b")
    expect(bad / "loop_a", "unreadable")
    expect(bad / "loop_b", "unreadable")
    # a valid slice followed by a huge sparse tail: accepted, costs nothing
    sparse = _single(bad / "sparse_tail.dcm", rng)
    os.truncate(sparse, sparse_bytes)
    expect(sparse, "", "accepted")
    # a series with holes: duplicate SOP instance, duplicate position, other matrix, orientation, study
    holes = _series(root / "holes", "h", 10, rng)
    folder.gap_series = str(pydicom.dcmread(holes[0], stop_before_pixels=True).SeriesInstanceUID)
    copy = root / "holes" / "h_03_copy.dcm"
    copy.write_bytes(holes[3].read_bytes())
    expect(copy, "duplicate image")
    expect(holes[3], "duplicate image")
    _set(holes[5], ImagePositionPatient=[0.0, 0.0, 5.0 * 6])
    expect(holes[5], "duplicate position")
    expect(holes[6], "duplicate position")
    ds = pydicom.dcmread(holes[8])
    other = write_ct_slice(holes[8], head_slice(rng, 24), position=(0.0, 0.0, 40.0), series_uid=folder.gap_series,
                           study_uid=str(ds.StudyInstanceUID), bits_stored=12)
    expect(other, "mixed matrix")
    _set(holes[1], StudyInstanceUID=generate_uid())
    expect(holes[1], "inconsistent series")
    tilted = write_ct_slice(root / "holes" / "h_tilted.dcm", head_slice(rng), position=(0.0, 0.0, 22.5),
                            orientation=(1.0, 0.0, 0.0, 0.0, 0.8, 0.6), series_uid=folder.gap_series,
                            study_uid=str(ds.StudyInstanceUID), bits_stored=12)
    expect(tilted, "mixed orientation")
    # a series without ImagePositionPatient, ordered by SliceLocation (in reverse of the names)
    series_uid, study_uid = generate_uid(), generate_uid()
    (root / "fallback").mkdir()
    for z in range(5):
        path = write_ct_slice(root / "fallback" / f"f{z}.dcm", head_slice(rng), series_uid=series_uid,
                              study_uid=study_uid, bits_stored=12,
                              extra={"SliceLocation": 20.0 - 5.0 * z}, without=["ImagePositionPatient"])
        expect(path, "", "accepted")
    folder.fallback_series = series_uid
    return folder


def scaled(count: int) -> int:
    """`count` × FUZZ_SCALE, at least 1."""
    return max(1, int(count * SCALE))
