"""`ichscan predict --explain`: heatmaps of each study's most suspicious slices.

The slices are the study summary's (`ichscan.predict.studies.top_slices`, highest p(any) first);
the classes are those the prediction reports present at the per-label thresholds (``any`` when none
is). The maps come from one network: the single run, the first member of an ensemble, or the
stage-1 backbone of the first stage-2 run. `StudyHeatmaps` is the hook `ichscan.predict.predict`
calls while its HU cache exists (``heatmaps=``); `predict_explained` is `predict` with it. PNGs go
to ``OUT/explain/<StudyInstanceUID>/<image_id>_<label>.png`` (`ichscan.explain.run.explain_slices`);
the folder is replaced whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ichscan.explain.run import explain_method, explain_slices
from ichscan.files import atomic_folder, is_safe_component
from ichscan.labels import LABELS
from ichscan.predict.heatmaps import EXPLAIN_DIR, study_folder
from ichscan.predict.studies import top_slices

__all__ = ["StudyHeatmaps", "explain_studies", "predict_explained"]


def explain_studies(
    loaded: Any,
    cache_dir: Path,
    table: pd.DataFrame,
    out_dir: Path,
    *,
    thresholds: Mapping[str, float],
    top_k: int = 3,
    method: str = "gradcam",
    progress: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Heatmap PNGs of the `top_k` most suspicious slices of every study of `table`.

    `table`: the predicted slices (ids and the six probabilities, rows as in the cache's slices
    table); `loaded`: anything with `model`, `channel_spec`, `size` (a `LoadedModel` or an
    `EnsembleMember`). Returns, per study UID, records ``{sop_instance_uid, image_id, slice_index,
    class, probability, method, path}`` with `path` relative to `out_dir`.
    """
    method = explain_method(method)
    threshold = [float(thresholds[label]) for label in LABELS]
    chosen = top_slices(table, top_k)
    heatmaps: dict[str, list[dict[str, Any]]] = {}
    with atomic_folder(out_dir / EXPLAIN_DIR) as staging:  # replaces an earlier run's heatmaps whole
        for uid, group in chosen.groupby("study_instance_uid", sort=False):
            # image ids name the PNGs: one that is not a safe file name gets no heatmap
            group = group[group["image_id"].astype(str).map(is_safe_component)].reset_index(drop=True)
            if group.empty:
                continue
            explained = explain_slices(
                loaded, cache_dir, group, staging / study_folder(str(uid)), threshold=threshold,
                batch_size=max(1, len(group)), progress=progress, methods=(method,),
                probabilities=group[list(LABELS)].to_numpy(),
            )
            sop_of = dict(zip(group["image_id"].astype(str), group["sop_instance_uid"].astype(str)))
            rank = {image_id: k for k, image_id in enumerate(group["image_id"].astype(str))}
            records = [
                {
                    "sop_instance_uid": sop_of[str(r.image_id)],
                    "image_id": str(r.image_id),
                    "slice_index": int(r.slice_index),
                    "class": str(r.label),
                    "probability": float(r.probability),
                    "method": method,
                    "path": f"{EXPLAIN_DIR}/{Path(r.path).relative_to(staging).as_posix()}",
                }
                for r in explained.itertuples(index=False)
            ]
            records.sort(key=lambda rec: (rank[rec["image_id"]], LABELS.index(rec["class"])))
            heatmaps[str(uid)] = records
    return heatmaps


@dataclass(frozen=True)
class StudyHeatmaps:
    """The ``heatmaps`` hook of `ichscan.predict.predict`: `explain_studies` with `top_k` slices per
    study and `method` (validated at construction, before any prediction work)."""

    top_k: int = 3
    method: str = "gradcam"

    def __post_init__(self) -> None:
        explain_method(self.method)
        if self.top_k < 1:
            raise ValueError(f"explain_top must be ≥ 1, got {self.top_k}")

    def __call__(self, network: Any, cache_dir: Path, table: pd.DataFrame, out_dir: Path,
                 thresholds: Mapping[str, float], progress: bool) -> dict[str, list[dict[str, Any]]]:
        return explain_studies(network, cache_dir, table, out_dir, thresholds=thresholds, top_k=self.top_k,
                               method=self.method, progress=progress)


def predict_explained(*args: Any, explain_top: int = 3, explain_method: str = "gradcam", **kwargs: Any) -> Any:
    """`ichscan.predict.predict` with heatmaps of each study's `explain_top` most suspicious slices."""
    from ichscan.predict import predict

    return predict(*args, heatmaps=StudyHeatmaps(explain_top, explain_method), **kwargs)
