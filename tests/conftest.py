"""Shared fixtures: real vaults in temporary folders, the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from evidencelock.keys import CustodianKey
from evidencelock.vault import Vault

PASSPHRASE = "correct horse battery staple"
# Key files sealed at a cheap scrypt cost (log2 N = 10) so that hundreds of test vaults do not
# each spend 128 MiB and ~0.3 s per unlock; test_keys_privacy_output.py tests the real default.
os.environ.setdefault("EVIDENCELOCK_INSECURE_TEST_KDF", "1")
ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"


class Clock:
    """A deterministic clock: each call is one second after the previous (STYLE.md §8)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2014, 4, 30, 9, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def run_cli(*args: str | os.PathLike[str], vault: Path | None = None, env: dict[str, str] | None = None,
            input: str | None = None, timeout: float = 300) -> CliResult:
    """Run the installed ``evidencelock`` exactly as a user would, in a subprocess."""
    cmd = [sys.executable, "-m", "evidencelock"]
    if vault is not None:
        cmd += ["--vault", str(vault)]
    cmd += [str(a) for a in args]
    full_env = {**os.environ, "EVIDENCELOCK_PASSPHRASE": PASSPHRASE, "COLUMNS": "200"}
    if env:
        full_env.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, env=full_env, input=input, timeout=timeout)
    return CliResult(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def vault_path(tmp_path: Path) -> Path:
    return tmp_path / "vault"


@pytest.fixture
def vault(vault_path: Path, clock: Clock) -> Iterator[Vault]:
    v = Vault.init(vault_path, custodian="Field Team A", passphrase=PASSPHRASE, now=clock())
    v.close()
    v = Vault.open(vault_path, writable=True)
    yield v
    v.close()


@pytest.fixture
def key(vault: Vault) -> CustodianKey:
    return vault.unlock(PASSPHRASE)


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip("../shared/corpus is absent")
    return CORPUS
