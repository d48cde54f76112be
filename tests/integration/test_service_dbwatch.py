"""The SQLite file is watched (issue 15, item 6): when the file the daemon opened is no longer the file at its
path (moved away, deleted, replaced), the daemon stops accepting (451 over LMTP; over IMAP nothing is moved,
as for any database failure), raises a storage_error alert and logs why. Before, it went on writing through
its open handle: 250 replies for records that vanished with the file. SQLite only: PostgreSQL has no file.
Real parts: the daemon as a subprocess, the real clamd, a raw LMTP client on its socket."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from test_imap import Daemon, wait_for
from test_lmtp import RCPT, Client
from test_service_stop import tiny

from daemon.config import Config, ScanConfig
from daemon.store import migrate
from daemon.store.db import Message
from devkit.clamd import Clamd

from conftest import RULES


@pytest.fixture
def sockdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="watch-", dir="/tmp") as d:
        yield Path(d)


def deliver(sock: Path, raw: bytes) -> str:
    client = Client(str(sock))
    client.cmd("LHLO mta.test")
    _, [reply] = client.transaction(raw, [RCPT])
    client.close()
    return reply


@pytest.mark.parametrize("how", ["moved", "deleted", "replaced"])
def test_a_database_file_moved_deleted_or_replaced_stops_the_intake_accepting(
    how: str, tmp_path: Path, clamd: Clamd, sockdir: Path
) -> None:
    db = tmp_path / "intake.db"
    migrate.upgrade(f"sqlite:///{db}")
    config = Config(data_dir=tmp_path / "data", database_url=f"sqlite:///{db}", rules_path=RULES,
                    scan=ScanConfig(clamd=clamd.url, timeout=30))
    conf = tmp_path / "intake.toml"
    conf.write_text("\n".join([
        "[intake]", f'data_dir = "{config.data_dir}"', f'database_url = "{config.database_url}"', f'rules = "{RULES}"',
        "[scan]", f'clamd = "{clamd.url}"', "[service]", "health_interval = 0.2",
        "[lmtp]", "enabled = true", f'socket = "{sockdir / "lmtp.sock"}"', ""]))
    daemon = Daemon(conf, tmp_path).start()
    try:
        wait_for(lambda: (sockdir / "lmtp.sock").exists(), 60, "the socket")
        assert deliver(sockdir / "lmtp.sock", tiny(1, how)).startswith("250 2.0.0")
        moved = tmp_path / "intake.db.moved"
        for ext in ("-wal", ""):  # the WAL too (it holds the first record), so that we can look inside after
            if how == "deleted":
                os.link(f"{db}{ext}", f"{moved}{ext}")  # kept to look inside; the path is gone all the same
                os.unlink(f"{db}{ext}")
            else:
                os.rename(f"{db}{ext}", f"{moved}{ext}")
        if how == "replaced":
            migrate.upgrade(f"sqlite:///{db}")  # another (empty) database at the same path
        reply = deliver(sockdir / "lmtp.sock", tiny(2, how))
        assert reply.startswith("451 4.3.0"), reply
        assert deliver(sockdir / "lmtp.sock", tiny(3, how)).startswith("451 4.3.0")  # and it stays so
        wait_for(lambda: any(e.get("event") == "alert" and e.get("category") == "storage_error"
                             for e in daemon.logs()), 30, "the storage_error alert")
    finally:
        assert daemon.stop() == 0
    events = daemon.logs()
    why = [e for e in events if e.get("event") == "database_file_changed"]
    assert why and why[0]["detail"] == ("replaced by another file" if how == "replaced" else "deleted or moved away")
    engine = create_engine(f"sqlite:///{moved}")
    with engine.connect() as conn:
        assert len(list(conn.execute(select(Message.id)))) == 1  # only the mail answered 250
    engine.dispose()
