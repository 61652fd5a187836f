"""`report.html`: the metrics tables with their intervals and the figures, one static page.

The page has no scripts and no external resources; figures are linked relatively (they sit next
to it in the report folder), so the folder can be moved or zipped as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from ichscan.files import atomic_path
from ichscan.labels import LABELS

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.6em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f0f0f0; }
.ci { color: #777; font-size: 0.85em; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
"""
COLUMN_TITLES: dict[str, str] = {
    "auc": "ROC AUC",
    "log_loss": "log loss",
    "precision": "precision",
    "recall": "recall",
    "specificity": "specificity",
    "f1": "F1",
    "f2": "F2",
    "accuracy": "accuracy",
    "weighted_log_loss": "weighted log loss (RSNA)",
    "mean_auc": "mean AUC",
    "macro_f1": "macro F1",
    "macro_f2": "macro F2",
}


def cell(entry: Mapping[str, Any]) -> str:
    """`value [low, high]` as a table cell; `–` where undefined."""
    value = entry.get("value")
    if value is None:
        return "<td>–</td>"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    interval = (
        f' <span class="ci">[{low:.3f}, {high:.3f}]</span>' if low is not None and high is not None else ""
    )
    return f"<td>{value:.4f}{interval}</td>"


def table(rows: list[tuple[str, list[str]]], header: list[str]) -> str:
    """An HTML table from pre-rendered cells."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(f"<tr><td>{escape(name)}</td>{''.join(cells)}</tr>" for name, cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def level_section(level: str, metrics: Mapping[str, Any]) -> str:
    """Overall, per-label and best-threshold tables of one level."""
    data = metrics[level]
    positives = metrics["counts"]["positives"][level]
    overall_names = list(data["overall"])
    overall = table(
        [("all labels", [cell(data["overall"][n]) for n in overall_names])],
        ["", *(COLUMN_TITLES[n] for n in overall_names)],
    )
    names = list(data["per_label"][LABELS[0]])
    per_label = table(
        [
            (label, [f"<td>{positives[label]}</td>", *(cell(data["per_label"][label][n]) for n in names)])
            for label in LABELS
        ],
        ["label", "positives", *(COLUMN_TITLES[n] for n in names)],
    )

    def best(entry: Mapping[str, Any], key: str) -> str:
        value = entry.get(key)
        return "<td>–</td>" if value is None else f"<td>{value:.3f}</td>"

    thresholds = table(
        [
            (label, [best(data[f"best_{b}"][label], k) for b in ("f1", "f2") for k in ("threshold", "fbeta")])
            for label in LABELS
        ],
        ["label", "F1-best threshold", "F1 there", "F2-best threshold", "F2 there"],
    )
    return (
        f"<h2>{escape(level.capitalize())} level</h2>{overall}"
        f"<h3>Per label at threshold {metrics['settings']['threshold']:g}</h3>{per_label}"
        f"<h3>Best thresholds</h3>{thresholds}"
    )


def operating_point_section(point: Mapping[str, Any] | None) -> str:
    """The triage operating point: how it was chosen and the study-level result at it."""
    if not point:
        return "<h2>Triage operating point</h2><p>None recorded for these predictions.</p>"
    chosen = (f"Chosen on {point['n_studies']} validation studies ({escape(point['source'])}) for sensitivity "
              f"{point['target_sensitivity']:g}: ICH when P(ICH) ≥ {point['threshold']:.3f} (study max p(any) ≥ "
              f"{point['score_threshold']:.4f}); there sensitivity {point['sensitivity']:.3f}, specificity "
              f"{point['specificity']:.3f}.")
    evaluated = point.get("evaluated")
    if not evaluated:
        return f"<h2>Triage operating point</h2><p>{chosen}</p><p>No study ids: not evaluated per study.</p>"

    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    rows = [("sensitivity", share(evaluated["sensitivity"]), f"{evaluated['tp']} of {evaluated['tp'] + evaluated['fn']}"),
            ("specificity", share(evaluated["specificity"]), f"{evaluated['tn']} of {evaluated['tn'] + evaluated['fp']}")]
    body = table([(name, [f"<td>{v}</td>", f"<td>{c}</td>"]) for name, v, c in rows], ["here", "value", "studies"])
    return f"<h2>Triage operating point</h2><p>{escape(chosen)}</p>{body}"


def render_report(metrics: Mapping[str, Any], figures: Mapping[str, Path]) -> str:
    """The full HTML page."""
    settings, counts = metrics["settings"], metrics["counts"]
    levels = [level for level in ("slice", "study") if level in metrics]
    confidence = int(round(settings["confidence"] * 100))
    unit = "studies" if settings["resampled_unit"] == "study" else "images"
    summary_rows = [
        ("predictions", counts["n_predictions"]),
        ("evaluated (fully labelled)", counts["n_evaluated"]),
        ("studies", counts["n_studies"] if counts["n_studies"] is not None else "– (no study ids)"),
        ("predictions without labels (excluded)", counts["n_predictions_without_labels"]),
        ("of which partially labelled", counts["n_partially_labelled"]),
        ("labels without predictions", counts["n_labels_without_predictions"]),
    ]
    summary = table([(name, [f"<td>{escape(str(v))}</td>"]) for name, v in summary_rows], ["", "count"])
    summary += f"<p>Model validated on a {escape(settings.get('split') or 'unknown')} split.</p>"
    summary += operating_point_section(metrics.get("operating_point"))
    images = "".join(
        f'<h2>{escape(title)}</h2><img src="{escape(path.name)}" alt="{escape(title)}">'
        for title, path in figures.items()
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>ichscan evaluation</title><style>{STYLE}</style></head><body>"
        "<h1>ichscan evaluation</h1>"
        f"<p>Values with {confidence}% bootstrap intervals ({settings['n_bootstrap']} resamples of "
        f"{unit}, seed {settings['seed']}); a label is predicted positive when "
        f"p ≥ {settings['threshold']:g}. Study level: a study is positive when any slice is, its score "
        "is the maximum over its slices.</p>"
        f"{summary}{''.join(level_section(level, metrics) for level in levels)}{images}</body></html>"
    )


def write_report(metrics: Mapping[str, Any], figures: Mapping[str, Path], path: Path) -> Path:
    """Render and write report.html atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(render_report(metrics, figures), encoding="utf-8")
    return path
