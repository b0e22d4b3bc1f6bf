"""Custody acts beyond ingest: enrolling and revoking custodian keys, transferring items.

Each act is one signed ledger entry (docs/ledger-format.md §4).  A new custodian's key is
enrolled by an already enrolled custodian, so the ledger itself says who vouched for whom.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from . import schema
from .entry import SignedEntry, format_time
from .errors import CustodianKeyError, InputError
from .keys import CustodianKey, check_passphrase_strength
from .ledger import Draft
from .show import find_item
from .vault import Vault

__all__ = ["enroll_custodian", "revoke_custodian", "transfer_items", "case_items"]


def enroll_custodian(vault: Vault, signer: CustodianKey, *, name: str, passphrase: str, now: datetime,
                     allow_weak_passphrase: bool = False) -> CustodianKey:
    """Create a key for a new custodian, save it encrypted, and enrol it (signed by ``signer``)."""
    name = name.strip()
    if not name:
        raise InputError("a custodian name is required")
    if any(pk.name == name for pk in vault.enrolled_keys().values()):
        raise InputError(f"a custodian named {name!r} is already enrolled; choose a distinct name")
    # The passphrase is validated before anything is written (docs/vault-layout.md §8).
    if not passphrase:
        raise CustodianKeyError("an empty passphrase is not allowed for a custodian key")
    if not allow_weak_passphrase:
        check_passphrase_strength(passphrase)
    key = CustodianKey.generate(name)
    key.save(vault.key_path(key.key_id), passphrase)
    (vault.root / "keys" / f"{key.key_id}.pub.pem").write_bytes(key.public.to_pem())
    vault.append(signer, now=now, type="key-enroll", case="",
                 body={"key_id": key.key_id, "public_key": key.public.raw.hex(), "name": name, "role": "custodian"})
    return key


def revoke_custodian(vault: Vault, signer: CustodianKey, *, key_id: str, reason: str, now: datetime) -> SignedEntry:
    """Record that ``key_id`` must not sign anything after this entry (e.g. a seized laptop)."""
    target = vault.resolve_custodian(key_id)
    with vault.ledger.reader() as conn:
        row = conn.execute(select(schema.keys).where(schema.keys.c.key_id == target)).one()
    if row.revoked_seq is not None:
        raise InputError(f"key {target[:16]}… was already revoked at entry {row.revoked_seq}")
    # A custodian may revoke their own key (e.g. a lost laptop with a copy of it).
    signed = vault.append(signer, now=now, type="key-revoke", case="",
                          body={"key_id": target, "name": row.name, "reason": reason})
    assert signed is not None
    return signed


def case_items(vault: Vault, case: str) -> list[str]:
    with vault.ledger.reader() as conn:
        rows = conn.execute(
            select(schema.sources.c.sha256).where(schema.sources.c.case_id == case).distinct()
        ).all()
    return sorted(r.sha256 for r in rows)


def transfer_items(vault: Vault, signer: CustodianKey, *, items: Sequence[str], case: str, to: str, note: str | None,
                   now: Callable[[], datetime]) -> list[SignedEntry]:
    """Record that ``signer`` hands ``items`` of ``case`` over to custodian ``to``: one entry each."""
    recipient = vault.resolve_custodian(to)
    keys = vault.enrolled_keys()
    with vault.ledger.reader() as conn:
        revoked = conn.execute(select(schema.keys.c.revoked_seq).where(schema.keys.c.key_id == recipient)).scalar()
    if revoked is not None:
        raise CustodianKeyError(f"custodian {keys[recipient].name!r} has a revoked key (entry {revoked})")
    if recipient == signer.key_id:
        raise InputError("the recipient is the current custodian; nothing to transfer")
    shas = [find_item(vault, i) for i in items] if items else case_items(vault, case)
    if not shas:
        raise InputError(f"no items to transfer in case {case!r}")
    in_case = set(case_items(vault, case))
    missing = [s for s in shas if s not in in_case]
    if missing:
        raise InputError(f"item {missing[0][:16]}… is not part of case {case!r}")

    def build(conn: Any, tail: Any) -> list[Draft]:
        drafts = []
        for sha in shas:
            body: dict[str, Any] = {"item": sha, "from": signer.key_id, "to": recipient,
                                    "to_name": keys[recipient].name}
            if note:
                body["note"] = note
            drafts.append(Draft(format_time(now()), "transfer", case, signer.key_id, body))
        return drafts

    return vault.ledger.append_many(build, signer.sign)

