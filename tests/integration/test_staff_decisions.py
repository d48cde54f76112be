"""Staff decisions and retention through the `intake` command: release, reject, retry, rescan (with a new
signature loaded into a dedicated clamd), purge. Real clamd, real SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.scanner import Scanner
from daemon.store import records
from daemon.store.db import Event, Message
from devkit.clamd import Clamd, add_body_signature, eicar
from devkit.ikensho import ikensho_docx

from mails import mail

DEAD = "unix:///nonexistent/clamd.sock"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    done = subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=env, capture_output=True, timeout=300)
    assert "Traceback" not in done.stderr.decode(), done.stderr.decode()
    return done


def ingest(intake: Intake, raw: bytes, scanner: str | None = None) -> int:
    if scanner is not None:
        intake.scanner = Scanner(scanner, timeout=10)
    return intake.process(Arrival(raw=raw, source="ingest")).id


def record(intake: Intake, rid: int) -> dict:
    with intake.sessions() as session:
        msg = records.load(session, rid)
        assert msg is not None
        return {**records.to_contract(msg), "raw_area": msg.raw_area,
                "events": [(e.action, e.status, e.actor, e.note) for e in msg.events]}


def ikensho() -> bytes:
    return ikensho_docx([("氏名", "審査 太郎"), ("住所", "東京都千代田区1-1")],
                        [("本編 P.4", "定義を見直すべきである。"), ("別添 P.9", "例示を増やすべきである。")],
                        title=None, headers=("該当箇所", "意見"))


def test_release_extracts_what_we_can_read_and_accepts_the_rest(intake: Intake, env: dict[str, str]) -> None:
    mismatch = ingest(intake, mail(body="意見書を添付します。",
                                   attachments=[("意見書.xlsx", ikensho(), "application/octet-stream")]))
    pdf = ingest(intake, mail(body="本編 P.2 について、PDFでも意見を送ります。",
                              attachments=[("意見.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")]))
    before = record(intake, mismatch)
    assert before["status"] == "rejected" and before["reasons"] == ["attachment_type_mismatch"]
    assert before["comments"] == []  # R9a: a body that only sends an attachment we could not read is no 件

    done = run(env, "release", str(mismatch), "--by", "佐藤", "--note", "Word の意見書と確認、受理")
    assert done.returncode == 0, done.stderr.decode()
    assert "rejected → accepted" in done.stdout.decode() and "extracted from 1" in done.stdout.decode()
    after = record(intake, mismatch)
    assert after["status"] == "accepted"
    assert after["reasons"] == ["attachment_type_mismatch"]  # what was found stays on the record
    assert "released" in after["flags"]
    assert [(c["text"], c["targets"]) for c in after["comments"]] == [
        ("定義を見直すべきである。", ["main"]), ("例示を増やすべきである。", ["annex"])]
    assert after["submitter"]["name"] == "審査 太郎" and after["submitter"]["kind"] == "individual"
    assert after["events"][-1] == ("release", "accepted", "佐藤", "Word の意見書と確認、受理")

    done = run(env, "release", str(pdf), "--by", "佐藤", "--note", "PDF を受理、手入力する")
    assert done.returncode == 0
    assert "accepted as it stands" in done.stdout.decode() and "application/pdf" in done.stdout.decode()
    after_pdf = record(intake, pdf)
    assert after_pdf["status"] == "accepted" and after_pdf["comments"] == record(intake, pdf)["comments"]
    assert after_pdf["events"][-1][:3] == ("release", "accepted", "佐藤")
    assert intake.raw_store.path_for(after_pdf["sha256"]).exists()  # no decision deletes the raw mail

    exported = run(env, "export", "--format", "csv").stdout.decode("utf-8-sig")
    assert "定義を見直すべきである。" in exported and "PDFでも意見を送ります" in exported

    again = run(env, "release", str(mismatch), "--by", "佐藤", "--note", "二度目")
    assert again.returncode == 1
    assert again.stderr.decode().strip() == (
        f"intake: error: record {mismatch} is accepted: only a rejected record can be released")
    missing_note = run(env, "release", str(pdf), "--by", "佐藤")
    assert missing_note.returncode == 2 and "--note" in missing_note.stderr.decode()
    nothing = run(env, "release", "9999", "--by", "x", "--note", "y")
    assert nothing.stderr.decode().strip() == "intake: error: no record 9999"


def test_reject_spam_keeps_the_raw_mail_and_leaves_the_export(intake: Intake, env: dict[str, str]) -> None:
    rid = ingest(intake, mail(body="本編 P.1 激安の商品はこちら http://spam.example/"))
    assert record(intake, rid)["status"] == "accepted"
    done = run(env, "reject", str(rid), "--by", "鈴木", "--note", "広告（スパム）")
    assert done.returncode == 0 and "accepted → rejected" in done.stdout.decode()
    rec = record(intake, rid)
    assert rec["status"] == "rejected" and rec["reasons"] == ["staff_rejected"]
    assert rec["events"][-1] == ("reject", "rejected", "鈴木", "広告（スパム）")
    assert intake.raw_store.path_for(rec["sha256"]).exists()
    assert "激安" not in run(env, "export", "--format", "csv").stdout.decode("utf-8-sig")
    assert json.loads(run(env, "log", "--reason", "staff_rejected", "--json").stdout)["id"] == rid


def test_retry_one_and_all_held(intake: Intake, env: dict[str, str]) -> None:
    ids = [ingest(intake, mail(body=f"本編 P.{n} について意見 {n}。"), scanner=DEAD) for n in (1, 2, 3)]
    assert {record(intake, i)["status"] for i in ids} == {"held"}
    done = run(env, "retry", str(ids[0]), "--by", "田中", "--note", "clamd 復旧")
    assert done.returncode == 0, done.stderr.decode()
    assert "held → accepted" in done.stdout.decode()
    rec = record(intake, ids[0])
    assert rec["status"] == "accepted"
    assert rec["events"] == [("ingest", "held", "intake", None), ("retry", "accepted", "intake", None),
                             ("retry", "accepted", "田中", "clamd 復旧")]
    done = run(env, "retry", "--held", "--by", "田中", "--note", "まとめて再処理")
    assert done.returncode == 0 and "2 held record(s) retried" in done.stdout.decode()
    assert [record(intake, i)["status"] for i in ids] == ["accepted"] * 3
    assert run(env, "retry", str(ids[0]), "--by", "田中", "--note", "x").returncode == 1  # accepted: nothing to retry
    assert run(env, "retry", "--by", "田中", "--note", "x").returncode == 1  # neither ID nor --held


def test_rescan_quarantines_mail_matching_a_new_signature(
    intake: Intake, env: dict[str, str], tmp_path: Path
) -> None:
    own = Clamd(tmp_path / "rescan-clamd")
    own.start()
    try:
        needle = b"INTAKE-RESCAN-NEEDLE-7f3a9c"
        carrier = mail(body="本編 P.8 について意見。", attachments=[
            ("意見.txt", "本編 P.8 の補足。".encode() + needle, "text/plain")])
        infected_later = ingest(intake, carrier, scanner=own.url)
        old = ingest(intake, mail(body="本編 P.9 について。",
                                  received=dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))))
        clean = ingest(intake, mail(body="本編 P.10 について意見。"))
        redelivered = intake.process(Arrival(
            raw=b"Received: from mx9.example.jp by mail.example.go.jp; Sat, 10 Jan 2026 09:20:00 +0900\r\n"
            + carrier, source="ingest")).id
        assert [record(intake, i)["status"] for i in (infected_later, old, clean, redelivered)] == [
            "accepted", "accepted", "accepted", "duplicate"]

        add_body_signature(own.db_dir, "Intake.Test.Rescan", needle)
        own.reload()
        probe = Scanner(own.url, timeout=10)
        deadline = time.monotonic() + 60
        while not probe.scan(needle).infected:  # the reload takes effect when the needle is found
            assert time.monotonic() < deadline, "clamd did not load the new signature"
            time.sleep(0.1)

        env = {**env, "INTAKE_CLAMD": own.url}
        done = run(env, "rescan", "--since", "2026-01-10T00:00", "--by", "高橋", "--note", "定義更新後の再検査")
        assert done.returncode == 0, done.stderr.decode()
        out = done.stdout.decode()
        assert f"#{infected_later}: accepted → quarantined (Intake.Test.Rescan" in out
        assert "2 scanned, 1 clean, 1 quarantined" in out  # `old` was received before --since

        rec = record(intake, infected_later)
        assert rec["status"] == "quarantined" and rec["reasons"] == ["virus"]
        assert rec["virus"].startswith("Intake.Test.Rescan")
        assert rec["raw_area"] == "quarantine"
        assert intake.raw_store.path_for(rec["sha256"], quarantined=True).exists()
        assert not intake.raw_store.path_for(rec["sha256"]).exists()
        assert rec["events"][-1] == ("rescan", "quarantined", "高橋", "定義更新後の再検査")
        dup = record(intake, redelivered)
        # A duplicate inherits the verdict (issue 16.1): quarantined too, still pointing at the first.
        assert dup["status"] == "quarantined" and dup["raw_area"] == "quarantine"
        assert dup["reasons"] == ["virus"] and dup["virus"].startswith("Intake.Test.Rescan")
        assert dup["duplicate_of"] == infected_later
        assert intake.raw_store.path_for(dup["sha256"], quarantined=True).exists()
        assert record(intake, clean)["status"] == "accepted" and record(intake, old)["status"] == "accepted"
        assert intake.raw_store.path_for(record(intake, clean)["sha256"]).exists()

        from daemon.store import db

        alert_table = getattr(db, "Alert", None)
        if alert_table is not None:
            with intake.sessions() as session:
                alerts = list(session.scalars(select(alert_table).where(alert_table.record_id == infected_later)))
            assert [(a.category, a.payload["signature"]) for a in alerts] == [("quarantined", rec["virus"])]

        # without --since the older one is scanned too, and nothing is quarantined twice
        done = run(env, "rescan", "--by", "高橋", "--note", "全件")
        assert "2 scanned, 2 clean, 0 quarantined" in done.stdout.decode()
        own.stop()
        down = run(env, "rescan", "--by", "高橋", "--note", "clamd 停止中")
        assert down.returncode == 1 and "clamd failed" in down.stderr.decode()
        assert record(intake, clean)["status"] == "accepted"  # never taken as infected (or clean) by a failure
    finally:
        own.stop()


def test_purge_follows_the_retention_classes(intake: Intake, env: dict[str, str], tmp_path: Path) -> None:
    accepted = ingest(intake, mail(body="本編 P.1 について。"))
    duplicate = intake.process(Arrival(raw=b"Received: from x by y; Sat, 10 Jan 2026 09:30:00 +0900\r\n"
                                       + mail(body="本編 P.1 について。"), source="ingest")).id
    rejected = ingest(intake, mail(body="本編 P.2", attachments=[("a.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")]))
    quarantined = ingest(intake, mail(body="本編 P.3", attachments=[("a.txt", eicar(), "text/plain")]))
    held = ingest(intake, mail(body="本編 P.4 について。"), scanner=DEAD)
    shas = {rid: record(intake, rid)["sha256"] for rid in (accepted, duplicate, rejected, quarantined, held)}
    conf = tmp_path / "intake.toml"
    conf.write_text("[retention]\naccepted_raw_years = 5\nquarantine_days = 30\nrejected_days = 90\n")
    env = {**env, "INTAKE_CONFIG": str(conf)}
    now = dt.datetime.now(dt.UTC)

    def planned(days: int) -> set[int]:
        as_of = (now + dt.timedelta(days=days)).isoformat()
        done = run(env, "purge", "--dry-run", "--as-of", as_of)
        assert done.returncode == 0, done.stderr.decode()
        lines = done.stdout.decode().splitlines()
        return {int(line.split()[0]) for line in lines if line[:1].isdigit()}

    assert planned(0) == set()
    assert planned(31) == {quarantined}
    assert planned(91) == {quarantined, rejected}
    assert planned(5 * 366) == {quarantined, rejected, accepted, duplicate}  # held: never
    dry = run(env, "purge", "--dry-run", "--as-of", (now + dt.timedelta(days=91)).isoformat()).stdout.decode()
    assert "would delete 2 raw file(s) of 2 record(s): accepted 0, quarantine 1, rejected 1" in dry
    assert all(intake.raw_store.locate(s) for s in shas.values())  # a dry run deletes nothing

    conf.write_text("[retention]\naccepted_raw_years = 5\nquarantine_days = 30\nrejected_days = 0\n")
    done = run(env, "--log-level", "INFO", "purge", "--apply", "--by", "運用担当")
    assert done.returncode == 0, done.stderr.decode()
    assert "deleted 1 raw file(s) of 1 record(s): accepted 0, quarantine 0, rejected 1" in done.stdout.decode()
    log_lines = [json.loads(x) for x in done.stderr.decode().splitlines() if x.startswith("{")]
    assert any(e.get("event") == "purge" and e.get("counts") == {"rejected": 1} for e in log_lines)
    assert intake.raw_store.locate(shas[rejected]) is None
    assert all(intake.raw_store.locate(shas[r]) for r in (accepted, duplicate, quarantined, held))
    rec = record(intake, rejected)
    assert rec["raw_area"] == "purged" and rec["status"] == "rejected"
    assert [c["text"] for c in rec["comments"]] == ["本編 P.2"] and rec["texts"]  # the record and its text stay
    assert rec["events"][-1] == ("purge", "rejected", "運用担当", "raw mail deleted: retention class rejected")
    again = run(env, "purge", "--apply")
    assert "deleted 0 raw file(s)" in again.stdout.decode()
    shown = run(env, "show", str(rejected), "--raw")
    assert shown.returncode == 1 and "missing" in shown.stderr.decode()

    with intake.sessions() as session:
        assert session.scalars(select(Message.raw_area).where(Message.id == held)).one() == "raw"
        assert len(list(session.scalars(select(Event).where(Event.action == "purge")))) == 1

    conf.write_text("[retention]\nrejected_weeks = 3\n")
    bad = run(env, "purge", "--dry-run")
    assert bad.returncode == 2 and bad.stderr.decode().strip().startswith("intake: error: retention.rejected_weeks")
    assert run(env, "purge", "--apply", "--as-of", now.isoformat()).returncode == 1


@pytest.mark.parametrize("cmd", [["release", "1"], ["reject", "1"], ["retry", "1"], ["rescan"]])
def test_decisions_need_who_and_why(env: dict[str, str], cmd: list[str]) -> None:
    done = run(env, *cmd, "--by", "x")
    assert done.returncode == 2 and "--note" in done.stderr.decode()
    done = run(env, *cmd, "--by", "x", "--note", " ")
    assert done.returncode == 1 and "--note" in done.stderr.decode()
