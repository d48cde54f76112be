"""The daemon's connection pool keeps one connection per worker thread (daemon/store/db.py make_engine, pool_size;
`intake run` passes daemon.service.worker_threads). SQLAlchemy's default keeps 5 and opens the others per checkout,
closing them at check-in: on PostgreSQL a backend started and ended for most records of a busy daemon
(BENCHMARKS.md, issue 20). Real SQLite files and the real PostgreSQL; the connections are counted as the
database driver opens them.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event, text

from daemon.service import worker_threads
from daemon.sources.imap.config import ImapConfig
from daemon.store.db import make_engine


def _connections_opened(url: str, pool_size: int | None, threads: int, rounds: int) -> int:
    engine = make_engine(url, pool_size=pool_size)
    opened: list[int] = []

    @event.listens_for(engine, "connect")
    def _count(_dbapi: Any, _record: Any) -> None:
        opened.append(1)

    # Every thread holds its connection until all hold one: `threads` at once, as a busy daemon has them.
    for _ in range(rounds):
        barrier = threading.Barrier(threads)
        failures: list[BaseException] = []

        def work(barrier: threading.Barrier = barrier, failures: list[BaseException] = failures) -> None:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                    barrier.wait(60)
            except BaseException as exc:
                failures.append(exc)

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(60)
        assert not failures, failures
    engine.dispose()
    return len(opened)


def test_a_daemons_worker_threads_reuse_their_connections(db_url: str) -> None:
    threads = worker_threads(ImapConfig(host="h", user="u", password=""))  # 16 with the defaults
    assert threads > 5
    # The pool the daemon gets: each connection is opened once, however many rounds of work.
    assert _connections_opened(db_url, threads, threads, rounds=3) == threads
    # SQLAlchemy's default (5 kept, 10 more at most, so 15 threads here: a 16th would wait for a connection):
    # the connections beyond 5 are opened again in every round.
    assert _connections_opened(db_url, None, 15, rounds=3) == 5 + 3 * 10
