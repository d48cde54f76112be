"""`intake`: the command line. Every failure is one line on stderr and a non-zero exit, never a traceback.

Each command group is one module here that adds its own sub-commands (`register(subparsers)`):

    records.py   ingest, log, show          check.py   check (the preflight)
    db.py        db upgrade                 staff.py   stats, export, release, reject, retry, rescan, purge
    run.py       run (the daemon), status   alerts.py  alerts test, alerts list
    imap.py      imap login (OAuth 2.0)     review.py  review list, progress, show, move, merge, split, …

What they share (CliError, exit codes, times, opening config, rules and database, tables) is in common.py,
which imports none of them: imports run one way, this module → the groups → common.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from sqlalchemy.exc import SQLAlchemyError

from daemon import logs
from daemon.cli import alerts, check, db, imap, records, review, run, staff, users, web
from daemon.cli.common import EXIT_FAILED, EXIT_USAGE, CliError, print_error
from daemon.config import ConfigError
from daemon.rules import RulesError

# In this order in `intake --help`.
COMMAND_GROUPS = (records, check, db, staff, review, run, alerts, imap, web, users)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a wrong command line is one line on stderr like every other failure (no usage block):
    `intake: error: argument command: invalid choice: 'lgo' (choose from …)`, exit 2. Sub-parsers are made
    of the same class, so `intake retry: error: …` is one line too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="intake", description="Mail intake for public comments (パブリックコメント).")
    p.add_argument("--config", help="config file (default: $INTAKE_CONFIG or /etc/intake/intake.toml)")
    p.add_argument("--log-level", default="INFO", help="log level for the JSON logs on stderr (default INFO)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        return int(args.func(args))
    except (ConfigError, RulesError, CliError) as exc:
        print_error(str(exc))
        return EXIT_USAGE if not isinstance(exc, CliError) else EXIT_FAILED
    except SQLAlchemyError as exc:
        print_error(f"database error ({exc.__class__.__name__}): check INTAKE_DATABASE_URL and 'intake db upgrade'")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
