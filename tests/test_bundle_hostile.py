"""Hostile bundles: one test per attack.  Never a crash, never a write outside a temp dir,
always a named failure (STYLE.md §12)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

import bagit
import pytest

from evidencelock.bundle import Limits, verify_bundle
from evidencelock.errors import InputError
from evidencelock.keys import CustodianKey
from test_bundle_support import bag, exported, failed, regen_manifests, regen_tag_manifests, rewrite_entry  # noqa: F401


def names(report) -> set[str]:
    return {c.name for c in report.checks if not c.ok}


def add_manifest_line(bag: Path, line: str) -> None:
    with open(bag / "manifest-sha256.txt", "a", encoding="utf-8", newline="") as f:
        f.write(line + "\n")
    regen_tag_manifests(bag)


def zip_bag(bag: Path, target: Path, extra: list[tuple[str, bytes]] = (), *, top: str = "b") -> Path:
    with zipfile.ZipFile(target, "w") as z:
        for p in sorted(bag.rglob("*")):
            if p.is_file():
                z.write(p, f"{top}/{p.relative_to(bag)}")
        for name, data in extra:
            z.writestr(zipfile.ZipInfo(name), data)
    return target


def first_payload(bag: Path) -> Path:
    return next(p for p in sorted((bag / "data").rglob("*")) if p.is_file())


# -- paths -----------------------------------------------------------------------------------
def test_manifest_path_traversal_dotdot(bag):
    add_manifest_line(bag, "0" * 64 + "  data/../../../etc/passwd")
    r = verify_bundle(bag)
    assert not r.ok and any("'..'" in c.detail for c in failed(r, "bagit-path-safety"))


def test_manifest_absolute_path(bag):
    add_manifest_line(bag, "0" * 64 + "  /etc/passwd")
    r = verify_bundle(bag)
    assert any("absolute" in c.detail for c in failed(r, "bagit-path-safety"))


def test_manifest_drive_letter(bag):
    add_manifest_line(bag, "0" * 64 + "  C:/Windows/win.ini")
    r = verify_bundle(bag)
    assert any("drive letter" in c.detail for c in failed(r, "bagit-path-safety"))


def test_manifest_nul_byte(bag):
    add_manifest_line(bag, "0" * 64 + "  data/a\x00.jpg")
    r = verify_bundle(bag)
    assert any("NUL" in c.detail for c in failed(r, "bagit-path-safety"))


def test_manifest_backslash_path(bag):
    add_manifest_line(bag, "0" * 64 + "  data\\..\\..\\boot.ini")
    r = verify_bundle(bag)
    assert any("backslash" in c.detail for c in failed(r, "bagit-path-safety"))


def test_symlink_in_data(bag, tmp_path):
    victim = first_payload(bag)
    victim.unlink()
    victim.symlink_to("/etc/passwd")
    r = verify_bundle(bag)
    assert not r.ok and failed(r, "bagit-symlink")


def test_hardlink_in_data(bag, tmp_path):
    victim = first_payload(bag)
    outside = tmp_path / "outside"
    shutil.copy(victim, outside)
    victim.unlink()
    os.link(outside, victim)  # same bytes, but another name outside the bag can change them
    r = verify_bundle(bag)
    assert not r.ok and failed(r, "bagit-hardlink")


# -- zips ------------------------------------------------------------------------------------
def _listing(d: Path) -> set[str]:
    return {str(p) for p in d.rglob("*")}


def test_zip_slip(bag, tmp_path):
    z = zip_bag(bag, tmp_path / "slip.zip", [("b/../../evil.txt", b"pwned"), ("../evil2.txt", b"pwned")])
    before = _listing(tmp_path.parent)
    r = verify_bundle(z)
    assert not r.ok and failed(r, "bagit-zip-slip")
    assert _listing(tmp_path.parent) == before  # nothing was written anywhere


def test_zip_absolute_member(bag, tmp_path):
    z = zip_bag(bag, tmp_path / "abs.zip", [("/tmp/evidencelock-evil.txt", b"pwned")])
    r = verify_bundle(z)
    assert failed(r, "bagit-zip-slip") and not Path("/tmp/evidencelock-evil.txt").exists()


def test_zip_symlink_member(bag, tmp_path):
    z = zip_bag(bag, tmp_path / "link.zip")
    with zipfile.ZipFile(z, "a") as zf:
        info = zipfile.ZipInfo("b/data/link.jpg")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    r = verify_bundle(z)
    assert failed(r, "bagit-symlink")


def test_zip_bomb_ratio(bag, tmp_path):
    z = zip_bag(bag, tmp_path / "bomb.zip")
    with zipfile.ZipFile(z, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("b/data/zeros.bin", b"\0" * (20 << 20))  # 20 MiB -> ~20 KiB
    r = verify_bundle(z)
    assert any("ratio" in c.detail for c in failed(r, "bagit-zip-bomb"))


def test_zip_bomb_total_size(bag, tmp_path):
    z = zip_bag(bag, tmp_path / "big.zip")
    r = verify_bundle(z, limits=Limits(max_total_bytes=100_000))
    assert any("in total" in c.detail for c in failed(r, "bagit-zip-bomb"))


def test_zip_truncated_is_unusable_input(bag, tmp_path):
    z = zip_bag(bag, tmp_path / "cut.zip")
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    with pytest.raises(InputError):
        verify_bundle(z)


# -- names -----------------------------------------------------------------------------------
def test_duplicate_names_differing_in_case(bag):
    p = first_payload(bag)
    twin = p.with_name(p.name.upper() if p.name != p.name.upper() else p.name.lower())
    shutil.copy(p, twin)
    regen_manifests(bag)
    r = verify_bundle(bag)
    assert not r.ok and failed(r, "bagit-duplicate-name")


def test_duplicate_names_differing_in_unicode_normalisation(bag):
    nfc = unicodedata.normalize("NFC", "caf\u00e9.txt")
    nfd = unicodedata.normalize("NFD", nfc)
    (bag / "data" / nfc).write_bytes(b"one")
    (bag / "data" / nfd).write_bytes(b"two")
    regen_manifests(bag)
    r = verify_bundle(bag)
    assert failed(r, "bagit-duplicate-name")


# -- completeness ----------------------------------------------------------------------------
def test_file_listed_but_missing(bag):
    p = first_payload(bag)
    p.unlink()
    r = verify_bundle(bag)
    assert any("missing" in c.detail for c in failed(r, "bagit-completeness"))


def test_file_present_but_unlisted(bag):
    (bag / "data" / "planted.jpg").write_bytes(b"\xff\xd8\xff fake")
    r = verify_bundle(bag)
    assert any("not listed" in c.detail and c.subject == "data/planted.jpg" for c in failed(r, "bagit-completeness"))


def test_tag_file_present_but_unlisted(bag):
    (bag / "evidence" / "extra-claims.txt").write_text("trust me")
    r = verify_bundle(bag)
    assert any(c.subject == "evidence/extra-claims.txt" for c in failed(r, "bagit-completeness"))


def test_payload_byte_flipped(bag):
    p = first_payload(bag)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 1
    p.write_bytes(bytes(data))
    r = verify_bundle(bag)
    assert any("mismatch" in c.detail and "expected=" in c.detail for c in failed(r, "bagit-payload-fixity"))


def test_payload_replaced_with_regenerated_manifests(bag):
    p = first_payload(bag)
    p.write_bytes(b"entirely different bytes")
    regen_manifests(bag)  # BagIt layer now self-consistent
    r = verify_bundle(bag)
    assert r.bagit_ok and not r.ok
    assert any(c.subject == str(p.relative_to(bag)) for c in failed(r, "evidence-payload-covered"))


# -- manifests -------------------------------------------------------------------------------
def test_huge_manifest(bag):
    with open(bag / "manifest-sha256.txt", "ab") as f:
        f.write(b"#" * 300_000)
    regen_tag_manifests(bag)
    r = verify_bundle(bag, limits=Limits(max_tag_file_bytes=200_000))
    assert any("limit" in c.detail for c in failed(r, "bagit-manifest"))


def test_manifest_with_a_huge_line(bag):
    add_manifest_line(bag, "0" * 64 + "  data/" + "x" * 10_000)
    r = verify_bundle(bag)
    assert any("longer than" in c.detail for c in failed(r, "bagit-manifest"))


def test_manifest_with_malformed_lines(bag):
    add_manifest_line(bag, "this is not a manifest line")
    add_manifest_line(bag, "abcd  data/short-digest.jpg")
    r = verify_bundle(bag)
    details = " ".join(c.detail for c in failed(r, "bagit-manifest"))
    assert "is not '<checksum>  <path>'" in details and "64 hex digits" in details


def test_payload_oxum_wrong(bag):
    info = (bag / "bag-info.txt").read_text().replace("Payload-Oxum: ", "Payload-Oxum: 1")
    (bag / "bag-info.txt").write_text(info)
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert failed(r, "bagit-payload-oxum")


# -- evidence layer --------------------------------------------------------------------------
def test_swapped_public_key(bag):
    pem = next((bag / "evidence" / "keys").glob("*.pem"))
    pem.write_bytes(CustodianKey.generate("mallory").public.to_pem())
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert any("swapped" in c.detail for c in failed(r, "evidence-keys"))


def _an_ingest_seq(bag: Path) -> int:
    for line in (bag / "evidence/entries.jsonl").read_text().splitlines():
        obj = json.loads(line)
        if json.loads(base64.b64decode(obj["canonical"]))["type"] == "ingest":
            return obj["seq"]
    raise AssertionError("no ingest entry")


def test_signature_from_a_key_not_in_the_entries(bag):
    mallory = CustodianKey.generate("mallory")
    (bag / "evidence/keys" / f"{mallory.key_id}.pem").write_bytes(mallory.public.to_pem())
    seq = _an_ingest_seq(bag)

    def change(e):
        e["actor"] = mallory.key_id
        e["body"]["note"] = "handled by mallory"

    rewrite_entry(bag, seq, change, mallory.sign)
    r = verify_bundle(bag)
    assert any(c.subject == f"entry {seq}" and "enrols" in c.detail for c in failed(r, "evidence-signature"))
    assert failed(r, "evidence-keys")  # the planted PEM is not enrolled either
    assert any(c.subject == f"entry {seq}" for c in failed(r, "evidence-inclusion"))


def test_evidence_edited_consistently_with_regenerated_tag_manifest(bag):
    seq = _an_ingest_seq(bag)
    # Edit the entry body but keep the old signature; the by-hand copy is edited the same way.
    lines = (bag / "evidence/entries.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        obj = json.loads(line)
        if obj["seq"] == seq:
            canonical = base64.b64decode(obj["canonical"]).replace(b'"size":', b'"note":"moved","size":', 1)
            obj["canonical"] = base64.b64encode(canonical).decode()
            (bag / f"evidence/entries/{seq}.json").write_bytes(canonical)
        out.append(json.dumps(obj, sort_keys=True))
    (bag / "evidence/entries.jsonl").write_text("\n".join(out) + "\n")
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert r.bagit_ok and not r.ok
    assert any(c.subject == f"entry {seq}" for c in failed(r, "evidence-signature"))


def test_metadata_edited_with_regenerated_tag_manifest(bag):
    meta = json.loads((bag / "evidence/metadata.json").read_text())
    meta["note"] = "GPS: somewhere else entirely"
    (bag / "evidence/metadata.json").write_text(json.dumps(meta))
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert r.bagit_ok and any(c.subject == "evidence/metadata.json" for c in failed(r, "evidence-bundle-signature"))


def test_proof_for_another_checkpoint(bag, exported):
    shutil.copy(exported["B"] / "evidence/proofs.json", bag / "evidence/proofs.json")
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert any("another tree" in c.detail for c in failed(r, "evidence-inclusion"))


def test_tampered_proof_hash(bag):
    proofs = json.loads((bag / "evidence/proofs.json").read_text())
    seq, path = next((k, v) for k, v in proofs["inclusion"].items() if v)
    path[0] = "00" * 32
    (bag / "evidence/proofs.json").write_text(json.dumps(proofs))
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert any(c.subject == f"entry {seq}" and "root mismatch" in c.detail for c in failed(r, "evidence-inclusion"))


def test_checkpoint_with_a_different_tree_size(bag, exported):
    # B's checkpoint is validly signed by the same key, but for another size.
    for name in ("checkpoint.txt", "checkpoint-body.txt", "checkpoint.sig"):
        shutil.copy(exported["B"] / "evidence" / name, bag / "evidence" / name)
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert any("another tree" in c.detail for c in failed(r, "evidence-inclusion"))
    assert failed(r, "evidence-timestamp")  # the token was over the original checkpoint


def test_checkpoint_signature_forged(bag):
    text = (bag / "evidence/checkpoint.txt").read_bytes()
    lines = text.split(b"\n")
    lines[1] = str(int(lines[1]) + 1).encode()
    (bag / "evidence/checkpoint.txt").write_bytes(b"\n".join(lines))
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert failed(r, "evidence-checkpoint-signature")


def test_timestamp_token_swapped(bag, exported):
    # A genuine token from the same TSA, over other bytes.
    (bag / "evidence/timestamp.tst").write_bytes(exported["tsa"].token(b"some other document\n"))
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert failed(r, "evidence-timestamp")


def test_malformed_evidence_files_are_named_not_crashes(bag):
    (bag / "evidence/entries.jsonl").write_bytes(b"{not json\n\x00\xff\n[1,2]\n")
    (bag / "evidence/proofs.json").write_bytes(b"[]")
    (bag / "evidence/checkpoint.txt").write_bytes(b"\xff\xfe garbage")
    regen_tag_manifests(bag)
    r = verify_bundle(bag)
    assert {"evidence-entries", "evidence-checkpoint-signature"} <= names(r)


# -- not an evidence bundle -------------------------------------------------------------------
def test_plain_bagit_bag_is_reported_as_such(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    (d / "photo.jpg").write_bytes(b"\xff\xd8\xff plain")
    bagit.make_bag(str(d), checksums=["sha256"])
    r = verify_bundle(d)
    assert r.kind == "bagit-only" and r.bagit_ok and not r.ok
    assert any("BagIt layer valid, evidence layer absent" in c.detail for c in failed(r, "evidence-present"))
    p = subprocess.run([sys.executable, "-m", "evidencelock", "verify-bundle", str(d), "--json"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 1 and json.loads(p.stdout)["ok"] is False


def test_not_a_bag_at_all_is_unusable_input(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "file.txt").write_text("hi")
    with pytest.raises(InputError):
        verify_bundle(tmp_path / "x")
    (tmp_path / "y.bin").write_bytes(os.urandom(100))
    with pytest.raises(InputError):
        verify_bundle(tmp_path / "y.bin")
