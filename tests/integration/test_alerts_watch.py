"""The watchers: scanner (a real, dedicated clamd stopped and started), mailbox, held records, storage.
The state machines are pure and tested alone; the shell writes real outbox rows and a real SMTP sink
receives what the sender makes of them."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from test_alerts import SmtpSink, assert_no_personal_data, free_port, rejected_mail, settings_for

from daemon.alerts import events
from daemon.alerts.sender import Sender, run_sender
from daemon.alerts.watch import (
    AlertMonitor,
    Outage,
    StorageState,
    signatures_built,
    step_outage,
    step_signatures,
    step_storage,
    storage_kind,
)
from daemon.model import Arrival
from daemon.pipeline import Intake, StorageError
from daemon.scanner import Scanner
from daemon.store.db import Alert, make_engine, make_sessionmaker
from devkit.clamd import Clamd

T0 = dt.datetime(2026, 1, 10, 0, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink(free_port()).start()
    yield server
    server.stop()


def alerts(intake: Intake) -> list[tuple[str, str]]:
    with intake.sessions() as session:
        return [(a.category, a.kind) for a in session.scalars(select(Alert).order_by(Alert.id))]


# -- pure state machines ---------------------------------------------------------------------------------
def test_an_outage_alerts_once_after_n_and_once_on_recovery() -> None:
    state, seen = Outage(), []
    for t, ok in [(0, True), (10, False), (200, False), (299, False), (310, False), (400, False), (500, True),
                  (600, True)]:
        state, kind = step_outage(state, ok, at(t), threshold_s=300)
        seen.append(kind)
    assert seen == [None, None, None, None, "down", None, "recovered", None]


def test_a_blip_shorter_than_n_raises_nothing() -> None:
    state, seen = Outage(), []
    for t, ok in [(0, False), (100, False), (200, True), (250, False), (500, True)]:
        state, kind = step_outage(state, ok, at(t), threshold_s=300)
        seen.append(kind)
    assert seen == [None] * 5


def test_signature_age_from_clamd_version() -> None:
    built = signatures_built("ClamAV 1.4.6/27460/Tue Nov 25 08:30:00 2025")
    assert built == dt.datetime(2025, 11, 25, 8, 30, tzinfo=dt.UTC)
    assert signatures_built("ClamAV 1.4.6") is None  # the test clamd has no daily database
    assert signatures_built(None) is None
    now = dt.datetime(2025, 11, 29, 9, 0, tzinfo=dt.UTC)
    assert step_signatures(False, built, now, days=3) == (True, True)
    assert step_signatures(True, built, now, days=3) == (True, False)  # once
    assert step_signatures(True, built, now, days=5) == (False, False)  # fresh again: re-armed


def test_storage_failures_alert_at_once_then_once_per_n_with_a_count() -> None:
    state, out = StorageState(), []
    for t in (0, 10, 20, 30, 900, 901):
        state, repeated = step_storage(state, at(t), repeat_s=900)
        out.append(repeated)
    assert out == [0, None, None, None, 3, None]


# -- done when 5: a real clamd stopped for longer than N ------------------------------------------------
async def test_stopping_clamd_longer_than_n_gives_one_down_and_one_recovery_alert(
    intake: Intake, tmp_path: Path, sink: SmtpSink
) -> None:
    n_minutes = 0.02  # 1.2 seconds
    own = Clamd(tmp_path / "own-clamd")
    own.start()
    scanner = Scanner(own.url, timeout=5)
    settings = settings_for(sink.port, categories={"scanner_down": {"minutes": n_minutes, "window_seconds": 0}})
    monitor = AlertMonitor(intake.sessions, settings)
    try:
        assert monitor.observe_scanner(scanner.ping()) is None
        own.stop()
        stopped = time.monotonic()
        kinds = []
        while "down" not in kinds:  # the service's ping loop, every 0.1 s
            assert time.monotonic() - stopped < 60
            kinds.append(monitor.observe_scanner(scanner.ping()))
            await asyncio.sleep(0.1)
        assert time.monotonic() - stopped >= n_minutes * 60  # not before N
        assert kinds.count("down") == 1 and set(kinds) == {None, "down"}
        for _ in range(5):  # still down: no second alert
            assert monitor.observe_scanner(scanner.ping()) is None
        own.start()
        assert monitor.observe_scanner(scanner.ping()) == "recovered"
        for _ in range(3):
            assert monitor.observe_scanner(scanner.ping()) is None
    finally:
        own.stop()
    assert alerts(intake) == [("scanner_down", "down"), ("scanner_down", "recovered")]
    await Sender(intake.sessions, settings).deliver_due()
    down, back = sink.wait_for(2)
    assert down.subject == "【意見受付】ウイルス検査（clamd）に 0.02 分以上接続できません"
    assert "systemctl status clamav-daemon" in down.text
    assert back.subject == "【意見受付】ウイルス検査（clamd）が復旧しました"
    assert len(sink.received) == 2


# -- held too long ----------------------------------------------------------------------------------------
async def test_a_record_held_longer_than_n_alerts_once(intake: Intake, sink: SmtpSink, tmp_path: Path) -> None:
    intake.scanner = Scanner(f"unix://{tmp_path / 'no-clamd.sock'}", timeout=2)  # clamd unreachable
    rid = intake.process(Arrival(raw=rejected_mail(), source="ingest")).id
    settings = settings_for(sink.port, categories={"held_too_long": {"minutes": 30}})
    monitor = AlertMonitor(intake.sessions, settings)
    now = dt.datetime.now(dt.UTC)
    assert monitor.check_held(now + dt.timedelta(minutes=29)) == []
    assert monitor.check_held(now + dt.timedelta(minutes=31)) == [rid]
    assert monitor.check_held(now + dt.timedelta(minutes=90)) == []  # once per record
    await Sender(intake.sessions, settings).deliver_due(now + dt.timedelta(minutes=31))
    [received] = sink.wait_for(1)
    assert received.subject == f"【意見受付】受付番号 #{rid} が 30 分以上保留のままです"
    assert "scan_unavailable" in received.text
    assert_no_personal_data(received.raw)


# -- mailbox ----------------------------------------------------------------------------------------------
async def test_mailbox_login_refused_for_n_minutes_then_recovered(intake: Intake, sink: SmtpSink) -> None:
    settings = settings_for(sink.port, categories={"mailbox_down": {"minutes": 10, "window_seconds": 0}})
    monitor = AlertMonitor(intake.sessions, settings)
    assert monitor.observe_mailbox(False, at(0), problem="unreachable") is None
    assert monitor.observe_mailbox(False, at(300), problem="login_refused") is None
    assert monitor.observe_mailbox(False, at(600), problem="login_refused") == "down"
    assert monitor.observe_mailbox(False, at(900), problem="login_refused") is None
    assert monitor.observe_mailbox(True, at(1200)) == "recovered"
    await Sender(intake.sessions, settings).deliver_due()
    down, back = sink.wait_for(2)
    assert down.subject == "【意見受付】受信メールボックスに 10 分以上ログインが拒否されています"
    assert "2026-01-10 09:00:00 JST から" in down.text
    assert back.subject == "【意見受付】受信メールボックスへの接続が復旧しました"
    assert "約 20 分" in back.text


# -- storage ----------------------------------------------------------------------------------------------
async def test_a_raw_store_failure_is_alerted_through_the_outbox(intake: Intake, sink: SmtpSink) -> None:
    raw_dir = intake.raw_store.raw_dir
    raw_dir.rename(raw_dir.with_name("raw-away"))
    raw_dir.write_bytes(b"")  # a file where the raw store's folder should be: every write fails, even as root
    with pytest.raises(StorageError) as failure:
        intake.process(Arrival(raw=rejected_mail(), source="ingest"))
    kind = storage_kind(failure.value)
    assert kind == "raw_store"
    settings = settings_for(sink.port)
    monitor = AlertMonitor(intake.sessions, settings)
    assert monitor.storage_failed(kind, at(0)) is True
    assert monitor.storage_failed(kind, at(60)) is False  # within N: counted, not sent
    await Sender(intake.sessions, settings).deliver_due()
    [received] = sink.wait_for(1)
    assert received.subject == "【意見受付】記録の保存に失敗しています（原本保存領域（raw store））"


async def test_when_the_database_itself_is_down_the_alert_goes_out_directly(
    tmp_path: Path, sink: SmtpSink
) -> None:
    broken = make_sessionmaker(make_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'intake.db'}"))
    settings = settings_for(sink.port)
    monitor = AlertMonitor(broken, settings)
    assert monitor.storage_failed("database") is True
    stop = asyncio.Event()
    task = asyncio.create_task(run_sender(broken, settings, stop, monitor=monitor))
    try:
        [received] = await asyncio.to_thread(sink.wait_for, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert received.subject == "【意見受付】記録の保存に失敗しています（データベース）"
    assert str(received.message["X-Intake-Alert-Id"]).startswith("intake-direct-")
    assert monitor.take_volatile() == []  # delivered; the sender's own DB failures are counted, not re-sent


def test_storage_kind_reads_the_cause() -> None:
    from sqlalchemy.exc import OperationalError

    from daemon.store.raw import RawStoreError

    for cause, expected in [(OperationalError("x", {}, Exception()), "database"), (RawStoreError("x"), "raw_store"),
                            (PermissionError(13, "x"), "raw_store")]:
        try:
            raise StorageError("storage_failed") from cause
        except StorageError as exc:
            assert storage_kind(exc) == expected
    assert events.storage_draft("nonsense", at(0), 0).payload["what"] == "unknown"
