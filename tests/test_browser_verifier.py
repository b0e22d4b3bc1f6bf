"""verify.html, the browser verifier (docs/browser-verifier.md), in a REAL headless Chromium.

Real vault, real exported bundle (folder and zip), real bytes tampered as an attacker would;
the page must say VERIFIED only for the untouched bundle and name the failing check and file
otherwise.  One Chromium for the whole module (start-up dominates the time).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

from evidencelock.bundle import export_bundle
from evidencelock.bundle.browser import verify_html_bytes, verify_html_sha256
from evidencelock.ingest import ingest
from evidencelock.keys import CustodianKey
from conftest import run_cli
from test_bundle_support import PASSPHRASE, build_vault, regen_manifests, regen_tag_manifests, rewrite_entry

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[test]')")
if not (os.path.exists(CHROMEDRIVER) and os.path.exists(CHROMIUM)):
    pytest.skip("chromium / chromedriver not installed (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BIG = 5 * 1024 * 1024 + 17  # crosses the page's 4 MiB read chunk


@pytest.fixture(scope="module")
def driver():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    d.set_script_timeout(120)
    yield d
    d.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    vault, clock = build_vault(root)
    key = vault.unlock(PASSPHRASE)
    src = root / "incoming"
    src.mkdir()
    (src / "statement.txt").write_bytes(b"witness statement\n")
    (src / "clip.bin").write_bytes(random.Random(7).randbytes(BIG))
    ingest(vault, [src], key=key, case="Case B", now=clock, extract_media=False)
    folder = export_bundle(vault, case="Case B", out=root / "bundle", key=key, now=clock).path
    zipped = export_bundle(vault, case="Case B", out=root / "bundle.zip", key=key, now=clock).path
    vault.close()
    page = root / "verify.html"
    page.write_bytes((folder / "verify.html").read_bytes())
    return {"root": root, "folder": folder, "zip": zipped, "key": key, "page": page}


def verify_in_browser(driver, page: Path, target: Path, *, pins: str = "") -> dict:
    driver.get(page.as_uri())
    if pins:
        driver.find_element("id", "pins").send_keys(pins)
    driver.find_element("id", "zip" if target.is_file() else "folder").send_keys(str(target))
    WebDriverWait(driver, 120).until(
        lambda d: d.find_element("id", "verdict").get_attribute("data-state") in ("ok", "fail", "error"))
    result = driver.execute_script(
        "const r = window.evidencelock.last; return JSON.stringify({ok: r.ok, state: r.state, error: r.error || null,"
        " checks: r.checks, established: r.established, not_established: r.notEstablished});")
    out = json.loads(result)
    out["verdict"] = driver.find_element("id", "verdict").text
    return out


def failures(result: dict) -> list[tuple[str, str]]:
    return [(c["name"], c["subject"]) for c in result["checks"] if not c["ok"]]


def _copy(world, tmp_path) -> Path:
    dst = tmp_path / "bag"
    shutil.copytree(world["folder"], dst)
    return dst


def test_incremental_sha256_matches_hashlib_in_browser(driver, world):
    driver.get(world["page"].as_uri())
    rng = random.Random(11)
    sizes = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1000, 4 * 1024 * 1024, 4 * 1024 * 1024 + 1, 3_000_017]
    for size in sizes:
        data = rng.randbytes(size)
        # Feed in uneven pieces so the block buffer is exercised across every update boundary.
        cuts = sorted(rng.sample(range(size + 1), min(size + 1, 5)))
        got = driver.execute_script("""
            const bin = atob(arguments[0]); const d = new Uint8Array(bin.length);
            for (let i = 0; i < bin.length; i++) d[i] = bin.charCodeAt(i);
            const h = new window.evidencelock.Sha256(); let prev = 0;
            for (const c of arguments[1]) { h.update(d.subarray(prev, c)); prev = c; }
            h.update(d.subarray(prev)); return window.evidencelock.hex(h.digest());""",
            __import__("base64").b64encode(data).decode(), cuts)
        assert got == hashlib.sha256(data).hexdigest(), size
    # FIPS 180-4 vectors.
    for msg, want in ((b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
                      (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")):
        got = driver.execute_script("const h = new window.evidencelock.Sha256(); h.update(new TextEncoder().encode(arguments[0]));"
                                    " return window.evidencelock.hex(h.digest());", msg.decode())
        assert got == want


def test_good_bundle_folder_verifies(driver, world):
    r = verify_in_browser(driver, world["page"], world["folder"])
    assert r["state"] == "ok", failures(r) or r["error"]
    assert r["verdict"].startswith("VERIFIED")
    names = {c["name"] for c in r["checks"] if c["ok"]}
    for check in ("bagit-payload-fixity", "bagit-tag-fixity", "evidence-signature", "evidence-checkpoint-signature",
                  "evidence-inclusion", "evidence-record", "evidence-chain", "evidence-bundle-signature",
                  "evidence-payload-covered", "evidence-keys"):
        assert check in names
    assert any("byte-identical" in s for s in r["established"])
    assert any("SHA-512" in s and "NOT checked" in s for s in r["not_established"])
    # verify-bundle agrees, and names the carried verify.html as the shipped one.
    cli = run_cli("verify-bundle", world["folder"], "--json")
    assert cli.code == 0, cli.stdout + cli.stderr
    vh = json.loads(cli.stdout)["verify_html"]
    assert vh == {"present": True, "sha256": verify_html_sha256(), "shipped_sha256": verify_html_sha256(), "known": True}


def test_good_bundle_zip_verifies(driver, world):
    r = verify_in_browser(driver, world["page"], world["zip"])
    assert r["state"] == "ok", failures(r) or r["error"]
    assert r["verdict"].startswith("VERIFIED")


def test_flipped_payload_byte_is_named(driver, world, tmp_path):
    bag = _copy(world, tmp_path)
    target = next(p for p in (bag / "data").rglob("*") if p.is_file() and p.stat().st_size == BIG)
    data = bytearray(target.read_bytes())
    data[BIG - 3] ^= 0x01
    target.write_bytes(bytes(data))
    r = verify_in_browser(driver, world["page"], bag)
    assert r["verdict"].startswith("NOT VERIFIED")
    rel = str(target.relative_to(bag))
    assert ("bagit-payload-fixity", rel) in failures(r)


def test_flipped_payload_byte_in_zip_is_named(driver, world, tmp_path):
    z = tmp_path / "b.zip"
    data = bytearray(world["zip"].read_bytes())
    i = data.find(b"witness statement\n")
    assert i > 0
    data[i] ^= 0x01
    z.write_bytes(bytes(data))
    r = verify_in_browser(driver, world["page"], z)
    assert r["verdict"].startswith("NOT VERIFIED")
    assert any(n == "bagit-zip-crc" and s.endswith("statement.txt") for n, s in failures(r)), failures(r)


def test_edited_entry_is_named(driver, world, tmp_path):
    """An ingest entry's size edited and re-serialised canonically: its signature no longer verifies."""
    bag = _copy(world, tmp_path)
    lines = (bag / "evidence/entries.jsonl").read_text().splitlines()
    seq = next(json.loads(ln)["seq"] for ln in lines
               if json.loads(__import__("base64").b64decode(json.loads(ln)["canonical"]))["type"] == "ingest")
    old_sig = (bag / f"evidence/entries/{seq}.sig").read_bytes()
    rewrite_entry(bag, seq, lambda e: e["body"].update(size=e["body"]["size"] + 1), lambda _b: old_sig)
    r = verify_in_browser(driver, world["page"], bag)
    assert r["verdict"].startswith("NOT VERIFIED")
    assert ("evidence-signature", f"entry {seq}") in failures(r)


def test_swapped_key_is_named(driver, world, tmp_path):
    """An entry re-signed by a fresh key that no entry enrols, the key PEM replaced by that key."""
    bag = _copy(world, tmp_path)
    mallory = CustodianKey.generate("Mallory")
    kid = world["key"].key_id
    rewrite_entry(bag, 1, lambda e: e.update(actor=mallory.key_id), mallory.sign)
    (bag / f"evidence/keys/{kid}.pem").write_bytes(mallory.public.to_pem())
    regen_tag_manifests(bag)
    r = verify_in_browser(driver, world["page"], bag)
    assert r["verdict"].startswith("NOT VERIFIED")
    f = failures(r)
    assert ("evidence-signature", "entry 1") in f
    assert ("evidence-keys", f"evidence/keys/{kid}.pem") in f
    assert any("public key swapped" in c["detail"] for c in r["checks"] if not c["ok"])


def test_pinned_key_that_does_not_match_is_named(driver, world):
    other = CustodianKey.generate("Someone else")
    r = verify_in_browser(driver, world["page"], world["folder"], pins=other.public.to_pem().decode())
    assert r["verdict"].startswith("NOT VERIFIED")
    assert ("evidence-trusted-key", "evidence/checkpoint.txt") in failures(r)
    assert ("evidence-trusted-key", "evidence/bundle.json.sig") in failures(r)
    good = verify_in_browser(driver, world["page"], world["folder"], pins=world["key"].key_id)
    assert good["state"] == "ok", failures(good)
    prefix = verify_in_browser(driver, world["page"], world["folder"], pins=world["key"].key_id[:16])
    assert prefix["state"] == "error" and "prefix is refused" in prefix["error"]


def test_lying_verify_html_is_refused_by_verify_bundle(world, tmp_path):
    """A bundle holder replaces verify.html with one that always says VERIFIED and re-signs bundle.json
    with the genuine exporter key: verify-bundle names evidence-verify-html."""
    bag = _copy(world, tmp_path)
    (bag / "verify.html").write_bytes(b"<!DOCTYPE html><p>VERIFIED</p>\n")
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    meta["files"]["verify.html"] = hashlib.sha256((bag / "verify.html").read_bytes()).hexdigest()
    data = json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False).encode()
    (bag / "evidence/bundle.json").write_bytes(data)
    (bag / "evidence/bundle.json.sig").write_bytes(world["key"].sign(data))
    regen_tag_manifests(bag)
    r = run_cli("verify-bundle", bag, "--json")
    assert r.code == 1
    bad = [c for c in json.loads(r.stdout)["checks"] if not c["ok"]]
    assert [(c["name"], c["subject"]) for c in bad] == [("evidence-verify-html", "verify.html")], bad
    assert verify_html_sha256() in bad[0]["detail"]


def test_shipped_verify_html_is_self_contained():
    page = verify_html_bytes().decode("utf-8")
    assert "default-src 'none'" in page
    low = page.lower()
    for bad in ("<script src", "<link", "http://", "https://", "@import", "fetch(", "xmlhttprequest", "websocket"):
        assert bad not in low, bad


def test_docs_tell_how_to_check_the_digest():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "browser-verifier.md").read_text()
    assert "sha256sum verify.html" in doc and "verify_html" in doc and "evidence-verify-html" in doc
