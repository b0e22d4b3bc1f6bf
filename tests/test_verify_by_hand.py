"""The commands in a generated VERIFY.md, run exactly as written, with the real sha256sum,
openssl and bagit.py: they pass on a good bundle and fail on tampered ones."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from test_bundle_support import bag, exported, regen_manifests, regen_tag_manifests  # noqa: F401

pytestmark = pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("sha256sum")),
                                reason="needs the openssl and sha256sum binaries")


def blocks(bundle: Path) -> list[str]:
    text = (bundle / "VERIFY.md").read_text(encoding="utf-8")
    found = re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)
    assert len(found) >= 8, "VERIFY.md lost its commands"
    return found


def run_blocks(bundle: Path) -> list[tuple[str, int, str]]:
    """Run every ```sh block of the bundle's own VERIFY.md in the bundle folder; -e: stop at a failing command."""
    results = []
    for block in blocks(bundle):
        if block.startswith("bagit.py") and not shutil.which("bagit.py"):
            continue
        p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=bundle, capture_output=True, text=True,
                           timeout=300)
        results.append((block, p.returncode, p.stdout + p.stderr))
    return results


def failing(results) -> list[str]:
    """The blocks (full text) whose last command returned a non-zero status."""
    return [block for block, code, _ in results if code != 0]


def test_every_command_passes_on_a_good_bundle(exported):
    results = run_blocks(exported["A"])
    assert not failing(results), [(f, out[-400:]) for f, c, out in results if c]
    text = (exported["A"] / "VERIFY.md").read_text()
    for tool in ("sha256sum -c", "openssl pkeyutl -verify -pubin -inkey", "-rawin", "openssl ts -verify", "bagit.py --validate"):
        assert tool in text
    outputs = "".join(out for _, _, out in results)
    assert "Signature Verified Successfully" in outputs and "Verification: OK" in outputs


def test_flipped_payload_byte_fails_sha256sum(bag):
    p = next(x for x in sorted((bag / "data").rglob("*")) if x.is_file())
    data = bytearray(p.read_bytes())
    data[0] ^= 0xFF
    p.write_bytes(bytes(data))
    bad = failing(run_blocks(bag))
    assert any(b.startswith("sha256sum -c") for b in bad)


def test_planted_unlisted_file_fails_the_listing_check(bag):
    (bag / "data" / "planted.jpg").write_bytes(b"planted")
    bad = failing(run_blocks(bag))
    assert any('test "$(find data' in b for b in bad)


def test_replaced_payload_with_regenerated_manifests_fails_custody_check(bag):
    p = next(x for x in sorted((bag / "data").rglob("*")) if x.is_file())
    p.write_bytes(b"substituted footage")
    regen_manifests(bag)  # sha256sum -c now passes; the custody record must not
    bad = failing(run_blocks(bag))
    assert not any(b.startswith("sha256sum") for b in bad)
    assert any("while read -r digest path" in b for b in bad)


def test_edited_entry_fails_openssl_signature_check(bag):
    lines = (bag / "evidence/entries.jsonl").read_text().splitlines()
    obj = json.loads(lines[-1])
    seq = obj["seq"]
    canonical = base64.b64decode(obj["canonical"]).replace(b'"time":"20', b'"time":"19', 1)
    (bag / f"evidence/entries/{seq}.json").write_bytes(canonical)
    regen_tag_manifests(bag)
    results = run_blocks(bag)
    bad = failing(results)
    assert any("openssl pkeyutl -verify -pubin -inkey \"evidence/keys/$actor.pem\"" in b for b in bad)
    assert any(b.startswith("python3 - <<'PY'") for b in bad)  # the inclusion proof no longer leads to the root


def test_swapped_timestamp_fails_openssl_ts_verify(bag, exported):
    (bag / "evidence/timestamp.tst").write_bytes(exported["tsa"].token(b"another document\n"))
    regen_tag_manifests(bag)
    bad = failing(run_blocks(bag))
    assert any(b.startswith("openssl ts -verify") for b in bad)


def test_swapped_checkpoint_signature_fails_openssl(bag):
    sig = bytearray((bag / "evidence/checkpoint.sig").read_bytes())
    sig[5] ^= 1
    (bag / "evidence/checkpoint.sig").write_bytes(bytes(sig))
    regen_tag_manifests(bag)
    bad = failing(run_blocks(bag))
    assert any(b.startswith("head -c") for b in bad)


# -- issue 9 item 8: the by-hand steps are sound -------------------------------------------------------
import hashlib  # noqa: E402

from evidencelock.entry import Entry, SignedEntry  # noqa: E402
from evidencelock.keys import CustodianKey  # noqa: E402


def _entries(bag: Path) -> dict[int, dict]:
    return {int(p.stem): json.loads(p.read_bytes()) for p in (bag / "evidence/entries").glob("*.json")}


def _add_entry(bag: Path, signed: SignedEntry) -> None:
    """Write an entry as the bundle stores it: by-hand copies and a line of entries.jsonl."""
    seq = signed.entry.seq
    (bag / f"evidence/entries/{seq}.json").write_bytes(signed.canonical)
    (bag / f"evidence/entries/{seq}.sig").write_bytes(signed.signature)
    with open(bag / "evidence/entries.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"seq": seq, "canonical": base64.b64encode(signed.canonical).decode(),
                            "signature": base64.b64encode(signed.signature).decode()}) + "\n")


def _forge_ingest(bag: Path, key: CustodianKey, seq: int, content: bytes, name: str) -> None:
    """A fabricated payload file plus a fake ingest entry for it, signed by ``key``; manifests fixed."""
    template = next(e for e in _entries(bag).values() if e["type"] == "ingest")
    body = dict(template["body"])
    digest = hashlib.sha256(content).hexdigest()
    body.update(item=digest, size=len(content),
                digests={**template["body"]["digests"], "sha256": digest,
                         "sha512": hashlib.sha512(content).hexdigest()})
    entry = Entry(seq=seq, prev="0" * 64, time=template["time"], type="ingest", case=template["case"],
                  actor=key.key_id, body=body)
    _add_entry(bag, SignedEntry.create(entry, key.sign))
    (bag / "data" / name).write_bytes(content)
    regen_manifests(bag)


def _block_out(results, needle: str) -> tuple[int, str]:
    return next((code, out) for block, code, out in results if needle in block)


ENROL = "which no earlier entry enrols"
INCLUSION = "python3 - <<'PY'"


def test_good_bundle_passes_enrolment_inclusion_and_prints_the_root_fingerprint(exported):
    bundle = exported["A"]
    results = run_blocks(bundle)
    assert not failing(results), [(b.splitlines()[0], out[-400:]) for b, c, out in results if c]
    outputs = "".join(out for _, _, out in results)
    assert "FAILED" not in outputs
    n = len(list((bundle / "evidence/entries").glob("*.json")))
    assert "OK: every entry is signed by a key enrolled by an earlier entry" in outputs
    assert f"OK: all {n} entries are in the log of size" in outputs
    assert "OK: the checkpoint key is enrolled" in outputs
    # The fingerprint printed is the ROOT's (the genuine CA), not the TSA certificate's.
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    def fp(pem: bytes) -> str:
        der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
        return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())

    pki = exported["tsa"].pki
    code, out = _block_out(results, "openssl x509 -noout -subject -fingerprint -sha256")
    assert code == 0 and fp(pki.ca_cert.read_bytes()) in out and "Test Root CA" in out
    assert fp(pki.tsa_cert.read_bytes()) not in out
    # No block can close the terminal it is pasted into.
    for block in blocks(bundle):
        assert not re.search(r"(^|[;{&|]\s*)exit\b", block, flags=re.M), block


def test_fabricated_payload_and_entry_signed_by_a_never_enrolled_key_fail_by_hand(bag):
    """(a) An attacker without any custodian key: fake file + fake ingest entry signed by a key of
    their own (its PEM planted in evidence/keys/), every manifest fixed."""
    mallory = CustodianKey.generate("Field Team A")
    (bag / f"evidence/keys/{mallory.key_id}.pem").write_bytes(mallory.public.to_pem())
    seq = max(_entries(bag)) + 1
    _forge_ingest(bag, mallory, seq, b"fabricated confession\n", "confession.txt")
    results = run_blocks(bag)
    bad = failing(results)
    # The steps a forger can satisfy still pass ...
    assert not any(b.startswith("sha256sum") for b in bad)
    assert not any("while read -r digest path" in b for b in bad)
    assert not any('-sigfile "evidence/entries/$seq.sig"' in b for b in bad)  # the signature itself is good
    # ... the enrolment and inclusion steps fail, naming the entry.
    code, out = _block_out(results, ENROL)
    assert code != 0 and f"FAILED: entry {seq} is signed by key {mallory.key_id}" in out
    code, out = _block_out(results, INCLUSION)
    assert code != 0 and f"FAILED: entry {seq} is not in the log" in out
    # And the tool agrees.
    from evidencelock.bundle import verify_bundle

    assert not verify_bundle(bag).ok


def test_self_enrolled_fake_key_still_fails_inclusion_by_hand(bag):
    """(a') The forger also plants a key-enroll entry for their key, signed by itself."""
    mallory = CustodianKey.generate("Field Team A")
    (bag / f"evidence/keys/{mallory.key_id}.pem").write_bytes(mallory.public.to_pem())
    seq = max(_entries(bag)) + 1
    enrol = Entry(seq=seq, prev="0" * 64, time=_entries(bag)[0]["time"], type="key-enroll", case="", actor=mallory.key_id,
                  body={"key_id": mallory.key_id, "public_key": mallory.public.raw.hex(), "name": "Field Team A",
                        "role": "custodian"})
    _add_entry(bag, SignedEntry.create(enrol, mallory.sign))
    _forge_ingest(bag, mallory, seq + 1, b"fabricated confession\n", "confession.txt")
    results = run_blocks(bag)
    code, out = _block_out(results, INCLUSION)
    assert code != 0 and f"FAILED: entry {seq} is not in the log" in out and f"FAILED: entry {seq + 1} is not in the log" in out


def test_genuine_entry_not_in_the_checkpoint_tree_fails_by_hand(bag, exported):
    """(b) A genuinely signed entry (and its genuine file) from a LATER export, beyond this bundle's
    checkpoint, copied in with the manifests fixed: signatures and enrolment pass, inclusion must not."""
    later = exported["B"]
    mine = _entries(bag)
    theirs = _entries(later)
    seq = next(s for s, e in sorted(theirs.items()) if e["type"] == "ingest" and s not in mine)
    item = theirs[seq]["body"]["item"]
    path = next(ln.split("  ", 1)[1] for ln in (later / "manifest-sha256.txt").read_text().splitlines()
                if ln.startswith(item))
    (bag / path).parent.mkdir(parents=True, exist_ok=True)
    (bag / path).write_bytes((later / path).read_bytes())
    for ext in ("json", "sig"):
        (bag / f"evidence/entries/{seq}.{ext}").write_bytes((later / f"evidence/entries/{seq}.{ext}").read_bytes())
    regen_manifests(bag)
    results = run_blocks(bag)
    bad = failing(results)
    assert not any(ENROL in b for b in bad) and not any('-sigfile "evidence/entries/$seq.sig"' in b for b in bad)
    code, out = _block_out(results, INCLUSION)
    assert code != 0 and f"FAILED: entry {seq} is not in the log" in out


def test_pasted_into_one_shell_the_blocks_report_failures_and_keep_the_shell(bag):
    """Pasted one after the other into an interactive shell (no -e): every failure is printed and
    the shell survives to run the next command."""
    mallory = CustodianKey.generate("Field Team A")
    (bag / f"evidence/keys/{mallory.key_id}.pem").write_bytes(mallory.public.to_pem())
    (bag / "data" / "planted.txt").write_bytes(b"planted\n")
    _forge_ingest(bag, mallory, max(_entries(bag)) + 1, b"fabricated\n", "fabricated.txt")
    (bag / "data" / "unlisted.txt").write_bytes(b"not in any manifest\n")
    script = "\n".join(b for b in blocks(bag) if not b.startswith("bagit.py")) + "\necho STILL-HERE\n"
    p = subprocess.run(["bash", "-c", script], cwd=bag, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.stdout.rstrip().endswith("STILL-HERE"), out[-800:]
    assert "FAILED: data/ and manifest-sha256.txt list different files" in out
    assert "which no earlier entry enrols" in out and "is not in the log" in out


def test_backdated_token_from_a_self_made_tsa_fails_by_hand(bag, tmp_path):
    """A self-made TSA (its certificates valid in 2009) backdates the checkpoint to 2010. `openssl ts
    -verify` with the bundle's own chain passes (which is why the root must be compared); the root
    fingerprint printed is not the genuine one, and the entry-time block fails."""
    from datetime import datetime, timezone

    from test_bundle_attacks_time import backdated_token, dated_pki, swap_timestamp

    ca, cert, key = dated_pki(tmp_path / "evil", datetime(2009, 1, 1, tzinfo=timezone.utc))
    body = (bag / "evidence/checkpoint-body.txt").read_bytes()
    swap_timestamp(bag, backdated_token(tmp_path / "evil", cert, key, body, datetime(2010, 1, 1, tzinfo=timezone.utc)),
                   cert.read_bytes() + ca.read_bytes())
    results = run_blocks(bag)
    code, out = _block_out(results, "openssl x509 -noout -subject -fingerprint -sha256")
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    evil_fp = ":".join(f"{b:02X}" for b in hashlib.sha256(x509.load_pem_x509_certificate(ca.read_bytes())
                                                          .public_bytes(Encoding.DER)).digest())
    assert evil_fp in out  # the reader sees a fingerprint that is not the authority's
    code, out = _block_out(results, "Time stamp:")
    assert code != 0 and "FAILED: entry 0 is dated" in out and "2010-01-01T00:00:00+00:00" in out
