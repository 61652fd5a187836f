"""Each hemorrhage subtype obeys its anatomy, density and shape, checked on generated volumes
(noise-free head painted on a 2 mm head-frame grid)."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
import pytest
from scipy import ndimage

from ichscan.labels import SUBTYPES
from ichscan.phantom.anatomy import AnatomyVolume, HeadAnatomy, render_anatomy
from ichscan.phantom.config import PhantomConfig
from ichscan.phantom.geometry import HeadPose
from ichscan.phantom.hemorrhage import (
    SUBTYPE_BIT,
    Epidural,
    Intraparenchymal,
    Intraventricular,
    Subarachnoid,
    Subdural,
    sample_lesion,
)
from ichscan.phantom.study import StudyPlan, paint_study, plan_study

SPACING = 2.0
N_DRAWS = 4  # lesions per subtype, each on its own patient


@lru_cache(maxsize=1)
def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = [np.arange(lo, hi, SPACING, dtype=np.float32) for lo, hi in ((-80, 80), (-100, 100), (-70, 86))]
    return tuple(np.ascontiguousarray(v) for v in np.meshgrid(*axes, indexing="ij"))  # type: ignore[return-value]


def _plan_with(subtype: str, draw: int) -> StudyPlan:
    """A study of one upright patient with exactly one lesion of `subtype`."""
    config = PhantomConfig(size=64, positive_fraction=0.0)
    plan = plan_study(draw, 11, config, set())
    rng = np.random.default_rng([draw, SUBTYPES.index(subtype)])
    lesions = tuple(sample_lesion(subtype, rng, plan.anatomy))
    return dataclasses.replace(plan, lesions=lesions, pose=HeadPose(np.zeros(3), np.eye(3)))


@lru_cache(maxsize=None)
def _painted(subtype: str, draw: int) -> tuple[StudyPlan, np.ndarray, np.ndarray, AnatomyVolume]:
    plan = _plan_with(subtype, draw)
    hu, mask, volume = paint_study(plan, *_grid())
    return plan, hu, mask, volume


def _lesion_mask(subtype: str, draw: int) -> np.ndarray:
    _, _, mask, _ = _painted(subtype, draw)
    return (mask & SUBTYPE_BIT[subtype]) > 0


@pytest.mark.parametrize("subtype", SUBTYPES)
def test_blood_is_50_to_90_hu_and_a_3d_object(subtype: str) -> None:
    for draw in range(N_DRAWS):
        plan, hu, _, volume = _painted(subtype, draw)
        inside = _lesion_mask(subtype, draw)
        assert inside.sum() >= 1, f"{subtype} draw {draw}: empty mask"
        blood = hu[inside]
        # max(tissue, blood): never below the clot's density, and at its density away from bone.
        assert np.percentile(blood, 1) >= 50.0
        away_from_bone = hu[inside & (volume.depth > 4.0)]  # beyond the inner table's partial volume
        if away_from_bone.size:
            assert 50.0 <= np.median(away_from_bone) <= 90.0
        assert all(50.0 <= lesion.hounsfield <= 90.0 for lesion in plan.lesions)
        slices_with_blood = np.flatnonzero(inside.any(axis=(0, 1)))  # axis 2 is z (height)
        if subtype in ("epidural", "subdural", "intraparenchymal"):  # one body: contiguous in height
            assert np.all(np.diff(slices_with_blood) == 1)


@pytest.mark.parametrize("draw", range(N_DRAWS))
def test_epidural_is_a_lens_against_the_inner_table_within_one_plate(draw: int) -> None:
    plan, _, _, volume = _painted("epidural", draw)
    (lesion,) = plan.lesions
    assert isinstance(lesion, Epidural)
    inside = _lesion_mask("epidural", draw)
    x, y, z = _grid()
    assert np.all(volume.intracranial[inside])
    depth = volume.depth[inside]
    assert depth.max() <= lesion.thickness + 1e-3
    assert depth.min() < SPACING  # touches the inner table
    # Does not cross the sagittal suture (one side of the midline) nor the coronal suture.
    assert np.all(np.sign(x[inside]) == np.sign(lesion.direction[0]))
    coronal = y[inside] - (-12.0 + 0.3 * z[inside])
    assert np.all(coronal > 0) or np.all(coronal <= 0)
    # Lentiform: thickest in its middle, thin at its edges.
    r = np.sqrt(x**2 + y**2 + z**2)[inside]
    u = np.stack([x[inside], y[inside], z[inside]]) / r
    s = lesion.table_radius * np.linalg.norm(u - np.asarray(lesion.direction)[:, None], axis=0)
    central, rim = s < lesion.extent / 3, s > 2 * lesion.extent / 3
    if central.any() and rim.any():
        assert depth[central].max() > depth[rim].max()


@pytest.mark.parametrize("draw", range(N_DRAWS))
def test_subdural_is_a_crescent_over_one_hemisphere(draw: int) -> None:
    plan, _, _, volume = _painted("subdural", draw)
    (lesion,) = plan.lesions
    assert isinstance(lesion, Subdural)
    inside = _lesion_mask("subdural", draw)
    x, y, z = _grid()
    assert np.all(volume.intracranial[inside] & volume.supratentorial[inside])
    assert volume.depth[inside].max() <= lesion.thickness + 1e-3
    assert np.all(x[inside] * np.sign(lesion.direction[0]) > 0)  # does not cross the falx
    # Crescent: far longer along the convexity than it is thick.
    length = max(np.ptp(y[inside]), np.ptp(z[inside])) + SPACING
    assert length > 2.5 * volume.depth[inside].max()


@pytest.mark.parametrize("draw", range(N_DRAWS))
def test_subarachnoid_lies_in_sulci_and_cisterns_and_is_thin(draw: int) -> None:
    plan, _, _, volume = _painted("subarachnoid", draw)
    assert all(isinstance(lesion, Subarachnoid) for lesion in plan.lesions)
    inside = _lesion_mask("subarachnoid", draw)
    assert np.all(volume.csf_spaces[inside])
    assert not np.any(volume.ventricles[inside] | volume.parenchyma[inside])
    core = ndimage.binary_erosion(inside)
    assert core.sum() <= 0.35 * inside.sum()  # thin and serpiginous: mostly boundary voxels


@pytest.mark.parametrize("draw", range(N_DRAWS))
def test_intraparenchymal_is_a_rounded_clot_in_brain_with_an_oedema_rim(draw: int) -> None:
    plan, hu, _, volume = _painted("intraparenchymal", draw)
    (lesion,) = plan.lesions
    assert isinstance(lesion, Intraparenchymal)
    inside = _lesion_mask("intraparenchymal", draw)
    assert np.all(volume.intracranial[inside]) and not np.any(volume.ventricles[inside])
    assert volume.parenchyma[inside].mean() >= 0.7
    ellipsoid = 4 / 3 * np.pi * np.prod(lesion.radii) / SPACING**3
    assert 0.3 * ellipsoid <= inside.sum() <= 1.6 * ellipsoid + 8
    if min(lesion.radii) > 3 * SPACING:
        ring = ndimage.binary_dilation(inside, iterations=1) & ~inside & volume.parenchyma
        assert np.median(hu[ring]) < min(plan.anatomy.white_hu, plan.anatomy.grey_hu)  # hypodense oedema


@pytest.mark.parametrize("draw", range(N_DRAWS))
def test_intraventricular_blood_fills_the_dependent_ventricles(draw: int) -> None:
    plan, _, _, volume = _painted("intraventricular", draw)
    (lesion,) = plan.lesions
    assert isinstance(lesion, Intraventricular)
    inside = _lesion_mask("intraventricular", draw)
    _, y, _ = _grid()
    assert np.all(volume.ventricles[inside])
    below_level = volume.ventricles & (y > lesion.level)  # the upright pose: gravity is +y (posterior)
    np.testing.assert_array_equal(inside, below_level)
    assert inside.any()


def test_anatomy_has_the_expected_densities() -> None:
    anatomy = HeadAnatomy.sample(np.random.default_rng(5), age_years=40)
    volume = render_anatomy(anatomy, *_grid())
    hu = volume.hounsfield
    assert np.median(hu[volume.ventricles]) == pytest.approx(anatomy.csf_hu)
    skull = (volume.depth < -1.0) & (volume.depth > -anatomy.skull_thickness + 1.0)
    assert 300 < np.median(hu[skull]) < 2000
    assert np.median(hu[volume.parenchyma]) == pytest.approx(anatomy.white_hu, abs=8)
    assert hu.min() >= -1000
    # Ventricles sit inside the brain, near the midline.
    x, _, _ = _grid()
    assert np.abs(x[volume.ventricles]).max() < 45
