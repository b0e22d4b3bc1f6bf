"""Shared helpers for the bundle tests: a real vault, real exports, a local RFC 3161 TSA
(``openssl ts -reply``), and tampering tools that keep a bag self-consistent (regenerated
manifests), as an attacker would."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidencelock.bundle import export_bundle, verify_bundle
from evidencelock.ingest import ingest
from evidencelock.vault import Vault

PASSPHRASE = "correct horse battery staple"
CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2014, 4, 30, 9, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


class LocalTSA:
    """A throwaway RFC 3161 authority made with the openssl binary."""

    def __init__(self, d: Path) -> None:
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        (d / "ts.cnf").write_text(
            "[ tsa ]\ndefault_tsa = t\n[ t ]\nserial = ./serial\ncrypto_device = builtin\nsigner_digest = sha256\n"
            "default_policy = 1.2.3.4.1\ndigests = sha256, sha512\naccuracy = secs:1\nordering = yes\ntsa_name = yes\n"
            "ess_cert_id_chain = no\ness_cert_id_alg = sha256\n")
        (d / "serial").write_text("01\n")
        (d / "ext.cnf").write_text("extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature\n"
                                   "basicConstraints=CA:FALSE\n")
        run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)  # noqa: E731
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-out", "ca.crt", "-subj", "/CN=Local Test TSA Root", "-days", "3650")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tsa.key",
            "-out", "tsa.csr", "-subj", "/CN=Local Test TSA")
        run("openssl", "x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "tsa.crt", "-days", "3650", "-extfile", "ext.cnf")
        self.chain = (d / "tsa.crt").read_bytes() + (d / "ca.crt").read_bytes()

    def __call__(self, data: bytes) -> tuple[bytes, bytes]:
        (self.d / "data").write_bytes(data)
        subprocess.run(["openssl", "ts", "-query", "-data", "data", "-sha256", "-cert", "-out", "req.tsq"], cwd=self.d,
                       check=True, capture_output=True)
        subprocess.run(["openssl", "ts", "-reply", "-config", "ts.cnf", "-queryfile", "req.tsq", "-signer", "tsa.crt",
                        "-inkey", "tsa.key", "-out", "resp.tsr"], cwd=self.d, check=True, capture_output=True)
        return (self.d / "resp.tsr").read_bytes(), self.chain


def make_case_files(root: Path) -> Path:
    src = root / "incoming"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    if CORPUS.is_dir():
        shutil.copy(CORPUS / "photos" / "Canon_40D.jpg", src / "a" / "IMG 0001.jpg")
        shutil.copy(CORPUS / "video" / "sample.mp4", src / "b" / "clip.mp4")
    (src / "a" / "notes: draft?.txt").write_bytes(b"witness statement, draft 1\n")
    (src / "b" / "Résumé.txt").write_bytes("caf\u00e9 au lait\n".encode())
    (src / "a" / "data.bin").write_bytes(bytes(range(256)) * 40)
    return src


def build_vault(root: Path) -> tuple[Vault, Clock]:
    clock = Clock()
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
    vault, clock = build_vault(root)
    key = vault.unlock(PASSPHRASE)
    src = make_case_files(root)
    ingest(vault, [src], key=key, case="Case 7", now=clock, jobs=2)
    # The same relative name up to case from another folder: a name collision in data/.
    (root / "other" / "a").mkdir(parents=True)
    (root / "other" / "a" / "DATA.BIN").write_bytes(b"another file with the same name\n")
    ingest(vault, [root / "other"], key=key, case="Case 7", now=clock, extract_media=False)
    tsa = LocalTSA(root / "tsa")
    a = export_bundle(vault, case="Case 7", out=root / "A", key=key, now=clock, timestamper=tsa)
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
