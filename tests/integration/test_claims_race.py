"""Two daemons claiming the same new UID at the same moment, on the real PostgreSQL (daemon/store/claims.py `_take`:
one INSERT … ON CONFLICT DO NOTHING RETURNING for all the UIDs nobody holds). The other daemon's INSERT is left
uncommitted in a transaction of its own; ours then waits on it (seen in pg_stat_activity, not slept for), and once
it commits our claim comes back BUSY for that UID and CLAIMED for the rest, and the row stays the other daemon's.
SQLite has no such moment: a claim's first UPDATE takes the database's one write lock, so claims run one after
the other (test_imap_units.py::test_claims_are_exclusive_expire_and_yield_to_records covers both databases).
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from typing import Any

import pytest
from sqlalchemy import text
from test_imap import wait_for

from daemon.store import claims
from daemon.store.db import make_engine, make_sessionmaker


def test_a_uid_inserted_by_another_daemon_meanwhile_is_busy_not_an_error(pg_database: str | None) -> None:
    if pg_database is None:
        # scripts/test always sets it; only a machine set up otherwise skips, and never under CI
        assert os.environ.get("CI") != "true", "CI runs without PostgreSQL: INTAKE_TEST_POSTGRES_URL is not set"
        pytest.skip("INTAKE_TEST_POSTGRES_URL is not set (scripts/test sets it)")
    engine = make_engine(pg_database)
    sessions = make_sessionmaker(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM imap_claims WHERE account = 'race'"))
    other = engine.connect()
    tx = other.begin()
    until = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    other.execute(text("INSERT INTO imap_claims (account, mailbox, uidvalidity, uid, owner, lease_until, claimed_at) "
                       "VALUES ('race', 'INBOX', 1, 2, 'other:1:x', :until, :now)"),
                  {"until": until, "now": dt.datetime.now(dt.UTC)})
    got: dict[str, Any] = {}

    def claim() -> None:
        try:
            got["result"] = claims.claim_many(sessions, "race", "INBOX", 1, [1, 2, 3], "mine:1:y", 60)
        except BaseException as exc:
            got["error"] = exc

    worker = threading.Thread(target=claim)
    worker.start()
    try:
        def waiting_on_the_other() -> bool:
            with engine.connect() as probe:
                return bool(probe.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                              "AND datname = current_database()")))

        wait_for(waiting_on_the_other, 30, "our claim to wait on the other daemon's uncommitted insert")
        tx.commit()
    finally:
        if tx.is_active:
            tx.rollback()
        worker.join(60)
        other.close()
    assert "error" not in got, got
    assert got["result"] == {1: claims.CLAIMED, 2: claims.BUSY, 3: claims.CLAIMED}
    with engine.connect() as conn:
        owners = dict(conn.execute(text("SELECT uid, owner FROM imap_claims WHERE account = 'race'")).all())
    assert owners == {1: "mine:1:y", 2: "other:1:x", 3: "mine:1:y"}
    engine.dispose()
