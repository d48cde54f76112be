"""The IMAP source's parts one by one: the iterative response parser (aioimaplib#118), configuration and
password sources, claims and leases on both databases, systemd notify, and one real-Dovecot check that a
response of 1,500 EXPUNGE lines (no QRESYNC) does not kill the connection."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aioimaplib
import pytest
from sqlalchemy import select

from daemon.config import Config, ConfigError
from daemon.model import Arrival
from daemon.pipeline import Intake
from daemon.service import sd_notify, signature_age, watchdog_interval
from daemon.sources.imap import (
    ImapConfig,
    ImapError,
    ImapSession,
    load_imap_config,
    parse_internaldate,
    read_password,
    try_login,
    uid_set,
)
from daemon.sources.imap.client import ImapProtocol
from daemon.sources.imap.responses import (
    ShortLiteral,
    parse_delimiter,
    parse_folder_names,
    parse_literals,
    parse_meta,
    parse_search,
    parse_uidvalidity,
)
from daemon.store import claims
from daemon.store.db import ImapClaim, Message, now_utc
from devkit.dovecot import Dovecot


# -- small pure parts -------------------------------------------------------------------------------
def test_uid_set_compresses_ranges() -> None:
    assert uid_set([1, 2, 3, 7, 9, 10, 3]) == "1:3,7,9:10"
    assert uid_set([42]) == "42"


def test_internaldate_keeps_its_offset() -> None:
    when = parse_internaldate(" 6-Jan-2026 09:15:00 +0900")
    assert when == dt.datetime(2026, 1, 6, 0, 15, tzinfo=dt.UTC)
    assert when.utcoffset() == dt.timedelta(hours=9)
    assert parse_internaldate("garbage") is None


def test_literals_are_read_whether_the_uid_comes_before_or_after_them() -> None:
    lines = [b"1 FETCH (UID 7 BODY[] {5}", bytearray(b"hello"), b")",
             b"2 FETCH (BODY[] {3}", bytearray(b"abc"), b" UID 9)",
             b"3 FETCH (UID 11 BODY[] {2}", bytearray(b"zz"), b")",  # not asked for: ignored
             b"Fetch completed."]
    assert parse_literals(lines, "", [7, 9]) == {7: b"hello", 9: b"abc"}
    header = [b"1 FETCH (UID 7 BODY[HEADER] {4}", bytearray(b"A: b"), b")", b"Fetch completed."]
    assert parse_literals(header, "HEADER", [7]) == {7: b"A: b"}
    assert parse_literals(header, "", [7]) == {}  # a header block is not the whole message
    with pytest.raises(ShortLiteral):
        parse_literals([b"1 FETCH (UID 7 BODY[] {9}", bytearray(b"cut"), b")"], "", [7])


def test_answers_of_select_list_search_and_fetch() -> None:
    assert parse_uidvalidity([b"OK [UIDVALIDITY 3857529045] UIDs valid", b"Select completed."]) == 3857529045
    assert parse_uidvalidity([b"Select completed."]) == 0
    assert parse_delimiter([b'(\\Noselect) "/" ""']) == "/"
    assert parse_delimiter([b"(\\Noselect) NIL \"\""]) is None
    assert parse_folder_names([b'(\\HasNoChildren) "." "Intake.Accepted"', b'(\\HasChildren) "." INBOX']) == {
        "Intake.Accepted", "INBOX"}
    assert parse_search([b"SEARCH 5 3 3 9", b"Search completed."]) == [3, 5, 9]
    metas = parse_meta([b'2 FETCH (UID 9 RFC822.SIZE 1234 INTERNALDATE " 6-Jan-2026 09:15:00 +0900")',
                        b"3 FETCH (UID 10 RFC822.SIZE 5)", b"Fetch completed."], [9, 10])
    assert [(m.uid, m.size) for m in metas] == [(9, 1234), (10, 5)]
    assert metas[0].internaldate == parse_internaldate(" 6-Jan-2026 09:15:00 +0900") and metas[1].internaldate is None


def _feed_expunges(protocol: aioimaplib.IMAP4ClientProtocol, n: int) -> aioimaplib.Command:
    loop = asyncio.get_running_loop()
    protocol.state = aioimaplib.SELECTED
    command = aioimaplib.Command("NOOP", "A1", loop=loop)
    protocol.pending_async_commands["NOOP"] = command
    data = b"".join(b"* %d EXPUNGE\r\n" % 1 for _ in range(n)) + b"A1 OK NOOP completed.\r\n"
    protocol.data_received(data)
    return command


async def test_one_response_of_5000_lines_parses_without_recursion() -> None:
    loop = asyncio.get_running_loop()
    ours = ImapProtocol(loop, lambda _exc: None)
    command = _feed_expunges(ours, 5000)
    await asyncio.wait_for(command.wait(), 5)
    assert command.response.result == "OK" and len(command.response.lines) == 5001
    # aioimaplib 2.0.3's own parser recurses once per line: this is the bug the subclass avoids.
    stock = aioimaplib.IMAP4ClientProtocol(loop)
    with pytest.raises(RecursionError):
        _feed_expunges(stock, 5000)


# -- configuration ----------------------------------------------------------------------------------
def _config(tmp_path: Path, imap: object) -> Config:
    return Config(data_dir=tmp_path, database_url="sqlite://", rules_path=tmp_path / "r.toml", raw={"imap": imap})


def test_password_sources_and_never_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "imap-password").write_text("from-credential")
    assert read_password({}, {"INTAKE_IMAP_PASSWORD": "from-env"}) == "from-env"
    assert read_password({"password_file": str(tmp_path / "pw")}, {}) == "from-file"
    assert read_password({}, {"CREDENTIALS_DIRECTORY": str(creds)}) == "from-credential"
    with pytest.raises(ConfigError, match=r"imap\.password: not allowed"):
        read_password({"password": "x"}, {"INTAKE_IMAP_PASSWORD": "y"})
    with pytest.raises(ConfigError, match="no password"):
        read_password({}, {})
    with pytest.raises(ConfigError, match="password_file: cannot be read"):
        read_password({"password_file": str(tmp_path / "missing")}, {})


def test_imap_config_validation(tmp_path: Path) -> None:
    env = {"INTAKE_IMAP_PASSWORD": "s3cret-Zq9"}
    base = {"host": "mail.example.go.jp", "user": "comments"}
    cfg = load_imap_config(_config(tmp_path, base), env)
    assert isinstance(cfg, ImapConfig)
    assert cfg.security == "tls" and cfg.port == 993 and cfg.account == "comments@mail.example.go.jp"
    assert "s3cret-Zq9" not in repr(cfg)  # the password is not in reprs or logs
    assert load_imap_config(_config(tmp_path, {**base, "enabled": False}), env) is None
    bad = [
        ({"security": "plain"}, "loopback"),
        ({"folders": {"accepted": "INBOX"}}, "watched mailbox"),
        ({"batch_size": 1000}, "batch_size"),
        ({"idle_interval": 3600}, "idle_interval"),
        ({"folders": {"spam": "X"}}, r"folders\.spam"),
        ({"port": "993"}, r"imap\.port: wrong type"),
        ({"poll_interval": 0}, r"^imap\.poll_interval: must be positive$"),
        ({"command_timeout": "60"}, r"imap\.command_timeout: wrong type str"),
        ({"idle": 1}, r"imap\.idle: wrong type int"),
        ({"max_in_flight": True}, r"imap\.max_in_flight: wrong type bool"),
        ("not a table", r"^\[imap\]: must be a table$"),
    ]
    for extra, message in bad:
        with pytest.raises(ConfigError, match=message):
            load_imap_config(_config(tmp_path, {**base, **extra} if isinstance(extra, dict) else extra), env)
    plain = load_imap_config(_config(tmp_path, {**base, "host": "127.0.0.1", "security": "plain"}), env)
    assert plain is not None and plain.port == 143


# -- systemd ----------------------------------------------------------------------------------------
def test_sd_notify_sends_datagrams_and_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert sd_notify("READY=1", "STATUS=idle, 0 pending", env={"NOTIFY_SOCKET": str(path)})
        assert sock.recv(100) == b"READY=1\nSTATUS=idle, 0 pending"
        # Nobody reads: the queue fills, and sd_notify gives up instead of blocking the event loop.
        results = [sd_notify("WATCHDOG=1", env={"NOTIFY_SOCKET": str(path)}) for _ in range(2000)]
        assert not all(results)
    assert not sd_notify("READY=1", env={})
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None


def test_signature_age_from_clamd_version() -> None:
    now = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
    assert signature_age("ClamAV 1.4.6/27000/Tue Nov 24 12:00:00 2026", now) == dt.timedelta(days=2)
    assert signature_age("ClamAV 1.4.6", now) is None


# -- claims and leases (SQLite and PostgreSQL) ------------------------------------------------------
def test_claims_are_exclusive_expire_and_yield_to_records(intake: Intake) -> None:
    sessions = intake.sessions
    a, b = "hostA:1:aaaa", "hostB:2:bbbb"
    got = claims.claim_many(sessions, "acct", "INBOX", 7, [1, 2, 3], a, 60)
    assert got == {1: claims.CLAIMED, 2: claims.CLAIMED, 3: claims.CLAIMED}
    assert claims.claim_many(sessions, "acct", "INBOX", 7, [2, 3, 4], b, 60) == {
        2: claims.BUSY, 3: claims.BUSY, 4: claims.CLAIMED}
    assert claims.claim_many(sessions, "acct", "INBOX", 8, [2], b, 60) == {2: claims.CLAIMED}  # other UIDVALIDITY
    # a's lease runs out (a died on another host): b takes uid 3 over
    with sessions.begin() as s:
        for c in s.scalars(select(ImapClaim).where(ImapClaim.owner == a, ImapClaim.uid == 3)):
            c.lease_until = now_utc() - dt.timedelta(seconds=1)
    assert claims.claim_many(sessions, "acct", "INBOX", 7, [3], b, 60) == {3: claims.CLAIMED}
    # a record for uid 1 exists: it is recorded, whoever claimed it
    key = claims.ImapKey("acct", "INBOX", 7, 1)
    from mails import mail

    intake.process(Arrival(raw=mail(), source="imap", imap=key.as_dict()))
    assert claims.claim_many(sessions, "acct", "INBOX", 7, [1], b, 60) == {1: claims.RECORDED}
    assert claims.recorded(sessions, "acct", "INBOX", 7, [1, 2, 3])[1][1] == "accepted"
    # … but a, which recorded it and still holds a live claim, keeps that claim until its move is done:
    # b may not move it at the same time (two MOVEs of one UID can leave two copies in the folder).
    assert claims.claim_recorded(sessions, "acct", "INBOX", 7, [1], b, 60) == []
    claims.release_owner(sessions, b)
    with sessions() as s:
        left = {(c.uidvalidity, c.uid, c.owner) for c in s.scalars(select(ImapClaim))}
    assert left == {(7, 1, a), (7, 2, a)}
    claims.release_uids(sessions, "acct", "INBOX", 7, [1], a)
    assert claims.claim_recorded(sessions, "acct", "INBOX", 7, [1], b, 60) == [1]


def test_dead_local_daemons_leases_are_released_at_start(intake: Intake) -> None:
    sessions = intake.sessions
    me = claims.new_owner()
    host = me.split(":")[0]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = f"{host}:{int(dead.stdout)}:dead"
    alive_owner = f"{host}:{os.getpid()}:live"
    remote_owner = f"elsewhere:{int(dead.stdout)}:far"
    for i, owner in enumerate((dead_owner, alive_owner, remote_owner)):
        claims.claim_many(sessions, "acct", "INBOX", 1, [i], owner, 600)
    assert claims.release_dead_local(sessions, me) == 1
    with sessions() as s:
        owners = {c.owner for c in s.scalars(select(ImapClaim))}
    assert owners == {alive_owner, remote_owner}


def test_held_record_claims(intake: Intake) -> None:
    from mails import mail

    class Down:
        def scan(self, data: bytes) -> None:
            from daemon.scanner import ScanUnavailable

            raise ScanUnavailable("clamd_unreachable:test")

    scanner, intake.scanner = intake.scanner, Down()  # type: ignore[assignment]
    rid = intake.process(Arrival(raw=mail(body="held"), source="ingest")).id
    intake.scanner = scanner
    assert claims.held_records(intake.sessions) == [rid]
    assert claims.claim_held(intake.sessions, rid, "h:1:a", 60)
    assert not claims.claim_held(intake.sessions, rid, "h:2:b", 60)
    assert claims.held_records(intake.sessions) == []  # leased: not offered to others
    intake.retry(rid)
    with intake.sessions() as s:
        msg = s.get(Message, rid)
        assert msg is not None and msg.status == "accepted" and msg.lease_owner is None


# -- a real server: 1,500 EXPUNGE lines in one response ---------------------------------------------
@pytest.fixture
def server() -> Iterator[Dovecot]:
    dovecot = Dovecot(Path(tempfile.mkdtemp(prefix="intake-test-dovecot-")))
    dovecot.start()
    yield dovecot
    dovecot.stop()
    shutil.rmtree(dovecot.workdir, ignore_errors=True)


async def test_many_expunges_from_another_client_arrive_in_one_response(server: Dovecot) -> None:
    n = 1500
    await asyncio.to_thread(server.append_many, [b"Subject: %d\r\n\r\nx\r\n" % i for i in range(n)])
    cfg = ImapConfig(host="127.0.0.1", port=server.port, security="plain", user=server.user,
                     password=server.password, use_qresync=False, command_timeout=20)
    session = ImapSession(cfg)
    await session.open()
    try:
        assert len(await session.search_all()) == n

        def expunge_all() -> None:
            other = server.client()
            other.select("INBOX")
            other.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
            other.expunge()
            other.logout()

        await asyncio.to_thread(expunge_all)
        before = session.protocol.bytes_received
        await session.noop()  # the server sends the 1,500 EXPUNGE lines with this response
        assert session.protocol.bytes_received - before > n * 10
        assert await session.search_all() == []
    finally:
        await session.close()


async def test_try_login_says_what_to_fix(server: Dovecot) -> None:
    cfg = ImapConfig(host="127.0.0.1", port=server.port, security="plain", user=server.user,
                     password=server.password, command_timeout=20)
    assert await try_login(cfg) == f"127.0.0.1:{server.port}: login as the configured user works, INBOX opens"
    with pytest.raises(ImapError, match=r": login refused: check imap\.user and the password"):
        await try_login(ImapConfig(**{**cfg.__dict__, "password": "wrong-password"}))
    with pytest.raises(ImapError, match=r"mailbox 'Nowhere' cannot be opened: check imap\.mailbox"):
        await try_login(ImapConfig(**{**cfg.__dict__, "mailbox": "Nowhere"}))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    with pytest.raises(ImapError, match=r"unreachable \(ConnectionRefusedError\): check imap\.host and port"):
        await try_login(ImapConfig(**{**cfg.__dict__, "port": closed}))
    with pytest.raises(ImapError, match=r"TLS failed \(SSL\w*Error\): check imap\.cafile"):
        await try_login(ImapConfig(**{**cfg.__dict__, "security": "tls"}))  # TLS to a plain-text port
