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
        results.append((block.splitlines()[0], p.returncode, p.stdout + p.stderr))
    return results


def failing(results) -> list[str]:
    return [first for first, code, _ in results if code != 0]


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
    assert any(b.startswith("test \"$(find data") for b in bad)


def test_replaced_payload_with_regenerated_manifests_fails_custody_check(bag):
    p = next(x for x in sorted((bag / "data").rglob("*")) if x.is_file())
    p.write_bytes(b"substituted footage")
    regen_manifests(bag)  # sha256sum -c now passes; the custody record must not
    bad = failing(run_blocks(bag))
    assert not any(b.startswith("sha256sum") for b in bad)
    assert any(b.startswith("while read -r digest path") for b in bad)


def test_edited_entry_fails_openssl_signature_check(bag):
    lines = (bag / "evidence/entries.jsonl").read_text().splitlines()
    obj = json.loads(lines[-1])
    seq = obj["seq"]
    canonical = base64.b64decode(obj["canonical"]).replace(b'"time":"20', b'"time":"19', 1)
    (bag / f"evidence/entries/{seq}.json").write_bytes(canonical)
    regen_tag_manifests(bag)
    results = run_blocks(bag)
    bad = failing(results)
    assert any(b.startswith("for f in evidence/entries/*.json") for b in bad)
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
