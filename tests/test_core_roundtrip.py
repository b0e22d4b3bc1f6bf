"""Round trip of the core contract: init -> ingest -> log/show -> verify/audit -> re-ingest.

Real bytes in a generated folder (nested folders, exact duplicates at other paths, an empty
file), a real SQLite ledger, the real CLI in a subprocess, and the real ``sha256sum``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import PASSPHRASE, run_cli

from evidencelock.audit import verify_vault
from evidencelock.entry import SignedEntry
from evidencelock.ingest import ingest
from evidencelock.vault import Vault

EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def make_tree(root: Path) -> dict[str, bytes]:
    """A folder with nested dirs, exact duplicates at other paths and an empty file."""
    files: dict[str, bytes] = {}
    for i in range(5):
        files[f"photos/day{i % 2}/img_{i:03d}.jpg"] = hashlib.sha512(f"photo {i}".encode()).digest() * (40 + i)
    files["videos/clip.mp4"] = os.urandom(300_000)
    files["videos/deep/er/still/clip-copy.mp4"] = files["videos/clip.mp4"]  # exact duplicate
    files["dup_of_photo.jpg"] = files["photos/day0/img_000.jpg"]  # another duplicate
    files["notes/empty.txt"] = b""
    files["notes/readme.txt"] = "witness statement: ü, 日本\n".encode()
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def ledger_entries(vault_path: Path) -> list[dict]:
    r = run_cli("log", "--json", vault=vault_path)
    assert r.code == 0, r.stderr
    return r.json()


def check_object_layout(vault_path: Path, files: dict[str, bytes]) -> None:
    digests = {hashlib.sha256(d).hexdigest() for d in files.values()}
    objects = sorted(p for p in (vault_path / "objects" / "sha256").rglob("*") if p.is_file())
    assert {p.name for p in objects} == digests
    for p in objects:
        hexname = p.name
        assert p.relative_to(vault_path).parts == ("objects", "sha256", hexname[:2], hexname[2:4], hexname)
        mode = p.stat().st_mode
        assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), f"{p} is writable: {oct(mode)}"
    # An object's name is checkable by hand with coreutils: sha256sum prints "<hex>  <path>".
    sha256sum = shutil.which("sha256sum")
    assert sha256sum, "coreutils sha256sum is needed"
    out = subprocess.run([sha256sum, *map(str, objects)], capture_output=True, text=True, check=True).stdout
    for line, p in zip(out.splitlines(), objects):
        assert line.split()[0] == p.name
    check = subprocess.run([sha256sum, "--check", "--strict", "-"], input=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_library_roundtrip(tmp_path: Path, vault: Vault, key, clock) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    report = ingest(vault, [src], key=key, case="case-1", note="from phone A", now=clock, extract_media=False)
    assert report.ok and report.count("rejected") == 0 and report.count("skipped") == 0
    assert len(report.outcomes) == len(files)
    assert report.count("preserved") == len(set(files.values()))
    assert report.count("duplicate") == len(files) - len(set(files.values()))
    empty = [o for o in report.outcomes if o.path.endswith("notes/empty.txt")]
    assert empty[0].sha256 == EMPTY_SHA and empty[0].status == "preserved" and "empty-file" in empty[0].flags

    result = verify_vault(vault, all_digests=True)
    assert result.ok, result.findings
    assert result.findings == []
    assert result.entries == 1 + len(files)
    assert result.objects_checked == len(set(files.values()))
    assert result.bytes_checked == sum(len(d) for d in set(files.values()))

    # Every entry parses, is chained, and names its source exactly once.
    rows = list(vault.ledger.rows())
    entries = [SignedEntry.from_bytes(r.canonical, r.signature).entry for r in rows]
    assert [e.seq for e in entries] == list(range(len(entries)))
    paths = sorted(e.body["source"]["path"] for e in entries if e.type == "ingest")
    assert paths == sorted(files)
    assert all(e.body.get("note") == "from phone A" for e in entries if e.type == "ingest")

    again = ingest(vault, [src], key=key, case="case-1", now=clock, extract_media=False)
    assert {o.status for o in again.outcomes} == {"already-recorded"}
    assert vault.ledger.tail().size == len(rows)
    check_object_layout(vault.root, files)


def test_cli_roundtrip(tmp_path: Path) -> None:
    vp = tmp_path / "vault"
    src = tmp_path / "evidence"
    files = make_tree(src)
    unique = {hashlib.sha256(d).hexdigest(): d for d in files.values()}

    r = run_cli("init", "--custodian", "Field Team B", "--json", vault=vp)
    assert r.code == 0, r.stderr
    init = r.json()
    assert init["ok"] is True and len(init["key_id"]) == 64
    assert (vp / "keys" / f"{init['key_id']}.key.pem").is_file()
    assert PASSPHRASE.encode() not in (vp / "keys" / f"{init['key_id']}.key.pem").read_bytes()

    r = run_cli("ingest", src, "--case", "case-7", "--note", "USB stick #3", "--json", vault=vp)
    assert r.code == 0, r.stderr
    rep = r.json()
    assert rep["ok"] is True
    assert rep["files"] == len(files)
    assert rep["preserved"] == len(unique)
    assert rep["duplicates"] == len(files) - len(unique)
    assert rep["rejected"] == 0 and rep["skipped"] == 0
    assert rep["bytes"] == sum(len(d) for d in files.values())
    by_path = {o["path"]: o for o in rep["outcomes"]}
    empty = by_path[str(src / "notes/empty.txt")]
    assert empty["status"] == "preserved" and empty["size"] == 0 and "empty-file" in empty["flags"]

    # log --json: the key-enroll genesis entry, then one ingest entry per file, chained.
    log = ledger_entries(vp)
    assert [e["seq"] for e in log] == list(range(1 + len(files)))
    assert log[0]["type"] == "key-enroll" and log[0]["body"]["key_id"] == init["key_id"]
    assert log[0]["prev"] == "0" * 64
    ingests = [e for e in log if e["type"] == "ingest"]
    assert len(ingests) == len(files)
    assert all(e["case"] == "case-7" and e["actor"] == init["key_id"] for e in ingests)
    assert all(e["body"]["note"] == "USB stick #3" for e in ingests)
    assert sorted(e["body"]["source"]["path"] for e in ingests) == sorted(files)
    empty_entry = next(e for e in ingests if e["body"]["source"]["path"] == "notes/empty.txt")
    assert empty_entry["body"]["size"] == 0 and "empty-file" in empty_entry["body"]["flags"]

    # show PREFIX --json: digests, custody with one entry per source, duplicate_of the first.
    clip = hashlib.sha256(files["videos/clip.mp4"]).hexdigest()
    r = run_cli("show", clip[:10], "--json", vault=vp)
    assert r.code == 0, r.stderr
    item = r.json()
    assert item["item"] == clip
    assert item["digests"]["sha256"] == clip
    assert len(item["digests"]["blake3"]) == 64
    assert item["size"] == len(files["videos/clip.mp4"])
    assert item["object"] == f"objects/sha256/{clip[:2]}/{clip[2:4]}/{clip}"
    assert item["object_present"] is True
    custody = item["custody"]
    assert sorted(c["body"]["source"]["path"] for c in custody) == ["videos/clip.mp4", "videos/deep/er/still/clip-copy.mp4"]
    first, second = custody
    assert "duplicate_of" not in first["body"]
    assert second["body"]["duplicate_of"] == first["seq"]
    assert all(c["custodian"] == "Field Team B" for c in custody)
    assert run_cli("show", "sha256:" + clip[:8], vault=vp).code == 0
    assert run_cli("show", "zz", vault=vp).code == 2

    r = run_cli("verify", "--json", vault=vp)
    assert r.code == 0, r.stdout + r.stderr
    v = r.json()
    assert v["ok"] is True and v["findings"] == []
    assert v["objects_checked"] == len(unique) and v["entries"] == 1 + len(files)
    assert v["digests"] == ["sha256"]

    r = run_cli("verify", "--all-digests", "--json", vault=vp)
    assert r.code == 0, r.stdout + r.stderr
    assert r.json()["digests"] == ["sha256", "blake3"] and r.json()["ok"] is True
    r = run_cli("verify", vault=vp)  # human output
    assert r.code == 0 and "OK" in r.stdout

    r = run_cli("audit", "--json", vault=vp)
    assert r.code == 0, r.stdout + r.stderr
    a = r.json()
    assert a["ok"] is True and a["audit_entry"] == 1 + len(files)
    log = ledger_entries(vp)
    last = log[-1]
    assert last["seq"] == a["audit_entry"] and last["type"] == "audit" and last["actor"] == init["key_id"]
    assert last["body"]["result"] == "pass" and last["body"]["finding_count"] == 0
    assert last["body"]["objects_checked"] == len(unique)
    assert last["body"]["checked_entries"] == 1 + len(files)
    # The audit entry itself is signed and chained: verify still passes over it.
    assert run_cli("verify", vault=vp).code == 0

    # Re-ingest the same folder: everything already recorded, no new entries.
    before = len(log)
    r = run_cli("ingest", src, "--case", "case-7", "--json", vault=vp)
    assert r.code == 0, r.stderr
    again = r.json()
    assert again["already_recorded"] == len(files)
    assert again["preserved"] == again["duplicates"] == 0
    assert {o["status"] for o in again["outcomes"]} == {"already-recorded"}
    assert len(ledger_entries(vp)) == before

    check_object_layout(vp, files)
    assert not list((vp / "staging").glob("*/*")), "a finished ingest leaves nothing in staging"


def test_same_bytes_other_case_is_new_custody(tmp_path: Path) -> None:
    """Another case ingesting the same files gets custody entries of its own, no new objects."""
    vp = tmp_path / "vault"
    src = tmp_path / "src"
    files = make_tree(src)
    assert run_cli("init", "--custodian", "A", vault=vp).code == 0
    assert run_cli("ingest", src, "--case", "one", "--no-media", vault=vp).code == 0
    r = run_cli("ingest", src, "--new-case", "--case", "two", "--no-media", "--json", vault=vp)
    assert r.code == 0, r.stderr
    assert r.json()["duplicates"] == len(files)
    assert len(ledger_entries(vp)) == 1 + 2 * len(files)
    assert run_cli("verify", vault=vp).code == 0
    check_object_layout(vp, files)


@pytest.mark.parametrize("single", ["file", "two-roots"])
def test_ingest_single_files_and_several_roots(tmp_path: Path, single: str) -> None:
    vp = tmp_path / "vault"
    a = tmp_path / "a.bin"
    a.write_bytes(b"A" * 1000)
    d = tmp_path / "dir"
    d.mkdir()
    (d / "b.bin").write_bytes(b"B" * 1000)
    assert run_cli("init", "--custodian", "A", vault=vp).code == 0
    args = [a] if single == "file" else [a, d]
    r = run_cli("ingest", *args, "--case", "c", "--no-media", "--json", vault=vp)
    assert r.code == 0, r.stderr
    assert r.json()["preserved"] == len(args)
    log = ledger_entries(vp)
    assert sorted(e["body"]["source"]["path"] for e in log[1:]) == ["a.bin", "b.bin"][: len(args)]
    assert run_cli("verify", vault=vp).code == 0
