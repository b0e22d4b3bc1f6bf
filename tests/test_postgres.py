"""The same vault on a real PostgreSQL ledger (team scale: many ingest stations).

Needs ``EVIDENCELOCK_TEST_PG_URL`` (an SQLAlchemy URL of a server this user may create
databases on, e.g. ``postgresql+psycopg://root@/postgres?host=/var/run/postgresql``; .ci/run
starts the packaged cluster and sets it).  Skipped cleanly when unset.  Each test gets a fresh
database with a random name, dropped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import PASSPHRASE, run_cli

PG_URL = os.environ.get("EVIDENCELOCK_TEST_PG_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="EVIDENCELOCK_TEST_PG_URL is not set (no PostgreSQL server to test against)"),
]
TIMEOUT = 120


def _connect_kwargs(url, dbname: str) -> dict:
    kw: dict = {"dbname": dbname, "autocommit": True}
    if url.username:
        kw["user"] = url.username
    if url.password:
        kw["password"] = url.password
    if url.host:
        kw["host"] = url.host
    if url.port:
        kw["port"] = url.port
    for k, v in url.query.items():
        kw[k] = v if isinstance(v, str) else v[0]
    return kw


@pytest.fixture
def pg_db():
    """(SQLAlchemy URL of a fresh database, psycopg connection to it); dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    name = "evl_test_" + secrets.token_hex(6)
    admin_db = base.database or "postgres"
    try:
        admin = psycopg.connect(**_connect_kwargs(base, admin_db))
    except psycopg.OperationalError as exc:
        pytest.skip(f"cannot connect to PostgreSQL at EVIDENCELOCK_TEST_PG_URL: {str(exc).splitlines()[0]}")
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = base.set(database=name).render_as_string(hide_password=False)
        conn = psycopg.connect(**_connect_kwargs(base, name))
        try:
            yield url, conn
        finally:
            conn.close()
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def make_files(root: Path, n: int, prefix: str, size: int = 20_000) -> dict[str, bytes]:
    import hashlib

    files = {}
    for i in range(n):
        data = hashlib.sha512(f"{root}/{prefix}{i}".encode()).digest() * (size // 64) + bytes([i % 256])
        p = root / f"{prefix}{i:03d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        files[p.name] = data
    return files


def init_pg_vault(tmp_path: Path, url: str) -> Path:
    vp = tmp_path / "vault"
    r = run_cli("init", "--custodian", "Station 1", "--ledger-url", url, "--json", vault=vp)
    assert r.code == 0, r.stdout + r.stderr
    assert not (vp / "ledger.sqlite").exists(), "the PostgreSQL vault keeps no SQLite ledger"
    assert json.loads((vp / "vault.json").read_text())["ledger"] == url
    return vp


def rows(conn) -> list[tuple[int, bytes, bytes]]:
    return [(s, bytes(c), bytes(g)) for s, c, g in conn.execute("SELECT seq, canonical, signature FROM entries ORDER BY seq")]


def verify_json(vp: Path, expect: int) -> dict:
    r = run_cli("verify", "--json", vault=vp, timeout=TIMEOUT)
    assert r.code == expect, r.stdout + r.stderr
    return r.json()


def test_roundtrip_on_postgres(tmp_path: Path, pg_db) -> None:
    url, conn = pg_db
    vp = init_pg_vault(tmp_path, url)
    src = tmp_path / "card"
    files = make_files(src, 8, "img")
    (src / "dup.jpg").write_bytes(files["img000.jpg"])
    (src / "empty.txt").write_bytes(b"")
    r = run_cli("ingest", src, "--case", "c1", "--no-media", "--json", vault=vp, timeout=TIMEOUT)
    assert r.code == 0, r.stderr
    rep = r.json()
    assert rep["preserved"] == 9 and rep["duplicates"] == 1
    stored = rows(conn)
    assert [s for s, _, _ in stored] == list(range(11))
    assert verify_json(vp, 0)["findings"] == []
    r = run_cli("audit", "--json", vault=vp)
    assert r.code == 0 and r.json()["audit_entry"] == 11
    last = json.loads(rows(conn)[-1][1])
    assert last["type"] == "audit" and last["body"]["result"] == "pass"
    r = run_cli("ingest", src, "--case", "c1", "--no-media", "--json", vault=vp)
    assert r.code == 0 and r.json()["already_recorded"] == 10
    assert len(rows(conn)) == 12
    log = run_cli("log", "--json", vault=vp)
    assert log.code == 0 and len(log.json()) == 12


def _spawn(vp: Path, src: Path, case: str) -> subprocess.Popen:
    env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": PASSPHRASE}
    return subprocess.Popen([sys.executable, "-m", "evidencelock", "--vault", str(vp), "ingest", str(src),
                             "--case", case, "--new-case", "--no-media", "-j", "2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_concurrent_appenders_never_fork(tmp_path: Path, pg_db) -> None:
    url, conn = pg_db
    vp = init_pg_vault(tmp_path, url)
    a = make_files(tmp_path / "a", 50, "a")
    b = make_files(tmp_path / "b", 50, "b")
    shared = make_files(tmp_path / "s", 30, "s")
    for pair in (((tmp_path / "a", "c1"), (tmp_path / "b", "c1")), ((tmp_path / "s", "c2"), (tmp_path / "s", "c2"))):
        procs = [_spawn(vp, *args) for args in pair]
        outs = []
        for p in procs:
            out, err = p.communicate(timeout=TIMEOUT)
            assert p.returncode == 0, err
            outs.append(json.loads(out))
        if pair[0][1] == "c2":
            assert sum(o["preserved"] for o in outs) == len(shared)
            assert sum(o["already_recorded"] for o in outs) == len(shared)
    stored = rows(conn)
    assert [s for s, _, _ in stored] == list(range(1 + len(a) + len(b) + len(shared)))
    # Every entry's prev is the hash of the one before: one chain, no fork.
    import hashlib

    for (_, prev_c, _), (_, c, _) in zip(stored, stored[1:]):
        assert json.loads(c)["prev"] == hashlib.sha256(prev_c).hexdigest()
    sources = Counter((json.loads(c)["case"], json.loads(c)["body"]["source"]["key"])
                      for _, c, _ in stored if json.loads(c)["type"] == "ingest")
    assert set(sources.values()) == {1}
    assert len(sources) == len(a) + len(b) + len(shared)
    assert verify_json(vp, 0)["ok"] is True


def test_tampered_row_is_detected(tmp_path: Path, pg_db) -> None:
    url, conn = pg_db
    vp = init_pg_vault(tmp_path, url)
    make_files(tmp_path / "card", 4, "img")
    assert run_cli("ingest", tmp_path / "card", "--case", "c1", "--no-media", vault=vp).code == 0
    seq, canonical, _ = rows(conn)[2]
    forged = canonical.replace(b'"case":"c1"', b'"case":"c9"')
    assert forged != canonical
    conn.execute("UPDATE entries SET canonical = %s WHERE seq = %s", (forged, seq))
    rep = verify_json(vp, 1)
    found = {(f["code"], f["subject"]) for f in rep["findings"] if f["severity"] == "error"}
    assert ("signature-invalid", f"entry {seq}") in found
    assert ("chain-broken", f"entry {seq + 1}") in found

    conn.execute("UPDATE entries SET canonical = %s WHERE seq = %s", (canonical, seq))
    assert verify_json(vp, 0)["ok"] is True  # restored bytes verify again
    conn.execute("DELETE FROM entries WHERE seq = %s", (seq,))
    rep = verify_json(vp, 1)
    assert any(f["code"] == "chain-broken" and f["subject"] == f"entry {seq + 1}" for f in rep["findings"])


def test_sigkill_after_ledger_commit_rolls_forward(tmp_path: Path, pg_db) -> None:
    url, conn = pg_db
    vp = init_pg_vault(tmp_path, url)
    files = make_files(tmp_path / "card", 6, "img")
    env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": PASSPHRASE, "EVIDENCELOCK_TEST_KILL_AT": "after-ledger-commit"}
    p = subprocess.run([sys.executable, "-m", "evidencelock", "--vault", str(vp), "ingest", str(tmp_path / "card"),
                        "--case", "c1", "--no-media"], env=env, capture_output=True, timeout=TIMEOUT)
    assert p.returncode == -signal.SIGKILL
    rep = verify_json(vp, 0)
    assert {f["severity"] for f in rep["findings"]} <= {"notice"}
    r = run_cli("ingest", tmp_path / "card", "--case", "c1", "--no-media", "--json", vault=vp)
    assert r.code == 0, r.stderr
    assert len(rows(conn)) == 1 + len(files)
    assert verify_json(vp, 0)["findings"] == []


def test_unreachable_database_is_a_clear_error_without_the_password(tmp_path: Path, pg_db) -> None:
    from sqlalchemy.engine import make_url

    url, _ = pg_db
    bad = make_url(url).set(database="evl_no_such_db_" + secrets.token_hex(4), password="s3cret-pw")
    r = run_cli("init", "--custodian", "X", "--ledger-url", bad.render_as_string(hide_password=False),
                vault=tmp_path / "v")
    assert r.code == 2
    assert "ledger database error" in r.stderr and "Traceback" not in r.stderr
    assert "s3cret-pw" not in r.stderr + r.stdout
    assert not (tmp_path / "v" / "vault.json").exists()
