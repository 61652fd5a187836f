"""Networks: timm image backbones by name (`create_model`), their embeddings, weights from files.

The sequence models over a series' slice embeddings live in `ichscan.models.sequence`.
"""

from ichscan.models.backbones import (
    BACKBONES,
    BackboneSpec,
    create_model,
    embed,
    embedding_dim,
    min_input_size,
    num_params,
    resolve_backbone,
    to_channels_last,
)
from ichscan.models.weights import WeightsError, load_weights, read_state_dict

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "WeightsError",
    "create_model",
    "embed",
    "embedding_dim",
    "load_weights",
    "min_input_size",
    "num_params",
    "read_state_dict",
    "resolve_backbone",
    "to_channels_last",
]
