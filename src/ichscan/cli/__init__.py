"""ichscan's command line: one module per command, each a thin layer over the library."""

from ichscan.cli import (  # noqa: F401  (each module registers its commands on `app`)
    contract,
    evaluate,
    explain,
    index,
    predict,
    prepare,
    pretrain,
    sequence,
    stats,
    synth,
    train,
)
from ichscan.cli.app import app

__all__ = ["app"]
