"""Postfix in the loop (issue 15, item 2): a private Postfix 3.7 (devkit/postfix.py: its own config dir and
queue under a temp dir, 127.0.0.1 at a port of its own) relays to a real `intake run` over LMTP on a Unix
socket that Postfix's user reaches through group postfix, with the settings of deploy/postfix/ as installed.
Real parts only: Postfix, the daemon as a subprocess, the real clamd, SQLite and PostgreSQL. The database
fault is a real one, made on demand: a trigger that makes every insert into `messages` fail.
"""

from __future__ import annotations

import email.policy
import grp
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from test_imap import Daemon, intake_cli, wait_for

from daemon.config import Config
from daemon.stages.identity import content_identity
from daemon.store.db import Alert, DoorRefusal, Message, make_sessionmaker
from daemon.store.orphans import find_orphans
from daemon.store.raw import RawStore
from devkit.clamd import Clamd
from devkit.postfix import DEPLOY, Postfix, deploy_settings, postfix_dir

# scripts/setup installs Postfix; only a machine set up otherwise skips these, and never under CI.
pytestmark = pytest.mark.skipif(shutil.which("postfix") is None and not Path("/usr/sbin/postfix").exists()
                                and os.environ.get("CI") != "true",
                                reason="postfix is not installed (scripts/setup installs it)")
LIMIT = 20 * 1024 * 1024


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = postfix_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def daemon_config(workdir: Path, tmp_path: Path, config: Config, clamd: Clamd) -> Path:
    """An LMTP-only intake, its [lmtp] table the one of deploy/postfix/intake.toml.example but for the path."""
    lmtp = [line.split("#")[0].rstrip() for line in deploy_settings("intake.toml.example")]
    lmtp = [f'socket = "{workdir / "lmtp.sock"}"' if line.startswith("socket =") else line for line in lmtp if line]
    path = tmp_path / "intake.toml"
    path.write_text("\n".join([
        "[intake]", f'data_dir = "{config.data_dir}"', f'database_url = "{config.database_url}"',
        f'rules = "{config.rules_path}"', "[scan]", f'clamd = "{clamd.url}"', "timeout = 10",
        "[service]", "retry_initial = 0.5", "retry_max = 2", "health_interval = 0.5", "clamd_check_interval = 1",
        "orphan_grace = 1", "orphan_sweep_interval = 1", *lmtp, ""]))
    return path


@pytest.fixture
def mta(workdir: Path) -> Iterator[Postfix]:
    server = Postfix(workdir, workdir / "lmtp.sock")
    server.start()
    yield server
    server.stop()


def start_intake(conf: Path, tmp_path: Path, workdir: Path) -> Daemon:
    daemon = Daemon(conf, tmp_path).start()
    wait_for(lambda: (workdir / "lmtp.sock").exists() or daemon.proc.poll() is not None,  # type: ignore[union-attr]
             60, "the LMTP socket")
    assert daemon.proc is not None and daemon.proc.poll() is None, daemon.text()[-2000:]
    return daemon


def queue_empties(mta: Postfix, daemon: Daemon, timeout: float) -> None:
    """Wait for Postfix's queue to empty; if it does not, say why: the queue, Postfix's last lines, the daemon's."""
    try:
        wait_for(lambda: not mta.queue_ids(), timeout, "Postfix's queue to empty")
    except AssertionError as exc:
        queue = subprocess.run(["postqueue", "-c", str(mta.etc), "-p"], capture_output=True, text=True, timeout=30)
        tail = "\n".join(mta.log().splitlines()[-40:])
        own = "\n".join(daemon.log_path.read_text(errors="replace").splitlines()[-40:])
        raise AssertionError(f"{exc}\n--- queue\n{queue.stdout[-3000:]}\n--- postfix\n{tail}\n"
                             f"--- intake\n{own}") from None


def deliveries(mta: Postfix, status: str) -> list[str]:
    return re.findall(rf"postfix/lmtp\[\d+\]: [0-9A-F]+: to=<[^>]+>, relay=[^,]+, .*status={status} \((.*)\)$",
                      mta.log(), re.M)


def records(engine: Engine) -> list[Message]:
    with make_sessionmaker(engine)() as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def no_orphans(config: Config, engine: Engine) -> list[str]:
    store = RawStore(config.raw_dir, config.quarantine_dir)
    return [o.path.name for o in find_orphans(make_sessionmaker(engine), store, grace=0)]


def japanese_mail(n: int = 0) -> bytes:
    """A Japanese mail (UTF-8, base64 by the stdlib) with CP932 extensions in the body: ①㈱髙﨑～ must come through."""
    msg = EmailMessage()
    msg["From"] = "山田太郎 <taro.yamada@example.jp>"
    msg["To"] = "pubcomment@example.go.jp"
    msg["Subject"] = f"AIセキュリティガイドライン（案）への意見 {n}"
    msg["Message-ID"] = f"<postfix-{n}-{time.time_ns()}@example.jp>"
    msg["Date"] = "Sat, 10 Jan 2026 09:00:00 +0900"
    msg.set_content(f"本編 P.{n + 3} について意見を提出します。①㈱髙﨑～の扱いを明記してください。", charset="utf-8")
    raw = msg.as_bytes(policy=email.policy.SMTP)
    return raw


def after_trace(raw: bytes) -> bytes:
    """The message without the leading trace fields the MTA and the intake add (Received, Return-Path …)."""
    lines = raw.split(b"\r\n")
    i = 0
    while i < len(lines) and re.match(rb"(?i)(received|return-path|delivered-to|x-original-to):", lines[i]):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])


def test_deploy_postfix_is_what_the_tests_run(mta: Postfix) -> None:
    main = (mta.etc / "main.cf").read_text().splitlines()
    for line in deploy_settings("main.cf.example"):
        if not line.startswith("transport_maps"):  # the map is inline here (the test's socket path)
            assert line in main
    assert (mta.etc / "master.cf").read_text().endswith("\n".join(deploy_settings("master.cf.example")) + "\n")
    # the intake's size choice: Postfix's own limit is above the rules' 20 MiB, so the intake decides
    limit = int(next(line for line in main if line.startswith("message_size_limit")).split("=")[1])
    assert limit > LIMIT
    assert (DEPLOY / "intake.toml.example").exists()


def test_a_japanese_mail_through_postfix_is_recorded_exactly_as_sent(
    mta: Postfix, workdir: Path, tmp_path: Path, config: Config, clamd: Clamd, engine: Engine
) -> None:
    conf = daemon_config(workdir, tmp_path, config, clamd)
    daemon = start_intake(conf, tmp_path, workdir)
    def socket_owner() -> tuple[str, int]:
        st = (workdir / "lmtp.sock").stat()
        return grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)

    # The listener sets mode and group right after the bind: Postfix's user reaches it through group postfix.
    wait_for(lambda: socket_owner() == ("postfix", 0o660), 10, f"socket 0660 group postfix, not {socket_owner()}")
    try:
        sent = japanese_mail()
        mta.send(sent)
        wait_for(lambda: deliveries(mta, "sent"), 60, "Postfix's delivery to the intake")
        # `intake status` speaks of what this daemon runs: an LMTP socket, no mailbox and no polls.
        status = wait_for(lambda: (out := intake_cli(conf, "status").stdout) and "listening" in out and out, 30,
                          "the health row")
        assert "listening: lmtp socket" in status and "LMTP/SMTP only" in status and "last poll" not in status
    finally:
        assert daemon.stop() == 0
    [line] = deliveries(mta, "sent")
    [rec] = records(engine)
    assert f"250 2.0.0 Ok: recorded as {rec.id}" in line  # Postfix logs the record id beside its queue id
    assert rec.status == "accepted" and rec.source == "lmtp"
    stored = RawStore(config.raw_dir, config.quarantine_dir).get(rec.sha256 or "")
    assert after_trace(stored) == sent  # byte for byte, apart from the trace fields
    assert rec.content_id == content_identity(sent)
    assert "①㈱髙﨑～" in rec.result["comments"][0]["text"]


def test_a_21_mib_mail_is_bounced_by_postfix_with_the_intakes_552_and_staff_see_it(
    mta: Postfix, workdir: Path, tmp_path: Path, config: Config, clamd: Clamd, engine: Engine
) -> None:
    daemon = start_intake(daemon_config(workdir, tmp_path, config, clamd), tmp_path, workdir)
    try:
        filler = (b"x" * 998 + b"\r\n") * (21 * 1024 * 1024 // 1000 + 10)
        big = japanese_mail(1).replace(b"\r\n\r\n", b"\r\n\r\n" + filler, 1)
        assert len(big) > 21 * 1024 * 1024
        mta.send(big)  # Postfix takes it (its limit is above 20 MiB) …
        wait_for(lambda: deliveries(mta, "bounced"), 120, "the bounce")
    finally:
        assert daemon.stop() == 0
    [line] = deliveries(mta, "bounced")
    assert "said: 552 5.3.4" in line  # … the intake refuses it, and the sender's bounce carries its text
    assert re.search(r"sender non-delivery notification", mta.log())
    assert records(engine) == []
    assert not list(config.data_dir.rglob("*.eml"))
    with make_sessionmaker(engine)() as session:
        [refusal] = session.scalars(select(DoorRefusal)).all()
        alerts = session.scalars(select(Alert).where(Alert.category == "rejected")).all()
    assert refusal.size > LIMIT and refusal.source == "lmtp" and refusal.stage == "data"
    assert len(alerts) == 1 and alerts[0].kind == "door_refusal"


def _fault(engine: Engine, on: bool) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS intake_test_fault"))
            if on:
                conn.execute(text("CREATE TRIGGER intake_test_fault BEFORE INSERT ON messages "
                                  "BEGIN SELECT RAISE(ABORT, 'test fault'); END"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS intake_test_fault ON messages"))
            if on:
                conn.execute(text("CREATE OR REPLACE FUNCTION intake_test_fault() RETURNS trigger AS "
                                  "$$ BEGIN RAISE EXCEPTION 'test fault'; END $$ LANGUAGE plpgsql"))
                conn.execute(text("CREATE TRIGGER intake_test_fault BEFORE INSERT ON messages "
                                  "FOR EACH ROW EXECUTE FUNCTION intake_test_fault()"))


def wait_for_with_flush(mta: Postfix, daemon: Daemon, cond: Callable[[], object], what: str,
                        timeout: float = 120.0) -> None:
    """Wait for a delivery outcome, asking Postfix for its deferred queue every few seconds. Postfix retries on
    its own every second or two here, but a queue manager on a loaded machine may keep to a longer schedule
    (one CI run saw fewer than two attempts in 60 s); on a timeout the message carries both logs' tails."""
    flushed = time.monotonic()

    def ready() -> object:
        nonlocal flushed
        if time.monotonic() - flushed > 3:
            mta.flush()
            flushed = time.monotonic()
        return cond()

    try:
        wait_for(ready, timeout, what)
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}\n--- postfix ---\n{mta.log()[-3000:]}"
                             f"\n--- intake ---\n{daemon.text()[-3000:]}") from None


def test_a_database_failure_gives_451_and_postfixs_retry_is_recorded_once(
    mta: Postfix, workdir: Path, tmp_path: Path, config: Config, clamd: Clamd, engine: Engine
) -> None:
    conf = daemon_config(workdir, tmp_path, config, clamd)
    daemon = start_intake(conf, tmp_path, workdir)
    try:
        _fault(engine, on=True)
        sent = japanese_mail(2)
        mta.send(sent)
        wait_for_with_flush(mta, daemon, lambda: len(deliveries(mta, "deferred")) >= 2, "451s and Postfix's retries")
        deferred = deliveries(mta, "deferred")
        # Each deferral is the intake's own temporary refusal (451 4.3.0, or another 4xx it answered), or Postfix
        # holding the destination back for a while after one; at least one is the 451 of the database failure.
        assert any("said: 451 4.3.0" in line for line in deferred), deferred
        assert all("said: 4" in line or "delivery temporarily suspended" in line for line in deferred), deferred
        assert records(engine) == []
        _fault(engine, on=False)
        mta.flush()
        wait_for_with_flush(mta, daemon, lambda: deliveries(mta, "sent"), "the retry's 250")
        # The attempts that failed left raw files; the daemon's sweep removes them (orphan_grace = 1 s here).
        wait_for(lambda: not no_orphans(config, engine), 30, "no orphaned raw files")
    finally:
        _fault(engine, on=False)
        assert daemon.stop() == 0
    recs = records(engine)
    assert [(r.status, r.content_id) for r in recs] == [("accepted", content_identity(sent))]
    assert no_orphans(config, engine) == []
    check = intake_cli(conf, "check")
    assert re.search(r"orphans\s+none", check.stdout), check.stdout


def test_kill_9_of_the_intake_mid_burst_ends_with_each_message_recorded_once(
    mta: Postfix, workdir: Path, tmp_path: Path, config: Config, clamd: Clamd, engine: Engine
) -> None:
    conf = daemon_config(workdir, tmp_path, config, clamd)
    daemon = start_intake(conf, tmp_path, workdir)
    sent = [japanese_mail(10 + i) for i in range(40)]
    for raw in sent:
        mta.send(raw)
    wait_for(lambda: len(records(engine)) >= 5, 120, "a few records")
    daemon.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    daemon.proc.wait(30)  # type: ignore[union-attr]
    killed_at = len(records(engine))
    daemon = start_intake(conf, tmp_path, workdir)  # a stale socket file is taken over
    try:
        mta.flush()
        queue_empties(mta, daemon, 240)
        wait_for(lambda: not no_orphans(config, engine), 30, "no orphaned raw files")
    finally:
        assert daemon.stop() == 0
    recs = records(engine)
    firsts = [r for r in recs if r.status != "duplicate"]
    assert killed_at < len(sent)  # the kill did land mid-burst
    assert sorted(r.content_id for r in firsts) == sorted(content_identity(raw) for raw in sent)
    assert all(r.duplicate_of in {f.id for f in firsts} for r in recs if r.status == "duplicate")
    acked = {int(line.rsplit(" ", 1)[1]) for line in deliveries(mta, "sent")}
    assert acked <= {r.id for r in recs}  # every 250 Postfix saw is a row
    # A record committed when the kill cut its 250 comes back from Postfix as a `duplicate` row, never a second
    # record: at most one per transaction that was in flight ([lmtp] max_transactions).
    assert len(recs) - len(acked) <= 4
    assert no_orphans(config, engine) == []
