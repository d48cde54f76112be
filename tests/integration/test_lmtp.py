"""Direct delivery over LMTP / SMTP (issue 5), with real parts only: aiosmtpd listeners on a Unix socket
and a loopback TCP port served on the test's own event loop (or in a subprocess for the kill tests),
swaks and smtplib as senders, a raw-socket LMTP client that reads every reply, the real clamd, and
SQLite and PostgreSQL. Faults are real: a database that refuses connections, a raw store whose folder
is a file (the tests run as root, so a read-only folder would not stop a write), a clamd socket with
nobody behind it, and kill -9 of the listener process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon import logs
from daemon.config import PACKAGE_ROOT, Config, ConfigError
from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.scanner import Scanner
from daemon.sources.lmtp import (
    Delivery,
    ListenerError,
    LmtpConfig,
    on_door_refusal,
    start_lmtp,
    stop_lmtp,
)
from daemon.stages.identity import content_identity
from daemon.store import records
from daemon.store.db import DoorRefusal, Message, make_engine, make_sessionmaker
from daemon.store.raw import RawStore
from daemon.store.refusals import door_refusal_count

from mails import mail

SENDER = "taro.yamada@example.jp"
RCPT = "pubcomment@example.go.jp"
TIMEOUT = 60.0


# -- a raw LMTP/SMTP client that reads every reply ------------------------------------------------------
class Closed(Exception):
    """The server closed the connection without a (complete) reply."""


class Client:
    def __init__(self, address: str | tuple[str, int]) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(address)
        self.buf = b""
        self.greeting = self.reply()

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> list[str]:
        """One reply (all its lines); the last line has a space after the code."""
        lines = []
        while True:
            line = self._line().decode()
            lines.append(line)
            if line[3:4] != "-":
                return lines

    def cmd(self, line: str) -> list[str]:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def send_data(self, raw: bytes) -> None:
        """The message, dot-stuffed, and the end-of-data dot."""
        body = b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in raw.split(b"\r\n"))
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.sock.sendall(body + b".\r\n")

    def transaction(self, raw: bytes, rcpts: list[str], size: int | None = None) -> tuple[list[str], list[str]]:
        """MAIL, RCPT×n, DATA; returns (the RCPT replies, one reply per accepted recipient after DATA)."""
        mail_from = f"MAIL FROM:<{SENDER}>" + (f" SIZE={size}" if size is not None else "")
        reply = self.cmd(mail_from)
        if not reply[-1].startswith("250"):
            return [], reply
        rcpt_replies = [self.cmd(f"RCPT TO:<{r}>")[-1] for r in rcpts]
        accepted = sum(r.startswith("250") for r in rcpt_replies)
        assert self.cmd("DATA")[-1].startswith("354")
        self.send_data(raw)
        return rcpt_replies, [self.reply()[-1] for _ in range(accepted)]


def lmtp_session(address: str | tuple[str, int]) -> Client:
    client = Client(address)
    assert client.greeting[-1].startswith("220")
    client.lhlo = client.cmd("LHLO mta.example.go.jp")  # type: ignore[attr-defined]
    return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="lmtp-", dir="/tmp") as d:
        yield Path(d)


@contextlib.asynccontextmanager
async def serving(intake: Intake, sockdir: Path, **kw: object) -> AsyncIterator[LmtpConfig]:
    options: dict[str, object] = {
        "enabled": True, "socket": str(sockdir / "lmtp.sock"), "port": free_port(),
        "smtp_enabled": True, "smtp_port": free_port(), "hostname": "intake.test",
    }
    options.update({k: v for k, v in kw.items() if k in LmtpConfig.__dataclass_fields__})
    config = LmtpConfig(**options)  # type: ignore[arg-type]
    servers = await start_lmtp(intake, config, **{k: v for k, v in kw.items()  # type: ignore[arg-type]
                                                   if k in ("on_refusal", "before_reply")})
    try:
        yield config
    finally:
        await stop_lmtp(servers)


def rows(intake: Intake) -> list[Message]:
    with intake.sessions() as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def stored_files(data_dir: Path) -> list[Path]:
    return [p for p in data_dir.rglob("*") if p.is_file() and p.name != "intake.db" and "intake.db" not in p.name]


def comment(n: str) -> bytes:
    return mail(body=f"本編 P.{n} について意見を提出します。", subject=f"意見 {n}", sender=SENDER, received=None)


# -- Done when 1: recorded before the 250 ----------------------------------------------------------------
async def test_swaks_over_lmtp_unix_socket_is_recorded_before_the_250(
    intake: Intake, sockdir: Path, tmp_path: Path, config: Config
) -> None:
    raw = comment("1")
    (tmp_path / "m.eml").write_bytes(raw)
    seen: list[tuple[Delivery, Message | None, bytes | None]] = []
    observer = make_sessionmaker(make_engine(config.database_url))  # another connection than the daemon's

    def read_database(delivery: Delivery) -> None:
        with observer() as session:
            msg = session.get(Message, delivery.record_id) if delivery.record_id else None
            on_disk = intake.raw_store.locate(msg.sha256) if msg and msg.sha256 else None
            seen.append((delivery, msg, on_disk.read_bytes() if on_disk else None))

    async def before_reply(delivery: Delivery) -> None:
        await asyncio.to_thread(read_database, delivery)

    started = dt.datetime.now(dt.UTC)
    async with serving(intake, sockdir, before_reply=before_reply) as cfg:
        proc = await asyncio.create_subprocess_exec(
            "swaks", "--protocol", "LMTP", "--socket", cfg.socket, "--from", SENDER, "--to", RCPT,
            "--data", str(tmp_path / "m.eml"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
    observer.kw["bind"].dispose()
    transcript = out.decode(errors="replace")
    assert proc.returncode == 0, transcript
    [(delivery, msg, stored)] = seen
    # At the moment of the reply, the record was committed and its raw bytes were on disk.
    assert msg is not None and msg.status == "accepted" and msg.source == "lmtp"
    assert delivery.reply.startswith("250 2.0.0") and f"recorded as {msg.id}" in transcript
    assert started <= msg.received_at == delivery.received_at <= dt.datetime.now(dt.UTC)
    assert msg.received_source == "lmtp"
    # The raw store keeps the message as delivered plus our one trace field, which the identity drops.
    assert stored is not None and stored.startswith(b"Received: from ")
    assert b"listener lmtp-unix) with LMTP;" in stored.split(b"\r\n\r\n", 1)[0]
    header_end = stored.index(b"\r\nFrom: ") + 2
    assert stored[header_end:] == raw + b"\r\n"  # swaks always sends CRLF before the final dot
    assert msg.content_id == content_identity(raw + b"\r\n")  # the identity ignores our trace field


async def test_smtplib_over_lmtp_and_smtp_and_swaks_over_tcp(intake: Intake, sockdir: Path) -> None:
    import smtplib

    async with serving(intake, sockdir) as cfg:
        def send() -> None:
            with smtplib.LMTP(cfg.socket) as lmtp:  # a path: smtplib.LMTP speaks over the Unix socket
                assert lmtp.sendmail(SENDER, [RCPT], comment("2")) == {}
            with smtplib.SMTP("127.0.0.1", cfg.smtp_port, timeout=TIMEOUT) as smtp:
                assert smtp.sendmail(SENDER, [RCPT], comment("3")) == {}
                assert "size" not in smtp.esmtp_features  # the intake refuses oversize mail itself (README)

        await asyncio.to_thread(send)
        swaks = await asyncio.create_subprocess_exec(
            "swaks", "--protocol", "LMTP", "--server", f"127.0.0.1:{cfg.port}", "--from", SENDER, "--to", RCPT,
            "--body", "本編 P.4 について", stdout=asyncio.subprocess.DEVNULL)
        assert await swaks.wait() == 0
    recs = rows(intake)
    assert [(m.source, m.status) for m in recs] == [("lmtp", "accepted"), ("smtp", "accepted"), ("lmtp", "accepted")]
    assert all(intake.raw_store.locate(m.sha256 or "") for m in recs)


async def test_the_same_mail_over_lmtp_and_from_a_file_stores_the_same_text(intake: Intake, sockdir: Path) -> None:
    # Issue 14.3: over LMTP the body text kept CRLF (chars 112) where `intake ingest` of the file gave LF (103).
    body = "総務省 御中\n\n標記の件について、本編（案）P.12 に意見します。\n出力側の検証も明記すべきです。\n"
    over_lmtp = mail(body=body, subject="意見 LF", sender=SENDER, received=None)  # CRLF, as an MTA sends it
    assert over_lmtp.count(b"\r\n") > 5
    # The file as saved on disk: LF line ends (and a field more, so that it is not a duplicate of the first).
    from_file = over_lmtp.replace(b"\r\n", b"\n").replace(b"Subject:", b"X-Copy: file\nSubject:", 1)
    async with serving(intake, sockdir) as cfg:
        def send() -> None:
            with smtplib.LMTP(cfg.socket) as lmtp:
                assert lmtp.sendmail(SENDER, [RCPT], over_lmtp) == {}

        await asyncio.to_thread(send)
    intake.process(Arrival(raw=from_file, source="ingest"))
    with intake.sessions() as session:
        msgs = list(session.scalars(select(Message).order_by(Message.id)))
        assert [(m.source, m.status) for m in msgs] == [("lmtp", "accepted"), ("ingest", "accepted")]
        lmtp_rec, file_rec = (records.to_contract(m) for m in msgs)
    assert lmtp_rec["texts"] == file_rec["texts"] and lmtp_rec["texts"][0]["chars"] > 0
    assert [c["text"] for c in lmtp_rec["comments"]] == [c["text"] for c in file_rec["comments"]]
    assert not any("\r" in c["text"] for c in lmtp_rec["comments"])


# -- LMTP: one reply per accepted recipient -------------------------------------------------------------
async def test_lmtp_answers_once_per_recipient_and_records_the_message_once(intake: Intake, sockdir: Path) -> None:
    async with serving(intake, sockdir, max_recipients=3) as cfg:
        def talk() -> tuple[list[str], list[str], list[str], list[str], list[str]]:
            c = lmtp_session(("127.0.0.1", cfg.port))
            rcpt1, data1 = c.transaction(comment("5"), [RCPT, "iken@example.go.jp", "b@example.go.jp", "x@e.jp"])
            rcpt2, data2 = c.transaction(comment("6"), [RCPT])  # the connection is reused, as Postfix does
            assert c.cmd("QUIT")[-1].startswith("221")
            c.close()
            return c.lhlo, rcpt1, data1, rcpt2, data2  # type: ignore[attr-defined]

        lhlo, rcpt1, data1, _, data2 = await asyncio.to_thread(talk)
    assert not [line for line in lhlo if "SIZE" in line]  # not announced: the MTA hands oversize mail to us
    assert [r[:3] for r in rcpt1] == ["250", "250", "250", "452"]
    assert len(data1) == 3 and len(set(data1)) == 1 and data1[0].startswith("250 2.0.0")
    assert len(data2) == 1 and data2[0].startswith("250 2.0.0")
    recs = rows(intake)
    assert [d for d in (data1[0], data2[0])] == [f"250 2.0.0 Ok: recorded as {m.id}" for m in recs]
    # Exactly the bytes the client sent, after the one trace field.
    stored = intake.raw_store.get(recs[0].sha256 or "")
    assert stored.startswith(b"Received: ") and stored.endswith(b"\r\n" + comment("5"))
    assert stored.count(b"\r\nFrom: ") == 1 and len(stored) - len(comment("5")) == stored.index(b"From: ")


# -- Done when 2: 552 at the door, nothing stored --------------------------------------------------------
async def test_oversize_gets_552_with_and_without_declared_size_and_is_not_stored(
    intake: Intake, sockdir: Path, config: Config
) -> None:
    limit = 64 * 1024
    intake.rules = dataclasses.replace(intake.rules, max_message_bytes=limit)
    big = mail(body="意見 " + "あ" * limit, sender=SENDER, received=None)
    assert len(big) > limit
    refusals: list[tuple[int, dt.datetime]] = []
    stream = io.StringIO()
    logs.configure("INFO", stream=stream)

    def hook(size: int, when: dt.datetime) -> None:
        refusals.append((size, when))
        on_door_refusal(size, when)

    async with serving(intake, sockdir, on_refusal=hook) as cfg:
        def talk() -> tuple[list[str], list[str], list[str], list[str]]:
            c = lmtp_session(cfg.socket)
            declared = c.cmd(f"MAIL FROM:<{SENDER}> SIZE={len(big)}")
            rcpt, undeclared = c.transaction(big, [RCPT, "iken@example.go.jp"])  # no SIZE=: 552 after DATA
            _, small = c.transaction(comment("7"), [RCPT])  # the session is still usable
            c.close()
            return declared, rcpt, undeclared, small

        declared, rcpt, undeclared, small = await asyncio.to_thread(talk)
    assert c_code(declared) == "552"
    assert [r[:3] for r in rcpt] == ["250", "250"]
    assert [r[:9] for r in undeclared] == ["552 5.3.4", "552 5.3.4"]  # one per recipient (LMTP)
    assert small[0].startswith("250")
    # Only the small message reached the raw store: no file, no temp file, of the oversize one.
    [msg] = rows(intake)
    files = stored_files(config.data_dir)
    assert [p.name for p in files] == [f"{msg.sha256}.eml"]
    # Counted (for `intake stats`), with the hook called and a structured log line; no personal data.
    with intake.sessions() as session:
        assert door_refusal_count(session) == 2
        counted = list(session.scalars(select(DoorRefusal).order_by(DoorRefusal.id)))
    assert [(r.stage, r.source, r.reason) for r in counted] == [("mail_from", "lmtp", "too_large"),
                                                                ("data", "lmtp", "too_large")]
    assert counted[0].size == len(big) and counted[1].size > limit
    assert [s for s, _ in refusals] == [r.size for r in counted]
    events = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    assert [e["size"] for e in events if e["event"] == "door_refusal"] == [r.size for r in counted]
    text = stream.getvalue()
    assert SENDER not in text and RCPT not in text and "yamada" not in text


async def test_a_message_exactly_at_the_limit_is_accepted_despite_our_trace_field(
    intake: Intake, sockdir: Path
) -> None:
    limit = 64 * 1024
    intake.rules = dataclasses.replace(intake.rules, max_message_bytes=limit)
    base = mail(body="x", sender=SENDER, received=None)
    fill = limit - len(base) + 1  # bytes of body replacing the single "x", in lines of 78 + CRLF
    body = (b"x" * 78 + b"\r\n") * (fill // 80)
    body += b"x" * (fill - len(body))
    exact = base.replace(b"\r\n\r\nx", b"\r\n\r\n" + body, 1)
    assert len(exact) == limit
    async with serving(intake, sockdir) as cfg:
        def talk() -> list[str]:
            c = lmtp_session(cfg.socket)
            _, replies = c.transaction(exact, [RCPT])
            c.close()
            return replies

        replies = await asyncio.to_thread(talk)
    assert replies[0].startswith("250")
    [msg] = rows(intake)
    assert msg.status == "accepted" and msg.size > limit  # the stored size includes our Received: field


def c_code(reply: list[str]) -> str:
    return reply[-1][:3]


async def test_rules_limit_replaces_aiosmtpd_default_of_32_mib(intake: Intake, sockdir: Path, config: Config) -> None:
    limit = intake.rules.max_message_bytes
    assert limit == 20 * 1024 * 1024  # the consultation's R3, below aiosmtpd's 32 MiB default
    big = mail(body="x", sender=SENDER, received=None)
    big = big.replace(b"\r\n\r\nx", b"\r\n\r\n" + (b"y" * 76 + b"\r\n") * (limit // 78 + 1000), 1)
    assert limit < len(big) < 32 * 1024 * 1024
    async with serving(intake, sockdir) as cfg:
        def talk() -> tuple[list[str], list[str]]:
            c = lmtp_session(("127.0.0.1", cfg.port))
            _, replies = c.transaction(big, [RCPT])
            c.close()
            return c.lhlo, replies  # type: ignore[attr-defined]

        lhlo, replies = await asyncio.to_thread(talk)
    assert not [line for line in lhlo if "SIZE" in line]
    assert [r[:3] for r in replies] == ["552"]
    assert rows(intake) == [] and stored_files(config.data_dir) == []


async def test_a_reload_applies_to_a_connection_already_open(intake: Intake, sockdir: Path) -> None:
    """The door reads the limit from the rules in force (a SIGHUP replaces `intake.rules`), not from the
    moment the MTA connected: Postfix keeps its LMTP connections open across a reload."""
    async with serving(intake, sockdir, smtp_enabled=False, port=0) as cfg:
        client = await asyncio.to_thread(lmtp_session, cfg.socket)
        limit = 64 * 1024
        intake.rules = dataclasses.replace(intake.rules, max_message_bytes=limit)  # what a reload does
        big = mail(body="意見 " + "あ" * limit, sender=SENDER, received=None)

        def talk() -> tuple[list[str], list[str], list[str]]:
            lhlo = client.cmd("LHLO mta.example.go.jp")
            declared = client.cmd(f"MAIL FROM:<{SENDER}> SIZE={limit + 1}")
            _, undeclared = client.transaction(big, [RCPT, "iken@example.go.jp"])
            assert client.cmd("QUIT")[-1].startswith("221")  # answered once the 552 after DATA is counted
            client.close()
            return lhlo, declared, undeclared

        lhlo, declared, undeclared = await asyncio.to_thread(talk)
    assert lhlo[-1].startswith("250") and not [line for line in lhlo if "SIZE" in line]
    assert declared == ["552 5.3.4 Message size exceeds fixed maximum message size"]
    assert [r[:9] for r in undeclared] == ["552 5.3.4", "552 5.3.4"]
    assert rows(intake) == []
    with intake.sessions() as session:
        assert door_refusal_count(session) == 2


# -- Durable before 250: 451 for infrastructure faults, 250 for a scanner that is down -------------------
async def test_database_down_gives_451_per_recipient_then_the_retry_is_recorded(
    intake: Intake, sockdir: Path, db_url: str, config: Config
) -> None:
    working = intake.sessions
    if db_url.startswith("sqlite"):
        down_url = f"sqlite:///{sockdir / 'no-such-folder' / 'intake.db'}"  # cannot be opened
    else:
        down_url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/intake"  # nobody listens there
    intake.sessions = make_sessionmaker(make_engine(down_url))
    raw = comment("8")
    async with serving(intake, sockdir) as cfg:
        def deliver() -> list[str]:
            c = lmtp_session(cfg.socket)
            _, replies = c.transaction(raw, [RCPT, "iken@example.go.jp"])
            c.close()
            return replies

        down = await asyncio.to_thread(deliver)
        intake.sessions.kw["bind"].dispose()
        intake.sessions = working  # the database is back; the MTA retries
        again = await asyncio.to_thread(deliver)
    assert [r[:9] for r in down] == ["451 4.3.0", "451 4.3.0"]
    assert [r[:3] for r in again] == ["250", "250"]
    [msg] = rows(intake)
    assert msg.status == "accepted" and msg.content_id == content_identity(raw)


async def test_raw_store_failure_gives_451_and_no_record_then_the_retry_is_recorded(
    intake: Intake, sockdir: Path, tmp_path: Path
) -> None:
    working = intake.raw_store
    blocked = tmp_path / "raw-is-a-file"
    blocked.write_bytes(b"")  # the raw store's folder is a file: every write fails with NotADirectoryError
    intake.raw_store = RawStore(blocked, tmp_path / "q")
    raw = comment("9")
    async with serving(intake, sockdir) as cfg:
        def deliver() -> list[str]:
            c = lmtp_session(("127.0.0.1", cfg.port))
            _, replies = c.transaction(raw, [RCPT])
            c.close()
            return replies

        failed = await asyncio.to_thread(deliver)
        assert rows(intake) == []  # nothing committed: the raw bytes come first
        intake.raw_store = working
        again = await asyncio.to_thread(deliver)
    assert [r[:9] for r in failed] == ["451 4.3.0"]
    assert again[0].startswith("250")
    [msg] = rows(intake)
    assert msg.status == "accepted"


async def test_scanner_down_is_held_and_answered_250(intake: Intake, sockdir: Path) -> None:
    intake.scanner = Scanner(f"unix://{sockdir / 'no-clamd.sock'}", timeout=5)  # nobody listens there
    async with serving(intake, sockdir) as cfg:
        def deliver() -> list[str]:
            c = lmtp_session(cfg.socket)
            _, replies = c.transaction(comment("10"), [RCPT])
            c.close()
            return replies

        replies = await asyncio.to_thread(deliver)
    [msg] = rows(intake)
    assert replies == [f"250 2.0.0 Ok: recorded as {msg.id}"]
    assert msg.status == "held" and msg.reasons == ["scan_unavailable"]
    assert intake.raw_store.locate(msg.sha256 or "") is not None  # safe in the raw store, retried from there


async def test_stopping_lets_a_transaction_in_flight_get_its_250(intake: Intake, sockdir: Path) -> None:
    reached, release = asyncio.Event(), asyncio.Event()

    async def before_reply(_delivery: Delivery) -> None:
        reached.set()
        await release.wait()

    cfg = LmtpConfig(enabled=True, socket=str(sockdir / "lmtp.sock"), hostname="intake.test")
    servers = await start_lmtp(intake, cfg, before_reply=before_reply)

    def deliver() -> list[str]:
        c = lmtp_session(cfg.socket)
        _, replies = c.transaction(comment("11"), [RCPT])
        c.close()
        return replies

    client = asyncio.create_task(asyncio.to_thread(deliver))
    await reached.wait()  # recorded, reply not yet written
    stopping = asyncio.create_task(stop_lmtp(servers))
    while Path(cfg.socket).exists():  # the listener is closed first (yields to the loop, no timed wait)
        await asyncio.sleep(0)
    assert not stopping.done()  # ... and the stop waits for the reply
    release.set()
    replies = await client
    await stopping
    [msg] = rows(intake)
    assert replies == [f"250 2.0.0 Ok: recorded as {msg.id}"]


# -- Done when 3: kill -9 between DATA and 250 -----------------------------------------------------------
class ServerProcess:
    def __init__(self, env: dict[str, str], log: Path, crash: str = "") -> None:
        run_env = {**env, "PYTHONPATH": f"{PACKAGE_ROOT}{os.pathsep}{PACKAGE_ROOT / 'tests'}"}
        if crash:
            run_env["INTAKE_TEST_CRASH_AT"] = crash
        self.log = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, str(PACKAGE_ROOT / "tests" / "lmtp_server.py")],
                                     env=run_env, stdout=subprocess.PIPE, stderr=self.log)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # waits until it listens (or exits)
        assert line == b"ready\n", log.read_text(errors="replace")[-3000:]

    def stop(self, terminate: bool = True) -> int:
        if terminate and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(TIMEOUT)
        self.log.close()
        return code


@pytest.mark.parametrize("point", ["mid_data", "before_process", "after_raw", "after_commit"])
def test_kill_between_data_and_250_then_the_retry_is_recorded_once(
    point: str, env: dict[str, str], config: Config, sockdir: Path, tmp_path: Path
) -> None:
    sock = sockdir / "lmtp.sock"
    conf = tmp_path / "intake.toml"
    conf.write_text(f'[lmtp]\nenabled = true\nsocket = "{sock}"\nsocket_mode = "0660"\nhostname = "intake.test"\n')
    run_env = {**env, "INTAKE_CONFIG": str(conf)}
    log = tmp_path / "server.log"
    raw = comment(f"kill-{point}")

    server = ServerProcess(run_env, log, crash="" if point == "mid_data" else point)
    c = lmtp_session(str(sock))
    c.cmd(f"MAIL FROM:<{SENDER}>")
    c.cmd(f"RCPT TO:<{RCPT}>")
    assert c.cmd("DATA")[-1].startswith("354")
    if point == "mid_data":
        c.sock.sendall(raw[: len(raw) // 2])  # the DATA has not ended
        server.proc.send_signal(signal.SIGKILL)
        assert server.stop() == -signal.SIGKILL
    else:
        c.send_data(raw)
        assert server.stop(terminate=False) == 137  # it dies at that point by itself
    with pytest.raises((Closed, ConnectionResetError)):
        c.reply()  # the MTA got no 250
    c.close()

    # The MTA retries after the restart (the socket file the dead process left is taken over).
    server = ServerProcess(run_env, log)
    try:
        c = lmtp_session(str(sock))
        _, replies = c.transaction(raw, [RCPT])
        c.close()
    finally:
        assert server.stop() in (0, -signal.SIGTERM)
    assert len(replies) == 1 and replies[0].startswith("250 2.0.0")

    engine = make_engine(config.database_url)
    with make_sessionmaker(engine)() as session:
        recs = list(session.scalars(select(Message).where(Message.content_id == content_identity(raw))
                                    .order_by(Message.id)))
    engine.dispose()
    firsts = [m for m in recs if m.status != "duplicate"]
    assert len(firsts) == 1 and firsts[0].status == "accepted"  # recorded once
    if point == "after_commit":
        # The first delivery was committed before the kill: the retry is recognised by content identity.
        assert [m.status for m in recs] == ["accepted", "duplicate"] and recs[1].duplicate_of == recs[0].id
        assert replies[0] == f"250 2.0.0 Ok: recorded as {recs[1].id}"
    else:
        assert len(recs) == 1 and replies[0] == f"250 2.0.0 Ok: recorded as {recs[0].id}"
    server_log = log.read_text(errors="replace")
    assert SENDER not in server_log and RCPT not in server_log and "意見" not in server_log


# -- configuration and listener start ------------------------------------------------------------------
def test_lmtp_config_from_toml_table() -> None:
    cfg = LmtpConfig.from_config({"lmtp": {"enabled": True, "socket": "/run/intake/lmtp.sock", "socket_mode": "0660",
                                           "socket_group": "postfix", "port": 2424, "smtp_enabled": True,
                                           "smtp_port": 2525, "hostname": "intake.example.go.jp",
                                           "max_transactions": 2}})
    assert (cfg.enabled, cfg.socket_mode, cfg.port, cfg.smtp_port, cfg.max_transactions) == (True, 0o660, 2424, 2525, 2)
    assert LmtpConfig.from_config({}) == LmtpConfig() and not LmtpConfig().any_enabled
    assert LmtpConfig.from_config({"lmtp": {"socket_mode": 0o600}}).socket_mode == 0o600
    for bad, message in [({"port": "25"}, "lmtp.port: wrong type str"), ({"port": 70000}, "lmtp.port: must be"),
                         ({"enabled": 1}, "lmtp.enabled: wrong type int"), ({"sokcet": "/x"}, "lmtp.sokcet: unknown"),
                         ({"socket_mode": "rw"}, "lmtp.socket_mode: must be octal"),
                         ({"max_transactions": 0}, "lmtp.max_transactions: must be at least 1")]:
        with pytest.raises(ConfigError, match=message):
            LmtpConfig.from_config({"lmtp": bad})


async def test_a_live_socket_is_not_taken_over_and_a_stale_one_is(intake: Intake, sockdir: Path) -> None:
    async with serving(intake, sockdir, smtp_enabled=False, port=0) as cfg:
        assert oct(os.stat(cfg.socket).st_mode & 0o777) == oct(0o660)
        with pytest.raises(ListenerError, match="in use"):
            await start_lmtp(intake, cfg)
    assert not Path(cfg.socket).exists()  # removed on stop
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(cfg.socket)  # a socket file nobody listens on, as a killed daemon leaves it
    stale.close()
    servers = await start_lmtp(intake, cfg)
    await stop_lmtp(servers)


async def test_the_socket_appears_only_with_its_mode_set(intake: Intake, sockdir: Path) -> None:
    # Postfix connecting in the moment between bind and chmod was refused (EACCES) and deferred the mail.
    # A thread watches the path from before the start and records the mode it had when it first appeared.
    path = sockdir / "lmtp.sock"
    seen: list[int] = []
    started = threading.Event()

    def watch() -> None:
        started.set()
        while not seen:
            try:
                seen.append(os.lstat(path).st_mode & 0o777)
            except FileNotFoundError:
                continue

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started.wait()
    async with serving(intake, sockdir, smtp_enabled=False, port=0) as cfg:
        assert Path(cfg.socket) == path
        watcher.join(10)
        assert seen == [0o660]
        assert sorted(p.name for p in sockdir.iterdir()) == ["lmtp.sock"]  # no temporary name left behind
    assert not path.exists()  # removed on stop, under its real name


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    logs.configure("WARNING")

