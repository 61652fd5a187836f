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


def _print_version(value: bool) -> None:
    """`ichscan --version`: the package version, then exit (no library import)."""
    if value:
        from ichscan import __version__

        typer.echo(f"ichscan {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Intracranial hemorrhage detection on head CT: index, prepare, train, predict, explain."""


def fail(message: object) -> typer.Exit:
    """Print `Error: <message>` as one line on stderr; return the exit (status 1) to raise.

    One line whatever the terminal width, so that a long file name is never cut or wrapped.
    """
    Console(stderr=True, highlight=False).print(f"Error: {message}", soft_wrap=True, markup=False)
    return typer.Exit(1)
