"""Custody commands: keys (list / add / revoke / rotate / export), transfer, accept, access, derive,
annotate, request-deletion, history, cases."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
from ._common import escape
from rich.table import Table
from sqlalchemy import select

from .. import custody, schema
from .._text import json_safe, printable
from ..errors import FormatError, InputError
from ..keys import PublicKey, public_key_from_pem
from . import _common as c
from ._common import EXIT_CODES_HELP, emit_json, handle_errors, json_option, out



@click.group(invoke_without_command=True, epilog=EXIT_CODES_HELP)
@json_option
@click.pass_context
@handle_errors
def keys(ctx: click.Context, as_json: bool) -> None:
    """Custodian keys: list them (no subcommand), add, revoke, rotate, export."""
    if ctx.invoked_subcommand is not None:
        return
    with c.open_vault(ctx) as vault:
        with vault.ledger.reader() as conn:
            rows = conn.execute(select(schema.keys).order_by(schema.keys.c.enrolled_seq)).all()
        usable = set(custody.usable_keys(vault))
        here = {r.key_id for r in rows if vault.key_path(r.key_id).is_file()}
        origin = vault.config.origin
    from ..checkpoint import verifier_key

    # C2SP verifier key (docs/transparency.md §3.1): the key as a checkpoint signer, named by the origin.
    data = [{"key_id": r.key_id, "name": r.name, "enrolled_seq": r.enrolled_seq, "revoked_seq": r.revoked_seq,
             "private_key_here": r.key_id in here, "usable_here": r.key_id in usable,
             "verifier_key": verifier_key(origin, bytes(r.public_key))}
            for r in rows]
    if as_json:
        emit_json(data)
        return
    table = Table("key id", "custodian", "enrolled at entry", "revoked at entry", "can sign here")
    for d in data:
        table.add_row(d["key_id"], escape(d["name"]), str(d["enrolled_seq"]),
                      "" if d["revoked_seq"] is None else str(d["revoked_seq"]),
                      "yes" if d["usable_here"] else ("no (revoked)" if d["revoked_seq"] is not None else
                                                      "no (private key held elsewhere)"))
    out.print(table)


@keys.command("add", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--custodian", default=None, help="Enrolling custodian (name or key id; default: the vault's).")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Enrol a custodian whose private key is held elsewhere, from the PEM their `keys export` wrote.")
@click.option("--allow-weak-passphrase", is_flag=True,
              help="Accept a passphrase shorter than 12 characters or on the common-passphrase list.")
@json_option
@click.pass_context
@handle_errors
def keys_add(ctx: click.Context, name: str, custodian: str | None, public_key: Path | None, allow_weak_passphrase: bool,
             as_json: bool) -> None:
    """Create and enrol a key for a new custodian NAME (signed by an enrolled custodian).

    The new key's passphrase comes from $EVIDENCELOCK_NEW_PASSPHRASE or a prompt.  With
    --public-key FILE only the public key is enrolled (marked external: it cannot sign here).
    """
    with c.open_vault(ctx, writable=True) as vault:
        if public_key is not None:
            pk = _read_public_key(public_key, name)
            signer = c.unlock(vault, custodian)
            signed = custody.enroll_external(vault, signer, name=name, public_key=pk, now=c.utc_now())
            if as_json:
                emit_json({"ok": True, "key_id": pk.key_id, "name": name, "external": True, "seq": signed.entry.seq})
            else:
                out.print(f"Enrolled custodian {escape(name)} (public key only; the private key is held elsewhere): "
                          f"key id {pk.key_id}")
            return
        signer = c.unlock(vault, custodian)
        new_pass = _new_passphrase(name)
        key = custody.enroll_custodian(vault, signer, name=name, passphrase=new_pass, now=c.utc_now(),
                                       allow_weak_passphrase=allow_weak_passphrase)
    if as_json:
        emit_json({"ok": True, "key_id": key.key_id, "name": name})
    else:
        out.print(f"Enrolled custodian {escape(name)}: key id {key.key_id}")


def _new_passphrase(name: str) -> str:
    value = os.environ.get("EVIDENCELOCK_NEW_PASSPHRASE")
    if value:
        return value
    return str(click.prompt(f"Passphrase for {printable(name)}'s new key", hide_input=True, confirmation_prompt=True,
                            err=True))


def _read_public_key(path: Path, name: str) -> PublicKey:
    try:
        data = path.read_bytes()[:65536]
    except OSError as exc:
        raise InputError(f"cannot read the public key file: {exc.strerror}", subject=str(path)) from None
    try:
        return PublicKey(public_key_from_pem(data), name)
    except FormatError as exc:
        raise InputError(f"not an Ed25519 public key in PEM form: {exc.message}", subject=str(path)) from None


@keys.command("revoke", epilog=EXIT_CODES_HELP)
@click.argument("key")
@click.option("--reason", required=True, help="Why (e.g. 'laptop seized at checkpoint, 2014-05-02').")
@click.option("--successor", default=None, metavar="NAME",
              help="Create and enrol a new key for NAME in the same step (required to revoke the last usable key).")
@click.option("--custodian", default=None, help="Revoking custodian (name or key id; default: the vault's).")
@click.option("--allow-weak-passphrase", is_flag=True, help="Accept a weak passphrase for the successor's key.")
@json_option
@click.pass_context
@handle_errors
def keys_revoke(ctx: click.Context, key: str, reason: str, successor: str | None, custodian: str | None,
                allow_weak_passphrase: bool, as_json: bool) -> None:
    """Revoke KEY (name or key id): entries it signs after this are invalid.

    Revoking the last usable key of the vault is refused unless --successor NAME enrols a
    new key in the same step (its passphrase from $EVIDENCELOCK_NEW_PASSPHRASE or a prompt).
    """
    with c.open_vault(ctx, writable=True) as vault:
        signer = c.unlock(vault, custodian)
        new_pass = _new_passphrase(successor) if successor is not None else None
        signed = custody.revoke_custodian(vault, signer, key_id=key, reason=reason, now=c.utc_now(),
                                          successor=successor, successor_passphrase=new_pass,
                                          allow_weak_passphrase=allow_weak_passphrase)
    body = signed.entry.body
    if as_json:
        emit_json({"ok": True, "seq": signed.entry.seq, "key_id": body["key_id"], "successor": body.get("successor")})
        return
    out.print(f"Revoked key {body['key_id']} at entry {signed.entry.seq}")
    if body.get("successor"):
        out.print(f"Enrolled successor {escape(successor or '')}: key id {body['successor']} (entry {signed.entry.seq - 1})")


@keys.command("rotate", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("--reason", default=None, help="Why (default: 'key rotation: replaced by a new key').")
@click.option("--allow-weak-passphrase", is_flag=True, help="Accept a weak passphrase for the new key.")
@json_option
@click.pass_context
@handle_errors
def keys_rotate(ctx: click.Context, name: str, reason: str | None, allow_weak_passphrase: bool, as_json: bool) -> None:
    """Replace NAME's key by a new one: the old key signs the new key's enrolment, then its own
    revocation (one step).  Old passphrase: $EVIDENCELOCK_PASSPHRASE or a prompt; new one:
    $EVIDENCELOCK_NEW_PASSPHRASE or a prompt."""
    with c.open_vault(ctx, writable=True) as vault:
        old = c.unlock(vault, name)
        new_pass = _new_passphrase(old.public.name or name)
        new, signed = custody.rotate_key(vault, old, passphrase=new_pass, now=c.utc_now(), reason=reason,
                                         allow_weak_passphrase=allow_weak_passphrase)
    if as_json:
        emit_json({"ok": True, "old_key_id": old.key_id, "key_id": new.key_id, "entries": [s.entry.seq for s in signed]})
    else:
        out.print(f"New key {new.key_id} enrolled at entry {signed[0].entry.seq} (signed by the old key); "
                  f"old key {old.key_id} revoked at entry {signed[1].entry.seq}")


@keys.command("export", epilog=EXIT_CODES_HELP)
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the PEM to this file (default: standard output).")
@json_option
@click.pass_context
@handle_errors
def keys_export(ctx: click.Context, name: str, output: Path | None, as_json: bool) -> None:
    """The public key of NAME (SubjectPublicKeyInfo PEM), from its signed enrolment entry: what a
    lawyer pins (`verify-bundle --trusted-key`) or another organisation enrols (`keys add --public-key`)."""
    with c.open_vault(ctx) as vault:
        key_id, key_name, pem = custody.export_public_key(vault, name)
    if output is not None:
        if output.exists():
            raise InputError("the output file already exists; nothing was written", subject=str(output))
        output.write_bytes(pem)
    if as_json:
        emit_json({"ok": True, "key_id": key_id, "name": key_name, "pem": pem.decode("ascii"),
                   "file": str(output) if output is not None else None})
    elif output is None:
        click.echo(pem.decode("ascii"), nl=False)
    else:
        out.print(f"Wrote the public key of {escape(key_name)} (key id {key_id}) to {escape(str(output))}")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("items", nargs=-1)
@click.option("--case", "case", required=True, help="Case the items belong to (all its items if no ITEM given).")
@click.option("--to", "to", default=None, help="Receiving custodian (name or key id).")
@click.option("--accept", "accept_", is_flag=True, help="Accept the transfers in transit to you instead (same as `accept`).")
@click.option("--note", default=None, help="Free text: how, where, why.")
@click.option("--custodian", default=None, help="Releasing (or, with --accept, receiving) custodian (default: the vault's).")
@json_option
@click.pass_context
@handle_errors
def transfer(ctx: click.Context, items: tuple[str, ...], case: str, to: str | None, accept_: bool, note: str | None,
             custodian: str | None, as_json: bool) -> None:
    """Release ITEMs (digest prefix or file name; or a whole case) to another custodian.

    Only the custodian holding an item may release it.  The item is then in transit until the
    receiver signs its acceptance (`accept`, or `transfer --accept`)."""
    if accept_:
        if to is not None:
            raise InputError("--accept takes no --to: you accept what was released to you")
        _accept(ctx, items, case, note, custodian, as_json)
        return
    if to is None:
        raise InputError("--to is required: the receiving custodian (name or key id)")
    with c.open_vault(ctx, writable=True) as vault:
        signer = c.unlock(vault, custodian)
        signed = custody.transfer_items(vault, signer, items=items, case=case, to=to, note=note, now=c.utc_now)
        to_name = vault.enrolled_keys()[signed[0].entry.body["to"]].name
    if as_json:
        emit_json({"ok": True, "entries": [s.entry.seq for s in signed], "to": signed[0].entry.body["to"],
                   "status": "pending"})
    else:
        out.print(f"Released {len(signed)} item(s) to {escape(to_name)} (entries {signed[0].entry.seq}–{signed[-1].entry.seq}). "
                  f"They are in transit until {escape(to_name)} accepts them (`evidencelock accept --case ...`).")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("items", nargs=-1)
@click.option("--case", "case", required=True, help="Case of the transfers.")
@click.option("--note", default=None, help="Free text (e.g. 'seal intact').")
@click.option("--custodian", default=None, help="Receiving custodian (default: the vault's).")
@json_option
@click.pass_context
@handle_errors
def accept(ctx: click.Context, items: tuple[str, ...], case: str, note: str | None, custodian: str | None,
           as_json: bool) -> None:
    """Sign your acceptance of the items of CASE released to you (all of them, or ITEMs)."""
    _accept(ctx, items, case, note, custodian, as_json)


def _accept(ctx: click.Context, items: tuple[str, ...], case: str, note: str | None, custodian: str | None,
            as_json: bool) -> None:
    with c.open_vault(ctx, writable=True) as vault:
        signer = c.unlock(vault, custodian)
        signed = custody.accept_transfers(vault, signer, case=case, items=items, note=note, now=c.utc_now)
    if as_json:
        emit_json({"ok": True, "entries": [s.entry.seq for s in signed],
                   "accepted": [{"item": s.entry.body["item"], "transfer": s.entry.body["transfer"]["seq"]} for s in signed]})
    else:
        out.print(f"Accepted custody of {len(signed)} item(s) (entries {signed[0].entry.seq}–{signed[-1].entry.seq}).")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("item")
@click.option("--purpose", required=True, help="Why the original is opened (recorded).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a copy of the original here (checked against its signed SHA-256 first).")
@click.option("--case", default=None, help="Case (needed when the item is in more than one).")
@click.option("--custodian", default=None, help="Who accesses it (default: the vault's).")
@json_option
@click.pass_context
@handle_errors
def access(ctx: click.Context, item: str, purpose: str, output: Path | None, case: str | None, custodian: str | None,
           as_json: bool) -> None:
    """Record that you view ITEM (action `view`), or with -o retrieve a copy of it (`retrieve`).

    Exit 1 if the stored copy no longer matches its signed SHA-256 (nothing written or recorded)."""
    with c.open_vault(ctx, writable=True) as vault:
        signer = c.unlock(vault, custodian)
        if output is not None:
            signed = custody.retrieve_copy(vault, signer, item=item, purpose=purpose, out=output, now=c.utc_now(),
                                           case=case)
        else:
            signed = custody.record_access(vault, signer, item=item, purpose=purpose, action="view", now=c.utc_now(),
                                           case=case)
    body = signed.entry.body
    if as_json:
        emit_json({"ok": True, "seq": signed.entry.seq, "item": body["item"], "action": body["action"],
                   "file": str(output) if output is not None else None})
    elif output is not None:
        out.print(f"Wrote a verified copy of {body['item'][:16]}… to {escape(str(output))}; access recorded at entry "
                  f"{signed.entry.seq}")
    else:
        out.print(f"Access to {body['item'][:16]}… recorded at entry {signed.entry.seq}")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("original")
@click.argument("derived_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--action", required=True, help="What was done (e.g. 'blurred faces', 'trimmed to 0:10-0:40').")
@click.option("--case", default=None, help="Case (default: the original's, when it is in one only).")
@click.option("--note", default=None, help="Free text recorded with the derived copy's ingest.")
@click.option("--no-media", is_flag=True, help="Do not extract metadata from the derived copy.")
@click.option("--custodian", default=None, help="Who made the copy (default: the vault's).")
@json_option
@click.pass_context
@handle_errors
def derive(ctx: click.Context, original: str, derived_file: Path, action: str, case: str | None, note: str | None,
           no_media: bool, custodian: str | None, as_json: bool) -> None:
    """Preserve DERIVED_FILE (a redacted, trimmed or transcoded copy) linked to its ORIGINAL.

    Run it again after an interruption: it finishes the job without recording anything twice."""
    with c.open_vault(ctx, writable=True) as vault:
        signer = c.unlock(vault, custodian)
        res = custody.derive(vault, signer, original=original, derived_path=derived_file, action=action,
                             now=c.utc_now, case=case, note=note, extract_media=not no_media)
    if as_json:
        emit_json({"ok": True, "original": res.original, "derived": res.derived, "case": res.case,
                   "ingest": res.ingest_status, "ingest_seq": res.ingest_seq, "derive_seq": res.derive_seq,
                   "already_linked": res.already_linked})
    else:
        out.print(f"Derived copy {res.derived[:16]}… preserved ({res.ingest_status}) and linked to original "
                  f"{res.original[:16]}… at entry {res.derive_seq}" + (" (already recorded)" if res.already_linked else ""))


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("item")
@click.argument("text")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
@click.option("--location", default=None, metavar="LAT,LON", help="A geolocation finding, decimal degrees.")
@click.option("--case", default=None, help="Case (needed when the item is in more than one).")
@click.option("--custodian", default=None, help="Analyst (default: the vault's custodian).")
@json_option
@click.pass_context
@handle_errors
def annotate(ctx: click.Context, item: str, text: str, tags: tuple[str, ...], location: str | None, case: str | None,
             custodian: str | None, as_json: bool) -> None:
    """Record an analyst's note on ITEM (signed), with tags and a location."""
    with c.open_vault(ctx, writable=True) as vault:
        signer = c.unlock(vault, custodian)
        signed = custody.annotate(vault, signer, item=item, text=text, tags=tags, location=location, now=c.utc_now(),
                                  case=case)
    if as_json:
        emit_json({"ok": True, "seq": signed.entry.seq, "item": signed.entry.body["item"]})
    else:
        out.print(f"Note on {signed.entry.body['item'][:16]}… recorded at entry {signed.entry.seq}")


@click.command("request-deletion", epilog=EXIT_CODES_HELP)
@click.argument("item")
@click.option("--reason", required=True, help="Why deletion is requested (recorded).")
@click.option("--case", default=None, help="Case (needed when the item is in more than one).")
@click.option("--custodian", default=None, help="Who asks (default: the vault's custodian).")
@json_option
@click.pass_context
@handle_errors
def request_deletion(ctx: click.Context, item: str, reason: str, case: str | None, custodian: str | None,
                     as_json: bool) -> None:
    """Record a request to delete ITEM.  Nothing is deleted: the store is write-once."""
    with c.open_vault(ctx, writable=True) as vault:
        signer = c.unlock(vault, custodian)
        signed = custody.request_deletion(vault, signer, item=item, reason=reason, now=c.utc_now(), case=case)
    if as_json:
        emit_json({"ok": True, "seq": signed.entry.seq, "item": signed.entry.body["item"], "deleted": False,
                   "outcome": signed.entry.body["outcome"]})
    else:
        out.print(f"Deletion request for {signed.entry.body['item'][:16]}… recorded at entry {signed.entry.seq}. "
                  f"Nothing was deleted: the original stays in the write-once store.")


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("item")
@click.option("--case", default=None, help="Only this case.")
@json_option
@click.pass_context
@handle_errors
def history(ctx: click.Context, item: str, case: str | None, as_json: bool) -> None:
    """The custody timeline of ITEM (digest prefix or original file name), signatures checked.

    Exit 1 if a signature or a custody rule fails (named)."""
    from ..history import item_history
    from ..timeline import human_time

    with c.open_vault(ctx) as vault:
        h = item_history(vault, item, case=case)
    if as_json:
        # Compact (one line): a 10,000-event history is written by the C encoder in milliseconds.
        click.echo(json_safe(json.dumps(h.to_json(), sort_keys=True, ensure_ascii=False)))
        raise SystemExit(0 if h.ok else 1)
    out.print(f"[bold]Item[/] sha256:{h.item}")
    if h.file_names:
        out.print("  ingested from: " + ", ".join(escape(f) for f in h.file_names[:10])
                  + (f" and {len(h.file_names) - 10} more" if len(h.file_names) > 10 else ""))
    bad = {p.seq for p in h.signature_problems}
    for ic in h.cases:
        out.print(f"[bold]Case[/] {escape(ic.case)}")
        out.file.flush()
        # One write for all the lines (rich renders ~3,000 lines/s; a busy item has 10,000 events).
        # Event texts are already printable (evidencelock.timeline); printable() again is a no-op guard.
        click.echo("".join(f"  {human_time(e.time)}  {printable(e.text)}  (entry {e.seq})"
                           + ("  SIGNATURE NOT VALID" if e.seq in bad else "") + "\n" for e in ic.events), nl=False)
        out.print("  " + _holder_line(ic))
    for f in h.findings:
        out.print(f"[{'red' if f.severity == 'fail' else 'yellow'}]{'PROBLEM' if f.severity == 'fail' else 'notice'}[/] "
                  f"{escape(f.message)}")
    for p in h.signature_problems:
        out.print(f"[red]PROBLEM[/] SIGNATURE NOT VALID — {escape(p.message)} (not used for the custody shown above)")
    out.print(f"Signatures checked: {h.signatures_checked} entries (each shown entry and the key enrolments behind "
              f"them, under the enrolled keys; no key used after its revocation)"
              + (f"; {len(h.signature_problems)} did NOT verify." if h.signature_problems else "."))
    out.print("Not checked here: the hash chain and Merkle tree of the whole ledger, and the stored bytes "
              "(run `evidencelock verify`).")
    raise SystemExit(0 if h.ok else 1)


def _holder_line(ic: Any) -> str:
    if ic.holder is not None:
        return f"[bold]Holder now:[/] {escape(ic.holder_name or ic.holder)}"
    if ic.in_transit_to is not None:
        return (f"[bold]Holder now:[/] nobody — in transit to {escape(ic.in_transit_name or ic.in_transit_to)} "
                f"(released, not yet accepted)")
    return "[bold]Holder now:[/] nobody (no ingest of the item in this case)"


@click.command(epilog=EXIT_CODES_HELP)
@json_option
@click.pass_context
@handle_errors
def cases(ctx: click.Context, as_json: bool) -> None:
    """Cases with their item and entry counts, pending transfers and holders."""
    from ..history import list_cases

    with c.open_vault(ctx) as vault:
        summaries = list_cases(vault)
    if as_json:
        emit_json([s.to_json() for s in summaries])
        return
    table = Table("case", "items", "entries", "in transit", "held by")
    for s in summaries:
        held = ", ".join(f"{escape(n)} ({k})" for n, k in sorted(s.holders.items()))
        table.add_row(escape(s.case), str(s.items), str(s.entries), str(s.in_transit), held)
    out.print(table)
