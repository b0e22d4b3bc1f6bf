"""``evidencelock`` command line: parse, call the library, render, exit code.

Each command lives in ``evidencelock.commands``; this module only assembles the group.
Command modules are imported on first use, so `evidencelock verify` does not pay for
importing the bundle, media or transparency code (start-up time is part of every audit).
"""

from __future__ import annotations

import importlib

import click

from .commands._common import EXIT_CODES_HELP

__all__ = ["main", "cli"]

# command name -> (module under evidencelock.commands, attribute)
_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("core", "init"),
    "ingest": ("core", "ingest"),
    "log": ("core", "log"),
    "show": ("core", "show"),
    "verify": ("core", "verify"),
    "audit": ("core", "audit"),
    "recover": ("core", "recover"),
    "demo": ("core", "demo"),
    "keys": ("custody", "keys"),
    "transfer": ("custody", "transfer"),
    "accept": ("custody", "accept"),
    "access": ("custody", "access"),
    "derive": ("custody", "derive"),
    "annotate": ("custody", "annotate"),
    "request-deletion": ("custody", "request_deletion"),
    "history": ("custody", "history"),
    "cases": ("custody", "cases"),
    "checkpoint": ("transparency", "checkpoint"),
    "timestamp-attach": ("transparency", "timestamp_attach"),
    "prove": ("transparency", "prove"),
    "consistency": ("transparency", "consistency"),
    "checkpoints": ("transparency", "checkpoints"),
    "witness": ("transparency", "witness"),
    "cosign-attach": ("transparency", "cosign_attach"),
    "verify-checkpoint": ("transparency", "verify_checkpoint"),
    "export": ("bundle", "export"),
    "verify-bundle": ("bundle", "verify_bundle_cmd"),
    "import-bundle": ("bundle", "import_bundle_cmd"),
    "similar": ("media", "similar"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = _COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module = importlib.import_module(f"evidencelock.commands.{spec[0]}")
        command = getattr(module, spec[1])
        assert isinstance(command, click.Command) and command.name == cmd_name, cmd_name
        _accept_vault_after(command)
        return command


def _vault_after_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``evidencelock COMMAND --vault X``: the same as ``evidencelock --vault X COMMAND`` (issue 11).
    Both given with different values is refused (exit 2): which vault a command writes to must
    never be a guess."""
    if value is None:
        return
    obj = ctx.find_root().obj
    before = obj.get("vault")
    if before is not None and before != value:
        raise click.UsageError(f"--vault was given twice with different values ({before!r} before the command, "
                               f"{value!r} after it); give it once", ctx=ctx)
    obj["vault"] = value


def _accept_vault_after(command: click.Command) -> None:
    """Add a ``--vault`` option to ``command`` (and its subcommands) once; it only sets the group's value."""
    if any(p.name == "vault_after_command" for p in command.params):
        return
    command.params.append(click.Option(["--vault", "vault_after_command"], type=click.Path(file_okay=False, path_type=str),
                                       expose_value=False, is_eager=True, callback=_vault_after_callback,
                                       help="Vault folder; same as `evidencelock --vault PATH COMMAND`."))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_vault_after(sub)


@click.group(
    cls=_LazyGroup,
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


def main() -> None:
    cli(prog_name="evidencelock")
