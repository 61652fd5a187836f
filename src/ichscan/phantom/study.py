"""One synthetic study: patient, anatomy, pose, hemorrhages, series geometry and storage, and
the rendering of each series in blocks of slices (Hounsfield units + bit-coded lesion masks)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from ichscan.labels import SUBTYPES
from ichscan.phantom.anatomy import F32, AnatomyVolume, Box, HeadAnatomy, head_box, render_anatomy
from ichscan.phantom.config import PhantomConfig
from ichscan.phantom.ct_writer import (
    PatientDescription,
    PixelStorage,
    SeriesDescription,
    StudyDescription,
)
from ichscan.phantom.geometry import HeadPose, SliceGrid, rotation_matrix
from ichscan.phantom.hemorrhage import (
    SUBTYPE_BIT,
    Intraparenchymal,
    Lesion,
    LesionContext,
    lesion_bounds,
    sample_lesion,
)
from ichscan.phantom.scanner import ScannerEffects

STORAGE_VARIANTS: dict[str, dict[str, object]] = {
    "signed_1024": dict(bits_stored=16, pixel_representation=1, rescale_intercept=-1024.0),
    "unsigned_1024": dict(bits_stored=16, pixel_representation=0, rescale_intercept=-1024.0),
    "unsigned12_1024": dict(bits_stored=12, pixel_representation=0, rescale_intercept=-1024.0),
    "signed_0": dict(bits_stored=16, pixel_representation=1, rescale_intercept=0.0),
    "unsigned_1000": dict(bits_stored=16, pixel_representation=0, rescale_intercept=-1000.0),
    "rsna_defect": dict(bits_stored=12, pixel_representation=0, rescale_intercept=0.0, rsna_defect=True),
}
_UID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/ichscan/ichscan/phantom")


def _uid(seed: int, *parts: object) -> str:
    """A valid, deterministic UID derived from the seed and the object's path: the 2.25 form of a
    name-based (SHA-1, version 5) UUID, as ISO/IEC 9834-8 allows."""
    name = "/".join(map(str, (seed, *parts)))
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


@dataclass(frozen=True)
class SeriesPlan:
    """Everything needed to render and write one series."""

    description: SeriesDescription
    grid: SliceGrid
    scanner: ScannerEffects
    image_ids: tuple[str, ...]  # per slice, anatomical order
    sop_uids: tuple[str, ...]
    instance_numbers: tuple[int, ...]
    min_label_voxels: int


@dataclass(frozen=True)
class StudyPlan:
    """A patient's study: anatomy, pose, hemorrhages and its series."""

    index: int
    patient: PatientDescription
    study: StudyDescription
    anatomy: HeadAnatomy
    pose: HeadPose
    lesions: tuple[Lesion, ...]
    series: tuple[SeriesPlan, ...]
    seed: int

    @property
    def subtypes(self) -> tuple[str, ...]:
        present = {lesion.subtype for lesion in self.lesions}
        return tuple(s for s in SUBTYPES if s in present)


def _hex_id(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        image_id = f"ID_{int(rng.integers(0, 16**9)):09x}"
        if image_id not in taken:
            taken.add(image_id)
            return image_id


def _choose_subtypes(rng: np.random.Generator, config: PhantomConfig) -> list[str]:
    if rng.random() >= config.positive_fraction:
        return []
    probs = np.array([config.probability_of(s) for s in SUBTYPES])
    chosen = [s for s, p in zip(SUBTYPES, probs) if rng.random() < p]
    if not chosen and probs.sum() > 0:
        chosen = [str(rng.choice(SUBTYPES, p=probs / probs.sum()))]
    return chosen


def plan_study(index: int, seed: int, config: PhantomConfig, taken_ids: set[str]) -> StudyPlan:
    """Draw study `index` of the data set generated from `seed` (independent of other studies)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    age = int(np.clip(rng.normal(58, 20), 18, 98))
    sex = str(rng.choice(["M", "F"]))
    when = dt.datetime(2019, 1, 1) + dt.timedelta(minutes=int(rng.integers(0, 365 * 24 * 60)))
    patient_key = f"ID_{int(rng.integers(0, 16**10)):010x}"
    patient = PatientDescription(
        patient_id=patient_key,
        patient_name=f"PHANTOM^{patient_key[3:]}",
        birth_date=(when - dt.timedelta(days=int(age * 365.25 + rng.integers(0, 365)))).date(),
        sex=sex,  # type: ignore[arg-type]
        age_years=age,
    )
    study = StudyDescription(
        study_instance_uid=_uid(seed, index, "study"),
        study_id=f"{index + 1}",
        accession_number=f"{int(rng.integers(0, 10**9)):09d}",
        study_datetime=when,
    )
    anatomy = HeadAnatomy.sample(rng, age)
    pose = HeadPose(
        centre=np.array([rng.normal(0, 6), rng.normal(0, 8), rng.uniform(-180, 60)]),
        rotation=rotation_matrix(rng.normal(0, 4), rng.normal(0, 5), rng.normal(0, 3)),
    )
    lesions: list[Lesion] = []
    for subtype in _choose_subtypes(rng, config):
        count = 1 + int(subtype in ("subdural", "subarachnoid", "intraparenchymal") and rng.random() < 0.25)
        for _ in range(count):
            lesions.extend(sample_lesion(subtype, rng, anatomy))

    n_series = 2 if rng.random() < config.second_series_fraction else 1
    series = []
    for s in range(n_series):
        tilt = float(rng.uniform(10, 25) * rng.choice([-1, 1])) if rng.random() < config.tilted_fraction else 0.0
        fov = float(rng.uniform(*config.field_of_view_mm))
        spacing = fov / config.size
        variants = list(STORAGE_VARIANTS)
        weights = np.array([getattr(config.storage, v) for v in variants], dtype=float)
        variant = variants[int(rng.choice(len(variants), p=weights / weights.sum()))]
        syntax = str(ExplicitVRLittleEndian)
        if rng.random() < config.compressed_fraction:
            syntax = str(RLELossless if rng.random() < 0.5 else JPEGLSLossless)
        storage = PixelStorage(**STORAGE_VARIANTS[variant], transfer_syntax_uid=syntax)  # type: ignore[arg-type]
        z_start = float(rng.uniform(-60, -48))
        top = anatomy.semi_axes[2] + anatomy.skull_thickness + anatomy.scalp_thickness
        n_slices = config.slices_per_series or int(np.ceil((top - z_start) / config.slice_thickness_mm))
        if config.slices_per_series:  # fixed count: centre the stack on the brain instead
            z_start = min(z_start, 10.0 - n_slices * config.slice_thickness_mm / 2)
        in_plane = np.array([rng.normal(0, 5), rng.normal(0, 8), 0.0])
        grid = SliceGrid.centred(
            config.size, config.size, (spacing, spacing), config.slice_thickness_mm,
            pose.to_patient(np.array([0.0, 0.0, z_start])) + in_plane, tilt, n_slices,
        )
        description = SeriesDescription(
            series_instance_uid=_uid(seed, index, "series", s),
            frame_of_reference_uid=_uid(seed, index, "frame"),
            series_number=s + 2,
            description=f"HEAD {config.slice_thickness_mm:g}mm" + (" TILT" if tilt else ""),
            series_datetime=when + dt.timedelta(minutes=2 * s),
            kvp=float(rng.choice([100.0, 120.0, 140.0])),
            convolution_kernel=str(rng.choice(["H30s", "H40s", "STANDARD", "FC21"])),
            gantry_tilt_deg=tilt,
            rows=config.size,
            columns=config.size,
            pixel_spacing=(spacing, spacing),
            slice_thickness=config.slice_thickness_mm,
            image_orientation=tuple(float(v) for v in grid.orientation),  # type: ignore[arg-type]
            window_center=float(rng.choice([40.0, 35.0, 50.0])),
            window_width=float(rng.choice([80.0, 100.0, 120.0])),
            storage=storage,
        )
        ascending = bool(rng.random() < 0.5)
        numbers = tuple(range(1, n_slices + 1)) if ascending else tuple(range(n_slices, 0, -1))
        series.append(SeriesPlan(
            description=description,
            grid=grid,
            scanner=ScannerEffects.sample(rng, config.noise_sigma_hu, config.blur_sigma_px),
            image_ids=tuple(_hex_id(rng, taken_ids) for _ in range(n_slices)),
            sop_uids=tuple(_uid(seed, index, "series", s, "image", k) for k in range(n_slices)),
            instance_numbers=numbers,
            min_label_voxels=max(1, int(np.ceil(config.label_min_area_mm2 / spacing**2))),
        ))
    return StudyPlan(index, patient, study, anatomy, pose, tuple(lesions), tuple(series), seed)


@dataclass(frozen=True)
class RenderedBlock:
    """Consecutive slices of a series: integer HU (storable) and the bit-coded lesion mask."""

    first_slice: int
    hounsfield: np.ndarray  # int16 (n, H, W)
    mask: np.ndarray  # uint8 (n, H, W)


def upsample(image: np.ndarray, step: int, rows: int, columns: int) -> np.ndarray:
    """Linear interpolation of an image rendered every `step` pixels back to rows × columns
    (pixel i·step keeps its value; between two rendered pixels the weights are j/step)."""
    if step == 1:
        return image
    n, h, w = image.shape
    wide = np.empty((n, h, w * step), dtype=np.float32)
    right = np.concatenate([image[:, :, 1:], image[:, :, -1:]], axis=2)
    right -= image
    wide[:, :, ::step] = image
    for j in range(1, step):
        np.multiply(right, F32(j / step), out=wide[:, :, j::step])
        wide[:, :, j::step] += image
    out = np.empty((n, h * step, w * step), dtype=np.float32)
    below = np.concatenate([wide[:, 1:], wide[:, -1:]], axis=1)
    below -= wide
    out[:, ::step] = wide
    for j in range(1, step):
        np.multiply(below, F32(j / step), out=out[:, j::step])
        out[:, j::step] += wide
    return out[:, :rows, :columns]


def paint_study(
    plan: StudyPlan, x: np.ndarray, y: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray, AnatomyVolume]:
    """Noise-free HU (float32), bit-coded lesion mask (uint8) and anatomy maps of the study's
    head at head-frame coordinates: the anatomy with every hemorrhage painted in.

    Blood replaces tissue as max(tissue, blood) (bone partial volume and calcifications stay
    dense); an IPH also lays its oedema rim into the surrounding parenchyma.
    """
    gravity = plan.pose.rotation.T @ np.array([0.0, 1.0, 0.0])  # patient +y (posterior) in the head frame
    volume = render_anatomy(plan.anatomy, x, y, z)
    hu = volume.hounsfield
    mask = np.zeros(x.shape, dtype=np.uint8)
    for lesion in plan.lesions:
        lo, hi = lesion_bounds(lesion, plan.anatomy)
        box = head_box(x, y, z, lo, hi)
        if box is None:
            continue
        ctx = LesionContext(x[box], y[box], z[box], _crop(volume, box), gravity)
        inside = lesion.mask(ctx)
        target = hu[box]
        if isinstance(lesion, Intraparenchymal):
            target[lesion.oedema(ctx) & ~inside] = F32(lesion.oedema_hounsfield)
        target[inside] = np.maximum(target[inside], F32(lesion.hounsfield))
        mask[box][inside] |= np.uint8(SUBTYPE_BIT[lesion.subtype])
    return hu, mask, volume


def render_series(plan: StudyPlan, series: SeriesPlan, chunk: int, step: int = 1) -> Iterator[RenderedBlock]:
    """Render `series` of `plan` block by block (memory bounded by `chunk` slices).

    The anatomy and lesions are evaluated every `step` pixels (smooth analytic shapes; the image
    is interpolated linearly, the mask repeated), the noise at full resolution.
    """
    full = series.grid
    grid = full.subsampled(step)
    rng = np.random.default_rng(
        np.random.SeedSequence([plan.seed, plan.index, series.description.series_number, 7])
    )
    a, b, c_up, _ = plan.anatomy.semi_axes
    outer = plan.anatomy.skull_thickness + plan.anatomy.scalp_thickness + 3.0
    lo_hu, hi_hu = series.description.storage.hounsfield_range
    noise = series.scanner.noise_bank(rng, full.rows, full.columns)
    for start in range(0, grid.n_slices, chunk):
        indices = np.arange(start, min(grid.n_slices, start + chunk))
        x, y, z = grid.head_coordinates(plan.pose, indices)
        hu = np.full(x.shape, F32(-1000.0))
        mask = np.zeros(x.shape, dtype=np.uint8)
        head = head_box(x, y, z, (-a - outer, -b - outer, -150.0), (a + outer, b + outer, c_up + outer))
        if head is not None:
            hx, hy, hz = x[head], y[head], z[head]
            head_hu, mask[head], volume = paint_study(plan, hx, hy, hz)
            series.scanner.apply(head_hu, volume, hx, hy, hz)
            hu[head] = head_hu
        image = upsample(series.scanner.blur(hu, step), step, full.rows, full.columns)
        if step > 1:
            mask = np.repeat(np.repeat(mask, step, axis=1), step, axis=2)[:, : full.rows, : full.columns]
        series.scanner.add_noise(image, noise, rng)
        np.rint(image, out=image)
        np.clip(image, max(lo_hu, -1024), min(hi_hu, 3071), out=image)
        yield RenderedBlock(int(start), image.astype(np.int16), np.ascontiguousarray(mask))


def _crop(volume: AnatomyVolume, box: Box) -> AnatomyVolume:
    """The anatomy maps restricted to `box` (views, no copies)."""
    return AnatomyVolume(**{name: getattr(volume, name)[box] for name in volume.__dataclass_fields__})
