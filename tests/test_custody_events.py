"""Custody events and the custody state machine (evidencelock/timeline.py) on real signed entries.

Two sources of entries: a real vault written by the library (ingest, enrolment, transfer), and
an in-memory ledger of genuinely signed entries (real Ed25519 keys, a hash chain that
``verify_chain`` accepts) for the acts the writers refuse (forged accepts, non-holder releases).
"""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from evidencelock import custody, timeline
from evidencelock.entry import GENESIS_PREV, Entry, SignedEntry, format_time, verify_chain
from evidencelock.ingest import ingest
from evidencelock.keys import CustodianKey

from conftest import PASSPHRASE

ITEM = hashlib.sha256(b"video of the shelling").hexdigest()
COPY = hashlib.sha256(b"video of the shelling, faces blurred").hexdigest()


class Chain:
    """A ledger of real signed, hash-chained entries, built in memory."""

    def __init__(self) -> None:
        self.t = datetime(2026, 12, 2, 5, 0, tzinfo=timezone.utc)
        self.entries: list[SignedEntry] = []
        self.keys: dict[str, CustodianKey] = {}
        self.a = self.enrol("Aleppo Media Centre, team 2", genesis=True)
        self.b = self.enrol("Lawyer B")
        self.c = self.enrol("Archive C")

    def enrol(self, name: str, genesis: bool = False) -> CustodianKey:
        k = CustodianKey.generate(name)
        self.keys[name] = k
        signer = k if genesis else self.a
        self.add(signer, "key-enroll", "", {"key_id": k.key_id, "public_key": k.public.raw.hex(), "name": name,
                                            "role": "custodian"})
        return k

    def add(self, key: CustodianKey, type: str, case: str, body: dict[str, Any]) -> SignedEntry:
        self.t += timedelta(minutes=7)
        prev = self.entries[-1].entry_hash if self.entries else GENESIS_PREV
        e = Entry(seq=len(self.entries), prev=prev, time=format_time(self.t), type=type, case=case,
                  actor=key.key_id, body=body)
        s = SignedEntry.create(e, key.sign)
        self.entries.append(s)
        return s

    def ingest(self, key: CustodianKey, item: str = ITEM, case: str = "C1", **extra: Any) -> SignedEntry:
        body = {"item": item, "digests": {"sha256": item, "blake3": "0" * 64}, "size": 10,
                "source": {"root": "sdcard", "path": "DCIM/VID_0001.mp4", "key": "1" * 64}, **extra}
        return self.add(key, "ingest", case, body)

    def release(self, key: CustodianKey, to: CustodianKey, item: str = ITEM, case: str = "C1",
                note: str | None = None) -> SignedEntry:
        body = {"item": item, "from": key.key_id, "to": to.key_id, "to_name": to.public.name or "?"}
        if note:
            body["note"] = note
        return self.add(key, "transfer", case, body)

    def accept(self, key: CustodianKey, release: SignedEntry, **override: Any) -> SignedEntry:
        body = {"item": release.entry.body["item"], "from": release.entry.actor,
                "transfer": {"seq": release.entry.seq, "entry_hash": release.entry_hash}}
        body.update(override)
        return self.add(key, "transfer-accept", release.entry.case, body)

    def build(self) -> timeline.Timeline:
        verify_chain(self.entries)  # the entries are genuine: chain and every signature verify
        return timeline.build(self.entries, {})


@pytest.fixture
def chain() -> Chain:
    return Chain()  # names travel in the key-enroll entries: build() is given none


# -- the state machine -----------------------------------------------------------------------


def test_release_then_accept_by_receiver_makes_receiver_holder(chain):
    ing = chain.ingest(chain.a)
    rel = chain.release(chain.a, chain.b, note="sealed bag 17")
    acc = chain.accept(chain.b, rel)
    tl = chain.build()
    assert tl.findings == []
    ic = tl.items[("C1", ITEM)]
    assert (ic.holder, ic.holder_name, ic.in_transit_to) == (chain.b.key_id, "Lawyer B", None)
    ev = {e.seq: e for e in ic.events}
    assert ev[ing.entry.seq].text == "preserved by Aleppo Media Centre, team 2 from sdcard/DCIM/VID_0001.mp4"
    assert ev[rel.entry.seq].status == "accepted"
    assert ev[rel.entry.seq].related == (acc.entry.seq,)
    assert ev[rel.entry.seq].text == (
        f"transferred by Aleppo Media Centre, team 2 to Lawyer B (accepted {timeline.human_time(acc.entry.time)}, "
        f"entry {acc.entry.seq}) — sealed bag 17")
    assert ev[acc.entry.seq].related == (rel.entry.seq,)
    assert ev[acc.entry.seq].text == (
        f"custody accepted by Lawyer B from Aleppo Media Centre, team 2 (transfer entry {rel.entry.seq})")
    assert ev[acc.entry.seq].premis == ev[rel.entry.seq].premis == "transfer"
    assert ev[acc.entry.seq].actor_name == "Lawyer B"


def test_one_sided_release_is_in_transit_never_complete(chain):
    chain.ingest(chain.a)
    rel = chain.release(chain.a, chain.b)
    tl = chain.build()
    ic = tl.items[("C1", ITEM)]
    assert ic.holder is None and ic.holder_name == ""
    assert (ic.in_transit_to, ic.in_transit_name) == (chain.b.key_id, "Lawyer B")
    e = [x for x in ic.events if x.seq == rel.entry.seq][0]
    assert e.status == "pending"
    assert "in transit" in e.text and "not accepted" in e.text
    assert "accepted " not in e.text.replace("not accepted", "") and not e.text.startswith("transferred")
    assert tl.findings == []


def test_new_release_by_releaser_supersedes_pending_one(chain):
    chain.ingest(chain.a)
    first = chain.release(chain.a, chain.b)
    second = chain.release(chain.a, chain.c)
    tl = chain.build()
    ic = tl.items[("C1", ITEM)]
    ev = {e.seq: e for e in ic.events}
    assert ev[first.entry.seq].status == "superseded"
    assert f"superseded by entry {second.entry.seq}, never accepted" in ev[first.entry.seq].text
    assert ev[second.entry.seq].status == "pending"
    assert ic.in_transit_to == chain.c.key_id
    assert tl.findings == []


def test_accept_of_superseded_release_is_a_failure_and_changes_nothing(chain):
    chain.ingest(chain.a)
    first = chain.release(chain.a, chain.b)
    second = chain.release(chain.a, chain.c)
    bad = chain.accept(chain.b, first)
    tl = chain.build()
    [f] = tl.findings
    assert (f.code, f.seq, f.severity) == ("custody-accept", bad.entry.seq, "fail")
    assert f"superseded by entry {second.entry.seq}" in f.message
    assert f"expected=release {second.entry.seq}" in f.message and f"found=release {first.entry.seq}" in f.message
    ic = tl.items[("C1", ITEM)]
    assert ic.holder is None and ic.in_transit_to == chain.c.key_id
    ev = {e.seq: e for e in ic.events}
    assert ev[first.entry.seq].status == "superseded"
    assert "NOT VALID" in ev[bad.entry.seq].text


def test_accept_signed_by_someone_other_than_the_receiver_is_a_failure(chain):
    chain.ingest(chain.a)
    rel = chain.release(chain.a, chain.b)
    forged = chain.accept(chain.c, rel)  # a real, enrolled key, but not the one the release names
    tl = chain.build()
    [f] = tl.findings
    assert (f.code, f.seq, f.severity) == ("custody-accept", forged.entry.seq, "fail")
    assert f"expected={chain.b.key_id}" in f.message and f"found={chain.c.key_id}" in f.message
    ic = tl.items[("C1", ITEM)]
    assert ic.holder is None and ic.in_transit_to == chain.b.key_id
    assert [e.status for e in ic.events if e.seq == rel.entry.seq] == ["pending"]
    # The genuine receiver can still accept afterwards.
    chain.accept(chain.b, rel)
    tl = chain.build()
    assert [f.seq for f in tl.findings] == [forged.entry.seq]
    assert tl.items[("C1", ITEM)].holder == chain.b.key_id


def test_second_accept_of_the_same_release_is_a_failure(chain):
    chain.ingest(chain.a)
    rel = chain.release(chain.a, chain.b)
    ok = chain.accept(chain.b, rel)
    again = chain.accept(chain.b, rel)
    [f] = chain.build().findings
    assert f.seq == again.entry.seq and f"already accepted at entry {ok.entry.seq}" in f.message


def test_accept_with_wrong_release_hash_is_a_failure(chain):
    chain.ingest(chain.a)
    rel = chain.release(chain.a, chain.b)
    bad = chain.accept(chain.b, rel, transfer={"seq": rel.entry.seq, "entry_hash": "ab" * 32})
    [f] = chain.build().findings
    assert f.seq == bad.entry.seq
    assert f"expected={rel.entry_hash}" in f.message and "found=" + "ab" * 32 in f.message


def test_accept_with_wrong_from_is_a_failure(chain):
    chain.ingest(chain.a)
    rel = chain.release(chain.a, chain.b)
    bad = chain.accept(chain.b, rel, **{"from": chain.c.key_id})
    [f] = chain.build().findings
    assert f.seq == bad.entry.seq and f"expected={chain.a.key_id}" in f.message


def test_accept_naming_a_non_transfer_or_another_item_is_a_failure(chain):
    ing = chain.ingest(chain.a)
    chain.ingest(chain.a, item=COPY)
    rel_other = chain.release(chain.a, chain.b, item=COPY)
    chain.release(chain.a, chain.b)
    bad1 = chain.accept(chain.b, ing, **{"transfer": {"seq": ing.entry.seq, "entry_hash": ing.entry_hash}})
    bad2 = chain.add(chain.b, "transfer-accept", "C1", {
        "item": ITEM, "from": chain.a.key_id,
        "transfer": {"seq": rel_other.entry.seq, "entry_hash": rel_other.entry_hash}})
    bad3 = chain.add(chain.b, "transfer-accept", "C1", {"item": ITEM, "from": chain.a.key_id, "transfer": "yes"})
    findings = chain.build().findings
    assert [(f.code, f.seq) for f in findings] == [("custody-accept", bad1.entry.seq), ("custody-accept", bad2.entry.seq),
                                                   ("custody-accept", bad3.entry.seq)]
    assert "not a transfer" in findings[0].message
    assert "another item" in findings[1].message
    assert chain.build().items[("C1", ITEM)].holder is None


def test_accept_in_another_case_does_not_complete_the_release(chain):
    chain.ingest(chain.a)
    chain.ingest(chain.a, case="C2")
    rel = chain.release(chain.a, chain.b)
    bad = chain.add(chain.b, "transfer-accept", "C2", {
        "item": ITEM, "from": chain.a.key_id, "transfer": {"seq": rel.entry.seq, "entry_hash": rel.entry_hash}})
    tl = chain.build()
    [f] = tl.findings
    assert f.seq == bad.entry.seq
    assert tl.items[("C1", ITEM)].holder is None
    assert tl.items[("C2", ITEM)].holder == chain.a.key_id


def test_release_by_non_holder_is_a_notice_naming_the_holder(chain):
    chain.ingest(chain.a)
    rel = chain.release(chain.b, chain.c)  # B never held the item
    tl = chain.build()
    [f] = tl.findings
    assert (f.code, f.seq, f.severity) == ("custody-release-by-non-holder", rel.entry.seq, "notice")
    assert "Aleppo Media Centre, team 2" in f.message
    ev = [e for e in tl.items[("C1", ITEM)].events if e.seq == rel.entry.seq][0]
    assert "did not hold the item" in ev.text


def test_old_vault_release_back_without_accept_stays_in_transit(chain):
    # Before issue 10: A -> B, then B -> A, no acceptance ever.
    chain.ingest(chain.a)
    first = chain.release(chain.a, chain.b)
    back = chain.release(chain.b, chain.a)
    tl = chain.build()
    assert [f.code for f in tl.findings] == ["custody-release-by-non-holder"]
    ic = tl.items[("C1", ITEM)]
    assert ic.holder is None and ic.in_transit_to == chain.a.key_id
    statuses = {e.seq: e.status for e in ic.events}
    assert statuses[first.entry.seq] == "superseded" and statuses[back.entry.seq] == "pending"


def test_two_hop_transfer_chain(chain):
    chain.ingest(chain.a)
    r1 = chain.release(chain.a, chain.b)
    chain.accept(chain.b, r1)
    r2 = chain.release(chain.b, chain.c)
    chain.accept(chain.c, r2)
    tl = chain.build()
    assert tl.findings == []
    assert tl.items[("C1", ITEM)].holder == chain.c.key_id
    assert [e.status for e in tl.items[("C1", ITEM)].events if e.type == "transfer"] == ["accepted", "accepted"]


def test_names_given_take_precedence_and_unknown_keys_are_shown_by_id(chain):
    chain.ingest(chain.a)
    stranger = CustodianKey.generate("x").key_id
    tl = timeline.build(chain.entries, {chain.a.key_id: "Team A (renamed)"})
    assert tl.items[("C1", ITEM)].events[0].text.startswith("preserved by Team A (renamed)")
    # An unknown key id is shown by its prefix, never as an empty name.
    chain.add(chain.a, "transfer", "C1", {"item": ITEM, "from": chain.a.key_id, "to": stranger})
    ev = chain.build().items[("C1", ITEM)].events[-1]
    assert f"to key {stranger[:12]}…" in ev.text


# -- words for every entry type ---------------------------------------------------------------


def test_derive_is_shown_on_both_the_original_and_the_copy(chain):
    ing = chain.ingest(chain.a)
    chain.ingest(chain.b, item=COPY)
    d = chain.add(chain.b, "derive", "C1", {"item": COPY, "original": ITEM, "action": "blurred faces",
                                            "original_ingest": {"seq": ing.entry.seq, "entry_hash": ing.entry_hash}})
    tl = chain.build()
    assert tl.findings == []
    on_orig = [e for e in tl.items[("C1", ITEM)].events if e.seq == d.entry.seq][0]
    on_copy = [e for e in tl.items[("C1", COPY)].events if e.seq == d.entry.seq][0]
    assert on_orig.text == f"derived copy {COPY[:12]}… made by Lawyer B: blurred faces"
    assert on_copy.text.startswith(f"derived from {ITEM[:12]}… by Lawyer B: blurred faces")
    assert on_copy.related == on_orig.related == (ing.entry.seq,)
    assert on_copy.premis == "creation"
    # Custody of the copy starts with its own ingest; the original's holder is untouched.
    assert tl.items[("C1", COPY)].holder == chain.b.key_id
    assert tl.items[("C1", ITEM)].holder == chain.a.key_id


def test_derive_linked_to_the_wrong_ingest_is_a_failure(chain):
    chain.ingest(chain.a)
    later = chain.ingest(chain.a, duplicate_of=3)
    chain.ingest(chain.b, item=COPY)
    d = chain.add(chain.b, "derive", "C1", {"item": COPY, "original": ITEM, "action": "trimmed",
                                            "original_ingest": {"seq": later.entry.seq, "entry_hash": later.entry_hash}})
    [f] = chain.build().findings
    assert (f.code, f.seq, f.severity) == ("custody-derive", d.entry.seq, "fail")
    assert "expected=seq 3" in f.message and f"found=seq {later.entry.seq}" in f.message


def test_ingest_duplicate_flags_and_note_words(chain):
    first = chain.ingest(chain.a)
    chain.ingest(chain.c, duplicate_of=first.entry.seq, flags=["empty-file"], note="second card")
    tl = chain.build()
    ic = tl.items[("C1", ITEM)]
    assert ic.holder == chain.a.key_id  # a later ingest by someone else does not move custody
    assert ic.events[1].text == (f"preserved by Archive C from sdcard/DCIM/VID_0001.mp4 (same bytes as entry "
                                 f"{first.entry.seq}, recorded for this source too) [empty file] — second card")
    assert ic.events[0].premis == "ingestion"


def test_received_ingest_from_another_organisation(chain):
    u = "9f" * 32
    chain.ingest(chain.b, received={"bundle": u, "origin": "aleppo.example/vault", "case": "Case 7",
                                    "exporter": chain.a.key_id, "checkpoint": {"size": 12, "root": "00" * 32},
                                    "ingests": [4], "transfer": {"seq": 9, "entry_hash": "11" * 32}})
    ev = chain.build().items[("C1", ITEM)].events[0]
    assert ev.text == (f"received by Lawyer B from aleppo.example/vault in bundle {u[:12]}… (their case Case 7), "
                       f"file sdcard/DCIM/VID_0001.mp4, accepting the transfer by aleppo.example/vault (their entry 9)")
    assert ev.premis == "accession"
    chain.ingest(chain.b, item=COPY, received={"bundle": u, "origin": "aleppo.example/vault"})
    ev = chain.build().items[("C1", COPY)].events[0]
    assert "holds no transfer of this item to Lawyer B" in ev.text


def test_received_from_plain_bagit_bag(chain):
    chain.ingest(chain.b, received={"bagit": {"version": "0.97", "bag_info": {}, "manifest_algorithms": ["sha256", "md5"],
                                              "digests": {"md5": "0" * 32}, "oxum": "10.1"}})
    ev = chain.build().items[("C1", ITEM)].events[0]
    assert "plain BagIt 0.97 bag (not an evidence bundle" in ev.text
    assert "sha256, md5 digests were checked" in ev.text


def test_access_annotate_deletion_request_words(chain):
    chain.ingest(chain.a)
    v = chain.add(chain.b, "access", "C1", {"item": ITEM, "purpose": "review for filing", "action": "view"})
    r = chain.add(chain.b, "access", "C1", {"item": ITEM, "purpose": "expert copy", "action": "retrieve"})
    x = chain.add(chain.a, "access", "C1", {"item": ITEM, "purpose": "export to evidence bundle", "action": "export",
                                           "bundle": "case7-bundle"})
    n = chain.add(chain.c, "annotate", "C1", {"item": ITEM, "text": "minaret visible at 0:14", "tags": ["geolocated", "mosque"],
                                             "location": {"lat": "36.2021", "lon": "37.1343"}})
    d = chain.add(chain.b, "deletion-request", "C1", {"item": ITEM, "reason": "subject asked for removal",
                                                     "outcome": timeline.DELETION_OUTCOME})
    ev = {e.seq: e for e in chain.build().items[("C1", ITEM)].events}
    assert ev[v.entry.seq].text == "viewed by Lawyer B — purpose: review for filing"
    assert ev[r.entry.seq].text == "copy of the original retrieved by Lawyer B — purpose: expert copy"
    assert ev[x.entry.seq].text == ("exported by Aleppo Media Centre, team 2 in bundle case7-bundle — "
                                    "purpose: export to evidence bundle")
    assert ev[n.entry.seq].text == ("note by Archive C: minaret visible at 0:14 [tags: geolocated, mosque] "
                                    "(location 36.2021, 37.1343)")
    assert ev[n.entry.seq].premis == "metadata modification"
    # PREMIS 3 event types (docs/custody-events.md §5); a deletion request maps to none.
    assert [ev[s.entry.seq].premis for s in (v, r, x, d)] == ["displaying", "dissemination", "dissemination", ""]
    assert all(timeline.PREMIS_CODES[ev[s.entry.seq].premis] for s in (v, r, x, n))
    assert "Nothing was deleted" in ev[d.entry.seq].text and "never deletes originals" in ev[d.entry.seq].text
    assert "subject asked for removal" in ev[d.entry.seq].text
    # None of these acts moves custody.
    assert chain.build().items[("C1", ITEM)].holder == chain.a.key_id


def test_case_level_and_vault_events_words(chain):
    chain.add(chain.a, "audit", "", {"result": "pass", "checked_entries": 5, "objects_checked": 2})
    chain.add(chain.a, "audit", "", {"result": "fail", "checked_entries": 6, "objects_checked": 2, "finding_count": 1})
    chain.add(chain.a, "export", "C1", {"items": [ITEM], "bundle": {"name": "B1"}})
    chain.add(chain.a, "checkpoint", "", {"event": "created", "tree_size": 8, "root_hash": "ab" * 32})
    new = CustodianKey.generate("Lawyer B (2027)")
    chain.add(chain.b, "key-enroll", "", {"key_id": new.key_id, "public_key": new.public.raw.hex(),
                                          "name": "Lawyer B (2027)", "role": "custodian", "successor_of": chain.b.key_id})
    chain.add(chain.b, "key-revoke", "", {"key_id": chain.b.key_id, "name": "Lawyer B", "reason": "rotation",
                                          "successor": new.key_id})
    ext = CustodianKey.generate("Court registry")
    chain.add(chain.a, "key-enroll", "", {"key_id": ext.key_id, "public_key": ext.public.raw.hex(),
                                          "name": "Court registry", "role": "custodian", "external": True})
    tl = timeline.build(chain.entries, {})  # (the revoked key signs nothing later: the chain is valid)
    verify_chain(chain.entries)
    vault_ev = tl.case_events[""]
    texts = [e.text for e in vault_ev]
    assert texts[0].startswith("vault created: key of Aleppo Media Centre, team 2 enrolled (self-signed")
    assert texts[1].startswith("key of Lawyer B enrolled by Aleppo Media Centre, team 2")
    assert any(t.startswith("audit by Aleppo Media Centre, team 2: passed (5 entries, 2 objects") for t in texts)
    assert any("FAILED with 1 problem" in t for t in texts)
    assert any(t.startswith("checkpoint signed by Aleppo Media Centre, team 2: the log's first 8 entries") for t in texts)
    assert any("replaces the key" in t and "of Lawyer B (rotation, signed by the old key)" in t for t in texts)
    assert any(t.startswith("key of Lawyer B revoked by Lawyer B") and "successor key" in t and "(Lawyer B (2027))" in t
               for t in texts)
    assert any(t.startswith("key of Court registry enrolled") and "private key is held elsewhere" in t for t in texts)
    assert [e.text for e in tl.case_events["C1"]] == ["evidence bundle B1 exported by Aleppo Media Centre, team 2 (1 item)"]
    assert {e.premis for e in vault_ev if e.type == "audit"} == {"fixity check"}
    assert tl.case_events["C1"][0].premis == "dissemination" and tl.case_events["C1"][0].item is None


def test_control_characters_in_signed_values_never_reach_the_text(chain):
    chain.ingest(chain.a, note="bag\x1b[2J17\u202egpj.exe")
    rel = chain.release(chain.a, chain.b, note="line1\nline2\r\x07")
    chain.add(chain.b, "annotate", "C1", {"item": ITEM, "text": "\x9b31m", "tags": ["\u2066x"]})
    chain.accept(chain.b, rel)
    for e in chain.build().items[("C1", ITEM)].events:
        assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u202e\u2066" for ch in e.text), e.text
    texts = " ".join(e.text for e in chain.build().items[("C1", ITEM)].events)
    assert "\\x1b[2J17\\u202egpj.exe" in texts and "line1\\x0aline2" in texts


@pytest.mark.parametrize("body", [
    {"item": ITEM},
    {"item": ITEM, "to": 5, "to_name": ["x"], "note": {"a": 1}},
    {"item": ITEM, "transfer": {"seq": "1", "entry_hash": None}, "from": 3},
    {"item": ITEM, "original": 7, "original_ingest": [], "action": None},
    {"item": ITEM, "location": "here", "tags": "a", "text": 5},
    {"item": ITEM, "source": "x", "received": {"transfer": 1, "bagit": 2}, "flags": "x", "duplicate_of": "1"},
    {"item": ITEM, "bundle": 5, "purpose": None, "action": []},
    {"items": 3, "bundle": [], "result": None, "event": 1, "key_id": 1, "successor": 2},
])
@pytest.mark.parametrize("type", ["ingest", "transfer", "transfer-accept", "access", "derive", "annotate",
                                  "deletion-request", "audit", "export", "key-revoke", "checkpoint"])
def test_odd_bodies_are_described_not_crashed_on(chain, type, body):
    chain.ingest(chain.a)
    chain.add(chain.a, type, "C1", dict(body))
    tl = chain.build()
    events = [e for ic in tl.items.values() for e in ic.events] + [e for es in tl.case_events.values() for e in es]
    assert events and all(isinstance(e.text, str) and e.text for e in events)
    assert not [e.text for e in events if "body not understood" in e.text]  # the fallback is never needed


def test_human_time():
    assert timeline.human_time("2026-12-02T05:12:59.123456Z") == "2026-12-02 05:12"
    assert timeline.human_time("garbage\x1b") == "garbage\\x1b"


# -- a real vault (library writers) ------------------------------------------------------------


def test_timeline_of_a_real_vault_transfer(vault, key, clock, tmp_path):
    src = tmp_path / "card"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"\xff\xd8 a photo")
    (src / "b.jpg").write_bytes(b"\xff\xd8 a photo")  # same bytes, second source
    ingest(vault, [src], key=key, case="C1", now=clock, extract_media=False)
    lawyer = custody.enroll_custodian(vault, key, name="Lawyer B", passphrase=PASSPHRASE + " b", now=clock())
    [rel] = custody.transfer_items(vault, key, items=(), case="C1", to="Lawyer B", note="sealed bag 17", now=clock)
    item = rel.entry.body["item"]
    entries = [SignedEntry.from_bytes(r.canonical, r.signature) for r in vault.ledger.rows()]
    names = {k: pk.name for k, pk in vault.enrolled_keys().items()}
    verify_chain(entries)
    ic = timeline.build(entries, names).items[("C1", item)]
    assert ic.holder is None and ic.in_transit_to == lawyer.key_id and ic.in_transit_name == "Lawyer B"
    assert [e.type for e in ic.events] == ["ingest", "ingest", "transfer"]
    assert "(same bytes as entry" in ic.events[1].text
    assert ic.events[2].text == "released by Field Team A to Lawyer B — in transit, not accepted by Lawyer B — sealed bag 17"
    # Lawyer B signs the acceptance with their own key.
    acc = vault.append(lawyer, now=clock(), type="transfer-accept", case="C1",
                       body={"item": item, "from": key.key_id,
                             "transfer": {"seq": rel.entry.seq, "entry_hash": rel.entry_hash}})
    assert acc is not None
    entries = [SignedEntry.from_bytes(r.canonical, r.signature) for r in vault.ledger.rows()]
    verify_chain(entries)
    tl = timeline.build(entries, names)
    assert tl.findings == []
    ic = tl.items[("C1", item)]
    assert (ic.holder, ic.holder_name) == (lawyer.key_id, "Lawyer B")
    assert ic.events[2].text.startswith("transferred by Field Team A to Lawyer B (accepted ")


# -- the real CLI --------------------------------------------------------------------------------

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from evidencelock.vault import Vault  # noqa: E402

from conftest import run_cli  # noqa: E402

B_PASS = {"EVIDENCELOCK_PASSPHRASE": "lawyer b passphrase"}
C_PASS = {"EVIDENCELOCK_PASSPHRASE": "archive c passphrase"}


def _cli_vault(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A real vault: Team A ingests two files of case C1; Lawyer B and Archive C are enrolled."""
    vault = tmp_path / "vault"
    card = tmp_path / "card"
    (card / "DCIM").mkdir(parents=True)
    (card / "DCIM" / "VID_0001.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 video of the shelling")
    (card / "DCIM" / "IMG_0002.jpg").write_bytes(b"\xff\xd8 photo of the crater")
    assert run_cli("init", "--custodian", "Team A", vault=vault).code == 0
    assert run_cli("ingest", card, "--case", "C1", "--no-media", vault=vault).code == 0
    for name, env in (("Lawyer B", B_PASS), ("Archive C", C_PASS)):
        r = run_cli("keys", "add", name, vault=vault, env={"EVIDENCELOCK_NEW_PASSPHRASE": env["EVIDENCELOCK_PASSPHRASE"]})
        assert r.code == 0, r.stderr
    items = {e["body"]["source"]["path"].rsplit("/", 1)[-1]: e["body"]["item"]
             for e in run_cli("log", "--type", "ingest", "--json", vault=vault).json()}
    return vault, items


def _history(vault: Path, item: str, *args: str) -> dict:
    r = run_cli("history", item, "--json", *args, vault=vault)
    assert r.code in (0, 1), r.stderr
    return r.json()


def _entries(vault: Path) -> list[dict]:
    return run_cli("log", "--json", vault=vault).json()


def test_two_party_transfer_is_accepted_and_receiver_holds_everywhere(tmp_path):
    vault, items = _cli_vault(tmp_path)
    vid = items["VID_0001.mp4"]
    r = run_cli("transfer", "VID_0001.mp4", "--case", "C1", "--to", "Lawyer B", "--note", "sealed bag 17", vault=vault)
    assert r.code == 0, r.stderr
    assert "in transit until Lawyer B accepts" in r.stdout
    r = run_cli("transfer", "--accept", "--case", "C1", "--custodian", "Lawyer B", "--json", vault=vault, env=B_PASS)
    assert r.code == 0, r.stderr
    [acc] = r.json()["accepted"]
    assert acc["item"] == vid
    h = _history(vault, vid)
    assert h["ok"] is True
    [case] = h["cases"]
    assert (case["holder_name"], case["in_transit_to"]) == ("Lawyer B", None)
    rel = [e for e in case["events"] if e["type"] == "transfer"][0]
    assert rel["status"] == "accepted" and rel["related"] == [acc["transfer"] + 1]
    assert rel["text"].startswith("transferred by Team A to Lawyer B (accepted ")
    assert rel["text"].endswith("— sealed bag 17")
    # Human history, show and log say the same in plain words.
    human = run_cli("history", vid, vault=vault)
    assert human.code == 0
    assert "transferred by Team A to Lawyer B (accepted" in human.stdout
    assert "custody accepted by Lawyer B from Team A" in human.stdout
    assert "Holder now: Lawyer B" in human.stdout
    assert "Signatures checked:" in human.stdout and "run `evidencelock verify`" in human.stdout
    show = run_cli("show", vid, vault=vault, env={"COLUMNS": "300"})
    assert "transferred by Team A to Lawyer B (accepted" in show.stdout and "Holder now (case C1): Lawyer B" in show.stdout
    log = run_cli("log", vault=vault, env={"COLUMNS": "300"})
    assert "transferred by Team A to Lawyer B (accepted" in log.stdout and '{"' not in log.stdout
    assert run_cli("verify", vault=vault).code == 0
    # The other item never moved.
    assert _history(vault, items["IMG_0002.jpg"])["cases"][0]["holder_name"] == "Team A"


def test_one_sided_transfer_is_in_transit_never_complete(tmp_path):
    vault, items = _cli_vault(tmp_path)
    vid = items["VID_0001.mp4"]
    assert run_cli("transfer", vid[:10], "--case", "C1", "--to", "Lawyer B", vault=vault).code == 0
    [case] = _history(vault, vid)["cases"]
    assert case["holder"] is None and case["in_transit_name"] == "Lawyer B"
    rel = [e for e in case["events"] if e["type"] == "transfer"][0]
    assert rel["status"] == "pending" and "in transit" in rel["text"] and "(accepted" not in rel["text"]
    for cmd in (("history", vid), ("show", vid), ("log",)):
        text = run_cli(*cmd, vault=vault, env={"COLUMNS": "300"}).stdout
        assert "in transit" in text, cmd
        assert "transferred by Team A to Lawyer B" not in text and "Holder now: Lawyer B" not in text, cmd
    cases = run_cli("cases", "--json", vault=vault).json()
    assert cases == [{"case": "C1", "items": 2, "entries": 3, "pending_transfers": 1, "holders": {"Team A": 1}}]
    # The sender no longer holds it, the receiver does not yet: neither may release it onwards
    # (only the releaser may redirect its own pending release).
    r = run_cli("transfer", vid[:10], "--case", "C1", "--to", "Team A", "--custodian", "Lawyer B", vault=vault, env=B_PASS)
    assert r.code == 2 and "in transit to Lawyer B" in r.stderr and "nothing was recorded" in r.stderr
    assert run_cli("verify", vault=vault).code == 0


def test_accept_by_wrong_key_is_refused_at_write_time(tmp_path):
    vault, items = _cli_vault(tmp_path)
    vid = items["VID_0001.mp4"]
    assert run_cli("transfer", vid[:10], "--case", "C1", "--to", "Lawyer B", vault=vault).code == 0
    before = len(_entries(vault))
    r = run_cli("accept", "--case", "C1", "--custodian", "Archive C", vault=vault, env=C_PASS)
    assert r.code == 2 and "nothing to accept" in r.stderr and "Archive C" in r.stderr
    r = run_cli("accept", vid[:10], "--case", "C1", "--custodian", "Archive C", vault=vault, env=C_PASS)
    assert r.code == 2 and "not in transit to Archive C" in r.stderr and "in transit to Lawyer B" in r.stderr
    # The releaser cannot accept its own release either.
    r = run_cli("accept", vid[:10], "--case", "C1", vault=vault)
    assert r.code == 2 and "Traceback" not in r.stderr
    assert len(_entries(vault)) == before
    # Accepting twice: the second is refused, nothing recorded.
    assert run_cli("accept", "--case", "C1", "--custodian", "Lawyer B", vault=vault, env=B_PASS).code == 0
    r = run_cli("accept", vid[:10], "--case", "C1", "--custodian", "Lawyer B", vault=vault, env=B_PASS)
    assert r.code == 2 and "held by Lawyer B" in r.stderr
    assert len(_entries(vault)) == before + 1


def test_transfer_by_non_holder_is_refused_and_nothing_recorded(tmp_path):
    vault, items = _cli_vault(tmp_path)
    before = len(_entries(vault))
    r = run_cli("transfer", "--case", "C1", "--to", "Archive C", "--custodian", "Lawyer B", vault=vault, env=B_PASS)
    assert r.code == 2
    assert "Lawyer B does not hold 2 of the 2 item(s)" in r.stderr and "held by Team A" in r.stderr
    assert len(_entries(vault)) == before


def test_forged_accept_by_another_enrolled_key_is_reported_by_verify(tmp_path):
    vault, items = _cli_vault(tmp_path)
    vid = items["VID_0001.mp4"]
    assert run_cli("transfer", vid[:10], "--case", "C1", "--to", "Lawyer B", vault=vault).code == 0
    assert run_cli("verify", vault=vault).code == 0  # the untampered vault passes
    rel = [e for e in _entries(vault) if e["type"] == "transfer"][0]
    # Archive C (a real, enrolled key) writes an acceptance of B's release into the ledger by
    # hand, past the writer's checks: a valid signature, a valid chain, a broken custody rule.
    v = Vault.open(vault, writable=True)
    try:
        c_key = v.unlock(C_PASS["EVIDENCELOCK_PASSPHRASE"], "Archive C")
        rel_hash = [s for s in v.ledger.entries_for_item(vid) if s.entry.seq == rel["seq"]][0].entry_hash
        forged = v.append(c_key, now=datetime.now(timezone.utc), type="transfer-accept", case="C1",
                          body={"item": vid, "from": rel["actor"], "transfer": {"seq": rel["seq"], "entry_hash": rel_hash}})
    finally:
        v.close()
    assert forged is not None
    r = run_cli("verify", "--json", vault=vault)
    assert r.code == 1 and "Traceback" not in r.stderr
    [f] = [f for f in r.json()["findings"] if f["code"] == "custody-accept"]
    assert f["subject"] == f"entry {forged.entry.seq}" and f["severity"] == "error"
    assert "expected=" in f["message"] and c_key.key_id in f["message"]
    human = run_cli("verify", vault=vault)
    assert human.code == 1 and f"entry {forged.entry.seq}" in human.stdout + human.stderr
    # history shows the claim as not valid and the item still in transit to Lawyer B.
    h = run_cli("history", vid, "--json", vault=vault)
    assert h.code == 1
    [case] = h.json()["cases"]
    assert case["holder"] is None and case["in_transit_name"] == "Lawyer B"
    assert [x["seq"] for x in h.json()["findings"]] == [forged.entry.seq]


def test_derivative_is_linked_to_its_original_both_verify_and_both_travel_in_the_bundle(tmp_path):
    vault, items = _cli_vault(tmp_path)
    vid = items["VID_0001.mp4"]
    blurred = tmp_path / "VID_0001_blurred.mp4"
    blurred.write_bytes(b"\x00\x00\x00\x18ftypmp42 video of the shelling, faces blurred")
    r = run_cli("derive", "VID_0001.mp4", blurred, "--action", "blurred faces", "--no-media", "--json", vault=vault)
    assert r.code == 0, r.stderr
    d = r.json()
    assert d["original"] == vid and d["ingest"] == "preserved" and d["already_linked"] is False
    # A rerun (as after a crash) records nothing twice.
    n = len(_entries(vault))
    r2 = run_cli("derive", vid[:10], blurred, "--action", "blurred faces", "--no-media", "--json", vault=vault)
    assert r2.code == 0 and r2.json()["already_linked"] is True and r2.json()["derive_seq"] == d["derive_seq"]
    assert len(_entries(vault)) == n
    orig_events = _history(vault, vid)["cases"][0]["events"]
    assert any(e["seq"] == d["derive_seq"] and e["text"] == f"derived copy {d['derived'][:12]}… made by Team A: blurred faces"
               for e in orig_events)
    copy = _history(vault, "VID_0001_blurred.mp4")
    copy_events = copy["cases"][0]["events"]
    assert copy["ok"] and [e["type"] for e in copy_events] == ["ingest", "derive"]
    assert copy_events[1]["text"].startswith(f"derived from {vid[:12]}… by Team A: blurred faces")
    first_ingest = [e for e in orig_events if e["type"] == "ingest"][0]["seq"]
    assert copy_events[1]["related"] == [first_ingest]
    assert run_cli("verify", vault=vault).code == 0
    r = run_cli("export", "--case", "C1", "-o", tmp_path / "bundle", "--no-report", vault=vault)
    assert r.code == 0, r.stderr
    assert run_cli("verify-bundle", tmp_path / "bundle").code == 0
    lines = (tmp_path / "bundle" / "evidence" / "entries.jsonl").read_text().splitlines()
    signed = [json.loads(base64.b64decode(json.loads(x)["canonical"])) for x in lines]
    assert {e["body"].get("item") for e in signed if e["type"] == "ingest"} >= {vid, d["derived"]}
    assert [e["seq"] for e in signed if e["type"] == "derive"] == [d["derive_seq"]]
    payload = {p.read_bytes() for p in (tmp_path / "bundle" / "data").rglob("*") if p.is_file()}
    assert blurred.read_bytes() in payload


def test_derive_refuses_a_copy_with_the_original_bytes_and_odd_input(tmp_path):
    vault, items = _cli_vault(tmp_path)
    same = tmp_path / "same.mp4"
    same.write_bytes((tmp_path / "card" / "DCIM" / "VID_0001.mp4").read_bytes())
    before = len(_entries(vault))
    r = run_cli("derive", "VID_0001.mp4", same, "--action", "nothing", vault=vault)
    assert r.code == 2 and "exactly the bytes of the original" in r.stderr
    r = run_cli("derive", "VID_0001.mp4", tmp_path / "card", "--action", "x", vault=vault)
    assert r.code == 2 and "Traceback" not in r.stderr
    r = run_cli("derive", "nosuchfile.mp4", same, "--action", "x", vault=vault)
    assert r.code == 2 and "nosuchfile.mp4" in r.stderr
    assert len(_entries(vault)) == before


def test_access_entries_written_by_export_and_by_access_with_output(tmp_path):
    vault, items = _cli_vault(tmp_path)
    img = items["IMG_0002.jpg"]
    out = tmp_path / "copy.jpg"
    r = run_cli("access", "IMG_0002.jpg", "--purpose", "expert examination", "-o", out, "--json", vault=vault)
    assert r.code == 0, r.stderr
    assert out.read_bytes() == (tmp_path / "card" / "DCIM" / "IMG_0002.jpg").read_bytes()
    assert r.json()["action"] == "retrieve"
    r = run_cli("access", img[:8], "--purpose", "review before hearing", vault=vault)
    assert r.code == 0, r.stderr
    r = run_cli("export", "--case", "C1", "-o", tmp_path / "b1", "--no-report", "--purpose", "disclosure to court",
                "--json", vault=vault)
    assert r.code == 0, r.stderr
    export_seq = r.json()["export_seq"]
    entries = _entries(vault)
    accesses = [e for e in entries if e["type"] == "access"]
    assert [(a["body"]["item"], a["body"]["action"], a["body"]["purpose"]) for a in accesses[:2]] == [
        (img, "retrieve", "expert examination"), (img, "view", "review before hearing")]
    by_export = [a for a in accesses if a["body"]["action"] == "export"]
    assert sorted(a["body"]["item"] for a in by_export) == sorted(items.values())
    assert all(a["body"]["bundle"] == "b1" and a["body"]["purpose"] == "disclosure to court" for a in by_export)
    # Same transaction as the export entry: they directly follow it.
    assert [a["seq"] for a in by_export] == [export_seq + 1, export_seq + 2]
    texts = [e["text"] for e in _history(vault, img)["cases"][0]["events"]]
    assert "copy of the original retrieved by Team A — purpose: expert examination" in texts
    assert "exported by Team A in bundle b1 — purpose: disclosure to court" in texts
    # A default purpose when none is given.
    assert run_cli("export", "--case", "C1", "-o", tmp_path / "b2", "--no-report", vault=vault).code == 0
    assert [e["body"]["purpose"] for e in _entries(vault) if e["type"] == "access"][-1] == "export to evidence bundle"
    assert run_cli("verify", vault=vault).code == 0


def test_access_output_refuses_a_tampered_stored_object_and_records_nothing(tmp_path):
    vault, items = _cli_vault(tmp_path)
    img = items["IMG_0002.jpg"]
    obj = vault / "objects" / "sha256" / img[:2] / img[2:4] / img
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[3] ^= 0x01
    obj.write_bytes(bytes(data))
    before = len(_entries(vault))
    out = tmp_path / "copy.jpg"
    r = run_cli("access", img[:8], "--purpose", "expert copy", "-o", out, vault=vault)
    assert r.code == 1 and "Traceback" not in r.stderr
    assert "does not match its signed ingest entry" in r.stderr and f"expected={img}" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".copy.jpg.partial*"))
    assert len(_entries(vault)) == before
    # An existing output file is never overwritten.
    out.write_bytes(b"mine")
    r = run_cli("access", items["VID_0001.mp4"][:8], "--purpose", "x", "-o", out, vault=vault)
    assert r.code == 2 and out.read_bytes() == b"mine"


def test_annotate_with_tags_and_location(tmp_path):
    vault, items = _cli_vault(tmp_path)
    vid = items["VID_0001.mp4"]
    r = run_cli("annotate", "VID_0001.mp4", "minaret of the Umayyad mosque visible at 0:14", "--tag", "geolocated",
                "--tag", "mosque", "--location", "36.1991,37.1569", "--custodian", "Archive C", "--json",
                vault=vault, env=C_PASS)
    assert r.code == 0, r.stderr
    e = [x for x in _entries(vault) if x["type"] == "annotate"][0]
    assert e["body"] == {"item": vid, "text": "minaret of the Umayyad mosque visible at 0:14", "tags": ["geolocated", "mosque"],
                         "location": {"lat": "36.1991", "lon": "37.1569"}}
    ev = [x for x in _history(vault, vid)["cases"][0]["events"] if x["type"] == "annotate"][0]
    assert ev["text"] == ("note by Archive C: minaret of the Umayyad mosque visible at 0:14 [tags: geolocated, mosque] "
                          "(location 36.1991, 37.1569)")
    assert ev["premis"] == "metadata modification"
    before = len(_entries(vault))
    for loc in ("91,0", "36.1", "north,east", "1e3,2", "36.1,37.2,5"):
        r = run_cli("annotate", vid[:8], "x", "--location", loc, vault=vault)
        assert r.code == 2 and "Traceback" not in r.stderr, loc
    assert len(_entries(vault)) == before


def test_deletion_request_leaves_the_object_in_place_and_says_so(tmp_path):
    vault, items = _cli_vault(tmp_path)
    img = items["IMG_0002.jpg"]
    obj = vault / "objects" / "sha256" / img[:2] / img[2:4] / img
    original = obj.read_bytes()
    r = run_cli("request-deletion", img[:8], "--reason", "the person shown asked for removal", vault=vault)
    assert r.code == 0, r.stderr
    assert "Nothing was deleted" in r.stdout
    assert obj.read_bytes() == original
    e = [x for x in _entries(vault) if x["type"] == "deletion-request"][0]
    assert e["body"]["outcome"] == "recorded; a write-once store never deletes originals"
    ev = [x for x in _history(vault, img)["cases"][0]["events"] if x["type"] == "deletion-request"][0]
    assert "Nothing was deleted" in ev["text"] and "the person shown asked for removal" in ev["text"]
    assert run_cli("verify", vault=vault).code == 0  # the object is still there and verifies
    assert run_cli("access", img[:8], "--purpose", "check", "-o", tmp_path / "still.jpg", vault=vault).code == 0
    assert (tmp_path / "still.jpg").read_bytes() == original


@pytest.mark.parametrize("args", [
    ("annotate", "{vid}", "bad\x1b[2Jnote"),
    ("annotate", "{vid}", "x", "--tag", "a\nb"),
    ("access", "{vid}", "--purpose", "why\x07"),
    ("access", "{vid}", "--purpose", "   "),
    ("request-deletion", "{vid}", "--reason", "r\u202eeason"),
    ("transfer", "{vid}", "--case", "C1", "--to", "Lawyer B", "--note", "bag\r17"),
    ("derive", "{vid}", "{file}", "--action", "blur\x01"),
    ("annotate", "nosuchitem", "text"),
    ("access", "abcdef12", "--purpose", "x"),
    ("history", "no such file.mp4"),
    ("annotate", "{vid}", "x" * 5000),
])
def test_odd_input_is_a_clear_error_and_records_nothing(tmp_path, args):
    vault, items = _cli_vault(tmp_path)
    f = tmp_path / "other.bin"
    f.write_bytes(b"other")
    before = len(_entries(vault))
    argv = [a.format(vid=items["VID_0001.mp4"][:10], file=f) for a in args]
    r = run_cli(*argv, vault=vault)
    assert r.code == 2, (r.code, r.stderr)
    assert r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", r.stderr)
    assert len(_entries(vault)) == before


# -- docs/vectors/custody.json (docs/custody-events.md §7) --------------------------------------

VECTORS = Path(__file__).resolve().parent.parent / "docs" / "vectors" / "custody.json"


def _vector_entries(scenario: dict) -> list[SignedEntry]:
    out = []
    for e in scenario["entries"]:
        s = SignedEntry.from_bytes(e["canonical"].encode("utf-8"), base64.b64decode(e["signature"]))
        assert s.entry.seq == e["seq"] and s.entry_hash == e["entry_hash"] == hashlib.sha256(s.canonical).hexdigest()
        out.append(s)
    return out


def _independent_custody(entries: list[dict]) -> dict:
    """docs/custody-events.md §3-§4 re-derived from the spec's table alone (plain dicts, no
    evidencelock.timeline), for the entry types the vectors use."""
    state: dict[tuple, dict] = {}
    releases: dict[int, dict] = {}
    findings = []
    for e in entries:
        body, key = e["body"], (e["case"], e["body"].get("item"))
        st = state.setdefault(key, {"holder": None, "started": False, "pending": None})
        if e["type"] == "ingest" and not st["started"]:
            st["started"] = True
            st["holder"] = e["actor"]
        elif e["type"] == "transfer":
            rel = {"seq": e["seq"], "actor": e["actor"], "to": body["to"], "hash": e["hash"], "status": "pending", "key": key}
            releases[e["seq"]] = rel
            pend = st["pending"]
            if pend is not None:
                pend["status"] = "superseded"
                if pend["actor"] != e["actor"]:
                    findings.append({"code": "custody-release-by-non-holder", "seq": e["seq"], "severity": "notice"})
            elif st["holder"] != e["actor"]:
                findings.append({"code": "custody-release-by-non-holder", "seq": e["seq"], "severity": "notice"})
            st.update(holder=None, pending=rel, started=True)
        elif e["type"] == "transfer-accept":
            ref = body["transfer"]
            rel = releases.get(ref["seq"])
            ok = (rel is not None and rel["key"] == key and rel["hash"] == ref["entry_hash"] and rel is st["pending"]
                  and rel["status"] == "pending" and e["actor"] == rel["to"] and body["from"] == rel["actor"])
            if ok:
                rel["status"] = "accepted"
                st.update(holder=e["actor"], pending=None)
            else:
                findings.append({"code": "custody-accept", "seq": e["seq"], "severity": "fail"})
        elif e["type"] == "derive":
            state.setdefault((e["case"], body["original"]), {"holder": None, "started": False, "pending": None})
    items = []
    for (case, item), st in sorted(state.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if item is None:
            continue
        items.append({"case": case, "item": item, "holder": st["holder"],
                      "in_transit_to": st["pending"]["to"] if st["pending"] else None,
                      "releases": {str(s): r["status"] for s, r in releases.items() if r["key"] == (case, item)}})
    return {"items": items, "findings": sorted(findings, key=lambda f: f["seq"])}


def test_custody_vectors_verify_and_give_the_expected_state():
    doc = json.loads(VECTORS.read_text("utf-8"))
    names = {"release-and-accept", "pending-release", "superseded-release", "accept-by-wrong-key",
             "release-by-non-holder", "derivation"}
    assert {s["name"] for s in doc["scenarios"]} == names
    for k in doc["keys"]:
        key = CustodianKey.from_seed(bytes.fromhex(k["seed"]), k["name"])
        assert key.public.raw.hex() == k["public_key"] and key.key_id == k["key_id"]
    for sc in doc["scenarios"]:
        entries = _vector_entries(sc)
        verify_chain(entries)  # every signature and the hash chain (ledger-format §5)
        tl = timeline.build(entries, {})
        got = {"items": [{"case": c, "item": i, "holder": ic.holder, "in_transit_to": ic.in_transit_to,
                          "releases": {str(e.seq): e.status for e in ic.events if e.type == "transfer"}}
                         for (c, i), ic in sorted(tl.items.items())],
               "findings": [{"code": f.code, "seq": f.seq, "severity": f.severity} for f in tl.findings]}
        assert got == sc["expected"], sc["name"]
        plain = [{**json.loads(s.canonical), "hash": s.entry_hash} for s in entries]
        assert _independent_custody(plain) == sc["expected"], sc["name"]


def test_custody_vectors_detect_a_changed_acceptance():
    """Re-signing the vector's acceptance with the other enrolled key turns it into a failure."""
    doc = json.loads(VECTORS.read_text("utf-8"))
    sc = [s for s in doc["scenarios"] if s["name"] == "release-and-accept"][0]
    entries = _vector_entries(sc)
    keys = {k["key_id"]: CustodianKey.from_seed(bytes.fromhex(k["seed"]), k["name"]) for k in doc["keys"]}
    c_key = [k for k in keys.values() if k.public.name == "Archive C"][0]
    last = entries[-1].entry
    forged = SignedEntry.create(Entry(**{**last.to_json(), "actor": c_key.key_id}), c_key.sign)
    tl = timeline.build(entries[:-1] + [forged], {})
    assert [(f.code, f.seq) for f in tl.findings] == [("custody-accept", last.seq)]
    assert tl.items[(last.case, last.item)].holder is None


@pytest.mark.parametrize("point", ["after-ledger-commit", "between-files"])
def test_derive_killed_between_its_ingest_and_its_link_completes_on_rerun(tmp_path, point):
    vault, items = _cli_vault(tmp_path)
    vid = items["VID_0001.mp4"]
    trimmed = tmp_path / "VID_0001_trimmed.mp4"
    trimmed.write_bytes(b"\x00\x00\x00\x18ftypmp42 video of the shelling, 0:10-0:40")
    r = run_cli("derive", vid[:10], trimmed, "--action", "trimmed to 0:10-0:40", "--no-media", vault=vault,
                env={"EVIDENCELOCK_TEST_KILL_AT": point})
    assert r.code != 0  # killed: the copy's ingest is recorded, the derive entry is not
    assert [e["type"] for e in _entries(vault)][-1] == "ingest"
    assert not [e for e in _entries(vault) if e["type"] == "derive"]
    r = run_cli("derive", vid[:10], trimmed, "--action", "trimmed to 0:10-0:40", "--no-media", "--json", vault=vault)
    assert r.code == 0, r.stderr
    assert r.json()["ingest"] == "already-recorded" and r.json()["already_linked"] is False
    entries = _entries(vault)
    copy = r.json()["derived"]
    assert [e["type"] for e in entries if e["body"].get("item") == copy] == ["ingest", "derive"]
    assert run_cli("verify", vault=vault).code == 0


# -- acceptance by an import receipt in another organisation's ledger ----------------------------


def _receipt(chain, rel, key, **over):
    fields = dict(transfer_seq=rel.entry.seq, transfer_hash=rel.entry_hash, receiver=key.key_id,
                  receiver_name=key.public.name, origin="lawyers.example/vault", time="2026-12-03T08:15:00.000000Z", seq=41)
    fields.update(over)
    return timeline.Receipt(**fields)


def test_release_accepted_by_an_import_receipt(chain):
    chain.ingest(chain.a)
    rel = chain.release(chain.a, chain.b, note="sealed bag 17")
    tl = timeline.build(chain.entries, {}, receipts=[_receipt(chain, rel, chain.b)])
    assert tl.findings == []
    ic = tl.items[("C1", ITEM)]
    assert ic.holder == chain.b.key_id and ic.in_transit_to is None
    ev = [e for e in ic.events if e.seq == rel.entry.seq][0]
    assert ev.status == "accepted"
    assert ev.text == ("transferred by Aleppo Media Centre, team 2 to Lawyer B (accepted by Lawyer B "
                       "(lawyers.example/vault) on import, 2026-12-03 08:15) — sealed bag 17")


@pytest.mark.parametrize("change, words", [
    (lambda ch, rel: {"receiver": ch.c.key_id, "receiver_name": "Archive C"}, "not by the receiver"),
    (lambda ch, rel: {"transfer_hash": "00" * 32}, "entry hash does not match"),
    (lambda ch, rel: {"transfer_seq": rel.entry.seq - 1}, "no such transfer"),
])
def test_import_receipt_that_does_not_match_the_release_is_a_failure(chain, change, words):
    chain.ingest(chain.a)
    rel = chain.release(chain.a, chain.b)
    tl = timeline.build(chain.entries, {}, receipts=[_receipt(chain, rel, chain.b, **change(chain, rel))])
    [f] = tl.findings
    assert f.code == "custody-accept" and f.severity == "fail" and words in f.message and "import receipt" in f.message
    assert tl.items[("C1", ITEM)].holder is None  # still in transit


def test_import_receipt_of_a_superseded_or_accepted_release_is_a_failure(chain):
    chain.ingest(chain.a)
    first = chain.release(chain.a, chain.b)
    chain.release(chain.a, chain.c)
    tl = timeline.build(chain.entries, {}, receipts=[_receipt(chain, first, chain.b)])
    assert [f.code for f in tl.findings] == ["custody-accept"] and "superseded" in tl.findings[0].message
    chain2 = Chain()
    chain2.ingest(chain2.a)
    rel = chain2.release(chain2.a, chain2.b)
    chain2.accept(chain2.b, rel)
    tl = timeline.build(chain2.entries, {}, receipts=[_receipt(chain2, rel, chain2.b)])
    assert [f.code for f in tl.findings] == ["custody-accept"] and "already accepted" in tl.findings[0].message
