"""Bad input: every case gets a clear, named message and the right exit code, never a hang.

Real files, FIFOs, sockets, symlinks and odd names on the real file system; the real CLI in a
subprocess (with a timeout, so a hang is a failure, not a stuck CI job).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, run_cli

from evidencelock import store as store_mod
from evidencelock import ingest as ingest_mod
from evidencelock.audit import verify_vault
from evidencelock.errors import CustodianKeyError, InputError
from evidencelock.ingest import ingest
from evidencelock.vault import Vault

TIMEOUT = 60  # seconds: an ingest of a few small files that takes longer is hanging


@pytest.fixture
def vp(tmp_path: Path) -> Path:
    """A vault created by the CLI."""
    path = tmp_path / "vault"
    r = run_cli("init", "--custodian", "Field Team A", vault=path)
    assert r.code == 0, r.stderr
    return path


def entries(vault_path: Path) -> list[tuple[int, bytes]]:
    with sqlite3.connect(vault_path / "ledger.sqlite") as con:
        return [(s, bytes(c)) for s, c in con.execute("SELECT seq, canonical FROM entries ORDER BY seq")]


def objects(vault_path: Path) -> list[str]:
    return sorted(p.name for p in (vault_path / "objects").rglob("*") if p.is_file())


def staged(vault_path: Path) -> list[Path]:
    return [p for p in (vault_path / "staging").rglob("*") if p.is_file()]


def ingest_json(vp: Path, *paths, extra: tuple = (), expect: int = 0, env: dict | None = None) -> dict:
    r = run_cli("ingest", *paths, "--case", "c1", "--no-media", "--json", *extra, vault=vp, env=env, timeout=TIMEOUT)
    assert r.code == expect, f"exit {r.code}\n{r.stdout}\n{r.stderr}"
    return r.json()


def by_name(report: dict) -> dict[str, dict]:
    return {os.path.basename(o["path"]): o for o in report["outcomes"]}


def assert_verifies(vp: Path) -> None:
    r = run_cli("verify", "--json", vault=vp)
    assert r.code == 0, r.stdout + r.stderr


# -- unreadable files -----------------------------------------------------------------------
def _unprivileged_prefix(probe: Path) -> list[str] | None:
    """Command prefix under which ``probe`` (mode 000) cannot be opened, or None.

    Tests run as root in CI, and root ignores file permissions.  ``setpriv`` keeps uid 0 (so
    the vault stays writable) but drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    bounding set, after which permissions apply to root as to anyone.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    prefix = [setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    p = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r}, 'rb')"], capture_output=True)
    return prefix if p.returncode != 0 and b"PermissionError" in p.stderr else None


def test_unreadable_file_and_folder_rejected_others_preserved(tmp_path: Path, vp: Path) -> None:
    src = tmp_path / "card"
    (src / "locked-dir").mkdir(parents=True)
    (src / "ok.jpg").write_bytes(b"readable evidence")
    (src / "secret.jpg").write_bytes(b"unreadable evidence")
    (src / "locked-dir" / "inner.jpg").write_bytes(b"inside a locked folder")
    os.chmod(src / "secret.jpg", 0)
    os.chmod(src / "locked-dir", 0)
    try:
        prefix = _unprivileged_prefix(src / "secret.jpg")
        if prefix is None:
            pytest.skip("running as root without a usable setpriv: cannot make a file unreadable")
        env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": PASSPHRASE}
        p = subprocess.run([*prefix, sys.executable, "-m", "evidencelock", "--vault", str(vp), "ingest", str(src),
                            "--case", "c1", "--no-media", "--json"], capture_output=True, text=True, env=env,
                           timeout=TIMEOUT)
    finally:
        os.chmod(src / "secret.jpg", 0o644)
        os.chmod(src / "locked-dir", 0o755)
    assert p.returncode == 2, p.stdout + p.stderr  # a rejected file makes the run exit 2
    import json

    rep = json.loads(p.stdout)
    outs = by_name(rep)
    assert outs["secret.jpg"]["status"] == "rejected"
    assert "permission denied" in outs["secret.jpg"]["reason"].lower()
    assert outs["locked-dir"]["status"] == "rejected" and "Permission denied" in outs["locked-dir"]["reason"]
    assert outs["ok.jpg"]["status"] == "preserved"
    # Nothing recorded for the rejected file: only the readable one is in the store.
    assert objects(vp) == sorted([hashlib.sha256(b"readable evidence").hexdigest()])
    assert len(entries(vp)) == 2
    assert_verifies(vp)
    # Once readable, a rerun preserves the rest and does not duplicate the first.
    rep2 = ingest_json(vp, src)
    assert by_name(rep2)["ok.jpg"]["status"] == "already-recorded"
    assert by_name(rep2)["secret.jpg"]["status"] == "preserved"
    assert by_name(rep2)["inner.jpg"]["status"] == "preserved"


# -- files that change or vanish while being read --------------------------------------------
def _lib_vault(tmp_path: Path, clock) -> Vault:
    Vault.init(tmp_path / "v", custodian="A", passphrase=PASSPHRASE, now=clock()).close()
    return Vault.open(tmp_path / "v", writable=True)


@pytest.mark.parametrize("when", ["grows-before-read", "grows-after-read", "rewritten-same-size"])
def test_file_changes_while_being_read(tmp_path: Path, clock, monkeypatch, when: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    victim = src / "growing.mp4"
    victim.write_bytes(b"v" * 200_000)
    (src / "stable.jpg").write_bytes(b"stable")
    orig = store_mod.ObjectStore.stage_fd

    def stage_fd(self, src_fd, **kw):
        target = os.readlink(f"/proc/self/fd/{src_fd}")
        if target.endswith("growing.mp4") and when == "grows-before-read":
            with open(victim, "ab") as f:  # after open+fstat, before the bytes are read
                f.write(b"appended by the phone still recording")
        staged = orig(self, src_fd, **kw)
        if target.endswith("growing.mp4") and when == "grows-after-read":
            with open(victim, "ab") as f:  # after the read, before the final fstat
                f.write(b"more")
        elif target.endswith("growing.mp4") and when == "rewritten-same-size":
            with open(victim, "r+b") as f:
                f.write(b"X")
            st = os.stat(victim)
            os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        return staged

    monkeypatch.setattr(store_mod.ObjectStore, "stage_fd", stage_fd)
    with _lib_vault(tmp_path, clock) as v:
        key = v.unlock(PASSPHRASE)
        rep = ingest(v, [src], key=key, case="c", now=clock, extract_media=False)
        outs = {os.path.basename(o.path): o for o in rep.outcomes}
        assert outs["growing.mp4"].status == "rejected"
        assert "changed while being read" in outs["growing.mp4"].reason
        assert "run the ingest again" in outs["growing.mp4"].reason
        assert outs["stable.jpg"].status == "preserved"
        assert not rep.ok
        assert v.ledger.tail().size == 2  # genesis + stable.jpg only
        assert objects(v.root) == [hashlib.sha256(b"stable").hexdigest()]
        assert staged(v.root) == [], "the staged copy of a changed file is discarded"
        assert verify_vault(v).ok


def test_file_vanishes_before_it_is_read(tmp_path: Path, clock, monkeypatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "gone.jpg").write_bytes(b"deleted by the phone")
    (src / "kept.jpg").write_bytes(b"kept")
    orig_walk = ingest_mod.walk

    def walk(*a, **kw):
        found = orig_walk(*a, **kw)
        (src / "gone.jpg").unlink()  # after the walk listed it, before it is opened
        return found

    monkeypatch.setattr(ingest_mod, "walk", walk)
    with _lib_vault(tmp_path, clock) as v:
        rep = ingest(v, [src], key=v.unlock(PASSPHRASE), case="c", now=clock, extract_media=False)
        outs = {os.path.basename(o.path): o for o in rep.outcomes}
        assert outs["gone.jpg"].status == "rejected" and "vanished" in outs["gone.jpg"].reason
        assert outs["kept.jpg"].status == "preserved"
        assert v.ledger.tail().size == 2


def test_file_grows_under_a_real_writer(tmp_path: Path, vp: Path) -> None:
    """A real concurrent writer (a thread appending while the CLI ingests a 32 MiB file)."""
    src = tmp_path / "src"
    src.mkdir()
    big = src / "recording.mp4"
    with open(big, "wb") as f:
        f.write(os.urandom(1 << 20) * 32)
    stop = threading.Event()

    def writer() -> None:
        with open(big, "ab", buffering=0) as f:
            while not stop.is_set():
                f.write(b"x" * 512)
                time.sleep(0.0005)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        rep = ingest_json(vp, src, expect=2)
    finally:
        stop.set()
        t.join()
    out = rep["outcomes"][0]
    assert out["status"] == "rejected" and "changed while being read" in out["reason"]
    assert len(entries(vp)) == 1 and objects(vp) == []
    assert_verifies(vp)


# -- special files ----------------------------------------------------------------------------
def test_fifo_and_socket_inside_folder_are_skipped_without_hanging(tmp_path: Path, vp: Path) -> None:
    src = tmp_path / "dump"
    src.mkdir()
    os.mkfifo(src / "pipe")  # opening it for reading would block forever without a writer
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "control.sock"))
    (src / "video.mp4").write_bytes(b"frames")
    try:
        rep = ingest_json(vp, src)  # timeout: a hang fails the test
    finally:
        sock.close()
    outs = by_name(rep)
    assert outs["pipe"]["status"] == "skipped" and "FIFO" in outs["pipe"]["reason"]
    assert outs["control.sock"]["status"] == "skipped" and "socket" in outs["control.sock"]["reason"]
    assert outs["video.mp4"]["status"] == "preserved"
    assert rep["skipped"] == 2 and rep["preserved"] == 1
    r = run_cli("ingest", src, "--new-case", "--case", "c2", "--no-media", vault=vp, timeout=TIMEOUT)
    assert "pipe" in r.stderr and "FIFO" in r.stderr  # the human output says what was skipped


def test_fifo_named_directly_is_bad_input(tmp_path: Path, vp: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    before = entries(vp)
    r = run_cli("ingest", fifo, "--case", "c1", vault=vp, timeout=TIMEOUT)
    assert r.code == 2
    assert "pipe" in r.stderr and "FIFO" in r.stderr
    assert entries(vp) == before


def test_device_named_directly_is_bad_input(vp: Path) -> None:
    r = run_cli("ingest", "/dev/zero", "--case", "c1", "--json", vault=vp, timeout=TIMEOUT)
    assert r.code == 2
    err = r.json()["error"]
    assert err["subject"] == "/dev/zero" and "character device" in err["message"]


# -- symlinks ---------------------------------------------------------------------------------
def test_symlinks_not_followed_by_default(tmp_path: Path, vp: Path) -> None:
    outside = tmp_path / "outside-secret.txt"
    outside.write_bytes(b"not part of the evidence")
    src = tmp_path / "src"
    src.mkdir()
    (src / "real.jpg").write_bytes(b"real photo")
    os.symlink(outside, src / "escape")
    os.symlink("real.jpg", src / "alias.jpg")
    os.symlink("/nonexistent/target", src / "dangling")
    rep = ingest_json(vp, src)
    outs = by_name(rep)
    assert outs["escape"]["status"] == "skipped" and "points outside the ingested folder" in outs["escape"]["reason"]
    assert str(outside) in outs["escape"]["reason"]  # says where it pointed
    assert outs["alias.jpg"]["status"] == "skipped" and "not followed" in outs["alias.jpg"]["reason"]
    assert outs["dangling"]["status"] == "skipped"
    assert outs["real.jpg"]["status"] == "preserved"
    assert hashlib.sha256(b"not part of the evidence").hexdigest() not in objects(vp)


def test_follow_symlinks_inside_the_tree_only(tmp_path: Path, vp: Path) -> None:
    outside = tmp_path / "outside-secret.txt"
    outside.write_bytes(b"not part of the evidence")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "real.jpg").write_bytes(b"real photo")
    os.symlink("../real.jpg", src / "sub" / "alias.jpg")
    os.symlink(outside, src / "escape")
    rep = ingest_json(vp, src, extra=("--follow-symlinks",))
    outs = by_name(rep)
    assert outs["escape"]["status"] == "skipped" and "outside" in outs["escape"]["reason"]
    statuses = sorted(o["status"] for o in rep["outcomes"] if o["status"] != "skipped")
    assert statuses == ["duplicate", "preserved"]  # the link's target, recorded under the link's name too
    r = run_cli("log", "--json", vault=vp)
    paths = sorted(e["body"]["source"]["path"] for e in r.json() if e["type"] == "ingest")
    assert paths == ["real.jpg", "sub/alias.jpg"]
    assert hashlib.sha256(b"not part of the evidence").hexdigest() not in objects(vp)


# -- names ----------------------------------------------------------------------------------
def test_empty_files_are_preserved_and_flagged(tmp_path: Path, vp: Path) -> None:
    src = tmp_path / "phone"
    (src / "a").mkdir(parents=True)
    (src / "a" / "zero.jpg").write_bytes(b"")
    (src / "zero2.mp4").write_bytes(b"")
    rep = ingest_json(vp, src)
    empty = hashlib.sha256(b"").hexdigest()
    for o in rep["outcomes"]:
        assert o["status"] in ("preserved", "duplicate") and o["sha256"] == empty and "empty-file" in o["flags"]
    assert objects(vp) == [empty]
    r = run_cli("show", empty[:12], "--json", vault=vp)
    assert r.code == 0
    custody = r.json()["custody"]
    assert len(custody) == 2 and all("empty-file" in c["body"]["flags"] and c["body"]["size"] == 0 for c in custody)
    r = run_cli("ingest", src, "--new-case", "--case", "c9", "--no-media", vault=vp)
    assert "empty-file" in r.stderr  # flagged in the human output too


def test_non_utf8_names_round_trip_exactly(tmp_path: Path, vp: Path) -> None:
    src = tmp_path / "latin1"
    src.mkdir()
    names = [b"caf\xe9.jpg", b"\xff\xfe raw bytes \x80.mp4", "ok-ünïcode.jpg".encode()]
    for i, n in enumerate(names):
        with open(os.path.join(os.fsencode(src), n), "wb") as f:
            f.write(b"payload %d" % i)
    rep = ingest_json(vp, src)
    assert rep["preserved"] == 3
    assert any("\\xe9" in o["path"] for o in rep["outcomes"])  # shown escaped, never mangled
    log = run_cli("log", "--json", vault=vp).json()
    recorded = {}
    for e in log:
        if e["type"] == "ingest":
            s = e["body"]["source"]
            raw = base64.b64decode(s["path_b64"]) if "path_b64" in s else s["path"].encode()
            recorded[raw] = e["body"]["item"]
    assert set(recorded) == set(names)
    for i, n in enumerate(names):
        assert recorded[n] == hashlib.sha256(b"payload %d" % i).hexdigest()
    # The b64 form is there exactly when the name is not UTF-8.
    has_b64 = {base64.b64decode(e["body"]["source"]["path_b64"]) for e in log if "path_b64" in e["body"].get("source", {})}
    assert has_b64 == set(names[:2])
    assert_verifies(vp)
    # A rerun finds them already recorded (the identity uses the exact bytes).
    assert ingest_json(vp, src)["already_recorded"] == 3


def test_long_names_and_deep_paths(tmp_path: Path, vp: Path) -> None:
    src = tmp_path / "deep"
    src.mkdir()
    long_name = "n" * 251 + ".jpg"  # 255 bytes: the usual file-name limit
    (src / long_name).write_bytes(b"long name")
    # A deep path still under PATH_MAX (4096): 30 levels of 100-byte folder names.
    d = src
    for i in range(30):
        d = d / (f"{i:02d}" + "d" * 98)
    d.mkdir(parents=True)
    (d / "deep.jpg").write_bytes(b"deep file")
    rep = ingest_json(vp, src)
    assert rep["preserved"] == 2 and rep["rejected"] == 0
    log = run_cli("log", "--json", vault=vp).json()
    paths = {e["body"]["source"]["path"] for e in log if e["type"] == "ingest"}
    assert long_name in paths
    assert os.path.relpath(d / "deep.jpg", src) in paths
    assert_verifies(vp)


def test_path_beyond_path_max_is_named_not_crashed(tmp_path: Path, vp: Path) -> None:
    """A folder nested beyond PATH_MAX cannot be opened by absolute path: named, others kept."""
    src = tmp_path / "deeper"
    src.mkdir()
    (src / "shallow.jpg").write_bytes(b"shallow")
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(45):  # 45 * 101 bytes > 4096
            os.mkdir("x" * 100, dir_fd=fd)
            nfd = os.open("x" * 100, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        wfd = os.open("too-deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(wfd, b"too deep")
        os.close(wfd)
    finally:
        os.close(fd)
    try:
        r = run_cli("ingest", src, "--case", "c1", "--no-media", "--json", vault=vp, timeout=TIMEOUT)
        assert r.code in (0, 2), r.stderr
        rep = r.json()
        outs = by_name(rep)
        assert outs["shallow.jpg"]["status"] == "preserved"
        too_deep = hashlib.sha256(b"too deep").hexdigest()
        if too_deep not in objects(vp):
            # Not preserved: then it must be named as rejected, never silently dropped.
            assert r.code == 2
            rejected = [o for o in rep["outcomes"] if o["status"] == "rejected"]
            assert rejected and all(o["reason"] for o in rejected)
    finally:
        subprocess.run(["rm", "-rf", str(src)], check=False)


# -- bad arguments, bad vaults, bad keys -------------------------------------------------------
def test_path_that_does_not_exist(tmp_path: Path, vp: Path) -> None:
    (tmp_path / "real.jpg").write_bytes(b"x")
    before = entries(vp)
    r = run_cli("ingest", tmp_path / "real.jpg", tmp_path / "no-such-folder", "--case", "c1", "--json", vault=vp)
    assert r.code == 2
    err = r.json()["error"]
    assert err["subject"].endswith("no-such-folder") and "no such file" in err["message"]
    assert entries(vp) == before, "nothing is recorded when any named path is bad"
    assert objects(vp) == []


def test_missing_vault(tmp_path: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(b"x")
    for args in (("ingest", tmp_path / "f.jpg", "--case", "c"), ("verify",), ("log",)):
        r = run_cli(*args, vault=tmp_path / "no-vault")
        assert r.code == 2, r.stderr
        assert "no evidencelock vault here" in r.stderr
        assert "evidencelock init" in r.stderr  # the hint says what to do
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "no-vault").exists(), "a missing vault is not created by accident"


def test_wrong_passphrase_writes_nothing(tmp_path: Path, vp: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(b"evidence")
    before = entries(vp)
    r = run_cli("ingest", tmp_path / "f.jpg", "--case", "c1", vault=vp, env={"EVIDENCELOCK_PASSPHRASE": "wrong"})
    assert r.code == 2
    assert "wrong passphrase" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("audit", vault=vp, env={"EVIDENCELOCK_PASSPHRASE": "wrong"})
    assert r.code == 2 and "wrong passphrase" in r.stderr
    assert entries(vp) == before
    assert objects(vp) == [] and staged(vp) == []


def test_no_passphrase_and_no_terminal(tmp_path: Path, vp: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(b"evidence")
    env = {k: v for k, v in os.environ.items() if k != "EVIDENCELOCK_PASSPHRASE"}
    p = subprocess.run([sys.executable, "-m", "evidencelock", "--vault", str(vp), "ingest", str(tmp_path / "f.jpg"),
                        "--case", "c1"], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                       timeout=TIMEOUT)
    assert p.returncode == 2 and "EVIDENCELOCK_PASSPHRASE" in p.stderr
    assert len(entries(vp)) == 1


def test_missing_key_file(tmp_path: Path, vp: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(b"evidence")
    for key in (vp / "keys").glob("*.key.pem"):
        key.unlink()
    before = entries(vp)
    r = run_cli("ingest", tmp_path / "f.jpg", "--case", "c1", "--json", vault=vp)
    assert r.code == 2
    err = r.json()["error"]
    assert err["type"] == "CustodianKeyError" and "key file not found" in err["message"]
    assert err["subject"].endswith(".key.pem")
    assert entries(vp) == before and objects(vp) == []
    # Verification needs no private key.
    assert_verifies(vp)


def test_damaged_key_file(vault: Vault) -> None:
    path = vault.key_path(vault.config.default_custodian)
    os.chmod(path, 0o600)
    path.write_bytes(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\ngarbage\n-----END ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(CustodianKeyError, match="wrong passphrase or damaged key file"):
        vault.unlock(PASSPHRASE)


def test_corrupted_sqlite_ledger(tmp_path: Path, vp: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(b"evidence")
    db = vp / "ledger.sqlite"
    for side in ("-wal", "-shm"):
        assert not (vp / f"ledger.sqlite{side}").exists() or True
    with open(db, "r+b") as f:
        f.write(b"this is no database at all!!")  # overwrite the 16-byte SQLite header and more
    damaged = db.read_bytes()
    for args in (("verify",), ("ingest", tmp_path / "f.jpg", "--case", "c1"), ("log",)):
        r = run_cli(*args, vault=vp)
        assert r.code == 2, (args, r.stdout, r.stderr)
        assert "damaged or not a database" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert db.read_bytes() == damaged, "nothing was written to the damaged ledger"
    assert objects(vp) == [] and staged(vp) == []


def test_missing_ledger_file(tmp_path: Path, vp: Path) -> None:
    (vp / "ledger.sqlite").unlink()
    r = run_cli("verify", vault=vp)
    assert r.code == 2 and "ledger database is missing" in r.stderr
    assert not (vp / "ledger.sqlite").exists(), "an empty ledger is never created in its place"


@pytest.mark.parametrize("case", ["", "   ", "x" * 257])
def test_bad_case_name(tmp_path: Path, vp: Path, case: str) -> None:
    (tmp_path / "f.jpg").write_bytes(b"evidence")
    before = entries(vp)
    r = run_cli("ingest", tmp_path / "f.jpg", "--case", case, vault=vp)
    assert r.code == 2
    assert "case name" in r.stderr
    assert entries(vp) == before and objects(vp) == []


def test_bad_case_name_library(vault: Vault, key, clock, tmp_path: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(b"evidence")
    with pytest.raises(InputError, match="case name"):
        ingest(vault, [tmp_path / "f.jpg"], key=key, case=" ", now=clock)
    assert vault.ledger.tail().size == 1


def test_init_refuses_existing_vault_and_empty_custodian(tmp_path: Path, vp: Path) -> None:
    r = run_cli("init", "--custodian", "Again", vault=vp)
    assert r.code == 2 and "already exists" in r.stderr
    r = run_cli("init", "--custodian", "  ", vault=tmp_path / "new")
    assert r.code == 2 and "custodian name" in r.stderr
    r = run_cli("init", "--custodian", "X", vault=tmp_path / "new2", env={"EVIDENCELOCK_PASSPHRASE": ""})
    assert r.code == 2
    assert not (tmp_path / "new2" / "vault.json").exists()
