"""Migrations run forward on a populated database, SQLite and PostgreSQL alike; SQLite serves a writer and
readers at once (WAL, busy timeout)."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from daemon.store import migrate
from daemon.store.db import Message, make_engine, make_sessionmaker

from conftest import PG_URL

BACKENDS = ["sqlite"] + (["postgres"] if PG_URL else [])


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    assert PG_URL
    name = f"intake_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_forward_from_the_first_revision_keeps_the_data(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0001")
    engine = make_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO messages (status, reasons, flags, received_at, received_source, size, sha256, content_id,"
            " source, attempts, defects, result, created_at, updated_at, imap_uid, imap_uidvalidity)"
            " VALUES ('accepted', '[]', '[\"late\"]', :t, 'argument', 1234, :sha, :sha, 'ingest', 0, '[]',"
            " '{\"comments\": [{\"text\": \"コメント①㈱髙﨑～\"}]}', :t, :t, 4000000000, 3000000000)"
        ), {"t": dt.datetime(2026, 1, 10, 0, 15, tzinfo=dt.UTC), "sha": "ab" * 32})
    engine.dispose()
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    assert migrate.current_revision(engine) == migrate.head_revision(empty_url)
    with make_sessionmaker(engine)() as session:
        msg = session.get(Message, 1)
        assert msg is not None
        assert msg.result["comments"][0]["text"] == "コメント①㈱髙﨑～"
        assert msg.flags == ["late"] and msg.imap_uid == 4000000000 and msg.imap_uidvalidity == 3000000000
        assert msg.received_at == dt.datetime(2026, 1, 10, 0, 15, tzinfo=dt.UTC)
    engine.dispose()


def test_sqlite_is_in_wal_mode_and_readers_run_beside_a_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    writer_holds = threading.Event()
    reader_done = threading.Event()
    counts: list[int] = []

    def reader() -> None:
        writer_holds.wait(30)
        with make_engine(url).connect() as conn:  # a CLI reader in another connection
            counts.append(conn.execute(text("SELECT count(*) FROM messages")).scalar_one())
        reader_done.set()

    t = threading.Thread(target=reader)
    t.start()
    with engine.begin() as conn:  # the daemon's write transaction stays open while the reader reads
        conn.execute(text(
            "INSERT INTO messages (status, reasons, flags, received_at, received_source, size, source, attempts,"
            " defects, result, created_at, updated_at) VALUES ('held', '[]', '[]', :t, 'now', 1, 'ingest', 0, '[]',"
            " '{}', :t, :t)"), {"t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})
        writer_holds.set()
        assert reader_done.wait(30), "the reader was blocked by the writer"
    t.join()
    assert counts == [0]  # it saw the last committed state, without waiting for the writer
    engine.dispose()
