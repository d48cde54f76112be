"""The per-message lookups stay index probes as records pile up (issue 9: cost stays linear).

The queries are the daemon's own (captured as they run), explained by the real database after thousands
of records: on PostgreSQL no plan node may read and throw away more than a handful of rows (before the
fix, `… ORDER BY id LIMIT 1` walked the primary key and filtered every record); on SQLite no plan may scan
messages or comment_keys.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import event, insert, text
from sqlalchemy.engine import Engine

from daemon.store import claims, records
from daemon.store.db import CommentKey, Message, make_engine, make_sessionmaker

N = 4000


def fill(engine: Engine) -> None:
    now = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    rows = [{"status": "accepted", "reasons": [], "flags": [], "received_at": now, "received_source": "imap",
             "size": 100, "sha256": f"{i:064x}", "content_id": f"{i:064x}", "source": "imap", "attempts": 0,
             "defects": [], "result": {}, "created_at": now, "updated_at": now, "imap_account": "a",
             "imap_mailbox": "INBOX", "imap_uidvalidity": 7, "imap_uid": i + 1} for i in range(N)]
    with engine.begin() as conn:
        conn.execute(insert(Message), rows)
        ids = [r[0] for r in conn.execute(text("SELECT id FROM messages ORDER BY id"))]
        conn.execute(insert(CommentKey), [{"message_pk": pk, "key": f"{pk:032x}{j}"} for pk in ids for j in (1, 2)])


def captured(engine: Engine, call: Callable[[], Any]) -> list[tuple[str, Any]]:
    seen: list[tuple[str, Any]] = []

    def listener(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", listener)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert seen
    return seen


def pg_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for sub in plan.get("Plans", []):
        yield from pg_nodes(sub)


def assert_index_probes(engine: Engine, statements: list[tuple[str, Any]]) -> None:
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        for statement, params in statements:
            cur = raw.cursor()
            if engine.dialect.name == "postgresql":
                cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
                doc = cur.fetchone()[0]
                plan = (doc if isinstance(doc, list) else json.loads(doc))[0]["Plan"]
                thrown = max(n.get("Rows Removed by Filter", 0) for n in pg_nodes(plan))
                assert thrown <= 10, (statement, json.dumps(plan)[:800])
            else:
                cur.execute("EXPLAIN QUERY PLAN " + statement, params)
                steps = [row[-1] for row in cur.fetchall()]
                assert not [s for s in steps if s.startswith("SCAN")], (statement, steps)
            cur.close()


def test_per_message_lookups_do_not_read_every_record(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        fill(engine)
        sessions = make_sessionmaker(engine)
        with sessions() as session:
            # New content, a new comment text: the everyday case, and the one that used to read every row.
            assert records.find_first_by_content(session, "f" * 64) is None
            statements = captured(engine, lambda: records.find_first_by_content(session, "f" * 64))
            statements += captured(engine, lambda: records.find_duplicate_text(session, ["nope1", "nope2"], None))
            # A repeated text finds the first record that has it.
            assert records.find_duplicate_text(session, [f"{5:032x}2", "nope"], None) == 5
        statements += captured(engine, lambda: claims.has_other_uidvalidity(sessions, "a", "INBOX", 7))
        assert claims.has_other_uidvalidity(sessions, "a", "INBOX", 7) is False
        assert claims.has_other_uidvalidity(sessions, "a", "INBOX", 8) is True
        assert claims.has_other_uidvalidity(sessions, "a", "INBOX", 6) is True
        assert_index_probes(engine, statements)
    finally:
        engine.dispose()
