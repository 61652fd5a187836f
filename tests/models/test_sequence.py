"""Stage-2 sequence models: the neighbour features, padding invariance, residual start, CNN-LSTM."""

from __future__ import annotations

import pytest
import timm
import torch

from ichscan.models.sequence import (
    CNNLSTM,
    create_sequence_model,
    lengths_from_mask,
    mask_from_lengths,
    sequence_features,
)

torch.set_num_threads(1)


def test_sequence_features_by_hand() -> None:
    # One series of 3 slices (1-D embeddings 1, 4, 9) padded to 4, and one of length 1.
    embeddings = torch.tensor([[[1.0], [4.0], [9.0], [100.0]], [[5.0], [7.0], [7.0], [7.0]]])
    logits = torch.arange(16, dtype=torch.float32).reshape(2, 4, 2)
    mask = mask_from_lengths(torch.tensor([3, 1]), 4)
    features = sequence_features(embeddings, logits, mask)
    # columns: e, e - previous, e - next, logits
    expected_first = torch.tensor(
        [[1.0, 0.0, -3.0, 0.0, 1.0], [4.0, 3.0, -5.0, 2.0, 3.0], [9.0, 5.0, 0.0, 4.0, 5.0], [0, 0, 0, 0, 0]]
    )
    assert torch.equal(features[0], expected_first)
    assert torch.equal(features[1, 0], torch.tensor([5.0, 0.0, 0.0, 8.0, 9.0]))
    assert torch.count_nonzero(features[1, 1:]) == 0


def test_mask_must_be_left_aligned_and_non_empty() -> None:
    with pytest.raises(ValueError, match="left-aligned"):
        lengths_from_mask(torch.tensor([[False, True]]))
    with pytest.raises(ValueError, match="at least one slice"):
        lengths_from_mask(torch.tensor([[True, True], [False, False]]))


@pytest.mark.parametrize("name", ["lstm", "gru", "conv"])
def test_padding_does_not_change_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = create_sequence_model(name, in_features=5, hidden=8, layers=2, residual=False).eval()
    lengths = torch.tensor([7, 3, 1])
    mask = mask_from_lengths(lengths, 9)
    embeddings = torch.randn(3, 9, 5)
    logits = torch.randn(3, 9, 6)
    with torch.no_grad():
        batched = model(embeddings, logits, mask)
        for b, length in enumerate(lengths.tolist()):
            alone = model(embeddings[b : b + 1, :length], logits[b : b + 1, :length], mask[b : b + 1, :length])
            torch.testing.assert_close(batched[b, :length], alone[0], atol=1e-5, rtol=1e-5)
    assert batched.shape == (3, 9, 6)
    assert torch.count_nonzero(batched[~mask]) == 0


@pytest.mark.parametrize("name", ["lstm", "gru", "conv"])
def test_residual_model_starts_at_stage1_and_sees_neighbours(name: str) -> None:
    torch.manual_seed(0)
    model = create_sequence_model(name, in_features=4, hidden=8, layers=2, dropout=0.0)
    mask = mask_from_lengths(torch.tensor([6]))
    embeddings = torch.randn(1, 6, 4, requires_grad=True)
    logits = torch.randn(1, 6, 6)
    out = model(embeddings, logits, mask)
    torch.testing.assert_close(out, logits)  # zero-initialised correction
    # Once the output layer is non-zero, slice 0's prediction depends on slice 3's embedding.
    with torch.no_grad():
        model.output.weight.normal_()
    out = model(embeddings, logits, mask)
    (grad,) = torch.autograd.grad(out[0, 0].sum(), embeddings)
    assert grad[0, 3].abs().sum() > 0


def test_unknown_sequence_model_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown sequence model 'transformer'"):
        create_sequence_model("transformer", in_features=4)


def test_sequence_model_learns_a_neighbour_rule() -> None:
    """A slice is positive when its *neighbour* is marked: only a sequence model can learn it."""
    torch.manual_seed(0)
    batch, steps = 16, 8
    marks = (torch.rand(batch, steps) < 0.3).float()
    embeddings = torch.randn(batch, steps, 3)
    embeddings[..., 0] = marks
    shifted = torch.zeros_like(marks)
    shifted[:, 1:] = marks[:, :-1]
    targets = shifted[..., None].expand(batch, steps, 6)
    mask = torch.ones(batch, steps, dtype=torch.bool)
    model = create_sequence_model("gru", in_features=3, hidden=16, layers=1, dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    zeros = torch.zeros(batch, steps, 6)
    first = loss_fn(model(embeddings, zeros, mask), targets).item()
    for _ in range(60):
        optimizer.zero_grad()
        loss = loss_fn(model(embeddings, zeros, mask), targets)
        loss.backward()
        optimizer.step()
    assert first == pytest.approx(0.6931, abs=1e-3)
    # A per-slice model cannot beat the entropy of the marks' rate (≈ 0.61 nats at p = 0.3).
    assert loss.item() < 0.2, loss.item()


def test_cnn_lstm_runs_cnn_on_valid_slices_only() -> None:
    torch.manual_seed(0)
    backbone = timm.create_model("resnet18", num_classes=6, in_chans=2)
    model = CNNLSTM(backbone, sequence="lstm", hidden=8, layers=1).eval()
    images = torch.randn(2, 4, 2, 32, 32)
    mask = mask_from_lengths(torch.tensor([4, 2]), 4)
    seen: list[int] = []
    backbone.conv1.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    with torch.no_grad():
        out = model(images, mask)
        expected_slice = backbone(images[1, :2])
    assert seen[0] == 6
    assert out.sequence_logits.shape == (2, 4, 6)
    torch.testing.assert_close(out.slice_logits[1, :2], expected_slice, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.sequence_logits, out.slice_logits)  # residual start
    assert torch.count_nonzero(out.slice_logits[1, 2:]) == 0
