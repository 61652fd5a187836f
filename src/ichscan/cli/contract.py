"""`ichscan contract`: show a run's input contract, or (re)write it for a run that predates it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from ichscan.cli.app import app, fail


@app.command("contract")
def contract(
    run: str = typer.Argument(..., help="run folder, fold folder or `reference`"),
    write: bool = typer.Option(False, "--write", help="(re)write RUN/input.json from config.yaml + the cache's meta.json"),
    cache: Path | None = typer.Option(None, "--cache", help="with --write: the cache the run trained on "
                                      "(default: the config's data.cache_dir)"),
    fold: int | None = typer.Option(None, "--fold", min=0, help="only fold K of a run folder"),
) -> None:
    """Print the input contract (cache size, crop, resize, input size, windows, offsets, labels, split)."""
    from ichscan.data.contract import ContractError, read_contract
    from ichscan.train.resolve import RunError, resolve_run

    console = Console(highlight=False)
    try:
        resolved = resolve_run(run, fold)
        for run_dir in resolved.folds:
            if write:
                from ichscan.train.run import write_run_contract

                written = write_run_contract(run_dir, cache)
                console.print(f"wrote {run_dir / 'input.json'}", soft_wrap=True)
            else:
                written = read_contract(run_dir)
            console.print_json(json.dumps({"run": str(run_dir), **written.to_json()}))
    except (RunError, ContractError, ValueError) as exc:
        raise fail(exc) from None
