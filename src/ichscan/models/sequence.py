"""Stage-2 sequence models: per-slice predictions refined by looking along the whole series.

A series is a padded batch ``(B, T, ...)`` with a boolean ``mask`` ``(B, T)`` whose valid positions
come first (left-aligned): series ``b`` has ``length_b = mask[b].sum()`` slices at positions
``0 … length_b − 1`` in anatomical order (``slice_index``). Every model here gives the same outputs for
a series whether it is alone or padded inside a longer batch.

Each slice's input is ``[e_t, e_t − e_{t−1}, e_t − e_{t+1}, z_t]`` (RSNA 2019 2nd place): its
stage-1 pooled embedding ``e_t``, the differences to its neighbours (at the series ends the slice is its
own neighbour, so the difference is 0) and its stage-1 logits ``z_t``. The models predict logits
``(B, T, num_classes)``; with ``residual=True`` they predict a correction added to ``z_t`` and start, by
a zero-initialised output layer, exactly at the stage-1 prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ichscan.labels import N_LABELS
from ichscan.models.backbones import embed, embedding_dim

__all__ = [
    "CNNLSTM",
    "CNNLSTMOutput",
    "DilatedConvSequenceModel",
    "RecurrentSequenceModel",
    "SEQUENCE_MODELS",
    "SequenceModel",
    "create_sequence_model",
    "lengths_from_mask",
    "mask_from_lengths",
    "sequence_features",
    "slice_embeddings",
]


def mask_from_lengths(lengths: Tensor, max_length: int | None = None) -> Tensor:
    """Left-aligned boolean mask ``(B, T)`` with ``lengths[b]`` leading True values."""
    total = int(lengths.max()) if max_length is None else max_length
    return torch.arange(total, device=lengths.device)[None, :] < lengths[:, None]


def lengths_from_mask(mask: Tensor) -> Tensor:
    """Series lengths ``(B,)`` (int64) of a left-aligned mask; raises if a row is empty or not left-aligned."""
    lengths = mask.sum(dim=1)
    if bool((lengths < 1).any()):
        raise ValueError("every series needs at least one slice (a mask row is all False)")
    if not torch.equal(mask, mask_from_lengths(lengths, mask.shape[1])):
        raise ValueError("mask must be left-aligned: valid slices first, padding after")
    return lengths


def sequence_features(embeddings: Tensor, logits: Tensor, mask: Tensor) -> Tensor:
    """Per-slice stage-2 input ``[e_t, e_t − e_{t−1}, e_t − e_{t+1}, z_t]`` → ``(B, T, 3·D + K)``.

    ``embeddings`` ``(B, T, D)``, ``logits`` ``(B, T, K)``, ``mask`` ``(B, T)`` left-aligned. The first
    and last slice of each series are their own neighbours (difference 0), so padding never leaks in;
    padded positions are zeroed. Written into one preallocated tensor with shifted slices (no gather).
    """
    if embeddings.shape[:2] != mask.shape or logits.shape[:2] != mask.shape:
        raise ValueError(
            f"shapes disagree: embeddings {tuple(embeddings.shape)}, logits {tuple(logits.shape)}, "
            f"mask {tuple(mask.shape)}"
        )
    batch, steps, dim = embeddings.shape
    features = embeddings.new_zeros(batch, steps, 3 * dim + logits.shape[-1])
    features[..., :dim] = embeddings
    # e_t − e_{t−1} for t ≥ 1 (0 at t = 0); e_t − e_{t+1} only where slice t + 1 exists (0 at the end).
    features[:, 1:, dim : 2 * dim] = embeddings[:, 1:] - embeddings[:, :-1]
    features[:, :-1, 2 * dim : 3 * dim] = (embeddings[:, :-1] - embeddings[:, 1:]) * mask[:, 1:, None]
    features[..., 3 * dim :] = logits
    return features.masked_fill_(~mask[..., None], 0.0)


class SequenceModel(nn.Module):
    """Base of the stage-2 models: ``forward(embeddings, logits, mask) -> logits (B, T, K)``."""

    in_features: int
    num_classes: int
    residual: bool

    def _output_layer(self, width: int) -> nn.Linear:
        """Output layer; zero-initialised when residual so the model starts at the stage-1 logits."""
        layer = nn.Linear(width, self.num_classes)
        if self.residual:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        return layer

    def _finish(self, correction: Tensor, logits: Tensor, mask: Tensor) -> Tensor:
        """Add the stage-1 logits when residual and zero the padded positions."""
        out = correction + logits.to(correction.dtype) if self.residual else correction
        return out * mask[..., None].to(out.dtype)


class RecurrentSequenceModel(SequenceModel):
    """Bidirectional stacked LSTM/GRU over the series (packed sequences, so padding is never read).

    ``h = RNN(Dropout(GELU(W_in · LayerNorm(x_t))))``; output ``W_out · h_t`` (+ ``z_t`` when residual).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int = N_LABELS,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.1,
        cell: Literal["lstm", "gru"] = "lstm",
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.in_features, self.num_classes, self.residual = in_features, num_classes, residual
        width = 3 * in_features + num_classes
        self.input = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)
        )
        rnn_type = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn_type(
            hidden,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.output = self._output_layer(2 * hidden)

    def forward(self, embeddings: Tensor, logits: Tensor, mask: Tensor) -> Tensor:
        """Logits ``(B, T, K)`` from embeddings ``(B, T, D)``, stage-1 logits ``(B, T, K)``, mask ``(B, T)``."""
        lengths = lengths_from_mask(mask)
        x = self.input(sequence_features(embeddings, logits, mask))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=mask.shape[1])
        return self._finish(self.output(out), logits, mask)


class _DilatedBlock(nn.Module):
    """Pre-norm residual block: ``x + Dropout(Conv1d_dilated(GELU(LayerNorm(x)) · mask))``."""

    def __init__(self, width: int, dilation: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(
            width, width, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = nn.functional.gelu(self.norm(x)) * mask[..., None].to(x.dtype)
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)
        return x + self.drop(h)


class DilatedConvSequenceModel(SequenceModel):
    """Stack of residual dilated 1-D convolutions along the series (dilation 1, 2, 4, …).

    With kernel ``k`` and ``L`` blocks the receptive field is ``1 + (k − 1)(2^L − 1)`` slices. Padded
    positions are zeroed before every convolution, which is exactly the zero padding the convolution
    applies at the series ends, so padding does not change the valid outputs.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int = N_LABELS,
        hidden: int = 64,
        layers: int = 3,
        dropout: float = 0.1,
        kernel_size: int = 3,
        residual: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.in_features, self.num_classes, self.residual = in_features, num_classes, residual
        width = 3 * in_features + num_classes
        self.input = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden))
        self.blocks = nn.ModuleList(
            _DilatedBlock(hidden, 2**i, kernel_size, dropout) for i in range(layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.output = self._output_layer(hidden)

    def forward(self, embeddings: Tensor, logits: Tensor, mask: Tensor) -> Tensor:
        """Logits ``(B, T, K)`` from embeddings ``(B, T, D)``, stage-1 logits ``(B, T, K)``, mask ``(B, T)``."""
        lengths_from_mask(mask)
        x = self.input(sequence_features(embeddings, logits, mask))
        for block in self.blocks:
            x = block(x, mask)
        return self._finish(self.output(nn.functional.gelu(self.norm(x))), logits, mask)


def _lstm(in_features: int, num_classes: int = N_LABELS, **kwargs: object) -> SequenceModel:
    return RecurrentSequenceModel(in_features, num_classes, cell="lstm", **kwargs)  # type: ignore[arg-type]


def _gru(in_features: int, num_classes: int = N_LABELS, **kwargs: object) -> SequenceModel:
    return RecurrentSequenceModel(in_features, num_classes, cell="gru", **kwargs)  # type: ignore[arg-type]


SEQUENCE_MODELS: Final[dict[str, Callable[..., SequenceModel]]] = {
    "lstm": _lstm,
    "gru": _gru,
    "conv": DilatedConvSequenceModel,
}


def create_sequence_model(
    name: str,
    in_features: int,
    num_classes: int = N_LABELS,
    hidden: int = 64,
    layers: int = 2,
    dropout: float = 0.1,
    **kwargs: object,
) -> SequenceModel:
    """Build a stage-2 model by name (``lstm``, ``gru``: bidirectional, stacked; ``conv``: dilated 1-D).

    ``in_features`` is the stage-1 embedding size ``D`` (the models build the ``3·D + K`` inputs
    themselves); extra keyword arguments (``residual``, ``kernel_size`` for ``conv``) go to the class.
    """
    try:
        factory = SEQUENCE_MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown sequence model {name!r}; choose one of {sorted(SEQUENCE_MODELS)}"
        ) from None
    return factory(
        in_features, num_classes, hidden=hidden, layers=layers, dropout=dropout, **kwargs
    )


def slice_embeddings(backbone: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Pooled embedding ``(N, D)`` and logits ``(N, K)`` of a timm classifier on images ``(N, C, H, W)``.

    The embedding is `ichscan.models.embed` (``forward_head(forward_features(x), pre_logits=True)``),
    the input of the classifier, so the logits are that classifier applied to it (one backbone pass).
    """
    embedding = embed(backbone, images)
    logits = backbone.get_classifier()(embedding)  # type: ignore[operator]
    return embedding, logits


class CNNLSTMOutput(NamedTuple):
    """Both heads of the end-to-end model, each ``(B, T, K)``."""

    sequence_logits: Tensor
    slice_logits: Tensor


class CNNLSTM(nn.Module):
    """End-to-end CNN-LSTM (seed 002, Table 5): a 2-D timm CNN on every slice, then a sequence model.

    ``forward(images (B, T, C, H, W), mask (B, T))``: the CNN runs only on the valid slices (padding
    costs nothing), its pooled embeddings and logits are scattered back to ``(B, T, ·)`` and fed to the
    sequence model; both are trained jointly (the slice logits can carry an auxiliary loss).
    """

    def __init__(
        self,
        backbone: nn.Module,
        sequence: str = "lstm",
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.1,
        **kwargs: object,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        num_classes = int(backbone.num_classes)  # type: ignore[arg-type]
        if num_classes < 1:
            raise ValueError("the CNN-LSTM backbone needs a classifier (num_classes ≥ 1)")
        self.sequence = create_sequence_model(
            sequence,
            embedding_dim(backbone),
            num_classes,
            hidden=hidden,
            layers=layers,
            dropout=dropout,
            **kwargs,
        )

    def forward(self, images: Tensor, mask: Tensor) -> CNNLSTMOutput:
        """Sequence and slice logits ``(B, T, K)`` for padded series of images ``(B, T, C, H, W)``."""
        if images.shape[:2] != mask.shape:
            raise ValueError(f"images {tuple(images.shape)} and mask {tuple(mask.shape)} disagree")
        return self.forward_valid(images[mask], mask)

    def forward_valid(self, valid_images: Tensor, mask: Tensor) -> CNNLSTMOutput:
        """As `forward`, given only the valid slices ``images[mask]`` ``(N, C, H, W)`` (no padding copy)."""
        if valid_images.shape[0] != int(mask.sum()):
            raise ValueError(f"{valid_images.shape[0]} images for {int(mask.sum())} valid slices")
        embedding, logits = slice_embeddings(self.backbone, valid_images)
        batch, steps = mask.shape
        embeddings = embedding.new_zeros(batch, steps, embedding.shape[-1])
        slice_logits = logits.new_zeros(batch, steps, logits.shape[-1])
        embeddings[mask] = embedding
        slice_logits[mask] = logits
        return CNNLSTMOutput(self.sequence(embeddings, slice_logits, mask), slice_logits)
