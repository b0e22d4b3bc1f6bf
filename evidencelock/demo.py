"""``evidencelock demo``: generate real media, preserve it, verify, tamper, see the failure named.

The media are real files written by real encoders (OpenCV writes the videos; Pillow writes
JPEGs with EXIF including GPS), so the demo exercises the same code paths as field use.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .audit import verify_vault
from .bundle import export_bundle, verify_bundle
from .errors import InputError
from .ingest import ingest
from .vault import Vault

__all__ = ["make_demo_media", "run_demo", "write_jpeg_with_exif", "write_video"]

DEMO_PASSPHRASE = "demo passphrase (never use for real evidence)"


def _frame(width: int, height: int, seed: int, t: int) -> Any:
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = rng.integers(30, 220, 3)
    for _ in range(6):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = (int(v) for v in rng.integers(0, min(width, height), 2))
        r = int(rng.integers(10, max(11, min(width, height) // 4)))
        cv2.circle(img, ((x + 3 * t) % width, y), r, c, -1)
    cv2.putText(img, f"scene {seed} t={t}", (10, height - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
    return img


def write_video(path: Path, *, seed: int, seconds: float = 3.0, fps: int = 15, size: tuple[int, int] = (320, 240)) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise InputError("OpenCV cannot write MP4 video here", subject=str(path))
    for t in range(int(seconds * fps)):
        writer.write(_frame(size[0], size[1], seed, t))
    writer.release()


def write_jpeg_with_exif(path: Path, *, seed: int, when: datetime, lat: float, lon: float,
                         make: str = "DemoCam", model: str = "Field 1") -> None:
    """A JPEG with real EXIF (camera, capture time, GPS) written by Pillow."""
    import cv2
    from PIL import Image

    rgb = cv2.cvtColor(_frame(640, 480, seed, 0), cv2.COLOR_BGR2RGB)
    img = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x010F] = make
    exif[0x0110] = model
    exif[0x0131] = "evidencelock demo"
    ifd = exif.get_ifd(0x8769)
    ifd[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
    ifd[0x9011] = "+03:00"  # OffsetTimeOriginal

    def dms(value: float) -> tuple[float, float, float]:
        value = abs(value)
        d = int(value)
        m = int((value - d) * 60)
        s = round((value - d - m / 60) * 3600, 2)
        return (float(d), float(m), s)

    gps = exif.get_ifd(0x8825)
    gps[1] = "N" if lat >= 0 else "S"
    gps[2] = dms(lat)
    gps[3] = "E" if lon >= 0 else "W"
    gps[4] = dms(lon)
    img.save(path, "JPEG", quality=90, exif=exif)


def make_demo_media(folder: Path) -> list[Path]:
    """A small phone-dump-like folder: photos with GPS, videos, a duplicate, an empty file."""
    dcim = folder / "DCIM" / "100PHONE"
    dcim.mkdir(parents=True)
    when = datetime(2014, 4, 30, 9, 15, tzinfo=timezone.utc)
    files = []
    for i in range(3):
        p = dcim / f"IMG_{i + 1:04d}.JPG"
        write_jpeg_with_exif(p, seed=i, when=when, lat=36.2021 + i / 1000, lon=37.1343)
        files.append(p)
    for i in range(2):
        p = dcim / f"VID_{i + 1:04d}.mp4"
        write_video(p, seed=100 + i)
        files.append(p)
    copies = folder / "WhatsApp" / "Media"
    copies.mkdir(parents=True)
    shutil.copyfile(files[0], copies / "IMG-20140430-WA0001.jpg")  # an exact duplicate from another source
    (folder / "empty-note.txt").write_bytes(b"")  # a zero-byte file is still a fact
    return files


def run_demo(workdir: Path, *, say: Callable[[str], None]) -> None:
    workdir = Path(workdir)
    if workdir.exists() and any(workdir.iterdir()):
        raise InputError("demo folder exists and is not empty; pass --dir NEW_FOLDER", subject=str(workdir))
    media = workdir / "sdcard"
    vault_dir = workdir / "vault"
    now = lambda: datetime.now(timezone.utc)  # noqa: E731 - the demo is the edge
    say(f"[bold]1. Generating real media[/] in {media} (OpenCV videos, JPEGs with EXIF + GPS)")
    make_demo_media(media)
    say(f"[bold]2. Creating a vault[/] in {vault_dir} with custodian 'Demo Field Team'")
    Vault.init(vault_dir, custodian="Demo Field Team", passphrase=DEMO_PASSPHRASE, now=now()).close()
    with Vault.open(vault_dir, writable=True) as vault:
        key = vault.unlock(DEMO_PASSPHRASE)
        say("[bold]3. Ingesting[/]: each file read once, hashed (SHA-256 + BLAKE3), stored write-once, signed")
        report = ingest(vault, [media], key=key, case="DEMO-ALEPPO-2014-04-30", note="demo SD card", now=now)
        for o in report.outcomes:
            extra = f" ({o.reason})" if o.reason else ""
            say(f"   {o.status:17} {os.path.relpath(o.path, media)}{extra}")
        say("[bold]4. Verifying[/] the whole vault (every object re-hashed, chain, signatures, tree)")
        result = verify_vault(vault)
        say(f"   {'[green]OK[/]' if result.ok else '[red]FAILED[/]'}: {result.entries} entries, {result.objects_checked} objects")
        victim = next(o for o in report.outcomes if o.status == "preserved" and o.path.endswith(".mp4"))
        obj = vault.store.path_for(victim.sha256 or "")
        bundle_dir = workdir / "bundle-for-the-lawyer"
        say(f"[bold]5. Exporting the case[/] as an evidence bundle (BagIt + custody + proofs + report): {bundle_dir}")
        export_bundle(vault, case="DEMO-ALEPPO-2014-04-30", out=bundle_dir, key=key, now=now)
    say("[bold]6. Verifying the bundle offline[/] (no vault, no database: what a lawyer runs)")
    checked = verify_bundle(bundle_dir)
    say(f"   {'[green]VERIFIED[/]' if checked.ok else '[red]FAILED[/]'}: {checked.payload_files} files, "
        f"{sum(1 for c in checked.checks if c.ok)}/{len(checked.checks)} checks passed; open {bundle_dir / 'report.html'}")
    tampered = workdir / "tampered-vault"
    say(f"[bold]7. Tampering with a copy[/] of the vault ({tampered}): flipping one byte of {victim.path.rsplit('/', 1)[-1]}")
    shutil.copytree(vault_dir, tampered)
    tobj = tampered / obj.relative_to(vault_dir)
    os.chmod(tobj, 0o644)
    with open(tobj, "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0x01]))
    with Vault.open(tampered) as vault:
        bad = verify_vault(vault)
    for finding in bad.errors:
        say(f"   [red]{finding.code}[/] {finding.subject}: {finding.message}")
    say(f"   {'[red]FAILED, as it must[/]' if not bad.ok else 'unexpectedly OK'}: the change is detected and named")
    say(f"\nTry it yourself:\n  export EVIDENCELOCK_VAULT={vault_dir}\n  export EVIDENCELOCK_PASSPHRASE='{DEMO_PASSPHRASE}'\n"
        "  evidencelock log\n  evidencelock verify\n  evidencelock --vault " + str(tampered) + " verify\n"
        f"  evidencelock verify-bundle {bundle_dir}")
