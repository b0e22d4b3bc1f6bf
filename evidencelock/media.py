"""Media understanding for untrusted files: metadata, perceptual fingerprints, C2PA.

Files come from hostile environments, so *no parser runs in this process*.  Every file is
handed to a worker process (:mod:`evidencelock._media_worker`) that limits its own address
space (``RLIMIT_AS``) before importing exifread, PyAV/ffmpeg, OpenCV, Pillow, pdqhash or
c2pa.  This side enforces a wall-clock timeout and kills the worker when it expires.  A
crash (signal), a hang, a memory blow-up or garbage on the pipe becomes a named entry in
:attr:`MediaReport.errors`; :func:`extract` never raises for a bad file and never modifies it.

Why a persistent pool rather than one process per file: a fresh interpreter importing the
parsers costs ~1 s of CPU (measured: cv2 0.4 s, pdqhash 0.35 s, numpy 0.3 s, c2pa 0.26 s, av
0.25 s, overlapping), which would dominate ingest of phone photos.  Idle workers are
reused; a worker that timed out, crashed, ran out of memory or answered garbage is killed
and never reused, so one crafted file cannot poison the next.  Workers start on demand and
exit when this process exits (their stdin closes).

Why the limit is set by the child itself and not through ``preexec_fn``: ingest calls this
from a thread pool, and ``preexec_fn`` is documented as unsafe in the presence of threads.
The child applies the limit as its very first action, before any untrusted byte is read.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import FormatError

__all__ = ["MediaReport", "extract", "KINDS", "shutdown_workers"]

KINDS = ("image", "video", "audio", "other")
_FALLBACK_EXTRACTOR = "evidencelock.media/1"
_STARTUP_TIMEOUT = 60.0  # importing the parsers; not the file's fault, so not its timeout
_MAX_OUTPUT = 64 << 20  # bytes of JSON a worker may send for one file
_MAX_REQUESTS_PER_WORKER = 500  # recycle to bound slow leaks in native parsers
# At most this many files are analysed at once, whatever the number of calling threads
# (ingest --jobs 8 on 2 cores): decoding is CPU-bound, so more would only share the cores,
# and every worker beyond it would be started (~1 s of imports) and killed again.  The pool
# keeps as many idle workers as may run, so a worker is started once per slot, not per file.
_MAX_CONCURRENT = max(1, os.cpu_count() or 1)
_MAX_IDLE = _MAX_CONCURRENT
_SLOTS = threading.BoundedSemaphore(_MAX_CONCURRENT)
_HOOK_ENV = "EVIDENCELOCK_MEDIA_TEST_HOOK"


@dataclass(frozen=True)
class MediaReport:
    """What the media extractor found in one file.

    ``summary`` is small, normalised and float-free (decimals are strings such as
    ``"36.2021"``) because it is embedded in RFC 8785 signed ledger entries.  ``raw`` is the
    full tag set as recorded (strings).  ``fingerprints`` holds PDQ hashes as hex strings:
    ``{"scheme": "pdq-256", "kind": "image", "hash", "quality"}`` or
    ``{"scheme": "pdq-256", "version": 2, "kind": "video", "sampling", "frames": [{"ms", "hash",
    "quality"}, ...]}`` (docs/media.md §2).
    ``flags`` are inconsistencies for an analyst; ``errors`` say what could not be read.
    ``extractor`` names this extractor and every parser version, so results are reproducible.
    """

    kind: str
    summary: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    fingerprints: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    extractor: str = _FALLBACK_EXTRACTOR

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-safe data."""
        return {
            "kind": self.kind,
            "summary": self.summary,
            "raw": self.raw,
            "fingerprints": self.fingerprints,
            "flags": list(self.flags),
            "errors": list(self.errors),
            "extractor": self.extractor,
        }

    def to_json(self) -> str:
        """Deterministic JSON text (sorted keys, no whitespace)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: Any, *, subject: str = "media report") -> MediaReport:
        """Build a report from parsed JSON, checking its structure (raises :class:`FormatError`)."""
        if not isinstance(data, dict):
            raise FormatError(f"expected a JSON object, found {type(data).__name__}", subject=subject)
        kind = data.get("kind")
        if kind not in KINDS:
            raise FormatError(f"kind: expected one of {KINDS}, found {kind!r}", subject=subject)
        for name in ("summary", "raw", "fingerprints"):
            if not isinstance(data.get(name, {}), dict):
                raise FormatError(f"{name}: expected an object", subject=subject)
        for name in ("flags", "errors"):
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                raise FormatError(f"{name}: expected a list of strings", subject=subject)
        extractor = data.get("extractor", _FALLBACK_EXTRACTOR)
        if not isinstance(extractor, str):
            raise FormatError("extractor: expected a string", subject=subject)
        for name in ("summary", "fingerprints"):
            where = _float_path(data.get(name, {}), name)
            if where is not None:
                raise FormatError(
                    f"{where}: floats are not allowed (RFC 8785 entries); encode decimals as strings",
                    subject=subject,
                )
        return cls(
            kind=kind,
            summary=data.get("summary", {}),
            raw=data.get("raw", {}),
            fingerprints=data.get("fingerprints", {}),
            flags=list(data.get("flags", [])),
            errors=list(data.get("errors", [])),
            extractor=extractor,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> MediaReport:
        """Parse :meth:`to_json` output; raises :class:`FormatError` on malformed input."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise FormatError(f"not JSON: {exc}", subject="media report") from exc
        return cls.from_dict(data)


def _float_path(value: Any, where: str) -> str | None:
    """Path of the first value that is not str/int/bool/None/dict/list, else ``None``."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{where}.<non-string key>"
            found = _float_path(v, f"{where}.{k}")
            if found:
                return found
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _float_path(v, f"{where}[{i}]")
            if found:
                return found
        return None
    return where


class _WorkerFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Worker:
    """One child process; used by one thread at a time."""

    def __init__(self, memory_limit: int):
        self.memory_limit = memory_limit
        self.requests = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "evidencelock._media_worker", "--serve", "--memory-limit", str(memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,  # a terminal's Ctrl-C goes to us, and we clean up
        )
        self._buf = b""
        hello = self._read_line(time.monotonic() + _STARTUP_TIMEOUT, during="startup")
        try:
            msg = json.loads(hello)
            self.extractor = str(msg["extractor"])
        except (ValueError, KeyError, TypeError) as exc:
            self.kill()
            raise _WorkerFailed(f"worker startup answered malformed output ({exc})") from None

    def _read_line(self, deadline: float, *, during: str) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.kill()
                    raise _WorkerFailed("timeout")
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    status = self.kill()
                    raise _WorkerFailed(_describe_exit(status, during))
                self._buf += chunk
                if len(self._buf) > _MAX_OUTPUT:
                    self.kill()
                    raise _WorkerFailed(f"worker output exceeded {_MAX_OUTPUT} bytes")
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.requests += 1
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            status = self.kill()
            raise _WorkerFailed(_describe_exit(status, "request")) from None
        line = self._read_line(time.monotonic() + timeout, during="decoding")
        try:
            msg = json.loads(line)
        except ValueError:
            self.kill()
            raise _WorkerFailed("worker returned malformed output (not JSON)") from None
        if not isinstance(msg, dict):
            self.kill()
            raise _WorkerFailed("worker returned malformed output (not an object)")
        if msg.get("memory_error"):
            self.kill()
            raise _WorkerFailed("memory")
        return msg

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int | None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            status = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL not delivered
            status = None
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        return status


def _describe_exit(status: int | None, during: str) -> str:
    if status is None:
        return f"worker vanished during {during}"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"worker crashed during {during} ({name})"
    return f"worker exited during {during} with status {status}"


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def take(self, memory_limit: int) -> _Worker:
        with self._lock:
            for i, w in enumerate(self._idle):
                if w.memory_limit == memory_limit:
                    del self._idle[i]
                    if w.alive():
                        return w
                    w.kill()
                    break
        return _Worker(memory_limit)

    def give_back(self, worker: _Worker) -> None:
        if not worker.alive() or worker.requests >= _MAX_REQUESTS_PER_WORKER:
            worker.kill()
            return
        with self._lock:
            self._idle.append(worker)
            extra = self._idle[:-_MAX_IDLE] if len(self._idle) > _MAX_IDLE else []
            self._idle = self._idle[-_MAX_IDLE:]
        for w in extra:
            w.kill()

    def shutdown(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            w.kill()


_POOL = _Pool()
atexit.register(_POOL.shutdown)


def shutdown_workers() -> None:
    """Stop idle worker processes now (they also stop when this process exits)."""
    _POOL.shutdown()


def _failure(kind: str, message: str, extractor: str = _FALLBACK_EXTRACTOR) -> MediaReport:
    return MediaReport(kind=kind, errors=[f"metadata unavailable: {message}"], extractor=extractor)


def _guess_kind(path: str) -> str:
    """Kind from magic bytes alone, for reports of files the worker could not finish.

    Reading 512 bytes and comparing prefixes is the only parsing done in this process.
    """
    from ._media_worker import detect_kind

    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return "other"
    kind, fmt, mime = detect_kind(head)
    if kind == "probe":
        return "audio" if mime and mime.startswith("audio/") else "video"
    return kind


def _format_seconds(value: float) -> str:
    return f"{value:g}"


def extract(
    path: str | os.PathLike[str],
    *,
    timeout: float = 30.0,
    memory_limit: int = 2 << 30,
    mtime: str | None = None,
    dense: bool = False,
) -> MediaReport:
    """Read metadata, fingerprints and C2PA provenance of one untrusted file.

    ``mtime`` (RFC 3339) is the file-system modification time as ingest recorded it; it is
    compared with the capture time.  ``dense=True`` samples videos for a *query* (10 frames
    per second, every frame decoded; docs/media.md §2.1): slower, never to be recorded.
    All parsing happens in a worker process bounded by ``timeout`` seconds of wall-clock
    time and ``memory_limit`` bytes of address space.
    Never raises for a bad, hostile or unreadable file: failures are in ``errors``.
    Thread-safe; at most one call per core runs at a time, the others wait their turn.
    """
    fspath = os.fspath(path)
    request: dict[str, Any] = {"path": os.path.abspath(fspath), "mtime": mtime}
    if dense:
        request["dense"] = True
    hook = os.environ.get(_HOOK_ENV)
    if hook:
        request["hook"] = hook
    else:
        # Unreadable, empty or not media at all: decided from 512 bytes by prefix comparison
        # (no parser runs), so skip the worker round trip (~6 ms a file, a lot for a folder of
        # documents).  Test hooks always go through the worker.
        from ._media_worker import EXTRACTOR_VERSION, triage

        done, _, _, _ = triage(fspath)
        if done is not None:
            return MediaReport.from_dict({**done, "extractor": f"evidencelock.media/{EXTRACTOR_VERSION} (triage)"},
                                         subject=fspath)
    with _SLOTS:  # waiting for a slot is not the file's fault: the timeout starts after it
        return _extract_in_worker(fspath, request, timeout=timeout, memory_limit=memory_limit)


def _extract_in_worker(fspath: str, request: dict[str, Any], *, timeout: float, memory_limit: int) -> MediaReport:
    try:
        worker = _POOL.take(memory_limit)
    except _WorkerFailed as exc:
        reason = exc.reason
        if reason == "timeout":
            reason = f"worker did not start within {_format_seconds(_STARTUP_TIMEOUT)} s"
        hint = f" (memory_limit={memory_limit} bytes may be too low to load the parsers)" if memory_limit < (512 << 20) else ""
        return _failure(_guess_kind(fspath), reason + hint)
    except OSError as exc:
        return _failure(_guess_kind(fspath), f"cannot start worker ({exc})")
    try:
        msg = worker.ask(request, timeout)
    except _WorkerFailed as exc:
        if exc.reason == "timeout":
            text = f"decoder timed out after {_format_seconds(timeout)} s"
        elif exc.reason == "memory":
            text = f"memory limit exceeded ({memory_limit} bytes)"
        else:
            text = exc.reason
            if "crashed" in text:
                text += " -- a crafted or corrupt file, or the memory limit, may be the cause"
        return _failure(_guess_kind(fspath), text, worker.extractor)
    result = msg.get("result")
    try:
        report = MediaReport.from_dict({**result, "extractor": worker.extractor} if isinstance(result, dict) else result,
                                       subject=fspath)
    except FormatError as exc:
        worker.kill()
        return _failure(_guess_kind(fspath), f"worker returned malformed output ({exc.message})", worker.extractor)
    _POOL.give_back(worker)
    return report
