"""File-system and resource attacks (issue 9 items 12, 15, 16).

Every test performs the attack on real files made by the real code: links planted in a real
vault's staging/ pointing at a real outside folder full of files, a real FIFO put in place of
a real object, crafted zips and manifests against a real exported bundle, and a folder swapped
for a symlink in the middle of a real ingest.  The real CLI runs in a subprocess with a
timeout, so a hang is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import Clock, run_cli
from test_bundle_support import bag, exported, failed  # noqa: F401  (fixtures: a real exported bundle)

TIMEOUT = 60  # seconds: every command here handles a few small files; longer means a hang


@pytest.fixture
def vp(tmp_path: Path) -> Path:
    """A vault created by the CLI, with two items in case c1."""
    path = tmp_path / "vault"
    r = run_cli("init", "--custodian", "Field Team A", vault=path)
    assert r.code == 0, r.stderr
    src = tmp_path / "card"
    src.mkdir()
    (src / "hello.txt").write_bytes(b"hello evidence\n")
    (src / "photo.jpg").write_bytes(b"\xff\xd8 not really a jpeg " * 50)
    r = run_cli("ingest", src, "--case", "c1", "--no-media", vault=path, timeout=TIMEOUT)
    assert r.code == 0, r.stderr
    return path


def make_outside(tmp_path: Path, name: str) -> dict[Path, bytes]:
    """A real folder outside the vault (an SD card's DCIM, a home's Documents) with files in it,
    some named exactly like our staged files so a name check alone would not protect them."""
    root = tmp_path / name
    files = {
        root / "IMG_0001.JPG": b"the only copy of a photo",
        root / "sub" / "letter.odt": b"a letter",
        root / ("ab" * 32 + ".0123456789abcdef.staged"): b"looks staged, is not ours",
        root / "0123456789abcdef.partial": b"looks partial, is not ours",
        root / "123-deadbeef" / "0123456789abcdef.partial": b"in a folder named like a session",
    }
    for p, data in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def assert_intact(files: dict[Path, bytes]) -> None:
    for p, data in files.items():
        assert p.is_file(), f"{p} was deleted"
        assert p.read_bytes() == data, f"{p} was changed"


def entry_count(vault_path: Path) -> int:
    with sqlite3.connect(vault_path / "ledger.sqlite") as con:
        return con.execute("SELECT count(*) FROM entries").fetchone()[0]


def object_path(vault_path: Path, name: str = "hello.txt") -> Path:
    with sqlite3.connect(vault_path / "ledger.sqlite") as con:
        rows = con.execute("SELECT canonical FROM entries WHERE type = 'ingest'").fetchall()
    for (canonical,) in rows:
        body = json.loads(bytes(canonical))["body"]
        if body["source"]["path"].endswith(name):
            sha = body["item"]
            return vault_path / "objects" / "sha256" / sha[:2] / sha[2:4] / sha
    raise AssertionError(f"no ingest of {name}")


# -- item 12: links in staging/ ----------------------------------------------------------------
def test_symlink_planted_in_staging_deletes_nothing_outside(tmp_path: Path, vp: Path) -> None:
    outside = make_outside(tmp_path, "DCIM")
    root = tmp_path / "DCIM"
    # Untampered: a writable command works, and really cleans a dead session of its own.
    dead = vp / "staging" / "999999-0badc0de"
    dead.mkdir()
    (dead / "0123456789abcdef.partial").write_bytes(b"leftover")
    r = run_cli("recover", vault=vp, timeout=TIMEOUT)
    assert r.code == 0 and "1 unrecorded leftovers removed" in r.stdout, r.stdout + r.stderr
    assert not dead.exists()

    # The attack: links named like dead sessions (and not) pointing at the outside folder.
    for name in ("4242-deadbeef", "123-deadbeef", "evil"):
        os.symlink(root, vp / "staging" / name)
    before = entry_count(vp)
    for cmd in (("recover",), ("audit",), ("ingest", tmp_path / "card", "--case", "c2", "--no-media"), ("verify",)):
        r = run_cli(*cmd, vault=vp, timeout=TIMEOUT)
        assert r.code == 2, (cmd, r.stdout, r.stderr)
        assert "staging/123-deadbeef" in r.stderr and "symlink" in r.stderr and str(root) in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert_intact(outside)
    assert entry_count(vp) == before, "nothing was recorded by a refused command"
    # The link itself is the user's to remove; once it is gone the vault works again.
    for name in ("4242-deadbeef", "123-deadbeef", "evil"):
        os.unlink(vp / "staging" / name)
    assert run_cli("verify", vault=vp, timeout=TIMEOUT).code == 0
    assert_intact(outside)


def test_symlink_planted_inside_a_dead_session_deletes_nothing_outside(tmp_path: Path, vp: Path) -> None:
    outside = make_outside(tmp_path, "Documents")
    dead = vp / "staging" / "31337-cafebabe"
    dead.mkdir()
    os.symlink(tmp_path / "Documents" / "0123456789abcdef.partial", dead / "0123456789abcdef.partial")
    os.symlink(tmp_path / "Documents", dead / "fedcba9876543210.partial")
    r = run_cli("recover", vault=vp, timeout=TIMEOUT)
    assert r.code == 2 and "31337-cafebabe/" in r.stderr and "symlink" in r.stderr, r.stderr
    assert_intact(outside)


def test_staging_folder_replaced_by_symlink_deletes_nothing_outside(tmp_path: Path, vp: Path) -> None:
    outside = make_outside(tmp_path, "home")
    shutil.rmtree(vp / "staging")
    os.symlink(tmp_path / "home", vp / "staging")
    for cmd in (("recover",), ("ingest", tmp_path / "card", "--case", "c2", "--no-media"), ("verify",)):
        r = run_cli(*cmd, vault=vp, timeout=TIMEOUT)
        assert r.code == 2, (cmd, r.stdout, r.stderr)
        assert str(vp / "staging") in r.stderr and "symlink" in r.stderr and str(tmp_path / "home") in r.stderr
        assert_intact(outside)


@pytest.mark.parametrize("internal", ["objects", "objects/sha256", "keys", "vault.json", "ledger.sqlite"])
def test_internal_folder_replaced_by_symlink_is_refused(tmp_path: Path, vp: Path, internal: str) -> None:
    real = tmp_path / "moved-away"
    shutil.move(vp / internal, real)
    os.symlink(real, vp / internal)
    r = run_cli("verify", vault=vp, timeout=TIMEOUT)
    assert r.code == 2 and str(vp / internal) in r.stderr and "symlink" in r.stderr, r.stderr
    os.unlink(vp / internal)
    shutil.move(real, vp / internal)
    assert run_cli("verify", vault=vp, timeout=TIMEOUT).code == 0


def test_foreign_files_in_staging_are_left_alone(tmp_path: Path, vp: Path) -> None:
    """Not a link, but not ours either: a dead session's unknown file, a folder not named like
    a session.  Only our own leftovers are removed."""
    other = vp / "staging" / "notes"
    other.mkdir()
    (other / "0123456789abcdef.partial").write_bytes(b"someone's notes")
    dead = vp / "staging" / "999999-0badc0de"
    (dead / "keep").mkdir(parents=True)
    (dead / "keep" / "x").write_bytes(b"x")
    (dead / "readme.txt").write_bytes(b"not ours")
    (dead / "0123456789abcdef.partial").write_bytes(b"ours")
    r = run_cli("recover", vault=vp, timeout=TIMEOUT)
    assert r.code == 0, r.stderr
    assert not (dead / "0123456789abcdef.partial").exists()
    assert (other / "0123456789abcdef.partial").read_bytes() == b"someone's notes"
    assert (dead / "readme.txt").read_bytes() == b"not ours" and (dead / "keep" / "x").is_file()


# -- item 15a: a FIFO in place of an object ----------------------------------------------------
def _plant_fifo(vp: Path) -> Path:
    obj = object_path(vp)
    obj.chmod(0o644)
    obj.unlink()
    os.mkfifo(obj)
    return obj


def test_fifo_in_place_of_object_is_a_named_finding_not_a_hang(tmp_path: Path, vp: Path) -> None:
    assert run_cli("verify", vault=vp, timeout=TIMEOUT).code == 0
    obj = _plant_fifo(vp)
    for cmd in (("verify",), ("verify", "--all-digests"), ("audit",)):
        r = run_cli(*cmd, "--json", vault=vp, timeout=TIMEOUT)  # a hang raises TimeoutExpired
        assert r.code == 1, (cmd, r.stdout, r.stderr)
        findings = r.json()["findings"]
        bad = [f for f in findings if f["code"] == "object-unreadable"]
        assert bad and "FIFO" in bad[0]["message"] and obj.name in bad[0]["message"], findings
        assert "hello.txt" in bad[0]["subject"], bad  # the item is named by its original name
    r = run_cli("verify", vault=vp, timeout=TIMEOUT)
    assert r.code == 1 and "FIFO" in (r.stdout + r.stderr) and "hello.txt" in (r.stdout + r.stderr)


def test_fifo_in_place_of_object_is_refused_by_export_before_signing(tmp_path: Path, vp: Path) -> None:
    before = entry_count(vp)
    _plant_fifo(vp)
    out = tmp_path / "bundle"
    r = run_cli("export", "--case", "c1", "-o", out, vault=vp, timeout=TIMEOUT)
    assert r.code == 1, r.stdout + r.stderr
    assert "FIFO" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()
    assert entry_count(vp) == before, "nothing was signed for a refused export"
    with sqlite3.connect(vp / "ledger.sqlite") as con:
        assert con.execute("SELECT count(*) FROM checkpoints").fetchone()[0] == 0


def test_symlink_in_place_of_object_is_not_followed(tmp_path: Path, vp: Path) -> None:
    obj = object_path(vp)
    copy = tmp_path / "copy-of-object"
    shutil.copy(obj, copy)  # same bytes: only a link check can tell
    obj.chmod(0o644)
    obj.unlink()
    os.symlink(copy, obj)
    r = run_cli("verify", "--json", vault=vp, timeout=TIMEOUT)
    assert r.code == 1 and any(f["code"] == "object-unreadable" for f in r.json()["findings"]), r.stdout
    r = run_cli("export", "--case", "c1", "-o", tmp_path / "b", vault=vp, timeout=TIMEOUT)
    assert r.code == 1 and obj.name in r.stderr, r.stderr


def test_symlinked_object_folder_is_reported(tmp_path: Path, vp: Path) -> None:
    obj = object_path(vp)
    shard = obj.parent  # objects/sha256/ab/cd
    moved = tmp_path / "elsewhere"
    shutil.move(shard, moved)
    os.symlink(moved, shard)
    r = run_cli("verify", "--json", vault=vp, timeout=TIMEOUT)
    assert r.code == 1, r.stdout
    codes = {f["code"] for f in r.json()["findings"]}
    assert {"object-stray", "object-missing"} <= codes, codes
    r = run_cli("export", "--case", "c1", "-o", tmp_path / "b", vault=vp, timeout=TIMEOUT)
    assert r.code == 1 and obj.name in r.stderr, r.stderr


# -- item 16: a folder swapped for a symlink during ingest --------------------------------------
def _card(tmp_path: Path) -> tuple[Path, Path]:
    card = tmp_path / "sdcard"
    (card / "DCIM").mkdir(parents=True)
    (card / "DCIM" / "IMG_1.JPG").write_bytes(b"photo one")
    (card / "zzz").mkdir()
    (card / "zzz" / "passwd").write_bytes(b"the card's own file named passwd")
    (card / "zzz" / "deeper").mkdir()
    (card / "zzz" / "deeper" / "shadow").write_bytes(b"the card's own shadow")
    outside = tmp_path / "etc"
    (outside / "deeper").mkdir(parents=True)
    (outside / "passwd").write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    (outside / "deeper" / "shadow").write_bytes(b"root:$6$secret\n")
    return card, outside


def _swap_for_link(folder: Path, target: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".moved"))
    os.symlink(target, folder)


def _preserved_bytes(vault) -> set[bytes]:
    out = set()
    for _name, path in vault.store.iter_objects():
        out.add(Path(path).read_bytes())
    return out


def _run_ingest(vault, key, card: Path, case: str):
    from evidencelock.ingest import ingest

    return ingest(vault, [card], key=key, case=case, now=Clock(), extract_media=False)


def test_untampered_card_is_preserved_whole(tmp_path: Path, vault, key) -> None:
    card, _ = _card(tmp_path)
    rep = _run_ingest(vault, key, card, "c1")
    assert rep.ok and rep.count("preserved") == 3, [o.__dict__ for o in rep.outcomes]
    assert b"the card's own file named passwd" in _preserved_bytes(vault)


def _swap_after_listing(monkeypatch, swap) -> None:
    """Run ``swap()`` right after ingest's walk has listed the card, before any file is read."""
    from evidencelock import ingest as ingest_mod

    real_walk = ingest_mod.walk

    def walk_then_swap(*a, **kw):
        result = real_walk(*a, **kw)
        swap()
        return result

    monkeypatch.setattr(ingest_mod, "walk", walk_then_swap)


@pytest.mark.parametrize("target", ["outside", "/etc"])
def test_folder_swapped_for_symlink_after_listing_is_not_followed(tmp_path: Path, vault, key, monkeypatch,
                                                                   target: str) -> None:
    """The swap happens after the whole walk, before any file is read (the reader threads)."""

    card, outside = _card(tmp_path)
    dest = outside if target == "outside" else Path("/etc")

    def swap() -> None:
        _swap_for_link(card / "zzz", dest)

    _swap_after_listing(monkeypatch, swap)
    rep = _run_ingest(vault, key, card, "c1")
    outs = {Path(o.path).relative_to(card).as_posix(): o for o in rep.outcomes}
    assert outs["DCIM/IMG_1.JPG"].status == "preserved"
    for rel in ("zzz/passwd", "zzz/deeper/shadow"):
        o = outs[rel]
        assert o.status == "rejected", o
        assert "zzz" in o.reason and "replaced" in o.reason and "symlink" in o.reason and str(dest) in o.reason, o.reason
    preserved = _preserved_bytes(vault)
    assert (outside / "passwd").read_bytes() not in preserved
    assert (outside / "deeper" / "shadow").read_bytes() not in preserved
    if target == "/etc":
        assert Path("/etc/passwd").read_bytes() not in preserved
    assert not rep.ok


def test_folder_swapped_for_symlink_during_walk_is_not_listed(tmp_path: Path, vault, key, monkeypatch) -> None:
    """The swap happens after zzz/ was listed and stat'ed as a folder in the card's top folder
    (while DCIM/, walked first, is listed), before zzz/ itself is opened to be listed."""
    from evidencelock import ingest as ingest_mod

    card, outside = _card(tmp_path)
    real_list = ingest_mod._list_dir
    done = []

    def list_then_swap(fd):
        ents = real_list(fd)
        if not done and any(e.name == "IMG_1.JPG" for e in ents):
            done.append(1)
            _swap_for_link(card / "zzz", outside)
        return ents

    monkeypatch.setattr(ingest_mod, "_list_dir", list_then_swap)
    rep = _run_ingest(vault, key, card, "c1")
    assert done
    outs = {Path(o.path).relative_to(card).as_posix(): o for o in rep.outcomes}
    assert outs["DCIM/IMG_1.JPG"].status == "preserved"
    assert outs["zzz"].status == "rejected" and "symlink" in outs["zzz"].reason and str(outside) in outs["zzz"].reason
    assert not any(k.startswith("zzz/") for k in outs), outs  # nothing listed through the link
    assert (outside / "passwd").read_bytes() not in _preserved_bytes(vault)


def test_deep_folder_swapped_for_symlink_is_not_followed(tmp_path: Path, vault, key, monkeypatch) -> None:
    """Not only the last folder: a folder two levels up from the file is swapped."""

    card, outside = _card(tmp_path)
    (outside / "zzz" / "deeper").mkdir(parents=True)
    (outside / "zzz" / "deeper" / "shadow").write_bytes(b"outside shadow, same path below the link")

    def swap() -> None:
        # zzz/ -> a folder outside holding the same relative layout: only O_NOFOLLOW on every
        # folder (not just the file) catches it.
        _swap_for_link(card / "zzz", outside / "zzz")

    _swap_after_listing(monkeypatch, swap)
    rep = _run_ingest(vault, key, card, "c1")
    outs = {Path(o.path).relative_to(card).as_posix(): o for o in rep.outcomes}
    assert outs["zzz/deeper/shadow"].status == "rejected" and "symlink" in outs["zzz/deeper/shadow"].reason
    assert b"outside shadow, same path below the link" not in _preserved_bytes(vault)


def test_folder_swapped_for_another_real_folder_is_refused(tmp_path: Path, vault, key, monkeypatch) -> None:

    card, _ = _card(tmp_path)

    def swap() -> None:
        (card / "zzz").rename(card / "zzz.old")
        (card / "zzz").mkdir()
        (card / "zzz" / "passwd").write_bytes(b"planted after the listing")

    _swap_after_listing(monkeypatch, swap)
    rep = _run_ingest(vault, key, card, "c1")
    outs = {Path(o.path).relative_to(card).as_posix(): o for o in rep.outcomes}
    assert outs["zzz/passwd"].status == "rejected" and "replaced" in outs["zzz/passwd"].reason
    assert b"planted after the listing" not in _preserved_bytes(vault)


def test_file_swapped_for_symlink_after_listing_is_not_followed(tmp_path: Path, vault, key, monkeypatch) -> None:

    card, outside = _card(tmp_path)

    def swap() -> None:
        (card / "zzz" / "passwd").unlink()
        os.symlink(outside / "passwd", card / "zzz" / "passwd")

    _swap_after_listing(monkeypatch, swap)
    rep = _run_ingest(vault, key, card, "c1")
    outs = {Path(o.path).relative_to(card).as_posix(): o for o in rep.outcomes}
    assert outs["zzz/passwd"].status == "rejected" and "symlink" in outs["zzz/passwd"].reason
    assert (outside / "passwd").read_bytes() not in _preserved_bytes(vault)


def test_follow_symlinks_still_follows_links_inside_the_card(tmp_path: Path, vault, key) -> None:
    from evidencelock.ingest import ingest

    card, outside = _card(tmp_path)
    os.symlink("../DCIM/IMG_1.JPG", card / "zzz" / "alias.jpg")
    os.symlink(outside / "passwd", card / "zzz" / "escape")
    rep = ingest(vault, [card], key=key, case="c1", now=Clock(), extract_media=False, follow_symlinks=True)
    outs = {Path(o.path).relative_to(card).as_posix(): o for o in rep.outcomes}
    alias, real = outs["zzz/alias.jpg"], outs["DCIM/IMG_1.JPG"]
    assert {alias.status, real.status} == {"preserved", "duplicate"} and alias.sha256 == real.sha256, alias
    assert outs["zzz/escape"].status == "skipped" and "outside" in outs["zzz/escape"].reason
    assert (outside / "passwd").read_bytes() not in _preserved_bytes(vault)


def test_cli_ingest_names_the_swapped_folder(tmp_path: Path) -> None:
    """The same race through the real CLI: a process that swaps zzz/ after the listing,
    triggered by the test kill-point hook's sibling: a sitecustomize that patches walk."""
    card, outside = _card(tmp_path)
    vault_dir = tmp_path / "v"
    assert run_cli("init", "--custodian", "A", vault=vault_dir).code == 0
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "from evidencelock import ingest as m\n"
        "_w = m.walk\n"
        "def walk(*a, **k):\n"
        "    r = _w(*a, **k)\n"
        f"    os.rename({str(card / 'zzz')!r}, {str(card / 'zzz.moved')!r})\n"
        f"    os.symlink({str(outside)!r}, {str(card / 'zzz')!r})\n"
        "    return r\n"
        "m.walk = walk\n")
    env = {"PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    r = run_cli("ingest", card, "--case", "c1", "--no-media", vault=vault_dir, env=env, timeout=TIMEOUT)
    assert r.code == 2, r.stdout + r.stderr
    assert "zzz/passwd" in r.stderr and "symlink" in r.stderr, r.stderr
    assert run_cli("verify", vault=vault_dir, timeout=TIMEOUT).code == 0


# -- item 15b: zip floods ------------------------------------------------------------------------
def _genuine_zip(bag: Path, target: Path) -> Path:
    from evidencelock.bundle.writer import _zip_folder

    _zip_folder(bag, target, top="b")  # exactly as `export -o x.zip` writes it
    return target


def _overlapping_zip(bag: Path, target: Path, *, members: int, kernel_bytes: int) -> list[str]:
    """The genuine bundle plus ``members`` overlapping entries (Fifield's construction):
    member i's deflate stream quotes the local headers of members i+1.. in stored blocks and
    ends in one shared kernel of ``kernel_bytes`` zeros, so every member expands to about
    ``kernel_bytes`` (each under 1 MiB) while the zip grows by ~100 bytes per member."""
    import struct
    import zlib

    names = [f"b/data/flood/{i:05d}.bin".encode() for i in range(members)]
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    kernel = comp.compress(b"\0" * kernel_bytes) + comp.flush()
    # From the back: member i's content = LFH(i+1) + content(i+1); the last one's = the kernel.
    lfh: list[bytes] = [b""] * members
    crc, usize, csize = zlib.crc32(b"\0" * kernel_bytes), kernel_bytes, len(kernel)
    crcs, usizes, csizes = [0] * members, [0] * members, [0] * members
    content_tail = b"\0" * kernel_bytes
    for i in range(members - 1, -1, -1):
        crcs[i], usizes[i], csizes[i] = crc, usize, csize
        lfh[i] = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, csize, usize, len(names[i]), 0) + names[i]
        quote = struct.pack("<BHH", 0, len(lfh[i]), 0xFFFF ^ len(lfh[i]))
        crc = zlib.crc32(content_tail, zlib.crc32(lfh[i]))
        content_tail = lfh[i] + content_tail
        usize += len(lfh[i])
        csize += len(quote) + len(lfh[i])
    blob = bytearray()
    offsets = []
    for i in range(members):
        if i:
            blob += struct.pack("<BHH", 0, len(lfh[i]), 0xFFFF ^ len(lfh[i]))
        offsets.append(len(blob))
        blob += lfh[i]
    blob += kernel
    _genuine_zip(bag, target)
    with zipfile.ZipFile(target, "a") as z:
        base = z.start_dir
        z.fp.seek(base)
        z.fp.write(bytes(blob))
        for i in range(members):
            info = zipfile.ZipInfo(names[i].decode())
            info.compress_type = zipfile.ZIP_DEFLATED
            info.header_offset = base + offsets[i]
            info.CRC, info.compress_size, info.file_size = crcs[i], csizes[i], usizes[i]
            z.filelist.append(info)
            z.NameToInfo[info.filename] = info
        z.start_dir = base + len(blob)
        z._didModify = True
    return [n.decode() for n in names]


def test_overlapping_zip_entries_are_refused_undecompressed(bag: Path, tmp_path: Path, monkeypatch) -> None:
    from evidencelock.bundle import verify_bundle
    from evidencelock.bundle import source as source_mod

    good = _genuine_zip(bag, tmp_path / "good.zip")
    assert verify_bundle(good).ok, [c for c in verify_bundle(good).checks if not c.ok]

    bomb = tmp_path / "flood.zip"
    names = _overlapping_zip(bag, bomb, members=300, kernel_bytes=1_000_000)
    declared = sum(i.file_size for i in zipfile.ZipFile(bomb).infolist())
    assert bomb.stat().st_size - good.stat().st_size < 100_000 and declared > 300_000_000
    # The construction is a real overlap flood: zipfile itself reads a member in full, CRC checked.
    with zipfile.ZipFile(bomb) as z:
        assert len(z.read(names[0])) > 1_000_000 and len(z.read(names[-2])) > 1_000_000

    opened: list[str] = []
    real_open = source_mod.ZipSource.open
    monkeypatch.setattr(source_mod.ZipSource, "open", lambda self, p: opened.append(p) or real_open(self, p))
    r = verify_bundle(bomb)
    assert not r.ok
    overlap = failed(r, "bagit-zip-overlap")
    assert overlap and any("flood/00000.bin" in c.subject + c.detail for c in overlap), overlap
    assert {c.subject.strip("'") for c in overlap} >= set(names[1:])
    assert not [p for p in opened if "flood" in p], "no overlapping member was decompressed"
    r = run_cli("verify-bundle", bomb, timeout=TIMEOUT)
    assert r.code == 1 and "bagit-zip-overlap" in r.stdout + r.stderr and "flood/" in r.stdout + r.stderr


def test_small_members_that_expand_too_much_are_refused(bag: Path, tmp_path: Path) -> None:
    """Members under 1 MiB were never ratio-checked: 100 of 900 KB zeros each."""
    from evidencelock.bundle import verify_bundle

    z = _genuine_zip(bag, tmp_path / "small-bombs.zip")
    with zipfile.ZipFile(z, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(100):
            zf.writestr(f"b/data/zeros/{i:03d}.bin", b"\0" * 900_000)
    r = verify_bundle(z)
    bombs = failed(r, "bagit-zip-bomb")
    assert len(bombs) == 100 and all("ratio" in c.detail for c in bombs), bombs[:3]


def test_many_members_within_the_allowance_are_bounded_in_total(bag: Path, tmp_path: Path) -> None:
    """Each member within ratio + 64 KiB allowance; together far over 200 x the zip's size."""
    from evidencelock.bundle import verify_bundle

    z = _genuine_zip(bag, tmp_path / "many.zip")
    # ~180 bytes of zip per member, each declaring 64 KiB: enough of them to outgrow the bag.
    members = z.stat().st_size // 100 + 2000
    with zipfile.ZipFile(z, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            zf.writestr(f"b/data/z/{i:05d}", b"\0" * (64 << 10))
    size = z.stat().st_size
    declared = sum(i.file_size for i in zipfile.ZipFile(z).infolist() if i.compress_type == zipfile.ZIP_DEFLATED)
    assert declared > 200 * size
    r = verify_bundle(z)
    bombs = failed(r, "bagit-zip-bomb")
    assert bombs and any("in total" in c.detail for c in bombs), bombs[:3]
    from evidencelock.bundle.source import Limits, ZipSource

    src = ZipSource(z, Limits())
    admitted = sum(src._info[p].file_size for p in src.sizes if src._info[p].compress_type != zipfile.ZIP_STORED)
    assert admitted <= 200 * size


def test_stored_member_declaring_more_than_it_holds_is_refused(bag: Path, tmp_path: Path) -> None:
    from evidencelock.bundle import verify_bundle

    z = _genuine_zip(bag, tmp_path / "stored.zip")
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = next(i for i in zf.infolist() if i.filename.startswith("b/data/") and i.compress_type == zipfile.ZIP_STORED)
    # Patch the central directory's uncompressed size of that member (offset 24 in its entry).
    pos = data.find(b"PK\x01\x02")
    while True:
        name_len = int.from_bytes(data[pos + 28:pos + 30], "little")
        if data[pos + 46:pos + 46 + name_len].decode() == info.filename:
            break
        pos = data.find(b"PK\x01\x02", pos + 46)
    data[pos + 24:pos + 28] = (info.file_size * 1000).to_bytes(4, "little")
    z.write_bytes(bytes(data))
    r = verify_bundle(z)
    assert any(info.filename[2:] == c.subject and "stored" in c.detail for c in failed(r, "bagit-zip-bomb")), \
        [c for c in r.checks if not c.ok]


# -- item 15c: manifest floods -------------------------------------------------------------------
def _flood_manifest(path: Path, alg: str, target_bytes: int) -> None:
    width = {"sha256": 64, "sha512": 128}[alg]
    digest = "ab" * (width // 2)
    with open(path, "a", encoding="utf-8", newline="") as f:
        written, i = path.stat().st_size, 0
        while written < target_bytes:
            block = "".join(f"{digest}  data/flood/{n:09d}.bin\n" for n in range(i, i + 20000))
            f.write(block)
            written += len(block)
            i += 20000


def _regen_tag_manifests_streaming(bag: Path) -> None:
    import hashlib

    files = sorted(str(p.relative_to(bag)) for p in bag.rglob("*") if p.is_file()
                   and not str(p.relative_to(bag)).startswith("data/") and not p.name.startswith("tagmanifest-"))
    for alg in ("sha256", "sha512"):
        lines = []
        for f in files:
            h = hashlib.new(alg)
            with open(bag / f, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    h.update(chunk)
            lines.append(f"{h.hexdigest()}  {f}\n")
        (bag / f"tagmanifest-{alg}.txt").write_text("".join(lines))


_MEASURE = """
import json, resource, sys
from evidencelock.bundle import verify_bundle
r = verify_bundle(sys.argv[1])
print(json.dumps({"ok": r.ok, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "failed": [[c.name, c.subject, c.detail] for c in r.checks if not c.ok]}))
"""


def _measure(bag: Path) -> dict:
    p = subprocess.run([sys.executable, "-c", _MEASURE, str(bag)], capture_output=True, text=True, timeout=300,
                       cwd=bag.parent)  # not the checkout's folder: the code under test comes from PYTHONPATH
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_huge_manifests_are_streamed_with_bounded_memory(bag: Path) -> None:
    base = _measure(bag)
    assert base["ok"], base["failed"]
    for alg in ("sha256", "sha512"):
        _flood_manifest(bag / f"manifest-{alg}.txt", alg, 128 << 20)
    _regen_tag_manifests_streaming(bag)  # the attacker keeps the tag manifests consistent
    r = _measure(bag)
    assert not r["ok"]
    abandoned = [f for f in r["failed"] if f[0] == "bagit-manifest" and "manifest abandoned" in f[2]]
    assert {f[1] for f in abandoned} == {"manifest-sha256.txt", "manifest-sha512.txt"}, r["failed"][:5]
    # A limit, not a speed: two 128 MiB manifests must not cost their size (or a multiple) in memory.
    assert r["maxrss_kib"] < 300 * 1024, r["maxrss_kib"]
    assert r["maxrss_kib"] - base["maxrss_kib"] < 100 * 1024, (base["maxrss_kib"], r["maxrss_kib"])


def test_manifest_with_overlong_lines_is_refused_line_by_line(bag: Path) -> None:
    from evidencelock.bundle import verify_bundle

    with open(bag / "manifest-sha256.txt", "ab") as f:
        f.write(b"a" * (10 << 20) + b"\n")  # one 10 MiB line, no end of line for a while
    r = verify_bundle(bag)
    assert any("longer than 4096 bytes" in c.detail for c in failed(r, "bagit-manifest")), r.checks


def _patch_central_entry(data: bytearray, name: str, offset: int, value: int) -> None:
    """Overwrite a 4-byte field at ``offset`` in the central-directory entry of ``name``."""
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        name_len = int.from_bytes(data[pos + 28:pos + 30], "little")
        if data[pos + 46:pos + 46 + name_len].decode() == name:
            data[pos + offset:pos + offset + 4] = value.to_bytes(4, "little")
            return
        pos = data.find(b"PK\x01\x02", pos + 46)
    raise AssertionError(name)


def test_member_pointing_into_another_or_the_directory_is_refused(bag: Path, tmp_path: Path) -> None:
    """Two hand patches of a genuine zip's central directory: a member's offset moved onto
    another member's bytes, and a member's compressed size stretched into the directory."""
    from evidencelock.bundle import verify_bundle

    z = _genuine_zip(bag, tmp_path / "g.zip")
    with zipfile.ZipFile(z) as zf:
        infos = zf.infolist()
    tags = [i for i in infos if i.compress_type == zipfile.ZIP_DEFLATED]
    first, second = tags[0], tags[1]

    moved = tmp_path / "moved.zip"
    data = bytearray(z.read_bytes())
    _patch_central_entry(data, second.filename, 42, first.header_offset)  # relative offset of local header
    moved.write_bytes(bytes(data))
    r = verify_bundle(moved)
    assert any(second.filename in c.subject or second.filename in c.detail for c in failed(r, "bagit-zip-overlap")), \
        [c for c in r.checks if not c.ok]

    stretched = tmp_path / "stretched.zip"
    data = bytearray(z.read_bytes())
    last = max(infos, key=lambda i: i.header_offset)
    _patch_central_entry(data, last.filename, 20, last.compress_size + 10_000)  # compressed size
    stretched.write_bytes(bytes(data))
    r = verify_bundle(stretched)
    assert any("central directory" in c.detail and last.filename in c.subject for c in failed(r, "bagit-zip-overlap")), \
        [c for c in r.checks if not c.ok]


def test_file_swapped_for_fifo_after_listing_does_not_hang(tmp_path: Path, vault, key, monkeypatch) -> None:
    import signal

    card, _ = _card(tmp_path)

    def swap() -> None:
        (card / "zzz" / "passwd").unlink()
        os.mkfifo(card / "zzz" / "passwd")  # no writer: a blocking open would wait forever

    def hung(*_):
        raise AssertionError("ingest hung on a FIFO swapped in after the listing")

    _swap_after_listing(monkeypatch, swap)
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(TIMEOUT)
    try:
        rep = _run_ingest(vault, key, card, "c1")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    outs = {Path(o.path).relative_to(card).as_posix(): o for o in rep.outcomes}
    o = outs["zzz/passwd"]  # the inode number may be reused by the FIFO: then fstat's type says it
    assert o.status == "rejected" and ("replaced" in o.reason or "FIFO" in o.reason), o
    assert outs["DCIM/IMG_1.JPG"].status == "preserved"
