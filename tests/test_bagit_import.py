"""Importing plain BagIt bags made by other tools (docs/bundle-format.md "Importing plain BagIt bags").

Bags are made by the real bagit-python (``bagit.make_bag``; BagIt 0.97 by default), then
re-encoded or tampered with on disk as a sender or an attacker would.  Every refusal is
checked to name the problem and to leave the vault exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import bagit
import pytest

from evidencelock import bagimport
from evidencelock.bagimport import PlainBagRefused, import_plain_bag, validate_plain_bag
from evidencelock.errors import InputError, exit_code_for
from evidencelock.receive import ReceiveRefused
from evidencelock.vault import Vault

from conftest import PASSPHRASE, ROOT, run_cli

FILES = {
    "DCIM/IMG_0001.jpg": bytes(range(256)) * 64,
    "DCIM/IMG_0002.jpg": b"\xff\xd8\xff" + os.urandom(5000),
    "témoignage é.txt": "témoin: «vu à 05:12»\n".encode(),
    "copy of 0001.jpg": bytes(range(256)) * 64,  # an exact duplicate inside the bag
    "empty.txt": b"",
}
INFO = {"Source-Organization": "Médecins de Garde, équipe 2", "External-Identifier": "MDG-2026-017",
        "Contact-Name": "Nour"}


def make_bag(root: Path, name: str = "bag", *, checksums: tuple[str, ...] = ("sha256", "sha512"),
             files: dict[str, bytes] | None = None, info: dict[str, str] | None = None) -> Path:
    """A real bag written by bagit-python from ``files``."""
    bag = root / name
    for rel, data in (files or FILES).items():
        (bag / rel).parent.mkdir(parents=True, exist_ok=True)
        (bag / rel).write_bytes(data)
    bagit.make_bag(str(bag), dict(info or INFO), checksums=list(checksums), processes=1)
    return bag


def tag_files(bag: Path) -> list[str]:
    return sorted(str(p.relative_to(bag)) for p in bag.rglob("*") if p.is_file() and not p.is_symlink()
                  and not str(p.relative_to(bag)).startswith("data/") and not p.name.startswith("tagmanifest-"))


def regen_tagmanifests(bag: Path, encoding: str = "utf-8") -> None:
    """What a sender (or an attacker) does after editing tag files: recompute the tag manifests."""
    for tm in bag.glob("tagmanifest-*.txt"):
        alg = tm.name[len("tagmanifest-"):-4]
        tm.write_bytes("".join(f"{hashlib.new(alg, (bag / f).read_bytes()).hexdigest()}  {f}\n"
                               for f in tag_files(bag)).encode(encoding))


def reencode(bag: Path, encoding: str, declared: str) -> None:
    """Rewrite every tag file in ``encoding`` and declare it in bagit.txt (bagit-python's own
    ``encoding=`` keeps declaring UTF-8, so it cannot make such a bag)."""
    for f in tag_files(bag) + [p.name for p in bag.glob("tagmanifest-*.txt")]:
        if f != "bagit.txt":
            (bag / f).write_bytes((bag / f).read_text("utf-8").encode(encoding))
    version = (bag / "bagit.txt").read_text().splitlines()[0]
    (bag / "bagit.txt").write_text(f"{version}\nTag-File-Character-Encoding: {declared}\n")
    regen_tagmanifests(bag, encoding)


def vault_state(vp: Path) -> tuple[list[tuple[int, bytes]], list[tuple[str, int]]]:
    """Everything an import could write: the ledger rows and every file under objects/ and staging/."""
    with sqlite3.connect(vp / "ledger.sqlite") as con:
        rows = con.execute("SELECT seq, canonical FROM entries ORDER BY seq").fetchall()
    files = sorted((str(p.relative_to(vp)), p.stat().st_size) for d in ("objects", "staging")
                   for p in (vp / d).rglob("*") if p.is_file())
    return [(s, bytes(c)) for s, c in rows], files


def ingest_bodies(vp: Path) -> list[dict]:
    with sqlite3.connect(vp / "ledger.sqlite") as con:
        rows = con.execute("SELECT canonical FROM entries ORDER BY seq").fetchall()
    return [e["body"] for e in (json.loads(r[0]) for r in rows) if e["type"] == "ingest"]


def verify_ok(vp: Path) -> dict:
    r = run_cli("verify", "--json", vault=vp)
    assert r.code == 0, r.stdout + r.stderr
    return r.json()


def object_bytes(vp: Path, sha: str) -> bytes:
    return (vp / "objects" / "sha256" / sha[:2] / sha[2:4] / sha).read_bytes()


def do_import(vault, key, bag, clock, **kw):
    return import_plain_bag(vault, key, bag, case="case-1", note="received from MDG", now=clock,
                            extract_media=kw.pop("extract_media", False), **kw)


def assert_refused(vault, key, bag, clock, *, check: str, subject: str | None = None, text: str = "") -> PlainBagRefused:
    before = vault_state(vault.root)
    with pytest.raises(PlainBagRefused) as exc:
        do_import(vault, key, bag, clock)
    err = exc.value
    assert exit_code_for(err) == 1
    hits = [p for p in err.problems if p.check == check and (subject is None or p.subject == subject)
            and text in p.message]
    assert hits, f"expected a {check} problem about {subject} ({text!r}); got {[str(p) for p in err.problems]}"
    assert vault_state(vault.root) == before, "a refused bag changed the vault"
    return err


# -- bags that import --------------------------------------------------------------------------
def test_default_bagit_python_bag_imports_verifies_and_objects_equal_originals(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    bagit.Bag(str(bag)).validate()  # the tool that made it agrees it is valid
    assert (bag / "bagit.txt").read_text().startswith("BagIt-Version: 0.97")
    rep = do_import(vault, key, bag, clock)
    assert rep.ok and rep.receive.count("preserved") == 4 and rep.receive.count("duplicate") == 1
    assert "Source-Organization: Médecins de Garde, équipe 2" in rep.notes
    assert "External-Identifier: MDG-2026-017" in rep.notes
    for rel, data in FILES.items():
        assert object_bytes(vault.root, hashlib.sha256(data).hexdigest()) == data
    bodies = {b["source"]["path"]: b for b in ingest_bodies(vault.root)}
    assert set(bodies) == set(FILES)
    b = bodies["témoignage é.txt"]
    data = FILES["témoignage é.txt"]
    assert b["source"]["root"] == "bag" and "mtime" not in b["source"]
    rb = b["received"]["bagit"]
    assert rb["version"] == "0.97" and rb["encoding"] == "UTF-8"
    assert rb["manifest_algorithms"] == ["sha256", "sha512"]
    assert rb["digests"] == {"sha256": hashlib.sha256(data).hexdigest(), "sha512": hashlib.sha512(data).hexdigest()}
    assert rb["bag_info"]["Source-Organization"] == ["Médecins de Garde, équipe 2"]
    assert rb["oxum"] == f"{sum(map(len, FILES.values()))}.{len(FILES)}"
    assert bodies["copy of 0001.jpg"].get("duplicate_of") is not None or bodies["DCIM/IMG_0001.jpg"].get("duplicate_of")
    assert bodies["empty.txt"]["flags"] == ["empty-file"]
    vault.close()
    verify_ok(vault.root)


def test_md5_only_bag_imports_with_its_md5_checked(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path, checksums=("md5",))
    rep = do_import(vault, key, bag, clock)
    assert rep.ok and rep.bag.manifest_algorithms == ["md5"]
    body = next(b for b in ingest_bodies(vault.root) if b["source"]["path"] == "DCIM/IMG_0002.jpg")
    data = FILES["DCIM/IMG_0002.jpg"]
    assert body["item"] == hashlib.sha256(data).hexdigest()
    assert body["received"]["bagit"]["digests"] == {"md5": hashlib.md5(data).hexdigest()}
    vault.close()
    verify_ok(vault.root)


def test_bagit_1_0_bag_imports(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    regen_tagmanifests(bag)
    rep = do_import(vault, key, bag, clock)
    assert rep.bag.version == "1.0" and rep.receive.count("preserved") == 4


def test_bagit_1_0_bag_with_a_file_missing_from_one_manifest_is_refused(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    (bag / "bagit.txt").write_text("BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    m = bag / "manifest-sha512.txt"
    m.write_text("".join(ln for ln in m.read_text().splitlines(True) if "IMG_0002" not in ln))
    regen_tagmanifests(bag)
    assert_refused(vault, key, bag, clock, check="bagit-completeness", subject="data/DCIM/IMG_0002.jpg",
                   text="manifest-sha512.txt")


@pytest.mark.parametrize("encoding,declared", [("utf-16", "UTF-16"), ("iso-8859-1", "ISO-8859-1")])
def test_tag_files_in_other_encodings_with_non_ascii_names(vault, key, clock, tmp_path, encoding, declared):
    bag = make_bag(tmp_path)
    reencode(bag, encoding, declared)
    raw = (bag / "manifest-sha256.txt").read_bytes()
    needle = "témoignage é.txt".encode("utf-16-le" if encoding == "utf-16" else encoding)
    assert needle in raw and "témoignage".encode() not in raw  # really re-encoded
    rep = do_import(vault, key, bag, clock)
    assert rep.bag.encoding == declared and rep.receive.count("preserved") == 4
    assert rep.bag.source_organization == ["Médecins de Garde, équipe 2"]
    paths = {b["source"]["path"] for b in ingest_bodies(vault.root)}
    assert "témoignage é.txt" in paths
    vault.close()
    verify_ok(vault.root)


def test_utf16_declared_but_tag_files_in_utf8_is_refused(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    (bag / "bagit.txt").write_text("BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-16\n")
    regen_tagmanifests(bag)
    assert_refused(vault, key, bag, clock, check="bagit-encoding", text="byte-order mark")


def test_manifest_lines_in_every_form_rfc_8493_allows(vault, key, clock, tmp_path):
    """'./data/…' paths, CRLF and CR line ends, uppercase hex, tabs and several spaces,
    percent-encoded '%' in a file name: all read as RFC 8493 §2.1.3 allows."""
    files = dict(FILES)
    files["100% real.txt"] = b"percent\n"
    bag = make_bag(tmp_path, files=files)
    for i, m in enumerate(sorted(bag.glob("manifest-*.txt"))):
        lines = []
        for n, ln in enumerate(m.read_text().splitlines()):
            digest, path = ln.split("  ", 1)
            path = "./" + path.replace("%", "%25")
            sep = ["\t", "   ", " "][n % 3]
            lines.append((digest.upper() if n % 2 else digest) + sep + path)
        m.write_bytes(("\r\n" if i == 0 else "\r").join(lines).encode() + b"\r\n")
    regen_tagmanifests(bag)
    assert b"./data/" in (bag / "manifest-sha256.txt").read_bytes()
    rep = do_import(vault, key, bag, clock)
    assert rep.receive.count("preserved") == 5
    got = {b["source"]["path"]: b for b in ingest_bodies(vault.root)}
    assert got["100% real.txt"]["item"] == hashlib.sha256(b"percent\n").hexdigest()


def test_zipped_bag_imports(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    z = tmp_path / "bag.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(bag.rglob("*")):
            if p.is_file():
                zf.write(p, "bag/" + str(p.relative_to(bag)))
    rep = do_import(vault, key, z, clock)
    assert rep.receive.count("preserved") == 4
    assert {b["source"]["root"] for b in ingest_bodies(vault.root)} == {"bag.zip"}
    vault.close()
    verify_ok(vault.root)


# -- fetch.txt ---------------------------------------------------------------------------------
def test_fetch_txt_entry_is_reported_never_fetched_and_the_rest_imported(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    gone = bag / "data" / "DCIM" / "IMG_0002.jpg"
    size = gone.stat().st_size
    gone.unlink()  # a "holey" bag: the file is to be fetched from elsewhere
    # A URL that would fail loudly if anything tried to fetch it.
    (bag / "fetch.txt").write_text(f"http://127.0.0.1:9/never {size} data/DCIM/IMG_0002.jpg\n")
    regen_tagmanifests(bag)
    rep = do_import(vault, key, bag, clock)
    assert [f.path for f in rep.bag.not_fetched] == ["data/DCIM/IMG_0002.jpg"]
    assert any("IMG_0002.jpg: listed in fetch.txt" in n and "not fetched, not preserved" in n for n in rep.notes)
    assert rep.receive.count("preserved") == 3 and rep.receive.count("duplicate") == 1
    assert "DCIM/IMG_0002.jpg" not in {b["source"]["path"] for b in ingest_bodies(vault.root)}
    assert hashlib.sha256(FILES["DCIM/IMG_0002.jpg"]).hexdigest() not in vault_state(vault.root)[1].__repr__()
    vault.close()
    verify_ok(vault.root)


@pytest.mark.parametrize("line,why", [
    ("http://example.org/x 5 ../etc/passwd", "'..'"),
    ("http://example.org/x 5 data/../../etc/passwd", "'..'"),
    ("http://example.org/x 5 /etc/passwd", "absolute"),
    ("http://example.org/x 5 bagit.txt", "outside data/"),
    ("http://example.org/only-a-url", "not 'URL LENGTH FILENAME'"),
    ("http://example.org/x five data/a", "not 'URL LENGTH FILENAME'"),
])
def test_fetch_txt_unsafe_or_malformed_line_refuses_the_bag(vault, key, clock, tmp_path, line, why):
    bag = make_bag(tmp_path)
    (bag / "fetch.txt").write_text(line + "\n")
    regen_tagmanifests(bag)
    assert_refused(vault, key, bag, clock, check="bagit-fetch", subject="fetch.txt", text=why)


# -- refusals: every problem named, nothing written ---------------------------------------------
def test_flipped_payload_byte_refused_named_nothing_written(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    p = bag / "data" / "DCIM" / "IMG_0001.jpg"
    data = bytearray(p.read_bytes())
    data[100] ^= 0x01
    p.write_bytes(bytes(data))
    err = assert_refused(vault, key, bag, clock, check="bagit-payload-fixity", subject="data/DCIM/IMG_0001.jpg",
                         text="sha256 mismatch: expected=")
    # Every manifest's digest is checked and named, with both values.
    msgs = [p.message for p in err.problems if p.subject == "data/DCIM/IMG_0001.jpg"]
    assert any(m.startswith("sha512 mismatch") and hashlib.sha512(bytes(data)).hexdigest() in m for m in msgs)


def test_missing_payload_file_refused(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    (bag / "data" / "empty.txt").unlink()
    err = assert_refused(vault, key, bag, clock, check="bagit-completeness", subject="data/empty.txt",
                         text="missing from the bag")
    assert any(p.check == "bagit-payload-oxum" for p in err.problems)  # also named: 5 files stated, 4 found


def test_extra_unlisted_payload_file_refused(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    (bag / "data" / "planted.jpg").write_bytes(b"not from the sender")
    assert_refused(vault, key, bag, clock, check="bagit-completeness", subject="data/planted.jpg",
                   text="listed in no payload manifest")


def test_wrong_payload_oxum_refused(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    info = bag / "bag-info.txt"
    info.write_text(info.read_text().replace("Payload-Oxum: ", "Payload-Oxum: 1"))
    regen_tagmanifests(bag)  # consistent tag manifests: only the Oxum is wrong
    assert_refused(vault, key, bag, clock, check="bagit-payload-oxum", text="Payload-Oxum mismatch")


def test_edited_bag_info_caught_by_tag_manifest(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    info = bag / "bag-info.txt"
    info.write_text(info.read_text().replace("MDG-2026-017", "MDG-2026-018"))
    assert_refused(vault, key, bag, clock, check="bagit-tag-fixity", subject="bag-info.txt", text="sha256 mismatch")


@pytest.mark.parametrize("path", ["../../etc/passwd", "data/../../etc/passwd", "/etc/passwd"])
def test_manifest_path_escaping_the_bag_refused(vault, key, clock, tmp_path, path):
    bag = make_bag(tmp_path)
    m = bag / "manifest-sha256.txt"
    m.write_text(m.read_text() + f"{'0' * 64}  {path}\n")
    regen_tagmanifests(bag)
    assert_refused(vault, key, bag, clock, check="bagit-path-safety", subject="manifest-sha256.txt", text=path[:8])


def test_symlink_in_payload_refused(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    os.symlink("/etc/passwd", bag / "data" / "DCIM" / "passwd.jpg")
    assert_refused(vault, key, bag, clock, check="bagit-symlink", subject="data/DCIM/passwd.jpg")


def test_unknown_manifest_algorithm_is_named_and_refused(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    (bag / "manifest-sha3_256.txt").write_text("")
    regen_tagmanifests(bag)
    assert_refused(vault, key, bag, clock, check="bagit-manifest-algorithm", subject="manifest-sha3_256.txt",
                   text="unknown algorithm 'sha3_256'")


def test_zip_slip_member_refused(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    z = tmp_path / "bag.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in sorted(bag.rglob("*")):
            if p.is_file():
                zf.write(p, str(p.relative_to(bag)))
        zf.writestr("../../evil.sh", b"#!/bin/sh\n")
    assert_refused(vault, key, z, clock, check="bagit-zip-slip", subject="'../../evil.sh'")


def test_evidence_bundle_is_not_imported_as_a_plain_bag(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    (bag / "evidence").mkdir()
    (bag / "evidence" / "bundle.json").write_text("{}")
    with pytest.raises(InputError, match="evidence bundle"):
        validate_plain_bag(bag)


def test_validation_writes_nothing_and_refuses_every_problem_at_once(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    (bag / "data" / "planted.jpg").write_bytes(b"x")
    (bag / "data" / "empty.txt").unlink()
    with pytest.raises(PlainBagRefused) as exc:
        validate_plain_bag(bag)
    subjects = {p.subject for p in exc.value.problems}
    assert {"data/planted.jpg", "data/empty.txt", "bag-info.txt"} <= subjects


# -- the copy re-checks the bytes ---------------------------------------------------------------
def test_payload_changed_after_validation_refused_nothing_recorded(vault, key, clock, tmp_path, monkeypatch):
    bag = make_bag(tmp_path)
    real = bagimport._validate
    target = bag / "data" / "DCIM" / "IMG_0002.jpg"

    def validate_then_tamper(*a, **kw):
        result = real(*a, **kw)
        data = bytearray(target.read_bytes())
        data[10] ^= 0xFF  # same size, same inode: only the bytes differ
        with open(target, "r+b") as f:
            f.write(bytes(data))
        return result

    monkeypatch.setattr(bagimport, "_validate", validate_then_tamper)
    before = vault_state(vault.root)
    with pytest.raises(ReceiveRefused) as exc:
        do_import(vault, key, bag, clock)
    assert exit_code_for(exc.value) == 1
    prob = exc.value.problems
    assert {p.path for p in prob} == {"data/DCIM/IMG_0002.jpg"}
    assert {p.algorithm for p in prob} == {"sha256", "sha512"}  # every digest the bag states, each named
    assert prob[0].algorithm == "sha256" and prob[0].expected == hashlib.sha256(FILES["DCIM/IMG_0002.jpg"]).hexdigest()
    assert vault_state(vault.root) == before  # no entry, no object, nothing left in staging
    # Not the copy's check alone: without the tampering the same import passes.
    monkeypatch.setattr(bagimport, "_validate", real)
    target.write_bytes(FILES["DCIM/IMG_0002.jpg"])
    assert do_import(vault, key, bag, clock).ok


def test_rerun_is_idempotent(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    do_import(vault, key, bag, clock)
    state = vault_state(vault.root)
    rep = do_import(vault, key, bag, clock)
    assert rep.receive.count("already-recorded") == len(FILES)
    assert vault_state(vault.root) == state
    # The same bag under another name is the same bag (its identity is its tag files).
    shutil.copytree(bag, tmp_path / "renamed")
    assert do_import(vault, key, tmp_path / "renamed", clock).receive.count("already-recorded") == len(FILES)
    # A byte-identical bag is the same bag; another bag with the same files is another source:
    # recorded, as duplicates.
    other = make_bag(tmp_path, "other", info={**INFO, "External-Identifier": "MDG-2026-018"})
    rep = do_import(vault, key, other, clock)
    assert rep.receive.count("duplicate") == len(FILES)


_KILLED = """
import sys
from datetime import datetime, timezone
from evidencelock.vault import Vault
from evidencelock.bagimport import import_plain_bag
v = Vault.open(sys.argv[1], writable=True)
key = v.unlock(sys.argv[3])
rep = import_plain_bag(v, key, sys.argv[2], case="case-1", now=lambda: datetime.now(timezone.utc), extract_media=False)
print(rep.receive.count("preserved"), rep.receive.count("duplicate"), rep.receive.count("already-recorded"))
v.close()
"""


@pytest.mark.parametrize("point", ["receive-mid-stage", "after-stage", "after-ledger-commit"])
def test_killed_mid_import_then_rerun_completes_and_verifies(vault, key, clock, tmp_path, point):
    bag = make_bag(tmp_path)
    vp = vault.root
    vault.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EVIDENCELOCK_TEST_KILL_AT": point}
    p = subprocess.run([sys.executable, "-c", _KILLED, str(vp), str(bag), PASSPHRASE], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, (p.returncode, p.stdout, p.stderr)
    verify_ok(vp)  # no half-recorded state: leftovers are notices at most
    recorded = len(ingest_bodies(vp))
    assert recorded == (len(FILES) if point == "after-ledger-commit" else 0)
    env.pop("EVIDENCELOCK_TEST_KILL_AT")
    p = subprocess.run([sys.executable, "-c", _KILLED, str(vp), str(bag), PASSPHRASE], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    bodies = ingest_bodies(vp)
    assert len(bodies) == len(FILES) and len({b["source"]["key"] for b in bodies}) == len(FILES)
    rep = verify_ok(vp)
    assert rep["findings"] == []
    for data in FILES.values():
        assert object_bytes(vp, hashlib.sha256(data).hexdigest()) == data
    with Vault.open(vp) as v:
        assert not any(p.is_file() for p in (vp / "staging").rglob("*"))
        assert v.ledger.tail().size == 1 + len(FILES)


# -- hardening ---------------------------------------------------------------------------------
def test_received_media_is_extracted_and_signed_like_ingest(vault, key, clock, tmp_path):
    from mediagen import make_jpeg

    src = tmp_path / "media"
    src.mkdir()
    make_jpeg(src / "photo.jpg", 7, exif={"0th": {271: b"Canon", 272: b"Canon EOS 40D"}, "Exif": {}})
    photo = (src / "photo.jpg").read_bytes()
    bag = make_bag(tmp_path, files={"photo.jpg": photo, "again.jpg": photo})
    rep = do_import(vault, key, bag, clock, extract_media=True)
    assert rep.receive.count("preserved") == 1 and rep.receive.count("duplicate") == 1
    first = next(b for b in ingest_bodies(vault.root) if "duplicate_of" not in b)
    assert first["media"]["kind"] == "image" and len(first["media_sha256"]) == 64
    vault.close()
    assert verify_ok(vault.root)["findings"] == []  # the stored metadata matches the signed digest


def test_damaged_zip_member_refused_named(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    z = tmp_path / "bag.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(bag.rglob("*")):
            if p.is_file():
                zf.write(p, "bag/" + str(p.relative_to(bag)))
    raw = bytearray(z.read_bytes())
    at = raw.index(bytes(range(256)) * 4) + 77  # inside IMG_0001.jpg's stored bytes
    raw[at] ^= 0x01
    z.write_bytes(bytes(raw))
    err = assert_refused(vault, key, z, clock, check="bagit-zip-crc", subject="data/DCIM/IMG_0001.jpg", text="CRC")
    assert exit_code_for(err) == 1


def test_stage_stream_refuses_a_stream_longer_than_stated_without_copying_it(vault):
    import io

    from evidencelock.store import SourceChanged

    big = io.BytesIO(b"x" * (3 << 20))
    with pytest.raises(SourceChanged, match="over 10 bytes read"):
        vault.store.stage_stream(big, expected_size=10)
    assert big.tell() <= (1 << 20) + 10  # stopped after one buffer, not read to the end
    assert not [p for p in (vault.root / "staging").rglob("*") if p.is_file()]
    staged = vault.store.stage_stream(io.BytesIO(b"hello"), expected_size=5, extra=["md5", "sha512", "sha256"])
    assert staged.digests.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert staged.digests.extra == {"md5": hashlib.md5(b"hello").hexdigest(),
                                    "sha512": hashlib.sha512(b"hello").hexdigest(),
                                    "sha256": hashlib.sha256(b"hello").hexdigest()}
    assert staged.path.read_bytes() == b"hello"
    vault.store.discard(staged)


def test_refusal_names_every_problem_in_json(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path)
    (bag / "data" / "planted.jpg").write_bytes(b"x")
    with pytest.raises(PlainBagRefused) as exc:
        do_import(vault, key, bag, clock)
    out = exc.value.to_json()
    assert out["ok"] is False
    assert {"check": "bagit-completeness", "subject": "data/planted.jpg"}.items() <= \
        next(p for p in out["problems"] if p["subject"] == "data/planted.jpg").items()


def test_summary_names_the_sender_and_neutralises_control_characters(vault, key, clock, tmp_path):
    bag = make_bag(tmp_path, info={**INFO, "Source-Organization": "Evil\x1b]0;pwned\x07 Org"})
    rep = do_import(vault, key, bag, clock)
    text = "\n".join(rep.summary_lines())
    assert "Source-Organization: Evil\\x1b]0;pwned\\x07 Org" in text and "\x1b" not in text
    assert "External-Identifier: MDG-2026-017" in text and "4 file(s) preserved, 1 duplicate(s)" in text


def test_manifest_spelling_a_name_in_nfd_matches_the_nfc_file(vault, key, clock, tmp_path):
    import unicodedata

    bag = make_bag(tmp_path)
    for m in bag.glob("manifest-*.txt"):
        m.write_text(unicodedata.normalize("NFD", m.read_text()))
    regen_tagmanifests(bag)
    assert "te\u0301moignage".encode() in (bag / "manifest-sha256.txt").read_bytes()
    rep = do_import(vault, key, bag, clock)
    assert rep.receive.count("preserved") == 4
    assert "témoignage é.txt" in {b["source"]["path"] for b in ingest_bodies(vault.root)}


# -- docs/vectors/plain-bagit.json ---------------------------------------------------------------
VEC = json.loads((ROOT / "docs" / "vectors" / "plain-bagit.json").read_text("utf-8"))


def _independent_identity(files: dict[str, bytes]) -> str:
    """docs/bundle-format.md, written from the text: SHA-256 over '<sha256>  <path>\\n' of every
    file outside data/, sorted by UTF-8 path bytes."""
    tags = sorted((p for p in files if not p.startswith("data/")), key=lambda s: s.encode())
    return hashlib.sha256("".join(f"{hashlib.sha256(files[p]).hexdigest()}  {p}\n" for p in tags).encode()).hexdigest()


def test_plain_bag_identity_and_source_key_vectors(tmp_path):
    import hmac as hmac_mod

    from evidencelock.receive import source_key

    files = {p: t.encode() for p, t in VEC["bag_files"].items()}
    bag = tmp_path / "vector-bag"
    for p, data in files.items():
        (bag / p).parent.mkdir(parents=True, exist_ok=True)
        (bag / p).write_bytes(data)
    assert _independent_identity(files) == VEC["identity"]
    assert validate_plain_bag(bag).identity == VEC["identity"]
    secret = bytes.fromhex(VEC["source_key_secret_hex"])
    for bag_path, want in VEC["source_keys"].items():
        ident = ("bag:" + VEC["identity"]).encode() + b"\x00" + bag_path.encode()
        assert hmac_mod.new(secret, ident, hashlib.sha256).hexdigest() == want["hmac_sha256"]
        assert source_key(secret, VEC["identity"], bag_path) == want["hmac_sha256"]
        assert source_key(None, VEC["identity"], bag_path) == want["sha256_no_secret"]
    # The vector can fail: one changed byte in any tag file is another bag.
    (bag / "bag-info.txt").write_bytes(files["bag-info.txt"].replace(b"EX-1", b"EX-2"))
    regen_tagmanifests(bag)
    assert validate_plain_bag(bag).identity != VEC["identity"]


def test_manifest_line_vectors():
    from evidencelock.bundle._paths import UnsafePath, check_bag_path

    for v in VEC["manifest_lines"]:
        assert bagimport.parse_manifest_line(v["line"]) == (v["digest"], v["path"]), v
        if v.get("refused") == "bagit-path-safety":
            with pytest.raises(UnsafePath):
                check_bag_path(v["path"])
        else:
            check_bag_path(v["path"])
    assert bagimport.parse_manifest_line("abcdef data/x") == ("abcdef", "data/x")
    assert bagimport.parse_manifest_line("not-hex data/x") is None


@pytest.mark.parametrize("change,check", [
    ("truncate", "receive-size-mismatch"),
    ("grow", "receive-size-mismatch"),
    ("replace", "receive-unreadable"),  # another file (new inode) put in its place
])
def test_payload_resized_or_replaced_after_validation_refused(vault, key, clock, tmp_path, monkeypatch, change, check):
    bag = make_bag(tmp_path)
    real = bagimport._validate
    target = bag / "data" / "DCIM" / "IMG_0001.jpg"

    def validate_then_change(*a, **kw):
        result = real(*a, **kw)
        if change == "truncate":
            os.truncate(target, 10)
        elif change == "grow":
            with open(target, "ab") as f:
                f.write(b"appended after validation")
        else:
            tmp = target.with_name("swap")
            tmp.write_bytes(target.read_bytes())
            os.replace(tmp, target)
        return result

    monkeypatch.setattr(bagimport, "_validate", validate_then_change)
    before = vault_state(vault.root)
    with pytest.raises(ReceiveRefused) as exc:
        do_import(vault, key, bag, clock)
    assert [(p.path, p.check) for p in exc.value.problems] == [("data/DCIM/IMG_0001.jpg", check)]
    assert vault_state(vault.root) == before
