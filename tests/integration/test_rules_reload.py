"""SIGHUP reloads the rules whole: the next message over IMAP and over LMTP is judged by the new window, the new
field label and the new 要旨 threshold together; a broken rules file keeps the old rules and logs one line.

A real `intake run` (subprocess) with a real Dovecot, a real clamd and both sources, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import email.policy
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import select

from daemon.config import Config
from daemon.store import records
from daemon.store.db import Message, make_engine
from devkit.clamd import Clamd
from devkit.dovecot import Dovecot

from conftest import RULES

# The first rules: the real consultation's, with a window around today so that nothing is early or late.
FIRST_WINDOW = ("2026-01-01T00:00:00+09:00", "2099-12-31T23:59:59+09:00")
# The second: the window closed in the past (every new arrival is late), a new label for the name field,
# and a 要旨 threshold low enough that the test comment needs a 要旨.
SECOND_WINDOW = ("2026-01-01T00:00:00+09:00", "2026-06-30T23:59:59+09:00")
NEW_LABEL = "投稿者"
BODY = f"{NEW_LABEL}：山田太郎\n\n本編 P.3 について、検証の手順を具体的に明記すべきです。"


def rules_text(window: tuple[str, str], threshold: int = 1000, extra_name_label: str | None = None) -> str:
    text = RULES.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^start = .*$", f"start = {window[0]}", text, count=1)
    text = re.sub(r"(?m)^end = .*$", f"end = {window[1]}", text, count=1)
    text = re.sub(r"(?m)^summary_threshold_chars = .*$", f"summary_threshold_chars = {threshold}", text, count=1)
    if extra_name_label:
        text = re.sub(r'(?m)^name = \[', f'name = ["{extra_name_label}", ', text, count=1)
    return text


def comment_mail(body: str, message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "taro@example.jp"
    msg["To"] = "security-ai@example.go.jp"
    msg["Subject"] = "意見提出"
    msg["Message-ID"] = f"<{message_id}>"
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)


def wait_for(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sighup_replaces_window_labels_and_threshold_for_imap_and_lmtp_at_once(
        tmp_path: Path, config: Config, dovecot: Dovecot, clamd: Clamd) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(rules_text(FIRST_WINDOW), encoding="utf-8")
    password = tmp_path / "imap-password"
    password.write_text(dovecot.password)
    sock = tmp_path / "lmtp.sock"
    conf = tmp_path / "intake.toml"
    conf.write_text("\n".join([
        "[intake]", f"data_dir = {json.dumps(str(config.data_dir))}",
        f"database_url = {json.dumps(config.database_url)}", f"rules = {json.dumps(str(rules))}",
        "[scan]", f"clamd = {json.dumps(clamd.url)}",
        "[imap]", 'host = "127.0.0.1"', f"port = {dovecot.port}", 'security = "plain"',
        f"user = {json.dumps(dovecot.user)}", f"password_file = {json.dumps(str(password))}",
        "[lmtp]", "enabled = true", f"socket = {json.dumps(str(sock))}",
        "[service]", "health_interval = 0.5", "",
    ]), encoding="utf-8")
    env = {**os.environ, "INTAKE_CONFIG": str(conf)}
    for key in ("INTAKE_DATABASE_URL", "INTAKE_DATA_DIR", "INTAKE_RULES", "INTAKE_CLAMD"):
        env.pop(key, None)
    log_path = tmp_path / "daemon.log"
    engine = make_engine(config.database_url)

    def events(name: str) -> list[dict[str, Any]]:
        out = []
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                entry = json.loads(line)
                if entry.get("event") == name:
                    out.append(entry)
        return out

    def record_of(message_id: str) -> dict[str, Any] | None:
        with engine.connect() as conn:
            rid = conn.scalar(select(Message.id).where(Message.message_id == f"<{message_id}>"))
        if rid is None:
            return None
        from sqlalchemy.orm import Session

        with Session(engine) as session:
            msg = records.load(session, rid)
            return records.to_contract(msg) if msg is not None and msg.status != "held" else None

    def send(tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """One comment over IMAP and one over LMTP (distinct content); their records."""
        over_imap = comment_mail(BODY + f"（{tag}-imap）", f"{tag}-imap@example.jp")
        over_lmtp = comment_mail(BODY + f"（{tag}-lmtp）", f"{tag}-lmtp@example.jp")
        dovecot.append([over_imap])
        with smtplib.LMTP(str(sock)) as client:
            client.sendmail("taro@example.jp", ["security-ai@example.go.jp"], over_lmtp)
        return (wait_for(lambda: record_of(f"{tag}-imap@example.jp"), 60, f"{tag} over IMAP"),
                wait_for(lambda: record_of(f"{tag}-lmtp@example.jp"), 60, f"{tag} over LMTP"))

    with log_path.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "--log-level", "INFO", "run"], env=env,
                                stdout=out, stderr=out, cwd=str(tmp_path))
    try:
        wait_for(lambda: events("ready") or proc.poll() is not None, 60, "the daemon to be ready")
        assert proc.poll() is None, log_path.read_text()

        # Before: the old label is unknown (no name), today is inside the window, the comment is short enough.
        for record in send("before"):
            assert record["submitter"]["name"] is None, record
            assert "missing_name" in record["flags"]
            assert "late" not in record["flags"] and "summary_missing" not in record["flags"], record["flags"]

        rules.write_text(rules_text(SECOND_WINDOW, threshold=10, extra_name_label=NEW_LABEL), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: events("rules_reloaded"), 30, "rules_reloaded")

        # After: all three changes at once, for both sources.
        for record in send("after"):
            assert record["submitter"]["name"] == "山田太郎", record["submitter"]
            assert "missing_name" not in record["flags"]
            assert "late" in record["flags"] and "summary_missing" in record["flags"], record["flags"]

        # A broken file: one line in the log, and the second rules stay in force.
        rules.write_text("[window]\nstart = 'not a date'\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        failed = wait_for(lambda: events("rules_reload_failed"), 30, "rules_reload_failed")
        assert len(failed) == 1 and "\n" not in failed[0]["error"], failed
        assert proc.poll() is None
        for record in send("broken"):
            assert record["submitter"]["name"] == "山田太郎"
            assert "late" in record["flags"] and "summary_missing" in record["flags"], record["flags"]
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        engine.dispose()
    assert "Traceback" not in log_path.read_text(errors="replace")
