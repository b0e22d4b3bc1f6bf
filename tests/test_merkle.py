"""RFC 9162 Merkle tree: against published vectors, an independent naive model, and tampering."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidencelock import merkle
from evidencelock.errors import ProofError, VerificationError

VECTORS = json.loads((Path(__file__).parent.parent / "docs" / "vectors" / "merkle.json").read_text())


# --- an independent model, written as the RFC's recursive definitions over lists ---------


def _h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def naive_mth(d: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH over *raw* leaf inputs, literally recursive."""
    if not d:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = 1
    while k * 2 < len(d):
        k *= 2
    return _h(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:]))


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return naive_path(m, d[:k]) + [naive_mth(d[k:])]
    return naive_path(m - k, d[k:]) + [naive_mth(d[:k])]


def naive_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return naive_subproof(m, d[:k], b) + [naive_mth(d[k:])]
    return naive_subproof(m - k, d[k:], False) + [naive_mth(d[:k])]


DATA = [f"entry {i}".encode() for i in range(64)]
LEAVES = [merkle.leaf_hash(x) for x in DATA]


def hx(b: bytes) -> str:
    return b.hex()


# --- published vectors -------------------------------------------------------------------


def test_vectors_roots() -> None:
    leaves = [merkle.leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaves"]]
    assert merkle.root_hash([]).hex() == VECTORS["empty_root"] == merkle.EMPTY_ROOT.hex()
    for i, root in enumerate(VECTORS["roots"]):
        assert merkle.root_hash(leaves[: i + 1]).hex() == root


@pytest.mark.parametrize("vec", VECTORS["inclusion"], ids=lambda v: f"{v['index']}of{v['size']}")
def test_vectors_inclusion(vec: dict) -> None:
    leaves = [merkle.leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaves"]]
    proof = merkle.inclusion_proof(leaves[: vec["size"]], vec["index"])
    assert [hx(p) for p in proof] == vec["proof"]
    root = bytes.fromhex(VECTORS["roots"][vec["size"] - 1])
    merkle.verify_inclusion(leaves[vec["index"]], vec["index"], vec["size"], proof, root)


@pytest.mark.parametrize("vec", VECTORS["consistency"], ids=lambda v: f"{v['size1']}to{v['size2']}")
def test_vectors_consistency(vec: dict) -> None:
    leaves = [merkle.leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaves"]]
    proof = merkle.consistency_proof(leaves[: vec["size2"]], vec["size1"])
    assert [hx(p) for p in proof] == vec["proof"]
    r1 = bytes.fromhex(VECTORS["roots"][vec["size1"] - 1])
    r2 = bytes.fromhex(VECTORS["roots"][vec["size2"] - 1])
    merkle.verify_consistency(vec["size1"], vec["size2"], proof, r1, r2)


# --- exhaustive agreement with the naive model up to 64 leaves ----------------------------


def test_roots_match_naive_model() -> None:
    for n in range(65):
        assert merkle.root_hash(LEAVES[:n]) == naive_mth(DATA[:n])


def test_every_inclusion_pair_up_to_64() -> None:
    for n in range(1, 65):
        root = naive_mth(DATA[:n])
        for i in range(n):
            proof = merkle.inclusion_proof(LEAVES[:n], i)
            assert proof == naive_path(i, DATA[:n])
            merkle.verify_inclusion(LEAVES[i], i, n, proof, root)


def test_every_consistency_pair_up_to_64() -> None:
    roots = [naive_mth(DATA[:n]) for n in range(65)]
    for n in range(0, 65):
        for m in range(0, n + 1):
            proof = merkle.consistency_proof(LEAVES[:n], m)
            expected = [] if m in (0, n) else naive_subproof(m, DATA[:n], True)
            assert proof == expected
            merkle.verify_consistency(m, n, proof, roots[m], roots[n])


# --- tampering ---------------------------------------------------------------------------


def _inclusion_attacks(i: int, n: int, proof: list[bytes], root: bytes):
    leaf = LEAVES[i]
    yield "wrong index -1", (leaf, i - 1, n, proof, root)
    yield "wrong index +1", (leaf, i + 1, n, proof, root)
    yield "wrong index ^2", (leaf, i ^ 2, n, proof, root)
    yield "size*2", (leaf, i, n * 2, proof, root)
    yield "size//2", (leaf, i, n // 2, proof, root)
    yield "wrong leaf", (LEAVES[(i + 1) % 64], i, n, proof, root)
    yield "empty root", (leaf, i, n, proof, merkle.EMPTY_ROOT)
    yield "trailing root", (leaf, i, n, proof + [root], root)
    yield "preceding root", (leaf, i, n, [root] + proof, root)
    if proof:
        yield "dropped last", (leaf, i, n, proof[:-1], root)
        yield "dropped first", (leaf, i, n, proof[1:], root)
    for k in range(len(proof)):
        for byte in range(32):
            bad = bytearray(proof[k])
            bad[byte] ^= 0x01
            yield f"flipped proof[{k}] byte {byte}", (leaf, i, n, proof[:k] + [bytes(bad)] + proof[k + 1 :], root)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 32, 33, 64])
def test_inclusion_tampering_rejected(n: int) -> None:
    root = merkle.root_hash(LEAVES[:n])
    for i in sorted({0, n // 2, n - 1}):
        proof = merkle.inclusion_proof(LEAVES[:n], i)
        for name, args in _inclusion_attacks(i, n, proof, root):
            if name.startswith("wrong index") and args[1] == i:
                continue
            with pytest.raises(ProofError):
                merkle.verify_inclusion(*args)
                pytest.fail(f"attack accepted: {name}")


@pytest.mark.parametrize("m,n", [(1, 2), (1, 8), (3, 7), (6, 8), (4, 9), (7, 64), (32, 33), (63, 64)])
def test_consistency_tampering_rejected(m: int, n: int) -> None:
    r1, r2 = merkle.root_hash(LEAVES[:m]), merkle.root_hash(LEAVES[:n])
    proof = merkle.consistency_proof(LEAVES[:n], m)
    attacks = {
        "size1-1": (m - 1, n, proof, r1, r2),
        "size1+1": (m + 1, n, proof, r1, r2),
        "size2*2": (m, n * 2, proof, r1, r2),
        "swapped roots": (m, n, proof, r2, r1),
        "empty proof": (m, n, [], r1, r2),
        "trailing root1": (m, n, proof + [r1], r1, r2),
        "preceding root2": (m, n, [r2] + proof, r1, r2),
        "preceding proof[0]": (m, n, [proof[0]] + proof, r1, r2),
        "truncated": (m, n, proof[:-1], r1, r2),
        "shrinking": (n, m, proof, r2, r1),
    }
    for k in range(len(proof)):
        for byte in range(32):
            bad = bytearray(proof[k])
            bad[byte] ^= 0x10
            attacks[f"flipped proof[{k}] byte {byte}"] = (m, n, proof[:k] + [bytes(bad)] + proof[k + 1 :], r1, r2)
    for name, args in attacks.items():
        try:
            merkle.verify_consistency(*args)
        except ProofError:
            continue
        pytest.fail(f"attack accepted: {name}")


def test_error_messages_name_sizes_and_roots() -> None:
    proof = merkle.inclusion_proof(LEAVES[:10], 3)
    root = merkle.root_hash(LEAVES[:10])
    with pytest.raises(ProofError) as info:
        merkle.verify_inclusion(LEAVES[4], 3, 10, proof, root)
    text = str(info.value)
    assert "leaf 3" in text and "size 10" in text and f"expected={root.hex()}" in text and "computed=" in text
    assert isinstance(info.value, VerificationError) and info.value.exit_code == 1
    with pytest.raises(ProofError, match="from size 3 to size 10"):
        merkle.verify_consistency(3, 10, merkle.consistency_proof(LEAVES[:10], 3), root, root)


def test_edge_cases() -> None:
    one = LEAVES[0]
    merkle.verify_inclusion(one, 0, 1, [], one)  # size 1: root is the leaf hash, empty proof
    with pytest.raises(ProofError):
        merkle.verify_inclusion(one, 0, 0, [], merkle.EMPTY_ROOT)  # nothing is in an empty tree
    with pytest.raises(ProofError):
        merkle.verify_inclusion(one, 1, 1, [], one)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(one, 0, 1, [one], one)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(b"short", 0, 1, [], one)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(one, -1, 1, [], one)
    r5 = merkle.root_hash(LEAVES[:5])
    merkle.verify_consistency(0, 0, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)
    merkle.verify_consistency(0, 5, [], merkle.EMPTY_ROOT, r5)
    merkle.verify_consistency(5, 5, [], r5, r5)
    with pytest.raises(ProofError):
        merkle.verify_consistency(0, 5, [], r5, r5)  # size 0 must have the empty root
    with pytest.raises(ProofError):
        merkle.verify_consistency(0, 5, [r5], merkle.EMPTY_ROOT, r5)
    with pytest.raises(ProofError):
        merkle.verify_consistency(5, 5, [r5], r5, r5)
    with pytest.raises(ProofError):
        merkle.verify_consistency(5, 5, [], r5, merkle.EMPTY_ROOT)  # fork at equal size
    with pytest.raises(ProofError):
        merkle.verify_consistency(1, 2, [], LEAVES[0], merkle.root_hash(LEAVES[:2]))
    with pytest.raises(ProofError):
        merkle.verify_inclusion(one, 0, 1, [one] * 200, one)  # absurd length rejected early
    with pytest.raises(ValueError):
        merkle.inclusion_proof(LEAVES[:3], 3)
    with pytest.raises(ValueError):
        merkle.consistency_proof(LEAVES[:3], 4)


def test_random_large_trees() -> None:
    rng = random.Random(9162)
    for n in (1000, 1023, 1024, 1025, 4099):
        leaves = [merkle.leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(n)]
        root = merkle.root_hash(leaves)
        for _ in range(20):
            i = rng.randrange(n)
            merkle.verify_inclusion(leaves[i], i, n, merkle.inclusion_proof(leaves, i), root)
            m = rng.randrange(n + 1)
            merkle.verify_consistency(m, n, merkle.consistency_proof(leaves, m), merkle.root_hash(leaves[:m]), root)
        merkle.verify_inclusion(leaves[n - 1], n - 1, n, merkle.inclusion_proof(leaves, n - 1), root)


# --- properties --------------------------------------------------------------------------

_data = st.lists(st.binary(max_size=8), min_size=1, max_size=80)


@settings(max_examples=150, deadline=None)
@given(_data, st.data())
def test_property_inclusion_roundtrip(data: list[bytes], draw: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(x) for x in data]
    i = draw.draw(st.integers(0, len(data) - 1))
    proof = merkle.inclusion_proof(leaves, i)
    assert proof == naive_path(i, data)
    merkle.verify_inclusion(leaves[i], i, len(data), proof, naive_mth(data))
    j = draw.draw(st.integers(0, len(data) - 1))
    if data[j] != data[i]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaves[j], i, len(data), proof, naive_mth(data))


@settings(max_examples=150, deadline=None)
@given(_data, st.data())
def test_property_consistency_roundtrip(data: list[bytes], draw: st.DataObject) -> None:
    leaves = [merkle.leaf_hash(x) for x in data]
    m = draw.draw(st.integers(0, len(data)))
    proof = merkle.consistency_proof(leaves, m)
    merkle.verify_consistency(m, len(data), proof, naive_mth(data[:m]), naive_mth(data))
    # A log that rewrote an old entry cannot prove consistency with the old root.
    if 0 < m < len(data):
        forged = list(data)
        forged[draw.draw(st.integers(0, m - 1))] += b"!"
        with pytest.raises(ProofError):
            merkle.verify_consistency(m, len(data), proof, naive_mth(data[:m]), naive_mth(forged))
