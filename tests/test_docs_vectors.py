"""The test vectors a second verifier reads live in docs/vectors/ (issue 9 item 9).  Load THOSE
copies and check them with the code and with independent, from-the-RFC implementations, and
check that a flipped byte fails, so the vectors cannot drift from the bytes the code makes."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from evidencelock import merkle
from evidencelock.errors import ProofError

DOCS = Path(__file__).resolve().parent.parent / "docs"
VEC = DOCS / "vectors"
LEDGER = json.loads((VEC / "ledger.json").read_text("utf-8"))
PROOFS = json.loads((VEC / "proofs.json").read_text("utf-8"))


def _generator():
    spec = importlib.util.spec_from_file_location("make_proof_vectors", Path(__file__).parent / "vectors" / "make_proof_vectors.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def H(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def independent_inclusion_root(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2, written from the RFC (not from evidencelock.merkle)."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = H(b"\x01" + p + r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = H(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def test_docs_point_at_the_docs_vectors():
    for doc in ("ledger-format.md", "transparency.md"):
        text = (DOCS / doc).read_text("utf-8")
        assert "docs/vectors/" in text and "tests/vectors/ledger.json" not in text, doc
    assert "docs/vectors/proofs.json" in (DOCS / "transparency.md").read_text("utf-8")


def test_proof_vectors_are_reproducible_and_match_the_ledger_vectors():
    gen = _generator()
    assert PROOFS["leaf_hashes"] == gen.ledger_leaves(), "ledger.json changed: run tests/vectors/make_proof_vectors.py"
    assert gen.render(PROOFS["leaf_hashes"]) == (VEC / "proofs.json").read_text("utf-8")


def test_entry_vectors_independently():
    """Canonical bytes -> leaf hash, entry hash, Ed25519 signature under the named key's PEM."""
    keys = {k["key_id"]: k for k in LEDGER["keys"]}
    for k in keys.values():
        assert hashlib.sha256(bytes.fromhex(k["public_key_hex"])).hexdigest() == k["key_id"]
    leaves = []
    for e in LEDGER["entries"]:
        canonical = bytes.fromhex(e["canonical_hex"])
        assert canonical == e["canonical_utf8"].encode("utf-8")
        assert H(b"\x00" + canonical).hex() == e["leaf_hash"]
        actor = json.loads(canonical)["actor"]
        pub = load_pem_public_key(keys[actor]["public_key_pem"].encode())
        pub.verify(base64.b64decode(e["signature_b64"]), canonical)
        with pytest.raises(InvalidSignature):
            pub.verify(base64.b64decode(e["signature_b64"]), canonical.replace(b'"seq"', b'"Seq"'))
        leaves.append(bytes.fromhex(e["leaf_hash"]))
    assert merkle.root_hash(leaves).hex() == LEDGER["merkle_root"] == PROOFS["roots"][-1]["root_hash"]


def test_inclusion_vectors_verify_and_a_flipped_byte_fails():
    assert PROOFS["inclusion"]
    for v in PROOFS["inclusion"]:
        leaf, root, proof = bytes.fromhex(v["leaf_hash"]), bytes.fromhex(v["root_hash"]), [bytes.fromhex(p) for p in v["proof"]]
        merkle.verify_inclusion(leaf, v["index"], v["tree_size"], proof, root)
        assert independent_inclusion_root(leaf, v["index"], v["tree_size"], proof) == root
        if proof:
            bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:]] + proof[1:]
            with pytest.raises(ProofError):
                merkle.verify_inclusion(leaf, v["index"], v["tree_size"], bad, root)
            assert independent_inclusion_root(leaf, v["index"], v["tree_size"], bad) != root
        with pytest.raises(ProofError):
            merkle.verify_inclusion(H(b"\x00forged"), v["index"], v["tree_size"], proof, root)


def test_consistency_vectors_verify_and_a_flipped_byte_fails():
    assert PROOFS["consistency"]
    for v in PROOFS["consistency"]:
        proof = [bytes.fromhex(p) for p in v["proof"]]
        r1, r2 = bytes.fromhex(v["root1"]), bytes.fromhex(v["root2"])
        merkle.verify_consistency(v["size1"], v["size2"], proof, r1, r2)
        if proof:
            bad = proof[:-1] + [bytes([proof[-1][0] ^ 1]) + proof[-1][1:]]
            with pytest.raises(ProofError):
                merkle.verify_consistency(v["size1"], v["size2"], bad, r1, r2)
