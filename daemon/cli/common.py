"""What every `intake` command shares: the one-line error, the exit codes, times given on the command line,
opening the config, rules and database, and the plain-text table.

This module imports no command module of daemon.cli: the commands import it, never the other way round, so
the command line has no import cycle (tests/test_cli_layout.py checks it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import unicodedata
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from daemon import jst
from daemon.config import Config, load_config
from daemon.jst import JST
from daemon.rules import Rules, load_rules
from daemon.store.db import make_engine, make_sessionmaker

if TYPE_CHECKING:
    from daemon.staff.query import Filters

EXIT_USAGE = 2  # a bad command line, config or rules file: fix it and start again
EXIT_FAILED = 1  # the command ran and failed (database, raw store, a record that does not exist …)

KINDS = ("individual", "organization", "unknown")  # submitter kinds `log --kind` and `export --kind` take


class CliError(Exception):
    """A one-line error for the user."""


def print_error(text: str) -> None:
    """The one line on stderr that every failure of `intake` is."""
    print(f"intake: error: {text}", file=sys.stderr)


def parse_time(value: str) -> dt.datetime:
    """ISO 8601; a time without an offset is taken as JST (the consultation's zone)."""
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time, e.g. 2026-01-10T09:15:00+09:00") from None
    return when.replace(tzinfo=JST) if when.tzinfo is None else when


def load_context(args: argparse.Namespace, need_rules: bool = True) -> tuple[Config, Rules | None]:
    """The config (`--config`, $INTAKE_CONFIG …) and, when the command judges mail, the rules it names."""
    config = load_config(args.config)
    rules = load_rules(config.rules_path) if need_rules else None
    return config, rules


def open_sessions(config: Config, check_schema: bool = True, pool_size: int | None = None) -> Any:
    """A sessionmaker for the configured database, after checking that its schema is the code's: a command
    run against an unmigrated database says what to run instead of failing on a missing column. `pool_size`:
    the connections to keep (the daemon: its worker threads)."""
    from daemon.store import migrate

    engine = make_engine(config.database_url, pool_size=pool_size)
    if check_schema:
        try:
            current = migrate.current_revision(engine)
        except SQLAlchemyError as exc:
            raise CliError(
                f"database unreachable ({exc.__class__.__name__}): check INTAKE_DATABASE_URL / intake.database_url"
            ) from None
        head = migrate.head_revision(config.database_url)
        if current != head:
            raise CliError(f"database schema is at {current or 'nothing'}, not {head}: run 'intake db upgrade'")
    return make_sessionmaker(engine)


def jst_stamp(value: dt.datetime | None) -> str:
    """A time as staff read it in a table: JST, with the zone named."""
    return jst.stamp(value, suffix=True)


def render_table(rows: list[list[str]], headers: list[str]) -> str:
    """Left-aligned columns with a dashed rule under the headers, for a terminal."""

    def width(s: str) -> int:  # East Asian wide characters take two columns in a terminal
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)

    widths = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = []
    for row in [headers, *rows]:
        lines.append("  ".join(c + " " * (widths[i] - width(c)) for i, c in enumerate(row)).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def filters_from_args(args: argparse.Namespace, base: Filters) -> Filters:
    """The search options `log` and `export` share, laid over a base selection (an option not given is None)."""
    base.reason = getattr(args, "reason", None)
    base.flag = getattr(args, "flag", None)
    base.since = getattr(args, "since", None)
    base.until = getattr(args, "until", None)
    base.target = getattr(args, "target", None)
    base.kind = getattr(args, "kind", None)
    base.text = getattr(args, "text", None)
    return base
