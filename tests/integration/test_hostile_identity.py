"""Issue 16.1: content identity is a security boundary. A `duplicate` is never scanned, so degenerate input
must never be a duplicate, and a copy of quarantined mail is quarantined too (real clamd, SQLite/PostgreSQL)."""

from __future__ import annotations

import base64

from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.store import records
from devkit.clamd import eicar

from mails import mail


def ingest(intake: Intake, raw: bytes) -> dict:
    rid = intake.process(Arrival(raw=raw, source="ingest")).id
    with intake.sessions() as session:
        msg = records.load(session, rid)
        assert msg is not None
        return {**records.to_contract(msg), "raw_area": msg.raw_area}


def bare_cr_eicar_mail() -> bytes:
    """The recorded bypass: bare CR line ends, starting with a trace field, EICAR as a base64 attachment."""
    body = base64.encodebytes(eicar()).decode().replace("\n", "\r")
    text = ("Received: from relay.example.jp by mx.example.go.jp\r"
            "From: a@example.jp\rSubject: x\rMIME-Version: 1.0\r"
            'Content-Type: multipart/mixed; boundary="b"\r\r--b\rContent-Type: text/plain\r\rhi\r'
            '--b\rContent-Type: application/octet-stream\rContent-Disposition: attachment; filename="e.txt"\r'
            f"Content-Transfer-Encoding: base64\r\r{body}--b--\r")
    return text.encode()


def test_bare_cr_eicar_mail_is_scanned_not_a_duplicate_of_an_empty_record(intake: Intake) -> None:
    empty = ingest(intake, b"")
    clean_bare_cr = ingest(intake, b"Received: from a by b\rFrom: c@example.jp\r\rclean\r")
    infected = ingest(intake, bare_cr_eicar_mail())
    assert empty["status"] == "rejected" and clean_bare_cr["duplicate_of"] is None  # scanned, not a duplicate
    assert infected["status"] == "quarantined", infected
    assert infected["duplicate_of"] is None and infected["virus"]
    assert infected["raw_area"] == "quarantine"
    assert intake.raw_store.path_for(infected["sha256"], quarantined=True).exists()
    assert not intake.raw_store.path_for(infected["sha256"]).exists()
    again = ingest(intake, b"")  # two empty files: two scanned records, never a duplicate
    assert again["duplicate_of"] is None and again["status"] == "rejected"


def test_a_duplicate_of_quarantined_mail_is_quarantined_with_its_raw_bytes_apart(intake: Intake) -> None:
    virus_mail = mail(body="意見", attachments=[("意見書.txt", eicar(), "text/plain")])
    first = ingest(intake, virus_mail)
    assert first["status"] == "quarantined"
    relayed = b"Received: from relay2 by mx; Sun, 11 Jan 2026 10:00:00 +0900\r\n" + virus_mail
    dup = ingest(intake, relayed)
    assert dup["status"] == "quarantined" and dup["duplicate_of"] == first["id"]
    assert dup["reasons"] == ["virus"] and dup["virus"] == first["virus"]
    assert dup["raw_area"] == "quarantine"
    assert intake.raw_store.path_for(dup["sha256"], quarantined=True).exists()
    assert not intake.raw_store.path_for(dup["sha256"]).exists()
