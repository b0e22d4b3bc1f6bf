"""Shared helpers for the bundle tests: a real vault, real exports, a local RFC 3161 TSA
(``openssl ts -reply``), and tampering tools that keep a bag self-consistent (regenerated
manifests), as an attacker would."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidencelock.bundle import export_bundle, verify_bundle
from evidencelock.entry import Entry, SignedEntry
from evidencelock.ingest import ingest
from evidencelock.timestamp import make_request, token_from_response
from evidencelock.vault import Vault
from tsa import make_pki, openssl_reply, serve

from conftest import CORPUS, PASSPHRASE, Clock  # noqa: E402,F401 - shared with the other tests


class LocalTSA:
    """The real local RFC 3161 authority of tests/tsa.py (``openssl ts -reply`` behind HTTP)."""

    def __init__(self, d: Path) -> None:
        self.pki = make_pki(d)
        self.chain = self.pki.tsa_cert.read_bytes() + self.pki.ca_cert.read_bytes()  # TSA cert first, root last

    def token(self, data: bytes) -> bytes:
        """A genuine token over ``data`` (for swapping into a bundle)."""
        return token_from_response(openssl_reply(self.pki, make_request(data)))


def make_case_files(root: Path) -> Path:
    src = root / "incoming"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    if CORPUS.is_dir():
        shutil.copy(CORPUS / "photos" / "Canon_40D.jpg", src / "a" / "IMG 0001.jpg")
        shutil.copy(CORPUS / "video" / "sample.mp4", src / "b" / "clip.mp4")
    else:  # a fresh clone has no ../shared: real media made here (a camera JPEG with EXIF, an OpenCV video)
        from mediagen import make_jpeg, make_video

        make_jpeg(src / "a" / "IMG 0001.jpg", 40, exif={"0th": {271: b"Canon", 272: b"Canon EOS 40D"}, "Exif": {}})
        make_video(src / "b" / "clip.mp4", 41, seconds=2)
    (src / "a" / "notes: draft?.txt").write_bytes(b"witness statement, draft 1\n")
    (src / "b" / "Résumé.txt").write_bytes("caf\u00e9 au lait\n".encode())
    (src / "a" / "data.bin").write_bytes(bytes(range(256)) * 40)
    return src


def build_vault(root: Path, start: datetime | None = None) -> tuple[Vault, Clock]:
    clock = Clock(start)
    root.mkdir(parents=True, exist_ok=True)  # init creates the vault folder, never its parents
    v = Vault.init(root / "vault", custodian="Field Team A", passphrase=PASSPHRASE, now=clock())
    v.close()
    return Vault.open(root / "vault", writable=True), clock


def regen_tag_manifests(bag: Path) -> None:
    """What an attacker does after editing tag files: recompute the tag manifests."""
    files = sorted(str(p.relative_to(bag)) for p in bag.rglob("*") if p.is_file() and not p.is_symlink()
                   and not str(p.relative_to(bag)).startswith("data/") and not p.name.startswith("tagmanifest-"))
    for alg in ("sha256", "sha512"):
        (bag / f"tagmanifest-{alg}.txt").write_text(
            "".join(f"{hashlib.new(alg, (bag / f).read_bytes()).hexdigest()}  {f}\n" for f in files))


def regen_manifests(bag: Path) -> None:
    """Recompute payload manifests, Payload-Oxum and tag manifests: a fully self-consistent bag."""
    files = sorted(str(p.relative_to(bag)) for p in (bag / "data").rglob("*") if p.is_file())
    for alg in ("sha256", "sha512"):
        (bag / f"manifest-{alg}.txt").write_text(
            "".join(f"{hashlib.new(alg, (bag / f).read_bytes()).hexdigest()}  {f}\n" for f in files))
    info = (bag / "bag-info.txt").read_text().splitlines()
    total = sum((bag / f).stat().st_size for f in files)
    info = [f"Payload-Oxum: {total}.{len(files)}" if ln.startswith("Payload-Oxum") else ln for ln in info]
    (bag / "bag-info.txt").write_text("\n".join(info) + "\n")
    regen_tag_manifests(bag)


def failed(report, name: str) -> list:
    return [c for c in report.checks if not c.ok and c.name == name]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A vault with one case, a timestamped folder bundle (A) and, after more ingest, a second bundle (B)."""
    root = tmp_path_factory.mktemp("bundles")
    # The clock starts a minute ago: the TSA's token carries the real time, which must not be in the vault's
    # future (export checks it), and no entry the token covers may be dated after it (verify-bundle checks that).
    vault, clock = build_vault(root, datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1))
    key = vault.unlock(PASSPHRASE)
    src = make_case_files(root)
    ingest(vault, [src], key=key, case="Case 7", now=clock, jobs=2)
    # The same relative name up to case from another folder: a name collision in data/.
    (root / "other" / "a").mkdir(parents=True)
    (root / "other" / "a" / "DATA.BIN").write_bytes(b"another file with the same name\n")
    ingest(vault, [root / "other"], key=key, case="Case 7", now=clock, extract_media=False)
    tsa = LocalTSA(root / "tsa")
    with serve(tsa.pki) as server:
        a = export_bundle(vault, case="Case 7", out=root / "A", key=key, now=clock, tsa_urls=[server.url],
                          tsa_certificates=[tsa.chain])
    (root / "more").mkdir()
    (root / "more" / "later.txt").write_bytes(b"a later file\n")
    ingest(vault, [root / "more"], key=key, case="Case 7", now=clock, extract_media=False)
    b = export_bundle(vault, case="Case 7", out=root / "B", key=key, now=clock, report=False)
    vault.close()
    return {"root": root, "A": a.path, "B": b.path, "vault": root / "vault", "tsa": tsa, "resA": a, "resB": b}


@pytest.fixture
def bag(exported, tmp_path) -> Path:
    """A private copy of bundle A to tamper with."""
    dst = tmp_path / "bag"
    shutil.copytree(exported["A"], dst)
    return dst


__all__ = ["Clock", "LocalTSA", "PASSPHRASE", "build_vault", "make_case_files", "regen_manifests",
           "regen_tag_manifests", "failed", "exported", "bag", "verify_bundle", "export_bundle"]


def rewrite_entry(bag: Path, seq: int, change, sign) -> None:
    """Edit entry ``seq`` in entries.jsonl and its by-hand copies, re-signed by ``sign``; regenerate tag manifests."""
    lines = (bag / "evidence/entries.jsonl").read_text().splitlines()
    out = []
    for line in lines:
        obj = json.loads(line)
        if obj["seq"] == seq:
            e = json.loads(base64.b64decode(obj["canonical"]))
            change(e)
            signed = SignedEntry.create(Entry(**e), sign)
            obj["canonical"] = base64.b64encode(signed.canonical).decode()
            obj["signature"] = base64.b64encode(signed.signature).decode()
            (bag / f"evidence/entries/{seq}.json").write_bytes(signed.canonical)
            (bag / f"evidence/entries/{seq}.sig").write_bytes(signed.signature)
        out.append(json.dumps(obj, sort_keys=True))
    (bag / "evidence/entries.jsonl").write_text("\n".join(out) + "\n")
    regen_tag_manifests(bag)
