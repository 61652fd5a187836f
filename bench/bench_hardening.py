"""Benchmark hostile input: peak memory and time of `ichscan index`, `prepare` and `predict` per
bomb, and over the whole hostile folder of the fuzz suite (tests/fuzz/corpus.py).

Each case is one good 6-slice series plus one hostile file (a 65535² declaration in every
transfer syntax, a plausible-size image with implausibly few compressed bytes, a deflate bomb, a
valid slice with a 2 GB sparse tail), or the whole hostile folder (FIFO, symlink loop, non-UTF-8
name, hostile UIDs, truncations, ...). Every command runs in a subprocess under a 6 GiB
address-space cap and a time limit; peak RSS is that of the largest process (workers included).
`predict` uses a tiny random-weight model (tests/run_factory.py): the point is its input path.
With ``--against REF`` index and prepare of git revision REF run on the same cases (REF's
`predict` is not run: before this work it exceeded the cap on the bombs).

Usage: .venv/bin/python bench/bench_hardening.py [--against REF] [--out docs/bench/hardening.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "fuzz")]

CAP = 6 << 30
TIMEOUT = 120.0
BOMBS = ("bomb_explicit", "bomb_implicit", "bomb_bigendian", "bomb_deflate", "bomb_rle", "bomb_jpegls",
         "bomb_j2k", "bomb_ratio", "deflate_bomb", "sparse_tail")


def measured(src: Path, args: list[str], timeout: float = TIMEOUT) -> dict[str, object]:
    command = [sys.executable, str(ROOT / "tests" / "fuzz" / "measure.py"), str(CAP), str(timeout),
               sys.executable, "-m", "ichscan", *args]
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore", "COLUMNS": "250"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True, timeout=timeout + 60)
    return json.loads(done.stdout)


def cell(run: dict[str, object]) -> str:
    if run["returncode"] == "timeout":
        return f"timeout ({run['seconds']:.0f} s)"
    traceback = " traceback" if "Traceback" in str(run["stderr"]) else ""
    return f"{run['peak_rss_mib']:,.0f} MiB, {run['seconds']:.1f} s, exit {run['returncode']}{traceback}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "hardening.md")
    args = parser.parse_args()

    from corpus import hostile_folder
    from run_factory import make_run_dir

    work = Path(tempfile.mkdtemp(prefix="bench-hardening-"))
    try:
        hostile = hostile_folder(work / "hostile")
        model = make_run_dir(work / "train", "demo", seed=1)
        reference_src = None
        if args.against:
            reference_src = work / "reference"
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.against, "src"], capture_output=True,
                                     check=True).stdout
            reference_src.mkdir()
            subprocess.run(["tar", "-x", "-C", str(reference_src)], input=archive, check=True)
            reference_src = reference_src / "src"
        cases: dict[str, Path] = {}
        good = hostile.good_series["good0"]
        for name in ("none (good series only)", *BOMBS):
            folder = work / "cases" / name.split()[0]
            folder.mkdir(parents=True)
            for path in good:
                shutil.copy(path, folder / path.name)
            if name in BOMBS:
                source = hostile.root / "bad" / f"{name}.dcm"
                if name == "sparse_tail":
                    os.symlink(source, folder / source.name)  # a copy would write 2 GB of zeros
                else:
                    shutil.copy(source, folder / source.name)
            cases[name] = folder
        cases["whole hostile folder"] = hostile.root

        rows = []
        for name, folder in cases.items():
            out = work / "out" / name.split()[0]
            index = measured(ROOT / "src", ["index", str(folder), "-o", str(out / "m.parquet"), "--no-progress"])
            prepare = measured(ROOT / "src", ["prepare", str(out / "m.parquet"), "-o", str(out / "cache"), "--size", "64", "-q"])
            predict = measured(ROOT / "src", ["predict", "--model", str(model), str(folder), "-o", str(out / "pred"),
                                              "--no-progress"])
            row = [name, cell(index), cell(prepare), cell(predict)]
            if reference_src is not None:
                ref_out = work / "ref-out" / name.split()[0]
                old_index = measured(reference_src, ["index", str(folder), "-o", str(ref_out / "m.parquet"), "--no-progress"], 60)
                old_prepare = (measured(reference_src, ["prepare", str(ref_out / "m.parquet"), "-o", str(ref_out / "cache"),
                                                        "--size", "64", "-q"], 60)
                               if (ref_out / "m.parquet").exists() else None)
                row += [cell(old_index), cell(old_prepare) if old_prepare else "no manifest"]
            rows.append(row)
            print(" | ".join(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    load = os.getloadavg()[0]
    header = ["hostile file (next to one good series)", "index", "prepare", "predict"]
    if args.against:
        header += [f"index at `{args.against}`", f"prepare at `{args.against}`"]
    lines = [
        "## Hardening: hostile input",
        "",
        (f"Command: `.venv/bin/python bench/bench_hardening.py{' --against ' + args.against if args.against else ''}` "
         f"at commit `{commit}`  "),
        (f"Machine: {os.cpu_count()} cores {platform.machine()}, shared with other jobs (load average {load:.1f} at "
         "the end: seconds are noisy, peak memory is not); each command under a 6 GiB address-space cap."),
        "",
        ("Each cell: peak RSS of the largest process (workers included), wall seconds, exit status "
         "(0 all good, 1 nothing produced, 3 part of the input lost and listed). The good series is "
         "cached and predicted in every case."),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
