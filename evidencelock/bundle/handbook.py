"""The human-facing files of a bundle: VERIFY.md, and (via evidencelock.report) the court
report and the draft certification.  Everything is generated from the same context, so the
words and the evidence cannot drift apart.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..entry import SignedEntry
from ..keys import PublicKey
from ..checkpoint import Checkpoint

__all__ = ["Context", "human_files", "verify_md", "thumbnails"]

_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".heic"}
_VIDEO_EXT = {".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".3gp"}
MAX_THUMB_ITEMS = 200


@dataclass
class Context:
    case: str
    origin: str
    created: str
    software: str
    exporter: str
    exporter_name: str
    checkpoint: Checkpoint
    checkpoint_signer: PublicKey
    timestamp: dict[str, Any] | None
    plan: list[dict[str, Any]]
    entries: dict[int, SignedEntry]
    keys: dict[str, PublicKey]
    media: dict[str, Any]
    bag: Path
    checkpoint_created: bool = False
    thumbs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def thumbnails(jobs: list[tuple[Path, str]], *, timeout: float = 120.0) -> list[list[dict[str, Any]]]:
    """JPEG frames of untrusted files, decoded in a limited child process; [] for any failure.

    One child handles many files (OpenCV is imported once); if it dies or hangs on a file,
    that file gets no thumbnail and the files after it are retried in a fresh child.
    """
    results: list[list[dict[str, Any]]] = [[] for _ in jobs]
    start = 0
    while start < len(jobs):
        argv = [a for path, kind in jobs[start:] for a in (kind, str(path))]
        answered = 0
        try:
            p = subprocess.run([sys.executable, "-m", "evidencelock.bundle._thumb_worker", *argv],
                               capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
            stdout = p.stdout
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout or b""
        except OSError:
            return results
        for line in stdout.decode("utf-8", "replace").splitlines():
            try:
                obj = json.loads(line)
                i = int(obj["i"])
                good = []
                for f in obj["frames"][:5]:
                    raw = base64.b64decode(f["jpeg_b64"], validate=True)
                    if raw[:3] == b"\xff\xd8\xff" and len(raw) < 2 << 20:
                        good.append({"t": f.get("t"), "jpeg": raw})
                if 0 <= i < len(jobs) - start:
                    results[start + i] = good
                    answered = max(answered, i + 1)
            except (ValueError, KeyError, TypeError):
                continue
        start += answered + (0 if answered == len(jobs) - start else 1)  # skip the file it failed on
    return results


def _kind(item: dict[str, Any], media: Any) -> str | None:
    k = media.get("kind") if isinstance(media, dict) else None
    if k in ("image", "video"):
        return k
    ext = Path(item["path"]).suffix.lower()
    return "image" if ext in _IMAGE_EXT else "video" if ext in _VIDEO_EXT else None


def human_files(ctx: Context, *, with_report: bool = True) -> dict[str, bytes]:
    from .. import report

    if with_report:
        todo = [(item, _kind(item, ctx.media.get(item["sha256"]))) for item in ctx.plan[:MAX_THUMB_ITEMS]]
        todo = [(item, kind) for item, kind in todo if kind]
        for (item, _), frames in zip(todo, thumbnails([(ctx.bag / item["path"], kind) for item, kind in todo])):
            ctx.thumbs[item["sha256"]] = frames
    files = {"VERIFY.md": _shown(verify_md(ctx)), "certification.md": _shown(report.certification_md(ctx))}
    if with_report:
        files["report.html"] = _shown(report.report_html(ctx))
        files["report.pdf"] = report.report_pdf(ctx)
    return files


def _shown(text: str) -> bytes:
    """A human file: a name's control, bidi and format characters written as visible escapes
    (evidencelock._text), so `cat VERIFY.md` cannot drive a terminal and a bidi override cannot
    reorder a name in the rendered report (issue 9 item 17).  The signed entries keep the bytes."""
    from .._text import printable

    return printable(text, keep_layout=True).encode()


def verify_md(ctx: Context) -> str:
    cp = ctx.checkpoint
    signer = ctx.checkpoint_signer.key_id
    ingest = next((s for _, s in sorted(ctx.entries.items()) if s.entry.type == "ingest"), None)
    example = ""
    if ingest is not None:
        e = ingest.entry
        example = f"""
For example, entry {e.seq} (the ingest of `{ingest.entry.body.get('item', '')[:16]}…`) was signed by key
`{e.actor}`:

```sh
openssl pkeyutl -verify -pubin -inkey evidence/keys/{e.actor}.pem -rawin -in evidence/entries/{e.seq}.json -sigfile evidence/entries/{e.seq}.sig
```
"""
    ts = ""
    if ctx.timestamp:
        chain = "evidence/tsa-chain.pem" if ctx.timestamp["verified"] else "TSA-CHAIN.pem"
        said = (f"existed at {ctx.timestamp['time']} ({ctx.timestamp['tsa']})" if ctx.timestamp["verified"] else
                "existed at the time written in the token. This bundle carries no TSA certificate chain: obtain "
                "the authority's certificate and its CA certificate(s), `cat` them into `TSA-CHAIN.pem`, then")
        ts = f"""
## 6. The timestamp (RFC 3161)

`evidence/timestamp.tst` is an RFC 3161 time-stamp token: a timestamp authority's signed
statement that the exact bytes of `evidence/checkpoint-body.txt` (the checkpoint text, without
its signature lines) {said}

```sh
openssl ts -verify -token_in -in evidence/timestamp.tst -data evidence/checkpoint-body.txt -CAfile {chain} -untrusted {chain}
```

It prints `Verification: OK`. `openssl ts -reply -token_in -in evidence/timestamp.tst -text`
shows the time and the authority. The certificates come from the bundle: compare the root's
fingerprint (`openssl x509 -in {chain} -noout -fingerprint -sha256`, the last certificate in
the file) with the one the authority publishes before relying on the time.
"""
    return f"""# How to verify this evidence bundle by hand

Case **{ctx.case}**, exported {ctx.created} from log `{ctx.origin}` by {ctx.exporter_name}
(key `{ctx.exporter}`), with {ctx.software}.

This folder is a BagIt 1.0 bag (RFC 8493). The original files are under `data/`, byte for
byte. Everything else is evidence about them. You need only standard tools: `sha256sum`,
`sha512sum`, `openssl` (3.0 or later), optionally `python3` and a BagIt validator. If you
received a `.zip`, unzip it first. Run every command from this folder (the one holding this
file). Each command prints `OK` / `Signature Verified Successfully` on success and exits with
a non-zero status on any failure. The fastest complete check is our verifier:
`evidencelock verify-bundle .` (it does all of the below).

## 1. The files are the bytes listed in the manifests

BagIt manifests use the same `<digest>  <path>` lines as `sha256sum`, so they check directly:

```sh
sha256sum -c --strict --quiet manifest-sha256.txt
sha512sum -c --strict --quiet manifest-sha512.txt
sha256sum -c --strict --quiet tagmanifest-sha256.txt
```

Also make sure no file was added to `data/` (a listed file can be checked; an unlisted one
would be silently ignored by the commands above):

```sh
test "$(find data -type f | LC_ALL=C sort)" = "$(cut -d' ' -f3- manifest-sha256.txt | LC_ALL=C sort)"
```

## 2. Every file is in the custody record

Each file's SHA-256 must be the `item` of a signed ingest entry in `evidence/entries/`:

```sh
while read -r digest path; do grep -l "\\"item\\":\\"$digest\\"" evidence/entries/*.json > /dev/null || {{ echo "NOT in the custody record: $path"; exit 1; }}; done < manifest-sha256.txt
```

## 3. The custody entries are signed

Each entry is stored exactly as signed (`evidence/entries/<seq>.json`, RFC 8785 canonical
JSON, no trailing newline) with its raw 64-byte Ed25519 signature (`<seq>.sig`). The signer is
the entry's `actor` key id; its public key is `evidence/keys/<key id>.pem`.
{example}
To check every entry at once:

```sh
for f in evidence/entries/*.json; do
  seq=$(basename "$f" .json)
  actor=$(grep -o '"actor":"[0-9a-f]\\{{64\\}}"' "$f" | head -n 1 | cut -d'"' -f4)
  openssl pkeyutl -verify -pubin -inkey "evidence/keys/$actor.pem" -rawin -in "$f" -sigfile "evidence/entries/$seq.sig" > /dev/null || {{ echo "BAD signature: entry $seq"; exit 1; }}
done
echo "all entry signatures verified"
```

A key id is the SHA-256 of the 32-byte raw public key, so each key file can be checked
against its name, and the key ids compared with ones you obtained independently:

```sh
for k in evidence/keys/*.pem; do
  test "$(openssl pkey -pubin -in "$k" -outform DER | tail -c 32 | sha256sum | cut -c1-64)" = "$(basename "$k" .pem)" || {{ echo "key file does not hold its key: $k"; exit 1; }}
done
```

Important: these signatures prove the entries were made with these keys. They do not prove
who holds the keys. Obtain the custodian organisation's key id from them directly (or from a
checkpoint they published) and compare.

## 4. The checkpoint is signed

`evidence/checkpoint.txt` is a C2SP signed note: the log's origin, its size ({cp.tree_size} entries) and
its Merkle root hash, followed by a signature line. The signed text and the raw signature are
also stored separately; the checkpoint was signed by key `{signer}`.

```sh
head -c "$(wc -c < evidence/checkpoint-body.txt)" evidence/checkpoint.txt | cmp - evidence/checkpoint-body.txt
openssl pkeyutl -verify -pubin -inkey evidence/keys/{signer}.pem -rawin -in evidence/checkpoint-body.txt -sigfile evidence/checkpoint.sig
```

## 5. The entries are in the checkpointed log (Merkle inclusion proofs)

`evidence/proofs.json` holds, for every entry, an RFC 9162 inclusion proof against the
checkpoint's root. There is no single standard command for this; the 20 lines below use only
the Python standard library and follow RFC 9162 §2.1.3.2 step by step:

```sh
python3 - <<'PY'
import base64, hashlib, json
H = lambda b: hashlib.sha256(b).digest()
body = open("evidence/checkpoint-body.txt", "rb").read().decode().split("\\n")
size, root = int(body[1]), base64.b64decode(body[2])
proofs = json.load(open("evidence/proofs.json"))
assert proofs["tree_size"] == size, "the proofs are for another tree size"
for seq, path in proofs["inclusion"].items():
    fn, sn = int(seq), size - 1
    r = H(b"\\0" + open(f"evidence/entries/{{seq}}.json", "rb").read())
    for p in map(bytes.fromhex, path):
        if fn & 1 or fn == sn:
            r = H(b"\\1" + p + r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = H(b"\\1" + r + p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0 and r == root, f"entry {{seq}}: the proof does not lead to the checkpoint root"
print(f"all {{len(proofs['inclusion'])}} entries are in the log of size {{size}}")
PY
```
{ts}
## 7. With a BagIt validator

Any RFC 8493 validator checks the bag layer (both manifests, tag manifests, Payload-Oxum),
for example the Library of Congress's bagit-python:

```sh
bagit.py --validate .
```

## What this does and does not establish

If every step passes: the files under `data/` are byte-identical to what the custodians
recorded at ingest; each custody act (ingest, transfer, access, …) was signed with the key
shown; and those acts are part of one append-only log as committed by the checkpoint
{"and timestamped by an independent authority" if ctx.timestamp else "(no independent timestamp is attached)"}.
It does not establish who filmed or created the files, whether what they show is genuine, what
happened before ingest, or who holds the signing keys. Capture metadata (`evidence/metadata.json`,
the report) is what the files claim about themselves, not verified fact.
"""
