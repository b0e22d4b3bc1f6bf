"""Core commands: init, ingest, log, show, verify, audit, keys, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from ._common import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from .. import audit as audit_mod
from .. import ingest as ingest_mod
from ..entry import SignedEntry
from ..errors import InputError
from ..vault import Vault
from . import _common as c
from ._common import EXIT_CODES_HELP, emit_json, err, handle_errors, json_option, out



@click.command(epilog=EXIT_CODES_HELP)
@click.option("--custodian", required=True, help="Name of the first custodian (a person or team).")
@click.option("--ledger-url", default=None, help="SQLAlchemy URL of a PostgreSQL ledger (default: SQLite in the vault).")
@click.option("--origin", default=None,
              help="Log origin written into every checkpoint (published to witnesses and courts; "
                   "default: evidencelock/<random>, which names no host or person).")
@click.option("--allow-weak-passphrase", is_flag=True,
              help="Accept a passphrase shorter than 12 characters or on the common-passphrase list.")
@json_option
@click.pass_context
@handle_errors
def init(ctx: click.Context, custodian: str, ledger_url: str | None, origin: str | None,
         allow_weak_passphrase: bool, as_json: bool) -> None:
    """Create a vault and the first custodian key (enrolled by the ledger's first entry)."""
    path = c.vault_path(ctx)
    passphrase = c.get_passphrase(confirm=True)
    vault = Vault.init(path, custodian=custodian, passphrase=passphrase, now=c.utc_now(), ledger_url=ledger_url,
                       origin=origin, allow_weak_passphrase=allow_weak_passphrase)
    try:
        key_id = vault.config.default_custodian
        from ..checkpoint import verifier_key

        # docs/transparency.md §3.1: what C2SP tools (e.g. Go's sumdb/note) take to pin this log's checkpoints
        from sqlalchemy import select

        from .. import schema

        with vault.ledger.reader() as conn:
            raw = conn.execute(select(schema.keys.c.public_key).where(schema.keys.c.key_id == key_id)).scalar_one()
        vkey = verifier_key(vault.config.origin, bytes(raw))
        if as_json:
            emit_json({"ok": True, "vault": str(path), "custodian": custodian, "key_id": key_id, "origin": vault.config.origin,
                       "verifier_key": vkey})
        else:
            out.print(f"Created vault [bold]{escape(str(path))}[/] (origin {escape(vault.config.origin)})")
            out.print(f"Custodian {escape(custodian)}: key id {key_id}")
            out.print(f"Checkpoint verifier key (C2SP): {escape(vkey)}")
            out.print("Keep the passphrase safe: without it nobody can sign as this custodian.")
    finally:
        vault.close()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


@click.command(epilog=EXIT_CODES_HELP + " Exit 2 also when any file was rejected or a named folder holds no file "
               "(the others are preserved), when a source is, is inside or contains the vault, and for a new case "
               "without --new-case or confirmation (nothing recorded).")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--case", "case", required=True, help="Case (matter) the files belong to.")
@click.option("--new-case", is_flag=True,
              help="Start a case no entry of the vault has used yet (else asked on a terminal, refused otherwise; "
                   "the first case of an empty vault needs no confirmation).")
@click.option("--verbose", "-v", is_flag=True,
              help="One line per near-duplicate pair and per file that is not recognised media.")
@click.option("--note", default=None, help="Free-text note recorded with every file (who, where from).")
@click.option("--custodian", default=None, help="Sign as this custodian (name or key id; default: the vault's).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Files read in parallel (default: cores).")
@click.option("--follow-symlinks", is_flag=True, help="Follow symlinks that point inside the ingested folder.")
@click.option("--no-media", is_flag=True, help="Skip metadata and fingerprint extraction.")
@click.option("--record-host", is_flag=True,
              help="Record this computer's host name in each ingest entry (off by default: it travels in bundles).")
@click.option("--record-absolute-path", is_flag=True,
              help="Record the absolute path of the ingested folder (default: its last component only).")
@json_option
@click.pass_context
@handle_errors
def ingest(ctx: click.Context, paths: tuple[str, ...], case: str, new_case: bool, verbose: bool, note: str | None,
           custodian: str | None, jobs: int | None, follow_symlinks: bool, no_media: bool, record_host: bool,
           record_absolute_path: bool, as_json: bool) -> None:
    """Preserve files and folders (recursively) into the vault, one signed entry per file."""
    # Bad input is named before anything else is asked: a missing path, or the vault itself
    # (docs/vault-layout.md §5.2; a folder containing the vault is found by the walk).
    ingest_mod.check_roots(paths, vault_root=c.vault_path(ctx))
    with c.open_vault(ctx, writable=True) as vault:
        _confirm_case(vault, case, new_case)
        key = c.unlock(vault, custodian)
        with _progress() as bar:
            task = bar.add_task("ingesting", total=None)

            def progress(event: str, n: int) -> None:
                if event == "total":
                    bar.update(task, total=n)
                elif event == "bytes":
                    bar.advance(task, n)

            report = ingest_mod.ingest(vault, [Path(p) for p in paths], key=key, case=case, note=note, now=c.utc_now,
                                       jobs=jobs, follow_symlinks=follow_symlinks, extract_media=not no_media,
                                       progress=progress, record_host=record_host,
                                       record_absolute_path=record_absolute_path)
    if as_json:
        emit_json(report.to_json())
    else:
        _render_ingest(report, verbose=verbose)
    if not report.ok:
        raise SystemExit(2)


def _confirm_case(vault: Vault, case: str, new_case: bool) -> None:
    """docs/vault-layout.md §5.3: a case name no entry has used is a typo until confirmed."""
    import sys

    from .._text import printable

    name = case.strip()
    known = ingest_mod.known_cases(vault)
    if not known or name in known or new_case:
        return  # an empty vault's first case, a known case, or confirmed by --new-case
    shown = ", ".join(printable(k) for k in known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
    if sys.stdin.isatty():
        if click.confirm(f"Case {printable(name)!r} is new. Known cases: {shown}. Create it?", default=False,
                         err=True):
            return
        raise InputError(f"case {name!r} not created; nothing recorded", hint="check the spelling against `evidencelock cases`")
    raise InputError(f"case {name!r} is new (known cases: {shown}); nothing recorded",
                     hint="check the spelling, or pass --new-case to start a new case")


_MEDIA_SUFFIXES = (".jpg", ".jpeg", ".png", ".heic", ".heif", ".tif", ".tiff", ".webp", ".gif", ".mp4", ".mov",
                   ".m4v", ".3gp", ".mkv", ".webm", ".avi", ".mts", ".m4a", ".mp3", ".aac", ".wav", ".ogg", ".opus")


def _short(path: str) -> str:
    """A file's name for a one-line summary (the full path is in --verbose and --json)."""
    return path.rstrip("/").rsplit("/", 1)[-1] or path


def _names_list(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(escape(n) for n in names[:limit])
    return shown + (", …" if len(names) > limit else "")


def _render_ingest(report: ingest_mod.IngestReport, *, verbose: bool = False) -> None:
    not_media: list[str] = []
    unreadable: list[tuple[str, str]] = []
    for o in report.outcomes:
        if o.status in ("rejected", "skipped"):
            style = "red" if o.status == "rejected" else "yellow"
            err.print(f"[{style}]{o.status}[/] {escape(o.path)}: {escape(o.reason)}")
        for flag in o.flags:
            what = {"empty-file": "a zero-byte file, preserved and flagged empty-file",
                    "source-removed-during-ingest": "removed from the source while it was read (its bytes "
                                                    "are preserved; flagged source-removed-during-ingest)"}
            err.print(f"[yellow]flag[/] {escape(o.path)}: {what.get(flag, escape(flag))}")
        for m in o.media_errors:
            # A document or archive is simply not media: one summary line, not one line each,
            # unless its name claims to be media (a text file named .mp4 is worth a look).
            if "unrecognised format" in m and not o.path.lower().endswith(_MEDIA_SUFFIXES):
                if o.path not in not_media:
                    not_media.append(o.path)
            else:
                unreadable.append((o.path, m))
    for path in report.empty_paths:
        err.print(f"[red]empty[/] {escape(path)}: no regular file found under it (is the card or drive mounted?); "
                  "the other paths were ingested")
    for path, m in unreadable:
        err.print(f"[yellow]media[/] {escape(path)}: {escape(m)}")
    if not_media:
        what = "1 file is not a recognised image, video or audio file" if len(not_media) == 1 else \
            f"{len(not_media)} files are not recognised images, videos or audio"
        err.print(f"[dim]{what} ({_names_list([_short(p) for p in not_media])}): preserved and hashed, "
                  "no media metadata[/]")
        if verbose:
            for path in not_media:
                err.print(f"  [dim]not media[/] {escape(path)}")
    pairs = ingest_mod.near_duplicate_pairs(report)
    if pairs:
        files = {p.a for p in pairs} | {p.b for p in pairs}
        head = "1 near-duplicate pair" if len(pairs) == 1 else f"{len(pairs)} near-duplicate pairs"
        sample = [f"{_short(p.a)} ~ {_short(p.b)}" for p in pairs]
        err.print(f"[cyan]{head}[/] among {len(files)} files ({_names_list(sample, 2)}): they look alike "
                  "(a lead, not a proof)"
                  + ("" if verbose else "; `evidencelock similar FILE` or `ingest --verbose` for details"))
        if verbose:
            for p in pairs:
                err.print(f"  [cyan]similar[/] {escape(p.a)} ~ {escape(p.b)} (distance {p.distance} of 256 bits)")
    # Only the counts that are not zero: a field team reads this line first.
    parts = [f"{report.count('preserved')} preserved"]
    for status, one, many in (("duplicate", "exact duplicate (same bytes, stored once)",
                               "exact duplicates (same bytes, stored once)"),
                              ("already-recorded", "already recorded", "already recorded"),
                              ("rejected", "[red]rejected[/]", "[red]rejected[/]"),
                              ("skipped", "skipped", "skipped")):
        n = report.count(status)
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    if report.empty_paths:
        parts.append(f"[red]{len(report.empty_paths)} empty path{'s' if len(report.empty_paths) > 1 else ''}[/]")
    speed = f", {c.human_size(int(report.bytes_read / report.seconds))}/s" if report.seconds >= 1 else ""
    n_files = len(report.outcomes)
    out.print(
        f"Case [bold]{escape(report.case)}[/]: {n_files} file{'' if n_files == 1 else 's'}, {', '.join(parts)}; "
        f"{c.human_size(report.bytes_read)} read in {report.seconds:.1f} s{speed}"
    )


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--case", "case", default=None, help="Only entries of this case.")
@click.option("--type", "type_", default=None, help="Only entries of this type (ingest, audit, …).")
@click.option("--limit", type=int, default=None, help="Only the last N entries.")
@json_option
@click.pass_context
@handle_errors
def log(ctx: click.Context, case: str | None, type_: str | None, limit: int | None, as_json: bool) -> None:
    """Custody history: every ledger entry (as recorded; run `verify` to check it)."""
    from ..timeline import build, events_by_seq, human_time

    from ..history import signature_valid

    with c.open_vault(ctx) as vault:
        names = {k: pk.name for k, pk in vault.enrolled_keys().items()}
        signed = [SignedEntry.from_bytes(row.canonical, row.signature, subject=f"entry {row.seq}")
                  for row in vault.ledger.rows()]
        with vault.ledger.reader() as conn:
            valid, invalid_seqs = signature_valid(conn, signed) if not as_json else (signed, [])
    invalid = set(invalid_seqs)
    rows = [s.entry for s in signed if (case is None or s.entry.case == case) and (type_ is None or s.entry.type == type_)]
    if limit is not None:
        rows = rows[-limit:]
    if as_json:
        emit_json([e.to_json() for e in rows])
        return
    # Plain words and custody status from the one timeline module (statuses need every entry).
    # Custody statuses only from entries whose signature verifies (custody-events §3).
    words = events_by_seq(build(valid, names))
    table = Table("seq", "time (UTC)", "type", "case", "what",
                  title="Ledger (signatures checked; run `verify` for the hash chain, tree and stored bytes)")
    for e in rows:
        ev = words.get(e.seq)
        text = escape(ev.text if ev is not None else e.type)
        if e.seq in invalid:
            text = f"[red]SIGNATURE NOT VALID — not used for custody:[/] {text}"
        table.add_row(str(e.seq), escape(human_time(e.time)), escape(e.type), escape(e.case), text)
    out.print(table)


@click.command(epilog=EXIT_CODES_HELP)
@click.argument("item")
@json_option
@click.pass_context
@handle_errors
def show(ctx: click.Context, item: str, as_json: bool) -> None:
    """One item (digest prefix of at least 6 hex digits, or an original file name): metadata,
    fingerprints, custody in plain words."""
    from ..show import item_details

    with c.open_vault(ctx) as vault:
        details = item_details(vault, item)
    if as_json:
        emit_json(details)
        return
    from ..show import render_item

    render_item(out, details)


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--all-digests", is_flag=True, help="Also re-check the second digest (BLAKE3) of every object.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Objects hashed in parallel.")
@click.option("--shard", default=None, metavar="K/N", help="Only re-hash objects of shard K of N (ledger checks always run).")
@json_option
@click.pass_context
@handle_errors
def verify(ctx: click.Context, all_digests: bool, jobs: int | None, shard: str | None, as_json: bool) -> None:
    """Read-only full check: every object re-hashed, chain, signatures, tree, checkpoints."""
    shard_t = _parse_shard(shard)
    with c.open_vault(ctx) as vault, _progress() as bar:
        task = bar.add_task("verifying", total=None)
        report = audit_mod.verify_vault(vault, all_digests=all_digests, jobs=jobs, shard=shard_t,
                                        progress=_bar_progress(bar, task))
    _render_verify(report, as_json)
    raise SystemExit(0 if report.ok else 1)


def _parse_shard(shard: str | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    try:
        k, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like K/N, found {shard!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise InputError(f"--shard K/N needs 0 <= K < N, found {shard!r}")
    return k, n


def _bar_progress(bar: Progress, task: Any) -> Any:
    def progress(event: str, n: int) -> None:
        if event == "total":
            bar.update(task, total=n)
        elif event == "bytes":
            bar.advance(task, n)

    return progress


def _render_verify(report: audit_mod.VerifyReport, as_json: bool, audit_seq: int | None = None) -> None:
    if as_json:
        data = report.to_json()
        if audit_seq is not None:
            data["audit_entry"] = audit_seq
        emit_json(data)
        return
    for f in report.findings:
        style = "red" if f.severity == "error" else "yellow"
        out.print(f"[{style}]{f.severity.upper()}[/] {escape(f.subject)}: {escape(f.message)} [dim]({f.code})[/]")
    verdict = "[bold green]OK[/]" if report.ok else f"[bold red]FAILED[/] ({len(report.errors)} problems)"
    if report.shard is not None:
        verdict += f" for shard {report.shard[0]}/{report.shard[1]} only"
    out.print(
        f"{verdict}: {report.entries} entries, chain and signatures checked; tree size {report.tree_size} "
        f"root {report.root_hash[:16]}…; {report.objects_checked} objects ({c.human_size(report.bytes_checked)}) "
        f"re-hashed with {'+'.join(report.digests)}; {report.checkpoints_checked} checkpoints checked"
        + (f"; recorded as audit entry {audit_seq}" if audit_seq is not None else "")
    )
    if report.shard is not None:
        k, n = report.shard
        out.print(f"Shard {k}/{n} (shards numbered 0 to {n - 1}): {report.shard_objects} of the {report.objects_total} "
                  f"recorded objects are in this shard and were re-hashed; the other {report.objects_total - report.shard_objects} "
                  f"are checked by the other shards. Ledger, tree and checkpoint checks cover the whole vault.")


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--all-digests", is_flag=True, help="Also re-check the second digest (BLAKE3) of every object.")
@click.option("--custodian", default=None, help="Sign the audit entry as this custodian.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None)
@json_option
@click.pass_context
@handle_errors
def audit(ctx: click.Context, all_digests: bool, custodian: str | None, jobs: int | None, as_json: bool) -> None:
    """`verify`, then record the result as a signed audit entry (for scheduled audits)."""
    with c.open_vault(ctx, writable=True) as vault:
        key = c.unlock(vault, custodian)
        with _progress() as bar:
            task = bar.add_task("auditing", total=None)
            report, seq = audit_mod.audit_vault(vault, key=key, now=c.utc_now, all_digests=all_digests, jobs=jobs,
                                                progress=_bar_progress(bar, task))
    _render_verify(report, as_json, seq)
    raise SystemExit(0 if report.ok else 1)


@click.command(epilog=EXIT_CODES_HELP)
@json_option
@click.pass_context
@handle_errors
def recover(ctx: click.Context, as_json: bool) -> None:
    """Finish what a crashed or killed run left: roll recorded objects forward, remove leftovers.

    Every writing command does this on its own when it opens the vault; this command does
    only that, and says what it did.  Nothing recorded is ever removed.
    """
    with c.open_vault(ctx, writable=True) as vault:
        rolled, removed = vault.recovered
    if as_json:
        emit_json({"ok": True, "rolled_forward": rolled, "leftovers_removed": removed})
    else:
        out.print(f"Recovered: {rolled} recorded objects moved into place, {removed} unrecorded leftovers removed "
                  "(leftovers are never evidence: no entry records them)")


@click.command(epilog=EXIT_CODES_HELP)
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the demo media and vault (must not exist or be empty; default: a new temporary folder).")
@click.pass_context
@handle_errors
def demo(ctx: click.Context, workdir: Path | None) -> None:
    """Generate real media, ingest it, verify, tamper with a copy, and show the failure named."""
    import tempfile

    from ..demo import run_demo

    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="evidencelock-demo-"))
    run_demo(workdir, say=out.print)


