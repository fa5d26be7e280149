"""Where every ``pht`` command prints, and how it fails: one sentence on stderr, exit code 1."""

import typer
from rich.console import Console

console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print one sentence to stderr and return the exit to raise (code 1)."""
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)
