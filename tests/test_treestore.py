"""The persisted Merkle tree: byte-identical to merkle.py, O(log n), and tamper-evident."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from evidencelock import merkle, schema, treestore
from evidencelock.errors import ProofError, StorageError


def _engine(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    schema.metadata.create_all(engine)
    return engine


def _leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [merkle.leaf_hash(salt + i.to_bytes(8, "big")) for i in range(n)]


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    return _engine(tmp_path / "ledger.sqlite")


def test_empty_tree(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        assert treestore.tree_size(conn) == 0
        assert treestore.root_at(conn, 0) == merkle.EMPTY_ROOT
        assert treestore.consistency_proof_at(conn, 0, 0) == []
        with pytest.raises(ProofError):
            treestore.root_at(conn, 1)
        with pytest.raises(ProofError):
            treestore.inclusion_proof_at(conn, 0, 0)


def test_identical_to_merkle_for_every_size_up_to_40_and_70(engine: sa.Engine) -> None:
    leaves = _leaves(70)
    with engine.begin() as conn:
        for i, leaf in enumerate(leaves):
            treestore.append_leaf(conn, i, leaf)
    with engine.connect() as conn:
        assert treestore.tree_size(conn) == 70
        for n in [*range(41), 63, 64, 65, 70]:
            assert treestore.root_at(conn, n) == merkle.root_hash(leaves[:n])
            for i in range(n):
                assert treestore.inclusion_proof_at(conn, i, n) == merkle.inclusion_proof(leaves[:n], i)
            for m in range(n + 1):
                assert treestore.consistency_proof_at(conn, m, n) == merkle.consistency_proof(leaves[:n], m)


def test_only_complete_perfect_subtrees_are_stored(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        for i, leaf in enumerate(_leaves(11)):
            treestore.append_leaf(conn, i, leaf)
        rows = set(conn.execute(sa.select(schema.tree_nodes.c.level, schema.tree_nodes.c.idx)).all())
    # 11 leaves -> 5 pairs, 2 quads, 1 octet: 11 + 5 + 2 + 1 nodes, none for incomplete ranges.
    assert len(rows) == 19
    assert (3, 0) in rows and (2, 2) not in rows and (1, 5) not in rows


def test_append_out_of_order_is_refused(engine: sa.Engine) -> None:
    leaves = _leaves(3)
    with engine.begin() as conn:
        treestore.append_leaf(conn, 0, leaves[0])
        with pytest.raises(StorageError, match="expected leaf index=1 found index=2"):
            treestore.append_leaf(conn, 2, leaves[2])
        with pytest.raises(StorageError, match="expected leaf index=1 found index=0"):
            treestore.append_leaf(conn, 0, leaves[0])
        with pytest.raises(ValueError):
            treestore.append_leaf(conn, 1, b"short")


def test_rolled_back_append_leaves_no_trace(engine: sa.Engine) -> None:
    leaves = _leaves(4)
    with engine.begin() as conn:
        for i in range(3):
            treestore.append_leaf(conn, i, leaves[i])
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            treestore.append_leaf(conn, 3, leaves[3])  # would complete (1,1) and (2,0)
            raise RuntimeError("crash inside the ledger's transaction")
    with engine.connect() as conn:
        assert treestore.tree_size(conn) == 3
        treestore.verify_nodes(conn, leaves[:3])
    with engine.begin() as conn:
        treestore.append_leaf(conn, 3, leaves[3])
        assert treestore.root_at(conn, 4) == merkle.root_hash(leaves)


def test_verify_nodes_names_tampered_missing_and_extra_nodes(engine: sa.Engine) -> None:
    leaves = _leaves(20)
    nodes = schema.tree_nodes
    with engine.begin() as conn:
        assert treestore.rebuild(conn, leaves) == 20
        treestore.verify_nodes(conn, leaves)
        # A modified entry: the recomputed leaf differs from the stored node.
        other = list(leaves)
        other[7] = merkle.leaf_hash(b"forged")
        with pytest.raises(ProofError, match=r"level=0, idx=7\) differs.*expected=.*found="):
            treestore.verify_nodes(conn, other)
        # A tampered interior node.
        conn.execute(sa.update(nodes).where(nodes.c.level == 2, nodes.c.idx == 1).values(hash=b"\x00" * 32))
        with pytest.raises(ProofError, match=r"level=2, idx=1\)"):
            treestore.verify_nodes(conn, leaves)
        treestore.rebuild(conn, leaves)
        # A deleted node.
        conn.execute(sa.delete(nodes).where(nodes.c.level == 1, nodes.c.idx == 3))
        with pytest.raises(ProofError, match="missing"):
            treestore.verify_nodes(conn, leaves)
        with pytest.raises(StorageError, match="missing"):
            treestore.inclusion_proof_at(conn, 4, 20)  # needs node (1, 3)
        treestore.rebuild(conn, leaves)
        # Extra nodes past the log (e.g. a leaf for an entry that was deleted).
        treestore.append_leaf(conn, 20, merkle.leaf_hash(b"ghost"))
        with pytest.raises(ProofError, match="has 39 nodes, the entries give 38"):
            treestore.verify_nodes(conn, leaves)


def test_tampered_node_yields_proofs_that_fail_verification(engine: sa.Engine) -> None:
    leaves = _leaves(16)
    nodes = schema.tree_nodes
    with engine.begin() as conn:
        treestore.rebuild(conn, leaves)
        good_root = merkle.root_hash(leaves)
        conn.execute(sa.update(nodes).where(nodes.c.level == 1, nodes.c.idx == 1).values(hash=b"\x11" * 32))
        proof = treestore.inclusion_proof_at(conn, 0, 16)
        with pytest.raises(ProofError, match="root mismatch"):
            merkle.verify_inclusion(leaves[0], 0, 16, proof, good_root)


def test_rebuild_matches_incremental_appends(tmp_path: Path) -> None:
    leaves = _leaves(300, b"r")
    a, b = _engine(tmp_path / "a.sqlite"), _engine(tmp_path / "b.sqlite")
    with a.begin() as conn:
        for i, leaf in enumerate(leaves):
            treestore.append_leaf(conn, i, leaf)
    with b.begin() as conn:
        treestore.rebuild(conn, iter(leaves))
    query = sa.select(schema.tree_nodes).order_by(schema.tree_nodes.c.level, schema.tree_nodes.c.idx)
    with a.connect() as ca, b.connect() as cb:
        assert ca.execute(query).all() == cb.execute(query).all()


def test_append_is_logarithmic_in_queries(engine: sa.Engine) -> None:
    leaves = _leaves(1024)
    statements: list[str] = []
    with engine.begin() as conn:
        treestore.rebuild(conn, leaves[:1023])
        def record(_conn, _cursor, statement, *_args) -> None:
            statements.append(statement)

        event.listen(conn, "before_cursor_execute", record)
        treestore.append_leaf(conn, 1023, leaves[1023])  # completes 10 parents
        event.remove(conn, "before_cursor_execute", record)
        assert len(statements) <= 3, statements  # size, siblings, one multi-row insert
        assert treestore.root_at(conn, 1024) == merkle.root_hash(leaves)


def _bulk_load(path: Path, leaves: list[bytes]) -> None:
    """Write every complete perfect subtree level by level with raw sqlite3 (sorted inserts).

    Far faster than a million ``append_leaf`` calls; the result is the same table
    (test_rebuild_matches_incremental_appends shows rebuild == appends, and the proofs below
    verify against merkle.py's verifier, so a wrong node would fail).
    """
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        level, nodes = 0, leaves
        while nodes:
            db.executemany("INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)", enumerate_level(level, nodes))
            nodes = [merkle.node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes) - 1, 2)]
            level += 1
        db.commit()
    finally:
        db.close()


def enumerate_level(level: int, nodes: list[bytes]):
    return ((level, i, h) for i, h in enumerate(nodes))


def test_million_entry_proofs_take_milliseconds(tmp_path: Path) -> None:
    n = 1_000_000
    path = tmp_path / "big.sqlite"
    _engine(path).dispose()
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]
    _bulk_load(path, leaves)
    engine = sa.create_engine(f"sqlite:///{path}")
    probes = (0, 1, 524_287, 524_288, 999_998, 999_999)
    with engine.connect() as conn:
        assert treestore.tree_size(conn) == n
        root = treestore.root_at(conn, n)
        start = time.perf_counter()
        for i in probes:
            proof = treestore.inclusion_proof_at(conn, i, n)
            merkle.verify_inclusion(leaves[i], i, n, proof, root)
        old = treestore.root_at(conn, 777_777)
        merkle.verify_consistency(777_777, n, treestore.consistency_proof_at(conn, 777_777, n), old, root)
        per_proof = (time.perf_counter() - start) / (len(probes) + 2)
        # The log itself grows by appending: still a handful of statements at a million.
        treestore.append_leaf(conn, n, merkle.leaf_hash(b"one more"))
        assert treestore.tree_size(conn) == n + 1
    assert per_proof < 0.05, f"a proof over 1M entries took {per_proof * 1000:.1f} ms"
