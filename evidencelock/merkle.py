"""RFC 9162 (Certificate Transparency 2.0) Merkle tree: hashes, proofs and their verification.

Part of the verification core: pure functions over bytes, ``hashlib`` only, no IO.  The tree
is exactly the RFC 9162 §2.1 tree so that its public test vectors, and every independent
implementation of CT inclusion and consistency proofs, can check our logs.

Proof *generation* here works on an in-memory list of leaf hashes (used by tests, bundles and
small logs); the database-backed :mod:`evidencelock.treestore` produces byte-identical proofs
from stored subtrees.  Proof *verification* follows the RFC 9162 §2.1.3.2 and §2.1.4.2
algorithms step by step, so a reviewer can hold this file next to the RFC.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from .errors import ProofError

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "inclusion_proof",
    "consistency_proof",
    "verify_inclusion",
    "verify_consistency",
    "largest_power_of_two_below",
]

HASH_SIZE = 32
# RFC 9162 §2.1.1: MTH({}) = SHA-256() -- the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()
# Bound on proof length: a tree of 2**64 leaves needs at most 64 inclusion hashes and
# (for consistency) 64 + 1.  Longer proofs are rejected before any hashing.
_MAX_PROOF = 130


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d0}) = SHA-256(0x00 || d0).  The 0x00 prefix separates leaves from nodes."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: interior node = SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """RFC 9162 §2.1.1: k, the largest power of two strictly smaller than ``n`` (``n > 1``)."""
    if n < 2:
        raise ValueError(f"no power of two below {n} splits a tree")
    return 1 << ((n - 1).bit_length() - 1)


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) (RFC 9162 §2.1.1) over already-hashed leaves, any n including 0.

    Computed bottom-up in O(n) hashes: pair neighbours level by level; an odd node at the end
    of a level is carried up unchanged, which yields exactly the RFC's left-heavy split.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = [bytes(h) for h in leaf_hashes]
    for h in level:
        _check_hash(h, "leaf hash")
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _mth(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH of leaves[start:end] without copying; ``start < end``."""
    if end - start == 1:
        return leaves[start]
    return root_hash(leaves[start:end])


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1: the audit path for leaf ``index`` in the whole list."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} is outside a tree of size {n}")
    path: list[bytes] = []
    start, end, m = 0, n, index
    # Iterative form of the recursion; each step appends the sibling subtree hash, and the
    # RFC lists the path bottom-up, so we collect top-down and reverse at the end.
    while end - start > 1:
        k = largest_power_of_two_below(end - start)
        if m < k:
            # PATH(m, D[0:k]) : MTH(D[k:n])
            path.append(_mth(leaf_hashes, start + k, end))
            end = start + k
        else:
            # PATH(m - k, D[k:n]) : MTH(D[0:k])
            path.append(_mth(leaf_hashes, start, start + k))
            start, m = start + k, m - k
    path.reverse()
    return path


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1 with m = ``size1`` and n = ``len(leaf_hashes)``.

    The RFC defines the proof for 0 < m < n; for m == n and for m == 0 the proof is empty
    (every tree is consistent with itself and with the empty tree), which is what the
    verifier below expects for those cases.
    """
    n = len(leaf_hashes)
    if not 0 <= size1 <= n:
        raise ValueError(f"size1={size1} must be between 0 and size2={n}")
    if size1 == 0 or size1 == n:
        return []
    proof: list[bytes] = []
    start, end, m, b = 0, n, size1, True
    # SUBPROOF(m, D[n], b), iteratively; elements are appended after the recursive part in
    # the RFC, so we collect them in reverse order.
    while True:
        size = end - start
        if m == size:
            if not b:
                proof.append(_mth(leaf_hashes, start, end))
            break
        k = largest_power_of_two_below(size)
        if m <= k:
            # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.append(_mth(leaf_hashes, start + k, end))
            end = start + k
        else:
            # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            proof.append(_mth(leaf_hashes, start, start + k))
            start, m, b = start + k, m - k, False
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, found {size}")


def _check_proof(proof: Sequence[bytes], what: str) -> None:
    if len(proof) > _MAX_PROOF:
        raise ProofError(f"{what} has {len(proof)} hashes, more than any tree can need")
    for i, p in enumerate(proof):
        _check_hash(p, f"{what} element {i}")


def verify_inclusion(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Return ``None`` if ``proof`` proves leaf ``index`` of a ``tree_size`` tree hashes into ``root``.

    RFC 9162 §2.1.3.2, step by step.  Raises :class:`ProofError` otherwise.
    """
    subject = f"inclusion proof for leaf {index} in tree of size {tree_size}"
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root hash")
    _check_proof(proof, "inclusion proof")
    if type(index) is not int or type(tree_size) is not int or index < 0 or tree_size < 0:
        raise ProofError("index and tree size must be non-negative integers", subject=subject)
    # Step 1: leaf_index must be < tree_size (this also rejects every proof for size 0).
    if index >= tree_size:
        raise ProofError(f"leaf index {index} is not below tree size {tree_size}", subject=subject)
    # Step 2: fn = leaf_index, sn = tree_size - 1.  Step 3: r = hash.
    fn, sn, r = index, tree_size - 1, bytes(leaf_hash)
    # Step 4: fold in each path element.
    for p in proof:
        # 4a: a path longer than the tree is tall is invalid.
        if sn == 0:
            raise ProofError(f"proof has {len(proof)} hashes, too many for this tree", subject=subject)
        # 4b: fn odd, or fn is the last node of its level -> p is a left sibling.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # 4b.ii: skip levels where this node has no right sibling.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # 4c
        fn >>= 1
        sn >>= 1
    # Step 5: sn must be 0 (the whole path was used) and r must equal root_hash.
    if sn != 0:
        raise ProofError(f"proof has {len(proof)} hashes, too few for this tree", subject=subject)
    if not hmac.compare_digest(r, root):
        raise ProofError(
            f"root mismatch: expected={bytes(root).hex()} computed={r.hex()}",
            subject=subject,
            hint="the entry, the proof or the checkpoint may have been modified",
        )


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Return ``None`` if ``proof`` shows the ``size2`` tree with ``root2`` extends the ``size1`` tree with ``root1``.

    RFC 9162 §2.1.4.2, step by step; the degenerate cases the RFC leaves to the caller
    (size1 == size2, size1 == 0) are handled first.  Raises :class:`ProofError` otherwise.
    """
    subject = f"consistency proof from size {size1} to size {size2}"
    _check_hash(root1, "first root hash")
    _check_hash(root2, "second root hash")
    _check_proof(proof, "consistency proof")
    if type(size1) is not int or type(size2) is not int or size1 < 0 or size2 < 0:
        raise ProofError("tree sizes must be non-negative integers", subject=subject)
    if size2 < size1:
        raise ProofError(f"size2={size2} is smaller than size1={size1}: a log never shrinks", subject=subject)
    if size1 == size2:
        # Same size: the proof is empty and the roots must be identical.
        if proof:
            raise ProofError(f"expected an empty proof for equal sizes, found {len(proof)} hashes", subject=subject)
        if not hmac.compare_digest(root1, root2):
            raise ProofError(
                f"root mismatch for equal sizes: expected={bytes(root1).hex()} found={bytes(root2).hex()}",
                subject=subject,
                hint="the log may have been rewritten (a fork)",
            )
        return
    if size1 == 0:
        # Every tree extends the empty tree; the proof is empty.  The first root must still be
        # the empty-tree root (RFC 9162 §2.1.1), or the caller was given a bogus checkpoint.
        if proof:
            raise ProofError(f"expected an empty proof from size 0, found {len(proof)} hashes", subject=subject)
        if not hmac.compare_digest(root1, EMPTY_ROOT):
            raise ProofError(
                f"root of the empty tree mismatch: expected={EMPTY_ROOT.hex()} found={bytes(root1).hex()}",
                subject=subject,
            )
        return
    # Step 1: for 0 < first < second the proof cannot be empty.
    if not proof:
        raise ProofError("empty proof for different sizes", subject=subject)
    path = list(proof)
    # Step 2: if first is an exact power of two, prepend first_hash.
    if size1 & (size1 - 1) == 0:
        path.insert(0, bytes(root1))
    # Step 3
    fn, sn = size1 - 1, size2 - 1
    # Step 4: skip the levels where the first tree's last node is a right child.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5
    fr = sr = path[0]
    # Step 6
    for c in path[1:]:
        # 6a
        if sn == 0:
            raise ProofError(f"proof has {len(proof)} hashes, too many for these sizes", subject=subject)
        # 6b
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        # 6c
        fn >>= 1
        sn >>= 1
    # Step 7: fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0:
        raise ProofError(f"proof has {len(proof)} hashes, too few for these sizes", subject=subject)
    if not hmac.compare_digest(fr, root1):
        raise ProofError(
            f"first root mismatch: expected={bytes(root1).hex()} computed={fr.hex()}",
            subject=subject,
            hint="the proof or the earlier checkpoint may have been modified",
        )
    if not hmac.compare_digest(sr, root2):
        raise ProofError(
            f"second root mismatch: expected={bytes(root2).hex()} computed={sr.hex()}",
            subject=subject,
            hint="the log may have been rewritten since the earlier checkpoint",
        )
