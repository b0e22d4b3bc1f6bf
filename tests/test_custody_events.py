"""Custody events and the custody state machine (evidencelock/timeline.py) on real signed entries.

Two sources of entries: a real vault written by the library (ingest, enrolment, transfer), and
an in-memory ledger of genuinely signed entries (real Ed25519 keys, a hash chain that
``verify_chain`` accepts) for the acts the writers refuse (forged accepts, non-holder releases).
"""

from __future__ import annotations

import hashlib
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
