"""C2SP signed-note checkpoints and tlog-cosignature witness cosignatures, with tampering."""

from __future__ import annotations

import base64
import importlib.util
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidencelock import checkpoint as cpmod
from evidencelock import merkle
from evidencelock.checkpoint import Checkpoint, cosign, parse_note, require_witnesses, sign_note, verify_cosignature
from evidencelock.errors import FormatError, InputError, ProofError, SignatureError
from evidencelock.keys import CustodianKey, verify_ed25519

VECTOR_DIR = Path(__file__).parent / "vectors"  # the generator script
DOC_VECTORS = Path(__file__).parent.parent / "docs" / "vectors"  # the vectors a second verifier reads
VECTORS = json.loads((DOC_VECTORS / "checkpoint.json").read_text(encoding="utf-8"))
LOG = VECTORS["log"]
LOG_PUB = bytes.fromhex(LOG["public_key_hex"])
WITNESSES = {w["name"]: bytes.fromhex(w["public_key_hex"]) for w in VECTORS["witnesses"]}
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _log_key() -> CustodianKey:
    return CustodianKey.from_seed(bytes.fromhex(LOG["seed_hex"]), LOG["name"])


def _cp(size: int = 7) -> Checkpoint:
    leaves = [merkle.leaf_hash(f"entry {i}".encode()) for i in range(size)]
    return Checkpoint(LOG["name"], size, merkle.root_hash(leaves))


# --- vectors -----------------------------------------------------------------------------


def test_vector_file_is_reproducible_from_the_script() -> None:
    spec = importlib.util.spec_from_file_location("make_vectors", VECTOR_DIR / "make_vectors.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == (DOC_VECTORS / "checkpoint.json").read_text(encoding="utf-8")


def test_vector_note_verifies_and_matches_fields() -> None:
    note = parse_note(VECTORS["note"])
    cp = note.verify(LOG["name"], LOG_PUB)
    assert cp.origin == VECTORS["checkpoint"]["origin"]
    assert cp.tree_size == VECTORS["checkpoint"]["tree_size"]
    assert cp.root_hash.hex() == VECTORS["checkpoint"]["root_hash_hex"]
    assert cp.body_bytes().decode() == VECTORS["checkpoint"]["body"]
    assert note.text() == VECTORS["note"]
    entries = [e.encode() for e in VECTORS["entries_utf8"]]
    assert merkle.root_hash([merkle.leaf_hash(e) for e in entries]) == cp.root_hash
    ext = parse_note(VECTORS["note_with_extension"]).verify(LOG["name"], LOG_PUB)
    assert ext.extensions == ("tsa sha256 follows",)


def test_go_sumdb_note_reference_example() -> None:
    """The PeterNeumann key and note from golang.org/x/mod/sumdb/note's documentation."""
    vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    text = b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    sig_line = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
    public = base64.b64decode(vkey.split("+", 2)[2])[1:]
    seed = base64.b64decode(skey.split("+", 4)[4])[1:]
    assert cpmod.note_key_id("PeterNeumann", public).hex() == "c74f20a3"
    blob = base64.b64decode(sig_line)
    assert blob[:4].hex() == "c74f20a3"
    verify_ed25519(public, text, blob[4:])
    assert CustodianKey.from_seed(seed, "PeterNeumann").sign(text) == blob[4:]


# --- round trips -------------------------------------------------------------------------


def test_round_trip_with_extensions() -> None:
    key = _log_key()
    cp = Checkpoint("example.com/log", 0, merkle.EMPTY_ROOT, ("ext one", "ext two"))
    text = sign_note(cp, "example.com/log", key.sign, key.public.raw)
    assert parse_note(text).verify("example.com/log", key.public.raw) == cp
    assert parse_note(text.encode()).text() == text


@settings(max_examples=60, deadline=None)
@given(
    origin=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FFF, exclude_characters="\n"), min_size=1, max_size=40),
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_property_round_trip(origin: str, size: int, root: bytes) -> None:
    key = _log_key()
    cp = Checkpoint(origin, size, root)
    assert Checkpoint.from_body(cp.body_bytes()) == cp
    text = sign_note(cp, LOG["name"], key.sign, key.public.raw)
    assert parse_note(text).verify(LOG["name"], key.public.raw) == cp


# --- wrong keys and tampering --------------------------------------------------------------


def test_wrong_key_and_wrong_name_are_rejected() -> None:
    note = parse_note(VECTORS["note"])
    other = CustodianKey.from_seed(b"\x55" * 32, "other")
    with pytest.raises(SignatureError, match="no signature from key"):
        note.verify(LOG["name"], other.public.raw)  # key ID differs: the line is not ours
    with pytest.raises(SignatureError, match="no signature from key"):
        note.verify("evidencelock.example/other-vault", LOG_PUB)


def test_key_id_collision_still_fails_signature() -> None:
    """An attacker line with our name and key ID but a bogus signature rejects the note."""
    note = parse_note(VECTORS["note"])
    good = note.signatures[0]
    forged = cpmod.NoteSignature(good.name, good.key_id, bytes(64))
    with pytest.raises(SignatureError, match="does not verify"):
        cpmod.SignedNote(note.unverified_body, (forged,), note.unverified_checkpoint).verify(LOG["name"], LOG_PUB)
    with pytest.raises(SignatureError):  # a failing known-key line rejects the note even next to a good one
        note.with_signatures(forged).verify(LOG["name"], LOG_PUB)


@pytest.mark.parametrize(
    "old,new,attack",
    [
        ("\n7\n", "\n8\n", "tree size changed"),
        ("mMl/C6", "nMl/C6", "root hash changed"),
        ("vault-7f3a\n7", "vault-7f3b\n7", "origin changed"),
    ],
)
def test_tampered_body_fails_signature(old: str, new: str, attack: str) -> None:
    text = VECTORS["note"].replace(old, new, 1)
    assert text != VECTORS["note"], attack
    with pytest.raises(SignatureError):
        parse_note(text).verify(LOG["name"], LOG_PUB)


def test_every_flipped_signature_byte_is_rejected() -> None:
    note = parse_note(VECTORS["note"])
    sig = note.signatures[0]
    for i in range(64):
        bad = bytearray(sig.signature)
        bad[i] ^= 0x01
        forged = cpmod.SignedNote(
            note.unverified_body, (cpmod.NoteSignature(sig.name, sig.key_id, bytes(bad)),), note.unverified_checkpoint
        )
        with pytest.raises(SignatureError):
            forged.verify(LOG["name"], LOG_PUB)


GOOD = VECTORS["note"]
SIGLINE = GOOD.split("\n\n", 1)[1]


@pytest.mark.parametrize(
    "text,why",
    [
        ("", "empty"),
        (GOOD[:-1], "no final newline"),
        (GOOD.replace("\n\n", "\n"), "no blank line"),
        (GOOD.split("\n\n")[0] + "\n\n", "no signatures"),
        (GOOD.replace("\n", "\r\n"), "CRLF line endings"),
        (GOOD.replace("\u2014", "--"), "ASCII dash instead of em dash"),
        (GOOD.replace("\u2014 ", "\u2014  "), "double space"),
        (GOOD.replace("=\n", "\n"), "missing base64 padding"),
        (GOOD.replace("gQhI", "gQ!I"), "base64 alphabet"),
        (GOOD.replace("\n7\n", "\n07\n"), "leading zero in size"),
        (GOOD.replace("\n7\n", "\n-7\n"), "negative size"),
        (GOOD.replace("\n7\n", "\n18446744073709551616\n"), "size over 2^64-1"),
        (GOOD.replace("mMl/C6MXXNCLAx3QhLncTmSbZNGijm6mlGRlAxc6tYc=", "mMl/C6MXXNCLAx3Q"), "short root hash"),
        (GOOD.replace("mMl/C6MXXNCLAx3QhLncTmSbZNGijm6mlGRlAxc6tYc=", "mMl/C6MXXNCLAx3QhLncTmSbZNGijm6mlGRlAxc6tYd="), "non-canonical base64"),
        ("evidencelock.example/x\n7\n\n" + SIGLINE, "missing root line"),
        ("\n7\nmMl/C6MXXNCLAx3QhLncTmSbZNGijm6mlGRlAxc6tYc=\n\n" + SIGLINE, "empty origin"),
        (GOOD.split("\n\n")[0] + "\n\next\n\n" + SIGLINE, "empty line inside the body"),
        (GOOD + "— short AAAA\n", "signature shorter than a key ID"),
        (GOOD + "— bad+name " + SIGLINE.split(" ")[2], "plus in key name"),
        (GOOD.replace("\n7\n", "\n7\t\n"), "tab"),
        (GOOD + "— x " + base64.b64encode(bytes(68)).decode() + "\n" * 1, "ok-looking extra line then"),
        (GOOD + "x" * (cpmod.MAX_NOTE_BYTES + 1) + "\n", "oversized"),
        (GOOD + "".join(f"— w{i} {base64.b64encode(bytes(68)).decode()}\n" for i in range(100)), "too many signatures"),
    ],
)
def test_malformed_notes_are_rejected(text: str, why: str) -> None:
    if why == "ok-looking extra line then":
        # A well-formed unknown signature is allowed (and ignored by verify) ...
        assert parse_note(text).verify(LOG["name"], LOG_PUB).tree_size == 7
        return
    with pytest.raises(FormatError):
        parse_note(text)


def test_invalid_utf8_rejected() -> None:
    with pytest.raises(FormatError, match="UTF-8"):
        parse_note(VECTORS["note"].encode() + b"\xff\n")


def test_checkpoint_constructor_checks_fields() -> None:
    with pytest.raises(FormatError):
        Checkpoint("", 1, bytes(32))
    with pytest.raises(FormatError):
        Checkpoint("a\nb", 1, bytes(32))
    with pytest.raises(FormatError):
        Checkpoint("o", -1, bytes(32))
    with pytest.raises(FormatError):
        Checkpoint("o", 1, bytes(31))
    with pytest.raises(FormatError):
        Checkpoint("o", 1, bytes(32), ("",))
    with pytest.raises(InputError):
        sign_note(_cp(), "has space", _log_key().sign, _log_key().public.raw)


def test_signing_with_mismatched_key_is_caught() -> None:
    other = CustodianKey.from_seed(b"\x66" * 32, "x")
    with pytest.raises(SignatureError):
        sign_note(_cp(), LOG["name"], other.sign, LOG_PUB)


# --- cosignatures and witness policy -------------------------------------------------------


def test_vector_cosignatures_verify() -> None:
    note = parse_note(VECTORS["cosigned_note"])
    note.verify(LOG["name"], LOG_PUB)
    for w in VECTORS["witnesses"]:
        when = verify_cosignature(note, w["name"], bytes.fromhex(w["public_key_hex"]), now=NOW)
        assert when == datetime.fromtimestamp(w["timestamp"], tz=timezone.utc)
    require_witnesses(note, WITNESSES, 3, now=NOW)


def test_cosignature_is_not_a_log_signature_and_vice_versa() -> None:
    note = parse_note(VECTORS["cosigned_note"])
    name, pub = next(iter(WITNESSES.items()))
    with pytest.raises(SignatureError, match="no signature"):
        note.verify(name, pub)  # type 0x01 key ID differs from the 0x04 cosignature key ID
    with pytest.raises(SignatureError, match="no cosignature"):
        verify_cosignature(note, LOG["name"], LOG_PUB)


def test_cosignature_bound_to_time_and_body() -> None:
    cp = _cp()
    w = CustodianKey.from_seed(b"\x21" * 32, "w")
    sig = cosign(cp, "w.example", w.sign, w.public.raw, timestamp=1_700_000_000)
    note = parse_note(sign_note(cp, LOG["name"], _log_key().sign, LOG_PUB)).with_signatures(sig)
    verify_cosignature(note, "w.example", w.public.raw, now=NOW)
    # Changing the timestamp bytes breaks the signature (the time is signed).
    moved = cpmod.NoteSignature(sig.name, sig.key_id, (1_700_000_001).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(SignatureError):
        verify_cosignature(note.with_signatures(moved), "w.example", w.public.raw)
    # A cosignature over another checkpoint does not transfer.
    other = cosign(_cp(8), "w.example", w.sign, w.public.raw, timestamp=1_700_000_000)
    bad = parse_note(sign_note(cp, LOG["name"], _log_key().sign, LOG_PUB)).with_signatures(other)
    with pytest.raises(SignatureError):
        verify_cosignature(bad, "w.example", w.public.raw)
    # A cosignature from the future is refused when `now` is given.
    future = cosign(cp, "w.example", w.sign, w.public.raw, timestamp=int(NOW.timestamp()) + 3600)
    fnote = parse_note(sign_note(cp, LOG["name"], _log_key().sign, LOG_PUB)).with_signatures(future)
    with pytest.raises(ProofError, match="future"):
        verify_cosignature(fnote, "w.example", w.public.raw, now=NOW)
    verify_cosignature(fnote, "w.example", w.public.raw)  # no clock given: no time policy
    with pytest.raises(InputError):
        cosign(cp, "w.example", w.sign, w.public.raw, timestamp=-1)
    # The message format is exactly tlog-cosignature's.
    message = b"cosignature/v1\ntime 1700000000\n" + cp.body_bytes()
    verify_ed25519(w.public.raw, message, sig.signature[8:])
    assert sig.key_id == cpmod.hashlib.sha256(b"w.example\n\x04" + w.public.raw).digest()[:4]


def test_k_of_n_policy() -> None:
    full = parse_note(VECTORS["cosigned_note"])
    lines = full.signatures
    two = cpmod.SignedNote(full.unverified_body, lines[:3], full.unverified_checkpoint)  # log + w1 + w2
    require_witnesses(two, WITNESSES, 2, now=NOW)
    with pytest.raises(ProofError, match=r"need 3 of 3 .*found 2.*missing=\['oid/1.3.6.1.4.1.99999.1'\]"):
        require_witnesses(two, WITNESSES, 3, now=NOW)
    none = parse_note(VECTORS["note"])
    with pytest.raises(ProofError, match="found 0"):
        require_witnesses(none, WITNESSES, 1)
    # A witness we do not trust does not count, even if its cosignature is valid.
    stranger = CustodianKey.from_seed(b"\x77" * 32, "s")
    cp = none.verify(LOG["name"], LOG_PUB)
    extra = none.with_signatures(cosign(cp, "stranger.example", stranger.sign, stranger.public.raw, timestamp=1))
    with pytest.raises(ProofError):
        require_witnesses(extra, WITNESSES, 1)
    # A forged cosignature from a listed witness rejects the note outright.
    w1 = lines[1]
    forged = cpmod.NoteSignature(w1.name, w1.key_id, w1.signature[:8] + bytes(64))
    with pytest.raises(SignatureError):
        require_witnesses(two.with_signatures(forged), WITNESSES, 1)
    for bad in (0, 4):
        with pytest.raises(InputError):
            require_witnesses(full, WITNESSES, bad)


def test_docs_worked_example_matches_vectors() -> None:
    """docs/transparency.md quotes the vectors; keep the prose and the bytes in step."""
    doc = (Path(__file__).parent.parent / "docs" / "transparency.md").read_text(encoding="utf-8")
    assert VECTORS["note"] in doc
    assert VECTORS["cosigned_note"] in doc
    assert VECTORS["checkpoint"]["body_sha256_hex"] in doc
    leaves = [merkle.leaf_hash(e.encode()) for e in VECTORS["entries_utf8"]]
    for h in merkle.inclusion_proof(leaves, 2) + merkle.consistency_proof(leaves, 3):
        assert h.hex() in doc
    assert merkle.root_hash(leaves[:3]).hex() in doc
