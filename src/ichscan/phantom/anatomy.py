"""Analytic head anatomy: tissues and their Hounsfield units as functions of head-frame position.

Every structure is a smooth analytic shape evaluated on whole coordinate arrays (head frame, mm;
x → left, y → posterior, z → superior, origin near the foramen of Monro):

* cranial vault: a superquadric, normalised radius ρ² = (x/a)² + (y/b)² + |z/c|^p (p = 2 above,
  3 below), times a smooth low-order asymmetry; the radial depth below the inner table is
  d = r (1/ρ − 1), r = ‖q‖ (exact along the ray);
* skull base: a floor height z_f(x, y) (anterior fossa, middle fossae, petrous ridges, clivus,
  posterior fossa); depth above it d_f = z − z_f; the cranial cavity is min(d, d_f) > 0;
* scalp, skull (cortical tables and diploë), partial volume at the inner table that widens
  where the vault runs oblique to the slice (vertex);
* brain: white matter, a cortical ribbon, deep grey nuclei, sulci = thin shells |S| < w around the
  zero set of a band-limited random field S(q) = Σ cos(k_i·q + φ_i), evaluated partly along the
  radius so that sulci run inwards from the surface (wider and deeper with age),
  interhemispheric and Sylvian fissures, basal cisterns, falx, tentorium;
* ventricles: unions of ellipsoids (frontal horns, bodies, atria, temporal horns, 3rd, 4th)
  scaled with age; venous sinuses and calcifications (pineal, choroid plexus, falx, basal
  ganglia) as dense normal structures that look like blood to an intensity-only classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

F32 = np.float32


def _sigmoid(v: np.ndarray) -> np.ndarray:
    """A smooth step from 0 to 1 over v ∈ [−2, 2] (piecewise linear: cheap on large arrays)."""
    return np.clip(F32(0.5) + F32(0.25) * v, F32(0.0), F32(1.0))


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned ellipsoid in the head frame (centre, semi-axes in mm)."""

    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]

    def norm(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Squared normalised radius: < 1 inside."""
        (cx, cy, cz), (a, b, c) = self.centre, self.semi_axes
        return ((x - F32(cx)) / F32(a)) ** 2 + ((y - F32(cy)) / F32(b)) ** 2 + ((z - F32(cz)) / F32(c)) ** 2

    def contains(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.norm(x, y, z) < 1


@dataclass(frozen=True)
class Calcification:
    """A small dense focus (pineal, choroid plexus, falx, basal ganglia)."""

    where: Ellipsoid
    hounsfield: float
    name: str


@dataclass(frozen=True)
class HeadAnatomy:
    """One patient's anatomy: sizes, densities, age-dependent atrophy, random fields."""

    semi_axes: tuple[float, float, float, float]  # a (lateral), b (AP), c up, c down (inner table)
    skull_thickness: float
    scalp_thickness: float
    shape_terms: tuple[float, float, float, float]  # asymmetry: AP taper, skew, vertical taper, lateral
    sulcal_waves: np.ndarray  # (n, 3) wave vectors, rad/mm
    sulcal_phases: np.ndarray  # (n,)
    age_years: int
    atrophy: float  # 0 (young) … 1 (old)
    grey_hu: float
    white_hu: float
    csf_hu: float
    cortical_bone_hu: float
    diploe_hu: float
    scalp_hu: float
    sinus_hu: float
    dura_hu: float
    falx_half_width: float  # mm
    ventricle_scale: float
    calcifications: tuple[Calcification, ...] = field(default_factory=tuple)

    @classmethod
    def sample(cls, rng: np.random.Generator, age_years: int) -> HeadAnatomy:
        """Draw one patient's anatomy; older heads get wider sulci and larger ventricles."""
        size = rng.uniform(0.92, 1.06)
        a, b = 68.0 * size * rng.uniform(0.94, 1.06), 86.0 * size * rng.uniform(0.95, 1.05)
        c_up, c_down = 66.0 * size * rng.uniform(0.95, 1.05), 78.0 * size
        atrophy = float(np.clip((age_years - 35) / 50, 0, 1) * rng.uniform(0.5, 1.0))
        n_waves = 8
        wave_dirs = rng.normal(size=(n_waves, 3))
        wave_dirs /= np.linalg.norm(wave_dirs, axis=1, keepdims=True)
        sulcal = wave_dirs * (2 * np.pi / rng.uniform(14, 22, size=(n_waves, 1)))
        grey = rng.uniform(34, 46)
        calcs: list[Calcification] = []
        if rng.random() < 0.65:
            r = rng.uniform(1.5, 3.5)
            calcs.append(Calcification(Ellipsoid((0.0, 20.0, -3.0), (r, r, r)), rng.uniform(90, 300), "pineal"))
        if rng.random() < 0.5:
            for side in (-1, 1):
                r = rng.uniform(1.5, 3.5)
                calcs.append(Calcification(
                    Ellipsoid((side * 21.0, 30.0, 8.0), (r, 1.3 * r, r)), rng.uniform(70, 200), "choroid plexus"))
        if rng.random() < 0.3:
            centre = (0.0, rng.uniform(-40, 40), rng.uniform(25, 50))
            calcs.append(Calcification(
                Ellipsoid(centre, (1.2, rng.uniform(3, 9), rng.uniform(3, 8))), rng.uniform(100, 400), "falx"))
        if rng.random() < 0.15 + 0.3 * atrophy:
            r = rng.uniform(1.5, 3.0)
            for side in (-1, 1):
                calcs.append(Calcification(
                    Ellipsoid((side * 17.0, -2.0, -3.0), (r, 1.5 * r, r)), rng.uniform(80, 250), "basal ganglia"))
        return cls(
            semi_axes=(a, b, c_up, c_down),
            skull_thickness=rng.uniform(5.0, 8.0),
            scalp_thickness=rng.uniform(4.0, 7.0),
            shape_terms=(rng.uniform(-0.06, 0.02), rng.uniform(-0.04, 0.04), rng.uniform(-0.03, 0.03),
                         rng.uniform(-0.02, 0.02)),
            sulcal_waves=sulcal,
            sulcal_phases=rng.uniform(0, 2 * np.pi, n_waves),
            age_years=age_years,
            atrophy=atrophy,
            grey_hu=grey,
            white_hu=grey - rng.uniform(7, 12),
            csf_hu=rng.uniform(2, 10),
            cortical_bone_hu=rng.uniform(1300, 1900),
            diploe_hu=rng.uniform(450, 850),
            scalp_hu=rng.uniform(-20, 35),
            sinus_hu=rng.uniform(48, 75),
            dura_hu=rng.uniform(45, 80),
            falx_half_width=rng.uniform(0.5, 1.4),
            ventricle_scale=float((0.85 + 0.75 * atrophy) * rng.uniform(0.85, 1.15)),
            calcifications=tuple(calcs),
        )

    # ----- geometry fields (all evaluated on arrays, used by the lesions too) -----

    def vault_depth(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Radial depth below the inner table of the vault, mm (negative outside).

        ρ² = (x/a)² + (y/b)² + |z/c|^p (p = 2 above, 3 below: the fossae are boxier), times a
        smooth low-order asymmetry (1 + Σ e_i m_i(x/a, y/b, z/c))²; depth = r (1/ρ − 1), r = ‖q‖.
        """
        a, b, c_up, c_down = self.semi_axes
        xa, yb = x * F32(1 / a), y * F32(1 / b)
        zc = np.abs(z * np.where(z > 0, F32(1 / c_up), F32(1 / c_down)))
        rho = xa * xa
        rho += yb * yb
        rho += np.where(z > 0, zc * zc, zc * zc * zc)
        e = self.shape_terms
        wobble = F32(1.0) + F32(e[0]) * yb + F32(e[1]) * (xa * yb) + F32(e[2]) * (zc * yb) + F32(e[3]) * xa
        np.sqrt(rho, out=rho)
        rho *= wobble
        r = np.sqrt(x * x + y * y + z * z)
        r += F32(1e-3)
        np.maximum(rho, F32(1e-3), out=rho)
        return r / rho - r

    def floor_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the skull base under (x, y): fossae, petrous ridges and clivus, mm."""
        ax = np.abs(x)
        y_sphenoid = F32(-12.0) - F32(0.3) * ax
        y_petrous = F32(8.0) + F32(0.7) * ax
        anterior = F32(-21.0) - F32(7.0) * np.exp(-((ax / F32(8.0)) ** 2))
        middle = F32(-27.0) - F32(22.0) * _sigmoid((ax - F32(20.0)) / F32(4.0))
        clivus = np.maximum(F32(-78.0), F32(-24.0) - F32(1.3) * (y - F32(8.0)))
        posterior = F32(-78.0) + (clivus + F32(78.0)) * _sigmoid((F32(14.0) - ax) / F32(3.0))
        s_ant = _sigmoid((y - y_sphenoid) / F32(2.5))
        s_pet = _sigmoid((y - y_petrous) / F32(2.5))
        floor = anterior * (1 - s_ant) + s_ant * ((1 - s_pet) * middle + s_pet * posterior)
        # Petrous pyramids: a wedge of bone rising to a crest along the ridge line (≈ 12 mm wide).
        ridge_dist = np.abs(y - y_petrous) / F32(1.22)
        crest = F32(-30.0) - F32(0.1) * ax
        pyramid = crest - F32(2.2) * ridge_dist
        floor = np.where((ax > F32(10.0)) & (pyramid > floor), pyramid, floor)
        return floor

    def sulcal_field(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Band-limited random field whose zero set traces the sulci (unit variance)."""
        total = np.zeros_like(x)
        for (kx, ky, kz), phase in zip(self.sulcal_waves, self.sulcal_phases):
            total += np.cos(F32(kx) * x + F32(ky) * y + F32(kz) * z + F32(phase))
        return total * F32(np.sqrt(2.0 / len(self.sulcal_phases)))

    def ventricles(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Lateral, third and fourth ventricles (bool), sized by `ventricle_scale`."""
        s = self.ventricle_scale
        inside = np.zeros(x.shape, dtype=bool)
        for side in (-1.0, 1.0):
            for centre, semi in (
                ((side * (3.5 + 4.5 * s), -24.0, 11.0), (4.5 * s, 13.0, 7.5 * s)),  # frontal horn
                ((side * (3.5 + 5.0 * s), 4.0, 17.0), (5.0 * s, 24.0, 5.0 * s)),  # body
                ((side * (14.0 + 4.0 * s), 30.0, 7.0), (6.5 * s, 13.0, 8.0 * s)),  # atrium / occipital horn
                ((side * 29.0, 4.0, -14.0), (2.5 * s, 14.0, 3.5 * s)),  # temporal horn
            ):
                inside |= Ellipsoid(centre, semi).contains(x, y, z)
        inside |= Ellipsoid((0.0, 6.0, -3.0), (1.2 + 1.8 * s, 13.0, 8.0)).contains(x, y, z)  # third
        inside |= Ellipsoid((0.0, 38.0, -42.0), (5.5 * s, 3.5 * s, 6.0)).contains(x, y, z)  # fourth
        return inside

    def tentorium_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the tentorium cerebelli (separates cerebrum from the posterior fossa)."""
        return F32(-18.0) - F32(0.28) * np.abs(x) - F32(0.22) * np.maximum(y - F32(10.0), F32(0.0))


Box = tuple[slice, slice, slice]


def head_box(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, lo: tuple[float, float, float], hi: tuple[float, float, float],
    step: int = 4,
) -> Box | None:
    """Index box of the voxels whose head coordinates fall in [lo, hi] (None when none do).

    Tested on every `step`-th row and column with the box grown by `step` pixels' extent (the
    coordinates are affine, so nothing between tested pixels is missed); lets costly structures be
    evaluated only where they live.
    """
    pad = 0.0
    if x.shape[1] > 1 and x.shape[2] > 1:  # grow the box by what lies between tested pixels
        pad = step * max(float(abs(v[0, 1, 0] - v[0, 0, 0]) + abs(v[0, 0, 1] - v[0, 0, 0])) for v in (x, y, z))
    lo = tuple(v - pad for v in lo)
    hi = tuple(v + pad for v in hi)
    xs, ys, zs = (v[:, ::step, ::step] for v in (x, y, z))
    hit = (
        (xs >= lo[0]) & (xs <= hi[0]) & (ys >= lo[1]) & (ys <= hi[1]) & (zs >= lo[2]) & (zs <= hi[2])
    )
    if not hit.any():
        return None
    ks = np.flatnonzero(hit.any(axis=(1, 2)))
    rs = np.flatnonzero(hit.any(axis=(0, 2)))
    cs = np.flatnonzero(hit.any(axis=(0, 1)))
    return (
        slice(int(ks[0]), int(ks[-1]) + 1),
        slice(max(0, (int(rs[0]) - 1) * step), (int(rs[-1]) + 2) * step),
        slice(max(0, (int(cs[0]) - 1) * step), (int(cs[-1]) + 2) * step),
    )


@dataclass
class AnatomyVolume:
    """Rendered anatomy of a block of slices plus the region maps the lesions are placed by."""

    hounsfield: np.ndarray  # float32 (n, H, W), before blur and noise
    depth: np.ndarray  # float32 mm below the inner table (vault or base), negative outside
    parenchyma: np.ndarray  # bool: grey or white matter
    csf_spaces: np.ndarray  # bool: subarachnoid CSF (sulci, fissures, cisterns, convexity)
    ventricles: np.ndarray  # bool
    intracranial: np.ndarray  # bool: depth > 0
    supratentorial: np.ndarray  # bool: above the tentorium (cerebrum)


def render_anatomy(anatomy: HeadAnatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> AnatomyVolume:
    """Hounsfield units and region maps of `anatomy` at head-frame coordinates (float32 arrays)."""
    A = anatomy
    a_axis, b_axis, c_up, _ = A.semi_axes
    t_skull, t_scalp = F32(A.skull_thickness), F32(A.scalp_thickness)
    d_vault = A.vault_depth(x, y, z)
    d_floor = np.full(x.shape, F32(1e3))
    base = head_box(x, y, z, (-200, -200, -200), (200, 200, -12.0))
    if base is not None:
        low = (z[base] < F32(-12.0)) & (d_vault[base] > -t_skull)  # the floor never rises above −12 mm
        bx, by = x[base][low], y[base][low]
        d_floor[base][low] = z[base][low] - A.floor_height(bx, by)
    depth = np.minimum(d_vault, d_floor)
    intracranial = depth > 0
    head = d_vault > -(t_skull + t_scalp)

    # Outside the cranial cavity: air, scalp, skull (tables + diploë), skull base, facial cavities.
    hu = np.full(x.shape, F32(-1000.0))
    hu[head] = F32(A.scalp_hu)
    skull = (d_vault > -t_skull) & ~intracranial
    u = np.clip(d_vault[skull] / -t_skull, 0, 1)  # 0 inner table … 1 outer table
    table = np.abs(F32(2.0) * u - F32(1.0)) ** 3  # 1 at both tables, 0 mid-diploë
    hu[skull] = F32(A.diploe_hu) + (F32(A.cortical_bone_hu) - F32(A.diploe_hu)) * table
    if base is not None:
        _render_skull_base(A, hu[base], x[base], y[base], z[base], d_vault[base], d_floor[base], skull[base])

    # Inside: white matter, then grey matter, CSF spaces, ventricles, dura, sinuses, calcifications.
    hu[intracranial] = F32(A.white_hu)
    tent = np.full(x.shape, F32(-1e3))
    low = head_box(x, y, z, (-200, 0.0, -200), (200, 200, -10.0))
    if low is not None:
        tent[low] = A.tentorium_height(x[low], y[low])
    supra = intracranial & ((z > tent) | (y < F32(12.0)))
    grey = np.zeros(x.shape, dtype=bool)
    csf = np.zeros(x.shape, dtype=bool)
    ventricles = np.zeros(x.shape, dtype=bool)

    # Cortex and sulci: a ribbon below the surface; sulci follow the zero set of a random field
    # evaluated at q (0.7 + 21 mm/‖q‖) (partly radial, partly 3-D), narrowing with depth.
    g = F32(0.8 + 2.7 * A.atrophy)  # convexity CSF thickness
    sulcal_depth = F32(7.0 + 6.0 * A.atrophy)
    band = intracranial & (depth < g + sulcal_depth + F32(3.0))
    bx, by, bz, d_band = x[band], y[band], z[band], depth[band]
    radius = np.sqrt(bx * bx + by * by + bz * bz) + F32(1e-3)
    scale = F32(0.7) + F32(21.0) / radius  # partly radial, partly 3-D: sulci wiggle as they deepen
    s_abs = np.abs(A.sulcal_field(bx * scale, by * scale, bz * scale))
    open_width = F32(0.10 + 0.16 * A.atrophy) * np.clip(F32(1.0) - (d_band - g) / sulcal_depth, 0, 1)
    grey[band] = ((s_abs < open_width + F32(0.28)) & (d_band < g + sulcal_depth + F32(2.5))) | (d_band < g + F32(3.0))
    csf[band] = (s_abs < open_width) | (d_band < g)

    core = head_box(x, y, z, (-50, -50, -56), (50, 56, 45))
    if core is not None:
        cx, cy, cz = x[core], y[core], z[core]
        ventricles[core] = A.ventricles(cx, cy, cz)
        deep_grey = np.zeros(cx.shape, dtype=bool)
        for centre, semi in (((17.0, -4.0, -1.0), (9.0, 17.0, 10.0)), ((9.0, 13.0, 1.0), (8.0, 10.0, 8.0))):
            for side in (-1.0, 1.0):  # lentiform + caudate region, thalamus
                deep_grey |= Ellipsoid((side * centre[0], centre[1], centre[2]), semi).contains(cx, cy, cz)
        grey[core] |= deep_grey
        rho_mb = (cx / F32(13.0)) ** 2 + ((cy - F32(14.0)) / F32(11.0)) ** 2
        level = (cz > -26) & (cz < -6)
        cisterns = level & (rho_mb > 1) & (rho_mb < F32((1.35 + 0.15 * A.atrophy) ** 2))
        cisterns |= level & (cz < -15) & ((cx / F32(11.0)) ** 2 + ((cy + F32(4.0)) / F32(8.0)) ** 2 < 1)
        csf[core] |= cisterns
        # Brainstem is white matter; the rest of the posterior fossa (cerebellum) mostly grey.
        stem = Ellipsoid((0.0, 22.0, -40.0), (13.0, 12.0, 22.0)).contains(cx, cy, cz)
        grey[core] |= ~stem & ~supra[core] & (cz < -18)
    ventricles &= intracranial
    grey |= intracranial & ~supra & (z < -56)

    ax = np.abs(x)
    fissure = supra & (ax < F32(A.falx_half_width + 0.4 + 2.2 * A.atrophy)) & (
        (z > F32(27.0) - F32(0.011) * y * y) | (np.abs(y) > F32(52.0)))
    csf |= fissure
    # Sylvian fissures: a thin, slightly wavy cleft from the suprasellar cistern to the lateral
    # surface (through (±22, −8) and (±60, −14) in each axial section), between z ≈ −20 and 2 mm.
    sylvian_box = head_box(x, y, z, (-200, -40, -22), (200, 16, 4))
    if sylvian_box is not None:
        sx, sy, sz = np.abs(x[sylvian_box]), y[sylvian_box], z[sylvian_box]
        wiggle = F32(1.8) * np.sin(sx * F32(0.21))
        distance = np.abs((sx - F32(22.0)) * F32(0.156) + (sy + F32(8.0)) * F32(0.987) + wiggle)
        csf[sylvian_box] |= (
            (sx > F32(20.0)) & (sy > F32(-40.0)) & (sy < F32(16.0)) & (sz > F32(-20.0)) & (sz < F32(2.0))
            & (distance < F32(0.8 + 1.4 * A.atrophy))
        )
    csf &= intracranial & ~ventricles
    grey &= intracranial & ~csf & ~ventricles
    hu[grey] = F32(A.grey_hu)
    hu[csf | ventricles] = F32(A.csf_hu)

    # Dura: falx in the fissure midline, tentorium sheet; venous sinuses near blood density.
    hu[fissure & (ax < F32(A.falx_half_width))] = F32(A.dura_hu)
    if low is not None:
        lt, ly, lx, lin = tent[low], y[low], ax[low], intracranial[low]
        near_tent = np.abs(z[low] - lt)
        hu[low][lin & (near_tent < F32(0.9)) & (ly > F32(14.0))] = F32(A.dura_hu)
        straight = lin & (lx < F32(3.0)) & (near_tent < F32(3.0)) & (ly > F32(22.0))
        transverse = lin & (depth[low] < F32(5.5)) & (np.abs(z[low] + F32(30.0) - F32(0.05) * lx) < F32(3.5)) & (
            ly > F32(0.45 * b_axis))
        hu[low][straight | transverse] = F32(A.sinus_hu)
    sss_width = F32(3.0) + F32(2.5) * np.clip(y / F32(b_axis) + 1, 0, 2) / 2 - F32(0.6) * depth
    hu[intracranial & (ax < sss_width) & (depth < F32(8.0)) & (z > F32(-22.0))] = F32(A.sinus_hu)
    for calc in A.calcifications:
        (ccx, ccy, ccz), (ra, rb, rc) = calc.where.centre, calc.where.semi_axes
        box = head_box(x, y, z, (ccx - ra, ccy - rb, ccz - rc), (ccx + ra, ccy + rb, ccz + rc))
        if box is not None:
            hu[box][calc.where.contains(x[box], y[box], z[box]) & intracranial[box]] = F32(calc.hounsfield)

    # Partial volume at the inner table: a ramp whose width grows where the vault is oblique
    # to the slice (towards the vertex), mixing bone into the outermost millimetres of brain.
    rim = intracranial & (d_vault < F32(4.0)) & (d_floor > F32(4.0))
    ramp_width = F32(0.8) + F32(2.5) * np.clip(z[rim] / F32(c_up), 0, 1) ** 2
    bone_fraction = np.clip(F32(0.5) - d_vault[rim] / ramp_width, 0, 1)
    hu[rim] += bone_fraction * (F32(A.cortical_bone_hu) - hu[rim])
    return AnatomyVolume(
        hounsfield=hu,
        depth=depth,
        parenchyma=intracranial & ~csf & ~ventricles,
        csf_spaces=csf,
        ventricles=ventricles,
        intracranial=intracranial,
        supratentorial=supra,
    )


def _render_skull_base(
    A: HeadAnatomy, hu: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray,
    d_vault: np.ndarray, d_floor: np.ndarray, skull: np.ndarray,
) -> None:
    """Skull base (in place on the `hu` view): dense bone under the floor, then soft tissue with
    the sphenoid sinus, nasal cavity, mastoid air cells and the orbits (fat + globe)."""
    below = (d_floor < 0) & (d_vault > 0)
    hu[below & ~skull] = F32(A.cortical_bone_hu) * F32(0.8)
    deep = below & (d_floor < F32(-5.0))
    if not deep.any():
        return
    bx, by, bz = x[deep], y[deep], z[deep]
    a, b = A.semi_axes[0], A.semi_axes[1]
    abs_x = np.abs(bx)
    tissue = np.full(bx.shape, F32(45.0))  # muscle / soft tissue
    anterior = by < F32(-12.0) - F32(0.3) * abs_x
    tissue[anterior] = F32(350.0)  # facial bones and sinus walls
    tissue[Ellipsoid((0.0, -b + 22.0, -36.0), (11.0, 20.0, 12.0)).contains(bx, by, bz)] = -750.0  # ethmoid
    tissue[Ellipsoid((0.0, -6.0, -44.0), (15.0, 12.0, 11.0)).contains(bx, by, bz)] = -950.0  # sphenoid sinus
    for side in (-1.0, 1.0):
        tissue[Ellipsoid((side * (a - 20.0), 24.0, -52.0), (10.0, 12.0, 10.0)).contains(bx, by, bz)] = -550.0
        orbit = Ellipsoid((side * 30.0, -b + 16.0, -40.0), (15.0, 24.0, 15.0)).contains(bx, by, bz)
        tissue[orbit] = -90.0  # orbital fat
        tissue[orbit & Ellipsoid((side * 30.0, -b + 6.0, -40.0), (11.5, 11.5, 11.5)).contains(bx, by, bz)] = 12.0
    hu[deep] = tissue
