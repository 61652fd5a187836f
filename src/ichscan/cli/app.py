"""The typer application every command module registers on."""

import typer
from rich.console import Console

app = typer.Typer(
    name="ichscan",
    help="Intracranial hemorrhage detection on head CT: index, prepare, train, predict, explain.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click errors: one line naming the file and the reason, never a box cut to the terminal.
    rich_markup_mode=None,
)


def fail(message: object) -> typer.Exit:
    """Print `Error: <message>` as one line on stderr; return the exit (status 1) to raise.

    One line whatever the terminal width, so that a long file name is never cut or wrapped.
    """
    Console(stderr=True, highlight=False).print(f"Error: {message}", soft_wrap=True, markup=False)
    return typer.Exit(1)
