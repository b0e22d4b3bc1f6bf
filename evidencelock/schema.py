"""Database schema of the ledger (SQLAlchemy Core; SQLite or PostgreSQL).

The ``entries`` table is the record: canonical entry bytes and their signatures.  Every other
table is an index derived from it (items, keys, Merkle nodes) or a record that is itself
verified cryptographically (checkpoints carry their own signatures).  ``verify`` trusts none
of the derived tables: it recomputes from ``entries`` and reports any disagreement.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["metadata", "entries", "items", "sources", "keys", "tree_nodes", "checkpoints", "vault_meta"]

metadata = MetaData()

# One row per ledger entry.  seq is the 0-based position in the log and the Merkle leaf index.
entries = Table(
    "entries",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("canonical", LargeBinary, nullable=False),  # RFC 8785 bytes, exactly as signed
    Column("signature", LargeBinary, nullable=False),  # 64-byte Ed25519 signature
    Column("entry_hash", String(64), nullable=False),  # hex SHA-256(canonical): next entry's prev
    Column("leaf_hash", String(64), nullable=False),  # hex SHA-256(0x00 || canonical)
    # Denormalised for queries only; verification reads ``canonical``.
    Column("type", String(32), nullable=False),
    Column("case_id", String(256), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("time", String(40), nullable=False),
    Column("item", String(64), nullable=True),  # sha256 of the item the entry is about, if any
)
Index("ix_entries_item", entries.c.item)
Index("ix_entries_case", entries.c.case_id)

# Preserved items (unique bytes), derived from ingest entries.
items = Table(
    "items",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("second_digest", String(128), nullable=False),
    Column("second_algorithm", String(32), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("media_json", Text, nullable=True),  # full extracted metadata (derived, re-computable)
)

# Every (case, source) a given item was ingested from: an exact duplicate is a new source.
sources = Table(
    "sources",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", String(64), nullable=False),
    Column("case_id", String(256), nullable=False),
    Column("source_key", String(64), nullable=False),  # hex SHA-256 of the source identity
    Column("seq", BigInteger, nullable=False),
)
Index("ix_sources_unique", sources.c.case_id, sources.c.sha256, sources.c.source_key, unique=True)

# Enrolled custodian keys, derived from key-enroll / key-revoke entries.
keys = Table(
    "keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("public_key", LargeBinary, nullable=False),  # 32 raw Ed25519 bytes
    Column("name", String(256), nullable=False),
    Column("enrolled_seq", BigInteger, nullable=False),
    Column("revoked_seq", BigInteger, nullable=True),
)

# Perfect subtrees of the RFC 9162 Merkle tree: node (level, index) covers leaves
# [index * 2**level, (index + 1) * 2**level).  Level 0 holds the leaf hashes.
tree_nodes = Table(
    "tree_nodes",
    metadata,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False),
)

# Signed checkpoints (C2SP tlog-checkpoint signed notes) and their timestamp tokens.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", String(64), nullable=False),
    Column("note", Text, nullable=False),  # the full signed note text
    Column("created", String(40), nullable=False),
    Column("timestamps_json", Text, nullable=False, default="[]"),  # RFC 3161 tokens (base64), TSA names
    Column("cosignatures_json", Text, nullable=False, default="[]"),  # witness cosignature lines
)
Index("ix_checkpoints_size", checkpoints.c.tree_size)

# Small key/value facts about the vault (origin, format version).
vault_meta = Table(
    "vault_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
