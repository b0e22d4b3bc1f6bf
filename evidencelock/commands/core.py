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
        if as_json:
            emit_json({"ok": True, "vault": str(path), "custodian": custodian, "key_id": key_id, "origin": vault.config.origin})
        else:
            out.print(f"Created vault [bold]{escape(str(path))}[/] (origin {escape(vault.config.origin)})")
            out.print(f"Custodian {escape(custodian)}: key id {key_id}")
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


@click.command(epilog=EXIT_CODES_HELP + " Exit 2 also when any file was rejected (the others are preserved).")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--case", "case", required=True, help="Case (matter) the files belong to.")
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
def ingest(ctx: click.Context, paths: tuple[str, ...], case: str, note: str | None, custodian: str | None,
           jobs: int | None, follow_symlinks: bool, no_media: bool, record_host: bool, record_absolute_path: bool,
           as_json: bool) -> None:
    """Preserve files and folders (recursively) into the vault, one signed entry per file."""
    ingest_mod.check_roots(paths)  # bad input is named before anything else is asked
    with c.open_vault(ctx, writable=True) as vault:
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
        _render_ingest(report)
    if not report.ok:
        raise SystemExit(2)


_MEDIA_SUFFIXES = (".jpg", ".jpeg", ".png", ".heic", ".heif", ".tif", ".tiff", ".webp", ".gif", ".mp4", ".mov",
                   ".m4v", ".3gp", ".mkv", ".webm", ".avi", ".mts", ".m4a", ".mp3", ".aac", ".wav", ".ogg", ".opus")


def _render_ingest(report: ingest_mod.IngestReport) -> None:
    not_media = 0
    for o in report.outcomes:
        if o.status in ("rejected", "skipped"):
            style = "red" if o.status == "rejected" else "yellow"
            err.print(f"[{style}]{o.status}[/] {escape(o.path)}: {escape(o.reason)}")
        for flag in o.flags:
            err.print(f"[yellow]flag[/] {escape(o.path)}: {flag}")
        for m in o.media_errors:
            # A document or archive is simply not media: count it instead of one line each,
            # unless its name claims to be media (a text file named .mp4 is worth a look).
            if "unrecognised format" in m and not o.path.lower().endswith(_MEDIA_SUFFIXES):
                not_media += 1
                continue
            err.print(f"[yellow]media[/] {escape(o.path)}: {escape(m)}")
        for nd in o.near_duplicates:
            err.print(f"[cyan]similar[/] {escape(o.path)} ~ item {nd.get('item', '')[:16]}… (distance {nd.get('distance')})")
    if not_media:
        what = "1 file is not a recognised image, video or audio file" if not_media == 1 else \
            f"{not_media} files are not recognised images, videos or audio"
        err.print(f"[dim]{what}: preserved and hashed, no media metadata (see `show ITEM`)[/]")
    mib = report.bytes_read / (1 << 20)
    rate = mib / report.seconds if report.seconds > 0 else 0.0
    out.print(
        f"Case [bold]{escape(report.case)}[/]: {len(report.outcomes)} files, "
        f"{report.count('preserved')} preserved, {report.count('duplicate')} exact duplicates, "
        f"{report.count('already-recorded')} already recorded, {report.count('rejected')} rejected, "
        f"{report.count('skipped')} skipped; {c.human_size(report.bytes_read)} in {report.seconds:.1f} s ({rate:.0f} MiB/s)"
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


