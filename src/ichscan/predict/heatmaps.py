"""`ichscan predict --explain`: heatmaps of each study's most suspicious slices, and OUT/report.html.

The slices are the study summary's (`studies.top_slices`, highest p(any) first); the classes are
those the prediction reports present at the per-label thresholds (``any`` when none is). The maps
come from one network: the single run, the first member of an ensemble, or the stage-1 backbone of
the first stage-2 run. PNGs are drawn by `ichscan.explain.run.explain_slices` into
``OUT/explain/<StudyInstanceUID>/<image_id>_<label>.png``; the folder is replaced whole, so it
never mixes two runs' heatmaps, and a prediction without ``--explain`` removes both.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd

from ichscan.files import atomic_folder, atomic_path
from ichscan.labels import LABELS
from ichscan.predict.studies import top_slices

EXPLAIN_DIR: Final[str] = "explain"
REPORT_FILE: Final[str] = "report.html"
EXPLAIN_METHODS: Final[dict[str, str]] = {"gradcam": "gradcam", "gradcampp": "gradcam++",
                                          "gradcam++": "gradcam++", "saliency": "saliency"}


def explain_method(name: str) -> str:
    """`gradcam`, `gradcampp` (or `gradcam++`), `saliency` → the `ichscan.explain` method name."""
    try:
        return EXPLAIN_METHODS[name]
    except KeyError:
        raise ValueError(f"explain method {name!r}: use gradcam, gradcampp or saliency") from None


def study_folder(study_instance_uid: str) -> str:
    """A folder name for a study UID (UIDs are digits and dots; anything else becomes `_`)."""
    return "".join(c if c.isalnum() or c in ".-_" else "_" for c in str(study_instance_uid)) or "_"


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
    from ichscan.explain.run import explain_slices

    method = explain_method(method)
    threshold = [float(thresholds[label]) for label in LABELS]
    chosen = top_slices(table, top_k)
    heatmaps: dict[str, list[dict[str, Any]]] = {}
    with atomic_folder(out_dir / EXPLAIN_DIR) as staging:  # replaces an earlier run's heatmaps whole
        for uid, group in chosen.groupby("study_instance_uid", sort=False):
            group = group.reset_index(drop=True)
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


def remove_stale_explanations(out_dir: Path) -> None:
    """Remove OUT/explain/ and OUT/report.html of an earlier `--explain` run: a prediction
    without `--explain` must not sit next to heatmaps of another one."""
    import shutil

    shutil.rmtree(out_dir / EXPLAIN_DIR, ignore_errors=True)
    (out_dir / REPORT_FILE).unlink(missing_ok=True)


def write_report(
    records: Sequence[Mapping[str, Any]],
    path: Path,
    *,
    title: str = "ichscan predictions",
    operating_point: str = "",
) -> Path:
    """OUT/report.html: per study (highest p(any) first) its summary line and its heatmap images.

    `records`: the `studies` list of studies.json, each with its `heatmaps`; image paths are
    relative to the report's folder. `operating_point`: one line saying how ICH was decided.
    """
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        ("<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:0.5em}"
         "img{max-width:100%}figcaption{font-size:small}</style>"),
        f"</head><body><h1>{html.escape(title)}</h1>",
        f"<p>{len(records)} studies, highest p(any ICH) first.</p>",
        f"<p>{html.escape(operating_point)}</p>" if operating_point else "",
    ]
    for study in records:
        subtypes = ", ".join(study.get("subtypes_present", [])) or "none"
        summary = (
            f"patient {study['patient_id']}, {study['n_slices']} slices in {study['n_series']} series, "
            f"max p(any) = {study['probability_any']:.3f}, "
            + (f"P(ICH) = {study['ich_probability']:.3f}, " if study.get("ich_probability") is not None else "")
            + f"ICH {'detected' if study['ich_detected'] else 'not detected'}, "
            f"subtypes present: {subtypes}"
        )
        parts.append(f"<section><h2>{html.escape(str(study['study_instance_uid']))}</h2>")
        parts.append(f"<p>{html.escape(summary)}</p>")
        for heatmap in study.get("heatmaps", []):
            caption = (f"{heatmap['image_id']} (slice {heatmap['slice_index']}): {heatmap['class']}, "
                       f"p = {heatmap['probability']:.3f}, {heatmap['method']}")
            parts.append(
                f'<figure><img src="{html.escape(heatmap["path"], quote=True)}" '
                f'alt="{html.escape(caption, quote=True)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
            )
        parts.append("</section>")
    parts.append("</body></html>")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
