"""A vault: an object store, a ledger and custodian keys in one folder (docs/vault-layout.md).

``Vault.init`` creates one; ``Vault.open`` opens an existing one.  A vault opened for writing
first rolls forward whatever an interrupted run left behind (objects recorded in the ledger
but not yet moved into place) and removes unrecorded leftovers of dead runs.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from . import schema
from .entry import Entry, SignedEntry, format_time
from .errors import CustodianKeyError, InputError, StorageError
from .keys import CustodianKey, PublicKey, check_passphrase_strength
from .ledger import Ledger, Tail
from .store import ObjectStore

__all__ = ["Vault", "VaultConfig", "VAULT_FORMAT", "DEFAULT_VAULT"]

VAULT_FORMAT = "evidencelock-vault"
VAULT_VERSION = 1
CONFIG_NAME = "vault.json"
DEFAULT_VAULT = "evidence-vault"


@dataclass(frozen=True)
class VaultConfig:
    origin: str
    ledger_url: str  # "sqlite" (the file in the vault) or an SQLAlchemy URL
    created: str
    default_custodian: str  # key id
    # hex; keys source.key (docs/ledger-format.md §4.1); None in vaults made before it existed
    source_key_secret: str | None = None

    def to_json(self) -> dict[str, Any]:
        obj = {
            "format": VAULT_FORMAT,
            "version": VAULT_VERSION,
            "origin": self.origin,
            "ledger": self.ledger_url,
            "created": self.created,
            "default_custodian": self.default_custodian,
        }
        if self.source_key_secret is not None:
            obj["source_key_secret"] = self.source_key_secret
        return obj

    @classmethod
    def from_json(cls, obj: Any, where: str) -> "VaultConfig":
        if not isinstance(obj, dict) or obj.get("format") != VAULT_FORMAT:
            raise InputError("not an evidencelock vault configuration", subject=where)
        if obj.get("version") != VAULT_VERSION:
            raise InputError(f"unsupported vault version {obj.get('version')!r}", subject=where)
        try:
            secret = obj.get("source_key_secret")
            if secret is not None and not (isinstance(secret, str) and len(secret) == 64
                                           and all(ch in "0123456789abcdef" for ch in secret)):
                raise InputError("source_key_secret must be 64 lowercase hex digits", subject=where)
            return cls(obj["origin"], obj["ledger"], obj["created"], obj["default_custodian"], secret)
        except KeyError as exc:
            raise InputError(f"vault configuration lacks {exc.args[0]!r}", subject=where) from None


class Vault:
    def __init__(self, root: Path, config: VaultConfig, ledger: Ledger, *, writable: bool) -> None:
        self.root = root
        self.config = config
        self.ledger = ledger
        self.store = ObjectStore(root)
        self.writable = writable
        self.recovered: tuple[int, int] = (0, 0)  # (rolled forward, leftovers removed) on open

    # -- lifecycle ----------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        root: Path,
        *,
        custodian: str,
        passphrase: str,
        now: datetime,
        ledger_url: str | None = None,
        origin: str | None = None,
        allow_weak_passphrase: bool = False,
    ) -> "Vault":
        root = Path(root)
        # docs/vault-layout.md §1: only the vault folder itself is created, never its parents.
        # An encrypted drive that is not mounted leaves /mnt/card missing: creating it would
        # silently put the vault (and its private key) on the plain disk underneath.
        parent = Path(os.path.abspath(root)).parent
        if not parent.is_dir():
            raise InputError(
                f"the parent folder {parent} does not exist (is the drive mounted?); "
                "init creates only the vault folder itself, never its parents",
                subject=str(root),
                hint=f"mount the drive or create {parent} first, then run init again",
            )
        if (root / CONFIG_NAME).exists():
            raise InputError("a vault already exists here", subject=str(root))
        if root.exists() and any(root.iterdir()):
            raise InputError("folder is not empty; choose a new folder for the vault", subject=str(root))
        if not custodian.strip():
            raise InputError("a custodian name is required (--custodian NAME)")
        if origin is not None:
            _check_origin(origin)
        # Validate the passphrase before anything touches the disk (docs/vault-layout.md §8).
        if not passphrase:
            raise CustodianKeyError("an empty passphrase is not allowed for a custodian key")
        if not allow_weak_passphrase:
            check_passphrase_strength(passphrase)
        key = CustodianKey.generate(custodian)
        root.mkdir(exist_ok=True)  # the parent exists (checked above)
        (root / "keys").mkdir(mode=0o700, exist_ok=True)
        store = ObjectStore(root)
        store.create_layout()
        key.save(root / "keys" / f"{key.key_id}.key.pem", passphrase)
        (root / "keys" / f"{key.key_id}.pub.pem").write_bytes(key.public.to_pem())
        config = VaultConfig(
            # docs/vault-layout.md §1: the default origin names no host or person (issue 9 item 19).
            origin=origin or f"evidencelock/{secrets.token_hex(16)}",
            ledger_url=ledger_url or "sqlite",
            created=format_time(now),
            default_custodian=key.key_id,
            source_key_secret=secrets.token_hex(32),
        )
        ledger = Ledger.open(_resolve_ledger_url(root, config.ledger_url), create=True)
        if ledger.tail().size != 0:
            ledger.close()
            raise InputError("the ledger database already holds entries; use a new database for a new vault")
        vault = cls(root, config, ledger, writable=True)
        vault.append(
            key,
            now=now,
            type="key-enroll",
            case="",
            body={"key_id": key.key_id, "public_key": key.public.raw.hex(), "name": custodian, "role": "custodian"},
        )
        with ledger.engine.begin() as conn:
            conn.execute(schema.vault_meta.insert().values(key="origin", value=config.origin))
        # The config is written last: a folder without vault.json is not a vault yet.
        _write_json_atomic(root / CONFIG_NAME, config.to_json())
        return vault

    @classmethod
    def open(cls, root: Path, *, writable: bool = False) -> "Vault":
        root = Path(root)
        cfg_path = root / CONFIG_NAME
        if not cfg_path.is_file():
            raise InputError(
                "no evidencelock vault here",
                subject=str(root),
                hint="create one with `evidencelock init --custodian NAME`, or pass --vault / set $EVIDENCELOCK_VAULT",
            )
        ObjectStore(root).check_layout()  # docs/vault-layout.md §1: no links inside the vault
        try:
            config = VaultConfig.from_json(json.loads(cfg_path.read_text("utf-8")), str(cfg_path))
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read the vault configuration: {exc}", subject=str(cfg_path)) from None
        url = _resolve_ledger_url(root, config.ledger_url)
        if url.startswith("sqlite") and not (root / "ledger.sqlite").is_file():
            raise StorageError("the ledger database is missing", subject=str(root / "ledger.sqlite"))
        ledger = Ledger.open(url)
        vault = cls(root, config, ledger, writable=writable)
        if writable:
            vault.recovered = vault.store.recover(ledger.is_recorded)
        return vault

    def close(self) -> None:
        self.store.close()
        self.ledger.close()

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def source_key_secret(self) -> bytes | None:
        """The secret that keys ``source.key`` (never exported); None for an older vault."""
        s = self.config.source_key_secret
        return bytes.fromhex(s) if s is not None else None

    # -- keys ---------------------------------------------------------------------------
    def key_path(self, key_id: str) -> Path:
        return self.root / "keys" / f"{key_id}.key.pem"

    def enrolled_keys(self) -> dict[str, PublicKey]:
        """Enrolled keys from the derived table (verify recomputes them from entries)."""
        with self.ledger.reader() as conn:
            rows = conn.execute(select(schema.keys)).all()
        return {r.key_id: PublicKey(bytes(r.public_key), r.name) for r in rows}

    def resolve_custodian(self, who: str | None) -> str:
        """Key id for a custodian given by key id (prefix) or name; default if None."""
        keys = self.enrolled_keys()
        if who is None:
            return self.config.default_custodian
        matches = [k for k, pk in keys.items() if k.startswith(who.lower()) or pk.name == who]
        if len(matches) > 1:
            # A rotated key keeps its custodian's name (docs/custody-events.md §2.9): the name
            # then means the one key of that name that is not revoked.
            with self.ledger.reader() as conn:
                revoked = {r.key_id for r in conn.execute(
                    select(schema.keys.c.key_id).where(schema.keys.c.revoked_seq.is_not(None)))}
            live = [k for k in matches if k not in revoked]
            if len(live) == 1 and all(keys[k].name == who for k in matches):
                matches = live
        if len(matches) != 1:
            raise CustodianKeyError(
                f"{'no' if not matches else 'more than one'} enrolled custodian matches {who!r}",
                hint="see `evidencelock keys`",
            )
        return matches[0]

    def unlock(self, passphrase: str, who: str | None = None) -> CustodianKey:
        key_id = self.resolve_custodian(who)
        with self.ledger.reader() as conn:
            revoked = conn.execute(select(schema.keys.c.revoked_seq).where(schema.keys.c.key_id == key_id)).scalar()
        if revoked is not None:
            raise CustodianKeyError(
                f"custodian key {key_id[:16]}… was revoked at entry {revoked}; it may not sign anything",
                hint="ask another custodian to act, or to enrol a new key for you",
            )
        keys = self.enrolled_keys()
        key = CustodianKey.load(self.key_path(key_id), passphrase, keys.get(key_id, PublicKey(b"")).name)
        if key.key_id != key_id:
            raise CustodianKeyError("the key file does not hold the key its name says", subject=str(self.key_path(key_id)))
        return key

    # -- appending ----------------------------------------------------------------------
    def append(
        self,
        key: CustodianKey,
        *,
        now: datetime,
        type: str,
        case: str,
        body: dict[str, Any],
        skip_if: Callable[[Connection], bool] | None = None,
        after: Callable[[Connection, SignedEntry], None] | None = None,
    ) -> SignedEntry | None:
        def build(conn: Connection, tail: Tail) -> Entry | None:
            if skip_if is not None and skip_if(conn):
                return None
            return Entry(
                seq=tail.size, prev=tail.prev, time=format_time(now), type=type, case=case, actor=key.key_id, body=body
            )

        return self.ledger.append(build, key.sign, after=after)


def _check_origin(origin: str) -> None:
    """A log origin is one line of 1 to 256 printable characters (it heads every checkpoint)."""
    if not origin or len(origin) > 256 or any(ch.isspace() and ch != " " for ch in origin) \
            or any(not ch.isprintable() and ch != " " for ch in origin) or origin != origin.strip():
        raise InputError("the origin must be one line of 1 to 256 printable characters without leading or "
                         f"trailing spaces, found {origin!r}", hint="e.g. --origin example.org/case-archive")


def _resolve_ledger_url(root: Path, url: str) -> str:
    if url == "sqlite":
        return f"sqlite:///{(root / 'ledger.sqlite').resolve()}"
    return os.path.expandvars(url)


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
