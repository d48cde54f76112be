"""Alerts end to end: real pipeline (real clamd, SQLite and PostgreSQL), a real aiosmtpd SMTP sink on
loopback, a real HTTP server for the webhook. Personal data is planted in every mail and must reach
neither the sink nor the webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from daemon.alerts import events
from daemon.alerts.outbox import enqueue_door_refusal, list_outbox
from daemon.alerts.sender import Sender, run_sender
from daemon.alerts.settings import AlertSettings, parse_alert_settings
from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.store.db import Alert, AlertDelivery, Message
from devkit.clamd import eicar

from mails import mail

NAME, ADDRESS, MAILADDR = "山田太郎", "東京都港区芝公園4-2-8", "yamada.taro@example.jp"
SUBJECT, BODY, FILENAME = "秘密の件名テスト", "この意見本文は記録に残るが通知には出ない", "意見書_山田太郎"
PLANTED = [NAME, ADDRESS, MAILADDR, SUBJECT, BODY, FILENAME, "090-1234-5678"]


def personal_mail(attachment: tuple[str, bytes, str], salt: str = "") -> bytes:
    body = f"氏名：{NAME}\n住所：{ADDRESS}\n電話：090-1234-5678\n{BODY}{salt}\n本編 P.1"
    return mail(body=body, sender=f"{NAME} <{MAILADDR}>", subject=SUBJECT, attachments=[attachment])


def rejected_mail(salt: str = "") -> bytes:
    return personal_mail((f"{FILENAME}.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf"), salt)


def virus_mail(salt: str = "") -> bytes:
    return personal_mail((f"{FILENAME}.txt", eicar(), "text/plain"), salt)


def ingest(intake: Intake, raw: bytes) -> int:
    return intake.process(Arrival(raw=raw, source="ingest")).id


def assert_no_personal_data(blob: str | bytes) -> None:
    text = blob.decode("utf-8", "replace") if isinstance(blob, bytes) else blob
    for planted in PLANTED:
        assert planted not in text, planted


# -- a real SMTP sink --------------------------------------------------------------------------------------
@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        return str(self.message.get_content()).replace("\r\n", "\n")


class SmtpSink:
    """aiosmtpd on loopback; optionally STARTTLS-only with AUTH (LOGIN/PLAIN)."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, login: tuple[str, str] | None = None) -> None:
        self.port = port
        self.received: list[Received] = []
        self.cond = threading.Condition()
        self.login = login
        self.authenticated: list[str] = []
        kw: dict[str, Any] = {}
        if tls is not None:
            kw.update(tls_context=tls, require_starttls=True)
        if login is not None:
            kw.update(authenticator=self._auth, auth_required=True, auth_require_tls=True)
        self.controller = Controller(self, hostname="127.0.0.1", port=port, **kw)

    def _auth(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == self.login
        if ok:
            self.authenticated.append(data.login.decode())
        return AuthResult(success=ok)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.cond:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            self.cond.notify_all()
        return "250 2.0.0 Ok: queued"

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.received) >= count, timeout), len(self.received)
            return list(self.received)

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink(free_port()).start()
    yield server
    server.stop()


# -- a real webhook receiver -------------------------------------------------------------------------------
class Hook:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.cond = threading.Condition()
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with hook.cond:
                    if hook.status == 200:
                        hook.requests.append((self.path, dict(self.headers.items()), body))
                        hook.cond.notify_all()
                    status = hook.status
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"error")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/intake"

    def wait_for(self, count: int, timeout: float = 30) -> list[tuple[str, dict[str, str], bytes]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.requests) >= count, timeout), len(self.requests)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.close()


def settings_for(sink_port: int | None = None, hook: Hook | None = None, fmt: str = "generic",
                 **alerts: Any) -> AlertSettings:
    raw: dict[str, Any] = {"alerts": dict(alerts)}
    if sink_port is not None:
        raw["alerts"]["mail"] = {"host": "127.0.0.1", "port": sink_port, "starttls": False,
                                 "from": "intake@example.go.jp", "to": ["staff@example.go.jp", "csirt@example.go.jp"]}
    if hook is not None:
        raw["alerts"]["webhook"] = {"url": hook.url, "format": fmt}
    return parse_alert_settings(raw, env={})


def deliveries(intake: Intake) -> list[AlertDelivery]:
    with intake.sessions() as session:
        return list(session.scalars(select(AlertDelivery).order_by(AlertDelivery.id)))


# -- done when 1: mail alerts for a rejected and a quarantined message ------------------------------------
async def test_mail_alerts_for_rejected_and_quarantined_carry_no_personal_data(
    intake: Intake, sink: SmtpSink
) -> None:
    rejected = ingest(intake, rejected_mail())
    quarantined = ingest(intake, virus_mail())
    with intake.sessions() as session:
        statuses = {m.id: m.status for m in session.scalars(select(Message))}
        alerts = list(session.scalars(select(Alert).order_by(Alert.id)))
    assert statuses == {rejected: "rejected", quarantined: "quarantined"}
    # Each alert is in the outbox, written with its record.
    assert [(a.category, a.record_id) for a in alerts] == [("rejected", rejected), ("quarantined", quarantined)]
    assert_no_personal_data(json.dumps([a.payload for a in alerts], ensure_ascii=False))

    sender = Sender(intake.sessions, settings_for(sink.port))
    results = await sender.deliver_due()
    assert sorted((r.channel, r.ok) for r in results) == [("log", True), ("log", True), ("mail", True), ("mail", True)]
    got = sink.wait_for(2)
    assert len(got) == 2
    by_subject = {r.subject: r for r in got}
    rej = by_subject[f"【意見受付】受付番号 #{rejected} を拒否しました（差出人への連絡が必要です）"]
    vir = by_subject[f"【意見受付】ウイルスを検出し隔離しました（受付番号 #{quarantined}）"]
    assert f"受付番号: #{rejected}" in rej.text
    assert f"intake show {rejected} で内容を確認し、差出人に連絡してください" in rej.text
    assert "attachment_not_allowed" in rej.text and "other/pdf" in rej.text and "not_allowed" in rej.text
    assert "受付日時: 2026-01-10 09:15:00 JST" in rej.text
    assert f"受付番号: #{quarantined}" in vir.text and "検出名: Intake.Test.EICAR" in vir.text
    assert "infected" in vir.text
    for received in got:
        assert received.rcpt_tos == ["staff@example.go.jp", "csirt@example.go.jp"]
        assert received.mail_from == "intake@example.go.jp"
        assert_no_personal_data(received.raw)
        assert_no_personal_data(received.subject + received.text)
        msg = received.message
        alert_id = str(msg["X-Intake-Alert-Id"])
        assert alert_id.startswith("intake-alert-") and str(msg["Message-ID"]) == f"<{alert_id}@example.go.jp>"
        assert f"通知ID: {alert_id}" in received.text
        assert str(msg["Auto-Submitted"]) == "auto-generated"
    # Nothing is sent twice.
    assert await sender.deliver_due() == []
    assert {d.state for d in deliveries(intake)} == {"sent"}


async def test_file_names_only_when_the_config_allows(intake: Intake, sink: SmtpSink) -> None:
    rid = ingest(intake, rejected_mail())
    await Sender(intake.sessions, settings_for(sink.port, include_filenames=True)).deliver_due()
    [received] = sink.wait_for(1)
    assert f"名前: {FILENAME}.pdf" in received.text  # allowed by the config …
    for planted in (NAME + " <", MAILADDR, SUBJECT, BODY, ADDRESS):  # … nothing else is
        assert planted not in received.text
    assert f"#{rid}" in received.subject


# -- done when 2: the webhook ----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["slack", "teams", "generic"])
async def test_webhook_receives_json_from_the_sender_task(intake: Intake, hook: Hook, fmt: str) -> None:
    rid = ingest(intake, rejected_mail())
    stop = asyncio.Event()
    task = asyncio.create_task(run_sender(intake.sessions, settings_for(hook=hook, fmt=fmt), stop))
    try:
        [(path, headers, body)] = await asyncio.to_thread(hook.wait_for, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert path == "/hooks/intake"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Intake-Alert-Id"].startswith("intake-alert-")
    assert_no_personal_data(body)
    data = json.loads(body)
    if fmt == "slack":
        assert set(data) == {"text"} and f"受付番号 #{rid} を拒否しました" in data["text"]
    elif fmt == "teams":
        assert data["type"] == "message"
        [attachment] = data["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
        texts = [block["text"] for block in card["body"]]
        assert texts[0].startswith("【意見受付】受付番号") and f"受付番号: #{rid}" in texts
    else:
        assert data["id"] == headers["X-Intake-Alert-Id"] and data["category"] == "rejected"
        assert data["records"] == [rid] and data["facts"]["reasons"] == ["attachment_not_allowed"]
        assert data["facts"]["attachments"][0]["kind"] == "other"
    assert all(d.state == "sent" for d in deliveries(intake))


# -- done when 3: channel down, alerts wait, then each arrives exactly once ---------------------------------
async def test_alerts_wait_while_the_smtp_sink_is_down_then_arrive_exactly_once(intake: Intake) -> None:
    port = free_port()  # nothing listens here yet
    first = ingest(intake, rejected_mail("1"))
    second = ingest(intake, rejected_mail("2"))
    virus = ingest(intake, virus_mail())
    sender = Sender(intake.sessions, settings_for(port))
    t0 = dt.datetime.now(dt.UTC)

    results = await sender.deliver_due(t0)
    assert [r.error.split(":")[0] for r in results if r.channel == "mail" and r.error] == ["smtp", "smtp"]
    assert not any(r.ok for r in results if r.channel == "mail")
    with intake.sessions() as session:
        listed = list_outbox(session, state="pending")
    assert {row["record"] for row in listed} == {first, second, virus}  # nothing lost: all wait in the outbox
    mail_rows = [d for d in deliveries(intake) if d.channel == "mail"]
    assert all(d.state == "pending" for d in mail_rows)
    assert sorted(d.attempts for d in mail_rows) == [0, 1, 1]  # the second rejected waits behind the first

    sink = SmtpSink(port).start()
    try:
        assert [r for r in await sender.deliver_due(t0 + dt.timedelta(seconds=2)) if r.channel == "mail"] == []
        assert sink.received == []  # still backing off
        await sender.deliver_due(t0 + dt.timedelta(seconds=10))  # backoff over: the two waiting batches
        assert len(sink.received) == 2
        await sender.deliver_due(t0 + dt.timedelta(seconds=400))  # the rejected window closed: the other one
        await sender.deliver_due(t0 + dt.timedelta(seconds=4000))
        await sender.deliver_due(t0 + dt.timedelta(seconds=40000))
        got = list(sink.received)
    finally:
        sink.stop()
    assert len(got) == 3
    ids = [str(r.message["X-Intake-Alert-Id"]) for r in got]
    assert len(set(ids)) == 3
    mentioned = [rid for r in got for rid in (first, second, virus) if f"受付番号: #{rid}" in r.text.splitlines()]
    assert sorted(mentioned) == sorted([first, second, virus])  # each record exactly once
    assert all(d.state == "sent" for d in deliveries(intake))


async def test_a_crash_after_acceptance_resends_with_the_same_id(intake: Intake, sink: SmtpSink) -> None:
    rid = ingest(intake, virus_mail())
    settings = settings_for(sink.port)
    t0 = dt.datetime.now(dt.UTC)
    dying = Sender(intake.sessions, settings, owner="dying")
    [out] = [o for o in await asyncio.to_thread(dying.plan, t0) if o.channel == "mail"]
    await dying.channels["mail"].send(out.rendered)  # accepted … and the daemon dies before marking it
    sink.wait_for(1)
    heir = Sender(intake.sessions, settings, owner="heir")
    assert [r for r in await heir.deliver_due(t0 + dt.timedelta(seconds=30)) if r.channel == "mail"] == []  # leased
    await heir.deliver_due(t0 + dt.timedelta(seconds=settings.lease_seconds + 1))
    first, second = sink.wait_for(2)
    assert first.message["Message-ID"] == second.message["Message-ID"]  # the receiver can tell
    assert str(first.message["X-Intake-Alert-Id"]) == str(second.message["X-Intake-Alert-Id"]) == out.batch
    assert f"#{rid}" in first.subject


# -- done when 4: a burst is summarised ------------------------------------------------------------------
async def test_two_hundred_quarantined_messages_make_a_handful_of_messages_per_channel(
    intake: Intake, sink: SmtpSink, hook: Hook
) -> None:
    ids = [ingest(intake, virus_mail(f" {n}")) for n in range(200)]
    assert len(set(ids)) == 200
    settings = settings_for(sink.port, hook, digest_window_seconds=300)
    sender = Sender(intake.sessions, settings)
    t0 = dt.datetime.now(dt.UTC)
    for step in range(0, 1200, 30):  # twenty minutes of the sender's rounds
        await sender.deliver_due(t0 + dt.timedelta(seconds=step))
    mails = list(sink.received)
    posts = hook.wait_for(1)
    assert 1 <= len(mails) <= 3 and len(posts) == len(mails)
    first, digest = mails[0], mails[-1]
    assert first.subject == f"【意見受付】ウイルスを検出し隔離しました（受付番号 #{ids[0]}）"
    assert digest.subject.startswith("【意見受付】まとめ：ウイルス検出・隔離 199 件")
    assert "この通知の件数: 199 件" in digest.text
    assert "この一連の通知の合計: 200 件（うち 1 件は通知済み）" in digest.text
    assert "virus（ウイルスが検出されました）: 199 件" in digest.text
    signatures = digest.text.split("検出名別の件数:\n", 1)[1].splitlines()[0]
    assert signatures.startswith("  Intake.Test.EICAR") and signatures.endswith(": 199 件")
    for received in mails:
        assert_no_personal_data(received.raw)
        assert_no_personal_data(received.subject + received.text)
    # The webhook's digest lists every record: together with the first alert, all 200, each once.
    bodies = [json.loads(body) for _, _, body in posts]
    listed = [rid for b in bodies for rid in b["records"]]
    assert sorted(listed) == sorted(ids)
    assert bodies[-1]["facts"]["count"] == 199 and bodies[-1]["facts"]["burst_total"] == 200
    assert bodies[-1]["facts"]["by_reason"] == {"virus": 199}
    assert sum(bodies[-1]["facts"]["by_signature"].values()) == 199
    assert all(d.state == "sent" for d in deliveries(intake))


# -- the outbox commits with the record, or not at all ---------------------------------------------------
def test_the_alert_is_written_in_the_records_transaction(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.pipeline import StorageError
    from daemon.store import records

    class Boom(Exception):
        pass

    def broken_event(**_kw: Any) -> Any:
        raise Boom  # after the alert was added, before the commit

    monkeypatch.setattr(records, "Event", broken_event)
    with pytest.raises((Boom, StorageError)):
        ingest(intake, rejected_mail())
    with intake.sessions() as session:
        assert session.scalars(select(Message)).all() == []
        assert session.scalars(select(Alert)).all() == []  # rolled back with the record


# -- door refusals (LMTP 552) ----------------------------------------------------------------------------
async def test_door_refusal_raises_a_rejected_alert(intake: Intake, sink: SmtpSink) -> None:
    when = dt.datetime(2026, 1, 10, 0, 15, tzinfo=dt.UTC)
    enqueue_door_refusal(intake.sessions, 25_000_000, when, limit=20_971_520)
    with intake.sessions.begin() as session:  # or inside the caller's transaction
        enqueue_door_refusal(session, 30_000_000, when + dt.timedelta(minutes=10))
    settings = settings_for(sink.port, categories={"rejected": {"window_seconds": 0}})
    await Sender(intake.sessions, settings).deliver_due()
    got = sink.wait_for(2)
    assert {r.subject for r in got} == {"【意見受付】大きすぎるメールを受信時に拒否しました（記録なし）"}
    assert "サイズ: 25,000,000 バイト" in got[0].text + got[1].text
    assert "受付日時: 2026-01-10 09:15:00 JST" in got[0].text + got[1].text
    assert "too_large" in got[0].text
    assert "上限: 20,971,520 バイト" in got[0].text + got[1].text


# -- STARTTLS and AUTH, and `intake alerts test` / `intake alerts list` ------------------------------------
def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return server, cert_file


def _run_cli(env: dict[str, str], *args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=env, capture_output=True, timeout=120)


def test_cli_alerts_test_uses_starttls_and_auth_and_reports_each_channel(
    env: dict[str, str], tmp_path: Path, hook: Hook
) -> None:
    server_tls, ca = _self_signed(tmp_path)
    sink = SmtpSink(free_port(), tls=server_tls, login=("intake-alerts", "s3cret-pw")).start()
    try:
        (tmp_path / "creds").mkdir()
        (tmp_path / "creds" / "smtp-password").write_text("s3cret-pw\n")
        conf = tmp_path / "intake.toml"
        conf.write_text(f"""
[alerts.mail]
host = "127.0.0.1"
port = {sink.port}
starttls = true
ca_file = "{ca}"
username = "intake-alerts"
password_credential = "smtp-password"
from = "intake@example.go.jp"
to = ["staff@example.go.jp"]

[alerts.webhook]
url_env = "TEST_ALERT_WEBHOOK"
format = "slack"
""", encoding="utf-8")
        run_env = {**env, "INTAKE_CONFIG": str(conf), "CREDENTIALS_DIRECTORY": str(tmp_path / "creds"),
                   "TEST_ALERT_WEBHOOK": hook.url}
        done = _run_cli(run_env, "alerts", "test")
        out = done.stdout.decode()
        assert done.returncode == 0, (out, done.stderr.decode())
        assert "mail: ok" in out and "STARTTLS AUTH" in out and "webhook: ok" in out and "log: ok" in out
        [received] = sink.wait_for(1)
        assert sink.authenticated == ["intake-alerts"]
        assert received.subject == "【意見受付】通知のテスト"
        assert "s3cret-pw" not in out + done.stderr.decode()
        [(_, _, body)] = hook.wait_for(1)
        assert "通知のテスト" in json.loads(body)["text"]

        hook.status = 500  # a channel that refuses is reported, and the exit status says so
        failed = _run_cli(run_env, "alerts", "test")
        assert failed.returncode == 1 and "webhook: FAILED (webhook:http_500)" in failed.stdout.decode()
    finally:
        sink.stop()


def test_cli_rejects_a_password_in_the_config_file(env: dict[str, str], tmp_path: Path) -> None:
    conf = tmp_path / "intake.toml"
    conf.write_text('[alerts.mail]\nhost = "h"\npassword = "x"\nfrom = "a@b.jp"\nto = ["c@d.jp"]\n')
    done = _run_cli({**env, "INTAKE_CONFIG": str(conf)}, "alerts", "test")
    err = done.stderr.decode().strip()
    assert done.returncode == 2 and "alerts.mail.password: never in the config file" in err
    assert len(err.splitlines()) == 1


async def test_cli_alerts_list_shows_the_outbox_states(env: dict[str, str], config: Any, intake: Intake,
                                                       sink: SmtpSink) -> None:
    rejected = ingest(intake, rejected_mail())
    done = await asyncio.to_thread(_run_cli, env, "alerts", "list")
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert "rejected" in out and f"#{rejected}" in out and "not yet routed" in out
    port = free_port()
    await Sender(intake.sessions, settings_for(port)).deliver_due()  # mail down, the log takes it
    done = await asyncio.to_thread(_run_cli, env, "alerts", "list", "--json")
    [row] = [json.loads(line) for line in done.stdout.decode().splitlines()]
    states = {d["channel"]: (d["state"], d["attempts"]) for d in row["deliveries"]}
    assert states == {"mail": ("pending", 1), "log": ("sent", 0)}
    assert row["record"] == rejected and row["category"] == "rejected"
    pending = await asyncio.to_thread(_run_cli, env, "alerts", "list", "--state", "pending")
    assert f"#{rejected}" in pending.stdout.decode() and "mail:pending(1 tries" in pending.stdout.decode()


# -- rendering: nothing from outside can add a header or a line ------------------------------------------
def test_signature_names_cannot_inject_headers_or_lines() -> None:
    from daemon.alerts.channels import build_mail

    evil = "Evil.Sig\r\nBcc: victim@example.com\r\n\r\nfake body\u2028line"
    payload = {"record": 7, "status": "quarantined", "received_at": "2026-01-10T09:15:00+09:00", "size": 10,
               "reasons": ["virus"], "signature": evil,
               "attachments": [{"position": 1, "kind": "text\nX-Injected: 1", "format": "plain", "verdict": "infected",
                                "signature": evil, "size": 3}]}
    item = events.Item(alert_id=1, category="quarantined", kind="record", created_at=dt.datetime.now(dt.UTC),
                       payload=payload, filenames=("a\r\nSubject: hacked.txt",))
    rendered = events.render_single("intake-alert-1", item)
    settings = settings_for(25).mail
    assert settings is not None
    raw = build_mail(settings, rendered).as_bytes()
    head, _, _ = raw.partition(b"\r\n\r\n")
    assert b"Bcc" not in head and b"X-Injected" not in head and b"hacked" not in head
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Bcc"] is None
    body = parsed.get_content()  # type: ignore[attr-defined]
    assert "検出名: Evil.Sig Bcc: victim@example.com fake body line" in body
    assert not any(line.startswith(("Bcc", "fake body", "X-Injected")) for line in body.splitlines())
