"""Shared plumbing for the click commands: vault resolution, passphrases, output, exit codes.

Only the ``commands`` package and ``cli`` import click; the library never does.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from .._text import json_safe, printable
from ..errors import CustodianKeyError, EvidenceLockError, exit_code_for
from ..vault import DEFAULT_VAULT, Vault

__all__ = [
    "EXIT_CODES_HELP",
    "out",
    "err",
    "json_option",
    "vault_path",
    "open_vault",
    "get_passphrase",
    "unlock",
    "utc_now",
    "emit_json",
    "handle_errors",
    "escape",
    "SafeConsole",
    "one_of",
]

EXIT_CODES_HELP = "Exit codes: 0 all good; 1 verification found a problem; 2 bad usage, bad input or environment failure."



class SafeConsole(Console):
    """A rich Console that never writes a raw control, bidi or invisible format character
    (issue 9 item 17): every string it renders, markup included, passes through
    :func:`evidencelock._text.printable` first (``\n`` and ``\t`` kept for layout).
    Values must still go through :func:`escape` so that ``[bold]`` in a name stays text
    and a newline in a name cannot fake a line of output."""

    def render_str(self, text: str, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().render_str(printable(text, keep_layout=True), **kwargs)


class _SafeLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Libraries' own warnings (e.g. fpdf2 naming a glyph it cannot draw) may quote our
    names: they reach stderr escaped like everything else."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), keep_layout=True)


logging.lastResort = _SafeLogHandler(sys.stderr)
logging.lastResort.setLevel(logging.WARNING)


def _safe_showwarning(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                      line: str | None = None) -> None:
    """Python warnings from libraries (e.g. Pillow quoting a file) are escaped too."""
    import warnings

    try:
        (file or sys.stderr).write(printable(warnings.formatwarning(message, category, filename, lineno, line),
                                             keep_layout=True))
    except OSError:
        pass


def _safe_excepthook(exc_type: Any, exc: Any, tb: Any) -> None:
    """A bug's traceback may quote a name: escaped like every other line we print."""
    import traceback

    sys.stderr.write(printable("".join(traceback.format_exception(exc_type, exc, tb)), keep_layout=True))


def _install_safe_hooks() -> None:
    import warnings

    warnings.showwarning = _safe_showwarning
    sys.excepthook = _safe_excepthook


_install_safe_hooks()

# emoji=False: a file named ":warning:" is shown as typed, not as an emoji.
out = SafeConsole(highlight=False, soft_wrap=True, emoji=False)
err = SafeConsole(stderr=True, highlight=False, soft_wrap=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])


def utc_now() -> datetime:
    """The real clock: read here, at the edge, and passed into the library (STYLE.md §8)."""
    return datetime.now(timezone.utc)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")(f)


def vault_path(ctx: click.Context) -> Path:
    obj = ctx.find_root().obj or {}
    return Path(obj.get("vault") or os.environ.get("EVIDENCELOCK_VAULT") or DEFAULT_VAULT)


@contextmanager
def open_vault(ctx: click.Context, *, writable: bool = False) -> Iterator[Vault]:
    vault = Vault.open(vault_path(ctx), writable=writable)
    try:
        yield vault
    finally:
        vault.close()


def get_passphrase(*, confirm: bool = False) -> str:
    value = os.environ.get("EVIDENCELOCK_PASSPHRASE")
    if value:
        return value
    if not sys.stdin.isatty():
        raise CustodianKeyError(
            "a passphrase is needed to unlock the custodian key",
            hint="set $EVIDENCELOCK_PASSPHRASE or run in a terminal to be prompted",
        )
    return click.prompt("Custodian key passphrase", hide_input=True, confirmation_prompt=confirm, err=True)


def unlock(vault: Vault, who: str | None = None) -> Any:
    """Unlock custodian ``who`` (name or key id; default: the vault's), asking for the
    passphrase by the custodian's name ("Passphrase for Lawyer B's key")."""
    key_id = vault.resolve_custodian(who)
    value = os.environ.get("EVIDENCELOCK_PASSPHRASE")
    if not value:
        name = vault.enrolled_keys()[key_id].name if key_id in vault.enrolled_keys() else key_id[:16]
        if not sys.stdin.isatty():
            raise CustodianKeyError(
                f"a passphrase is needed to unlock {printable(name)}'s key",
                hint="set $EVIDENCELOCK_PASSPHRASE or run in a terminal to be prompted",
            )
        value = click.prompt(f"Passphrase for {printable(name)}'s key", hide_input=True, err=True)
    return vault.unlock(value, key_id)


def emit_json(data: Any) -> None:
    # Exact JSON; DEL, C1 and bidi characters (left raw by json.dumps) written as \uNNNN.
    click.echo(json_safe(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)))


def echo_exact(text: str) -> None:
    """A machine format (a signed note, a cosignature line) on stdout: byte-exact when piped to
    a file or another program; on a terminal, unsafe characters shown as escapes (item 17)."""
    click.echo(printable(text, keep_layout=True) if sys.stdout.isatty() else text, nl=False)


def handle_errors(f: F) -> F:
    """Map library errors to a named message on stderr and the DESIGN.md exit code."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("as_json", False)
        try:
            return f(*args, **kwargs)
        except EvidenceLockError as exc:
            code = exit_code_for(exc)
            if as_json:
                emit_json({"ok": False, "error": {"type": type(exc).__name__, "subject": exc.subject,
                                                  "message": exc.message, "hint": exc.hint}})
            err.print(f"[bold red]error:[/] {_escape(str(exc))}")
            raise SystemExit(code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]: nothing half-recorded; run the same command again to finish")
            raise SystemExit(130) from None
        except OSError as exc:
            # An unexpected environment failure: still a clear message, never a traceback.
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(f"[bold red]error:[/] {_escape(where)}{_escape(exc.strerror or str(exc))}")
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]


def escape(text: str) -> str:
    """A value (name, path, note, message) for rich output: controls, bidi and format
    characters shown as escapes (newlines too), rich markup made literal."""
    from rich.markup import escape as markup_escape

    return markup_escape(printable(str(text)))


_escape = escape


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def one_of(new: Any, old: Any, new_name: str, old_name: str) -> Any:
    """The value of an option given under its current name or its hidden old alias (issue 11:
    one option name across commands).  Both given and different is bad usage (exit 2)."""
    if new is not None and old is not None and new != old:
        raise click.UsageError(f"{new_name} and its old name {old_name} were both given, with different values; "
                               f"give {new_name} once")
    return new if new is not None else old
