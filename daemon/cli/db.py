"""`intake db upgrade`: create or migrate the database schema (Alembic, migrations/)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from daemon.cli.common import CliError, load_context


def register(sub: Any) -> None:
    """Add `db` and its `upgrade` to the `intake` sub-commands."""
    s = sub.add_parser("db", help="database maintenance")
    dbsub = s.add_subparsers(dest="db_command", required=True)
    u = dbsub.add_parser("upgrade", help="create or migrate the schema to the newest revision")
    u.set_defaults(func=cmd_db_upgrade)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from daemon.store import migrate
    from daemon.store.db import prepare_sqlite_file

    config, _ = load_context(args, need_rules=False)
    if config.database_url.startswith("sqlite:///"):
        Path(config.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    try:
        # The file 0640, group = staff_group, before SQLite would make it 0644 (R12).
        prepare_sqlite_file(config.database_url, config.staff_group)
        migrate.upgrade(config.database_url)
    except SQLAlchemyError as exc:
        raise CliError(f"database unreachable ({exc.__class__.__name__}): check INTAKE_DATABASE_URL") from None
    print(f"database at revision {migrate.head_revision(config.database_url)}")
    return 0
