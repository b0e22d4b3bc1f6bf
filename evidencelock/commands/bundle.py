"""Bundle commands: export, verify-bundle."""

from __future__ import annotations

from pathlib import Path

import click
from ._common import escape

from ..errors import InputError
from . import _common as c
from ._common import EXIT_CODES_HELP, emit_json, handle_errors, json_option, out



@click.command(epilog=EXIT_CODES_HELP)
@click.option("--case", "case", required=True, help="Case whose items are exported.")
@click.option("--item", "items", multiple=True, help="Only this item (SHA-256, at least 6 hex digits); repeatable.")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Bundle to write: a new folder, or a .zip file.")
@click.option("--custodian", default=None, help="Sign the export as this custodian (name or key id).")
@click.option("--no-report", is_flag=True, help="Skip report.html / report.pdf (VERIFY.md and certification are kept).")
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
           no_report: bool, tsa_urls: tuple[str, ...], tsa_certs: tuple[Path, ...], tsa_timeout: float,
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
        key = vault.unlock(c.get_passphrase(), custodian)
        result = export_bundle(vault, case=case, out=output, key=key, now=c.utc_now, items=list(items) or None,
                               tsa_urls=tsa_urls, tsa_certificates=certs, tsa_timeout=tsa_timeout,
                               jobs=jobs, report=not no_report)
    if as_json:
        emit_json({"ok": True, **result.to_json()})
        return
    out.print(f"Exported case [bold]{escape(case)}[/]: {result.items} items ({c.human_size(result.payload_bytes)}), "
              f"{result.entries} custody entries, checkpoint at size {result.checkpoint_size}"
              f"{' (signed now)' if result.checkpoint_created else ''}{', timestamped' if result.timestamped else ''} → [bold]{escape(str(result.path))}[/]")
    out.print(f"Recorded as export entry {result.export_seq} (tag manifest sha256 {result.tagmanifest_sha256[:16]}…).")


@click.command("verify-bundle", epilog=EXIT_CODES_HELP + " Exit 1 when any check fails or the bag has no evidence layer.")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--trusted-key", "trusted", multiple=True,
              help="Pin a key: a PEM public key file or a key id (hex, at least 8 digits). Repeatable.")
@click.option("--checkpoint", "checkpoint", type=click.Path(path_type=Path, dir_okay=False),
              help="A checkpoint obtained independently; the bundle must be consistent with it.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=None, help="Files hashed in parallel.")
@json_option
@handle_errors
def verify_bundle_cmd(bundle: Path, trusted: tuple[str, ...], checkpoint: Path | None, jobs: int | None,
                      as_json: bool) -> None:
    """Verify an evidence bundle offline: BagIt layer, then signatures, proofs, checkpoint, timestamp."""
    import re

    from ..bundle import verify_bundle
    from ..keys import PublicKey, public_key_from_pem

    keys: list[PublicKey | str] = []
    for t in trusted:
        p = Path(t)
        if p.is_file():
            keys.append(PublicKey(public_key_from_pem(p.read_bytes())))
        elif re.fullmatch(r"[0-9a-fA-F]{8,64}", t):
            keys.append(t.lower())
        else:
            raise InputError(f"--trusted-key {t!r} is neither a PEM file nor a key id (8 to 64 hex digits)")
    cp_bytes = None
    if checkpoint is not None:
        try:
            cp_bytes = checkpoint.read_bytes()[: 1 << 16]
        except OSError as exc:
            raise InputError(f"cannot read the checkpoint: {exc.strerror}", subject=str(checkpoint)) from None
    report = verify_bundle(bundle, trusted_keys=keys, checkpoint=cp_bytes, jobs=jobs, now=c.utc_now())
    if as_json:
        emit_json(report.to_json())
    else:
        for ch in report.checks:
            mark = "[green]ok  [/]" if ch.ok else "[bold red]FAIL[/]"
            subject = f" [dim]{escape(ch.subject)}[/]" if ch.subject else ""
            out.print(f"{mark} {ch.name}{subject}: {escape(ch.detail)}")
        if report.established:
            out.print("\n[bold]Established[/]")
            for s in report.established:
                out.print(f"  • {escape(s)}")
        out.print("\n[bold]Not established[/]")
        for s in report.not_established:
            out.print(f"  • {escape(s)}")
        if report.ok:
            out.print(f"\n[bold green]VERIFIED[/]: {report.payload_files} files, {report.payload_bytes} bytes")
        elif report.kind == "bagit-only":
            out.print("\n[bold yellow]NOT AN EVIDENCE BUNDLE[/]: BagIt layer "
                      f"{'valid' if report.bagit_ok else 'INVALID'}, evidence layer absent")
        else:
            out.print(f"\n[bold red]FAILED[/]: {len(report.failures)} problem(s); see FAIL lines above")
    raise SystemExit(0 if report.ok else 1)
