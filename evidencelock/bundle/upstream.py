"""The custody chain across organisations inside a bundle (docs/bundle-format.md §4.9, §5 step 16).

When organisation B imported A's bundle (``import-bundle``), B's receipts (ingest entries with
``received``) name it by U = SHA-256 of its ``tagmanifest-sha256.txt``, and B's bundles carry A's
tag files verbatim under ``evidence/upstream/<U>/``.  Here each such *upstream part* is verified
with the SAME checks as a bundle, against ITS OWN keys, checkpoint and bundle.json, by viewing it
as a bag (:class:`UpstreamSource`) whose tag files are the files under the prefix and whose payload
files are the outer bundle's payload files with the same SHA-256 (the digests the outer read
computed from the bytes: never a digest taken from a manifest).  Payload of the upstream part that
the outer bundle does not carry is reported as "not carried": never counted as checked.

Trusted core: no database, no click.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from ..entry import SignedEntry
from ..errors import EvidenceLockError, InputError
from .source import BagSource

__all__ = ["UpstreamSource", "check_upstream", "receipt_problems", "receipts_of", "MAX_DEPTH", "PREFIX"]

PREFIX = "evidence/upstream/"
MAX_DEPTH = 8  # §4.9: a bundle, and at most 8 nested organisations' parts below it


def receipts_of(entries: Mapping[int, SignedEntry]) -> dict[str, list[SignedEntry]]:
    """U -> the included ingest entries whose ``received.bundle`` is U (ascending seq)."""
    out: dict[str, list[SignedEntry]] = {}
    for seq in sorted(entries):
        e = entries[seq].entry
        rec = e.body.get("received") if e.type == "ingest" else None
        if isinstance(rec, dict) and isinstance(rec.get("bundle"), str):
            out.setdefault(rec["bundle"], []).append(entries[seq])
    return out


def items_by_sha256(meta: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """bundle.json items by SHA-256 (built once per part: receipts are matched without a scan each)."""
    items = meta.get("items") if isinstance(meta.get("items"), list) else []
    out: dict[str, Mapping[str, Any]] = {}
    for i in items:
        if isinstance(i, dict) and isinstance(i.get("sha256"), str):
            out.setdefault(i["sha256"], i)
    return out


def receipt_problems(rec: Mapping[str, Any], actor: str, item: Any, meta: Mapping[str, Any],
                     entries: Mapping[int, SignedEntry], items: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """Each ``received`` member against the bundle it names (docs/bundle-format.md §4.9): the
    origin, case, exporter and checkpoint of its signed bundle.json, the item's ingest entries
    there, and the release (``transfer``): an entry of that bundle, a ``transfer`` of this item,
    addressed (``to``) to the key that signed the receipt."""
    problems: list[str] = []
    cp = meta.get("checkpoint") if isinstance(meta.get("checkpoint"), dict) else {}
    for name, expected in (("origin", meta.get("origin")), ("case", meta.get("case")), ("exporter", meta.get("exporter")),
                           ("checkpoint", {"size": cp.get("size"), "root": cp.get("root")})):
        if rec.get(name) != expected:
            problems.append(f"received.{name} differs from the bundle's signed bundle.json: expected={expected!r} "
                            f"found={rec.get(name)!r}")
    listed = (items if items is not None else items_by_sha256(meta)).get(item) if isinstance(item, str) else None
    if listed is None:
        problems.append(f"item {str(item)[:16]}… is not an item of the bundle the receipt names")
    elif rec.get("ingests") != listed.get("entries"):
        problems.append(f"received.ingests differs from the bundle's ingest entries of the item: "
                        f"expected={listed.get('entries')!r} found={rec.get('ingests')!r}")
    tr = rec.get("transfer")
    if tr is not None:
        seq = tr.get("seq") if isinstance(tr, dict) else None
        rel = entries.get(seq) if isinstance(seq, int) and not isinstance(seq, bool) else None
        if rel is None:
            problems.append(f"received.transfer names entry {seq!r}, which the bundle does not carry")
        elif rel.entry_hash != tr.get("entry_hash"):
            problems.append(f"received.transfer.entry_hash differs from entry {seq}: expected={rel.entry_hash} "
                            f"found={tr.get('entry_hash')!r}")
        elif rel.entry.type != "transfer" or rel.entry.body.get("item") != item:
            problems.append(f"received.transfer names entry {seq}, which is not a transfer of this item "
                            f"(type {rel.entry.type!r})")
        elif rel.entry.body.get("to") != actor:
            problems.append(f"received.transfer names entry {seq}, a release to {str(rel.entry.body.get('to'))[:16]}…, "
                            f"not to the receiver {actor[:16]}… who signed this receipt")
        else:
            problems.extend(_not_pending(seq, item, entries))
    return problems


def _not_pending(seq: int, item: Any, entries: Mapping[int, SignedEntry]) -> list[str]:
    """docs/custody-events.md §4: the release a receipt accepts must still be pending at the end
    of the sender's entries: no later release of the item, no acceptance of it there."""
    for later in sorted(s for s in entries if s > seq):
        e = entries[later].entry
        if e.type == "transfer" and e.body.get("item") == item:
            return [f"received.transfer names entry {seq}, a release superseded by entry {later} "
                    f"(a later release of the item in the sender's log): it was not pending (custody-accept)"]
        tr = e.body.get("transfer") if e.type == "transfer-accept" else None
        if isinstance(tr, dict) and tr.get("seq") == seq:
            return [f"received.transfer names entry {seq}, a release already accepted at entry {later} "
                    f"in the sender's log (custody-accept)"]
    return []


class UpstreamSource(BagSource):
    """``outer``'s files under ``prefix`` as a bag; its payload = ``outer``'s payload files of the
    same SHA-256 (``payload_by_sha256``: sha256 -> outer path, from digests computed by reading)."""

    def __init__(self, outer: BagSource, prefix: str, payload_by_sha256: Mapping[str, str], *, depth: int) -> None:
        super().__init__(f"{outer.label} [{prefix.rstrip('/')}]", outer.limits)
        self.outer, self.prefix, self.upstream_depth = outer, prefix, depth
        self.pins: frozenset[str] = frozenset(getattr(outer, "pins", frozenset()))  # the reader's pins, at every depth
        self._map: dict[str, str] = {}
        self.not_carried: dict[str, str] = {}  # inner payload path -> sha256 listed by its manifest
        self.misplaced: list[str] = []  # outer files under <prefix>data/: payload cannot hide in a tag folder
        for p, size in outer.sizes.items():
            if p.startswith(prefix):
                rel = p[len(prefix):]
                if rel.startswith("data/"):
                    self.misplaced.append(p)
                    continue
                self.sizes[rel] = size
                self._map[rel] = p
        for p in outer.refused:
            if p.startswith(prefix):
                self.refused.add(p[len(prefix):])
        for rel, sha in self._payload_manifest().items():
            outer_path = payload_by_sha256.get(sha)
            if outer_path is not None and outer_path in outer.sizes:
                self.sizes[rel] = outer.sizes[outer_path]
                self._map[rel] = outer_path
            else:
                self.not_carried[rel] = sha
                self.refused.add(rel)  # listed, not here: reported as not carried, not as missing

    def _payload_manifest(self) -> dict[str, str]:
        """path -> sha256 as the part's manifest-sha256.txt lists it; only to find the bytes (the
        part's own BagIt check parses it strictly and every digest is recomputed)."""
        try:
            text = self.read_small("manifest-sha256.txt").decode("utf-8")
        except (KeyError, InputError, OSError, UnicodeDecodeError, EvidenceLockError):
            return {}
        out: dict[str, str] = {}
        for line in text.split("\n"):
            digest, sep, path = line.partition("  ")
            if sep and path.startswith("data/") and len(digest) == 64 and len(out) < len(self.outer.sizes) + 100:
                out[path] = digest
        return out

    def open(self, path: str) -> BinaryIO:
        if path not in self._map:
            raise KeyError(path)
        return self.outer.open(self._map[path])


@dataclass
class _Part:
    u: str
    meta: dict[str, Any] = field(default_factory=dict)
    entries: dict[int, SignedEntry] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    paths: dict[str, dict[str, Any]] = field(default_factory=dict)  # item -> its path inside this part


def _part_report_class() -> Any:
    from .verify import BundleReport

    @dataclass
    class PartReport(BundleReport):
        """A part's report: a failure that only says "this payload file is not here" is a notice
        ("not carried"), never a failure and never a passed check."""

        not_carried: frozenset[str] = frozenset()
        carries_payload: bool = True
        skipped: list[str] = field(default_factory=list)

        def add(self, name: str, ok: bool, detail: str, subject: str = "") -> None:
            if not ok and self.not_carried and (
                    subject in self.not_carried or name == "bagit-payload-oxum"
                    or (name == "evidence-payload-covered" and not subject and not self.carries_payload)):
                self.skipped.append(f"{name}{' ' + subject if subject else ''}: {detail}")
                return
            super().add(name, ok, detail, subject)

    return PartReport


def _read_part(src: BagSource) -> tuple[dict[str, Any], dict[int, SignedEntry]]:
    from .verify import _strict_json

    meta = _strict_json(src.read_small("evidence/bundle.json", 64 << 20))
    entries: dict[int, SignedEntry] = {}
    for n, line in enumerate(src.read_small("evidence/entries.jsonl").splitlines(), 1):
        obj = _strict_json(line)
        s = SignedEntry.from_bytes(base64.b64decode(obj["canonical"], validate=True),
                                   base64.b64decode(obj["signature"], validate=True), subject=f"entries.jsonl line {n}")
        entries[s.entry.seq] = s
    return meta, entries


def _when(t: str) -> str:
    """"2026-12-02 05:12" (UTC, minutes) from a §2.3 time."""
    return f"{t[:10]} {t[11:16]} UTC" if len(t) >= 16 else t


def check_upstream(src: BagSource, report: Any, meta: Mapping[str, Any], entries: Mapping[int, SignedEntry],
                   computed: Mapping[str, Mapping[str, str]], *, trusted: list[Any], now: datetime | None,
                   tsa: Any) -> None:
    """§5 step 16 (`evidence-upstream`, and each part's own checks as `upstream:<name>`)."""
    from .verify import _check_bagit, _check_evidence, trusted_key_ids

    depth = getattr(src, "upstream_depth", 0)
    receipts = receipts_of(entries)
    for seq in sorted(entries):  # §4.9: a receipt names its bundle by 64 lowercase hex digits
        e = entries[seq].entry
        rec = e.body.get("received") if e.type == "ingest" else None
        if rec is None or (isinstance(rec, dict) and "bundle" not in rec and "bagit" in rec):
            continue  # not a receipt, or a plain BagIt bag's (nothing signed upstream to check)
        u = rec.get("bundle") if isinstance(rec, dict) else None
        if not isinstance(u, str) or len(u) != 64 or not set(u) <= set("0123456789abcdef"):
            report.fail("evidence-upstream", f"malformed receipt: received.bundle must be 64 lowercase hex digits, found "
                        f"{str(u)[:80]!r}", f"entry {seq}")
            receipts.pop(u, None) if isinstance(u, str) else None
    # §4.9: evidence/upstream/<U>/… only for a U named by an included receipt.
    present: dict[str, list[str]] = {}
    stray: list[str] = []
    for p in sorted(set(src.sizes) | set(src.refused)):
        if not p.startswith(PREFIX):
            continue
        parts = p.split("/")
        if len(parts) >= 4 and parts[2] in receipts:
            present.setdefault(parts[2], []).append(p)
        else:
            stray.append(p)
    for p in stray[:50]:
        report.fail("evidence-unexpected-file", "upstream file of a bundle that no included receipt names (§4.9: "
                    "evidence/upstream/<U>/ only for a U named by an included receipt's received.bundle)", p)
    if not receipts:
        return
    if depth >= MAX_DEPTH:
        report.fail("evidence-upstream", f"the chain of organisations nests deeper than {MAX_DEPTH} levels (§4.9): the "
                    "parts below this level were not verified", src.label)
        return
    payload_by_sha = {d["sha256"]: p for p, d in computed.items() if p.startswith("data/") and "sha256" in d}
    trusted_ids = trusted_key_ids(trusted) | set(getattr(src, "pins", ()))
    names = dict(getattr(report, "keys", {}) or {})
    origin = str(meta.get("origin", ""))
    bad = 0
    parts: dict[str, _Part] = {}
    PartReport = _part_report_class()
    for u, recs in sorted(receipts.items()):
        tag = f"upstream {u[:12]}"
        seqs = ", ".join(str(s.entry.seq) for s in recs)
        if u not in present:
            bad += 1
            report.fail("evidence-upstream", f"receipt entries {seqs} name bundle {u}, but the bundle does not carry its tag "
                        f"files under {PREFIX}{u}/: the earlier custody cannot be checked", f"{PREFIX}{u}/")
            continue
        view = UpstreamSource(src, f"{PREFIX}{u}/", payload_by_sha, depth=depth + 1)
        view.pins = frozenset(trusted_ids)
        for p in view.misplaced[:20]:
            bad += 1
            report.fail("evidence-upstream", "a payload file inside an upstream folder (§4.9: only tag files travel there)", p)
        try:
            found_u = hashlib.sha256(view.read_small("tagmanifest-sha256.txt")).hexdigest()
        except (KeyError, InputError, OSError, EvidenceLockError) as exc:
            found_u = f"unreadable ({exc})"
        if found_u != u:
            bad += 1
            report.fail("evidence-upstream", f"the upstream part is not the bundle the receipts name: SHA-256 of its "
                        f"tagmanifest-sha256.txt expected={u} found={found_u}", f"{PREFIX}{u}/tagmanifest-sha256.txt")
        carried = any(p.startswith("data/") for p in view.sizes)
        inner = PartReport(view.label, not_carried=frozenset(view.not_carried), carries_payload=carried)
        precomputed = {rel: computed[view._map[rel]] for rel in view.sizes
                       if rel.startswith("data/") and view._map.get(rel) in computed}
        try:
            inner_computed = _check_bagit(view, inner, jobs=1, precomputed=precomputed)
            if inner_computed is not None:
                _check_evidence(view, inner, inner_computed, [], None, now, tsa)
        except InputError as exc:
            inner.fail("evidence-present", f"the upstream part is not a bag: {exc}", "bagit.txt")
        if inner.kind != "evidence-bundle":
            inner.fail("evidence-present", "the upstream part has no evidence layer (evidence/bundle.json)",
                       "evidence/bundle.json")
        for c in inner.checks:
            report.add(f"upstream:{c.name}", c.ok, c.detail, f"{tag}: {c.subject}" if c.subject else tag)
        part_ok = not inner.failures and found_u == u and not view.misplaced
        if inner.failures:
            bad += 1
            report.fail("evidence-upstream", f"upstream part {u[:12]}… failed {len(inner.failures)} check(s) of a bundle "
                        f"(listed as upstream:<check> with subject '{tag}: …'): the earlier custody it records is not "
                        "established", f"{PREFIX}{u}/")
        part = _Part(u, names=dict(inner.keys))
        try:
            part.meta, part.entries = _read_part(view)
        except (KeyError, ValueError, TypeError, InputError, OSError, EvidenceLockError) as exc:
            bad += 1
            report.fail("evidence-upstream", f"the receipts cannot be compared with the upstream part: {exc}", f"{PREFIX}{u}/")
            continue
        # Every receipt's `received` against the part it names.
        receipts_ok = True
        index = items_by_sha256(part.meta)
        for s in recs:
            for problem in receipt_problems(s.entry.body["received"], s.entry.actor, s.entry.body.get("item"),
                                            part.meta, part.entries, index):
                bad += 1
                receipts_ok = False
                report.fail("evidence-upstream", f"receipt entry {s.entry.seq} does not match upstream part {u[:12]}…: "
                            f"{problem}", f"entry {s.entry.seq}")
        signer = (inner.checkpoint or {}).get("signer")
        pinned = bool(signer) and signer in trusted_ids
        exporter = part.meta.get("exporter") if isinstance(part.meta.get("exporter"), str) else ""
        for rel, sha in sorted(view.not_carried.items())[:50]:
            report.not_established.append(f"Upstream part {u[:12]}… ({part.meta.get('origin')!s}): payload {rel} "
                                          f"(SHA-256 {sha[:16]}…) is not carried in this bundle; its entries were "
                                          "verified, its bytes were NOT checked.")
        if part_ok:
            who = "pinned with --trusted-key" if pinned else "NOT established (no --trusted-key pins it)"
            if not pinned:
                report.not_established.append(f"Who holds the keys of upstream part {u[:12]}… ({part.meta.get('origin')!s}): "
                                              "its signers' identities rest only on key-enroll entries and PEM files "
                                              "carried inside that part; pin its checkpoint key with --trusted-key to "
                                              "establish it.")
            report.add("evidence-upstream", receipts_ok, f"upstream part {u[:12]}… of {part.meta.get('origin')!s} (case "
                       f"{part.meta.get('case')!s}) passed every check of a bundle against its own keys and checkpoint "
                       f"(size {(inner.checkpoint or {}).get('size')}); checkpoint signer {who}; "
                       f"{len(recs)} receipt(s) checked against it"
                       + (f"; {len(view.not_carried)} payload file(s) not carried, not checked" if view.not_carried else ""),
                       f"{PREFIX}{u}/")
            part.paths = {p["item"]: p for p in inner.custody_paths}
            parts[u] = part
        report.upstream.append({
            "bundle": u, "ok": part_ok and receipts_ok, "origin": part.meta.get("origin"), "case": part.meta.get("case"),
            "exporter": exporter, "exporter_name": part.names.get(exporter, ""),
            "checkpoint": {"size": (inner.checkpoint or {}).get("size"), "root": (inner.checkpoint or {}).get("root"),
                           "signer": signer, "signer_name": (inner.checkpoint or {}).get("signer_name"),
                           "pinned": pinned},
            "receipts": [s.entry.seq for s in recs], "not_carried": sorted(view.not_carried),
            "failures": len(inner.failures), "upstream": inner.upstream,
        })
        if not part_ok or not receipts_ok:
            parts.pop(u, None)
    # The path of each received item, from verified parts only.
    report.custody_paths.extend(custody_paths(receipts, origin, names, parts))
    if not bad and not any(c.name == "evidence-upstream" and not c.ok for c in report.checks):
        report.add("evidence-upstream", True, f"{len(receipts)} upstream part(s) verified and every receipt matches")


def enrolled_names(entries: Mapping[int, SignedEntry]) -> dict[str, str]:
    """key id -> custodian name of its first key-enroll entry (as §4.3 names a key)."""
    names: dict[str, str] = {}
    for seq in sorted(entries):
        e = entries[seq].entry
        if e.type == "key-enroll" and isinstance(e.body.get("key_id"), str):
            name = e.body.get("name")
            names.setdefault(e.body["key_id"], name if isinstance(name, str) else "")
    return names


def custody_paths(receipts: Mapping[str, list[SignedEntry]], origin: str, names: Mapping[str, str],
                  parts: Mapping[str, _Part]) -> list[dict[str, Any]]:
    """§4.9: per received item (its first receipt, receipts in order of U then seq), the hops from
    the first organisation to this one.  ``parts``: only parts that verified (verify-bundle) or
    the stored imports (export, which renders the same words into the human files)."""
    out: list[dict[str, Any]] = []
    seen: set[Any] = set()
    for u, recs in sorted(receipts.items()):
        part = parts.get(u)
        if part is None:
            continue
        for s in recs:
            e = s.entry
            item = e.body.get("item")
            if not isinstance(item, str) or item in seen:
                continue  # first receipt of the item in this bundle
            seen.add(item)
            tr = e.body["received"].get("transfer")
            rel = part.entries.get(tr.get("seq")) if isinstance(tr, dict) else None
            hop = {"from_origin": part.meta.get("origin"), "from_case": part.meta.get("case"),
                   "released_by": rel.entry.actor if rel else None,
                   "released_by_name": part.names.get(rel.entry.actor, "") if rel else "",
                   "released_at": rel.entry.time if rel else None, "release_seq": rel.entry.seq if rel else None,
                   "to_origin": origin, "to_case": e.case, "received_by": e.actor, "received_by_name": names.get(e.actor, ""),
                   "received_at": e.time, "receipt_seq": e.seq, "bundle": u}
            hops = list(part.paths.get(item, {}).get("hops", [])) + [hop]
            out.append({"item": item, "origins": [hops[0]["from_origin"]] + [h["to_origin"] for h in hops],
                        "hops": hops, "text": path_text(hops)})
    return out


def stored_parts(open_part: Any, entries: Mapping[int, SignedEntry], *, depth: int = 0) -> dict[str, _Part]:
    """The parts a bundle's receipts name, read (not verified) from stored copies: ``open_part(u)``
    returns a BagSource of ``imports/<U>`` (export: the importer verified them, ``verify`` checks
    them).  Used so that the exporter renders the same "Earlier custodians" words that
    verify-bundle renders from the verified parts."""
    parts: dict[str, _Part] = {}
    if depth >= MAX_DEPTH:
        return parts
    for u in sorted(receipts_of(entries)):
        src = open_part(u)
        meta, part_entries = _read_part(src)
        inner = stored_parts(lambda v, s=src: UpstreamSource(s, f"{PREFIX}{v}/", {}, depth=depth + 1), part_entries,
                             depth=depth + 1)
        names = enrolled_names(part_entries)
        part = _Part(u, meta=meta, entries=part_entries, names=names)
        part.paths = {p["item"]: p for p in custody_paths(receipts_of(part_entries), str(meta.get("origin", "")), names, inner)}
        parts[u] = part
    return parts


def path_text(hops: list[Mapping[str, Any]]) -> str:
    """One line in plain words: "A (origin) → B (origin) → C (origin): released by … received by …"."""
    def org(origin: Any, who: str) -> str:
        return f"{who} ({origin})" if who else str(origin)

    first = hops[0]
    chain = [org(first["from_origin"], first.get("released_by_name") or "")]
    chain += [org(h["to_origin"], h.get("received_by_name") or "") for h in hops]
    steps = []
    for h in hops:
        rel = (f"released by {h.get('released_by_name') or str(h.get('released_by'))[:16]} on {_when(h['released_at'])} "
               f"(entry {h['release_seq']})" if h.get("release_seq") is not None else "no release to the receiver recorded")
        steps.append(f"{rel}, received by {h.get('received_by_name') or str(h['received_by'])[:16]} ({h['to_origin']}) "
                     f"on {_when(h['received_at'])} (entry {h['receipt_seq']})")
    return " → ".join(chain) + ": " + "; ".join(steps)
