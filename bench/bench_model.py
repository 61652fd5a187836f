"""Benchmark: CPU speed of the backbones by memory format and precision (issue 4 "Speed").

On random weights and random inputs, for ResNet-18 at 256² (batch 32) and the demo model
(``configs/demo.yaml``'s backbone and channels at 128², resnet18 × 3 channels if that file is absent),
measures images/s of
  * training steps (forward + backward + SGD step) and
  * inference (eval, ``torch.inference_mode``)
in four variants: fp32 NCHW (the naive baseline every ratio refers to), fp32 channels_last,
bf16 autocast + channels_last, and (inference only) ``torch.compile`` of the channels_last
model with its warm-up time. bf16 logits are compared with fp32 ones (relative max error).
Prints a Markdown section; ``--out docs/bench/model.md`` also writes it (atomically).

    .venv/bin/python bench/bench_model.py --out docs/bench/model.md
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ichscan.files import atomic_path
from ichscan.models import create_model, num_params, to_channels_last


@dataclass(frozen=True)
class Case:
    """One model at one input size."""

    label: str
    backbone: str
    in_chans: int
    size: int
    batch: int


@dataclass(frozen=True)
class Variant:
    """A memory format × precision combination."""

    name: str
    channels_last: bool
    bf16: bool


VARIANTS = (
    Variant("fp32 NCHW (baseline)", channels_last=False, bf16=False),
    Variant("fp32 channels_last", channels_last=True, bf16=False),
    Variant("bf16 autocast + channels_last", channels_last=True, bf16=True),
)


def demo_case(batch: int) -> Case:
    """The demo config's backbone and input channels at 128² (resnet18 × 3 when it is absent)."""
    path = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    if path.is_file():
        from ichscan.config import load_config

        config = load_config(path)
        return Case(f"demo ({path.name})", config.model.backbone, config.data.in_chans, 128, batch)
    return Case("demo (configs/demo.yaml absent: resnet18)", "resnet18", 3, 128, batch)


def _autocast(bf16: bool) -> contextlib.AbstractContextManager[object]:
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _prepare(case: Case, variant: Variant) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model(case.backbone, in_chans=case.in_chans)
    x = torch.rand(case.batch, case.in_chans, case.size, case.size)
    if variant.channels_last:
        model = to_channels_last(model)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def _timed(step: Callable[[], object], warmup: int, repeats: int) -> float:
    """Seconds per call of `step` (median of `repeats` after `warmup` untimed calls)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def train_rate(case: Case, variant: Variant, repeats: int) -> float:
    """Images/s of forward + backward + SGD step."""
    model, x = _prepare(case, variant)
    model.train()
    target = torch.rand(case.batch, 6)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    criterion = nn.BCEWithLogitsLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(variant.bf16):
            logits = model(x)
        criterion(logits.float(), target).backward()
        optimizer.step()

    return case.batch / _timed(step, warmup=1, repeats=repeats)


def infer_rate(case: Case, variant: Variant, repeats: int) -> tuple[float, torch.Tensor]:
    """Images/s of eval-mode inference, and the logits (for the precision comparison)."""
    model, x = _prepare(case, variant)
    model.eval()

    def step() -> torch.Tensor:
        with torch.inference_mode(), _autocast(variant.bf16):
            return model(x).float()

    seconds = _timed(step, warmup=1, repeats=repeats)
    return case.batch / seconds, step()


def compiled_rate(case: Case, repeats: int) -> tuple[float, float]:
    """Images/s of ``torch.compile``d fp32 channels_last inference and the warm-up seconds."""
    model, x = _prepare(case, VARIANTS[1])
    compiled = torch.compile(model.eval())

    def step() -> torch.Tensor:
        with torch.inference_mode():
            return compiled(x)

    start = time.perf_counter()
    step()
    warmup_seconds = time.perf_counter() - start
    return case.batch / _timed(step, warmup=1, repeats=repeats), warmup_seconds


@contextlib.contextmanager
def _section(title: str) -> Iterator[None]:
    print(f"… {title}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"  done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def run_case(case: Case, repeats: int, compile_: bool) -> list[str]:
    """Markdown table rows for one case."""
    rows = []
    base_train = base_infer = 0.0
    reference: torch.Tensor | None = None
    for variant in VARIANTS:
        with _section(f"{case.label} {variant.name}"):
            train = train_rate(case, variant, repeats)
            infer, logits = infer_rate(case, variant, repeats)
        if reference is None:
            base_train, base_infer, reference = train, infer, logits
        error = (logits - reference).abs().max() / reference.abs().max()
        deviation = f"{error.item():.1%}" if variant.bf16 else "—"
        rows.append(
            f"| {case.label} | {variant.name} | {train:.1f} | {train / base_train:.2f}× | {infer:.1f} | "
            f"{infer / base_infer:.2f}× | {deviation} |"
        )
    if compile_:
        with _section(f"{case.label} torch.compile"):
            infer, warmup = compiled_rate(case, repeats)
        rows.append(
            f"| {case.label} | torch.compile, fp32 channels_last (warm-up {warmup:.0f} s) | — | — | {infer:.1f} | "
            f"{infer / base_infer:.2f}× | — |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per measurement (median)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--out", type=Path, help="also write the Markdown section to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cases = [Case("resnet18 256²", "resnet18", 3, 256, args.batch), demo_case(args.batch)]
    rows = []
    for case in cases:
        rows += run_case(case, args.repeats, compile_=not args.no_compile and case.size == 256)
    params = {case.label: num_params(create_model(case.backbone, in_chans=case.in_chans)) for case in cases}
    load = os.getloadavg()[0]
    bf16 = "yes" if "avx512_bf16" in Path("/proc/cpuinfo").read_text() else "no"
    command = "python bench/bench_model.py " + " ".join(sys.argv[1:])
    text = f"""## Model speed on CPU: memory format and precision

Command: `{command.strip()}`

Machine: {os.cpu_count()} cores {platform.machine()} ({platform.processor() or "unknown CPU"}, AVX-512 BF16: {bf16}),
torch {torch.__version__}, {args.threads} threads, shared with other jobs (1-min load average {load:.1f} at the
end). Random weights and inputs, batch {args.batch}, median of {args.repeats} timed batches after one
warm-up batch. Training = forward + backward + SGD step; inference = eval mode under
`torch.inference_mode`. Ratios are to fp32 NCHW of the same model, measured in the same run.
"bf16 error" is max |logit_bf16 − logit_fp32| / max |logit_fp32| on the same input.

Parameters: {", ".join(f"{label}: {n / 1e6:.1f} M" for label, n in params.items())}.

| model | variant | train img/s | train × | inference img/s | inference × | bf16 error |
|---|---|---:|---:|---:|---:|---:|
""" + "\n".join(rows) + "\n"
    print(text)
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
