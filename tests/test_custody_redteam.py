"""Regressions from the issue 10 red team and second verifier.

* Custody read-outs (`history`, `show`, `cases`, `log`) state a holder only from entries whose
  signature verifies: an acceptance with a forged signature, or signed by a key revoked before
  it, is in the ledger (a writer with database access put it there) but never makes a holder.
* An import receipt may accept only a release still pending at the end of the sender's entries
  (docs/custody-events.md §4, docs/bundle-format.md §4.9).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from evidencelock import custody
from evidencelock.bundle.upstream import receipt_problems
from evidencelock.entry import Entry, SignedEntry, format_time
from evidencelock.importer import releases_to
from evidencelock.keys import CustodianKey
from evidencelock.merkle import leaf_hash

from conftest import run_cli
from test_custody_events import Chain


def _append_raw(vault_path: Path, key: CustodianKey, type_: str, case: str, actor: str, body: dict) -> int:
    """Append a signed entry straight into the SQLite ledger, as someone with write access to the
    database file would (signed by ``key``, claiming ``actor``)."""
    db = sqlite3.connect(vault_path / "ledger.sqlite")
    seq, canon, t = db.execute("SELECT seq, canonical, time FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
    prev = SignedEntry.from_bytes(bytes(canon), b"\0" * 64).entry_hash
    e = Entry(seq=seq + 1, prev=prev, time=t, type=type_, case=case, actor=actor, body=body)
    s = SignedEntry.create(e, key.sign)
    db.execute("INSERT INTO entries (seq, canonical, signature, entry_hash, leaf_hash, type, case_id, actor, time, item)"
               " VALUES (?,?,?,?,?,?,?,?,?,?)",
               (s.entry.seq, s.canonical, s.signature, s.entry_hash, leaf_hash(s.canonical).hex(), type_, case, actor,
                t, body.get("item")))
    db.commit()
    db.close()
    return s.entry.seq


def _forged_accept_vault(vault, key, clock, tmp_path, *, revoke_first: bool):
    src = tmp_path / "card"
    src.mkdir()
    (src / "a.txt").write_bytes(b"one witness statement\n")
    from evidencelock.ingest import ingest

    ingest(vault, [src], key=key, case="C1", now=clock, extract_media=False)
    bob = custody.enroll_custodian(vault, key, name="Bob", passphrase="another long passphrase here", now=clock(),
                                   allow_weak_passphrase=True)
    (release,) = custody.transfer_items(vault, key, items=["a.txt"], case="C1", to="Bob", note=None, now=clock)
    body = {"item": release.entry.body["item"], "transfer": {"seq": release.entry.seq, "entry_hash": release.entry_hash},
            "from": key.key_id}
    if revoke_first:
        custody.revoke_custodian(vault, key, key_id="Bob", reason="laptop seized", now=clock())
        signer = bob  # Bob's real key, used after its revocation
    else:
        signer = CustodianKey.generate("not Bob")  # no enrolled key at all
    vault.close()
    return _append_raw(vault.root, signer, "transfer-accept", "C1", bob.key_id, body)


def _assert_not_held_by_bob(vault_path: Path, bad_seq: int) -> None:
    h = run_cli("--vault", str(vault_path), "history", "a.txt")
    assert "Holder now: Bob" not in h.stdout and "in transit to Bob" in h.stdout, h.stdout
    assert f"entry {bad_seq}" in h.stdout + h.stderr and h.code != 0
    s = run_cli("--vault", str(vault_path), "show", "a.txt")
    assert "in transit to Bob" in s.stdout and "): Bob" not in s.stdout, s.stdout
    assert "SIGNATURE NOT VALID" in s.stdout
    c = run_cli("--vault", str(vault_path), "cases", "--json")
    assert '"Bob"' not in c.stdout and '"pending_transfers": 1' in c.stdout, c.stdout
    lg = run_cli("--vault", str(vault_path), "log")
    assert "SIGNATURE NOT VALID" in lg.stdout and "(accepted" not in lg.stdout, lg.stdout
    v = run_cli("--vault", str(vault_path), "verify")
    assert v.code == 1 and f"entry {bad_seq}" in v.stdout + v.stderr


def test_accept_signed_by_an_unenrolled_key_never_makes_a_holder(vault, key, clock, tmp_path):
    bad = _forged_accept_vault(vault, key, clock, tmp_path, revoke_first=False)
    _assert_not_held_by_bob(vault.root, bad)


def test_accept_by_a_key_after_its_revocation_never_makes_a_holder(vault, key, clock, tmp_path):
    bad = _forged_accept_vault(vault, key, clock, tmp_path, revoke_first=True)
    _assert_not_held_by_bob(vault.root, bad)


def test_receipt_may_accept_only_a_release_still_pending_in_the_senders_log():
    ch = Chain()
    ch.ingest(ch.a)
    to_b = ch.add(ch.a, "transfer", "C1", {"item": ch.ingest.__defaults__[0], "from": ch.a.key_id, "to": ch.b.key_id,
                                           "to_name": "Lawyer B"})
    entries = {s.entry.seq: s for s in ch.entries}
    assert releases_to(entries, ch.b.key_id)[to_b.entry.body["item"]].entry.seq == to_b.entry.seq  # control
    item = to_b.entry.body["item"]
    meta = {"origin": "o", "case": "C1", "exporter": ch.a.key_id, "checkpoint": {"size": 1, "root": "0" * 64},
            "items": [{"sha256": item, "entries": [3]}]}
    rec = {"origin": "o", "case": "C1", "exporter": ch.a.key_id, "checkpoint": {"size": 1, "root": "0" * 64},
           "ingests": [3], "transfer": {"seq": to_b.entry.seq, "entry_hash": to_b.entry_hash}}
    assert receipt_problems(rec, ch.b.key_id, item, meta, entries) == []  # control: pending release
    # A re-releases the item to C: the release to B is superseded.
    later = ch.add(ch.a, "transfer", "C1", {"item": item, "from": ch.a.key_id, "to": ch.c.key_id, "to_name": "Archive C"})
    entries = {s.entry.seq: s for s in ch.entries}
    assert item not in releases_to(entries, ch.b.key_id)  # the importer writes no `transfer` for it
    problems = receipt_problems(rec, ch.b.key_id, item, meta, entries)
    assert problems and f"superseded by entry {later.entry.seq}" in problems[0]
