"""Issue 9 items 13, 17, 19: keys at rest, terminal injection, what a bundle reveals about its custodian.

Every test runs the real CLI on real files: a key file sealed by the real code and attacked
with a wrong passphrase, a downgraded header, an old-format file; names carrying ESC/BEL/CR/bidi
through every command's human output; a vault in a fake home folder, exported, and every byte
of the bundle and the checkpoint searched for the host name and the home path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import zipfile
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import PASSPHRASE, run_cli

PROD_ENV = {"EVIDENCELOCK_INSECURE_TEST_KDF": "0"}  # the production default KDF cost


def _key_file(vault: Path) -> Path:
    (key,) = (vault / "keys").glob("*.key.pem")
    return key


def _blob(key_file: Path) -> bytes:
    text = key_file.read_bytes().strip().splitlines()
    assert text[0] == b"-----BEGIN EVIDENCELOCK ENCRYPTED PRIVATE KEY-----"
    assert text[-1] == b"-----END EVIDENCELOCK ENCRYPTED PRIVATE KEY-----"
    return base64.b64decode(b"".join(text[1:-1]), validate=True)


def _decrypt_as_a_stranger(blob: bytes, passphrase: str) -> tuple[dict[str, int], bytes]:
    """docs/vault-layout.md §8, read with nothing but the standard library and an AES-GCM."""
    assert blob[:8] == b"ELOCKKEY"
    version, kdf, log2_n, r, p, salt_len = struct.unpack(">BBBBBB", blob[8:14])
    salt = blob[14:14 + salt_len]
    aead = blob[14 + salt_len]
    nonce = blob[15 + salt_len:27 + salt_len]
    header, ciphertext = blob[:27 + salt_len], blob[27 + salt_len:]
    key = hashlib.scrypt(passphrase.encode(), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=1 << 30, dklen=32)
    seed = AESGCM(key).decrypt(nonce, ciphertext, header)
    return {"version": version, "kdf": kdf, "log2_n": log2_n, "r": r, "p": p, "salt_len": salt_len,
            "aead": aead, "ciphertext_len": len(ciphertext)}, seed


def _key_id(seed: bytes) -> str:
    raw = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


# -- item 13: keys at rest ---------------------------------------------------------------------

def test_key_file_uses_the_documented_scrypt_cost_and_decrypts_from_the_docs(tmp_path: Path) -> None:
    vp = tmp_path / "v"
    r = run_cli("init", "--custodian", "Field Team A", "--json", vault=vp, env=PROD_ENV)
    assert r.code == 0, r.stderr
    key_id = r.json()["key_id"]
    key_file = _key_file(vp)
    assert key_file.name == f"{key_id}.key.pem"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    params, seed = _decrypt_as_a_stranger(_blob(key_file), PASSPHRASE)
    # The production default stated in docs/vault-layout.md §8: scrypt N=2^17, r=8, p=1 (128 MiB).
    assert params == {"version": 1, "kdf": 1, "log2_n": 17, "r": 8, "p": 1, "salt_len": 16, "aead": 1,
                      "ciphertext_len": 48}
    assert _key_id(seed) == key_id
    docs = (Path(__file__).parent.parent / "docs" / "vault-layout.md").read_text()
    assert "N = 2^17" in docs and "r = 8" in docs and "p = 1" in docs and "PBKDF2" in docs
    # And it signs: an ingest at the production cost unlocks it.
    (tmp_path / "f.txt").write_text("evidence")
    r = run_cli("ingest", tmp_path / "f.txt", "--case", "c", "--no-media", vault=vp, env=PROD_ENV)
    assert r.code == 0, r.stderr
    assert run_cli("verify", vault=vp).code == 0


def test_documented_key_file_vector_decrypts(tmp_path: Path) -> None:
    """docs/vault-layout.md §8's test vector: the code and a from-the-docs reader agree on it."""
    from evidencelock.errors import CustodianKeyError
    from evidencelock.keys import CustodianKey

    docs = (Path(__file__).parent.parent / "docs" / "vault-layout.md").read_text()
    section = docs[docs.index("**Test vector**"):]
    armoured = re.search(r"```text\n(-----BEGIN EVIDENCELOCK.*?-----END EVIDENCELOCK ENCRYPTED PRIVATE KEY-----\n)```",
                         section, re.S).group(1)
    key_id = re.search(r"key id of the decrypted key: `([0-9a-f]{64})`", section).group(1)
    aes_key = re.search(r"scrypt output \(the AES-256-GCM key\): `([0-9a-f]{64})`", section).group(1)
    blob_hex = re.search(r"blob \(hex\): `([0-9a-f]+)`", section).group(1)
    kf = tmp_path / f"{key_id}.key.pem"
    kf.write_text(armoured)
    assert _blob(kf).hex() == blob_hex
    params, seed = _decrypt_as_a_stranger(_blob(kf), PASSPHRASE)
    assert seed == bytes(range(32)) and _key_id(seed) == key_id and params["log2_n"] == 10
    assert hashlib.scrypt(PASSPHRASE.encode(), salt=bytes(range(16)), n=1024, r=8, p=1, dklen=32).hex() == aes_key
    assert CustodianKey.load(kf, PASSPHRASE, migrate=False).key_id == key_id
    with pytest.raises(CustodianKeyError, match="wrong passphrase"):
        CustodianKey.load(kf, PASSPHRASE + " ", migrate=False)


def test_wrong_passphrase_is_refused_and_names_the_key_file(tmp_path: Path) -> None:
    vp = tmp_path / "v"
    assert run_cli("init", "--custodian", "A", vault=vp).code == 0
    (tmp_path / "f.txt").write_text("evidence")
    r = run_cli("ingest", tmp_path / "f.txt", "--case", "c", vault=vp,
                env={"EVIDENCELOCK_PASSPHRASE": "wrong horse battery staple"})
    assert r.code == 2
    assert "wrong passphrase" in r.stderr and _key_file(vp).name in r.stderr
    assert "Traceback" not in r.stderr
    r = run_cli("ingest", tmp_path / "f.txt", "--case", "c", vault=vp)
    assert r.code == 0, r.stderr  # the right one still works: the refusal was the passphrase


def test_downgraded_kdf_cost_in_the_key_file_header_is_refused(tmp_path: Path) -> None:
    """An attacker who can write the key file lowers N in its header (to make a copy cheap to
    crack later, or to see whether we notice): the header is authenticated, so unlock fails."""
    vp = tmp_path / "v"
    assert run_cli("init", "--custodian", "A", vault=vp).code == 0
    kf = _key_file(vp)
    original = kf.read_bytes()
    blob = bytearray(_blob(kf))
    blob[10] = 4  # log2 N
    b64 = base64.b64encode(bytes(blob))
    kf.write_bytes(b"-----BEGIN EVIDENCELOCK ENCRYPTED PRIVATE KEY-----\n" + b64
                   + b"\n-----END EVIDENCELOCK ENCRYPTED PRIVATE KEY-----\n")
    (tmp_path / "f.txt").write_text("evidence")
    r = run_cli("ingest", tmp_path / "f.txt", "--case", "c", vault=vp)
    assert r.code == 2 and kf.name in r.stderr and "damaged key file" in r.stderr
    kf.write_bytes(original)
    assert run_cli("ingest", tmp_path / "f.txt", "--case", "c", vault=vp).code == 0


def test_old_pkcs8_pbkdf2_key_migrates_on_unlock_and_still_signs(tmp_path: Path) -> None:
    vp = tmp_path / "v"
    r = run_cli("init", "--custodian", "A", "--json", vault=vp)
    assert r.code == 0
    key_id = r.json()["key_id"]
    kf = _key_file(vp)
    _, seed = _decrypt_as_a_stranger(_blob(kf), PASSPHRASE)
    # Rewrite the key as the old code did: PKCS#8, BestAvailableEncryption (PBKDF2-SHA256).
    legacy = Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()))
    assert legacy.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    kf.write_bytes(legacy)
    (tmp_path / "f.txt").write_text("evidence")
    # A wrong passphrase neither unlocks nor touches the old file.
    r = run_cli("ingest", tmp_path / "f.txt", "--case", "c", vault=vp,
                env={"EVIDENCELOCK_PASSPHRASE": "not the passphrase at all"})
    assert r.code == 2 and "wrong passphrase" in r.stderr
    assert kf.read_bytes() == legacy
    # The right one unlocks, signs, and leaves the key in the new format at the production cost.
    r = run_cli("ingest", tmp_path / "f.txt", "--case", "c", vault=vp, env=PROD_ENV)
    assert r.code == 0, r.stderr
    params, seed2 = _decrypt_as_a_stranger(_blob(kf), PASSPHRASE)
    assert seed2 == seed and _key_id(seed2) == key_id and params["log2_n"] == 17
    assert not list((vp / "keys").glob("*.tmp"))
    assert oct(kf.stat().st_mode & 0o777) == "0o600"
    # Migrated key still unlocks, and the ledger verifies.
    (tmp_path / "g.txt").write_text("more evidence")
    assert run_cli("ingest", tmp_path / "g.txt", "--case", "c", vault=vp).code == 0
    assert run_cli("verify", vault=vp).code == 0


def test_key_file_demanding_gigabytes_is_refused_before_deriving(tmp_path: Path) -> None:
    """A hostile key file asks for scrypt N=2^22, r=32 (16 GiB): refused, named, at once."""
    vp = tmp_path / "v"
    assert run_cli("init", "--custodian", "A", vault=vp).code == 0
    kf = _key_file(vp)
    blob = bytearray(_blob(kf))
    blob[10], blob[11] = 22, 32
    kf.write_bytes(b"-----BEGIN EVIDENCELOCK ENCRYPTED PRIVATE KEY-----\n" + base64.b64encode(bytes(blob))
                   + b"\n-----END EVIDENCELOCK ENCRYPTED PRIVATE KEY-----\n")
    (tmp_path / "f.txt").write_text("evidence")
    r = run_cli("ingest", tmp_path / "f.txt", "--case", "c", vault=vp, timeout=60)
    assert r.code == 2 and "out of range" in r.stderr and kf.name in r.stderr


def test_failed_migration_keeps_the_old_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename of the re-sealed file fails (read-only media, full disk): the old file is
    intact, no temporary file is left, the key still unlocks, migration is retried later."""
    from evidencelock.keys import CustodianKey

    key = CustodianKey.generate("A")
    kf = tmp_path / f"{key.key_id}.key.pem"
    legacy = key._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.BestAvailableEncryption(PASSPHRASE.encode()))
    kf.write_bytes(legacy)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    loaded = CustodianKey.load(kf, PASSPHRASE)
    assert loaded.key_id == key.key_id and loaded.migrated is None
    assert kf.read_bytes() == legacy and sorted(p.name for p in tmp_path.iterdir()) == [kf.name]
    monkeypatch.undo()
    loaded = CustodianKey.load(kf, PASSPHRASE)
    assert loaded.key_id == key.key_id and loaded.migrated == "PKCS#8 (PBKDF2)"
    assert kf.read_bytes().startswith(b"-----BEGIN EVIDENCELOCK ENCRYPTED PRIVATE KEY-----")


def test_key_sealed_at_a_lower_cost_is_resealed_at_the_default(tmp_path: Path) -> None:
    vp = tmp_path / "v"
    assert run_cli("init", "--custodian", "A", vault=vp).code == 0  # the suite's cheap test cost
    kf = _key_file(vp)
    assert _decrypt_as_a_stranger(_blob(kf), PASSPHRASE)[0]["log2_n"] == 10
    (tmp_path / "f.txt").write_text("evidence")
    assert run_cli("ingest", tmp_path / "f.txt", "--case", "c", vault=vp, env=PROD_ENV).code == 0
    assert _decrypt_as_a_stranger(_blob(kf), PASSPHRASE)[0]["log2_n"] == 17


@pytest.mark.parametrize("weak", ["hunter2", "password1234", "aaaaaaaaaaaaaaaa", "Qwerty 123456"])
def test_weak_passphrase_is_refused_at_init_unless_overridden(tmp_path: Path, weak: str) -> None:
    vp = tmp_path / "v"
    r = run_cli("init", "--custodian", "A", vault=vp, env={"EVIDENCELOCK_PASSPHRASE": weak})
    assert r.code == 2 and "passphrase" in r.stderr and "--allow-weak-passphrase" in r.stderr
    assert not vp.exists() or not any(vp.iterdir())  # nothing written
    r = run_cli("init", "--custodian", "A", "--allow-weak-passphrase", vault=vp, env={"EVIDENCELOCK_PASSPHRASE": weak})
    assert r.code == 0, r.stderr


def test_weak_passphrase_is_refused_for_a_new_custodian(tmp_path: Path) -> None:
    vp = tmp_path / "v"
    assert run_cli("init", "--custodian", "A", vault=vp).code == 0
    r = run_cli("keys", "add", "Lawyer B", vault=vp, env={"EVIDENCELOCK_NEW_PASSPHRASE": "short"})
    assert r.code == 2 and "too short" in r.stderr
    assert len(list((vp / "keys").glob("*.key.pem"))) == 1
    r = run_cli("keys", "add", "Lawyer B", vault=vp, env={"EVIDENCELOCK_NEW_PASSPHRASE": "a good long passphrase"})
    assert r.code == 0, r.stderr


# -- item 17: terminal injection ---------------------------------------------------------------

EVIL = "\x1b]0;owned\x07\x1b[2J\x1b[3J\r\x9b31m\u202egpj.exe\u2066[bold red]X[/]\x7f"
# Raw bytes a terminal acts on; \n and \t are layout.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _clean(r, what: str) -> None:
    for stream, text in (("stdout", r.stdout), ("stderr", r.stderr)):
        bad = RAW.findall(text)
        assert not bad, f"{what}: raw control characters on {stream}: {bad!r}"
    assert "Traceback" not in r.stderr, what


def test_control_characters_in_names_are_escaped_in_every_human_output(tmp_path: Path) -> None:
    vp = tmp_path / "v"
    src = tmp_path / "card"
    src.mkdir()
    (src / f"clip{EVIL.replace('/', '')}.txt").write_bytes(b"evidence")  # no "/" in a file name
    custodian = f"Eve{EVIL}"
    case = f"case{EVIL}"
    runs = {}
    runs["init"] = run_cli("init", "--custodian", custodian, vault=vp)
    assert runs["init"].code == 0, runs["init"].stderr
    runs["ingest"] = r = run_cli("ingest", src, "--case", case, "--note", f"note{EVIL}", "--no-media", vault=vp)
    assert r.code == 0, r.stderr
    item = json.loads(run_cli("log", "--json", vault=vp).stdout)[-1]["body"]["item"]
    runs["log"] = run_cli("log", vault=vp)
    runs["show"] = run_cli("show", item, vault=vp)
    runs["keys"] = run_cli("keys", vault=vp)
    runs["keys add"] = run_cli("keys", "add", f"Mallory{EVIL}", vault=vp,
                               env={"EVIDENCELOCK_NEW_PASSPHRASE": "another long passphrase"})
    runs["transfer"] = run_cli("transfer", "--case", case, "--to", f"Mallory{EVIL}", "--note", EVIL, vault=vp)
    runs["verify"] = run_cli("verify", vault=vp)
    runs["audit"] = run_cli("audit", vault=vp)
    runs["checkpoint"] = run_cli("checkpoint", vault=vp)
    runs["export"] = run_cli("export", "--case", case, "-o", tmp_path / "bundle", "--no-report", vault=vp)
    runs["verify-bundle"] = run_cli("verify-bundle", tmp_path / "bundle")
    runs["export with report"] = run_cli("export", "--case", case, "-o", tmp_path / "bundle2", vault=vp)
    runs["verify-bundle with report"] = run_cli("verify-bundle", tmp_path / "bundle2")
    # Errors too: a name that is not there, echoed back.
    runs["show error"] = run_cli("show", f"nope{EVIL}", vault=vp)
    runs["transfer error"] = run_cli("transfer", "--case", case, "--to", f"nobody{EVIL}", vault=vp)
    for what, r in runs.items():
        _clean(r, what)
    for what in ("init", "log", "show", "keys", "keys add", "show error", "transfer error"):
        r = runs[what]
        assert r.code in (0, 1, 2)
    assert runs["export"].code == 0, runs["export"].stderr
    assert runs["verify-bundle"].code == 0, runs["verify-bundle"].stdout
    assert runs["show error"].code == 2 and runs["transfer error"].code == 2
    # Shown visibly, not dropped: what is printed says what is recorded.
    assert "Eve\\x1b]0;owned\\x07" in runs["init"].stdout
    for what in ("show error", "transfer error"):  # these echo a repr: \\r for CR
        assert "\\u202egpj.exe\\u2066[bold red]X[/]" in runs[what].stderr, what
    for what in ("init",):  # one-line outputs (tables wrap long cells)
        text = runs[what].stdout + runs[what].stderr
        assert "\\x1b]0;owned\\x07\\x1b[2J\\x1b[3J\\x0d\\x9b31m\\u202egpj.exe\\u2066[bold red]X[/]\\x7f" in text, what
    for what in ("log", "show", "keys"):
        assert "\\x1b" in runs[what].stdout, what
    assert "[bold red]X[/]" in runs["init"].stdout  # rich markup stays literal text
    assert "\\x1b" in runs["show error"].stderr
    # The bundle's human files (read with `cat`, rendered in a browser) show names the same way;
    # the signed entries keep the exact bytes.
    assert runs["export with report"].code == 0 and runs["verify-bundle with report"].code == 0
    for name in ("VERIFY.md", "certification.md", "report.html"):
        text = (tmp_path / "bundle2" / name).read_text("utf-8")
        assert not RAW.findall(text), name
    assert "Eve\\x1b]0;owned" in (tmp_path / "bundle2" / "certification.md").read_text("utf-8")
    entries_jsonl = (tmp_path / "bundle2" / "evidence" / "entries.jsonl").read_text("utf-8")
    signed = [json.loads(base64.b64decode(json.loads(line)["canonical"])) for line in entries_jsonl.splitlines()]
    assert any(e["body"].get("name") == custodian for e in signed)
    # JSON stays exact JSON carrying the exact name, with no raw terminal bytes.
    r = run_cli("log", "--json", vault=vp)
    assert not RAW.findall(r.stdout)
    entries = json.loads(r.stdout)
    assert entries[0]["body"]["name"] == custodian and entries[1]["case"] == case


def test_newline_in_a_file_name_cannot_fake_a_verdict_line(tmp_path: Path) -> None:
    """A file named "clip\\nVERIFIED: all good.txt": when `verify` names it in a finding about
    a tampered object, the name must not start a line of its own that reads as a verdict."""
    vp = tmp_path / "v"
    card = tmp_path / "card"
    card.mkdir()
    (card / "clip\nVERIFIED: all good.txt").write_bytes(b"abc")
    assert run_cli("init", "--custodian", "T", vault=vp).code == 0
    r = run_cli("ingest", card, "--case", "c", "--no-media", vault=vp)
    assert r.code == 0, r.stderr
    good = run_cli("verify", vault=vp)
    assert good.code == 0
    (obj,) = [p for p in (vp / "objects").rglob("*") if p.is_file()]
    obj.chmod(0o644)
    obj.write_bytes(b"abd")
    bad = run_cli("verify", vault=vp)
    assert bad.code == 1
    assert "clip\\x0aVERIFIED: all good.txt" in bad.stdout  # named, visibly
    lines = (bad.stdout + bad.stderr).splitlines()
    assert not [line for line in lines if line.lstrip().startswith("VERIFIED")], lines
    _clean(bad, "verify")


def test_untampered_output_is_unchanged_by_the_escaping(tmp_path: Path) -> None:
    vp = tmp_path / "v"
    (tmp_path / "café ünïcode 中文.txt").write_text("x")
    assert run_cli("init", "--custodian", "Équipe de terrain", vault=vp).code == 0
    assert run_cli("ingest", tmp_path / "café ünïcode 中文.txt", "--case", "c", "--no-media", vault=vp).code == 0
    r = run_cli("log", vault=vp)
    assert "café ünïcode 中文.txt" in r.stdout and "Équipe de terrain" in r.stdout and "\\x" not in r.stdout


# -- item 19: what a bundle and a checkpoint reveal about the custodian --------------------------

HOST = "quokka-fieldlaptop-7731"
USER = "zanzibar-quokka"

# Run the real CLI with a host name we choose (the real one may be short or generic).
_HOST_SHIM = ("import socket, runpy, sys; socket.gethostname = lambda: %r; sys.argv[0] = 'evidencelock'; "
              "runpy.run_module('evidencelock', run_name='__main__')" % HOST)


def _cli_on_host(*args, home: Path, vault: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": PASSPHRASE, "HOME": str(home), "USER": USER,
           "LOGNAME": USER, "COLUMNS": "200", "TZ": "Asia/Kathmandu"}  # UTC+05:45: a telling zone
    return subprocess.run([sys.executable, "-c", _HOST_SHIM, "--vault", str(vault), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=home, timeout=600)


def _every_byte(path: Path) -> bytes:
    """All bytes of a bundle folder or zip, plus what zip members and PDF streams inflate to."""
    chunks: list[bytes] = []
    files = [p for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [path]
    for f in files:
        data = f.read_bytes()
        chunks += [str(f.relative_to(path) if path.is_dir() else f.name).encode(), data]
        if zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as z:
                for info in z.infolist():
                    chunks += [info.filename.encode(), info.comment, info.extra, z.read(info)]
        for stream in re.findall(rb"stream\r?\n(.*?)endstream", data, re.S):
            try:
                chunks.append(zlib.decompress(stream))
            except zlib.error:
                pass
    return b"\n".join(chunks)


def _forms(text: str) -> list[bytes]:
    """The ways a string can be spelled in a bundle: UTF-8, JSON-escaped, UTF-16, hex, base64."""
    raw = text.encode()
    return [raw, raw.replace(b"/", b"\\/"), text.encode("utf-16-be"), text.encode("utf-16-le"), raw.hex().encode(),
            base64.b64encode(raw)[:-4]]


def _make_custodian_home(tmp_path: Path) -> tuple[Path, Path, Path]:
    home = tmp_path / "home" / USER
    card = home / "Documents" / "sdcard"
    (card / "DCIM").mkdir(parents=True)
    (card / "DCIM" / "clip.txt").write_bytes(b"video of the checkpoint")
    (card / "DCIM" / "photo.txt").write_bytes(b"photo of the vehicle")
    return home, card, home / "vault"


def test_bundle_and_checkpoint_do_not_reveal_host_or_home_path_by_default(tmp_path: Path) -> None:
    home, card, vault = _make_custodian_home(tmp_path)
    assert _cli_on_host("init", "--custodian", "Field Team A", home=home, vault=vault).returncode == 0
    r = _cli_on_host("ingest", card, "--case", "C1", "--no-media", home=home, vault=vault)
    assert r.returncode == 0, r.stderr
    r = _cli_on_host("checkpoint", home=home, vault=vault)
    assert r.returncode == 0, r.stderr
    checkpoint = r.stdout
    for out in ("bundle", "bundle.zip"):
        r = _cli_on_host("export", "--case", "C1", "-o", tmp_path / out, home=home, vault=vault)
        assert r.returncode == 0, r.stderr
    bundle_bytes = _every_byte(tmp_path / "bundle") + _every_byte(tmp_path / "bundle.zip")
    secrets_ = [HOST, str(home), USER]
    if len(socket.gethostname()) >= 6:  # the real one too, when it is long enough to search for
        secrets_.append(socket.gethostname())
    for published, what in ((bundle_bytes, "bundle"), (checkpoint.encode(), "checkpoint")):
        for s in secrets_:
            for form in _forms(s):
                assert form not in published, f"{what} reveals {s!r} (as {form!r})"
    # The entry still says which file it was, relative to the card: the evidence is described.
    log = json.loads(_cli_on_host("log", "--json", home=home, vault=vault).stdout)
    sources = [e["body"]["source"] for e in log if e["type"] == "ingest"]
    assert sorted(s["path"] for s in sources) == ["DCIM/clip.txt", "DCIM/photo.txt"]
    assert {s["root"] for s in sources} == {"sdcard"} and all("host" not in s for s in sources)
    assert checkpoint.startswith("evidencelock/") and len(checkpoint.splitlines()[0]) == len("evidencelock/") + 32
    assert b"DCIM/clip.txt" in bundle_bytes  # the search does see what the bundle says
    # ZIP member times are zone-less: written as UTC, they do not give away the exporter's zone.
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with zipfile.ZipFile(tmp_path / "bundle.zip") as z:
        for info in z.infolist():
            assert abs(datetime(*info.date_time) - now) < timedelta(minutes=30), (info.filename, info.date_time)


def test_host_and_absolute_path_are_recorded_only_when_asked(tmp_path: Path) -> None:
    home, card, vault = _make_custodian_home(tmp_path)
    r = _cli_on_host("init", "--custodian", "Field Team A", "--origin", f"{HOST}.example.org/log", home=home,
                     vault=vault)
    assert r.returncode == 0, r.stderr
    r = _cli_on_host("ingest", card, "--case", "C1", "--no-media", "--record-host", "--record-absolute-path",
                     home=home, vault=vault)
    assert r.returncode == 0, r.stderr
    r = _cli_on_host("checkpoint", home=home, vault=vault)
    assert r.stdout.startswith(f"{HOST}.example.org/log\n")
    assert _cli_on_host("export", "--case", "C1", "-o", tmp_path / "bundle", home=home, vault=vault).returncode == 0
    bundle_bytes = _every_byte(tmp_path / "bundle")
    assert HOST.encode() in bundle_bytes and str(card).encode() in bundle_bytes
    log = json.loads(_cli_on_host("log", "--json", home=home, vault=vault).stdout)
    for src in [e["body"]["source"] for e in log if e["type"] == "ingest"]:
        assert src["host"] == HOST and src["root"] == str(card)


def test_an_origin_that_is_not_one_printable_line_is_refused(tmp_path: Path) -> None:
    r = run_cli("init", "--custodian", "A", "--origin", "a\nb", vault=tmp_path / "v")
    assert r.code == 2 and "origin" in r.stderr and not (tmp_path / "v" / "vault.json").exists()


def test_single_file_ingest_records_no_parent_folder(tmp_path: Path) -> None:
    home, card, vault = _make_custodian_home(tmp_path)
    assert _cli_on_host("init", "--custodian", "A", home=home, vault=vault).returncode == 0
    (home / "statement.txt").write_text("witness statement")
    assert _cli_on_host("ingest", home / "statement.txt", "--case", "C", "--no-media", home=home,
                        vault=vault).returncode == 0
    src = json.loads(_cli_on_host("log", "--json", home=home, vault=vault).stdout)[-1]["body"]["source"]
    assert src["root"] == "" and src["path"] == "statement.txt"  # not "zanzibar-quokka"


def test_rerun_is_still_idempotent_and_same_names_in_two_folders_stay_distinct(tmp_path: Path) -> None:
    home, card, vault = _make_custodian_home(tmp_path)
    other = tmp_path / "elsewhere" / "sdcard"  # same folder name, same relative names, same bytes
    (other / "DCIM").mkdir(parents=True)
    for f in ("clip.txt", "photo.txt"):
        (other / "DCIM" / f).write_bytes((card / "DCIM" / f).read_bytes())
    assert _cli_on_host("init", "--custodian", "A", home=home, vault=vault).returncode == 0
    first = _cli_on_host("ingest", card, "--case", "C", "--no-media", "--json", home=home, vault=vault)
    rerun = _cli_on_host("ingest", card, "--case", "C", "--no-media", "--json", home=home, vault=vault)
    second = _cli_on_host("ingest", other, "--case", "C", "--no-media", "--json", home=home, vault=vault)
    assert json.loads(first.stdout)["preserved"] == 2
    assert json.loads(rerun.stdout)["already_recorded"] == 2
    assert json.loads(second.stdout)["duplicates"] == 2  # a distinct source of the same bytes: recorded
    log = json.loads(_cli_on_host("log", "--json", home=home, vault=vault).stdout)
    keys = [e["body"]["source"]["key"] for e in log if e["type"] == "ingest"]
    assert len(keys) == 4 and len(set(keys)) == 4
    # source.key is keyed by the vault's secret: it does not confirm a guessed host and path.
    guess = hashlib.sha256(HOST.encode() + b"\x00" + str(card / "DCIM" / "clip.txt").encode()).hexdigest()
    assert guess not in keys
    assert run_cli("verify", vault=vault).code == 0
