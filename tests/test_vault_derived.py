"""Issue 9 items 10, 11, 14: derived data, the tree table, audits during an ingest.

Every test builds a real vault with the real CLI, then tampers with the real SQLite file (the
sqlite3 module, as anyone with disk access could, without any key) or rewrites the ledger
with the vault's own key (the key holder), and asserts the refusal: exit 1 and the row named.
The untampered copy of the same vault passes, so each test can fail.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import PASSPHRASE, run_cli

from evidencelock import merkle
from evidencelock.entry import Entry, SignedEntry
from evidencelock.keys import CustodianKey


@dataclass
class Tpl:
    vault: Path
    log: list[dict]

    def seq(self, type_: str, case: str | None = None, n: int = 0) -> int:
        hits = [e["seq"] for e in self.log if e["type"] == type_ and (case is None or e["case"] == case)]
        return hits[n]


def _exif():
    import piexif
    from mediagen import gps_rational

    return {
        "0th": {piexif.ImageIFD.Make: b"Samsung", piexif.ImageIFD.Model: b"SM-A515F",
                piexif.ImageIFD.DateTime: b"2023:02:06 14:00:05"},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2023:02:06 14:00:05"},
        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: gps_rational(36.2021),
                piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: gps_rational(37.1343)},
    }


def _ok(r) -> None:
    assert r.code == 0, f"exit {r.code}\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Tpl:
    from mediagen import make_jpeg

    base = tmp_path_factory.mktemp("tpl")
    vault, card, other = base / "vault", base / "card", base / "other"
    card.mkdir()
    other.mkdir()
    make_jpeg(card / "photo.jpg", 7, exif=_exif())
    (card / "hello.txt").write_bytes(b"hello, evidence\n")
    (other / "c2.txt").write_bytes(b"another case\n")
    _ok(run_cli("init", "--custodian", "Team A", vault=vault))
    _ok(run_cli("ingest", card, "--case", "C1", vault=vault))
    _ok(run_cli("ingest", other, "--new-case", "--case", "C2", "--no-media", vault=vault))
    _ok(run_cli("keys", "add", "Lawyer B", vault=vault, env={"EVIDENCELOCK_NEW_PASSPHRASE": "lawyer passphrase 1"}))
    _ok(run_cli("transfer", "--case", "C1", "--to", "Lawyer B", "--note", "sealed bag 17", vault=vault))
    _ok(run_cli("keys", "revoke", "Lawyer B", "--reason", "laptop seized", vault=vault))
    log = run_cli("log", "--json", vault=vault).json()
    return Tpl(vault, log)


@pytest.fixture
def v(template: Tpl, tmp_path: Path) -> Path:
    dst = tmp_path / "vault"
    shutil.copytree(template.vault, dst)
    return dst


def db(vault: Path) -> Path:
    return vault / "ledger.sqlite"


def sql(vault: Path, stmt: str, params: tuple = ()) -> int:
    con = sqlite3.connect(db(vault))
    try:
        n = con.execute(stmt, params).rowcount
        con.commit()
        return n
    finally:
        con.close()


def rebuild_tree(vault: Path) -> None:
    """What a key holder who rewrote the entries does next: rebuild tree_nodes from them."""
    from evidencelock import treestore
    from sqlalchemy import create_engine

    con = sqlite3.connect(db(vault))
    leaves = [merkle.leaf_hash(bytes(r[0])) for r in con.execute("SELECT canonical FROM entries ORDER BY seq")]
    con.close()
    eng = create_engine(f"sqlite:///{db(vault)}")
    with eng.begin() as conn:
        treestore.rebuild(conn, leaves)
    eng.dispose()


def fetch(vault: Path, stmt: str, params: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(db(vault))
    try:
        return con.execute(stmt, params).fetchall()
    finally:
        con.close()


def refused_everywhere(vault: Path, tmp_path: Path, *names: str, export_case: str = "C1") -> None:
    """verify and audit exit 1 naming ``names``; export exits 1 naming them and writes nothing."""
    r = run_cli("verify", vault=vault)
    assert r.code == 1, f"verify exit {r.code}\n{r.stdout}\n{r.stderr}"
    for n in names:
        assert n in r.stdout, f"verify does not name {n!r}:\n{r.stdout}"
    data = run_cli("verify", "--json", vault=vault).json()
    assert data["ok"] is False
    r = run_cli("audit", "--json", vault=vault)
    assert r.code == 1, r.stdout + r.stderr
    assert any(all(n in (f["subject"] + " " + f["message"]) for n in names[:1]) for f in r.json()["findings"])
    out = tmp_path / "bundle"
    r = run_cli("export", "--case", export_case, "-o", out, vault=vault)
    assert r.code == 1, f"export exit {r.code}\n{r.stdout}\n{r.stderr}"
    for n in names:
        assert n in r.stderr, f"export does not name {n!r}:\n{r.stderr}"
    assert "Traceback" not in r.stderr
    assert not out.exists()


# -- the baseline: the untampered vault verifies, audits and exports ---------------------


def test_untampered_copy_verifies_audits_and_exports(v: Path, tmp_path: Path) -> None:
    _ok(run_cli("verify", vault=v))
    _ok(run_cli("audit", vault=v))
    _ok(run_cli("export", "--case", "C1", "-o", tmp_path / "b", vault=v))
    _ok(run_cli("verify-bundle", tmp_path / "b"))


# -- item 10: entries columns ------------------------------------------------------------


@pytest.mark.parametrize("column,target,value", [
    ("case_id", "ingest", "C2"),            # moves an item out of its case: export would omit it
    ("type", "transfer", "note"),           # hides a custody transfer from export
    ("type", "key-revoke", "audit"),        # hides a revocation from export
    ("item", "ingest", "0" * 64),           # detaches an ingest entry from its item
    ("actor", "transfer", "f" * 64),
    ("time", "transfer", "2000-01-01T00:00:00.000000Z"),
])
def test_edited_entries_column_is_refused(template: Tpl, v: Path, tmp_path: Path, column: str, target: str,
                                          value: str) -> None:
    seq = template.seq(target, "C1" if target in ("ingest", "transfer") else None)
    assert sql(v, f"UPDATE entries SET {column} = ? WHERE seq = ?", (value, seq)) == 1
    refused_everywhere(v, tmp_path, f"entries seq={seq}", f"column {column}")


# -- item 10: rows that a query by seq would not see -------------------------------------


@pytest.mark.parametrize("bad_seq", [-1, 1_000_000])
def test_row_with_negative_or_out_of_range_seq_is_seen(template: Tpl, v: Path, tmp_path: Path, bad_seq: int) -> None:
    # A copy of a genuine, correctly signed row, planted at a seq no ordinary reader visits.
    src = template.seq("transfer", "C1")
    sql(v, "INSERT INTO entries (seq, canonical, signature, entry_hash, leaf_hash, type, case_id, actor, time, item) "
           "SELECT ?, canonical, signature, entry_hash, leaf_hash, type, case_id, actor, time, item FROM entries "
           "WHERE seq = ?", (bad_seq, src))
    r = run_cli("verify", vault=v)
    assert r.code == 1
    assert f"entry {bad_seq}" in r.stdout, r.stdout
    r = run_cli("export", "--case", "C1", "-o", tmp_path / "b", vault=v)
    assert r.code == 1 and f"entries seq={bad_seq}" in r.stderr, r.stderr
    assert not (tmp_path / "b").exists()


# -- item 10: sources, keys, items -------------------------------------------------------


def test_sources_row_moved_to_another_case_is_refused(template: Tpl, v: Path, tmp_path: Path) -> None:
    seq = template.seq("ingest", "C1")
    assert sql(v, "UPDATE sources SET case_id = 'C2' WHERE seq = ?", (seq,)) == 1
    refused_everywhere(v, tmp_path, "sources id=", f"(seq={seq})", "column case_id")


def test_sources_row_deleted_is_refused(template: Tpl, v: Path, tmp_path: Path) -> None:
    seq = template.seq("ingest", "C1", 1)
    assert sql(v, "DELETE FROM sources WHERE seq = ?", (seq,)) == 1
    refused_everywhere(v, tmp_path, f"sources seq={seq}")


def test_sources_row_planted_is_refused(template: Tpl, v: Path, tmp_path: Path) -> None:
    # The C2 item planted into case C1: export would carry it under C1.
    seq = template.seq("ingest", "C2")
    sha = fetch(v, "SELECT sha256 FROM sources WHERE seq = ?", (seq,))[0][0]
    sql(v, "INSERT INTO sources (sha256, case_id, source_key, seq) VALUES (?, 'C1', ?, ?)", (sha, "ab" * 32, seq))
    refused_everywhere(v, tmp_path, f"(seq={seq})", "index-source-extra")


def test_keys_row_renamed_is_refused(template: Tpl, v: Path, tmp_path: Path) -> None:
    # The certification would name a different custodian.
    kid = fetch(v, "SELECT key_id FROM keys WHERE name = 'Team A'")[0][0]
    assert sql(v, "UPDATE keys SET name = 'Judge Judy' WHERE key_id = ?", (kid,)) == 1
    refused_everywhere(v, tmp_path, f"keys key_id={kid[:16]}", "column name", "Judge Judy")


def test_keys_revocation_erased_is_refused(template: Tpl, v: Path, tmp_path: Path) -> None:
    kid = fetch(v, "SELECT key_id FROM keys WHERE name = 'Lawyer B'")[0][0]
    assert sql(v, "UPDATE keys SET revoked_seq = NULL WHERE key_id = ?", (kid,)) == 1
    refused_everywhere(v, tmp_path, f"keys key_id={kid[:16]}", "column revoked_seq")


@pytest.mark.parametrize("attack", ["delete", "plant"])
def test_keys_row_deleted_or_planted_is_refused(v: Path, tmp_path: Path, attack: str) -> None:
    if attack == "delete":
        kid = fetch(v, "SELECT key_id FROM keys WHERE name = 'Lawyer B'")[0][0]
        sql(v, "DELETE FROM keys WHERE key_id = ?", (kid,))
    else:
        evil = CustodianKey.generate("Mallory")
        kid = evil.key_id
        sql(v, "INSERT INTO keys (key_id, public_key, name, enrolled_seq) VALUES (?, ?, 'Mallory', 0)",
            (kid, evil.public.raw))
    refused_everywhere(v, tmp_path, f"keys key_id={kid[:16]}")


@pytest.mark.parametrize("column,value", [("size", 1), ("first_seq", 0), ("second_digest", "0" * 64)])
def test_items_row_edited_is_refused(template: Tpl, v: Path, tmp_path: Path, column: str, value) -> None:
    sha = fetch(v, "SELECT sha256 FROM items ORDER BY first_seq LIMIT 1")[0][0]
    sql(v, f"UPDATE items SET {column} = ? WHERE sha256 = ?", (value, sha))
    refused_everywhere(v, tmp_path, f"item {sha[:16]}", f"column {column}")


def test_items_row_deleted_is_refused(v: Path, tmp_path: Path) -> None:
    sha = fetch(v, "SELECT sha256 FROM items ORDER BY first_seq LIMIT 1")[0][0]
    sql(v, "DELETE FROM items WHERE sha256 = ?", (sha,))
    refused_everywhere(v, tmp_path, f"item {sha[:16]}", "index-missing-item")


def _photo(v: Path) -> tuple[str, str]:
    rows = fetch(v, "SELECT sha256, media_json FROM items WHERE media_json LIKE '%36.2%'")
    assert len(rows) == 1, "the photo's extracted metadata must hold its GPS latitude"
    return rows[0]


def test_fake_gps_in_media_metadata_is_refused(v: Path, tmp_path: Path) -> None:
    sha, media = _photo(v)
    assert "media_sha256" in fetch(v, "SELECT canonical FROM entries WHERE item = ? AND type = 'ingest'", (sha,))[0][0].decode()
    sql(v, "UPDATE items SET media_json = ? WHERE sha256 = ?", (media.replace("36.2", "48.8"), sha))
    refused_everywhere(v, tmp_path, f"item {sha[:16]}", "media_json", "index-media-mismatch")


def test_media_metadata_outside_the_summary_is_covered_by_the_digest(v: Path, tmp_path: Path) -> None:
    sha, media = _photo(v)
    obj = json.loads(media)
    obj["planted"] = {"capture_time": "1999-01-01T00:00:00"}
    sql(v, "UPDATE items SET media_json = ? WHERE sha256 = ?", (json.dumps(obj), sha))
    refused_everywhere(v, tmp_path, f"item {sha[:16]}", "media_json")


def test_media_metadata_erased_is_refused(v: Path, tmp_path: Path) -> None:
    sha, _ = _photo(v)
    sql(v, "UPDATE items SET media_json = NULL WHERE sha256 = ?", (sha,))
    refused_everywhere(v, tmp_path, f"item {sha[:16]}", "media_json")


def test_old_entry_without_media_digest_checks_the_signed_summary(tmp_path: Path, monkeypatch) -> None:
    """Entries written before ``media_sha256``: the signed summary (capture time, GPS) is still
    compared; what it does not cover is reported as unsigned (a notice)."""
    from conftest import Clock
    from mediagen import make_jpeg

    from evidencelock import ingest as ingest_mod
    from evidencelock.vault import Vault

    monkeypatch.setattr(ingest_mod, "_sign_media_digest", lambda body, media: None)  # the old code
    clock = Clock()
    root, card = tmp_path / "vault", tmp_path / "card"
    card.mkdir()
    make_jpeg(card / "photo.jpg", 7, exif=_exif())
    Vault.init(root, custodian="Team A", passphrase=PASSPHRASE, now=clock()).close()
    with Vault.open(root, writable=True) as vault:
        rep = ingest_mod.ingest(vault, [card], key=vault.unlock(PASSPHRASE), case="C1", now=clock, jobs=1)
        assert rep.ok
    sha, media = _photo(root)
    assert "media_sha256" not in fetch(root, "SELECT canonical FROM entries WHERE item = ?", (sha,))[0][0].decode()
    r = run_cli("verify", "--json", vault=root)
    assert r.code == 0
    assert any(f["code"] == "index-media-unsigned" and f["severity"] == "notice" for f in r.json()["findings"])
    assert "36.2" in json.dumps(json.loads(media)["summary"]), "GPS must be in the signed summary"
    sql(root, "UPDATE items SET media_json = ? WHERE sha256 = ?", (media.replace("36.2", "48.8"), sha))
    refused_everywhere(root, tmp_path, f"item {sha[:16]}", "column media_json, key 'summary'")


# -- item 11: the tree table restored after a rewrite by the key holder --------------------


def _rewrite_from(vault: Path, seq: int, key: CustodianKey, mutate) -> None:
    """The key holder rewrites history: edit entry ``seq``, re-sign it and every later entry
    (prev links fixed), update every column so the entries look self-consistent."""
    con = sqlite3.connect(db(vault))
    try:
        rows = con.execute("SELECT seq, canonical FROM entries ORDER BY seq").fetchall()
        prev = None
        for s, canonical in rows:
            obj = json.loads(bytes(canonical))
            if s < seq:
                prev = SignedEntry.from_bytes(bytes(canonical), b"").entry_hash
                continue
            if s == seq:
                mutate(obj)
            obj["prev"] = prev
            obj["actor"] = key.key_id
            signed = SignedEntry.create(Entry(**obj), key.sign)
            e = signed.entry
            con.execute("UPDATE entries SET canonical=?, signature=?, entry_hash=?, leaf_hash=?, type=?, case_id=?, "
                        "actor=?, time=?, item=? WHERE seq=?",
                        (signed.canonical, signed.signature, signed.entry_hash, signed.leaf_hash.hex(), e.type, e.case,
                         e.actor, e.time, e.item, s))
            prev = signed.entry_hash
        con.commit()
    finally:
        con.close()


@pytest.fixture
def rewritten(template: Tpl, v: Path, tmp_path: Path) -> tuple[Path, Path, list[tuple]]:
    """An honest checkpoint published; then a rewrite by the key holder (a single-custodian
    vault: only Team A's key signs) with the old tree_nodes rows put back."""
    # A single-custodian copy: drop everything after the C2 ingest, as if it never happened.
    cut = template.seq("key-enroll", None, 1)
    for table, col in (("entries", "seq"), ("sources", "seq")):
        sql(v, f"DELETE FROM {table} WHERE {col} >= ?", (cut,))
    sql(v, "DELETE FROM keys WHERE enrolled_seq >= ?", (cut,))
    rebuild_tree(v)
    _ok(run_cli("verify", vault=v))
    old_cp = tmp_path / "old-cp.txt"
    _ok(run_cli("checkpoint", "-o", old_cp, vault=v))
    old_tree = fetch(v, "SELECT level, idx, hash FROM tree_nodes")
    old_hashes = fetch(v, "SELECT entry_hash, leaf_hash, seq FROM entries")
    kid = fetch(v, "SELECT key_id FROM keys WHERE name = 'Team A'")[0][0]
    key = CustodianKey.load(v / "keys" / f"{kid}.key.pem", PASSPHRASE, "Team A")

    def rename(obj: dict) -> None:
        obj["body"]["source"]["path"] = "confession.mp4"

    _rewrite_from(v, template.seq("ingest", "C1"), key, rename)
    sql(v, "DELETE FROM tree_nodes")
    con = sqlite3.connect(db(v))
    con.executemany("INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)", old_tree)
    # ... and the old hash columns too, so nothing stored but the canonical bytes betrays the rewrite.
    con.executemany("UPDATE entries SET entry_hash = ?, leaf_hash = ? WHERE seq = ?", old_hashes)
    con.commit()
    con.close()
    return v, old_cp, old_tree


def test_rewrite_with_old_tree_table_fails_consistency(rewritten, tmp_path: Path) -> None:
    v, old_cp, _ = rewritten
    kid = fetch(v, "SELECT key_id FROM keys WHERE name = 'Team A'")[0][0]
    pub = v / "keys" / f"{kid}.pub.pem"
    for extra in ((), ("--vault-key", pub)):
        r = run_cli("consistency", old_cp, "--proof-out", tmp_path / "proof.json", *extra, vault=v)
        assert r.code == 1, f"consistency exit {r.code}\n{r.stdout}\n{r.stderr}"
        assert "CONSISTENT" not in r.stdout
        assert "tree_nodes" in r.stderr and "does not match the entries" in r.stderr, r.stderr
        assert not (tmp_path / "proof.json").exists()  # nothing for a witness to cosign


def test_rewrite_with_old_tree_table_cannot_be_checkpointed(rewritten, tmp_path: Path) -> None:
    v, _, _ = rewritten
    before = fetch(v, "SELECT COUNT(*) FROM checkpoints")[0][0]
    r = run_cli("checkpoint", "-o", tmp_path / "new-cp.txt", vault=v)
    assert r.code == 1, f"checkpoint exit {r.code}\n{r.stdout}\n{r.stderr}"
    assert "tree_nodes" in r.stderr
    assert not (tmp_path / "new-cp.txt").exists()
    assert fetch(v, "SELECT COUNT(*) FROM checkpoints")[0][0] == before


def test_rewrite_with_old_tree_table_cannot_be_proven_or_exported(rewritten, tmp_path: Path) -> None:
    v, old_cp, _ = rewritten
    sha = fetch(v, "SELECT sha256 FROM items ORDER BY first_seq LIMIT 1")[0][0]
    r = run_cli("prove", sha[:12], "--checkpoint", old_cp, vault=v)
    assert r.code == 1 and "tree_nodes" in r.stderr, r.stdout + r.stderr
    r = run_cli("export", "--case", "C1", "-o", tmp_path / "b", vault=v)
    assert r.code == 1 and "tree_nodes" in r.stderr, r.stderr
    r = run_cli("verify", vault=v)
    assert r.code == 1 and "checkpoint-inconsistent" in r.stdout and "tree-node-mismatch" in r.stdout


def test_rewrite_with_rebuilt_tree_is_inconsistent(rewritten, tmp_path: Path) -> None:
    """The same rewrite with an honest tree table: consistency says the log does not extend the
    old checkpoint; the checkpoint it signs now cannot be proven to a witness that saw the old."""
    v, old_cp, _ = rewritten
    rebuild_tree(v)
    r = run_cli("consistency", old_cp, vault=v)
    assert r.code == 1 and "CONSISTENT" not in r.stdout, r.stdout + r.stderr


def test_untampered_single_custodian_copy_is_consistent(template: Tpl, v: Path, tmp_path: Path) -> None:
    """Control for the rewrite tests: the same steps without the rewrite pass."""
    old_cp = tmp_path / "old.txt"
    _ok(run_cli("checkpoint", "-o", old_cp, vault=v))
    _ok(run_cli("ingest", template.vault.parent / "other", "--new-case", "--case", "C3", "--no-media", vault=v))
    _ok(run_cli("checkpoint", vault=v))
    r = run_cli("consistency", old_cp, "--proof-out", tmp_path / "p.json", vault=v)
    _ok(r)
    assert "CONSISTENT" in r.stdout
    sha = fetch(v, "SELECT sha256 FROM items ORDER BY first_seq LIMIT 1")[0][0]
    _ok(run_cli("prove", sha[:12], vault=v))


# -- item 14: audit while an ingest is running --------------------------------------------


def test_audit_during_ingest_records_a_pass(template: Tpl, v: Path, tmp_path: Path) -> None:
    src = tmp_path / "card"
    for d in range(12):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(80):
            (src / f"d{d}" / f"f{i}.bin").write_bytes(os.urandom(64) + f"{d}/{i}".encode() * 200)
    env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": PASSPHRASE}
    log_out = (tmp_path / "ingest.out").open("w")
    log_err = (tmp_path / "ingest.err").open("w")
    ing = subprocess.Popen([sys.executable, "-m", "evidencelock", "--vault", str(v), "ingest", str(src), "--new-case", "--case", "C9",
                            "--no-media", "--json"], env=env, stdout=log_out, stderr=log_err, text=True)
    audits = []
    overlapped = 0
    try:
        while len(audits) < 40:
            running = ing.poll() is None
            r = run_cli("audit", "--json", vault=v)
            audits.append(r)
            overlapped += running and ing.poll() is None  # the audit started AND ended during the ingest
            if ing.poll() is not None and len(audits) >= 2:
                break
            time.sleep(0.05)
    finally:
        ing.wait(timeout=600)
        log_out.close()
        log_err.close()
    assert ing.returncode == 0, (tmp_path / "ingest.err").read_text()
    assert overlapped >= 1, "no audit ran while the ingest was running; make the ingest bigger"
    for r in audits:
        assert r.code == 0, f"audit during ingest failed:\n{r.stdout}\n{r.stderr}"
        assert r.json()["ok"] is True
    recorded = run_cli("log", "--type", "audit", "--json", vault=v).json()
    assert len(recorded) == len(audits)
    assert all(e["body"]["result"] == "pass" and e["body"]["finding_count"] == 0 for e in recorded)
    _ok(run_cli("verify", vault=v))
    # With real tampering the audit still fails and records the failure.
    sha = fetch(v, "SELECT sha256 FROM items ORDER BY first_seq DESC LIMIT 1")[0][0]
    obj = v / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    os.chmod(obj, 0o644)
    obj.write_bytes(b"tampered")
    r = run_cli("audit", "--json", vault=v)
    assert r.code == 1 and any(f["code"] == "object-digest-mismatch" for f in r.json()["findings"])
    last = run_cli("log", "--type", "audit", "--json", vault=v).json()[-1]
    assert last["body"]["result"] == "fail"


def test_planted_sources_row_does_not_make_ingest_skip_a_file(template: Tpl, v: Path, tmp_path: Path) -> None:
    """A planted ``sources`` row claiming a new file is already recorded for the case (pointing at
    a genuine entry of another item) must not make the next ingest skip the file."""
    import hashlib

    card = tmp_path / "new-card"
    card.mkdir()
    data = b"the file the attacker wants left unpreserved\n"
    (card / "victim.txt").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    # The source key the ingest will compute, read back from an ingest into a scratch copy.
    scratch = tmp_path / "scratch"
    shutil.copytree(v, scratch)
    _ok(run_cli("ingest", card, "--case", "C1", "--no-media", vault=scratch))
    key = fetch(scratch, "SELECT source_key FROM sources WHERE sha256 = ?", (sha,))[0][0]
    some_seq = template.seq("ingest", "C1")
    sql(v, "INSERT INTO sources (sha256, case_id, source_key, seq) VALUES (?, 'C1', ?, ?)", (sha, key, some_seq))
    before = fetch(v, "SELECT COUNT(*) FROM entries")[0][0]
    r = run_cli("ingest", card, "--case", "C1", "--no-media", vault=v)
    assert r.code == 1, r.stdout + r.stderr
    assert "already-recorded" not in r.stdout, r.stdout  # never silently skipped as "already recorded"
    assert f"sources seq={some_seq}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert fetch(v, "SELECT COUNT(*) FROM entries")[0][0] == before
    # Control: in the untampered scratch copy a re-ingest is (correctly) already recorded.
    r = run_cli("ingest", card, "--case", "C1", "--no-media", "--json", vault=scratch)
    assert r.code == 0 and "already-recorded" in r.stdout, r.stdout


def test_planted_items_row_does_not_forge_a_duplicate_of(template: Tpl, v: Path, tmp_path: Path) -> None:
    """A planted ``items`` row for bytes never preserved must not make the next ingest sign a
    ``duplicate_of`` pointing at another item's entry (nor skip storing the object)."""
    import hashlib

    card = tmp_path / "new-card"
    card.mkdir()
    data = b"fresh bytes\n"
    (card / "fresh.txt").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    sql(v, "INSERT INTO items (sha256, second_digest, second_algorithm, size, first_seq) VALUES (?, '', 'blake3', ?, ?)",
        (sha, len(data), template.seq("ingest", "C1")))
    before = fetch(v, "SELECT COUNT(*) FROM entries")[0][0]
    r = run_cli("ingest", card, "--case", "C1", "--no-media", vault=v)
    assert r.code == 1, r.stdout + r.stderr
    assert f"item {sha[:16]}" in r.stderr and "first_seq" in r.stderr, r.stderr
    assert fetch(v, "SELECT COUNT(*) FROM entries")[0][0] == before  # no entry signs a forged duplicate_of
    r = run_cli("verify", vault=v)
    assert r.code == 1 and f"item {sha[:16]}" in r.stdout and "index-extra-item" in r.stdout, r.stdout
    # Control: without the planted row the same ingest preserves the file as new.
    sql(v, "DELETE FROM items WHERE sha256 = ?", (sha,))
    _ok(run_cli("ingest", card, "--case", "C1", "--no-media", vault=v))
    canonical = fetch(v, "SELECT canonical FROM entries WHERE item = ? AND type = 'ingest'", (sha,))[0][0]
    assert "duplicate_of" not in json.loads(canonical)["body"]


def test_planted_copy_does_not_hide_a_derived_row_edit(template: Tpl, v: Path, tmp_path: Path) -> None:
    """A copy of entry N planted at a negative seq must not make verify skip the derived rows of
    the genuine entry N: both the planted row and the edited sources row are named."""
    seq = template.seq("ingest", "C1")
    sql(v, "INSERT INTO entries (seq, canonical, signature, entry_hash, leaf_hash, type, case_id, actor, time, item) "
           "SELECT -5, canonical, signature, entry_hash, leaf_hash, type, case_id, actor, time, item FROM entries "
           "WHERE seq = ?", (seq,))
    sql(v, "UPDATE sources SET case_id = 'C2' WHERE seq = ?", (seq,))
    r = run_cli("verify", vault=v)
    assert r.code == 1
    assert "entry -5" in r.stdout and f"(seq={seq})" in r.stdout and "index-source-mismatch" in r.stdout, r.stdout
