"""The CLI's two consoles, standard output and standard error, shared by every command module.

Each is a rich console made when first used: rich costs ~14 ms of imports, which a command
that prints nothing through it (``submit --json``, ``export``) need not pay. A rich console
reads ``COLUMNS`` once, when it is made; one process may run several commands (the tests, a
program that embeds the app), so :func:`measure_again` has them made anew before each
command."""

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.console import Console


class _Deferred:
    """Stands for a rich ``Console``, made at the first attribute read or write."""

    __slots__ = ("_console", "_stderr")

    def __init__(self, stderr: bool) -> None:
        object.__setattr__(self, "_stderr", stderr)
        object.__setattr__(self, "_console", None)

    def _made(self) -> "Console":
        console: Console | None = object.__getattribute__(self, "_console")
        if console is None:
            from rich.console import Console as Made

            console = Made(stderr=object.__getattribute__(self, "_stderr"))
            object.__setattr__(self, "_console", console)
        return console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._made(), name, value)

    # Special methods are looked up on the type, not through ``__getattr__``: rich's live
    # displays (progress bars) enter their console.
    def __enter__(self) -> "Console":
        return self._made().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._made().__exit__(*exc)


_consoles = (_Deferred(stderr=False), _Deferred(stderr=True))
out = cast("Console", _consoles[0])
err = cast("Console", _consoles[1])


def measure_again() -> None:
    """Size both consoles for the terminal (or ``COLUMNS``) as it is now: each is made anew
    when next used."""
    for deferred in _consoles:
        object.__setattr__(deferred, "_console", None)


def escape(text: str) -> str:
    """``text`` with rich markup escaped (rich imported only when something is printed)."""
    from rich.markup import escape as escaped

    return escaped(text)
