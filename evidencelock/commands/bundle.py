"""Bundle commands: export, verify-bundle."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from ._common import escape

from ..errors import InputError
from . import _common as c
from ._common import EXIT_CODES_HELP, emit_json, handle_errors, json_option, out

if TYPE_CHECKING:
    from ..keys import PublicKey



@click.command(epilog=EXIT_CODES_HELP)
@click.option("--case", "case", required=True, help="Case whose items are exported.")
@click.option("--item", "items", multiple=True, help="Only this item (SHA-256 prefix of at least 6 hex digits, or an original file name); repeatable.")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Bundle to write: a new folder, or a .zip file.")
@click.option("--custodian", default=None, help="Sign the export as this custodian (name or key id).")
@click.option("--no-report", is_flag=True, help="Skip report.html / report.pdf (VERIFY.md and certification are kept).")
@click.option("--purpose", default=None, help="Why the originals are exported (recorded in one access entry per item; "
              "default 'export to evidence bundle').")
@click.option("--tsa", "tsa_urls", multiple=True, metavar="URL",
              help="Timestamp a new checkpoint for this bundle with this RFC 3161 authority (repeatable).")
@click.option("--tsa-cert", "tsa_certs", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="PEM",
              help="TSA certificate followed by its CA chain: verifies the token and goes into the bundle so readers "
                   "can check it (repeatable, one file per TSA).")
@click.option("--tsa-timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for each TSA.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Files copied in parallel.")
@json_option
@click.pass_context
@handle_errors
def export(ctx: click.Context, case: str, items: tuple[str, ...], output: Path, custodian: str | None,
           no_report: bool, purpose: str | None, tsa_urls: tuple[str, ...], tsa_certs: tuple[Path, ...], tsa_timeout: float,
           jobs: int | None, as_json: bool) -> None:
    """Write an evidence bundle (BagIt bag + custody evidence) and record the export.

    With --tsa, a new checkpoint is signed, timestamped and recorded (as `evidencelock
    checkpoint --tsa` does) and the bundle is proven against it; if every TSA fails nothing
    is exported (exit 2).
    """
    from ..bundle.writer import export_bundle

    certs = []
    for p in tsa_certs:
        try:
            certs.append(p.read_bytes())
        except OSError as exc:
            raise InputError(f"cannot read the TSA certificate: {exc.strerror}", subject=str(p)) from None
    with c.open_vault(ctx, writable=True) as vault:
        key = c.unlock(vault, custodian)
        from ..show import find_item  # an ITEM is a digest prefix or an original file name (issue 10)

        result = export_bundle(vault, case=case, out=output, key=key, now=c.utc_now, items=[find_item(vault, i) for i in items] or None,
                               tsa_urls=tsa_urls, tsa_certificates=certs, tsa_timeout=tsa_timeout,
                               jobs=jobs, report=not no_report, purpose=purpose)
    if as_json:
        emit_json({"ok": True, **result.to_json()})
        return
    out.print(f"Exported case [bold]{escape(case)}[/]: {result.items} items ({c.human_size(result.payload_bytes)}), "
              f"{result.entries} custody entries, checkpoint at size {result.checkpoint_size}"
              f"{' (signed now)' if result.checkpoint_created else ''}{', timestamped' if result.timestamped else ''} → [bold]{escape(str(result.path))}[/]")
    out.print(f"Recorded as export entry {result.export_seq} (tag manifest sha256 {result.tagmanifest_sha256[:16]}…).")


def _trusted_key(value: str) -> PublicKey | str:
    """A --trusted-key value: a full key id or a PEM public key file; anything else is bad usage (exit 2)."""
    from ..errors import FormatError
    from ..keys import PublicKey, public_key_from_pem

    if re.fullmatch(r"[0-9a-f]{64}", value):
        return value
    p = Path(value)
    if p.is_file():
        try:
            return PublicKey(public_key_from_pem(p.read_bytes()[: 1 << 16]))
        except FormatError as exc:
            raise InputError(f"--trusted-key file is not an Ed25519 public key (SubjectPublicKeyInfo PEM): {exc.message}",
                             subject=value) from None
        except OSError as exc:
            raise InputError(f"cannot read the --trusted-key file: {exc.strerror}", subject=value) from None
    raise InputError(f"--trusted-key {value[:80]!r} is neither a public key file nor a full key id (64 lowercase hex digits)",
                     hint="key-id prefixes are refused: 8 hex digits are 32 bits, which an attacker can match with a key "
                          "of their own; give the whole key id or the custodian's .pem file")


@click.command("verify-bundle", epilog=EXIT_CODES_HELP + " Exit 1 when any check fails or the bag has no evidence layer.")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--trusted-key", "trusted", multiple=True,
              help="Pin a key: a PEM public key file (SubjectPublicKeyInfo) or a full key id (64 lowercase hex "
                   "digits; prefixes are refused). The checkpoint, bundle.json and a --checkpoint file must each "
                   "be signed by a pinned key. Repeatable.")
@click.option("--checkpoint", "checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              help="A checkpoint obtained independently; the bundle must be consistent with it. If it is newer than "
                   "the bundle's, also give --consistency-proof (without it: a warning, consistency not established).")
@click.option("--consistency-proof", "consistency_proof", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Consistency proof file from the bundle's checkpoint to a newer --checkpoint, made by the custodian "
                   "with `evidencelock consistency --from-bundle BUNDLE --to CHECKPOINT -o FILE`.")
@click.option("--tsa-root", "tsa_roots", multiple=True, type=click.Path(path_type=Path, dir_okay=False), metavar="PEM",
              help="Root certificate(s) of a timestamp authority you trust, obtained independently (repeatable). "
                   "Without it a token's time is reported as claimed by an untrusted TSA, not established.")
@click.option("--tsa-policy", "tsa_policies", multiple=True, metavar="OID",
              help="Accept only timestamp tokens issued under this TSA policy OID (repeatable).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Files hashed in parallel.")
@click.option("--verbose", "-v", is_flag=True,
              help="Also list every check that passed, each file's Established line and each item's custody history "
                   "(by default: a one-screen summary, and every failure named).")
@json_option
@handle_errors
def verify_bundle_cmd(bundle: Path, trusted: tuple[str, ...], checkpoint: Path | None, consistency_proof: Path | None,
                      tsa_roots: tuple[Path, ...], tsa_policies: tuple[str, ...], jobs: int | None, verbose: bool,
                      as_json: bool) -> None:
    """Verify an evidence bundle offline: BagIt layer, then signatures, proofs, checkpoint, timestamp.

    Prints a one-screen summary: what was checked, who signed, the verdict, and what is
    established and what is not.  Every failed check and every warning is listed, naming its file
    and the reason; --verbose lists every check and file; --json gives everything, with the
    failures as findings (docs/findings.md).
    """
    from ..bundle import verify_bundle

    keys = [_trusted_key(t) for t in trusted]
    cp_bytes = None
    if checkpoint is not None:
        try:
            cp_bytes = checkpoint.read_bytes()[: 1 << 16]
        except OSError as exc:
            raise InputError(f"cannot read the checkpoint: {exc.strerror}", subject=str(checkpoint)) from None
    proof_bytes = None
    if consistency_proof is not None:
        try:
            proof_bytes = consistency_proof.read_bytes()[: 1 << 20]
        except OSError as exc:
            raise InputError(f"cannot read the consistency proof: {exc.strerror}", subject=str(consistency_proof)) from None
    roots = [_read_tsa_root(p) for p in tsa_roots]
    for oid in tsa_policies:
        if not re.fullmatch(r"[0-2](\.(0|[1-9][0-9]*))+", oid):
            raise InputError(f"--tsa-policy {oid!r} is not a dotted OID (e.g. 1.3.6.1.4.1.4146.2.3)")
    try:
        report = verify_bundle(bundle, trusted_keys=keys, checkpoint=cp_bytes, jobs=jobs, now=c.utc_now(),
                               tsa_roots=roots, tsa_policies=tsa_policies, consistency_proof=proof_bytes,
                               checkpoint_name=str(checkpoint) if checkpoint is not None else "CHECKPOINT")
    except InputError as exc:
        if consistency_proof is not None and exc.subject == "consistency proof file":
            exc.subject = str(consistency_proof)
        raise
    if as_json:
        emit_json(report.to_json())
    else:
        _print_summary(report, bundle)
        for ch in report.checks if verbose else [c for c in report.checks if not c.ok or c.warning]:
            mark = ("[bold yellow]WARN[/]" if ch.warning else "[green]ok  [/]") if ch.ok else "[bold red]FAIL[/]"
            subject = f" [dim]{escape(ch.subject)}[/]" if ch.subject else ""
            out.print(f"{mark} {ch.name}{subject}: {escape(ch.detail)}")
        if verbose:
            _print_custody(report)
        if report.established:
            out.print("\n[bold]Established[/]")
            per_item = set(report.item_claims)
            for s in report.established:
                if verbose or s not in per_item:
                    out.print(f"  • {escape(s)}")
            if per_item and not verbose:
                out.print(f"  • For each of the {len(per_item)} payload files: its signed source name, the custodian who "
                          "ingested it, when (by the signer's own clock) and in which entry; run with --verbose to list them.")
        out.print("\n[bold]Not established[/]")
        for s in report.not_established:
            out.print(f"  • {escape(s)}")
        if report.ok and report.upstream:
            _print_earlier_custodians(report, verbose=verbose)
        if report.ok:
            out.print(f"\n[bold green]VERIFIED[/]: {report.payload_files} files, {report.payload_bytes} bytes")
        elif report.kind == "bagit-only":
            out.print("\n[bold yellow]NOT AN EVIDENCE BUNDLE[/]: BagIt layer "
                      f"{'valid' if report.bagit_ok else 'INVALID'}, evidence layer absent")
        else:
            out.print(f"\n[bold red]FAILED[/]: {len(report.failures)} problem(s); see FAIL lines above")
    raise SystemExit(0 if report.ok else 1)


def _signer_words(key_id: str, name: str, pinned: bool | None) -> str:
    who = f"{escape(name)} (key {key_id[:16]}…)" if name else f"key {key_id[:16]}… (no enrolled name)"
    if pinned is None:
        return who + ", [yellow]not pinned[/]: identity not established"
    return who + (", [green]pinned[/] by --trusted-key" if pinned else ", [bold red]NOT among the --trusted-key keys[/]")


def _print_summary(report: Any, bundle: Path) -> None:
    """The head of verify-bundle's output: what was checked, who signed, custody in one line."""
    kind = {"evidence-bundle": "evidence bundle", "bagit-only": "BagIt bag without an evidence layer"}.get(
        report.kind, "bag (its evidence layer could not be checked)")
    case = f" of case [bold]{escape(report.case)}[/]" if report.case else ""
    out.print(f"Bundle    {escape(str(bundle))}: {kind}{case}")
    passed = sum(1 for ch in report.checks if ch.ok)
    failed = len(report.failures)
    entries = (report.checkpoint or {}).get("size")
    out.print(f"Checked   {report.payload_files} files, {c.human_size(report.payload_bytes)} ({report.payload_bytes} bytes)"
              + (f"; checkpoint at tree size {entries}" if entries is not None else "")
              + f"; {passed} checks passed" + (f", [bold red]{failed} failed[/]" if failed else ""))
    pins = {ch.subject: ch.ok for ch in report.checks if ch.name == "evidence-trusted-key"}
    trusted = bool(pins)

    def pinned(subject: str) -> bool | None:
        return pins.get(subject, False) if trusted else None

    if report.checkpoint:
        out.print(f"Signed    checkpoint: {_signer_words(report.checkpoint['signer'], report.checkpoint.get('signer_name') or '', pinned('evidence/checkpoint.txt'))}")
    if report.exporter:
        label = "Signed    " if not report.checkpoint else "          "
        out.print(f"{label}bundle.json (the exporter): "
                  f"{_signer_words(report.exporter['key_id'], report.exporter.get('name') or '', pinned('evidence/bundle.json.sig'))}")
    signers = sorted({n for n in report.keys.values() if n})
    if signers:
        out.print(f"Keys      enrolled in this bundle: {escape(', '.join(signers))}")
    cust = report.custody
    if cust and report.ok:
        from collections import Counter

        holders = Counter(escape(w["name"] or f"key {w['key_id'][:16]}…") for i in cust["items"]
                          if (w := i["holder"]) and not i["in_transit_to"])
        transit = [i for i in cust["items"] if i["in_transit_to"]]
        transfers = [t for i in cust["items"] for t in i["transfers"]]
        held = "; ".join(f"{n} item{'s' if n != 1 else ''} held by {who}" for who, n in holders.most_common())
        out.print(f"Custody   {held or 'no holder recorded'}; {sum(t['status'] == 'accepted' for t in transfers)} transfers "
                  f"accepted, {sum(t['status'] == 'pending' for t in transfers)} pending"
                  + (" (each item's history: --verbose)" if cust["items"] else ""))
        for i in transit:
            w = i["in_transit_to"]
            out.print(f"          [yellow]in transit[/] {escape(str(i['path']))} → {escape(w['name'] or w['key_id'][:16] + '…')}: "
                      "released, not accepted by the receiver")
    if report.failures:
        files = list(dict.fromkeys(ch.subject for ch in report.failures if ch.subject.startswith("data/")))
        if files:
            out.print(f"[bold red]Files that failed[/] ({len(files)}): {escape(', '.join(files))}")
        out.print(f"\n[bold red]{failed} check(s) failed[/] (all listed):")


def _print_custody(report: Any) -> None:
    """The custody section of verify-bundle: per item, its chain in plain words, each transfer
    sender → receiver with accepted / PENDING; derived only from the verified entries."""
    cust = report.custody
    if not cust:
        return
    out.print(f"\n[bold]Custody[/] [dim](derived from {escape(cust['basis'])})[/]")
    if not report.ok:
        out.print("  [bold red]This bundle FAILED verification[/]: the lines below are what the verified entries say; "
                  "they are not established for the bundle as a whole.")

    def who(w: dict[str, Any] | None) -> str:
        if not w:
            return "?"
        return f"{w['name']} ({w['key_id'][:8]})" if w["name"] else f"key {w['key_id'][:16]}…"

    for item in cust["items"]:
        out.print(f"  [bold]{escape(str(item['path']))}[/] [dim]{item['sha256'][:12]}…[/]")
        if item["in_transit_to"]:
            out.print(f"    custody now: [yellow]in transit to {escape(who(item['in_transit_to']))}[/] "
                      "(released, not accepted by the receiver)")
        elif item["holder"]:
            revoked = next((k for k in cust.get("key_events", []) if k["type"] == "key-revoke"
                            and k.get("key_id") == item["holder"]["key_id"]), None)
            since = f"; that key was revoked at entry {revoked['seq']}" if revoked else ""
            out.print(f"    custody now: held by {escape(who(item['holder']))}{since}")
        for d in item.get("derived_from", []):
            out.print(f"    derived copy of {escape(str(d['path'] or d['sha256'][:12] + '… (not in this bundle)'))}: "
                      f"{escape(d['action'])} [dim](entry {d['seq']})[/]")
        for d in item.get("derived_copies", []):
            out.print(f"    derived copy: {escape(str(d['path'] or d['sha256'][:12] + '… (not in this bundle)'))} "
                      f"({escape(d['action'])}) [dim](entry {d['seq']})[/]")
        transfers = {t["seq"]: t for t in item["transfers"]}
        for ev in item["events"]:
            t = transfers.get(ev["seq"])
            if t is None:
                out.print(f"    {escape(ev['when'])}  {escape(ev['text'])} [dim](entry {ev['seq']})[/]")
                continue
            route = f"{escape(who(t['from']))} → {escape(who(t['to']))}"
            if t["status"] == "accepted" and t["accept"]:
                state = (f"[green]accepted[/] by {escape(who(t['accept']['by']))} on {escape(t['accept']['when'])} "
                         f"(entry {t['accept']['seq']})")
            elif t["status"] == "superseded":
                state = "[dim]superseded by a later release, never accepted[/]"
            else:
                state = "[yellow]PENDING[/]: not accepted by the receiver"
            note = f" — {escape(t['note'])}" if t.get("note") else ""
            out.print(f"    {escape(ev['when'])}  transfer {route}: {state}{note} [dim](entry {ev['seq']})[/]")
    for ev in cust["case_events"]:
        out.print(f"  case: {escape(ev['when'])}  {escape(ev['text'])} [dim](entry {ev['seq']})[/]")
    for ev in cust.get("key_events", []):
        out.print(f"  key change of a signer: {escape(ev['when'])}  {escape(ev['text'])} [dim](entry {ev['seq']})[/]")


def _read_tsa_root(path: Path) -> bytes:
    """A --tsa-root file: PEM certificate(s); anything else is bad input (exit 2)."""
    from cryptography import x509

    try:
        data = path.read_bytes()[: 1 << 20]
    except OSError as exc:
        raise InputError(f"cannot read the TSA root certificate: {exc.strerror}", subject=str(path)) from None
    try:
        if not x509.load_pem_x509_certificates(data):
            raise ValueError("no certificate")
    except ValueError as exc:
        raise InputError(f"--tsa-root is not a PEM certificate: {exc}", subject=str(path)) from None
    return data


@click.command("import-bundle", epilog=EXIT_CODES_HELP + " Exit 1 when the bundle does not verify (nothing is written).")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--case", "case", default=None, help="Record the items under this case (default: the bundle's case).")
@click.option("--custodian", default=None, help="Sign the receipts as this custodian (name or key id).")
@click.option("--note", default=None, help="A note recorded with every receipt.")
@click.option("--trusted-key", "trusted", multiple=True,
              help="Pin a key (PEM public key file or full key id), as for verify-bundle: the bundle's checkpoint "
                   "and bundle.json must be signed by a pinned key. Repeatable.")
@click.option("--tsa-root", "tsa_roots", multiple=True, type=click.Path(path_type=Path, dir_okay=False), metavar="PEM",
              help="Root certificate(s) of a timestamp authority you trust (repeatable), as for verify-bundle.")
@click.option("--no-media", is_flag=True, help="Skip metadata and fingerprint extraction.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Files copied in parallel.")
@json_option
@click.pass_context
@handle_errors
def import_bundle_cmd(ctx: click.Context, bundle: Path, case: str | None, custodian: str | None, note: str | None,
                      trusted: tuple[str, ...], tsa_roots: tuple[Path, ...], no_media: bool, jobs: int | None,
                      as_json: bool) -> None:
    """Preserve an evidence bundle from another organisation, with its custody record.

    The bundle is verified first (as verify-bundle does), through the very copies that are
    preserved; on any failure nothing is written (exit 1).  Then its files are preserved, its
    tag files kept verbatim under imports/<tag manifest SHA-256>/, and one signed ingest entry
    (a receipt) recorded per item.  Running it again records nothing twice.
    """
    from ..importer import import_bundle

    keys = [_trusted_key(t) for t in trusted]
    roots = [_read_tsa_root(p) for p in tsa_roots]
    with c.open_vault(ctx, writable=True) as vault:
        key = vault.unlock(c.get_passphrase(), custodian)
        result = import_bundle(vault, bundle, key=key, now=c.utc_now, case=case, note=note, trusted_keys=keys,
                               tsa_roots=roots, extract_media=not no_media, jobs=jobs)
    if as_json:
        emit_json(result.to_json())
        raise SystemExit(0 if result.ok else 1)
    if not result.ok:
        if result.report is not None:
            for ch in result.report.failures:
                subject = f" [dim]{escape(ch.subject)}[/]" if ch.subject else ""
                out.print(f"[bold red]FAIL[/] {ch.name}{subject}: {escape(ch.detail)}")
        out.print(f"\n[bold red]REFUSED[/]: {escape(str(bundle))} does not verify; nothing was written or recorded.")
        raise SystemExit(1)
    if result.kind == "plain-bag":
        lines = result.plain.summary_lines() if hasattr(result.plain, "summary_lines") else []
        for line in lines or [f"Plain BagIt bag imported into case {result.case}."]:
            out.print(escape(line))
        raise SystemExit(0)
    new = sum(1 for i in result.items if i.status != "already-recorded")
    out.print(f"Verified and imported [bold]{escape(str(bundle))}[/] from {escape(result.origin)} (their case "
              f"{escape(result.source_case)}) into case [bold]{escape(result.case)}[/]: {new} receipt(s) recorded, "
              f"{len(result.items) - new} already recorded.")
    for i in result.items:
        accepted = (f"; accepts their release, entry {i.transfer['seq']}" if i.transfer else "; no release to you in the bundle")
        where = f"entry {i.seq}" if i.seq is not None else "-"
        out.print(f"  {i.status:<16} {escape(i.path)} ({i.sha256[:16]}…) {where}{accepted if i.status != 'already-recorded' else ''}")
    out.print(f"Tag files kept under {escape(result.stored)}{' (stored now)' if result.stored_now else ' (already stored)'}.")


def _print_earlier_custodians(report, *, verbose: bool = True) -> None:  # noqa: ANN001 - BundleReport
    """§4.9: each organisation's part and the path of each received item (verified data only)."""
    out.print("\n[bold]Earlier custodians[/] (each organisation's part, verified against its own keys and checkpoint)")

    def parts(ups, depth: int) -> None:
        for u in ups:
            cp = u.get("checkpoint") or {}
            pin = "pinned" if cp.get("pinned") else "identity not established: no --trusted-key pins it"
            out.print(f"  {'  ' * depth}• {escape(str(u.get('origin')))}, case {escape(str(u.get('case')))}: exported by "
                      f"{escape(str(u.get('exporter_name') or u.get('exporter', '')[:16]))}, checkpoint size {cp.get('size')} "
                      f"signed by {escape(str(cp.get('signer_name') or ''))} ({pin}); bundle {u['bundle'][:16]}…"
                      + (f"; {len(u['not_carried'])} file(s) not carried here, not checked" if u.get("not_carried") else ""))
            parts(u.get("upstream") or [], depth + 1)

    parts(report.upstream, 0)
    if not verbose:
        if report.custody_paths:
            out.print(f"  The path of each of the {len(report.custody_paths)} received items: --verbose.")
        return
    names = {i["digests"].get("sha256"): i["path"] for i in report.items}
    for p in report.custody_paths:
        out.print(f"  {escape(names.get(p['item'], p['item'][:16] + '…'))}: {escape(p['text'])}")
