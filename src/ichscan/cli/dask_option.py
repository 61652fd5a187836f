"""The ``--dask`` option shared by `index`, `prepare` and `predict` (see `ichscan.parallel`)."""

from __future__ import annotations

from typing import Annotated

import typer

from ichscan.cli.app import fail

DaskOption = Annotated[
    str | None,
    typer.Option(
        "--dask",
        metavar="SCHEDULER|local:N",
        help="Run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N worker "
        "processes on this machine (docs/SCALING.md). Default: a local process pool.",
        show_default=False,
    ),
]


def check_dask(spec: str | None) -> str | None:
    """Validate a ``--dask`` value before any work; a one-line error when malformed."""
    if spec is None:
        return None
    from ichscan.parallel import parse_dask_spec

    try:
        parse_dask_spec(spec)
    except ValueError as error:
        raise fail(error) from error
    return spec
