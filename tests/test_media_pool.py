"""The worker pool: more calling threads than cores neither oversubscribe the cores nor churn
workers (each start costs ~1 s of imports)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from evidencelock import media

from mediagen import make_jpeg


def test_more_callers_than_cores_share_one_worker_per_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    media.shutdown_workers()
    started: list[Any] = []
    busy = peak = 0
    lock = threading.Lock()

    class Counting(media._Worker):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

        def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
            nonlocal busy, peak
            with lock:
                busy += 1
                peak = max(peak, busy)
            try:
                return super().ask(request, timeout)
            finally:
                with lock:
                    busy -= 1

    monkeypatch.setattr(media, "_Worker", Counting)
    files = [make_jpeg(tmp_path / f"p{i}.jpg", i, size=(320, 240)) for i in range(16)]
    with ThreadPoolExecutor(8) as pool:  # ingest --jobs 8
        reports = list(pool.map(media.extract, files))
    assert all(r.fingerprints and not r.errors for r in reports)
    assert peak <= media._MAX_CONCURRENT
    # One start per slot; before, 8 workers started and the surplus was killed after each file.
    assert len(started) <= media._MAX_CONCURRENT, len(started)
    assert sum(w.alive() for w in started) == len(started)  # idle, kept for the next file
    media.shutdown_workers()
