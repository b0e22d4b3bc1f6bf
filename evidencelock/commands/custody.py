"""Custody commands: keys (list / add / revoke) and transfer."""

from __future__ import annotations

import os

import click
from ._common import escape
from rich.table import Table
from sqlalchemy import select

from .. import custody, schema
from .._text import printable
from . import _common as c
from ._common import EXIT_CODES_HELP, emit_json, handle_errors, json_option, out



@click.group(invoke_without_command=True, epilog=EXIT_CODES_HELP)
@json_option
@click.pass_context
@handle_errors
def keys(ctx: click.Context, as_json: bool) -> None:
    """Custodian keys: list them (no subcommand), add a custodian, revoke a key."""
    if ctx.invoked_subcommand is not None:
        return
    with c.open_vault(ctx) as vault:
        with vault.ledger.reader() as conn:
            rows = conn.execute(select(schema.keys).order_by(schema.keys.c.enrolled_seq)).all()
    data = [{"key_id": r.key_id, "name": r.name, "enrolled_seq": r.enrolled_seq, "revoked_seq": r.revoked_seq}
            for r in rows]
    if as_json:
        emit_json(data)
        return
    table = Table("key id", "custodian", "enrolled at entry", "revoked at entry")
    for d in data:
        table.add_row(d["key_id"], escape(d["name"]), str(d["enrolled_seq"]),
                      "" if d["revoked_seq"] is None else str(d["revoked_seq"]))
    out.print(table)


@keys.command("add", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--custodian", default=None, help="Enrolling custodian (name or key id; default: the vault's).")
@click.option("--allow-weak-passphrase", is_flag=True,
              help="Accept a passphrase shorter than 12 characters or on the common-passphrase list.")
@json_option
@click.pass_context
@handle_errors
def keys_add(ctx: click.Context, name: str, custodian: str | None, allow_weak_passphrase: bool, as_json: bool) -> None:
    """Create and enrol a key for a new custodian NAME (signed by an enrolled custodian).

    The new key's passphrase comes from $EVIDENCELOCK_NEW_PASSPHRASE or a prompt.
    """
    with c.open_vault(ctx, writable=True) as vault:
        signer = vault.unlock(c.get_passphrase(), custodian)
        new_pass = os.environ.get("EVIDENCELOCK_NEW_PASSPHRASE") or click.prompt(
            f"Passphrase for {printable(name)}'s new key", hide_input=True, confirmation_prompt=True, err=True)
        key = custody.enroll_custodian(vault, signer, name=name, passphrase=new_pass, now=c.utc_now(),
                                       allow_weak_passphrase=allow_weak_passphrase)
    if as_json:
        emit_json({"ok": True, "key_id": key.key_id, "name": name})
    else:
        out.print(f"Enrolled custodian {escape(name)}: key id {key.key_id}")


@keys.command("revoke", epilog=EXIT_CODES_HELP)
@click.argument("key")
@click.option("--reason", required=True, help="Why (e.g. 'laptop seized at checkpoint, 2014-05-02').")
@click.option("--custodian", default=None, help="Revoking custodian (name or key id; default: the vault's).")
@json_option
@click.pass_context
@handle_errors
def keys_revoke(ctx: click.Context, key: str, reason: str, custodian: str | None, as_json: bool) -> None:
    """Revoke KEY (name or key id): entries it signs after this are invalid."""
    with c.open_vault(ctx, writable=True) as vault:
        signer = vault.unlock(c.get_passphrase(), custodian)
        signed = custody.revoke_custodian(vault, signer, key_id=key, reason=reason, now=c.utc_now())
    if as_json:
        emit_json({"ok": True, "seq": signed.entry.seq, "key_id": signed.entry.body["key_id"]})
    else:
        out.print(f"Revoked key {signed.entry.body['key_id']} at entry {signed.entry.seq}")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("items", nargs=-1)
@click.option("--case", "case", required=True, help="Case the items belong to (all its items if no ITEM given).")
@click.option("--to", "to", required=True, help="Receiving custodian (name or key id).")
@click.option("--note", default=None, help="Free text: how, where, why.")
@click.option("--custodian", default=None, help="Releasing custodian (default: the vault's).")
@json_option
@click.pass_context
@handle_errors
def transfer(ctx: click.Context, items: tuple[str, ...], case: str, to: str, note: str | None,
             custodian: str | None, as_json: bool) -> None:
    """Record a custody transfer of ITEMs (or a whole case) to another custodian."""
    with c.open_vault(ctx, writable=True) as vault:
        signer = vault.unlock(c.get_passphrase(), custodian)
        signed = custody.transfer_items(vault, signer, items=items, case=case, to=to, note=note, now=c.utc_now)
    if as_json:
        emit_json({"ok": True, "entries": [s.entry.seq for s in signed]})
    else:
        out.print(f"Recorded {len(signed)} transfer entries (seq {signed[0].entry.seq}–{signed[-1].entry.seq})")
