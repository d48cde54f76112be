"""Issue 14.2–14.4 with real mailer output: GNU mailutils' `mail` (3.15) writes raw UTF-8 in Subject, From and
the attachment's Content-Disposition. Every header read must take what the stdlib returns (str with surrogate
escapes, email.header.Header, bytes) and decode it with the body decoders; the record keeps From and Subject
whatever its status."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.store import records

MAIL = shutil.which("mail.mailutils") or "/usr/bin/mail.mailutils"
pytestmark = pytest.mark.skipif(not os.path.exists(MAIL), reason="GNU mailutils is not installed (scripts/setup)")


def compose_with_mailutils(tmp_path: Path, body: str, attachment: tuple[str, str] | None = None) -> bytes:
    """What `mail` hands to sendmail, captured by a sendmail:// program that writes stdin to a file."""
    out = tmp_path / "out.eml"
    capture = tmp_path / "capture.sh"
    capture.write_text(f"#!/bin/sh\ncat > {out}\n")
    capture.chmod(0o755)
    args = [MAIL, "-s", "意見の提出（山田）", "-a", "From: 山田 太郎 <yamada@example.jp>",
            "-E", f"set sendmail=sendmail://{capture}"]
    if attachment is not None:
        name, content = attachment
        (tmp_path / name).write_text(content, encoding="utf-8")
        args += ["-A", name]
    subprocess.run([*args, "security-ai@example.go.jp"], input=body.encode(), cwd=tmp_path, check=True,
                   env={**os.environ, "LC_ALL": "C.UTF-8"}, timeout=30)
    raw = out.read_bytes()
    trace = b"Received: from mx.example.jp by mail.example.go.jp; Sat, 10 Jan 2026 09:15:00 +0900\n"
    return trace + raw


def with_message_id(raw: bytes, local: str) -> bytes:
    """`mail` leaves the Message-ID to the MTA (Postfix's cleanup adds one): add it as the MTA would."""
    return raw.replace(b"Subject:", f"Message-ID: <{local}@example.jp>\nSubject:".encode(), 1)


def ingest(intake: Intake, raw: bytes) -> dict:
    rid = intake.process(Arrival(raw=raw, source="ingest")).id
    with intake.sessions() as session:
        msg = records.load(session, rid)
        assert msg is not None
        return {**records.to_contract(msg), "date": (msg.result or {}).get("date")}


def test_mailutils_mail_with_a_japanese_attachment_is_read(intake: Intake, tmp_path: Path) -> None:
    raw = compose_with_mailutils(tmp_path, "お世話になります。\n意見を添付いたします。\n",
                                 ("意見書.txt", "本編（案）P.12について\n出力側の検証も明記すべきです。\n"))
    assert "意見書.txt".encode() in raw  # raw UTF-8 in the header, as mailutils writes it
    rec = ingest(intake, raw)
    assert rec["status"] == "accepted", rec["reasons"]
    assert rec["subject"] == "意見の提出（山田）"
    assert rec["from"] == "yamada@example.jp"
    [att] = rec["attachments"]
    assert att["filename"] == "意見書.txt" and att["verdict"] == "allowed"
    assert any("出力側の検証" in c["text"] for c in rec["comments"])


def test_a_held_record_still_says_whose_mail_it_is(intake: Intake, tmp_path: Path) -> None:
    from daemon.scanner import Scanner

    raw = with_message_id(compose_with_mailutils(tmp_path, "本編 P.3 について意見です。\n"), "held-1")
    intake.scanner = Scanner("unix:///nonexistent/clamd.sock", timeout=2)  # clamd down: held
    rec = ingest(intake, raw)
    assert rec["status"] == "held"
    assert rec["subject"] == "意見の提出（山田）" and rec["from"] == "yamada@example.jp"
    assert rec["message_id"] == "<held-1@example.jp>"  # the scan came first; the header block was read
    assert rec["date"]  # the sender's Date: kept too


def test_a_too_large_record_has_its_header_fields(intake: Intake, tmp_path: Path) -> None:
    raw = with_message_id(compose_with_mailutils(tmp_path, "大きな意見。" * 100), "large-1")
    intake.rules = dataclasses.replace(intake.rules, max_message_bytes=200)
    rec = ingest(intake, raw)
    assert rec["status"] == "rejected" and rec["reasons"] == ["too_large"]
    assert rec["subject"] == "意見の提出（山田）" and rec["from"] == "yamada@example.jp"
    assert rec["message_id"] == "<large-1@example.jp>"  # `intake ingest` reads the header block too


def test_lf_and_crlf_copies_store_the_same_text(intake: Intake, tmp_path: Path) -> None:
    lf_copy = compose_with_mailutils(tmp_path, "総務省 御中\n\n標記の件について、本編 P.1 に意見します。\n")
    crlf_copy = lf_copy.replace(b"\n", b"\r\n").replace(b"Subject:", b"X-Via: lmtp\r\nSubject:")
    first, second = ingest(intake, lf_copy), ingest(intake, crlf_copy)
    assert first["texts"][0]["chars"] == second["texts"][0]["chars"]
    assert "\r" not in second["comments"][0]["text"]
