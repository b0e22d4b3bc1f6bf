"""The README's first command: `evidencelock demo` on media it generates."""

from __future__ import annotations

import json

from tests.conftest import run_cli


def test_demo_preserves_verifies_exports_and_names_the_tampering(tmp_path):
    work = tmp_path / "demo"
    r = run_cli("demo", "--dir", work)
    assert r.code == 0, r.stderr
    assert "VERIFIED" in r.stdout
    assert "object-digest-mismatch" in r.stdout and "VID_0001.mp4" in r.stdout
    assert "FAILED, as it must" in r.stdout
    # What it made is real: the vault verifies, its tampered copy does not, the bundle checks out.
    assert run_cli("verify", vault=work / "vault").code == 0
    bad = run_cli("verify", "--json", vault=work / "tampered-vault")
    assert bad.code == 1
    assert [f["code"] for f in bad.json()["findings"] if f["severity"] == "error"] == ["object-digest-mismatch"]
    vb = run_cli("verify-bundle", work / "bundle-for-the-lawyer", "--json")
    assert vb.code == 0 and json.loads(vb.stdout)["ok"] is True
    # The generated photos carry real EXIF (camera, capture time, GPS) read back by ingest.
    log = run_cli("log", "--type", "ingest", "--json", vault=work / "vault").json()
    photo = next(e for e in log if e["body"]["source"]["path"].endswith("IMG_0002.JPG"))
    summary = photo["body"]["media"]["summary"]
    assert summary["camera"]["make"] == "DemoCam"
    assert summary["gps"]["latitude"].startswith("36.20")


def test_demo_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "x").write_text("something of the user's")
    r = run_cli("demo", "--dir", tmp_path)
    assert r.code == 2
    assert "not empty" in r.stderr
    assert (tmp_path / "x").read_text() == "something of the user's"
