"""A real vault for the court-report tests: photos with camera EXIF and GPS, videos, many
items (so the report spans pages), accepted and pending transfers between custodians, an
access; exported as a real bundle.  Used by tests/test_report_court.py and to look at the
rendered pages by hand (``python3 tests/reportworld.py OUT``)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from evidencelock.bundle import export_bundle
from evidencelock.custody import accept_transfers, enroll_custodian, record_access, transfer_items
from evidencelock.demo import write_jpeg_with_exif, write_video
from evidencelock.ingest import ingest

from conftest import PASSPHRASE
from test_bundle_support import build_vault

CASE = "UA-Kharkiv-2022-031"
PHOTOS = 14


def make_world(root: Path) -> dict:
    from datetime import datetime, timezone

    vault, clock = build_vault(root)
    a = vault.unlock(PASSPHRASE)
    b = enroll_custodian(vault, a, name="Lawyer B", passphrase=PASSPHRASE, now=clock())
    c = enroll_custodian(vault, a, name="Court Registry", passphrase=PASSPHRASE, now=clock())
    src = root / "card"
    src.mkdir()
    when = datetime(2022, 3, 14, 7, 30, tzinfo=timezone.utc)
    for i in range(PHOTOS):
        write_jpeg_with_exif(src / f"IMG_{i + 1:04d}.JPG", seed=i, when=when, lat=49.99 + i / 400, lon=36.23 + (i % 5) / 300)
    write_video(src / "VID_0001.mp4", seed=100)
    (src / "statement.txt").write_bytes(b"witness statement, signed\n")
    ingest(vault, [src], key=a, case=CASE, now=clock)
    shas = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    accepted = [shas["IMG_0001.JPG"], shas["VID_0001.mp4"]]
    rel_ok = transfer_items(vault, a, items=accepted, case=CASE, to=b.key_id, note="sealed bag 17", now=clock)
    accept_transfers(vault, b, case=CASE, items=accepted, now=clock)
    record_access(vault, b, item=shas["IMG_0001.JPG"], purpose="review for the court filing", action="view",
                  now=clock(), case=CASE)
    transfer_items(vault, a, items=[shas["statement.txt"]], case=CASE, to=c.key_id, note=None, now=clock)
    bundle = export_bundle(vault, case=CASE, out=root / "bundle", key=a, now=clock)
    vault.close()
    return {"root": root, "vault": root / "vault", "bundle": bundle.path, "shas": shas, "a": a, "b": b, "c": c,
            "release_accepted": rel_ok[0].entry.seq, "tagmanifest_sha256": bundle.tagmanifest_sha256}


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True)
    print(make_world(out)["bundle"])
