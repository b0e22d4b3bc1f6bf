"""Issue 9, items 6, 9 and 15: attacks on the BagIt layer of a genuine bundle.

Zip members whose bytes do not decode (a flipped byte in a stored member, a damaged deflate
stream, a compression method other than stored/deflate), manifest lines in forms our exporter
never writes (docs/bundle-format.md §2), a tag manifest listing a tag manifest, and a bag
without bagit.txt.  Every test tampers with a real exported bundle, fixes up what an attacker
would fix up, runs the real CLI and asserts a named refusal without a traceback; the untampered
bundle verifies the same way.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from test_bundle_attacks_structure import assert_refused, bag, verify_cli, world  # noqa: F401 - fixtures
from test_bundle_support import regen_tag_manifests


def zip_bag(bag: Path, out: Path, *, deflate: tuple[str, ...] = ()) -> Path:
    """The bag as a zip under one top folder, as a user zips it; members in ``deflate`` compressed."""
    with zipfile.ZipFile(out, "w") as z:
        for p in sorted(bag.rglob("*")):
            if p.is_file():
                rel = p.relative_to(bag).as_posix()
                z.write(p, f"bundle/{rel}", compress_type=zipfile.ZIP_DEFLATED if rel in deflate else zipfile.ZIP_STORED)
    return out


def patch_member(zip_path: Path, member: str, *, flip_at: int | None = None, method: int | None = None) -> None:
    """Flip one byte of a member's data, or set its compression method in both headers."""
    data = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as z:
        info = z.getinfo(f"bundle/{member}")
    off = info.header_offset
    nlen = int.from_bytes(data[off + 26:off + 28], "little")
    xlen = int.from_bytes(data[off + 28:off + 30], "little")
    if flip_at is not None:
        data[off + 30 + nlen + xlen + flip_at] ^= 0x01
    if method is not None:
        data[off + 8:off + 10] = method.to_bytes(2, "little")
        pos = 0
        while (pos := data.find(b"PK\x01\x02", pos)) >= 0:
            n = int.from_bytes(data[pos + 28:pos + 30], "little")
            if bytes(data[pos + 46:pos + 46 + n]) == f"bundle/{member}".encode():
                data[pos + 10:pos + 12] = method.to_bytes(2, "little")
            pos += 4
    zip_path.write_bytes(bytes(data))


def first_payload(bag: Path) -> str:
    return next(p.relative_to(bag).as_posix() for p in sorted((bag / "data").rglob("*")) if p.is_file())


# -- 1. zip decoding errors are named failures, never tracebacks --------------------------------
def test_untampered_zip_verifies(world, bag, tmp_path):
    r = verify_cli(world, zip_bag(bag, tmp_path / "b.zip", deflate=("evidence/entries.jsonl",)))
    assert r.code == 0 and "VERIFIED" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("member", ["evidence/bundle.json", "bagit.txt"])
def test_flipped_byte_in_stored_zip_member_is_a_named_crc_failure(world, bag, tmp_path, member):
    z = zip_bag(bag, tmp_path / "b.zip")
    patch_member(z, member, flip_at=2)
    assert_refused(verify_cli(world, z), "bagit-zip-crc", member)


def test_damaged_deflate_stream_is_a_named_failure(world, bag, tmp_path):
    payload = first_payload(bag)
    z = zip_bag(bag, tmp_path / "b.zip", deflate=(payload, "evidence/entries.jsonl"))
    patch_member(z, "evidence/entries.jsonl", flip_at=5)
    patch_member(z, payload, flip_at=3)
    r = verify_cli(world, z)
    assert_refused(r, "bagit-zip-crc", "evidence/entries.jsonl")
    assert_refused(r, "bagit-zip-crc", payload)


def test_unsupported_compression_method_is_refused_up_front(world, bag, tmp_path):
    z = zip_bag(bag, tmp_path / "b.zip")
    patch_member(z, "evidence/entries.jsonl", method=93)  # zstd: not allowed in a bundle (§2)
    r = verify_cli(world, z)
    assert_refused(r, "bagit-zip-unsupported", "evidence/entries.jsonl")
    assert "NotImplementedError" not in r.stdout + r.stderr


def test_unreadable_zip_is_bad_input(world, bag, tmp_path):
    z = zip_bag(bag, tmp_path / "b.zip")
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])  # central directory cut off
    r = verify_cli(world, z)
    assert r.code == 2 and "not a readable zip" in r.stdout + r.stderr and "Traceback" not in r.stderr


# -- 2. manifest syntax: only the form the exporter writes ---------------------------------------
def _rewrite_line(bag: Path, manifest: str, path: str, make) -> int:
    """Rewrite the manifest line of ``path`` with ``make(hex, path)``; fix the tag manifests up.
    Returns the line number."""
    f = bag / manifest
    lines = f.read_bytes().split(b"\n")
    n = next(i for i, ln in enumerate(lines) if ln.endswith(b"  " + path.encode()))
    lines[n] = make(lines[n].split(b"  ", 1)[0].decode(), path).encode()
    f.write_bytes(b"\n".join(lines))
    regen_tag_manifests(bag)
    return n + 1


@pytest.mark.parametrize(("form", "make", "words"), [
    ("uppercase hex", lambda h, p: f"{h.upper()}  {p}", "uppercase"),
    ("one space", lambda h, p: f"{h} {p}", "one space"),
    ("TAB", lambda h, p: f"{h}\t{p}", "TAB"),
    ("CRLF", lambda h, p: f"{h}  {p}\r", "CR"),
    ("sha256sum binary marker", lambda h, p: f"{h}  *{p}", "'*'"),
    ("sha256sum binary marker, one space", lambda h, p: f"{h} *{p}", "one space"),
])
def test_manifest_line_in_another_form_is_refused(world, bag, form, make, words):
    assert verify_cli(world, bag).code == 0
    n = _rewrite_line(bag, "manifest-sha256.txt", first_payload(bag), make)
    r = verify_cli(world, bag)
    assert_refused(r, "bagit-manifest", "manifest-sha256.txt", f"line {n}", words)


def test_manifest_without_final_lf_is_refused(world, bag):
    f = bag / "manifest-sha256.txt"
    f.write_bytes(f.read_bytes().rstrip(b"\n"))
    regen_tag_manifests(bag)
    assert_refused(verify_cli(world, bag), "bagit-manifest", "manifest-sha256.txt", "does not end with LF")


def test_tag_manifest_listing_a_tag_manifest_is_refused(world, bag):
    digest = hashlib.sha512((bag / "tagmanifest-sha256.txt").read_bytes()).hexdigest()
    with open(bag / "tagmanifest-sha512.txt", "a", encoding="utf-8", newline="") as f:
        f.write(f"{digest}  tagmanifest-sha256.txt\n")
    assert_refused(verify_cli(world, bag), "bagit-tag-manifest", "tagmanifest-sha512.txt", "lists a tag manifest")


# -- 3. no bagit.txt: not a bag (exit 2) -----------------------------------------------------------
def test_bag_without_bagit_txt_is_not_a_bag(world, bag, tmp_path):
    (bag / "bagit.txt").unlink()
    regen_tag_manifests(bag)
    r = verify_cli(world, bag)
    assert r.code == 2 and "not a BagIt bag" in r.stdout + r.stderr and "Traceback" not in r.stderr
    r = verify_cli(world, zip_bag(bag, tmp_path / "b.zip"))
    assert r.code == 2 and "not a BagIt bag" in r.stdout + r.stderr and "Traceback" not in r.stderr


# -- 4. the spec's numbers are the code's numbers ----------------------------------------------------
DOC = Path(__file__).resolve().parent.parent / "docs" / "bundle-format.md"


def test_limits_table_in_the_spec_equals_the_code():
    import re

    from evidencelock import checkpoint, timestamp
    from evidencelock.bundle import _paths
    from evidencelock.bundle.source import Limits

    text = DOC.read_text(encoding="utf-8").split("### 5.1 Limits", 1)[1].split("\n## ", 1)[0]
    modules = {"Limits": Limits(), "_paths": _paths, "checkpoint": checkpoint, "timestamp": timestamp}
    checked = set()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not (m := re.match(r"\d+", cells[1])):
            continue
        names = re.findall(r"`(\w+)\.(\w+)`", cells[2])
        if names:  # the first number is the first constant's value
            owner, attr = names[0]
            assert int(m.group()) == getattr(modules[owner], attr), line
            checked.add(f"{owner}.{attr}")
    assert {f"Limits.{f}" for f in Limits.__dataclass_fields__} <= checked, checked


@pytest.mark.parametrize(("name", "expected"), [
    ("con.tar.gz", "_con.tar.gz"), ("Aux.txt", "_Aux.txt"), ("console.txt", "console.txt"), ("con2", "con2"),
    ("Aux.", "_Aux"), (" .a:b%c. ", "a_b_c"), ("", "unnamed"), ("x" * 200 + ".jpeg", "x" * 145 + ".jpeg"),
    ("x" * 200 + ".verylongext", "x" * 139 + ".verylongex"), ("x" * 200, "x" * 150),
])
def test_payload_name_steps_in_the_spec_match_the_code(name, expected):
    """§3 steps 3-8, on the spec's own examples and its truncation rule."""
    from evidencelock.bundle._paths import safe_component

    assert safe_component(name) == expected
