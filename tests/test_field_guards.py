"""Guard rails for easy field mistakes that do lasting harm (issue 11), through the real CLI:
the vault ingested into itself, `init` on an unmounted drive, an empty source (an unmounted
card), a mistyped case name; and an ingest summary a person reads (docs/vault-layout.md §5.2-5.4).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from conftest import PASSPHRASE, run_cli
from mediagen import make_jpeg

TIMEOUT = 120


def _init(vault: Path, *extra: str) -> None:
    r = run_cli("init", "--custodian", "Field Team A", *extra, vault=vault)
    assert r.code == 0, r.stderr


def _entries(vault: Path) -> list[dict]:
    r = run_cli("log", "--json", vault=vault)
    assert r.code == 0, r.stderr
    return r.json()


def _objects(vault: Path) -> list[Path]:
    return [p for p in (vault / "objects").rglob("*") if p.is_file()]


def _card(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"file{i}.bin").write_bytes(os.urandom(1000 + i))
    return root


# -- 1. the vault is never ingested into itself ------------------------------------------------


def _assert_refused_as_vault(r, source: Path, vault: Path) -> None:
    assert r.code == 2, (r.stdout, r.stderr)
    text = " ".join(r.stderr.split())  # rich may wrap a long line
    assert "refusing to ingest the vault into itself" in text, r.stderr
    assert str(source) in text and str(vault) in text, r.stderr


def test_ingest_refuses_a_folder_containing_the_vault(tmp_path: Path) -> None:
    """The classic slip: the vault lives on the laptop's evidence drive and the whole drive is
    ingested; it would preserve the live ledger and the private key file as evidence."""
    drive = _card(tmp_path / "drive")
    vault = drive / "cases" / "vault"
    vault.parent.mkdir()
    _init(vault)
    before = _entries(vault)
    r = run_cli("ingest", drive, "--case", "C1", vault=vault, timeout=TIMEOUT)
    _assert_refused_as_vault(r, drive, vault)
    assert "contains" in r.stderr
    assert _entries(vault) == before and _objects(vault) == []  # refused BEFORE anything is recorded


@pytest.mark.parametrize("which", ["vault", "keys", "objects", "vault.json", "key-file"])
def test_ingest_refuses_the_vault_or_a_path_inside_it(tmp_path: Path, which: str) -> None:
    vault = tmp_path / "vault"
    _init(vault)
    key_file = next((vault / "keys").glob("*.key.pem"))
    source = {"vault": vault, "keys": vault / "keys", "objects": vault / "objects",
              "vault.json": vault / "vault.json", "key-file": key_file}[which]
    before = _entries(vault)
    r = run_cli("ingest", source, "--case", "C1", vault=vault, timeout=TIMEOUT)
    _assert_refused_as_vault(r, source, vault)
    assert _entries(vault) == before and _objects(vault) == []


def test_ingest_refuses_the_vault_under_another_spelling(tmp_path: Path) -> None:
    """Compared by device and inode, not by path strings: the vault named through a symlink
    while the source is named by its real path (and the other way round) is still found."""
    drive = _card(tmp_path / "drive")
    vault_real = drive / "vault"
    _init(vault_real)
    link = tmp_path / "link-to-drive"
    link.symlink_to(drive)
    before = _entries(vault_real)
    # vault named by a symlinked path, source by its real path: the walk finds the vault's inode
    r = run_cli("ingest", drive, "--case", "C1", vault=link / "vault", timeout=TIMEOUT)
    _assert_refused_as_vault(r, drive, link / "vault")
    # source inside the vault, named through the symlink and `..`
    inside = link / "vault" / "keys" / ".." / "objects"
    r = run_cli("ingest", inside, "--case", "C1", vault=vault_real, timeout=TIMEOUT)
    _assert_refused_as_vault(r, Path(os.path.abspath(inside)), vault_real)
    assert _entries(vault_real) == before and _objects(vault_real) == []


def test_ingest_refuses_a_bind_mount_of_the_vault(tmp_path: Path) -> None:
    """A bind mount shows the vault folder under a path that shares nothing with the vault's:
    the same device and inode give it away (needs root for mount(8); skipped otherwise)."""
    vault = tmp_path / "vault"
    _init(vault)
    card = _card(tmp_path / "card")
    (card / "mnt").mkdir()
    p = subprocess.run(["mount", "--bind", str(vault), str(card / "mnt")], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {p.stderr.strip()}")
    try:
        before = _entries(vault)
        r = run_cli("ingest", card, "--case", "C1", vault=vault, timeout=TIMEOUT)
        _assert_refused_as_vault(r, card, vault)
        r = run_cli("ingest", card / "mnt" / "keys", "--case", "C1", vault=vault, timeout=TIMEOUT)
        _assert_refused_as_vault(r, card / "mnt" / "keys", vault)
        assert _entries(vault) == before and _objects(vault) == []
    finally:
        subprocess.run(["umount", str(card / "mnt")], check=True)


def test_ingest_refuses_a_hard_link_to_the_private_key(tmp_path: Path) -> None:
    """A hard link of the vault's private key file on the card (same inode, another path
    outside the vault) is the vault's file all the same: refused, nothing recorded."""
    vault = tmp_path / "vault"
    _init(vault)
    card = _card(tmp_path / "card")
    key_file = next((vault / "keys").glob("*.key.pem"))
    os.link(key_file, card / "backup.pem")
    before = _entries(vault)
    r = run_cli("ingest", card, "--case", "C1", vault=vault, timeout=TIMEOUT)
    _assert_refused_as_vault(r, card, vault)
    assert "hard link" in r.stderr
    assert _entries(vault) == before and _objects(vault) == []


def test_the_vault_guard_holds_with_a_postgresql_ledger(tmp_path: Path) -> None:
    """With the ledger in PostgreSQL the vault folder still holds keys and objects."""
    url = os.environ.get("EVIDENCELOCK_TEST_PG_URL")
    if not url:
        pytest.skip("EVIDENCELOCK_TEST_PG_URL is not set (no PostgreSQL server to test against)")
    import secrets

    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = "evl_test_" + secrets.token_hex(6)
    kw = {"dbname": base.database or "postgres", "autocommit": True, "user": base.username,
          **{k: (v if isinstance(v, str) else v[0]) for k, v in base.query.items()}}
    admin = psycopg.connect(**{k: v for k, v in kw.items() if v is not None})
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        drive = _card(tmp_path / "drive")
        vault = drive / "vault"
        _init(vault, "--ledger-url", base.set(database=name).render_as_string(hide_password=False))
        assert not (vault / "ledger.sqlite").exists()
        before = _entries(vault)
        r = run_cli("ingest", drive, "--case", "C1", vault=vault, timeout=TIMEOUT)
        _assert_refused_as_vault(r, drive, vault)
        assert _entries(vault) == before and _objects(vault) == []
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# -- 2. init never creates the parent folders -----------------------------------------------------


def test_init_does_not_create_missing_parent_folders(tmp_path: Path) -> None:
    """`/mnt/card/vault` with /mnt/card missing (an encrypted drive not mounted) must not
    silently become a vault (and a private key) on the plain disk."""
    mount = tmp_path / "mnt" / "card"
    r = run_cli("init", "--custodian", "Field Team A", vault=mount / "vault")
    assert r.code == 2, (r.stdout, r.stderr)
    text = " ".join(r.stderr.split())
    assert f"the parent folder {mount} does not exist" in text and "is the drive mounted?" in text, r.stderr
    assert not (tmp_path / "mnt").exists()  # nothing created, not even the first missing parent
    # The vault folder itself is still created when its parent exists.
    (tmp_path / "mnt" / "card").mkdir(parents=True)
    assert run_cli("init", "--custodian", "Field Team A", vault=mount / "vault").code == 0
    assert (mount / "vault" / "vault.json").is_file()


# -- 3. an empty source is bad input ---------------------------------------------------------


def test_empty_source_folder_is_refused_and_nothing_recorded(tmp_path: Path) -> None:
    """An unmounted card is an empty mount point: exit 2 naming it, nothing recorded."""
    vault = tmp_path / "vault"
    _init(vault)
    card = tmp_path / "media" / "sdcard"
    (card / "DCIM").mkdir(parents=True)  # folders, but no file at all
    before = _entries(vault)
    r = run_cli("ingest", card, "--case", "C1", vault=vault, timeout=TIMEOUT)
    assert r.code == 2, (r.stdout, r.stderr)
    text = " ".join(r.stderr.split())
    assert f"no regular files found under {card}" in text and "mounted" in text, r.stderr
    assert _entries(vault) == before
    # Only a symlink in it: still no regular file (the link is not followed).
    (card / "link").symlink_to("/etc/hostname")
    r = run_cli("ingest", card, "--case", "C1", "--json", vault=vault, timeout=TIMEOUT)
    assert r.code == 2 and r.json()["ok"] is False and "no regular files" in r.json()["error"]["message"]
    assert "symlink" in r.json()["error"]["message"]  # what was skipped is said, not hidden
    assert _entries(vault) == before


def test_one_empty_path_among_several_is_named_the_others_preserved_exit_2(tmp_path: Path) -> None:
    """Decision (docs/vault-layout.md §5.2): like a rejected file, an empty path does not stop
    the others from being preserved, but the run is not "all good": named, exit 2."""
    vault = tmp_path / "vault"
    _init(vault)
    full = _card(tmp_path / "card1", 3)
    empty = tmp_path / "card2"
    empty.mkdir()
    r = run_cli("ingest", full, empty, "--case", "C1", vault=vault, timeout=TIMEOUT)
    assert r.code == 2, (r.stdout, r.stderr)
    assert any(str(empty) in line and "no regular file" in line for line in r.stderr.splitlines()), r.stderr
    assert "3 preserved" in r.stdout and "1 empty path" in r.stdout
    assert len([e for e in _entries(vault) if e["type"] == "ingest"]) == 3
    rj = run_cli("ingest", full, empty, "--case", "C1", "--json", vault=vault, timeout=TIMEOUT)
    assert rj.code == 2 and rj.json()["empty_paths"] == [str(empty)] and rj.json()["already_recorded"] == 3


# -- 4. a new case name needs confirmation ----------------------------------------------------


def test_new_case_name_needs_new_case_flag_without_a_terminal(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    _init(vault)
    card = _card(tmp_path / "card")
    # An empty vault: the first case needs no confirmation (nothing to mistype it against).
    assert run_cli("ingest", card, "--case", "SY-2014-0430", vault=vault, timeout=TIMEOUT).code == 0
    before = _entries(vault)
    other = _card(tmp_path / "card2")
    r = run_cli("ingest", other, "--case", "SY-2014-043O", vault=vault, timeout=TIMEOUT)  # a typo: O for 0
    assert r.code == 2, (r.stdout, r.stderr)
    text = " ".join(r.stderr.split())
    assert "case 'SY-2014-043O' is new" in text and "known cases: SY-2014-0430" in text and "--new-case" in text
    assert _entries(vault) == before
    # A known case needs nothing; --new-case starts a new one.
    assert run_cli("ingest", other, "--case", "SY-2014-0430", vault=vault, timeout=TIMEOUT).code == 0
    r = run_cli("ingest", other, "--case", "SY-2014-0501", "--new-case", vault=vault, timeout=TIMEOUT)
    assert r.code == 0, r.stderr
    assert {e["case"] for e in _entries(vault) if e["type"] == "ingest"} == {"SY-2014-0430", "SY-2014-0501"}


def _run_on_terminal(args: list[str], answer: bytes, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Run the CLI with stdin on a pseudo-terminal, answer its question, return (code, output)."""
    master, slave = pty.openpty()
    env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": PASSPHRASE, "COLUMNS": "200"}
    p = subprocess.Popen([sys.executable, "-m", "evidencelock", *args], stdin=slave, stdout=slave, stderr=slave,
                         env=env, close_fds=True)
    os.close(slave)
    output = b""
    answered = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break  # the child closed the terminal
                if not chunk:
                    break
                output += chunk
                if not answered and b"Create it? [y/N]" in output:
                    os.write(master, answer + b"\n")
                    answered = True
            elif p.poll() is not None:
                break
        code = p.wait(timeout=10)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
    return code, output.decode("utf-8", "replace")


@pytest.mark.parametrize("answer,code", [(b"y", 0), (b"n", 2), (b"", 2)])
def test_new_case_name_is_asked_on_a_terminal(tmp_path: Path, answer: bytes, code: int) -> None:
    vault = tmp_path / "vault"
    _init(vault)
    assert run_cli("ingest", _card(tmp_path / "a"), "--case", "A", vault=vault, timeout=TIMEOUT).code == 0
    assert run_cli("ingest", _card(tmp_path / "b"), "--case", "B", "--new-case", vault=vault, timeout=TIMEOUT).code == 0
    before = _entries(vault)
    got, output = _run_on_terminal(["--vault", str(vault), "ingest", str(_card(tmp_path / "c")), "--case", "Z"], answer)
    assert "Case 'Z' is new. Known cases: A, B. Create it? [y/N]" in output, output
    assert got == code, output
    after = _entries(vault)
    if code == 0:
        assert {e["case"] for e in after[len(before):]} == {"Z"}
    else:
        assert after == before and "not created" in output


# -- 5. an ingest summary a person reads ------------------------------------------------------


def _similar_card(root: Path) -> Path:
    """Three photos, each with a resized and a recompressed copy, and two documents."""
    root.mkdir(parents=True)
    for i in range(3):
        src = make_jpeg(root / f"IMG_000{i}.JPG", 100 + i)
        img = cv2.imread(str(src))
        cv2.imwrite(str(root / f"IMG_000{i}_small.jpg"), cv2.resize(img, (320, 240)), [cv2.IMWRITE_JPEG_QUALITY, 70])
        cv2.imwrite(str(root / f"IMG_000{i}_q50.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 50])
    (root / "notes.txt").write_text("met A.K. at the school\n")
    (root / "list.csv").write_text("a,b\n")
    return root


def test_ingest_summarises_near_duplicates_and_non_media_by_name(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    _init(vault)
    card = _similar_card(tmp_path / "card")
    r = run_cli("ingest", card, "--case", "C1", vault=vault, timeout=TIMEOUT)
    assert r.code == 0, r.stderr
    lines = r.stderr.splitlines()
    near = [ln for ln in lines if "near-duplicate pair" in ln]
    assert len(near) == 1, r.stderr  # one line, not one per match
    assert "9 near-duplicate pairs among 9 files" in near[0], near  # 3 photos x 3 versions: 3 pairs each
    assert "IMG_000" in near[0] and " ~ " in near[0] and "--verbose" in near[0]
    assert not any("distance" in ln for ln in lines), r.stderr  # details only on request
    assert not re.search(r"[0-9a-f]{16}…", r.stderr), r.stderr  # names, not hashes
    media = [ln for ln in lines if "not recognised" in ln]
    assert len(media) == 1 and "list.csv" in media[0] and "notes.txt" in media[0], r.stderr
    assert "11 files, 11 preserved" in r.stdout

    # --verbose: one line per pair, with both names and the distance.
    card2 = tmp_path / "card2"
    card2.mkdir()
    img = cv2.imread(str(card / "IMG_0001.JPG"))
    cv2.imwrite(str(card2 / "copy.jpg"), cv2.resize(img, (400, 300)), [cv2.IMWRITE_JPEG_QUALITY, 60])
    v = run_cli("ingest", card2, "--case", "C1", "--verbose", vault=vault, timeout=TIMEOUT)
    assert v.code == 0, v.stderr
    pairs = [ln for ln in v.stderr.splitlines() if ln.strip().startswith("similar")]
    assert len(pairs) == 3 and all("copy.jpg ~ IMG_0001" in ln and "distance" in ln for ln in pairs), v.stderr

    # --json keeps every match in full, now with the matched item's recorded names.
    card3 = tmp_path / "card3"
    card3.mkdir()
    cv2.imwrite(str(card3 / "copy2.jpg"), cv2.resize(img, (480, 360)), [cv2.IMWRITE_JPEG_QUALITY, 55])
    j = run_cli("ingest", card3, "--case", "C1", "--json", vault=vault, timeout=TIMEOUT)
    assert j.code == 0, j.stderr
    nds = j.json()["outcomes"][0]["near_duplicates"]
    assert len(nds) == 4 and all(len(nd["item"]) == 64 and "distance" in nd and nd["names"] for nd in nds), nds
