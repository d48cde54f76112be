"""The intake core end to end: real clamd, real database (SQLite, and PostgreSQL when configured),
real files from other people's software. Each test asserts an outcome that a bug would change."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.store import records
from daemon.store.db import Event, Message
from devkit.clamd import Clamd, eicar

import producers
from conftest import CORPUS
from mails import mail
from smime import make_smime_signed


def ingest(intake: Intake, raw: bytes, **kw: object) -> dict:
    rid = intake.process(Arrival(raw=raw, source="ingest", **kw)).id  # type: ignore[arg-type]
    with intake.sessions() as session:
        msg = records.load(session, rid)
        assert msg is not None
        return records.to_contract(msg)


def test_eicar_attachment_is_quarantined_with_signature(intake: Intake) -> None:
    rec = ingest(intake, mail(attachments=[("意見書.txt", eicar(), "text/plain")]))
    assert rec["status"] == "quarantined"
    assert rec["reasons"] == ["virus"]
    assert rec["virus"] and "EICAR" in rec["virus"]
    [att] = rec["attachments"]
    assert att["verdict"] == "infected" and "EICAR" in att["signature"]
    # The evidence is kept apart from ordinary mail.
    assert intake.raw_store.path_for(rec["sha256"], quarantined=True).exists()
    assert not intake.raw_store.path_for(rec["sha256"], quarantined=False).exists()


def test_eicar_inside_a_zip_is_quarantined(intake: Intake) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("inner.txt", eicar())
    rec = ingest(intake, mail(attachments=[("資料.zip", buf.getvalue(), "application/zip")]))
    assert rec["status"] == "quarantined"
    assert "virus" in rec["reasons"]


@pytest.mark.parametrize("maker", ["elf", "pe"])
def test_binary_named_txt_is_a_type_mismatch(intake: Intake, maker: str) -> None:
    data = Path("/bin/true").read_bytes() if maker == "elf" else producers.make_pe()
    rec = ingest(intake, mail(attachments=[("意見.txt", data, "text/plain")]))
    assert rec["status"] == "rejected"
    assert rec["reasons"] == ["attachment_type_mismatch"]
    assert rec["attachments"][0]["verdict"] == "type_mismatch"


@pytest.mark.parametrize("name", ["意見.pdf", "test.ppt", "test.pptx"])
def test_pdf_and_powerpoint_are_not_allowed(intake: Intake, name: str) -> None:
    data = producers.make_pdf() if name.endswith(".pdf") else (CORPUS / "msoffice" / name).read_bytes()
    rec = ingest(intake, mail(attachments=[(name, data, "application/octet-stream")]))
    assert rec["status"] == "rejected"
    assert rec["reasons"] == ["attachment_not_allowed"]
    assert rec["attachments"][0]["kind"] == "other"


def test_docm_with_real_vba_is_rejected_as_macro_not_quarantined(intake: Intake) -> None:
    rec = ingest(intake, mail(attachments=[("意見書.docm", producers.make_docm(), "application/octet-stream")]))
    assert rec["status"] == "rejected"
    assert "attachment_macro" in rec["reasons"]
    assert "virus" not in rec["reasons"] and rec["virus"] is None
    assert rec["attachments"][0]["verdict"] == "macro"


def test_password_protected_docx_is_rejected_as_encrypted(intake: Intake) -> None:
    docx = producers.make_encrypted_docx()
    rec = ingest(intake, mail(attachments=[("意見書.docx", docx, "application/octet-stream")]))
    assert rec["status"] == "rejected"
    assert "attachment_encrypted" in rec["reasons"]
    assert rec["attachments"][0]["verdict"] == "encrypted"


CORPUS_ALLOWED = [
    *[("msoffice", n, "word") for n in ("test.doc", "test_as.doc", "test.docx", "test_as.docx")],
    *[("msoffice", n, "excel") for n in ("test.xls", "test_as.xls", "test.xlsx", "test_as.xlsx")],
    *[("ichitaro", p.name, "ichitaro") for p in sorted((CORPUS / "ichitaro").glob("*"))],
]


@pytest.mark.parametrize(("folder", "name", "kind"), CORPUS_ALLOWED, ids=[c[1] for c in CORPUS_ALLOWED])
def test_every_real_word_excel_and_ichitaro_file_is_allowed(intake: Intake, folder: str, name: str, kind: str) -> None:
    data = (CORPUS / folder / name).read_bytes()
    rec = ingest(intake, mail(attachments=[(name, data, "application/octet-stream")]))
    assert rec["status"] == "accepted", rec["reasons"]
    [att] = rec["attachments"]
    assert (att["kind"], att["verdict"]) == (kind, "allowed")


def test_html_mail_with_inline_cid_logo_is_accepted(intake: Intake) -> None:
    import email.policy
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "info@example.jp"
    msg["Subject"] = "意見"
    msg.set_content("本編 P.3 について。")
    msg.add_alternative('<p>本編 P.3 について。</p><img src="cid:logo123@example.jp">', subtype="html")
    html = msg.get_payload()[1]
    png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")
    html.add_related(png, maintype="image", subtype="png", cid="<logo123@example.jp>")
    rec = ingest(intake, msg.as_bytes(policy=email.policy.SMTP), received_at=None)
    assert rec["status"] == "accepted", rec["reasons"]
    assert rec["attachments"] == []


def test_smime_signed_mail_is_accepted(intake: Intake) -> None:
    entity = "Content-Type: text/plain; charset=utf-8\r\n\r\n本編 P.3 への意見です。\r\n".encode()
    rec = ingest(intake, make_smime_signed(entity))
    assert rec["status"] == "accepted", rec["reasons"]
    assert rec["attachments"] == []


def test_one_byte_over_twenty_mib_is_too_large(intake: Intake) -> None:
    base = mail(body="x")
    limit = intake.rules.max_message_bytes
    raw = base.replace(b"\r\n\r\nx", b"\r\n\r\n" + b"x" * (limit + 1 - len(base) + 1), 1)
    assert len(raw) == limit + 1
    rec = ingest(intake, raw)
    assert rec["status"] == "rejected"
    assert rec["reasons"] == ["too_large"]
    assert rec["size"] == limit + 1
    # Exactly at the limit is fine.
    at_limit = ingest(intake, raw[:-3] + b"\r\n")  # one x fewer: other content, exactly at the limit
    assert at_limit["size"] == limit and at_limit["status"] == "accepted"


def test_held_when_clamd_is_down_then_the_same_record_is_accepted(
    intake: Intake, tmp_path: Path
) -> None:
    own = Clamd(tmp_path / "own-clamd")
    own.start()
    intake.scanner = type(intake.scanner)(own.url, timeout=10)
    raw = mail(body="本編 P.5 についての意見。")
    own.stop()
    held = ingest(intake, raw)
    assert held["status"] == "held"
    assert held["reasons"] == ["scan_unavailable"]
    assert intake.raw_store.path_for(held["sha256"]).exists()  # safe in the raw store
    own.start()
    again = ingest(intake, raw)
    own.stop()
    assert again["id"] == held["id"]
    assert again["status"] == "accepted"
    with intake.sessions() as session:
        assert session.query(Message).count() == 1
        actions = [e.action for e in session.scalars(select(Event).order_by(Event.id))]
    assert actions == ["ingest", "retry"]


def test_same_file_twice_is_a_duplicate_of_the_first(intake: Intake) -> None:
    raw = mail(body="同じ意見です。本編 P.1")
    first = ingest(intake, raw)
    second = ingest(intake, raw)
    assert first["status"] == "accepted"
    assert second["status"] == "duplicate"
    assert second["duplicate_of"] == first["id"]
    assert second["id"] != first["id"]


def test_mta_retry_with_new_trace_fields_is_recognised(intake: Intake) -> None:
    raw = mail(body="再送された意見。")
    first = ingest(intake, raw)
    retried = b"Received: from relay2 by mx; Sun, 11 Jan 2026 10:00:00 +0900\r\nDelivered-To: x@example.go.jp\r\n" + raw
    second = ingest(intake, retried.replace(b"\r\n", b"\n"))
    assert second["status"] == "duplicate" and second["duplicate_of"] == first["id"]


def test_mail_after_the_deadline_is_flagged_late(intake: Intake) -> None:
    import datetime as dt

    jst = dt.timezone(dt.timedelta(hours=9))
    late = ingest(intake, mail(body="遅れた意見", received=dt.datetime(2026, 1, 30, 0, 0, 0, tzinfo=jst)))
    last_second = ingest(intake, mail(body="ぎりぎり", received=dt.datetime(2026, 1, 29, 23, 59, 59, tzinfo=jst)))
    early = ingest(intake, mail(body="早い", received=dt.datetime(2025, 12, 25, 23, 59, 59, tzinfo=jst)))
    assert "late" in late["flags"]
    assert "late" not in last_second["flags"] and "early" not in last_second["flags"]
    assert "early" in early["flags"]
    assert late["received_at"] == "2026-01-30T00:00:00+09:00"


def test_received_at_argument_wins_and_missing_time_is_flagged(intake: Intake) -> None:
    import datetime as dt

    given = dt.datetime(2026, 1, 29, 23, 0, tzinfo=dt.UTC)  # 2026-01-30 08:00 JST: late
    rec = ingest(intake, mail(body="時刻指定"), received_at=given, received_source="argument")
    assert rec["received_at"] == "2026-01-30T08:00:00+09:00" and "late" in rec["flags"]
    no_trace = ingest(intake, mail(body="トレースなし", received=None))
    assert "received_at_uncertain" in no_trace["flags"]


@pytest.mark.parametrize("name", ["sample1.eml", "sample2.eml", "sample3.eml", "sample4.eml"])
def test_real_mail_goes_through(intake: Intake, name: str) -> None:
    raw = (CORPUS / "eml" / name).read_bytes()
    rec = ingest(intake, raw)
    assert rec["status"] in ("accepted", "rejected")
    assert "malformed" not in rec["reasons"] and "processing_failed" not in rec["reasons"]
    assert rec["sha256"] and rec["size"] == len(raw)


@pytest.mark.parametrize("raw", [bytes(range(256)) * 40, b"\x00\x01garbage without headers\n\nbody", b""])
def test_binary_noise_is_malformed(intake: Intake, raw: bytes) -> None:
    rec = ingest(intake, raw)
    assert rec["status"] == "rejected"
    assert rec["reasons"] == ["malformed"]


def test_forwarded_mail_is_an_attachment_that_is_not_allowed(intake: Intake) -> None:
    import email.policy
    from email.message import EmailMessage

    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("転送された本文")
    outer = EmailMessage()
    outer["From"] = "a@example.jp"
    outer.set_content("転送します")
    outer.add_attachment(inner)
    rec = ingest(intake, outer.as_bytes(policy=email.policy.SMTP))
    assert rec["status"] == "rejected"
    assert rec["reasons"] == ["attachment_not_allowed"]


def test_a_message_that_crashes_a_stage_is_retried_then_rejected(intake: Intake) -> None:
    # A fault the real parser cannot produce on demand: a stage that raises stands in for a parser crash.
    def boom(_work: object) -> None:
        raise RuntimeError("parser crashed")

    original = intake.stage_list
    intake.stage_list = lambda rules: [*original(rules), ("boom", boom)]  # type: ignore[method-assign]
    raw = mail(body="毒のメール")
    statuses = [ingest(intake, raw) for _ in range(intake.config.max_attempts)]
    assert [r["status"] for r in statuses[:-1]] == ["held"] * (intake.config.max_attempts - 1)
    assert statuses[-1]["status"] == "rejected"
    assert statuses[-1]["reasons"] == ["processing_failed"]
    assert len({r["id"] for r in statuses}) == 1
    assert intake.raw_store.path_for(statuses[-1]["sha256"]).exists()  # the raw mail is kept


def test_the_same_content_arriving_twice_at_once_gives_one_first_record(intake: Intake) -> None:
    import concurrent.futures

    raw = mail(body="同時に二通届いた意見。本編 P.2")
    copies = [raw, b"Received: from relay2 by mx; Sun, 11 Jan 2026 10:00:00 +0900\r\n" + raw] * 3
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(lambda r: intake.process(Arrival(raw=r, source="ingest")).id, copies))
    with intake.sessions() as session:
        rows = [session.get(Message, i) for i in ids]
        statuses = sorted(m.status for m in rows if m is not None)
    assert statuses == ["accepted"] + ["duplicate"] * 5
