"""The append-only, hash-chained, signed ledger (SQLAlchemy; SQLite or PostgreSQL).

Appends are serialised so that two processes never fork the chain: SQLite transactions start
with ``BEGIN IMMEDIATE`` (the writer lock is taken before the tail is read) and PostgreSQL
appends take a transaction-level advisory lock.  Within that lock an append reads the tail,
builds the entry (seq = tail + 1, prev = hash of the tail), signs it, inserts it, extends
the Merkle tree and updates the derived tables, then commits: all or nothing.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from . import schema, treestore
from .entry import GENESIS_PREV, Entry, SignedEntry, parse_time
from .errors import EvidenceLockError, StorageError

__all__ = ["Ledger", "Tail", "EntryRow", "Draft"]

# Any constant works; it names "the ledger tail" among PostgreSQL advisory locks.
_PG_APPEND_LOCK = 0x65766C6B  # "evlk"


@dataclass(frozen=True)
class Tail:
    size: int  # number of entries; the next seq
    prev: str  # entry hash of the last entry, or GENESIS_PREV


@dataclass(frozen=True)
class EntryRow:
    """A row as stored: NOT yet verified (the audit parses and checks it)."""

    seq: int
    canonical: bytes
    signature: bytes
    entry_hash: str
    leaf_hash: str
    columns: dict[str, Any] | None = None  # the denormalised columns (type, case_id, …), when asked for


Builder = Callable[[Connection, Tail], Entry | None]
AfterAppend = Callable[[Connection, SignedEntry], None]


@dataclass(frozen=True)
class Draft:
    """An entry without its place in the log: ``append_many`` assigns seq and prev."""

    time: str
    type: str
    case: str
    actor: str
    body: dict[str, Any]


ManyBuilder = Callable[[Connection, Tail], list[Draft]]
AfterMany = Callable[[Connection, list[SignedEntry]], None]


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._pinned: tuple[int, Connection] | None = None

    @classmethod
    def open(cls, url: str, *, create: bool = False) -> "Ledger":
        engine = _make_engine(url)
        ledger = cls(engine)
        try:
            if create:
                schema.metadata.create_all(engine)
            else:
                with engine.connect() as conn:
                    conn.execute(select(func.count()).select_from(schema.entries)).scalar_one()
        except SQLAlchemyError as exc:
            engine.dispose()
            raise _storage_error(exc, url) from None
        return ledger

    def close(self) -> None:
        self.engine.dispose()

    # -- writing ------------------------------------------------------------------------
    def append(self, build: Builder, sign: Callable[[bytes], bytes], *, after: AfterAppend | None = None) -> SignedEntry | None:
        """Append the entry ``build(conn, tail)`` returns (or nothing if it returns None).

        ``build`` runs inside the serialised transaction, so it may look at the ledger (e.g.
        to skip a source that is already recorded) without racing another appender.
        """

        def build_many(conn: Connection, tail: Tail) -> list[Draft]:
            entry = build(conn, tail)
            if entry is None:
                return []
            if entry.seq != tail.size or entry.prev != tail.prev:
                raise ValueError("builder must use the tail it was given")
            return [Draft(entry.time, entry.type, entry.case, entry.actor, dict(entry.body))]

        def after_many(conn: Connection, signed: list[SignedEntry]) -> None:
            if after is not None:
                after(conn, signed[0])

        appended = self.append_many(build_many, sign, after=after_many)
        return appended[0] if appended else None

    def append_many(self, build: ManyBuilder, sign: Callable[[bytes], bytes], *,
                    after: AfterMany | None = None) -> list[SignedEntry]:
        """Append the drafts ``build(conn, tail)`` returns, in order, in ONE transaction.

        Group commit: a batch costs one lock, one commit (one WAL fsync) and a handful of
        multi-row statements, instead of all of those per entry.  All or nothing.
        """
        try:
            with self.engine.begin() as conn:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_APPEND_LOCK})
                tail = self._tail(conn)
                drafts = build(conn, tail)
                if not drafts:
                    return []
                signed_list: list[SignedEntry] = []
                seq, prev = tail.size, tail.prev
                # docs/ledger-format.md §2.3: times never decrease along seq.  A writer that took its time
                # before waiting for this lock (a checkpoint asking TSAs, an audit during an ingest) is
                # recorded at its predecessor's time, which is when it was in fact recorded.
                floor = self._last_time(conn, tail)
                for d in drafts:
                    time = d.time if floor is None or d.time >= floor else floor
                    floor = time
                    entry = Entry(seq=seq, prev=prev, time=time, type=d.type, case=d.case, actor=d.actor, body=d.body)
                    signed = SignedEntry.create(entry, sign)
                    signed_list.append(signed)
                    seq, prev = seq + 1, signed.entry_hash
                conn.execute(schema.entries.insert(), [_row(s) for s in signed_list])
                treestore.append_leaves(conn, tail.size, [s.leaf_hash for s in signed_list])
                for s in signed_list:
                    _update_derived(conn, s)
                if after is not None:
                    after(conn, signed_list)
                return signed_list
        except SQLAlchemyError as exc:
            raise _storage_error(exc, str(self.engine.url)) from None

    # -- reading ------------------------------------------------------------------------
    def tail(self) -> Tail:
        with self.reader() as conn:
            return self._tail(conn)

    @staticmethod
    def _tail(conn: Connection) -> Tail:
        row = conn.execute(
            select(schema.entries.c.seq, schema.entries.c.entry_hash).order_by(schema.entries.c.seq.desc()).limit(1)
        ).first()
        if row is None:
            return Tail(0, GENESIS_PREV)
        return Tail(row.seq + 1, row.entry_hash)

    @staticmethod
    def _last_time(conn: Connection, tail: Tail) -> str | None:
        """The time of the last entry, from its signed bytes (None for an empty or unreadable ledger)."""
        if tail.size == 0:
            return None
        row = conn.execute(select(schema.entries.c.canonical).where(schema.entries.c.seq == tail.size - 1)).first()
        try:
            when = json.loads(bytes(row.canonical))["time"] if row is not None else None
            parse_time(when)
        except (ValueError, TypeError, KeyError, EvidenceLockError):
            return None
        return when

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A connection for reading: a snapshot, without taking SQLite's write lock.

        Inside :meth:`snapshot` (same thread) every reader is that snapshot's connection.
        """
        pinned = self._pinned
        if pinned is not None and pinned[0] == threading.get_ident():
            yield pinned[1]
            return
        with self.engine.connect() as conn:
            conn.info["writer"] = False
            try:
                yield conn
            finally:
                conn.info["writer"] = True

    @contextmanager
    def snapshot(self) -> Iterator[Tail]:
        """Hold ONE read transaction: every :meth:`reader` of this thread sees the same state.

        ``verify``/``audit`` read entries, tree, derived tables and checkpoints inside one
        snapshot, so an ingest committing meanwhile is simply not seen (docs/vault-layout.md
        §6) instead of making the tables look inconsistent.  Yields the tail at the snapshot.
        """
        if self._pinned is not None:
            raise RuntimeError("a snapshot is already open")
        with self.reader() as conn:
            if not self.is_sqlite:
                conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            tail = self._tail(conn)  # the first read fixes the snapshot (SQLite WAL, PostgreSQL)
            self._pinned = (threading.get_ident(), conn)
            try:
                yield tail
            finally:
                self._pinned = None

    def rows(self, *, start: int | None = 0, batch: int = 5000, columns: bool = False) -> Iterator[EntryRow]:
        """Every stored row in seq order, streamed in batches (flat memory).

        ``start=None`` reads every row, including any with a negative seq (which only an
        edit of the database can create: ``verify`` must see it).  ``columns`` also returns
        the denormalised columns, for comparison with the canonical bytes.
        """
        t = schema.entries
        extra = (t.c.type, t.c.case_id, t.c.actor, t.c.time, t.c.item) if columns else ()
        last = None if start is None else start - 1
        with self.reader() as conn:
            while True:
                q = select(t.c.seq, t.c.canonical, t.c.signature, t.c.entry_hash, t.c.leaf_hash, *extra)
                if last is not None:
                    q = q.where(t.c.seq > last)
                chunk = conn.execute(q.order_by(t.c.seq).limit(batch)).all()
                if not chunk:
                    return
                for r in chunk:
                    cols = {c.name: r._mapping[c.name] for c in extra} if columns else None
                    yield EntryRow(r.seq, bytes(r.canonical), bytes(r.signature), r.entry_hash, r.leaf_hash, cols)
                last = chunk[-1].seq

    def entries_for_item(self, sha256: str) -> list[SignedEntry]:
        t = schema.entries
        with self.reader() as conn:
            rows = conn.execute(
                select(t.c.seq, t.c.canonical, t.c.signature).where(t.c.item == sha256).order_by(t.c.seq)
            ).all()
        return [SignedEntry.from_bytes(bytes(r.canonical), bytes(r.signature), subject=f"entry {r.seq}") for r in rows]

    def is_recorded(self, sha256: str) -> bool:
        with self.reader() as conn:
            return conn.execute(select(schema.items.c.sha256).where(schema.items.c.sha256 == sha256)).first() is not None

    def get_meta(self, key: str) -> str | None:
        with self.reader() as conn:
            return conn.execute(select(schema.vault_meta.c.value).where(schema.vault_meta.c.key == key)).scalar()


def _row(signed: SignedEntry) -> dict[str, Any]:
    e = signed.entry
    return {
        "seq": e.seq,
        "canonical": signed.canonical,
        "signature": signed.signature,
        "entry_hash": signed.entry_hash,
        "leaf_hash": signed.leaf_hash.hex(),
        "type": e.type,
        "case_id": e.case,
        "actor": e.actor,
        "time": e.time,
        "item": e.item,
    }


def _update_derived(conn: Connection, signed: SignedEntry) -> None:
    """Keep the derived index tables in step with the entry just appended."""
    e = signed.entry
    body = e.body
    if e.type == "ingest":
        sha = body["item"]
        exists = conn.execute(select(schema.items.c.sha256).where(schema.items.c.sha256 == sha)).first()
        if exists is None:
            digests = body["digests"]
            conn.execute(
                schema.items.insert().values(
                    sha256=sha,
                    second_digest=digests.get("blake3", ""),
                    second_algorithm="blake3",
                    size=body["size"],
                    first_seq=e.seq,
                    media_json=None,
                )
            )
        conn.execute(
            schema.sources.insert().values(
                sha256=sha, case_id=e.case, source_key=body["source"]["key"], seq=e.seq
            )
        )
    elif e.type == "key-enroll":
        conn.execute(
            schema.keys.insert().values(
                key_id=body["key_id"],
                public_key=bytes.fromhex(body["public_key"]),
                name=body.get("name", ""),
                enrolled_seq=e.seq,
            )
        )
    elif e.type == "key-revoke":
        conn.execute(
            schema.keys.update().where(schema.keys.c.key_id == body["key_id"]).values(revoked_seq=e.seq)
        )


def set_item_media(conn: Connection, sha256: str, media: dict[str, Any]) -> None:
    conn.execute(schema.items.update().where(schema.items.c.sha256 == sha256).values(media_json=json.dumps(media)))


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 120}, poolclass=None)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised via every test
            # Let SQLAlchemy's begin hook below issue BEGIN itself (pysqlite quirk).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout = 120000")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover
            # IMMEDIATE: take the write lock before reading the tail, so two appenders
            # serialise instead of both reading the same tail (which would fork the chain).
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("writer", True) else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


def _storage_error(exc: SQLAlchemyError, url: str) -> StorageError:
    where = url.split("@")[-1]  # never print a password from a PostgreSQL URL
    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    if isinstance(exc, (OperationalError, DBAPIError)) and "not a database" in detail:
        return StorageError(
            f"the ledger database is damaged or not a database ({detail})",
            subject=where,
            hint="nothing was written; restore the ledger from a replica or backup and run `evidencelock verify`",
        )
    return StorageError(f"ledger database error: {detail}", subject=where, hint="nothing was written for this operation")
