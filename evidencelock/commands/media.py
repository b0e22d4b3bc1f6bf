"""Media commands: ``similar FILE`` (near-duplicates among preserved items)."""

from __future__ import annotations

from pathlib import Path

import click
from ._common import escape
from rich.table import Table

from . import _common as c
from ._common import EXIT_CODES_HELP, emit_json, handle_errors, json_option, out



def _clock(ms: int) -> str:
    s, ms = divmod(int(ms), 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    text = f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
    return text + (f".{ms // 100}" if ms >= 100 else "")


def _segments_text(segments: list[tuple[tuple[int, int], tuple[int, int]]]) -> str:
    parts = [f"{_clock(q0)}–{_clock(q1)} ↔ {_clock(i0)}–{_clock(i1)}" for (q0, q1), (i0, i1) in segments[:4]]
    if len(segments) > 4:
        parts.append(f"+{len(segments) - 4} more")
    return "\n".join(parts)


@click.command(epilog=(
    "Distance is the Hamming distance between 256-bit PDQ hashes (median over matched frames for "
    "videos); 31 or less is the usual near-duplicate rule. Segments read: query time range ↔ item "
    "time range. A match is a lead for an analyst, not proof. " + EXIT_CODES_HELP
    + " Exit 0 also when nothing matched; 2 when the file cannot be read or fingerprinted."))
@click.argument("file", type=click.Path(path_type=str))
@click.option("--threshold", type=click.IntRange(0, 256), default=31, show_default=True,
              help="Largest Hamming distance (of 256 bits) counted as the same picture.")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True, help="At most N matches.")
@click.option("--case", "case", default=None, help="Only items ingested under this case.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              help="Seconds the isolated decoder may spend on FILE.")
@click.option("--rebuild-index", is_flag=True, help="Ignore the cached index (index/fingerprints.npz) and rebuild it.")
@json_option
@click.pass_context
@handle_errors
def similar(ctx: click.Context, file: str, threshold: int, limit: int, case: str | None, timeout: float,
            rebuild_index: bool, as_json: bool) -> None:
    """Find near-duplicates of FILE (photo or video) among preserved items.

    FILE is untrusted: it is decoded in an isolated worker, exactly as ingest does, and is
    neither preserved nor recorded.
    """
    from ..neardup import find_similar

    with c.open_vault(ctx) as vault:
        result = find_similar(vault, Path(file), threshold=threshold, limit=limit, case=case, timeout=timeout,
                              use_cache=not rebuild_index)
    if as_json:
        emit_json(result.to_json())
        return
    what = f"{result.kind}, {result.frames} frame hash{'es' if result.frames != 1 else ''}" if result.kind == "video" \
        else result.kind
    out.print(f"[bold]{escape(result.path)}[/] ({what}); searched {result.index.items} items, "
              f"{result.index.hashes} hashes, threshold {result.threshold}")
    for e in result.errors:
        out.print(f"  [yellow]media[/] {escape(e)}")
    if not result.matches:
        out.print("No near-duplicates found.")
        return
    table = Table("#", "item", "original name(s)", "case", "distance", "match", "segments (query ↔ item)")
    for n, m in enumerate(result.matches, 1):
        names = ", ".join(m.names[:3]) + (f" +{len(m.names) - 3}" if len(m.names) > 3 else "")
        match = "same bytes" if m.identical else (
            f"{m.matched_frames} frames, {m.score:.0%}" if m.kind == "video" and m.segments and m.matched_frames > 1
            else m.kind)
        table.add_row(str(n), m.item[:16] + "…", escape(names), escape(", ".join(m.cases)), str(m.distance),
                      match, _segments_text(m.segments))
    out.print(table)
