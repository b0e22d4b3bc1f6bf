"""``evidencelock`` command line: parse, call the library, render, exit code.

Each command lives in ``evidencelock.commands``; this module only assembles the group.
"""

from __future__ import annotations

import click

from .commands import core
from .commands._common import EXIT_CODES_HELP

__all__ = ["main", "cli"]


@click.group(
    help="Preserve evidence so that it holds up in court years later.\n\n" + EXIT_CODES_HELP,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--vault",
    type=click.Path(file_okay=False, path_type=str),
    help="Vault folder (default: $EVIDENCELOCK_VAULT, else ./evidence-vault).",
)
@click.version_option(package_name="evidencelock")
@click.pass_context
def cli(ctx: click.Context, vault: str | None) -> None:
    ctx.ensure_object(dict)
    ctx.obj["vault"] = vault


core.register(cli)
for _name in ("custody", "transparency", "bundle", "media"):
    try:
        _mod = __import__(f"evidencelock.commands.{_name}", fromlist=["register"])
    except ModuleNotFoundError as _exc:  # a capability not installed in this build
        if _exc.name != f"evidencelock.commands.{_name}":
            raise
        continue
    _mod.register(cli)


def main() -> None:
    cli(prog_name="evidencelock")
