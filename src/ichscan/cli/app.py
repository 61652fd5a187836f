"""The typer application every command module registers on."""

import typer

app = typer.Typer(
    name="ichscan",
    help="Intracranial hemorrhage detection on head CT: index, prepare, train, predict, explain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click errors: one line naming the file and the reason, never a box cut to the terminal.
    rich_markup_mode=None,
)
