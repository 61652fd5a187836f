"""The files of `ichscan predict --explain` that predict itself owns: OUT/report.html and the layout
of OUT/explain/.

The heatmaps are drawn by the explain layer (`ichscan.explain.heatmaps.StudyHeatmaps`, handed to
`ichscan.predict.predict` as its ``heatmaps`` hook, so predict never imports explain) into
``OUT/explain/<StudyInstanceUID>/<image_id>_<label>.png``; the folder is replaced whole, so it
never mixes two runs' heatmaps, and a prediction without heatmaps removes both.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final


from ichscan.files import atomic_path, is_safe_component

EXPLAIN_DIR: Final[str] = "explain"
REPORT_FILE: Final[str] = "report.html"


def study_folder(study_instance_uid: str) -> str:
    """A folder name for a study UID: the UID itself when it is a safe file name (DICOM UIDs
    are), else ``study-<hash>`` (a hostile header never chooses where a file goes: ``..``,
    ``../x`` or ``/etc`` never become a path)."""
    uid = str(study_instance_uid)
    if is_safe_component(uid):
        return uid
    return "study-" + hashlib.sha256(uid.encode("utf-8", "surrogatepass")).hexdigest()[:16]


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
