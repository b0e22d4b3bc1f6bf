"""Transparency commands: checkpoint, timestamp-attach, prove, consistency, checkpoints, witness,
cosign-attach, verify-checkpoint.  Parse, call :mod:`evidencelock.transparency`, render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from ._common import escape
from rich.table import Table

from .. import merkle
from .. import proofs as proofs_mod
from .. import transparency as tr
from ..errors import CustodianKeyError, FormatError, InputError, SignatureError
from ..keys import CustodianKey, public_key_from_pem
from . import _common as c
from ._common import EXIT_CODES_HELP, emit_json, err, handle_errors, json_option, out

__all__ = ["checkpoint", "timestamp_attach", "prove", "consistency", "checkpoints", "witness", "cosign_attach", "verify_checkpoint"]



def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}", subject=path) from None


def _text(path: str, what: str) -> str:
    try:
        return _read(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what} is not UTF-8 text", subject=path) from None


def _require_key(value: str | None) -> str:
    if value is None:
        raise click.UsageError("Missing option '--trusted-key' (the log's public key)")
    return value


def _log_key(value: str) -> bytes:
    """A log key pin: a PEM file, or a C2SP verifier key ``name+hash+base64`` (docs/transparency.md §3.1)."""
    if "+" in value and not Path(value).exists():
        from ..checkpoint import parse_verifier_key

        try:
            return parse_verifier_key(value)[1]
        except FormatError as exc:
            raise FormatError(exc.message, subject="--trusted-key") from None
    return _pubkey(value)


def _verifier_key_name(value: str) -> str | None:
    if "+" in value and not Path(value).exists():
        from ..checkpoint import parse_verifier_key

        return parse_verifier_key(value)[0]
    return None


def _pubkey(path: str) -> bytes:
    try:
        return public_key_from_pem(_read(path, "public key"))
    except FormatError as exc:
        raise FormatError(exc.message, subject=path) from None


@click.command(epilog=EXIT_CODES_HELP + " Exit 2 also when every TSA failed (the signed checkpoint is still kept and "
               "recorded); one TSA failing among several is a warning.")
@click.option("--tsa", "tsa_urls", multiple=True, metavar="URL", help="RFC 3161 timestamp authority (repeatable).")
@click.option("--tsa-cert", "tsa_certs", multiple=True, type=click.Path(dir_okay=False, path_type=str), metavar="PEM",
              help="TSA certificate followed by its CA chain; tokens are fully verified before they are stored (repeatable).")
@click.option("--tsa-timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for each TSA.")
@click.option("--tsq-out", type=click.Path(dir_okay=False, path_type=str), default=None, metavar="FILE",
              help="Also write an RFC 3161 request (.tsq) for a TSA reached later; see timestamp-attach.")
@click.option("-o", "--output", "note_out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Also write the signed checkpoint note to this file (to publish it).")
@click.option("--out", "note_out_old", type=click.Path(dir_okay=False, path_type=str), default=None, hidden=True)
@click.option("--custodian", default=None, help="Sign as this custodian (name or key id; default: the vault's).")
@json_option
@click.pass_context
@handle_errors
def checkpoint(ctx: click.Context, tsa_urls: tuple[str, ...], tsa_certs: tuple[str, ...], tsa_timeout: float,
               tsq_out: str | None, note_out: str | None, note_out_old: str | None, custodian: str | None,
               as_json: bool) -> None:
    """Sign (and timestamp) the current tree head; store it and record a checkpoint entry."""
    note_out = c.one_of(note_out, note_out_old, "--output", "--out")
    certs = [_read(p, "TSA certificate") for p in tsa_certs]
    for path in (tsq_out, note_out):
        if path and Path(path).exists():
            raise InputError("file exists; choose a new name", subject=path)
    with c.open_vault(ctx, writable=True) as vault:
        key = c.unlock(vault, custodian)
        result = tr.create_checkpoint(vault, key, now=c.utc_now(), tsa_urls=tsa_urls, tsa_timeout=tsa_timeout,
                                      tsa_certificates=certs, make_tsq=tsq_out is not None)
    cp = result.checkpoint
    if tsq_out and result.tsq is not None:
        Path(tsq_out).write_bytes(result.tsq)
    if note_out:
        Path(note_out).write_text(cp.note, encoding="utf-8")
    if as_json:
        from ..checkpoint import verifier_key

        data = {"ok": not result.tsa_all_failed, **cp.to_json(), "entry_seq": result.entry_seq,
                "tsa": [r.to_json() for r in result.tsa], "tsq": tsq_out,
                # docs/transparency.md §3.1: pins this checkpoint's signer in C2SP tools
                "verifier_key": verifier_key(vault.config.origin, key.public.raw)}
        emit_json(data)
    else:
        out.print(cp.note, end="", markup=False)
        err.print(f"Checkpoint #{cp.id}: tree size {cp.tree_size}, root {cp.root_hash.hex()}; "
                  f"recorded as entry {result.entry_seq}")
        for r in result.tsa:
            if r.ok and r.time:
                err.print(f"[green]timestamp[/] {escape(r.url)}: {escape(r.tsa)} {escape(r.time)}")
            elif r.ok:
                err.print(f"[yellow]timestamp[/] {escape(r.url)}: token stored, but its signature, certificate chain "
                          "and time were not verified (give the TSA certificate and its CA chain with --tsa-cert)")
            else:
                err.print(f"[red]TSA failed[/] {escape(r.error)}")
        if not cp.tokens:
            err.print("[yellow]not timestamped[/]: no RFC 3161 token; only this vault's own clock dates this checkpoint"
                      + ("" if tsq_out else " (use --tsa URL, or --tsq-out and timestamp-attach)"))
        if tsq_out:
            err.print(f"Wrote timestamp request {escape(tsq_out)}; later: evidencelock timestamp-attach {cp.id} FILE.tsr")
    if result.tsa_all_failed:
        err.print("[bold red]error:[/] every TSA failed; the signed checkpoint is kept without a timestamp "
                  f"(retry later, or use --tsq-out and timestamp-attach {cp.id})")
        raise SystemExit(2)


@click.command("timestamp-attach", epilog=EXIT_CODES_HELP + " Exit 1 when the response answers another request "
               "or stamps another hash (nothing is attached).")
@click.argument("checkpoint_id", type=int)
@click.argument("tsr_file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--tsa-cert", "tsa_certs", multiple=True, type=click.Path(dir_okay=False, path_type=str), metavar="PEM",
              help="TSA certificate followed by its CA chain, to verify the token fully before storing it.")
@click.option("--custodian", default=None, help="Record the attachment as this custodian.")
@json_option
@click.pass_context
@handle_errors
def timestamp_attach(ctx: click.Context, checkpoint_id: int, tsr_file: str, tsa_certs: tuple[str, ...],
                     custodian: str | None, as_json: bool) -> None:
    """Attach a timestamp response (.tsr) to the checkpoint whose .tsq it answers."""
    tsr = _read(tsr_file, "timestamp response")
    certs = [_read(p, "TSA certificate") for p in tsa_certs]
    with c.open_vault(ctx, writable=True) as vault:
        key = c.unlock(vault, custodian)
        cp, res = tr.attach_timestamp(vault, key, checkpoint_id, tsr, now=c.utc_now(), tsa_certificates=certs)
    if as_json:
        emit_json({"ok": True, **cp.to_json(), "attached": res.to_json()})
    else:
        out.print(f"Attached timestamp to {escape(cp.describe())}" + (f": {escape(res.tsa)} {escape(str(res.time))}" if res.time else ""))


@click.command(epilog=EXIT_CODES_HELP + " Exit 1 when a proof or the checkpoint does not verify against the ledger.")
@click.argument("item")
@click.option("--checkpoint", "checkpoint_file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Prove against this signed checkpoint (default: the latest stored one).")
@click.option("--format", "fmt", type=click.Choice(["text", "tlog-proof"]), default="text", show_default=True,
              help="tlog-proof: one C2SP tlog-proof per entry (docs/transparency.md §7.2), readable by standard "
                   "transparency clients and by `verify-checkpoint`.")
@click.option("-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="With --format tlog-proof: write entry-<seq>.tlog-proof files into this new folder "
                   "(needed when more than one entry is proven).")
@json_option
@click.pass_context
@handle_errors
def prove(ctx: click.Context, item: str, checkpoint_file: str | None, fmt: str, output: Path | None, as_json: bool) -> None:
    """Inclusion proofs of an item's entries against a checkpoint, verified before printing."""
    if output is not None and fmt != "tlog-proof":
        raise click.UsageError("-o/--output DIR is used with --format tlog-proof")
    if output is not None and output.exists():
        raise InputError("exists; choose a new folder", subject=str(output))
    with c.open_vault(ctx) as vault:
        from ..show import find_item  # digest prefix or original file name (custody-events, issue 10)

        sha = find_item(vault, item)
        if checkpoint_file:
            note_text = _text(checkpoint_file, "checkpoint")
        else:
            note_text = tr.latest_checkpoint(vault).note
        _, head = tr.verified_note(note_text, vault.config.origin, tr.ledger_keys(vault), revoked=tr.ledger_revocations(vault))
        proofs, later = tr.inclusion_proof_for_item(vault, sha, head)
    if not proofs:
        raise InputError(f"no entry of item {sha[:16]}… is covered by the checkpoint (size {head.tree_size})",
                         hint="run `evidencelock checkpoint` first")
    if fmt == "tlog-proof":
        texts = tr.tlog_proofs_for_item(proofs, note_text)
        if output is None:
            if len(texts) > 1:
                raise click.UsageError(f"{len(texts)} entries are proven: give -o DIR to write one .tlog-proof file each")
            c.echo_exact(texts[0][1])
            return
        output.mkdir(parents=True)
        for seq, text in texts:
            (output / f"entry-{seq}.tlog-proof").write_text(text, encoding="utf-8")
        if as_json:
            emit_json({"ok": True, "item": sha, "files": [str(output / f"entry-{seq}.tlog-proof") for seq, _ in texts]})
        else:
            out.print(f"Wrote {len(texts)} tlog-proof file(s) to {escape(str(output))}")
        return
    if as_json:
        emit_json({"ok": True, "item": sha, "checkpoint": {"tree_size": head.tree_size, "root_hash": head.root_hash.hex(),
                                                           "note": note_text},
                   "proofs": [p.to_json() for p in proofs], "not_yet_covered": later})
        return
    out.print(f"Item {sha}: {len(proofs)} entries proven in checkpoint of size {head.tree_size} "
              f"(root {head.root_hash.hex()})")
    for p in proofs:
        out.print(f"  entry {p.seq} ({escape(p.type)}, {escape(p.time)}) leaf {p.leaf_hash.hex()}")
        for i, h in enumerate(p.proof):
            out.print(f"    [{i}] {h.hex()}")
    if later:
        err.print(f"[yellow]not yet covered[/]: entries {later} are newer than the checkpoint")


@click.command(epilog=EXIT_CODES_HELP + " Exit 1 when the log does NOT extend the earlier checkpoint (rewritten, "
               "truncated or forked), or a checkpoint disagrees with the ledger.")
@click.argument("old_checkpoint_file", type=click.Path(dir_okay=False, path_type=str), required=False)
@click.option("--from-bundle", "from_bundle", type=click.Path(path_type=str), default=None, metavar="BUNDLE",
              help="Prove from the checkpoint an evidence bundle (folder or zip) is proven against, instead of "
                   "OLD_CHECKPOINT_FILE: the proof a reader passes to `verify-bundle BUNDLE --checkpoint NEW "
                   "--consistency-proof PROOF`.")
@click.option("--to", "to_file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Prove up to this signed checkpoint (default: the newest stored one, else the current tree head).")
@click.option("--trusted-key", "trusted_key", type=click.Path(dir_okay=False, path_type=str), default=None, metavar="PEM",
              help="Pin the log's public key (an outside observer should) instead of trusting the vault's enrolled keys.")
@click.option("--vault-key", "vault_key", type=click.Path(dir_okay=False, path_type=str), default=None, hidden=True)
@click.option("-o", "--output", "proof_out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the consistency proof file (docs/transparency.md §7.1): what a witness and "
                   "`verify-bundle --consistency-proof` take.")
@click.option("--proof-out", "proof_out_old", type=click.Path(dir_okay=False, path_type=str), default=None, hidden=True)
@click.option("--note-out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the new signed checkpoint note (the witness's NOTE_FILE).")
@json_option
@click.pass_context
@handle_errors
def consistency(ctx: click.Context, old_checkpoint_file: str | None, from_bundle: str | None, to_file: str | None,
                trusted_key: str | None, vault_key: str | None, proof_out: str | None, proof_out_old: str | None,
                note_out: str | None, as_json: bool) -> None:
    """Prove the current log extends an earlier published checkpoint (RFC 9162 consistency proof)."""
    key_file = c.one_of(trusted_key, vault_key, "--trusted-key", "--vault-key")
    proof_out = c.one_of(proof_out, proof_out_old, "--output", "--proof-out")
    if (old_checkpoint_file is None) == (from_bundle is None):
        raise click.UsageError("give either OLD_CHECKPOINT_FILE or --from-bundle BUNDLE (exactly one)")
    old_text = tr.bundle_checkpoint_note(from_bundle) if from_bundle else _text(str(old_checkpoint_file), "checkpoint")
    to_text = _text(to_file, "checkpoint") if to_file else None
    keys = [_pubkey(key_file)] if key_file else []
    with c.open_vault(ctx) as vault:
        result = tr.consistency_proof(vault, old_text, vault_keys=keys, to_note_text=to_text)
    if proof_out:
        Path(proof_out).write_text(result.proof_document().render(), encoding="utf-8")
    if note_out:
        if result.new_note is None:
            raise InputError("there is no signed checkpoint to write; run `evidencelock checkpoint` first")
        Path(note_out).write_text(result.new_note, encoding="utf-8")
    if as_json:
        emit_json(result.to_json())
        return
    source = f" (the checkpoint of bundle {escape(from_bundle)})" if from_bundle else ""
    out.print(f"[bold green]CONSISTENT[/]: the log at size {result.new.tree_size} (root {result.new.root_hash.hex()}) "
              f"extends the checkpoint of size {result.old.tree_size} (root {result.old.root_hash.hex()}){source}; "
              f"proof of {len(result.proof)} hashes verified" + (f"; written to {escape(proof_out)}" if proof_out else ""))


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--show", "show_id", type=int, default=None, metavar="ID",
              help="Print checkpoint ID's signed note (with attached cosignatures) exactly, to publish it.")
@json_option
@click.pass_context
@handle_errors
def checkpoints(ctx: click.Context, show_id: int | None, as_json: bool) -> None:
    """List stored checkpoints (as stored; `verify` checks them)."""
    with c.open_vault(ctx) as vault:
        rows = [tr.get_checkpoint(vault, show_id)] if show_id is not None else tr.list_checkpoints(vault)
    if as_json:
        emit_json([r.to_json() for r in rows])
        return
    if show_id is not None:
        c.echo_exact(rows[0].note_with_cosignatures())
        return
    table = Table("id", "created (UTC)", "tree size", "root hash", "timestamps", "cosignatures")
    for r in rows:
        stamps = ", ".join(str(t.get("tsa", "?")) for t in r.tokens) or "not timestamped"
        stamps += " (+pending .tsq)" if r.pending_requests else ""
        table.add_row(str(r.id), r.created[:19].replace("T", " "), str(r.tree_size), r.root_hash.hex()[:16] + "…",
                      escape(stamps), str(len(r.cosignatures)))
    out.print(table)


def _load_private(path: str) -> CustodianKey:
    data = _read(path, "witness key")
    if b"ENCRYPTED" in data:
        return CustodianKey.load(Path(path), c.get_passphrase())
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CustodianKeyError("not a PEM private key", subject=path) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CustodianKeyError("not an Ed25519 private key", subject=path)
    return CustodianKey(key, "")


@click.command(epilog=EXIT_CODES_HELP + " Exit 1 when the witness refuses: bad log signature, the log shrank, or the "
               "consistency proof from the last checkpoint it saw does not verify (its state is unchanged).")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder where this witness keeps the last checkpoint it saw per log.")
@click.option("--trusted-key", "vault_key", type=str, default=None, metavar="KEY",
              help="The log's public key: a SubjectPublicKeyInfo PEM file or its C2SP verifier key (name+hash+base64).")
@click.option("--vault-key", "vault_key_old", type=click.Path(dir_okay=False, path_type=str), default=None, hidden=True)
@click.option("--key", "witness_key", required=True, type=click.Path(dir_okay=False, path_type=str), metavar="PEM",
              help="This witness's Ed25519 private key (PKCS#8 PEM; encrypted ones use $EVIDENCELOCK_PASSPHRASE).")
@click.option("--name", default=None, help="Witness name in the cosignature (default: witness/<key id prefix>).")
@click.argument("note_file", type=click.Path(dir_okay=False, path_type=str))
@click.argument("proof_file", type=click.Path(dir_okay=False, path_type=str))
@json_option
@handle_errors
def witness(state_dir: str, vault_key: str | None, vault_key_old: str | None, witness_key: str, name: str | None,
            note_file: str, proof_file: str, as_json: bool) -> None:
    """Run by another organisation: check a new checkpoint is consistent with the last one seen, then cosign."""
    vault_key = _require_key(c.one_of(vault_key, vault_key_old, "--trusted-key", "--vault-key"))
    key = _load_private(witness_key)
    wname = name or f"witness/{key.key_id[:16]}"
    result = tr.witness_cosign(state_dir, _text(note_file, "checkpoint"), _text(proof_file, "proof file"),
                               _log_key(vault_key), now=c.utc_now(), witness_key=key, witness_name=wname)
    if as_json:
        emit_json({"ok": True, "witness": wname, "origin": result.checkpoint.origin, "tree_size": result.checkpoint.tree_size,
                   "previous_size": result.previous_size, "cosignature": result.line})
        return
    c.echo_exact(result.line)
    if result.previous_size is None:
        err.print(f"[yellow]first checkpoint seen from {escape(result.checkpoint.origin)}[/]: trusted on first use")


@click.command("cosign-attach", epilog=EXIT_CODES_HELP + " Exit 1 when the cosignature does not verify.")
@click.argument("checkpoint_id", type=int)
@click.argument("cosignature_file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--witness-key", required=True, type=click.Path(dir_okay=False, path_type=str), metavar="PEM",
              help="The witness's public key, to verify the cosignature before storing it.")
@click.option("--custodian", default=None, help="Record the attachment as this custodian.")
@json_option
@click.pass_context
@handle_errors
def cosign_attach(ctx: click.Context, checkpoint_id: int, cosignature_file: str, witness_key: str,
                  custodian: str | None, as_json: bool) -> None:
    """Attach a witness's cosignature line to a stored checkpoint."""
    text = _text(cosignature_file, "cosignature")
    pub = _pubkey(witness_key)
    with c.open_vault(ctx, writable=True) as vault:
        key = c.unlock(vault, custodian)
        cp = tr.attach_cosignature(vault, key, checkpoint_id, text, witness_public_key=pub, now=c.utc_now())
    if as_json:
        emit_json({"ok": True, **cp.to_json()})
    else:
        out.print(f"{escape(cp.describe())} now carries {len(cp.cosignatures)} cosignature(s)")


@click.command("verify-checkpoint", epilog=EXIT_CODES_HELP + " Exit 1 when the log signature, the witness policy or "
               "a tlog-proof's inclusion proof fails.")
@click.argument("note_file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--trusted-key", "vault_key", type=str, default=None, metavar="KEY",
              help="The log's public key: a SubjectPublicKeyInfo PEM file or its C2SP verifier key (name+hash+base64).")
@click.option("--vault-key", "vault_key_old", type=click.Path(dir_okay=False, path_type=str), default=None, hidden=True)
@click.option("--witness", "witnesses", multiple=True, metavar="NAME=PEM",
              help="A trusted witness: its name and public key file (repeatable).")
@click.option("--threshold", type=int, default=None, help="How many of the witnesses must have cosigned (default: all).")
@json_option
@handle_errors
def verify_checkpoint(note_file: str, vault_key: str | None, vault_key_old: str | None, witnesses: tuple[str, ...],
                      threshold: int | None, as_json: bool) -> None:
    """Offline, no vault: check a checkpoint's log signature and a k-of-n witness policy.

    NOTE_FILE may also be a C2SP tlog-proof (from `prove --format tlog-proof`): then its checkpoint
    is checked the same way and the entry it carries is proven included (docs/transparency.md §7.2).
    """
    vault_key = _require_key(c.one_of(vault_key, vault_key_old, "--trusted-key", "--vault-key"))
    policy: dict[str, bytes] = {}
    for w in witnesses:
        wname, sep, path = w.partition("=")
        if not sep or not wname or not path:
            raise InputError(f"--witness must look like NAME=PEM, found {w!r}")
        policy[wname] = _pubkey(path)
    k = threshold if threshold is not None else len(policy)
    text = _text(note_file, "checkpoint")
    log_key = _log_key(vault_key)
    vkey_name = _verifier_key_name(vault_key)
    included = None
    if text.startswith(proofs_mod.TLOG_PROOF_HEADER + "\n"):
        try:
            tp = proofs_mod.parse_tlog_proof(text)
        except FormatError as exc:
            raise FormatError(exc.message, subject=note_file, hint=exc.hint) from None
        text = tp.unverified_note.text()
        head = tr.verify_checkpoint_policy(text, log_key, policy, k, now=c.utc_now())
        tp.verify(head.origin, log_key)  # tlog-proof §Verifying step 4
        included = tp
    else:
        head = tr.verify_checkpoint_policy(text, log_key, policy, k, now=c.utc_now())
    if vkey_name is not None and vkey_name != head.origin:
        # signed-note §Verifier keys: the key's name is the signature line's name (our origin)
        raise SignatureError(f"the verifier key is for {vkey_name!r}, the checkpoint is of {head.origin!r}",
                             subject=note_file)
    data: dict[str, Any] = {"ok": True, "origin": head.origin, "tree_size": head.tree_size,
                            "root_hash": head.root_hash.hex(), "witnesses_required": k if policy else 0}
    if included is not None:
        data["tlog_proof"] = {"index": included.index, "leaf_hash": merkle.leaf_hash(included.extra or b"").hex(),
                              "entry": (included.extra or b"").decode("utf-8", "replace")}
    if as_json:
        emit_json(data)
    else:
        out.print(f"[bold green]OK[/]: {escape(head.origin)} size {head.tree_size} root {head.root_hash.hex()}"
                  + (f"; {k} of {len(policy)} witnesses cosigned" if policy else ""))
        if included is not None:
            out.print(f"[bold green]INCLUDED[/]: entry {included.index} (leaf "
                      f"{merkle.leaf_hash(included.extra or b'').hex()}) is in that tree (RFC 9162 inclusion proof)")
