"""`ichscan explain`: heatmaps of a trained run on chosen (or the most suspicious) slices, as PNG.

For every explained slice and each class predicted present (probability ≥ threshold; ``any`` when
none is) one figure ``OUT/<image_id>_<label>.png`` shows the brain-windowed slice, Grad-CAM,
Grad-CAM++ and the input-gradient saliency; ``OUT/explanations.csv`` lists them with the peak
position of every map.

The maps are computed on the network's grid and mapped back onto the original DICOM matrix
(`ichscan.data.contract.SliceGeometry`: the inverse of the cache's crop and both resizes) whenever
the slice's DICOM file is at hand, so the overlay shows the original image where the network looked
and the peaks are DICOM pixel coordinates (``grid`` = ``dicom``). Without the file (a cache given
alone) figure and peaks stay on the network grid (``grid`` = ``network``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import torch
from rich.progress import track
from torch import Tensor, nn

from ichscan.data.windows import ChannelSpec
from ichscan.explain.cam import class_activation_maps, find_target_layer
from ichscan.explain.overlay import save_explanation_figure
from ichscan.explain.saliency import input_gradient_saliency
from ichscan.files import atomic_path
from ichscan.labels import LABELS

__all__ = ["EXPLANATION_COLUMNS", "METHOD_TITLES", "explain_inputs", "explain_method", "explain_run", "explain_slices", "mask_to_input"]

METHOD_TITLES: Final[dict[str, str]] = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "saliency": "saliency"}
METHOD_ALIASES: Final[dict[str, str]] = {"gradcampp": "gradcam++"}  # spellings a shell takes unquoted


def explain_method(name: str) -> str:
    """`gradcam`, `gradcampp` (or `gradcam++`), `saliency` → the method name of `METHOD_TITLES`;
    ValueError naming the choices otherwise. The one table of explanation methods."""
    method = METHOD_ALIASES.get(name, name)
    if method not in METHOD_TITLES:
        raise ValueError(f"explain method {name!r}: use gradcam, gradcampp or saliency")
    return method
EXPLANATION_COLUMNS: Final[tuple[str, ...]] = (
    "image_id", "series_instance_uid", "slice_index", "label", "probability", "path", "grid",
    *(f"{method}_peak_{axis}" for method in METHOD_TITLES for axis in ("y", "x")),
)
DISPLAY = ChannelSpec(windows=("brain",), offsets=(0,))


def explain_inputs(
    model: nn.Module,
    x: Tensor,
    classes: Sequence[int] = range(len(LABELS)),
    methods: Sequence[str] = tuple(METHOD_TITLES),
) -> dict[str, np.ndarray]:
    """Maps ``(B, len(classes), H, W)`` in [0, 1] per method (``gradcam``, ``gradcam++``, ``saliency``)."""
    unknown = sorted(set(methods) - set(METHOD_TITLES))
    if unknown:
        raise ValueError(f"unknown explanation method(s) {unknown}; choose from {list(METHOD_TITLES)}")
    model = model.eval()
    layer = find_target_layer(model, x[:1]) if any(m != "saliency" for m in methods) else None
    maps: dict[str, np.ndarray] = {}
    for method in methods:
        if method == "saliency":
            maps[method] = input_gradient_saliency(model, x, classes)
        else:
            maps[method] = class_activation_maps(model, x, classes, method=method, target_layer=layer)  # type: ignore[arg-type]
    return maps


def mask_to_input(mask: np.ndarray, box: Sequence[int], cached: tuple[int, int], size: int) -> np.ndarray:
    """A mask ``(z, H0, W0)`` in DICOM geometry → the model input's ``(z, size, size)`` (size 0: cached).

    The cache crops ``box = (y0, y1, x0, x1)`` (which may reach past the matrix: no lesion there) and
    resizes to ``cached = (height, width)``; the mask follows with nearest-neighbour resampling, so
    bit codes stay intact.
    """
    y0, y1, x0, x1 = (int(v) for v in box)
    _, rows, columns = mask.shape
    top, left = max(0, -y0), max(0, -x0)
    padded = np.pad(mask, ((0, 0), (top, max(0, y1 - rows)), (left, max(0, x1 - columns))))
    region = padded[:, y0 + top : y1 + top, x0 + left : x1 + left]
    target = (size, size) if size else cached
    cropped = torch.from_numpy(np.ascontiguousarray(region).astype(np.float32))[None]
    resized = torch.nn.functional.interpolate(cropped, size=target, mode="nearest-exact")[0]
    return resized.numpy().astype(mask.dtype)


def explain_slices(
    loaded: Any,
    cache_dir: Path,
    slices: pd.DataFrame,
    out_dir: Path,
    *,
    threshold: float | Sequence[float] = 0.5,
    batch_size: int = 4,
    progress: bool = True,
    methods: Sequence[str] = tuple(METHOD_TITLES),
    probabilities: np.ndarray | None = None,
) -> pd.DataFrame:
    """Explain rows of a cache's slices table with a `LoadedModel`; write PNGs and explanations.csv.

    `threshold`: one value or one per label. `methods`: the panels drawn (and peaks recorded; the
    peak columns of other methods are left empty). `probabilities` ``(len(slices), 6)``, when given
    (e.g. an ensemble's), choose the explained classes instead of the model's own sigmoid.
    """
    from ichscan.data.contract import to_input_grid
    from ichscan.data.windows import apply_windows
    from ichscan.data.batches import iter_hu_batches

    out_dir = Path(out_dir)
    offsets = tuple(loaded.channel_spec.offsets)
    centre = offsets.index(0) if 0 in offsets else len(offsets) // 2
    model = loaded.model.eval()
    records: list[dict[str, Any]] = []
    batches = iter_hu_batches(Path(cache_dir), slices.reset_index(drop=True), offsets, batch_size)
    total = -(-len(slices) // batch_size)
    for rows, hu in track(batches, description="explain", total=total, disable=not progress, transient=True):
        x = loaded.contract.network_input(hu).float()
        if probabilities is None:
            with torch.no_grad():
                probs = torch.sigmoid(model(x).float()).numpy()
        else:
            probs = np.asarray(probabilities, dtype=np.float32)[np.asarray(rows)]
        present = probs >= np.asarray(threshold, dtype=np.float32)
        present[~present.any(axis=1), 0] = True  # nothing predicted: explain `any`
        classes = np.flatnonzero(present.any(axis=0)).tolist()  # only the maps some slice needs
        maps = explain_inputs(model, x, classes, methods)
        display = apply_windows(to_input_grid(hu[:, centre : centre + 1], loaded.size), DISPLAY)[:, 0]
        for b, row in enumerate(rows):
            meta = slices.iloc[int(row)]
            original = original_slice(meta)
            for column, k in enumerate(classes):
                if not present[b, k]:
                    continue
                label = LABELS[k]
                path = out_dir / f"{meta['image_id']}_{label}.png"
                panels = {METHOD_TITLES[m]: maps[m][b, column] for m in methods}
                image = display[b]
                if original is not None:
                    image, geometry = original
                    panels = {name: geometry.to_dicom(heatmap) for name, heatmap in panels.items()}
                save_explanation_figure(path, image, panels,
                                        title=f"{meta['image_id']}  {label}  p={probs[b, k]:.3f}")
                record: dict[str, Any] = {
                    "image_id": meta["image_id"], "series_instance_uid": meta["series_instance_uid"],
                    "slice_index": int(meta["slice_index"]), "label": label,
                    "probability": float(probs[b, k]), "path": str(path),
                    "grid": "network" if original is None else "dicom",
                }
                for method in methods:
                    heatmap = panels[METHOD_TITLES[method]]
                    y, x_peak = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
                    record[f"{method}_peak_y"], record[f"{method}_peak_x"] = int(y), int(x_peak)
                records.append(record)
    table = pd.DataFrame(records, columns=list(EXPLANATION_COLUMNS))
    with atomic_path(out_dir / "explanations.csv") as tmp:
        table.to_csv(tmp, index=False)
    return table


def original_slice(meta: pd.Series) -> tuple[np.ndarray, Any] | None:
    """The brain-windowed original DICOM slice of a cache row and its `SliceGeometry`, or None when
    the row lacks the crop box or its file cannot be read (the figure then stays on the network grid)."""
    import pydicom

    from ichscan.data.contract import SliceGeometry
    from ichscan.data.windows import apply_windows
    from ichscan.dicom import to_hounsfield

    needed = ("path", "rows", "columns", "crop_y0", "crop_y1", "crop_x0", "crop_x1")
    if any(key not in meta.index or pd.isna(meta[key]) for key in needed):
        return None
    try:
        hu = to_hounsfield(pydicom.dcmread(str(meta["path"])))
    except Exception:  # noqa: BLE001  (a moved or unreadable file: fall back to the network grid)
        return None
    geometry = SliceGeometry.of_slice(meta)
    if hu.shape != (geometry.rows, geometry.columns):
        return None
    return apply_windows(hu[None, None], DISPLAY)[0, 0], geometry


def explain_run(
    run_dir: Path,
    input_path: Path,
    out_dir: Path,
    *,
    image_ids: Sequence[str] = (),
    top_k: int = 3,
    threshold: float = 0.5,
    checkpoint: str = "best",
    progress: bool = True,
    fold: int | None = None,
) -> pd.DataFrame:
    """`ichscan explain RUN INPUT`: explain ``image_ids`` of INPUT, or each study's ``top_k`` slices
    by probability of ``any``. INPUT is a DICOM folder, a manifest or a cache (as for predict).

    RUN is resolved by `ichscan.train.resolve.resolve_run` and must name one network: one fold
    (``--fold K`` for a run with several); for a stage-2 run, its stage-1 network.
    """
    from ichscan.predict import prepare_input
    from ichscan.train.resolve import resolve_run, stage1_run
    from ichscan.train.run import load_model, predict_slices

    loaded = load_model(stage1_run(resolve_run(run_dir, fold).single("explain")), checkpoint)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".cache-", dir=out_dir)))
        prepared = prepare_input(Path(input_path), work, contract=loaded.contract, progress=progress)
        slices = prepared.slices.reset_index(drop=True)
        if image_ids:
            missing = sorted(set(image_ids) - set(slices["image_id"]))
            if missing:
                raise ValueError(f"{input_path}: no slice with image_id {', '.join(missing[:5])}")
            chosen = slices[slices["image_id"].isin(set(image_ids))]
        else:
            probs = predict_slices(loaded, prepared.cache_dir, slices, progress=progress)
            ranked = slices.assign(_any=probs[:, 0]).sort_values("_any", ascending=False, kind="stable")
            chosen = ranked.groupby("study_instance_uid", sort=False).head(top_k).drop(columns="_any")
        return explain_slices(loaded, prepared.cache_dir, chosen.reset_index(drop=True), out_dir,
                              threshold=threshold, progress=progress)

