"""The RFC 9162 Merkle tree persisted in the ``tree_nodes`` table, for logs of millions of entries.

Why a table: a proof for one entry in a million-entry log must not rehash the log.  We store
every *complete perfect* subtree: node (level, idx) is the root of leaves
``[idx * 2**level, (idx + 1) * 2**level)``; level 0 holds the leaf hashes.  Any RFC 9162
subtree hash MTH(D[a:b]) that proofs need is a right fold of at most log2(n) such nodes, so
``root_at`` and the proofs do O(log^2 n) lookups in ONE query, and return bytes identical to
:mod:`evidencelock.merkle` on the same leaves.

The table is derived data (schema.py): ``verify_nodes`` recomputes it from the entries and
reports the first disagreement; ``rebuild`` rewrites it.  Every function takes a SQLAlchemy
``Connection`` and runs inside the caller's transaction; nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.engine import Connection

from . import merkle
from .errors import ProofError, StorageError
from .schema import tree_nodes

__all__ = [
    "append_leaf",
    "append_leaves",
    "tree_size",
    "root_at",
    "inclusion_proof_at",
    "consistency_proof_at",
    "rebuild",
    "verify_nodes",
]

Node = tuple[int, int]  # (level, idx)
_BATCH = 5000  # rows per INSERT / per verification chunk


def tree_size(conn: Connection) -> int:
    """Number of leaves: one index lookup (max level-0 idx + 1), not a COUNT over the log."""
    top = conn.execute(select(func.max(tree_nodes.c.idx)).where(tree_nodes.c.level == 0)).scalar()
    return 0 if top is None else int(top) + 1


def append_leaf(conn: Connection, index: int, leaf_hash: bytes) -> None:
    """Add leaf ``index`` (must equal the current size) and every perfect subtree it completes.

    Leaf ``index`` completes one parent per trailing 1-bit of ``index``: at each such level
    the new node is a right child whose left sibling is already stored.
    """
    append_leaves(conn, index, [leaf_hash])


def append_leaves(conn: Connection, start: int, leaf_hashes: Sequence[bytes]) -> None:
    """Append several leaves at once (group commit): one size check, one SELECT, one INSERT.

    Equivalent to calling :func:`append_leaf` for each leaf in turn.
    """
    if not leaf_hashes:
        return
    size = tree_size(conn)
    if start != size:
        raise StorageError(
            f"Merkle tree append out of order: expected leaf index={size} found index={start}",
            subject="tree_nodes",
            hint="the tree table disagrees with the ledger; run verify, then rebuild the tree",
        )
    # Left siblings that lie before ``start`` come from the table; the rest from this batch.
    needed: set[Node] = set()
    for k in range(len(leaf_hashes)):
        level, idx = 0, start + k
        while idx & 1:
            if ((idx - 1) + 1) << level <= start:
                needed.add((level, idx - 1))
            level, idx = level + 1, idx >> 1
    known = _fetch(conn, needed)
    rows = []
    for k, leaf in enumerate(leaf_hashes):
        if len(leaf) != merkle.HASH_SIZE:
            raise ValueError(f"leaf hash must be {merkle.HASH_SIZE} bytes, found {len(leaf)}")
        index = start + k
        h = bytes(leaf)
        known[(0, index)] = h
        rows.append({"level": 0, "idx": index, "hash": h})
        level, idx = 0, index
        while idx & 1:
            h = merkle.node_hash(known[(level, idx - 1)], h)
            level, idx = level + 1, idx >> 1
            known[(level, idx)] = h
            rows.append({"level": level, "idx": idx, "hash": h})
    conn.execute(insert(tree_nodes), rows)


def _fetch(conn: Connection, nodes: Iterable[Node]) -> dict[Node, bytes]:
    """Look up many nodes in one SELECT (grouped by level: ``level = L AND idx IN (...)``)."""
    by_level: dict[int, set[int]] = {}
    for level, idx in nodes:
        by_level.setdefault(level, set()).add(idx)
    if not by_level:
        return {}
    cond = or_(
        *(
            and_(tree_nodes.c.level == level, tree_nodes.c.idx.in_(sorted(idxs)))
            for level, idxs in sorted(by_level.items())
        )
    )
    found = {
        (int(r.level), int(r.idx)): bytes(r.hash)
        for r in conn.execute(select(tree_nodes.c.level, tree_nodes.c.idx, tree_nodes.c.hash).where(cond))
    }
    missing = [(lvl, i) for lvl, idxs in by_level.items() for i in idxs if (lvl, i) not in found]
    if missing:
        raise StorageError(
            f"Merkle tree node(s) missing: {sorted(missing)[:5]}",
            subject="tree_nodes",
            hint="the tree table is incomplete; run verify, then rebuild the tree",
        )
    return found


def _range_nodes(start: int, end: int) -> list[Node]:
    """The perfect subtrees, left to right, whose right fold is MTH(D[start:end]).

    Valid for the ranges RFC 9162 proofs use: ``start`` is a multiple of a power of two at
    least ``end - start`` (every range arising from the §2.1.1 left-heavy split is).
    """
    nodes: list[Node] = []
    pos, remaining = start, end - start
    while remaining:
        level = remaining.bit_length() - 1
        nodes.append((level, pos >> level))
        pos += 1 << level
        remaining -= 1 << level
    return nodes


def _fold(nodes: Sequence[Node], hashes: dict[Node, bytes]) -> bytes:
    h = hashes[nodes[-1]]
    for node in reversed(nodes[:-1]):
        h = merkle.node_hash(hashes[node], h)
    return h


def _resolve(conn: Connection, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH of each range, all lookups in one query."""
    plans = [_range_nodes(a, b) for a, b in ranges]
    hashes = _fetch(conn, (n for plan in plans for n in plan))
    return [_fold(plan, hashes) for plan in plans]


def _check_size(conn: Connection, size: int) -> None:
    current = tree_size(conn)
    if type(size) is not int or not 0 <= size <= current:
        raise ProofError(f"tree size {size} is not between 0 and the current size {current}", subject="tree_nodes")


def root_at(conn: Connection, size: int) -> bytes:
    """MTH of the first ``size`` leaves (RFC 9162 §2.1.1), for any size up to the current one."""
    _check_size(conn, size)
    if size == 0:
        return merkle.EMPTY_ROOT
    return _resolve(conn, [(0, size)])[0]


def inclusion_proof_at(conn: Connection, index: int, size: int) -> list[bytes]:
    """PATH(index, D[size]) (RFC 9162 §2.1.3.1) from stored subtrees."""
    _check_size(conn, size)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not below tree size {size}", subject="tree_nodes")
    ranges: list[tuple[int, int]] = []
    start, end, m = 0, size, index
    while end - start > 1:
        k = merkle.largest_power_of_two_below(end - start)
        if m < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m = start + k, m - k
    ranges.reverse()
    return _resolve(conn, ranges)


def consistency_proof_at(conn: Connection, size1: int, size2: int) -> list[bytes]:
    """PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1) from stored subtrees; empty for 0 or equal sizes."""
    _check_size(conn, size2)
    if not 0 <= size1 <= size2:
        raise ProofError(f"size1={size1} must be between 0 and size2={size2}", subject="tree_nodes")
    if size1 == 0 or size1 == size2:
        return []
    ranges: list[tuple[int, int]] = []
    start, end, m, b = 0, size2, size1, True
    while True:
        if m == end - start:
            if not b:
                ranges.append((start, end))
            break
        k = merkle.largest_power_of_two_below(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, b = start + k, m - k, False
    ranges.reverse()
    return _resolve(conn, ranges)


def _iter_nodes(leaf_hashes: Iterable[bytes]) -> Iterable[tuple[int, int, bytes]]:
    """Every perfect subtree node of the tree over ``leaf_hashes``, streamed in append order.

    Memory is O(log n): a stack of the pending left siblings, one per level.
    """
    stack: list[bytes] = []  # stack[level] is pending left sibling at that level, or b"" if none
    for index, leaf in enumerate(leaf_hashes):
        if len(leaf) != merkle.HASH_SIZE:
            raise ProofError(f"leaf {index}: hash must be {merkle.HASH_SIZE} bytes, found {len(leaf)}")
        h = bytes(leaf)
        yield 0, index, h
        level, idx = 0, index
        while idx & 1:
            h = merkle.node_hash(stack[level], h)
            stack[level] = b""
            level, idx = level + 1, idx >> 1
            yield level, idx, h
        if len(stack) <= level:
            stack.extend([b""] * (level + 1 - len(stack)))
        stack[level] = h


def rebuild(conn: Connection, leaf_hashes: Iterable[bytes]) -> int:
    """Replace the whole table by the tree over ``leaf_hashes`` (in seq order); return the size."""
    conn.execute(delete(tree_nodes))
    batch: list[dict[str, object]] = []
    size = 0
    for level, idx, h in _iter_nodes(leaf_hashes):
        if level == 0:
            size = idx + 1
        batch.append({"level": level, "idx": idx, "hash": h})
        if len(batch) >= _BATCH:
            conn.execute(insert(tree_nodes), batch)
            batch = []
    if batch:
        conn.execute(insert(tree_nodes), batch)
    return size


def verify_nodes(conn: Connection, leaf_hashes: Iterable[bytes]) -> None:
    """Read-only check that the stored tree is exactly the tree over ``leaf_hashes``.

    Raises :class:`ProofError` naming the first node that differs (expected vs found), a
    missing node, or extra nodes.  Streams: memory stays bounded for any log size.
    """
    checked = 0
    batch: list[tuple[int, int, bytes]] = []

    def flush() -> None:
        by_level: dict[int, list[int]] = {}
        for level, idx, _ in batch:
            by_level.setdefault(level, []).append(idx)
        cond = or_(
            *(
                and_(tree_nodes.c.level == lvl, tree_nodes.c.idx >= min(ix), tree_nodes.c.idx <= max(ix))
                for lvl, ix in by_level.items()
            )
        )
        stored = {
            (int(r.level), int(r.idx)): bytes(r.hash)
            for r in conn.execute(select(tree_nodes.c.level, tree_nodes.c.idx, tree_nodes.c.hash).where(cond))
        }
        for level, idx, h in batch:
            found = stored.get((level, idx))
            if found is None:
                raise ProofError(
                    f"Merkle node (level={level}, idx={idx}) missing: expected={h.hex()}",
                    subject="tree_nodes",
                    hint="rebuild the tree from the entries",
                )
            if found != h:
                raise ProofError(
                    f"Merkle node (level={level}, idx={idx}) differs from the entries: "
                    f"expected={h.hex()} found={found.hex()}",
                    subject="tree_nodes",
                    hint="the tree table or an entry may have been modified",
                )

    for node in _iter_nodes(leaf_hashes):
        batch.append(node)
        checked += 1
        if len(batch) >= _BATCH:
            flush()
            batch = []
    if batch:
        flush()
    total = conn.execute(select(func.count()).select_from(tree_nodes)).scalar() or 0
    if total != checked:
        raise ProofError(
            f"Merkle tree table has {total} nodes, the entries give {checked}",
            subject="tree_nodes",
            hint="extra nodes beyond the log: rebuild the tree from the entries",
        )
