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
    custody_paths: list[dict[str, Any]] = field(default_factory=list)  # bundle-format §4.9: earlier custodians


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
    # §4.7: the same certification as documents a lawyer edits and signs (pinned by digest only).
    from .. import certdoc

    md = files["certification.md"].decode()
    files["certification.docx"] = certdoc.certification_docx(ctx, md)
    files["certification.odt"] = certdoc.certification_odt(ctx, md)
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
shows the time, the authority and the policy. That command trusts the certificates that came
WITH the bundle: anyone can make their own "authority" and stamp any time, so the time is only
a claim until you have checked the authority's ROOT certificate. This prints the root's (the
last certificate in the file) subject and SHA-256 fingerprint; compare the fingerprint with the
one the authority publishes:

```sh
awk '/-----BEGIN CERTIFICATE-----/{{c=""}} {{c=c $0 "\\n"}} END{{printf "%s", c}}' {chain} | openssl x509 -noout -subject -fingerprint -sha256
```

Better: save the authority's root certificate, obtained from the authority itself, as
`TSA-ROOT.pem` and verify against it instead (the bundle's chain then only supplies the
intermediate certificates, never the trust):
`openssl ts -verify -token_in -in evidence/timestamp.tst -data evidence/checkpoint-body.txt -CAfile TSA-ROOT.pem -untrusted {chain}`.
Finally, no entry the checkpoint contains (seq below its size, {cp.tree_size}) may be dated after the
token's time (plus its stated accuracy and one second): otherwise the entry's time or the token's
time is false. This compares the token's `Time stamp:` and `Accuracy:` lines with every entry:

```sh
python3 - <<'PY'
import glob, json, os, re, subprocess, sys
from datetime import datetime, timedelta, timezone
text = subprocess.run(["openssl", "ts", "-reply", "-token_in", "-in", "evidence/timestamp.tst", "-text"],
                      capture_output=True, text=True, check=True).stdout
m = re.search(r"^Time stamp: (\\w{{3}}) +(\\d+) (\\d\\d):(\\d\\d):(\\d\\d)(\\.\\d+)? (\\d{{4}}) GMT$", text, re.M)
months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
t = datetime(int(m[7]), months.index(m[1]) + 1, int(m[2]), int(m[3]), int(m[4]), int(m[5]), tzinfo=timezone.utc)
acc = re.search(r"^Accuracy: (0x[0-9A-Fa-f]+|unspecified) seconds", text, re.M)
limit = t + timedelta(seconds=1 + (int(acc[1], 16) if acc and acc[1] != "unspecified" else 0))
size = int(open("evidence/checkpoint-body.txt").read().split("\\n")[1])
bad = 0
for name in sorted(glob.glob("evidence/entries/*.json")):
    seq, when = int(os.path.basename(name)[:-5]), json.load(open(name))["time"]
    if seq < size and datetime.strptime(when, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc) > limit:
        print(f"FAILED: entry {{seq}} is dated {{when}}, after the timestamp {{t.isoformat()}}")
        bad = 1
print("FAILED" if bad else f"OK: no entry of the checkpoint is dated after the timestamp {{t.isoformat()}}")
sys.exit(bad)
PY
```
"""
    return f"""# How to verify this evidence bundle by hand

Case **{ctx.case}**, exported {ctx.created} from log `{ctx.origin}` by {ctx.exporter_name}
(key `{ctx.exporter}`), with {ctx.software}.

This folder is a BagIt 1.0 bag (RFC 8493). The original files are under `data/`, byte for
byte. Everything else is evidence about them. You need only standard tools: `sha256sum`,
`sha512sum`, `grep`, `awk`, `openssl` (3.0 or later), `python3` (standard library only, for the
Merkle proofs of step 5) and optionally a BagIt validator. If you received a `.zip`, unzip it
first. Run every command from this folder (the one holding this file), in a `bash` or POSIX
shell. Each block prints `OK` (or `Signature Verified Successfully` / `Verification: OK`) when
its check passes and a line starting with `FAILED` (or the tool's own error) when it does not;
its last command then returns a non-zero status. No block exits or closes your shell, so you
can paste them one after the other. The fastest complete check is our verifier:
`evidencelock verify-bundle .` (it does all of the below, and more).

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
if test "$(find data -type f | LC_ALL=C sort)" = "$(cut -d' ' -f3- manifest-sha256.txt | LC_ALL=C sort)"; then echo "OK: data/ holds exactly the listed files"; else echo "FAILED: data/ and manifest-sha256.txt list different files"; false; fi
```

## 2. Every file is in the custody record

Each file's SHA-256 must be the `item` of a signed ingest entry in `evidence/entries/`
(steps 3 to 5 then show that those entries are genuine and committed):

```sh
bad=0
while read -r digest path; do grep -l "\\"item\\":\\"$digest\\"" evidence/entries/*.json > /dev/null || {{ echo "FAILED: NOT in the custody record: $path"; bad=1; }}; done < manifest-sha256.txt
if [ "$bad" = 0 ]; then echo "OK: every file is the item of an entry"; else false; fi
```

## 3. The custody entries are signed, by enrolled keys

Each entry is stored exactly as signed (`evidence/entries/<seq>.json`, RFC 8785 canonical
JSON, no trailing newline) with its raw 64-byte Ed25519 signature (`<seq>.sig`). The signer is
the entry's `actor` key id; its public key is `evidence/keys/<key id>.pem`.
{example}
To check every entry at once:

```sh
bad=0
for f in evidence/entries/*.json; do
  seq=$(basename "$f" .json)
  actor=$(grep -o '"actor":"[0-9a-f]\\{{64\\}}"' "$f" | head -n 1 | cut -d'"' -f4)
  openssl pkeyutl -verify -pubin -inkey "evidence/keys/$actor.pem" -rawin -in "$f" -sigfile "evidence/entries/$seq.sig" > /dev/null || {{ echo "FAILED: bad signature: entry $seq"; bad=1; }}
done
if [ "$bad" = 0 ]; then echo "OK: all entry signatures verified"; else false; fi
```

A key id is the SHA-256 of the 32-byte raw public key, so each key file can be checked
against its name, and the key ids compared with ones you obtained independently:

```sh
bad=0
for k in evidence/keys/*.pem; do
  test "$(openssl pkey -pubin -in "$k" -outform DER | tail -c 32 | sha256sum | cut -c1-64)" = "$(basename "$k" .pem)" || {{ echo "FAILED: key file does not hold its key: $k"; bad=1; }}
done
if [ "$bad" = 0 ]; then echo "OK: every key file holds the key its name says"; else false; fi
```

A signature only counts if its key was enrolled: entry 0 enrols the key that signs it, and
every other entry's `actor` must be the `key_id` of a `key-enroll` entry with a smaller seq.
A key that appears only as a file in `evidence/keys/` proves nothing:

```sh
bad=0
enrols=$(grep -l '"type":"key-enroll"' evidence/entries/*.json)
for f in evidence/entries/*.json; do
  seq=$(basename "$f" .json)
  actor=$(grep -o '"actor":"[0-9a-f]\\{{64\\}}"' "$f" | head -n 1 | cut -d'"' -f4)
  ok=no
  for g in $enrols; do
    s=$(basename "$g" .json)
    if grep -q "\\"key_id\\":\\"$actor\\"" "$g" && {{ [ "$s" -lt "$seq" ] || [ "$s$seq" = 00 ]; }}; then ok=yes; fi
  done
  [ "$ok" = yes ] || {{ echo "FAILED: entry $seq is signed by key $actor, which no earlier entry enrols"; bad=1; }}
done
if [ "$bad" = 0 ]; then echo "OK: every entry is signed by a key enrolled by an earlier entry"; else false; fi
```

Important: these signatures prove the entries were made with these keys. They do not prove
who holds the keys. Obtain the custodian organisation's key id from them directly (or from a
checkpoint they published) and compare it with the checkpoint's signer in step 4.

## 4. The checkpoint is signed

`evidence/checkpoint.txt` is a C2SP signed note: the log's origin, its size ({cp.tree_size} entries) and
its Merkle root hash, followed by a signature line. The signed text and the raw signature are
also stored separately; the checkpoint was signed by key `{signer}`. Compare this key id
with the one you obtained independently: the checkpoint, and through step 5 every entry, is only
as trustworthy as this key.

```sh
head -c "$(wc -c < evidence/checkpoint-body.txt)" evidence/checkpoint.txt | cmp - evidence/checkpoint-body.txt
openssl pkeyutl -verify -pubin -inkey evidence/keys/{signer}.pem -rawin -in evidence/checkpoint-body.txt -sigfile evidence/checkpoint.sig
if grep -q '"key_id":"{signer}"' $(grep -l '"type":"key-enroll"' evidence/entries/*.json); then echo "OK: the checkpoint key is enrolled"; else echo "FAILED: the checkpoint key is not enrolled by any entry"; false; fi
```

## 5. Every entry is in the checkpointed log (Merkle inclusion proofs)

`evidence/proofs.json` holds, for every entry, an RFC 9162 inclusion proof against the
checkpoint's root. An entry file without a proof that leads to the signed root is not part of
the log (it may have been added to the bundle). There is no single standard command for this;
the lines below use only the Python 3 standard library and follow RFC 9162 §2.1.3.2 step by
step, for every file in `evidence/entries/`:

```sh
python3 - <<'PY'
import base64, glob, hashlib, json, os, sys
H = lambda b: hashlib.sha256(b).digest()
body = open("evidence/checkpoint-body.txt", "rb").read().decode().split("\\n")
size, root = int(body[1]), base64.b64decode(body[2])
proofs = json.load(open("evidence/proofs.json"))
bad = 0
if proofs["tree_size"] != size:
    print("FAILED: the proofs are for another tree size")
    bad = 1
for name in sorted(glob.glob("evidence/entries/*.json")):
    seq = os.path.basename(name)[:-5]
    path = proofs["inclusion"].get(seq)
    ok = path is not None and int(seq) < size
    fn, sn = int(seq), size - 1
    r = H(b"\\0" + open(name, "rb").read())
    for p in map(bytes.fromhex, path or []):
        if sn == 0:
            ok = False
            break
        if fn & 1 or fn == sn:
            r = H(b"\\1" + p + r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = H(b"\\1" + r + p)
        fn, sn = fn >> 1, sn >> 1
    if not ok or sn != 0 or r != root:
        print(f"FAILED: entry {{seq}} is not in the log of size {{size}} (no proof, or its proof does not lead to the checkpoint root)")
        bad = 1
print("FAILED" if bad else f"OK: all {{len(glob.glob('evidence/entries/*.json'))}} entries are in the log of size {{size}}")
sys.exit(bad)
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
{"and timestamped by an authority (an independent one only if its root certificate is the one the authority publishes, step 6)" if ctx.timestamp else "(no independent timestamp is attached)"}.
It does not establish who filmed or created the files, whether what they show is genuine, what
happened before ingest, or who holds the signing keys. The steps above do not check key
revocations (`key-revoke` entries); `evidencelock verify-bundle` does. Capture metadata (`evidence/metadata.json`,
the report) is what the files claim about themselves, not verified fact.
"""
