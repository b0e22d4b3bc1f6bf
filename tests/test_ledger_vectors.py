"""The ledger-format test vectors (docs/ledger-format.md §8), checked three ways:

1. by the library (evidencelock.entry.ChainVerifier);
2. by an independent re-derivation written from the spec text, not from our code
   (canonical JSON by the rules of RFC 8785 for the value types entries use, hashlib, the
   raw Ed25519 primitive);
3. by real ``openssl pkeyutl -verify -rawin``, as a stranger with standard tools would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from evidencelock.entry import ChainVerifier, SignedEntry
from evidencelock.errors import FormatError, SignatureError

VECTORS = json.loads((Path(__file__).parent.parent / "docs" / "vectors" / "ledger.json").read_text("utf-8"))


def _jcs(value) -> str:
    """RFC 8785 for strings, integers, booleans, null, arrays and objects (§3.2.2-3.2.3):
    object members sorted by UTF-16 code units, no whitespace, minimal string escaping."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(_jcs(k) + ":" + _jcs(v) for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_jcs(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            o = ord(ch)
            if ch == '"':
                out.append('\\"')
            elif ch == "\\":
                out.append("\\\\")
            elif ch in "\b\f\n\r\t":
                out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
            elif o < 0x20:
                out.append(f"\\u{o:04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    raise TypeError(type(value))


def test_keys_derive_from_seeds():
    for k in VECTORS["keys"]:
        priv = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(k["seed_hex"]))
        raw = priv.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert raw.hex() == k["public_key_hex"]
        assert hashlib.sha256(raw).hexdigest() == k["key_id"]  # §3: key id


def test_independent_rederivation_of_every_entry():
    keys = {k["key_id"]: bytes.fromhex(k["public_key_hex"]) for k in VECTORS["keys"]}
    prev = "0" * 64
    leaves = []
    for v in VECTORS["entries"]:
        canonical = bytes.fromhex(v["canonical_hex"])
        assert canonical.decode("utf-8") == v["canonical_utf8"]
        obj = json.loads(canonical)
        assert _jcs(obj).encode("utf-8") == canonical, "stored bytes are the canonical form (§2.1)"
        assert obj["seq"] == v["seq"] and obj["prev"] == prev  # §5: the chain
        assert hashlib.sha256(canonical).hexdigest() == v["entry_hash"]
        leaf = hashlib.sha256(b"\x00" + canonical).digest()  # §6: RFC 9162 leaf
        assert leaf.hex() == v["leaf_hash"]
        leaves.append(leaf)
        Ed25519PublicKey.from_public_bytes(keys[obj["actor"]]).verify(base64.b64decode(v["signature_b64"]), canonical)
        prev = v["entry_hash"]
    # RFC 9162 §2.1.1 root over 4 leaves: ((l0 l1)(l2 l3))
    node = lambda a, b: hashlib.sha256(b"\x01" + a + b).digest()  # noqa: E731
    assert node(node(leaves[0], leaves[1]), node(leaves[2], leaves[3])).hex() == VECTORS["merkle_root"]


def test_library_verifies_the_chain_and_rejects_the_negatives():
    verifier = ChainVerifier()
    for v in VECTORS["entries"]:
        verifier.feed(SignedEntry.from_bytes(bytes.fromhex(v["canonical_hex"]), base64.b64decode(v["signature_b64"])))
    assert len(verifier.keys) == 2
    rogue = VECTORS["negative"]["unenrolled_signer"]
    with pytest.raises(SignatureError, match="never enrolled"):
        verifier.feed(SignedEntry.from_bytes(rogue["canonical_utf8"].encode(), base64.b64decode(rogue["signature_b64"])))
    with pytest.raises(FormatError, match="not RFC 8785 canonical"):
        SignedEntry.from_bytes(VECTORS["negative"]["non_canonical"]["bytes_utf8"].encode(), b"\x00" * 64)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_an_entry_signature(tmp_path):
    """§7: what a person does by hand: openssl pkeyutl -verify -rawin on the canonical bytes."""
    v = VECTORS["entries"][1]
    key = VECTORS["keys"][0]
    (tmp_path / "key.pem").write_text(key["public_key_pem"])
    (tmp_path / "entry.json").write_bytes(bytes.fromhex(v["canonical_hex"]))
    (tmp_path / "entry.sig").write_bytes(base64.b64decode(v["signature_b64"]))
    cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "key.pem", "-rawin", "-in", "entry.json",
           "-sigfile", "entry.sig"]
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # One changed byte in the entry and openssl says no.
    data = bytearray(bytes.fromhex(v["canonical_hex"]))
    data[data.index(b"VID_0001")] ^= 0x01
    (tmp_path / "entry.json").write_bytes(bytes(data))
    bad = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0


def test_vectors_are_reproducible(tmp_path):
    """The committed vectors are exactly what the generator script makes."""
    script = Path(__file__).parent / "vectors" / "make_ledger_vectors.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == VECTORS
