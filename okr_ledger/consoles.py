"""The CLI's two consoles, standard output and standard error, shared by every command module.

A rich console reads ``COLUMNS`` once, when it is made (here, at import); one process may run
several commands (the tests, a program that embeds the app), so :func:`measure_again` sizes
them anew before each command."""

from rich.console import Console

out = Console()
err = Console(stderr=True)


def measure_again() -> None:
    """Size both consoles for the terminal (or ``COLUMNS``) as it is now."""
    for console in (out, err):
        console.width = Console(stderr=console.stderr).width
