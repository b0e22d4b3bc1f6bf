"""Issue 10, "everywhere a person looks": the report (HTML and PDF), the draft certification and
`verify-bundle` (human and --json) name sender and receiver of every transfer and whether it was
accepted; derived copies link to their originals and back; access events, annotations and
deletion requests are listed; a pending transfer is never worded as complete.

Real vault made by the real library (custody acts by four custodians), real bundles, the real CLI
in a subprocess.  Attacks: a certification or report edited from "pending" to "accepted" and
re-signed with the genuine exporter key (refused by the byte comparison of §4.7); a forged
acceptance signed by a real enrolled key that is not the receiver, really in the log, checkpointed
and exported (refused `evidence-custody`, naming the entry); a genuine acceptance re-signed in the
bundle by another enrolled key (the bundle fails, and the custody section still shows the
transfer as pending because that entry did not verify).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from evidencelock.bundle import export_bundle
from evidencelock.custody import (accept_transfers, annotate, derive, enroll_custodian, record_access,
                                  request_deletion, rotate_key, transfer_items)
from evidencelock.ingest import ingest
from evidencelock.vault import Vault

from conftest import CORPUS, PASSPHRASE, run_cli
from test_bundle_attacks_structure import rewrite_entry
from test_bundle_human_files import edit, resign
from test_bundle_support import build_vault

CASE = "Case 10"
PENDING_WORDS = "released by Field Team A to Court Registry — in transit, not accepted by Court Registry"


def _photo(dst: Path) -> None:
    if CORPUS.is_dir():
        shutil.copy(CORPUS / "photos" / "Canon_40D.jpg", dst)
    else:
        from mediagen import make_jpeg

        make_jpeg(dst, 40, exif={"0th": {271: b"Canon", 272: b"Canon EOS 40D"}, "Exif": {}})


def _make_world(root: Path) -> dict:
    vault, clock = build_vault(root)
    a = vault.unlock(PASSPHRASE)
    b = enroll_custodian(vault, a, name="Lawyer B", passphrase=PASSPHRASE, now=clock())
    c = enroll_custodian(vault, a, name="Court Registry", passphrase=PASSPHRASE, now=clock())
    d = enroll_custodian(vault, a, name="Analyst D", passphrase=PASSPHRASE, now=clock())
    src = root / "card"
    src.mkdir()
    _photo(src / "IMG_0001.jpg")
    (src / "statement.txt").write_bytes(b"witness statement, signed\n")
    ingest(vault, [src], key=a, case=CASE, now=clock, extract_media=False)
    orig = hashlib.sha256((src / "IMG_0001.jpg").read_bytes()).hexdigest()
    stmt = hashlib.sha256((src / "statement.txt").read_bytes()).hexdigest()
    (root / "redacted").mkdir()
    blurred = root / "redacted" / "IMG_0001_blurred.jpg"
    blurred.write_bytes((src / "IMG_0001.jpg").read_bytes() + b"\0blurred faces")
    copy = derive(vault, a, original=orig, derived_path=blurred, action="blurred faces", now=clock, case=CASE,
                  extract_media=False).derived
    rel_ok = transfer_items(vault, a, items=[orig], case=CASE, to=b.key_id, note="sealed bag 17", now=clock)[0]
    acc = accept_transfers(vault, b, case=CASE, items=[orig], now=clock)[0]
    record_access(vault, b, item=orig, purpose="review for the court filing", action="view", now=clock(), case=CASE)
    b_new, rotation = rotate_key(vault, b, passphrase=PASSPHRASE, now=clock(), reason="annual key rotation")
    rel_pending = transfer_items(vault, a, items=[stmt], case=CASE, to=c.key_id, note=None, now=clock)[0]
    annotate(vault, a, item=stmt, text="speaker identified as witness 3", tags=["witness"], now=clock(), case=CASE)
    request_deletion(vault, a, item=stmt, reason="the witness asked", now=clock(), case=CASE)
    export_bundle(vault, case=CASE, out=root / "first", key=a, now=clock, report=False)
    bundle = export_bundle(vault, case=CASE, out=root / "bundle", key=a, now=clock).path
    vault.close()
    return {"root": root, "vault": root / "vault", "bundle": bundle, "a": a, "b": b, "c": c, "d": d, "orig": orig,
            "stmt": stmt, "copy": copy, "release_accepted": rel_ok.entry.seq, "accept": acc.entry.seq,
            "release_pending": rel_pending.entry.seq, "b_new": b_new, "rotation": [s.entry.seq for s in rotation], "release_pending_hash": rel_pending.entry_hash, "clock": clock}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _make_world(tmp_path_factory.mktemp("custody-presentation"))


@pytest.fixture(scope="module")
def verified(world):
    human = run_cli("verify-bundle", "--verbose", world["bundle"])  # with each item's custody history
    js = run_cli("verify-bundle", world["bundle"], "--json")
    return human, js


class _Text(HTMLParser):
    """The text a reader sees, per item section (by its id) and in total."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.sections: dict[str, list[str]] = {}
        self._section: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id")
            self.sections[self._section or ""] = []
        if tag in ("tr", "br", "p", "h2", "h3", "li"):
            self._add("\n")

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        self._add(data)

    def _add(self, s):
        self.parts.append(s)
        if self._section is not None:
            self.sections[self._section].append(s)


def _html(world) -> tuple[str, dict[str, str], str]:
    raw = (world["bundle"] / "report.html").read_text()
    p = _Text()
    p.feed(raw)
    return "".join(p.parts), {k: "".join(v) for k, v in p.sections.items()}, raw


def _lines_about_pending(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "Court Registry" in ln and "Lawyer B" not in ln]


# -- what the reader sees ---------------------------------------------------------------------------
def test_report_html_names_sender_receiver_acceptance_derivation_and_access(world):
    text, sections, raw = _html(world)
    orig, copy, stmt = world["orig"], world["copy"], world["stmt"]
    assert "transferred by Field Team A to Lawyer B (accepted" in text and "sealed bag 17" in text
    assert f"custody accepted by Lawyer B from Field Team A (transfer entry {world['release_accepted']})" in text
    assert PENDING_WORDS in text and "PENDING: not accepted by the receiver" in text
    # Who holds each item now (case-level) and per item.
    assert "held by Lawyer B (key " in text
    assert "in transit to Court Registry (key " in text and "not yet accepted" in text
    assert "held by Court Registry" not in text
    # Derived copy <-> original, as links between the item sections.
    orig_sec, copy_sec = sections[f"item-{orig[:16]}"], sections[f"item-{copy[:16]}"]
    assert f"derived from {orig[:12]}… by Field Team A: blurred faces" in copy_sec
    assert f"derived copy {copy[:12]}… made by Field Team A: blurred faces" in orig_sec
    assert re.search(rf'<a href="#item-{orig[:16]}">original: item \d, IMG_0001.jpg', raw)
    assert re.search(rf'<a href="#item-{copy[:16]}">derived copy: item \d, IMG_0001_blurred.jpg', raw)
    # Access (who, why, how), annotation, deletion request, earlier export.
    assert "viewed by Lawyer B — purpose: review for the court filing" in orig_sec
    stmt_sec = sections[f"item-{stmt[:16]}"]
    assert "note by Field Team A: speaker identified as witness 3 [tags: witness]" in stmt_sec
    assert "deletion requested by Field Team A — reason: the witness asked. Nothing was deleted" in stmt_sec
    assert "evidence bundle first exported by Field Team A" in text
    # The earlier export's access entry (who, how, why) is listed on each exported item.
    assert "exported by Field Team A in bundle first — purpose: export to evidence bundle" in orig_sec


def test_report_pdf_states_custody_in_plain_words(world):
    pdf = world["bundle"] / "report.pdf"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    flat = " ".join(text.split())
    assert "Who holds each item now" in flat
    assert "transferred by Field Team A to Lawyer B (accepted" in flat
    assert "PENDING: not accepted by the receiver" in flat
    assert "in transit to Court Registry" in flat and "held by Court Registry" not in flat
    assert "blurred faces" in flat and "review for the court filing" in flat


def test_certification_states_the_custody_chain_and_says_pending_is_pending(world):
    cert = (world["bundle"] / "certification.md").read_text()
    chain = cert.split("**Chain of custody.**", 1)[1].split("\n6. ", 1)[0]
    assert ("transferred by Field Team A to Lawyer B (accepted" in chain
            and f"see record #{world['accept']}" in chain)
    pending = [ln for ln in chain.splitlines() if f"(record #{world['release_pending']})" in ln]
    assert len(pending) == 1 and PENDING_WORDS in pending[0]
    assert "This transfer is pending" in pending[0] and "does not state that the receiver took custody" in pending[0]
    assert "At export: in transit to Court Registry" in chain and "At export: held by Lawyer B" in chain
    assert "See original: item" in chain and "See derived copy: item" in chain
    assert "viewed by Lawyer B — purpose: review for the court filing" in chain
    assert "Nothing was deleted" in chain


def test_verify_bundle_shows_custody_human_and_json(world, verified):
    human, js = verified
    assert human.code == 0 and js.code == 0, human.stdout + human.stderr
    out = human.stdout
    custody = out.split("\nCustody", 1)[1].split("\nEstablished", 1)[0]
    assert re.search(r"transfer Field Team A \(\w{8}\) → Lawyer B \(\w{8}\): accepted by Lawyer B \(\w{8}\) on "
                     rf"[\d-]+ [\d:]+ \(entry {world['accept']}\) — sealed bag 17 \(entry {world['release_accepted']}\)",
                     custody), custody
    assert re.search(rf"transfer Field Team A \(\w{{8}}\) → Court Registry \(\w{{8}}\): PENDING: not accepted by the "
                     rf"receiver \(entry {world['release_pending']}\)", custody), custody
    assert "custody now: in transit to Court Registry" in custody and "custody now: held by Lawyer B" in custody
    assert "viewed by Lawyer B — purpose: review for the court filing" in custody
    assert f"derived from {world['orig'][:12]}…" in custody
    assert re.search(r"ok +evidence-custody", out)
    assert any("Custody (section Custody)" in s for s in js.json()["established"])
    data = js.json()["custody"]
    items = {i["sha256"]: i for i in data["items"]}
    t_ok = items[world["orig"]]["transfers"][0]
    assert (t_ok["from"]["name"], t_ok["to"]["name"], t_ok["status"]) == ("Field Team A", "Lawyer B", "accepted")
    assert t_ok["accept"]["seq"] == world["accept"] and t_ok["accept"]["by"]["key_id"] == world["b"].key_id
    assert t_ok["to"]["key_id"] == world["b"].key_id and len(t_ok["from"]["key_id"]) == 64
    t_p = items[world["stmt"]]["transfers"][0]
    assert (t_p["to"]["name"], t_p["status"], t_p["accept"]) == ("Court Registry", "pending", None)
    assert items[world["stmt"]]["holder"] is None
    assert items[world["stmt"]]["in_transit_to"] == {"key_id": world["c"].key_id, "name": "Court Registry"}
    assert items[world["orig"]]["holder"] == {"key_id": world["b"].key_id, "name": "Lawyer B"}
    assert "derived copy of data/IMG_0001.jpg: blurred faces" in custody
    assert "derived copy: data/IMG_0001_blurred.jpg (blurred faces)" in custody
    assert [(d["sha256"], d["path"], d["action"]) for d in items[world["copy"]]["derived_from"]] == [
        (world["orig"], "data/IMG_0001.jpg", "blurred faces")]
    assert [(d["sha256"], d["path"]) for d in items[world["orig"]]["derived_copies"]] == [
        (world["copy"], "data/IMG_0001_blurred.jpg")]
    derive = [e for e in items[world["copy"]]["events"] if e["type"] == "derive"]
    assert derive and derive[0]["premis"] == "creation" and derive[0]["related"]
    access = [e for e in items[world["orig"]]["events"] if e["type"] == "access"]
    assert {e["text"].split(" — ")[0] for e in access} == {"viewed by Lawyer B", "exported by Field Team A in bundle first"}
    assert [e["type"] for e in data["case_events"]] == ["export"]
    assert data["findings"] == []


def test_key_rotation_of_a_signer_is_stated_in_report_certification_and_verifier(world, verified):
    """Lawyer B (who accepted and viewed the photo, and holds it) rotated their key afterwards: every
    place a person looks says so, and that the holder's key was since revoked and replaced."""
    enroll_seq, revoke_seq = world["rotation"]
    old, new = world["b"].key_id, world["b_new"].key_id
    text, _, _ = _html(world)
    cert = (world["bundle"] / "certification.md").read_text()
    human, js = verified
    pdf = " ".join(subprocess.run(["pdftotext", str(world["bundle"] / "report.pdf"), "-"], capture_output=True,
                                  text=True, check=True).stdout.split())
    rotated = f"it replaces the key {old[:12]}… of Lawyer B (rotation, signed by the old key)"
    revoked = "revoked by Lawyer B: entries it signs later are invalid — reason: annual key rotation"
    holder = f"held by Lawyer B (key {old[:8]}); that key was revoked at record #{revoke_seq} and replaced by key {new[:8]}"
    assert "Key changes affecting this case's signers" in text and rotated in text and revoked in text and holder in text
    assert "Key changes affecting the signers of these records:" in cert
    assert f"{rotated} (record #{enroll_seq})" in cert and f"(record #{revoke_seq})" in cert and holder in cert
    assert "Key changes affecting this case" in pdf and "annual key rotation" in pdf
    assert "key change of a signer: " in human.stdout and rotated in human.stdout
    assert f"held by Lawyer B ({old[:8]}); that key was revoked at entry {revoke_seq}" in human.stdout
    keys = js.json()["custody"]["key_events"]
    assert [(k["seq"], k["type"], k["key_id"]) for k in keys] == [(enroll_seq, "key-enroll", new), (revoke_seq, "key-revoke", old)]


def test_pending_transfer_is_never_worded_as_complete(world, verified):
    human, js = verified
    text, _, _ = _html(world)
    cert = (world["bundle"] / "certification.md").read_text()
    pdf = " ".join(subprocess.run(["pdftotext", str(world["bundle"] / "report.pdf"), "-"], capture_output=True,
                                  text=True, check=True).stdout.split())
    complete = re.compile(r"transferred by [^.]*Court Registry|(?<!not )accepted by Court Registry|held by Court Registry|"
                          r"Court Registry[^.]*: accepted|custody accepted by Court Registry")
    for where, body in (("report.html", text), ("certification.md", cert), ("verify-bundle", human.stdout),
                        ("report.pdf", pdf)):
        lines = _lines_about_pending(body) if where != "report.pdf" else [body]
        assert lines, where
        for ln in lines:
            bad = complete.search(ln.replace(PENDING_WORDS, ""))
            assert not bad, (where, ln)
    t = {i["sha256"]: i for i in js.json()["custody"]["items"]}[world["stmt"]]["transfers"]
    assert [x["status"] for x in t] == ["pending"]


def test_genuine_custody_bundle_human_files_equal_their_rendering(world, verified):
    _, js = verified
    out = js.json()
    assert out["ok"], [c for c in out["checks"] if not c["ok"]]
    ok = {(c["name"], c["subject"]) for c in out["checks"] if c["ok"]}
    assert {("evidence-certification", "certification.md"), ("evidence-report-content", "report.html"),
            ("evidence-verify-md", "VERIFY.md"), ("evidence-custody", "")} <= ok


# -- attacks ---------------------------------------------------------------------------------------
@pytest.fixture
def bag(world, tmp_path) -> Path:
    dst = tmp_path / "bag"
    shutil.copytree(world["bundle"], dst)
    return dst


def _refused(r, check: str, subject: str, *words: str) -> list[str]:
    assert r.code == 1, r.stdout + r.stderr
    assert "VERIFIED" not in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr
    fails = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL") and check in ln and subject in ln]
    assert fails, r.stdout
    for w in words:
        assert any(w in ln for ln in fails), (w, fails)
    return fails


def test_certification_pending_edited_to_accepted_and_resigned_is_refused(world, bag):
    edit(bag, "certification.md", PENDING_WORDS, "transferred by Field Team A to Court Registry (accepted)")
    edit(bag, "certification.md", " This transfer is pending: no acceptance signed by the receiving custodian is "
         "recorded, so this certification does not state that the receiver took custody.", "")
    edit(bag, "certification.md", "At export: in transit to Court Registry", "At export: held by Court Registry")
    resign(bag, world["a"], "certification.md")
    _refused(run_cli("verify-bundle", bag), "evidence-certification", "certification.md", "Court Registry")


def test_report_pending_edited_to_accepted_and_resigned_is_refused(world, bag):
    edit(bag, "report.html", "PENDING: not accepted by the receiver", "accepted by the receiver")
    edit(bag, "report.html", "in transit to Court Registry", "held by Court Registry")
    resign(bag, world["a"], "report.html")
    _refused(run_cli("verify-bundle", bag), "evidence-report-content", "report.html", "held by Court Registry")


def _forged_world(world, tmp_path, signer: str, wrong_hash: bool) -> tuple[Path, int]:
    """A copy of the vault where ``signer`` (a real enrolled key) appends an acceptance of the
    pending release to Court Registry that the custody rules refuse, then a genuine export."""
    vault_dir = tmp_path / "vault"
    shutil.copytree(world["vault"], vault_dir)
    v = Vault.open(vault_dir, writable=True)
    try:
        key = v.unlock(PASSPHRASE, signer)
        clock = world["clock"]
        body = {"item": world["stmt"], "from": world["a"].key_id,
                "transfer": {"seq": world["release_pending"],
                             "entry_hash": "0" * 64 if wrong_hash else world["release_pending_hash"]}}
        forged = v.append(key, now=clock(), type="transfer-accept", case=CASE, body=body)
        assert forged is not None
        out = export_bundle(v, case=CASE, out=tmp_path / "forged", key=v.unlock(PASSPHRASE), now=clock).path
    finally:
        v.close()
    return out, forged.entry.seq


@pytest.mark.parametrize("signer,wrong_hash,why", [
    ("Analyst D", False, "not by the receiver"),
    ("Lawyer B", False, "not by the receiver"),
    ("Court Registry", True, "entry hash of release"),
])
def test_forged_acceptance_by_an_enrolled_key_fails_evidence_custody(world, tmp_path, signer, wrong_hash, why):
    bundle, seq = _forged_world(world, tmp_path, signer, wrong_hash)
    r = run_cli("verify-bundle", "--verbose", bundle)
    fails = _refused(r, "evidence-custody", f"entry {seq}", "custody-accept", why)
    assert len(fails) == 1
    # The transfer stays pending everywhere the verifier speaks.
    custody = r.stdout.split("\nCustody", 1)[1]
    assert re.search(rf"→ Court Registry \(\w{{8}}\): PENDING: not accepted by the receiver \(entry {world['release_pending']}\)",
                     custody), custody
    assert "custody now: in transit to Court Registry" in custody
    assert "NOT VALID" in custody
    js = run_cli("verify-bundle", bundle, "--json").json()
    assert not js["ok"] and [f["seq"] for f in js["custody"]["findings"] if f["severity"] == "fail"] == [seq]
    assert not any("Custody (section Custody)" in s for s in js["established"])


def test_genuine_accept_resigned_in_the_bundle_by_another_key_is_not_used_for_custody(world, bag):
    """The bundle-level forgery: the genuine acceptance rewritten to name Analyst D and re-signed with
    D's real key.  Its signature verifies, but it is no longer the entry the checkpoint commits to; the
    bundle fails and the custody section, built from verified entries only, shows no acceptance."""
    d = world["d"]

    def change(e):
        e["actor"] = d.key_id

    rewrite_entry(bag, world["accept"], change, d.sign)
    r = run_cli("verify-bundle", bag, "--json")
    assert r.code == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    out = r.json()
    assert any(c["name"] == "evidence-inclusion" and c["subject"] == f"entry {world['accept']}" and not c["ok"]
               for c in out["checks"])
    items = {i["sha256"]: i for i in out["custody"]["items"]}
    t = items[world["orig"]]["transfers"][0]
    assert t["status"] == "pending" and t["accept"] is None
    assert items[world["orig"]]["holder"] is None
    assert all(e["seq"] != world["accept"] for e in items[world["orig"]]["events"])
    human = run_cli("verify-bundle", "--verbose", bag)
    assert "This bundle FAILED verification" in human.stdout and "VERIFIED" not in human.stdout


# -- odd inputs: names in another script, markup in a note, a superseded release, a zip bundle -------
ALEPPO = "مركز حلب الإعلامي، الفريق 2"
LAWYER = 'Lawyer <B> [red]& "Partners"[/]'
NOTE = '<img src=x onerror=alert(1)> & "sealed bag 17"'


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    root = tmp_path_factory.mktemp("custody-odd")
    vault, clock = build_vault(root)
    a = vault.unlock(PASSPHRASE)
    aleppo = enroll_custodian(vault, a, name=ALEPPO, passphrase=PASSPHRASE, now=clock())
    lawyer = enroll_custodian(vault, a, name=LAWYER, passphrase=PASSPHRASE, now=clock())
    (root / "in").mkdir()
    (root / "in" / "clip.txt").write_bytes(b"a witness video, transcribed\n")
    ingest(vault, [root / "in"], key=a, case=CASE, now=clock, extract_media=False)
    sha = hashlib.sha256(b"a witness video, transcribed\n").hexdigest()
    first = transfer_items(vault, a, items=[sha], case=CASE, to=aleppo.key_id, note=NOTE, now=clock)[0]
    accept_transfers(vault, aleppo, case=CASE, now=clock)
    superseded = transfer_items(vault, aleppo, items=[sha], case=CASE, to=lawyer.key_id, note=None, now=clock)[0]
    latest = transfer_items(vault, aleppo, items=[sha], case=CASE, to=a.key_id, note="back to the field team",
                            now=clock)[0]
    bundle = export_bundle(vault, case=CASE, out=root / "odd.zip", key=a, now=clock).path
    vault.close()
    return {"root": root, "vault": root / "vault", "bundle": bundle, "sha": sha, "a": a, "lawyer": lawyer,
            "first": first.entry.seq, "superseded": superseded, "latest": latest.entry.seq, "clock": clock}


def test_zip_bundle_with_other_scripts_markup_and_a_superseded_release_verifies_and_says_so(odd, tmp_path):
    r = run_cli("verify-bundle", odd["bundle"], "--json")
    assert r.code == 0, r.stdout + r.stderr
    out = r.json()
    ok = {(c["name"], c["subject"]) for c in out["checks"] if c["ok"]}
    assert {("evidence-certification", "certification.md"), ("evidence-report-content", "report.html")} <= ok
    transfers = out["custody"]["items"][0]["transfers"]
    assert [(t["seq"], t["status"]) for t in transfers] == [
        (odd["first"], "accepted"), (odd["superseded"].entry.seq, "superseded"), (odd["latest"], "pending")]
    assert transfers[0]["to"]["name"] == ALEPPO and transfers[1]["to"]["name"] == LAWYER
    assert transfers[0]["note"] == NOTE and transfers[1]["accept"] is None
    human = run_cli("verify-bundle", "--verbose", odd["bundle"])
    assert "superseded by a later release, never accepted" in human.stdout and ALEPPO in human.stdout
    assert f"→ {LAWYER} (" in human.stdout  # rich markup in a name is printed, never interpreted
    # The report: the markup is text, never an element; no name is said to hold what is in transit.
    import zipfile

    with zipfile.ZipFile(odd["bundle"]) as z:
        top = z.namelist()[0].split("/")[0]
        raw = z.read(f"{top}/report.html").decode()
        cert = z.read(f"{top}/certification.md").decode()
        pdf = z.read(f"{top}/report.pdf")
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;sealed bag 17&quot;" in raw and "<img src=x" not in raw
    assert "Lawyer &lt;B&gt; [red]&amp; &quot;Partners&quot;[/]" in raw
    assert f"superseded by entry {odd['latest']}, never accepted" in cert
    # In the certification (Markdown) the note is literal text: no HTML element, no emphasis, no link.
    assert '\\<img src=x onerror=alert(1)\\> & "sealed bag 17"' in cert and not re.search(r"(?<!\\)<img", cert)
    assert "Lawyer \\<B\\> \\[red\\]&" in cert
    assert "This transfer was superseded by a later release and was never accepted." in cert
    assert "At export: in transit to Field Team A" in cert
    (tmp_path / "r.pdf").write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(tmp_path / "r.pdf"), "-"], capture_output=True, text=True, check=True).stdout
    assert "superseded" in text and "Partners" in text and "sealed bag 17" in text


def test_acceptance_of_a_superseded_release_by_its_named_receiver_fails_evidence_custody(odd, tmp_path):
    vault_dir = tmp_path / "vault"
    shutil.copytree(odd["vault"], vault_dir)
    v = Vault.open(vault_dir, writable=True)
    try:
        rel = odd["superseded"]
        key = v.unlock(PASSPHRASE, odd["lawyer"].key_id)
        forged = v.append(key, now=odd["clock"](), type="transfer-accept", case=CASE,
                          body={"item": odd["sha"], "from": rel.entry.actor,
                                "transfer": {"seq": rel.entry.seq, "entry_hash": rel.entry_hash}})
        bundle = export_bundle(v, case=CASE, out=tmp_path / "b", key=v.unlock(PASSPHRASE), now=odd["clock"]).path
    finally:
        v.close()
    r = run_cli("verify-bundle", "--verbose", bundle)
    _refused(r, "evidence-custody", f"entry {forged.entry.seq}", "custody-accept", "superseded")
    assert re.search(re.escape(f"→ {LAWYER} (") + r"\w{8}\): superseded by a later release, never accepted", r.stdout), r.stdout


# -- bundles exported before the custody presentation (§4.7: the first format-2 templates) ---------
def _export_with_first_templates(monkeypatch, vault_dir: Path, out: Path, clock) -> Path:
    """An export exactly as the exporter did before issue 10: the human files rendered by the first
    format-2 templates, pinned in bundle.json and signed by the genuine exporter key."""
    from evidencelock import report
    from evidencelock.bundle import _human_v2_0

    monkeypatch.setattr(report, "certification_md", _human_v2_0.certification_md)
    monkeypatch.setattr(report, "report_html", _human_v2_0.report_html)
    v = Vault.open(vault_dir, writable=True)
    try:
        return export_bundle(v, case=CASE, out=out, key=v.unlock(PASSPHRASE), now=clock).path
    finally:
        v.close()


def test_bundle_exported_before_the_custody_presentation_still_verifies_and_says_what_it_lacks(tmp_path, monkeypatch):
    vault, clock = build_vault(tmp_path)
    a = vault.unlock(PASSPHRASE)
    b = enroll_custodian(vault, a, name="Lawyer B", passphrase=PASSPHRASE, now=clock())
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.txt").write_bytes(b"an older case\n")
    ingest(vault, [tmp_path / "in"], key=a, case=CASE, now=clock, extract_media=False)
    transfer_items(vault, a, items=[], case=CASE, to=b.key_id, note="sealed bag 3", now=clock)
    vault.close()
    bundle = _export_with_first_templates(monkeypatch, tmp_path / "vault", tmp_path / "old", clock)
    assert "Chain of custody" not in (bundle / "certification.md").read_text()
    r = run_cli("verify-bundle", bundle, "--json")
    assert r.code == 0, r.stdout + r.stderr
    out = r.json()
    first = [c for c in out["checks"] if c["ok"] and "as first published" in c["detail"]]
    assert {c["subject"] for c in first} == {"certification.md", "report.html"}
    assert any("first templates of bundle format 2" in s for s in out["not_established"])
    t = out["custody"]["items"][0]["transfers"][0]
    assert (t["to"]["name"], t["status"]) == ("Lawyer B", "pending")  # the verifier says what the old files do not


def test_first_templates_are_refused_for_a_bundle_with_acceptances(world, tmp_path, monkeypatch):
    """The holder of the exporter key exports with the first templates to leave the custody chain
    out of the certification: refused where the log holds entries those templates never knew."""
    shutil.copytree(world["vault"], tmp_path / "vault")
    bundle = _export_with_first_templates(monkeypatch, tmp_path / "vault", tmp_path / "b", world["clock"])
    r = run_cli("verify-bundle", bundle)
    _refused(r, "evidence-certification", "certification.md", "Chain of custody")
    _refused(r, "evidence-report-content", "report.html")
