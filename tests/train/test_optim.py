"""Optimisers, schedules and the optimiser switch on toy parameters: rates follow the formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.optim import SGD, Adam, AdamW, RAdam, RMSprop
from torch.optim.lr_scheduler import ReduceLROnPlateau

from ichscan.train.optim import OptimizerSwitch, WarmupCosine, create_optimizer, create_scheduler


def _param() -> list[nn.Parameter]:
    return [nn.Parameter(torch.ones(3))]


def _rates(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, n: int) -> list[float]:
    """Learning rate of each of `n` epochs (one optimiser and one scheduler step per epoch)."""
    rates = []
    for _ in range(n):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(
    ("name", "cls"), [("adam", Adam), ("adamw", AdamW), ("radam", RAdam), ("sgd", SGD), ("rmsprop", RMSprop)]
)
def test_each_optimizer_is_its_torch_class_with_the_shared_arguments(name: str, cls: type) -> None:
    optimizer = create_optimizer(name, _param(), lr=0.01, weight_decay=1e-4, momentum=0.8, betas=(0.8, 0.99))
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 1e-4
    if name in ("sgd", "rmsprop"):
        assert group["momentum"] == 0.8
    else:
        assert group["betas"] == (0.8, 0.99)


def test_sgd_step_is_the_momentum_update_by_hand() -> None:
    """v ← μ v + g; θ ← θ − lr v (PyTorch's SGD), and the Nesterov option."""
    param = nn.Parameter(torch.tensor([1.0]))
    optimizer = create_optimizer("sgd", [param], lr=0.1, momentum=0.9)
    for _ in range(2):
        optimizer.zero_grad()
        (param**2).sum().backward()  # g = 2θ
        optimizer.step()
    # step 1: g = 2, v = 2, θ = 0.8; step 2: g = 1.6, v = 0.9·2 + 1.6 = 3.4, θ = 0.8 − 0.34 = 0.46
    assert param.item() == pytest.approx(0.46)
    nesterov = create_optimizer("sgd", _param(), lr=0.1, momentum=0.9, nesterov=True)
    assert nesterov.param_groups[0]["nesterov"] is True


def test_module_params_exempt_biases_and_norms_from_weight_decay() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    optimizer = create_optimizer("adamw", model, lr=1e-3, weight_decay=0.05)
    decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(model[0].weight), id(model[3].weight)}
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_optimizer_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'"):
        create_optimizer("lamb", _param(), lr=0.1)
    with pytest.raises(ValueError, match="no argument"):
        create_optimizer("adam", _param(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="lr > 0"):
        create_optimizer("sgd", _param(), lr=0.0)


def test_step_schedule_of_seed_000() -> None:
    """lr · 0.412^⌊epoch / 50⌋."""
    optimizer = create_optimizer("adam", _param(), lr=5e-5)
    scheduler = create_scheduler("step", optimizer, step_size=50, gamma=0.412)
    rates = _rates(optimizer, scheduler, 120)
    expected = [5e-5 * 0.412 ** (epoch // 50) for epoch in range(120)]
    assert rates == pytest.approx(expected, rel=1e-9)


def test_plateau_divides_after_patience_epochs_without_improvement() -> None:
    optimizer = create_optimizer("sgd", _param(), lr=0.1)
    scheduler = create_scheduler("plateau", optimizer, factor=0.5, patience=2)
    assert isinstance(scheduler, ReduceLROnPlateau)
    rates = []
    for loss in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]:
        optimizer.step()
        scheduler.step(loss)
        rates.append(optimizer.param_groups[0]["lr"])
    # best 0.9 at epoch 1; three epochs without improvement (> patience 2) → 0.05 after epoch 4,
    # then three more → 0.025 after epoch 7.
    assert rates == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])


def test_cosine_with_linear_warmup_follows_the_formula() -> None:
    lr, warmup, total, start, floor = 0.2, 3, 10, 0.1, 0.05
    optimizer = create_optimizer("sgd", _param(), lr=lr)
    scheduler = create_scheduler("cosine", optimizer, total=total, warmup=warmup, start_factor=start,
                                 min_factor=floor)
    rates = _rates(optimizer, scheduler, 13)
    expected = []
    for t in range(13):
        if t < warmup:
            factor = start + (1 - start) * t / warmup
        else:
            progress = min(t - warmup, total - warmup) / (total - warmup)
            factor = floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2
        expected.append(lr * factor)
    assert rates == pytest.approx(expected, rel=1e-9)
    assert rates[warmup] == pytest.approx(lr)  # peak right after the warm-up
    assert rates[-1] == pytest.approx(lr * floor)  # floor from `total` on


def test_cosine_scales_every_param_group_by_the_same_factor() -> None:
    groups = [{"params": _param(), "lr": 1.0}, {"params": _param(), "lr": 0.1}]
    optimizer = create_optimizer("sgd", groups, lr=1.0)
    scheduler = create_scheduler("cosine", optimizer, total=4)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    factor = WarmupCosine(total=4)(2)
    assert factor == pytest.approx(0.5)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([factor, 0.1 * factor])


def test_scheduler_none_and_errors() -> None:
    optimizer = create_optimizer("sgd", _param(), lr=0.1)
    assert create_scheduler("none", optimizer) is None
    with pytest.raises(ValueError, match="unknown scheduler 'linear'"):
        create_scheduler("linear", optimizer)
    with pytest.raises(ValueError, match="no argument"):
        create_scheduler("step", optimizer, step_size=5, gama=0.5)
    with pytest.raises(ValueError, match="step_size"):
        create_scheduler("step", optimizer)
    with pytest.raises(ValueError, match="warmup < total"):
        create_scheduler("cosine", optimizer, total=3, warmup=3)


def test_switch_sgd_to_rmsprop_after_n_epochs_seed_001() -> None:
    params = _param()
    optimizer = create_optimizer("sgd", params, lr=0.1, weight_decay=1e-4)
    switch = OptimizerSwitch(to="rmsprop", after_epochs=2, lr=1e-3, momentum=0.0)
    kinds = []
    for epoch in range(4):
        optimizer = switch.maybe_switch(epoch, optimizer)
        kinds.append(type(optimizer).__name__)
        optimizer.zero_grad()
        params[0].sum().backward()
        optimizer.step()
    assert kinds == ["SGD", "SGD", "RMSprop", "RMSprop"]
    group = optimizer.param_groups[0]
    assert group["lr"] == 1e-3 and group["momentum"] == 0.0 and group["weight_decay"] == 1e-4
    assert group["params"][0] is params[0]
    # Without its own rate, the new optimiser starts from the old one's initial (pre-schedule) rate.
    sgd = create_optimizer("sgd", _param(), lr=0.1)
    scheduler = create_scheduler("step", sgd, step_size=1, gamma=0.5)
    sgd.step()
    scheduler.step()
    assert sgd.param_groups[0]["lr"] == 0.05
    assert OptimizerSwitch(to="adam", after_epochs=0).maybe_switch(0, sgd).param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprob'"):
        OptimizerSwitch(to="rmsprob", after_epochs=1)
