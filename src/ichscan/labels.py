"""The six ICH labels, in the one order used everywhere in ichscan."""

from __future__ import annotations

from typing import Final

LABELS: Final[tuple[str, ...]] = (
    "any",
    "epidural",
    "intraparenchymal",
    "intraventricular",
    "subarachnoid",
    "subdural",
)
SUBTYPES: Final[tuple[str, ...]] = LABELS[1:]
N_LABELS: Final[int] = len(LABELS)

# The RSNA metric: `any` rows weigh 2, each subtype row weighs 1.
LABEL_WEIGHTS: Final[tuple[float, ...]] = (2.0, 1.0, 1.0, 1.0, 1.0, 1.0)

# RSNA training-set positives per label (DOMAIN.md), over about 752,800 images.
RSNA_POSITIVES: Final[dict[str, int]] = {
    "any": 107_933,
    "epidural": 3_145,
    "intraparenchymal": 36_118,
    "intraventricular": 26_205,
    "subarachnoid": 35_675,
    "subdural": 47_166,
}
RSNA_IMAGES: Final[int] = 752_803
