"""The five hemorrhage subtypes as 3-D analytic objects placed by the anatomy.

Each lesion is described in the head frame (mm) and rasterised by `mask(...)` on the same
coordinate arrays as the anatomy, so it is continuous over contiguous slices:

* epidural (EDH): biconvex lens against the inner table, thickness t(s) = T (1 − (s/S)²) at
  surface distance s from its centre, confined to one skull plate (it does not cross the
  sagittal, coronal or lambdoid sutures);
* subdural (SDH): crescent along the convexity, t(s) = T √(1 − (s/S)⁴), crosses sutures but
  not the falx (one hemisphere);
* subarachnoid (SAH): blood filling the CSF of sulci, fissures and basal cisterns inside a ball,
  thinned by a patchy random field so that it stays serpiginous;
* intraparenchymal (IPH): perturbed ellipsoid in grey/white matter with a hypodense oedema rim;
* intraventricular (IVH): the dependent (posterior, the patient lies supine) part of the
  ventricles below a fluid level measured along gravity, or a full cast.
Surface distance s = R‖q/‖q‖ − u‖ (chord between directions, times the inner-table radius R
along the lesion direction u).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ichscan.labels import SUBTYPES
from ichscan.phantom.anatomy import F32, AnatomyVolume, HeadAnatomy

SUBTYPE_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(SUBTYPES)}  # bit k−1 ⇔ LABELS[k]


@dataclass(frozen=True)
class LesionContext:
    """Coordinates and anatomy maps of the voxels a lesion is drawn on (all the same shape)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    anatomy: AnatomyVolume
    gravity: np.ndarray  # (3,) head-frame unit vector pointing down (posterior in patient space)


def _surface_distance(ctx: LesionContext, direction: np.ndarray, radius: float) -> np.ndarray:
    r = np.sqrt(ctx.x * ctx.x + ctx.y * ctx.y + ctx.z * ctx.z) + F32(1e-3)
    ux, uy, uz = (F32(v) for v in direction)
    chord2 = (ctx.x / r - ux) ** 2 + (ctx.y / r - uy) ** 2 + (ctx.z / r - uz) ** 2
    return F32(radius) * np.sqrt(chord2)


@dataclass(frozen=True)
class Epidural:
    """Lentiform extra-dural clot against the inner table, within one skull plate."""

    direction: tuple[float, float, float]
    table_radius: float  # inner-table radius along `direction`, mm
    extent: float  # S, mm
    thickness: float  # T, mm
    hounsfield: float
    subtype: str = "epidural"

    def mask(self, ctx: LesionContext) -> np.ndarray:
        s = _surface_distance(ctx, np.asarray(self.direction), self.table_radius)
        t = F32(self.thickness) * (F32(1.0) - (s / F32(self.extent)) ** 2)
        depth = ctx.anatomy.depth
        inside = ctx.anatomy.intracranial & (depth < t) & (s < F32(self.extent))
        ux, uy, uz = (self.direction[0], self.direction[1], self.direction[2])
        cx, cy, cz = (self.table_radius * v for v in (ux, uy, uz))
        inside &= (ctx.x * F32(np.sign(ux) or 1.0)) > F32(0.0)  # sagittal suture
        coronal = ctx.y - (F32(-12.0) + F32(0.3) * ctx.z)
        lambdoid = ctx.y - (F32(48.0) - F32(0.5) * ctx.z)
        inside &= (coronal > 0) == (cy - (-12.0 + 0.3 * cz) > 0)
        inside &= (lambdoid > 0) == (cy - (48.0 - 0.5 * cz) > 0)
        return inside


@dataclass(frozen=True)
class Subdural:
    """Crescent along the convexity of one hemisphere."""

    direction: tuple[float, float, float]
    table_radius: float
    extent: float
    thickness: float
    hounsfield: float
    subtype: str = "subdural"

    def mask(self, ctx: LesionContext) -> np.ndarray:
        s = _surface_distance(ctx, np.asarray(self.direction), self.table_radius)
        t = F32(self.thickness) * np.sqrt(np.clip(F32(1.0) - (s / F32(self.extent)) ** 4, 0, 1))
        side = F32(np.sign(self.direction[0]) or 1.0)
        return (
            ctx.anatomy.intracranial & ctx.anatomy.supratentorial & (ctx.anatomy.depth < t)
            & (ctx.x * side > F32(1.2))
        )


@dataclass(frozen=True)
class Subarachnoid:
    """Blood in the subarachnoid CSF (sulci, Sylvian fissure, cisterns) inside a ball."""

    centre: tuple[float, float, float]
    radius: float
    patch_waves: tuple[tuple[float, float, float, float], ...]  # (kx, ky, kz, phase)
    hounsfield: float
    subtype: str = "subarachnoid"

    def mask(self, ctx: LesionContext) -> np.ndarray:
        cx, cy, cz = (F32(v) for v in self.centre)
        ball = (ctx.x - cx) ** 2 + (ctx.y - cy) ** 2 + (ctx.z - cz) ** 2 < F32(self.radius**2)
        patch = np.zeros(ctx.x.shape, dtype=np.float32)
        for kx, ky, kz, phase in self.patch_waves:
            patch += np.cos(F32(kx) * ctx.x + F32(ky) * ctx.y + F32(kz) * ctx.z + F32(phase))
        return ball & ctx.anatomy.csf_spaces & (patch > F32(-0.6))


@dataclass(frozen=True)
class Intraparenchymal:
    """Rounded clot in the brain with a hypodense oedema rim (rim not part of the mask)."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    rim: float  # oedema thickness, mm
    wobble: tuple[float, float, float, float]  # (kx, ky, kz, phase) of a 12 % radius perturbation
    hounsfield: float
    oedema_hounsfield: float
    subtype: str = "intraparenchymal"

    def _rho(self, ctx: LesionContext) -> np.ndarray:
        (cx, cy, cz), (a, b, c) = self.centre, self.radii
        dx, dy, dz = ctx.x - F32(cx), ctx.y - F32(cy), ctx.z - F32(cz)
        rho = np.sqrt((dx / F32(a)) ** 2 + (dy / F32(b)) ** 2 + (dz / F32(c)) ** 2)
        kx, ky, kz, phase = self.wobble
        return rho * (F32(1.0) + F32(0.12) * np.cos(F32(kx) * dx + F32(ky) * dy + F32(kz) * dz + F32(phase)))

    def mask(self, ctx: LesionContext) -> np.ndarray:
        return (self._rho(ctx) < 1) & ctx.anatomy.intracranial & ~ctx.anatomy.ventricles

    def oedema(self, ctx: LesionContext) -> np.ndarray:
        rho = self._rho(ctx)
        return (rho >= 1) & (rho < F32(1.0 + self.rim / float(np.mean(self.radii)))) & ctx.anatomy.parenchyma


@dataclass(frozen=True)
class Intraventricular:
    """Blood layering in the dependent ventricles below a fluid level (or a full cast)."""

    level: float  # mm along gravity from the head origin; voxels deeper than this are blood
    hounsfield: float
    subtype: str = "intraventricular"

    def mask(self, ctx: LesionContext) -> np.ndarray:
        gx, gy, gz = (F32(v) for v in ctx.gravity)
        return ctx.anatomy.ventricles & (ctx.x * gx + ctx.y * gy + ctx.z * gz > F32(self.level))


Lesion = Epidural | Subdural | Subarachnoid | Intraparenchymal | Intraventricular


def lesion_bounds(lesion: Lesion, anatomy: HeadAnatomy) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """A head-frame box holding the lesion (lets rasterisation skip the rest of the volume)."""
    if isinstance(lesion, (Epidural, Subdural)):
        centre = np.asarray(lesion.direction) * lesion.table_radius
        half = lesion.extent + lesion.thickness + 2.0
        return tuple(centre - half), tuple(centre + half)  # type: ignore[return-value]
    if isinstance(lesion, Subarachnoid):
        return tuple(np.asarray(lesion.centre) - lesion.radius), tuple(np.asarray(lesion.centre) + lesion.radius)  # type: ignore[return-value]
    if isinstance(lesion, Intraparenchymal):
        half = np.asarray(lesion.radii) * 1.15 + lesion.rim + 1.0
        return tuple(np.asarray(lesion.centre) - half), tuple(np.asarray(lesion.centre) + half)  # type: ignore[return-value]
    return (-60.0, -60.0, -60.0), (60.0, 60.0, 40.0)


def _size(rng: np.random.Generator) -> float:
    """Lesion size in [0, 1], mostly small (tiny … large)."""
    return float(rng.beta(1.0, 2.6))


def _table_radius(anatomy: HeadAnatomy, direction: np.ndarray) -> float:
    probe = (direction * 10.0).astype(np.float32)
    return float(anatomy.vault_depth(*(probe[i : i + 1] for i in range(3)))[0]) + 10.0


def _convexity_direction(rng: np.random.Generator, z_range: tuple[float, float]) -> np.ndarray:
    side = rng.choice([-1.0, 1.0])
    azimuth = rng.uniform(-np.pi / 2 * 0.9, np.pi / 2 * 0.9)  # front … back, on one side
    elevation = rng.uniform(*z_range)
    v = np.array([side * np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
    return v / np.linalg.norm(v)


def _inside_brain(anatomy: HeadAnatomy, point: np.ndarray, margin: float) -> bool:
    p = point.astype(np.float32)
    x, y, z = (p[i : i + 1] for i in range(3))
    depth = min(float(anatomy.vault_depth(x, y, z)[0]), float(z[0] - anatomy.floor_height(x, y)[0]))
    return depth > margin and not bool(anatomy.ventricles(x, y, z)[0])


def sample_lesion(subtype: str, rng: np.random.Generator, anatomy: HeadAnatomy) -> list[Lesion]:
    """One hemorrhage of `subtype` (plus nothing else) for this patient, of random size and place."""
    size = _size(rng)
    blood = float(rng.uniform(52, 88))
    if subtype == "epidural":
        u = _convexity_direction(rng, (-0.15, 0.7))
        extent = 12.0 + 28.0 * size
        return [Epidural(tuple(u), _table_radius(anatomy, u), extent, min(0.45 * extent, 2.5 + 17.0 * size), blood)]
    if subtype == "subdural":
        u = _convexity_direction(rng, (-0.05, 0.8))
        return [Subdural(tuple(u), _table_radius(anatomy, u), 30.0 + 55.0 * size, 1.5 + 16.0 * size ** 1.3, blood)]
    if subtype == "subarachnoid":
        kind = rng.choice(["convexity", "sylvian", "basal"], p=[0.5, 0.25, 0.25])
        if kind == "convexity":
            u = _convexity_direction(rng, (0.0, 0.9))
            centre = u * (_table_radius(anatomy, u) - 8.0)
        elif kind == "sylvian":
            centre = np.array([rng.choice([-1.0, 1.0]) * rng.uniform(30, 50), rng.uniform(-25, 5), -8.0])
        else:
            centre = np.array([rng.uniform(-5, 5), rng.uniform(0, 12), rng.uniform(-22, -12)])
        dirs = rng.normal(size=(3, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        waves = tuple((*(d * 2 * np.pi / rng.uniform(12, 25)), rng.uniform(0, 2 * np.pi)) for d in dirs)
        return [Subarachnoid(tuple(centre), 12.0 + 33.0 * size, waves, float(rng.uniform(50, 78)))]  # type: ignore[arg-type]
    if subtype == "intraparenchymal":
        radius = 3.0 + 18.0 * size
        for _ in range(50):
            site = rng.choice(["basal ganglia", "thalamus", "lobar", "cerebellum"], p=[0.35, 0.15, 0.4, 0.1])
            side = rng.choice([-1.0, 1.0])
            if site == "basal ganglia":
                centre = np.array([side * 18.0, -3.0, 0.0]) + rng.normal(0, 3, 3)
            elif site == "thalamus":
                centre = np.array([side * 11.0, 13.0, 2.0]) + rng.normal(0, 2, 3)
            elif site == "cerebellum":
                centre = np.array([side * 24.0, 45.0, -46.0]) + rng.normal(0, 4, 3)
                radius = min(radius, 14.0)
            else:
                u = _convexity_direction(rng, (-0.1, 0.8))
                centre = u * (_table_radius(anatomy, u) - radius - rng.uniform(6, 14))
            if _inside_brain(anatomy, centre, margin=0.6 * radius):
                break
        radii = tuple(radius * rng.uniform(0.75, 1.25, 3))
        d = rng.normal(size=3)
        wave = (*(d / np.linalg.norm(d) * 2 * np.pi / max(radius, 4.0)), float(rng.uniform(0, 2 * np.pi)))
        return [Intraparenchymal(tuple(centre), radii, float(1.5 + 5.0 * size * rng.uniform(0.5, 1.0)), wave,  # type: ignore[arg-type]
                                 blood, float(anatomy.white_hu - rng.uniform(8, 14)))]
    if subtype == "intraventricular":
        # Levels along gravity (≈ +y in the head frame): atria/occipital horns lie at y ≈ 20–45.
        level = -1e3 if rng.random() < 0.2 + 0.3 * size else float(38.0 - 20.0 * size)
        return [Intraventricular(level, blood)]
    raise ValueError(f"unknown subtype {subtype!r}")
