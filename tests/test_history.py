"""`history ITEM` and `cases`: the custody timeline with signatures checked, found by digest
prefix or original file name; tampering with a shown entry is named (real vault, real CLI)."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from evidencelock import custody
from evidencelock.entry import Entry, SignedEntry
from evidencelock.history import item_history
from evidencelock.ingest import ingest
from evidencelock.keys import CustodianKey
from evidencelock.vault import Vault

from conftest import PASSPHRASE, Clock, run_cli


def _vault(tmp_path: Path) -> Path:
    vault = tmp_path / "vault"
    card = tmp_path / "sdcard"
    (card / "DCIM" / "100PHONE").mkdir(parents=True)
    (card / "DCIM" / "100PHONE" / "VID_0001.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 video one")
    (card / "DCIM" / "100PHONE" / "IMG_0001.jpg").write_bytes(b"\xff\xd8 photo one")
    (card / "other").mkdir()
    (card / "other" / "IMG_0001.jpg").write_bytes(b"\xff\xd8 another photo with the same name")
    assert run_cli("init", "--custodian", "Team A", vault=vault).code == 0
    assert run_cli("ingest", card, "--case", "C1", "--no-media", vault=vault).code == 0
    return vault


def _ingests(vault: Path) -> dict[str, str]:
    return {e["body"]["source"]["path"]: e["body"]["item"]
            for e in run_cli("log", "--type", "ingest", "--json", vault=vault).json()}


def test_history_by_digest_prefix_and_by_original_file_name(tmp_path):
    vault = _vault(tmp_path)
    vid = _ingests(vault)["DCIM/100PHONE/VID_0001.mp4"]
    by_prefix = run_cli("history", vid[:8], "--json", vault=vault)
    by_sha = run_cli("history", "sha256:" + vid, "--json", vault=vault)
    by_name = run_cli("history", "VID_0001.mp4", "--json", vault=vault)
    by_path = run_cli("history", "DCIM/100PHONE/VID_0001.mp4", "--json", vault=vault)
    assert by_prefix.code == by_name.code == by_path.code == by_sha.code == 0, by_name.stderr
    assert by_prefix.json() == by_name.json() == by_path.json() == by_sha.json()
    h = by_name.json()
    assert h["item"] == vid and h["file_names"] == ["DCIM/100PHONE/VID_0001.mp4"]
    [case] = h["cases"]
    assert case["case"] == "C1" and case["holder_name"] == "Team A"
    assert [e["text"] for e in case["events"]] == ["preserved by Team A from sdcard/DCIM/100PHONE/VID_0001.mp4"]
    # The key enrolment behind it and the entry itself: both signatures checked.
    assert h["signatures"]["checked"] == 2 and h["signatures"]["problems"] == []
    human = run_cli("history", "VID_0001.mp4", vault=vault)
    assert human.code == 0
    assert f"sha256:{vid}" in human.stdout and "preserved by Team A from sdcard/DCIM/100PHONE/VID_0001.mp4" in human.stdout
    assert "Holder now: Team A" in human.stdout
    assert "Signatures checked: 2 entries" in human.stdout and "Not checked here: the hash chain" in human.stdout
    # show and every other ITEM argument take the file name too.
    assert run_cli("show", "VID_0001.mp4", "--json", vault=vault).json()["item"] == vid


def test_ambiguous_file_name_lists_candidates_and_exits_2(tmp_path):
    vault = _vault(tmp_path)
    paths = _ingests(vault)
    r = run_cli("history", "IMG_0001.jpg", vault=vault)
    assert r.code == 2 and "Traceback" not in r.stderr
    assert "names more than one preserved item" in r.stderr
    for p in ("DCIM/100PHONE/IMG_0001.jpg", "other/IMG_0001.jpg"):
        assert paths[p][:16] in r.stderr and p in r.stderr
    # The full recorded path is unambiguous.
    r = run_cli("history", "other/IMG_0001.jpg", "--json", vault=vault)
    assert r.code == 0 and r.json()["item"] == paths["other/IMG_0001.jpg"]
    r = run_cli("annotate", "IMG_0001.jpg", "x", vault=vault)
    assert r.code == 2 and "names more than one preserved item" in r.stderr


def test_same_bytes_under_two_names_is_one_item(tmp_path):
    vault = _vault(tmp_path)
    extra = tmp_path / "copy"
    extra.mkdir()
    (extra / "renamed.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 video one")
    assert run_cli("ingest", extra, "--case", "C1", "--no-media", vault=vault).code == 0
    a = run_cli("history", "renamed.mp4", "--json", vault=vault).json()
    b = run_cli("history", "VID_0001.mp4", "--json", vault=vault).json()
    assert a == b and a["file_names"] == ["DCIM/100PHONE/VID_0001.mp4", "renamed.mp4"]
    texts = [e["text"] for e in a["cases"][0]["events"]]
    assert "(same bytes as entry" in texts[1]


def test_history_names_an_entry_whose_signature_does_not_verify(tmp_path):
    vault = _vault(tmp_path)
    vid = _ingests(vault)["DCIM/100PHONE/VID_0001.mp4"]
    assert run_cli("annotate", vid[:8], "original note", vault=vault).code == 0
    seq = run_cli("log", "--type", "annotate", "--json", vault=vault).json()[0]["seq"]
    # Edit the note in the database and re-sign it with a key that is not enrolled (the
    # attacker has no enrolled key): the stored bytes stay canonical, the signature does not verify.
    con = sqlite3.connect(vault / "ledger.sqlite")
    canonical, = con.execute("SELECT canonical FROM entries WHERE seq = ?", (seq,)).fetchone()
    e = Entry.from_canonical(bytes(canonical))
    forged = SignedEntry.create(Entry(**{**e.to_json(), "body": {**e.body, "text": "edited note"}}),
                                CustodianKey.generate("Mallory").sign)
    con.execute("UPDATE entries SET canonical = ?, signature = ? WHERE seq = ?", (forged.canonical, forged.signature, seq))
    con.commit()
    con.close()
    r = run_cli("history", vid[:8], "--json", vault=vault)
    assert r.code == 1 and "Traceback" not in r.stderr
    assert [p["seq"] for p in r.json()["signatures"]["problems"]] == [seq]
    human = run_cli("history", vid[:8], vault=vault)
    assert human.code == 1 and "SIGNATURE NOT VALID" in human.stdout and f"entry {seq}" in human.stdout
    assert "1 did NOT verify" in human.stdout


def test_history_of_an_item_in_two_cases_and_case_filter(tmp_path):
    vault = _vault(tmp_path)
    vid = _ingests(vault)["DCIM/100PHONE/VID_0001.mp4"]
    assert run_cli("ingest", tmp_path / "sdcard" / "DCIM" / "100PHONE" / "VID_0001.mp4", "--new-case", "--case", "C2", "--no-media",
                   vault=vault).code == 0
    h = run_cli("history", vid[:8], "--json", vault=vault).json()
    assert [c["case"] for c in h["cases"]] == ["C1", "C2"]
    h2 = run_cli("history", vid[:8], "--case", "C2", "--json", vault=vault).json()
    assert [c["case"] for c in h2["cases"]] == ["C2"]
    r = run_cli("history", vid[:8], "--case", "nope", vault=vault)
    assert r.code == 2 and "no entries in case" in r.stderr
    # An act on an item in two cases needs --case.
    r = run_cli("annotate", vid[:8], "which case?", vault=vault)
    assert r.code == 2 and "--case" in r.stderr
    assert run_cli("annotate", vid[:8], "this case", "--case", "C2", vault=vault).code == 0


def test_cases_lists_counts_pending_transfers_and_holders(tmp_path):
    vault = _vault(tmp_path)
    extra = tmp_path / "c2"
    extra.mkdir()
    (extra / "doc.pdf").write_bytes(b"%PDF-1.4 witness statement")
    assert run_cli("ingest", extra, "--new-case", "--case", "C2", "--no-media", vault=vault).code == 0
    assert run_cli("keys", "add", "Lawyer B", vault=vault, env={"EVIDENCELOCK_NEW_PASSPHRASE": "lawyer b passphrase"}).code == 0
    assert run_cli("transfer", "VID_0001.mp4", "--case", "C1", "--to", "Lawyer B", vault=vault).code == 0
    assert run_cli("transfer", "doc.pdf", "--case", "C2", "--to", "Lawyer B", vault=vault).code == 0
    assert run_cli("accept", "--case", "C2", "--custodian", "Lawyer B", vault=vault,
                   env={"EVIDENCELOCK_PASSPHRASE": "lawyer b passphrase"}).code == 0
    r = run_cli("cases", "--json", vault=vault)
    assert r.code == 0
    assert r.json() == [
        {"case": "C1", "items": 3, "entries": 4, "pending_transfers": 1, "holders": {"Team A": 2}},
        {"case": "C2", "items": 1, "entries": 3, "pending_transfers": 0, "holders": {"Lawyer B": 1}},
    ]
    human = run_cli("cases", vault=vault, env={"COLUMNS": "200"})
    assert human.code == 0 and "Lawyer B (1)" in human.stdout and "Team A (2)" in human.stdout


def test_history_of_an_item_with_many_events_uses_the_index_and_is_fast(tmp_path):
    """Thousands of events of one item among many other entries: history reads the item's
    entries through the index and checks every signature (bench/custody.py measures 10,000)."""
    clock = Clock(datetime(2026, 12, 1, tzinfo=timezone.utc))
    v = Vault.init(tmp_path / "v", custodian="Team A", passphrase=PASSPHRASE, now=clock())
    key = v.unlock(PASSPHRASE)
    (tmp_path / "c").mkdir()
    for i in range(50):
        (tmp_path / "c" / f"f{i}.bin").write_bytes(f"file {i}".encode())
    ingest(v, [tmp_path / "c"], key=key, case="C1", now=clock, extract_media=False)
    target = custody.case_items(v, "C1")[0]
    from evidencelock.ledger import Draft
    from evidencelock.entry import format_time

    n = 2000
    t = format_time(clock() + timedelta(minutes=1))
    others = [i for i in custody.case_items(v, "C1") if i != target]
    v.ledger.append_many(lambda conn, tail: [
        Draft(t, "access", "C1", key.key_id, {"item": target if i % 2 == 0 else others[i % len(others)],
                                              "purpose": f"review {i}", "action": "view"})
        for i in range(2 * n)], key.sign)
    start = time.perf_counter()
    h = item_history(v, target[:10])
    elapsed = time.perf_counter() - start
    v.close()
    assert h.ok and len(h.cases[0].events) == n + 1
    assert h.signatures_checked == n + 1 + 1
    assert elapsed < 5.0, elapsed  # generous on a shared test machine; bench/custody.py holds the real figure


# -- the fast canonical check used when reading entries (evidencelock/entry.py) -------------------

import json  # noqa: E402

import rfc8785  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

from evidencelock.entry import _is_canonical  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**60), max_value=2**60)
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",))),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",)), max_size=4),
        inner, max_size=4),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_fast_canonical_check_agrees_with_rfc8785(value):
    try:
        reference = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError:
        reference = None
    variants = [json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"),
                json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
                json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"),
                json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")]
    if reference is not None:
        variants.append(reference)
    for data in variants:
        expected = reference is not None and data == reference
        try:
            got = _is_canonical(value, data)
        except Exception:  # the reference path raises for values RFC 8785 refuses
            got = False
        assert got == expected, (value, data)


def test_fast_canonical_check_refuses_what_rfc8785_refuses():
    big = {"n": 2**60}
    assert not _is_canonical_safe(big, json.dumps(big, separators=(",", ":")).encode())
    # Member names beyond the BMP: UTF-16 order differs from code-point order.
    obj = {"\U0001f600": 1, "\uff01": 2}
    by_codepoint = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert by_codepoint != rfc8785.dumps(obj)
    assert not _is_canonical(obj, by_codepoint) and _is_canonical(obj, rfc8785.dumps(obj))


def _is_canonical_safe(value, data) -> bool:
    try:
        return _is_canonical(value, data)
    except Exception:
        return False


def test_batch_signature_check_finds_every_bad_signature_serial_and_forked():
    import os
    import threading

    from evidencelock.keys import start_unverified_positions, unverified_positions

    a, b = CustodianKey.generate("A"), CustodianKey.generate("B")
    for n in (50, 4500):  # below and above the size at which workers are forked
        batch = []
        for i in range(n):
            k = a if i % 3 else b
            msg = f"entry {i}".encode()
            batch.append((k.public.raw, msg, k.sign(msg)))
        bad_at = {0, 7, n // 2, n - 1}
        for i in bad_at:
            raw, msg, sig = batch[i]
            batch[i] = (raw, msg, sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]) if i != 7 else (b.public.raw if raw == a.public.raw else a.public.raw, msg, sig)
        batch.append((a.public.raw, b"short signature", b"\x00" * 10))
        assert unverified_positions(batch) == sorted(bad_at | {n})
        if n > 4000 and (os.cpu_count() or 1) > 1 and threading.active_count() == 1:
            waiter = start_unverified_positions(batch)
            assert waiter.__name__ == "wait"  # the forked path was taken
            assert waiter() == sorted(bad_at | {n})
