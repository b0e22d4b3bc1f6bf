"""Tamper tests: change real bytes of a real vault, then `verify` must fail and name it.

Each test builds a vault with the library, tampers with the object files or with the SQLite
ledger directly (sqlite3 module, as an attacker with disk access would), then runs the real
CLI (`verify --json`, exit code 1) and the library (`verify_vault`), and asserts the exact
finding code and that the finding names the entry or item attacked.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import rfc8785
from conftest import PASSPHRASE, Clock, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidencelock import treestore
from evidencelock.audit import Finding, verify_vault
from evidencelock.entry import Entry, format_time
from evidencelock.ingest import ingest
from evidencelock.keys import CustodianKey
from evidencelock.vault import Vault


@dataclass
class Built:
    root: Path
    items: dict[str, bytes]  # sha256 -> bytes
    seq_of: dict[str, int]  # sha256 -> seq of its (first) ingest entry

    @property
    def db(self) -> Path:
        return self.root / "ledger.sqlite"

    def object_path(self, sha: str) -> Path:
        return self.root / "objects" / "sha256" / sha[:2] / sha[2:4] / sha

    def rel(self, sha: str) -> str:
        return f"objects/sha256/{sha[:2]}/{sha[2:4]}/{sha}"


def build_vault(root: Path, *, n_files: int = 4, size: int = 4096) -> Built:
    """A vault holding ``n_files`` distinct small files (plus one exact duplicate)."""
    clock = Clock()
    src = root.parent / (root.name + "-src")
    src.mkdir()
    data = {}
    for i in range(n_files):
        body = hashlib.sha256(f"{root}-{i}".encode()).digest() * (size // 32) + bytes([i])
        (src / f"f{i}.bin").write_bytes(body)
        data[hashlib.sha256(body).hexdigest()] = body
    (src / "copy-of-f0.bin").write_bytes((src / "f0.bin").read_bytes())
    Vault.init(root, custodian="Field Team A", passphrase=PASSPHRASE, now=clock()).close()
    with Vault.open(root, writable=True) as v:
        key = v.unlock(PASSPHRASE)
        rep = ingest(v, [src], key=key, case="case-1", now=clock, extract_media=False, jobs=1)
        assert rep.ok
    seq_of = {}
    for o in sorted(rep.outcomes, key=lambda o: o.seq):
        seq_of.setdefault(o.sha256, o.seq)
    return Built(root, data, seq_of)


@pytest.fixture
def built(tmp_path: Path) -> Built:
    return build_vault(tmp_path / "vault")


def lib_findings(root: Path, **kw) -> list[Finding]:
    with Vault.open(root) as v:
        return verify_vault(v, **kw).findings


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def about(f: Finding, subject: str) -> bool:
    """Does finding ``f`` name ``subject``?  Item subjects may add the source: "item ab12… (path)"."""
    return f.subject == subject or f.subject.startswith(subject + " (")


def verify_fails(b: Built, code: str, subject: str, *, exactly: bool = False, text: str | None = None,
                 human: bool = False) -> list[Finding]:
    """Run CLI and library verify; both must report ``code`` about ``subject`` (and exit 1)."""
    r = run_cli("verify", "--json", vault=b.root)
    assert r.code == 1, f"verify exit {r.code}\n{r.stdout}\n{r.stderr}"
    data = r.json()
    assert data["ok"] is False
    cli = [Finding(f["code"], f["subject"], f["message"]) for f in data["findings"] if f["severity"] == "error"]
    found = errors(lib_findings(b.root))
    for where, fs in (("CLI", cli), ("library", found)):
        hits = [f for f in fs if f.code == code and about(f, subject)]
        got = [(f.code, f.subject) for f in fs]
        assert hits, f"{where}: expected {code} about {subject!r}, got {got}"
        if text is not None:
            assert any(text in f.message for f in hits), [f.message for f in hits]
        if exactly:
            assert len(fs) == 1, f"{where}: expected only {code} about {subject}, got {got}"
    if human:  # the human output names it too
        h = run_cli("verify", vault=b.root)
        assert h.code == 1 and subject in h.stdout and code in h.stdout and "FAILED" in h.stdout
    return found


def item_subject(sha: str) -> str:
    return f"item {sha[:16]}…"


def first_item(b: Built) -> str:
    return min(b.seq_of, key=b.seq_of.get)


def make_writable(p: Path) -> None:
    os.chmod(p, stat.S_IMODE(p.stat().st_mode) | stat.S_IWUSR)


def test_untampered_vault_verifies(built: Built) -> None:
    assert lib_findings(built.root, all_digests=True) == []
    assert run_cli("verify", "--all-digests", vault=built.root).code == 0


# -- the object store ---------------------------------------------------------------------
def test_flip_one_byte_in_object(built: Built) -> None:
    sha = first_item(built)
    p = built.object_path(sha)
    make_writable(p)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    os.chmod(p, 0o444)
    found = verify_fails(built, "object-digest-mismatch", item_subject(sha), exactly=True, human=True,
                         text=f"expected={sha} found={hashlib.sha256(bytes(data)).hexdigest()}")
    assert built.rel(sha) in found[0].message


def test_truncate_object(built: Built) -> None:
    sha = first_item(built)
    p = built.object_path(sha)
    make_writable(p)
    os.truncate(p, 100)
    verify_fails(built, "object-digest-mismatch", item_subject(sha), text=f"expected={sha}")


def test_flip_byte_caught_by_second_digest_flag_too(built: Built) -> None:
    sha = first_item(built)
    p = built.object_path(sha)
    make_writable(p)
    data = bytearray(p.read_bytes())
    data[0] ^= 0x80
    p.write_bytes(bytes(data))
    found = errors(lib_findings(built.root, all_digests=True))
    assert len(found) == 1 and found[0].code == "object-digest-mismatch" and about(found[0], item_subject(sha))
    assert "blake3" in found[0].message or "sha256" in found[0].message


def test_delete_object(built: Built) -> None:
    sha = first_item(built)
    p = built.object_path(sha)
    p.unlink()
    verify_fails(built, "object-missing", item_subject(sha), exactly=True, text=f"entry {built.seq_of[sha]}")


def test_stray_object_with_valid_name(built: Built) -> None:
    data = b"planted evidence"
    sha = hashlib.sha256(data).hexdigest()
    p = built.object_path(sha)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    os.chmod(p, 0o444)
    verify_fails(built, "object-unrecorded", f"object {built.rel(sha)}", exactly=True)


@pytest.mark.parametrize("where", ["junk-name", "misplaced"])
def test_stray_object_with_junk_name(built: Built, where: str) -> None:
    if where == "junk-name":
        rel = "objects/sha256/ab/cd/notes.txt"
    else:  # a valid digest name in the wrong folder
        sha = first_item(built)
        rel = f"objects/sha256/00/00/{sha}"
    p = built.root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    verify_fails(built, "object-stray", f"object {rel}", exactly=True)


# -- the ledger rows ----------------------------------------------------------------------
def read_row(db: Path, seq: int) -> tuple[bytes, bytes]:
    with sqlite3.connect(db) as con:
        canonical, sig = con.execute("SELECT canonical, signature FROM entries WHERE seq=?", (seq,)).fetchone()
    return bytes(canonical), bytes(sig)


def last_seq(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT max(seq) FROM entries").fetchone()[0]


def forge(obj: dict, field: str) -> dict:
    obj = json.loads(json.dumps(obj))
    if field == "body":
        obj["body"]["source"]["path"] = "forged/elsewhere.jpg"
        obj["body"]["note"] = "taken by someone else"
    elif field == "time":
        t = datetime.strptime(obj["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        obj["time"] = format_time(t - timedelta(days=365))
    elif field == "case":
        obj["case"] = "another-case"
    return obj


def rewrite_row(db: Path, seq: int, canonical: bytes, *, fix_columns: bool) -> None:
    with sqlite3.connect(db) as con:
        con.execute("UPDATE entries SET canonical=? WHERE seq=?", (canonical, seq))
        if fix_columns:
            # A careful forger also fixes the denormalised hash columns and the stored tree,
            # so that nothing but the signature can catch the edit.
            e = Entry.from_canonical(canonical)
            con.execute(
                "UPDATE entries SET entry_hash=?, leaf_hash=?, case_id=?, time=? WHERE seq=?",
                (hashlib.sha256(canonical).hexdigest(), hashlib.sha256(b"\0" + canonical).hexdigest(), e.case,
                 e.time, seq),
            )
    if fix_columns:
        from sqlalchemy import create_engine

        eng = create_engine(f"sqlite:///{db}")
        with eng.begin() as conn:
            leaves = [bytes.fromhex(r[0]) for r in conn.exec_driver_sql("SELECT leaf_hash FROM entries ORDER BY seq")]
            treestore.rebuild(conn, leaves)
        eng.dispose()


@pytest.mark.parametrize("field", ["body", "time", "case"])
def test_change_field_of_last_row_only_signature_catches(built: Built, field: str) -> None:
    seq = last_seq(built.db)
    canonical, _ = read_row(built.db, seq)
    forged = rfc8785.dumps(forge(json.loads(canonical), field))  # re-canonicalised: well formed
    assert forged != canonical
    rewrite_row(built.db, seq, forged, fix_columns=True)
    verify_fails(built, "signature-invalid", f"entry {seq}", exactly=True, text="does not verify")


@pytest.mark.parametrize("field", ["body", "time", "case"])
def test_change_field_of_middle_row(built: Built, field: str) -> None:
    seq = built.seq_of[first_item(built)]
    canonical, _ = read_row(built.db, seq)
    forged = rfc8785.dumps(forge(json.loads(canonical), field))
    rewrite_row(built.db, seq, forged, fix_columns=False)
    found = verify_fails(built, "signature-invalid", f"entry {seq}")
    codes = {(f.code, f.subject) for f in found}
    # The next entry's prev no longer matches, and the stored hash column disagrees.
    assert ("chain-broken", f"entry {seq + 1}") in codes
    assert ("entry-hash-column", f"entry {seq}") in codes


def test_non_canonical_edit_of_row(built: Built) -> None:
    seq = built.seq_of[first_item(built)]
    canonical, _ = read_row(built.db, seq)
    rewrite_row(built.db, seq, canonical.replace(b'"case":', b'"case": ', 1), fix_columns=False)
    verify_fails(built, "entry-malformed", f"entry {seq}", text="canonical")


def test_delete_middle_row(built: Built) -> None:
    sha = first_item(built)
    seq = built.seq_of[sha]
    with sqlite3.connect(built.db) as con:
        con.execute("DELETE FROM entries WHERE seq=?", (seq,))
    found = verify_fails(built, "chain-broken", f"entry {seq + 1}", text=f"expected seq={seq} found seq={seq + 1}")
    codes = {f.code for f in found}
    assert "tree-size-mismatch" in codes


def test_delete_last_row(built: Built) -> None:
    seq = last_seq(built.db)
    canonical, _ = read_row(built.db, seq)
    sha = json.loads(canonical)["body"]["item"]
    with sqlite3.connect(built.db) as con:
        con.execute("DELETE FROM entries WHERE seq=?", (seq,))
    found = verify_fails(built, "tree-size-mismatch", "merkle tree")
    if built.seq_of.get(sha) == seq:  # its only record is gone: the object is now unaccounted for
        assert ("object-unrecorded", f"object {built.rel(sha)}") in {(f.code, f.subject) for f in found}


def test_reorder_two_rows(built: Built) -> None:
    a, b = sorted(built.seq_of.values())[:2]
    with sqlite3.connect(built.db) as con:
        con.execute("UPDATE entries SET seq=-1 WHERE seq=?", (a,))
        con.execute("UPDATE entries SET seq=? WHERE seq=?", (a, b))
        con.execute("UPDATE entries SET seq=? WHERE seq=-1", (b,))
    found = verify_fails(built, "entry-seq-mismatch", f"entry {a}", text=f"row seq {a} holds an entry with seq {b}")
    assert ("entry-seq-mismatch", f"entry {b}") in {(f.code, f.subject) for f in found}


def test_replace_signature_with_another_entrys(built: Built) -> None:
    a, b = sorted(built.seq_of.values())[:2]
    _, sig_b = read_row(built.db, b)
    with sqlite3.connect(built.db) as con:
        con.execute("UPDATE entries SET signature=? WHERE seq=?", (sig_b, a))
    verify_fails(built, "signature-invalid", f"entry {a}", exactly=True)


def test_truncated_signature(built: Built) -> None:
    seq = last_seq(built.db)
    _, sig = read_row(built.db, seq)
    with sqlite3.connect(built.db) as con:
        con.execute("UPDATE entries SET signature=? WHERE seq=?", (sig[:63], seq))
    verify_fails(built, "signature-invalid", f"entry {seq}", exactly=True, text="64 bytes")


def _append_rogue(b: Built, rogue: CustodianKey, *, type: str, body: dict) -> int:
    """Append an entry signed by ``rogue`` with the correct seq/prev, tree and index updates."""
    with Vault.open(b.root) as v:
        signed = v.append(rogue, now=datetime(2015, 1, 1, tzinfo=timezone.utc), type=type, case="case-1", body=body)
    return signed.entry.seq


def test_entry_signed_by_never_enrolled_key(built: Built) -> None:
    rogue = CustodianKey.generate("Mallory")
    seq = _append_rogue(built, rogue, type="annotate", body={"item": first_item(built), "text": "this video is fake"})
    verify_fails(built, "signature-invalid", f"entry {seq}", exactly=True, text="never enrolled", human=True)


def test_self_enrolled_rogue_key_is_not_trusted(built: Built) -> None:
    """A key that enrols itself (not signed by an enrolled custodian) stays untrusted."""
    rogue = CustodianKey.generate("Mallory")
    s1 = _append_rogue(built, rogue, type="key-enroll",
                       body={"key_id": rogue.key_id, "public_key": rogue.public.raw.hex(), "name": "Mallory",
                             "role": "custodian"})
    s2 = _append_rogue(built, rogue, type="annotate", body={"item": first_item(built), "text": "fake"})
    found = verify_fails(built, "signature-invalid", f"entry {s1}", text="never enrolled")
    assert ("signature-invalid", f"entry {s2}") in {(f.code, f.subject) for f in found}


# -- the derived items index --------------------------------------------------------------
@pytest.mark.parametrize("edit,code", [
    ("size", "index-item-mismatch"),
    ("delete", "index-missing-item"),
    ("insert", "index-extra-item"),
])
def test_edit_items_index(built: Built, edit: str, code: str) -> None:
    sha = first_item(built)
    with sqlite3.connect(built.db) as con:
        if edit == "size":
            con.execute("UPDATE items SET size=size+1 WHERE sha256=?", (sha,))
        elif edit == "delete":
            con.execute("DELETE FROM items WHERE sha256=?", (sha,))
        else:
            sha = hashlib.sha256(b"never ingested").hexdigest()
            con.execute("INSERT INTO items (sha256, second_digest, second_algorithm, size, first_seq) VALUES (?,?,?,?,?)",
                        (sha, "0" * 64, "blake3", 14, 1))
    verify_fails(built, code, item_subject(sha), exactly=True)


# -- property: any single-byte change anywhere is detected and named -----------------------
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target=st.sampled_from(["entry", "object"]),
    which=st.integers(min_value=0, max_value=10_000),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    xor=st.integers(min_value=1, max_value=255),
)
def test_any_byte_flip_is_detected(target: str, which: int, where: float, xor: int) -> None:
    with tempfile.TemporaryDirectory(prefix="evl-prop-") as tmp:
        b = build_vault(Path(tmp) / "vault", n_files=3, size=512)
        if target == "entry":
            with sqlite3.connect(b.db) as con:
                seqs = [r[0] for r in con.execute("SELECT seq FROM entries ORDER BY seq")]
                seq = seqs[which % len(seqs)]
                canonical = bytearray(con.execute("SELECT canonical FROM entries WHERE seq=?", (seq,)).fetchone()[0])
                pos = int(where * len(canonical))
                canonical[pos] ^= xor
                con.execute("UPDATE entries SET canonical=? WHERE seq=?", (bytes(canonical), seq))
            subject = f"entry {seq}"
        else:
            shas = sorted(b.items)
            sha = shas[which % len(shas)]
            p = b.object_path(sha)
            make_writable(p)
            data = bytearray(p.read_bytes())
            data[int(where * len(data))] ^= xor
            p.write_bytes(bytes(data))
            subject = item_subject(sha)
        found = errors(lib_findings(b.root))
        assert any(about(f, subject) for f in found), (subject, found)
