"""Issue 9 item 9 (round 2, task J): the human files a court reads must not say what the verifier
did not check (docs/bundle-format.md §4.7).

The attacker holds the genuine exporter key: they edit certification.md, VERIFY.md or report.html,
put the new SHA-256 into bundle.json's `files`, re-sign bundle.json with that key and fix the tag
manifests.  Every signature then verifies; the verifier must still refuse, because it renders those
files again from the verified records and compares bytes, and refuses active content in the report.
Genuine bundles (with and without the report, folder and zip, with a timestamp) still verify.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from evidencelock.vault import Vault

from conftest import PASSPHRASE, run_cli
from test_bundle_support import exported, regen_tag_manifests  # noqa: F401 - the session fixture

CUSTODIAN = "Field Team A"  # build_vault's custodian: the name the genuine files state


@pytest.fixture(scope="module")
def exporter_key(exported):  # noqa: F811
    v = Vault.open(exported["vault"])
    try:
        return v.unlock(PASSPHRASE)
    finally:
        v.close()


@pytest.fixture
def bag(exported, tmp_path) -> Path:  # noqa: F811
    dst = tmp_path / "bag"
    shutil.copytree(exported["A"], dst)
    return dst


def resign(bag: Path, key, *names: str) -> None:
    """What the holder of the exporter key does after editing human files: new digests in
    bundle.json `files`, a new genuine signature, new tag manifests."""
    meta = json.loads((bag / "evidence/bundle.json").read_text())
    for name in names:
        meta["files"][name] = hashlib.sha256((bag / name).read_bytes()).hexdigest()
    data = json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False).encode()
    (bag / "evidence/bundle.json").write_bytes(data)
    (bag / "evidence/bundle.json.sig").write_bytes(key.sign(data))
    regen_tag_manifests(bag)


def edit(bag: Path, name: str, old: str, new: str, count: int = -1) -> None:
    text = (bag / name).read_text()
    assert old in text, (name, old)
    (bag / name).write_text(text.replace(old, new, count))


def assert_refused(r, check: str, subject: str, *words: str) -> None:
    assert r.code == 1, r.stdout + r.stderr
    assert "VERIFIED" not in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL") and check in ln and subject in ln]
    assert fails, r.stdout
    for w in words:
        assert any(w in ln for ln in fails), (w, fails)


def assert_verified(path: Path) -> None:
    r = run_cli("verify-bundle", path)
    assert r.code == 0, r.stdout + r.stderr
    assert "VERIFIED" in r.stdout and "Traceback" not in r.stderr


# -- genuine bundles still verify -----------------------------------------------------------------
def test_genuine_bundle_with_report_and_timestamp_verifies(exported, bag):  # noqa: F811
    assert (bag / "report.html").exists() and (bag / "evidence/timestamp.tst").exists()
    r = run_cli("verify-bundle", bag, "--json")
    assert r.code == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    ok = {(c["name"], c["subject"]) for c in out["checks"] if c["ok"]}
    assert {("evidence-certification", "certification.md"), ("evidence-verify-md", "VERIFY.md"),
            ("evidence-report-content", "report.html")} <= ok
    assert any("report.pdf was NOT checked" in s for s in out["not_established"])


def test_genuine_bundle_without_report_verifies(exported):  # noqa: F811
    assert not (exported["B"] / "report.html").exists()
    assert_verified(exported["B"])


@pytest.mark.parametrize("no_report", [False, True])
def test_genuine_zip_bundles_verify(exported, tmp_path, no_report):  # noqa: F811
    vault = tmp_path / "vault"
    shutil.copytree(exported["vault"], vault)
    out = tmp_path / "bundle.zip"
    r = run_cli("export", "--case", "Case 7", "-o", out, *(["--no-report"] if no_report else []), vault=vault)
    assert r.code == 0, r.stdout + r.stderr
    assert_verified(out)


# -- the red-team attacks: re-signed with the genuine exporter key --------------------------------
def test_certification_naming_another_custodian_is_refused(bag, exporter_key):
    edit(bag, "certification.md", f"by custodian {CUSTODIAN}", "by custodian UN OHCHR")
    resign(bag, exporter_key, "certification.md")
    assert_refused(run_cli("verify-bundle", bag), "evidence-certification", "certification.md", "UN OHCHR", "line ")


def test_certification_claiming_a_timestamp_is_refused(exported, tmp_path, exporter_key):  # noqa: F811
    bag = tmp_path / "B"
    shutil.copytree(exported["B"], bag)
    edit(bag, "certification.md", "No RFC 3161 timestamp is attached to the checkpoint.",
         "The checkpoint was timestamped by the UN OHCHR timestamp authority at 2014-04-30T09:00:00+00:00.")
    resign(bag, exporter_key, "certification.md")
    assert_refused(run_cli("verify-bundle", bag), "evidence-certification", "certification.md", "UN OHCHR")


def test_verify_md_with_a_weakened_command_is_refused(bag, exporter_key):
    edit(bag, "VERIFY.md", "sha256sum -c --strict --quiet manifest-sha256.txt", "echo OK")
    resign(bag, exporter_key, "VERIFY.md")
    assert_refused(run_cli("verify-bundle", bag), "evidence-verify-md", "VERIFY.md", "echo OK")


def test_report_with_script_and_another_custodian_is_refused(bag, exporter_key):
    edit(bag, "report.html", CUSTODIAN, "UN OHCHR")
    edit(bag, "report.html", "</body>", "<script>alert(1)</script></body>")
    resign(bag, exporter_key, "report.html")
    assert_refused(run_cli("verify-bundle", bag), "evidence-report-content", "report.html", "<script")


def test_report_naming_another_custodian_is_refused(bag, exporter_key):
    edit(bag, "report.html", CUSTODIAN, "UN OHCHR")
    resign(bag, exporter_key, "report.html")
    assert_refused(run_cli("verify-bundle", bag), "evidence-report-content", "report.html", "UN OHCHR")


def test_report_with_another_item_digest_is_refused(exported, bag, exporter_key):  # noqa: F811
    digest = json.loads((bag / "evidence/bundle.json").read_text())["items"][0]["sha256"]
    edit(bag, "report.html", f"<code>{digest}</code>", f"<code>{'ab' * 32}</code>")
    resign(bag, exporter_key, "report.html")
    assert_refused(run_cli("verify-bundle", bag), "evidence-report-content", "report.html", "ab" * 8)


@pytest.mark.parametrize("injection", [
    '<img src="https://tracker.example/p.gif">',
    '<a href="http://example.org/">the original</a>',
    '<p onmouseover="document.body.innerHTML=1">x</p>',
    '<a href="javascript:alert(1)">x</a>',
    '<iframe srcdoc="x"></iframe>',
    '<object data="x.swf"></object>',
    '<embed src="x.swf">',
    '<meta http-equiv="refresh" content="0; url=https://example.org/">',
    '<div style="background:url(https://example.org/x.png)">x</div>',
    '<style>@import "https://example.org/x.css";</style>',
    '<svg><animate onbegin="alert(1)"/></svg>',
])
def test_report_with_active_content_is_refused(bag, exporter_key, injection):
    edit(bag, "report.html", "</main>", injection + "</main>")
    resign(bag, exporter_key, "report.html")
    assert_refused(run_cli("verify-bundle", bag), "evidence-report-content", "report.html", "active content")


def test_report_pdf_is_stated_as_not_checked(bag):
    r = run_cli("verify-bundle", bag)
    assert r.code == 0, r.stdout + r.stderr
    assert "report.pdf was NOT checked" in " ".join(r.stdout.split())



def test_genuine_bundle_with_a_token_but_no_chain_verifies(tmp_path):
    """Export with a TSA but without its certificates: the human files say the time is not verified,
    and that rendering is reproduced by the verifier."""
    from datetime import datetime, timedelta, timezone

    from evidencelock.bundle import export_bundle
    from evidencelock.ingest import ingest
    from test_bundle_support import LocalTSA, build_vault
    from tsa import serve

    vault, clock = build_vault(tmp_path, datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1))
    key = vault.unlock(PASSPHRASE)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_bytes(b"a statement\n")
    ingest(vault, [tmp_path / "in"], key=key, case="C", now=clock, extract_media=False)
    tsa = LocalTSA(tmp_path / "tsa")
    with serve(tsa.pki) as server:
        out = export_bundle(vault, case="C", out=tmp_path / "b.zip", key=key, now=clock, tsa_urls=[server.url]).path
    vault.close()
    assert "timestamp.tst" in str(__import__("zipfile").ZipFile(out).namelist())
    assert_verified(out)
