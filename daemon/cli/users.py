"""`intake users add|passwd|disable|enable|list`: the web application's local accounts (admin's work at the
terminal; argon2 hashes; a new password or a disable ends the account's open sessions)."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from daemon.cli.common import CliError, jst_stamp, load_context, open_sessions, render_table


def register(sub: Any) -> None:
    """Add `users` and its sub-commands to the `intake` sub-commands."""
    s = sub.add_parser("users", help="web application accounts: add, passwd, disable, enable, list")
    us = s.add_subparsers(dest="users_command", required=True)
    a = us.add_parser("add", help="add an account (password from the terminal, or stdin's first line)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=["viewer", "reviewer", "admin"],
                   help="viewer: read, public export; reviewer: decisions, exports with personal data; admin: all")
    a.set_defaults(func=cmd_add)
    p = us.add_parser("passwd", help="set a new password (ends the account's sessions, clears a lockout)")
    p.add_argument("name")
    p.set_defaults(func=cmd_passwd)
    d = us.add_parser("disable", help="disable an account (ends its sessions)")
    d.add_argument("name")
    d.set_defaults(func=cmd_disable, disabled=True)
    e = us.add_parser("enable", help="enable an account again (clears a lockout)")
    e.add_argument("name")
    e.set_defaults(func=cmd_disable, disabled=False)
    ls = us.add_parser("list", help="the accounts, their roles and state")
    ls.set_defaults(func=cmd_list)


def _password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise CliError("the two passwords differ")
    return first


def _run(args: argparse.Namespace, op: Any) -> Any:
    from daemon.staff.accounts import AccountError

    config, _ = load_context(args, need_rules=False)
    sessions = open_sessions(config)
    try:
        with sessions.begin() as session:
            return op(session)
    except AccountError as exc:
        raise CliError(str(exc)) from None


def cmd_add(args: argparse.Namespace) -> int:
    from daemon.staff import accounts

    password = _password()
    _run(args, lambda s: accounts.add(s, args.name, args.role, password))
    print(f"user {args.name} added ({args.role})")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    from daemon.staff import accounts

    password = _password()
    _run(args, lambda s: accounts.set_password(s, args.name, password))
    print(f"password of {args.name} changed; its sessions are ended")
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    from daemon.staff import accounts

    _run(args, lambda s: accounts.set_disabled(s, args.name, args.disabled))
    print(f"user {args.name} {'disabled' if args.disabled else 'enabled'}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from daemon.staff import accounts
    from daemon.store.db import now_utc

    now = now_utc()

    def rows(session: Any) -> list[list[str]]:
        out = []
        for u in accounts.all_users(session):
            state = "disabled" if u.disabled else (
                f"locked until {jst_stamp(u.locked_until)}" if u.locked_until and u.locked_until > now else "active")
            out.append([u.name, u.role, state, str(u.failed_logins), jst_stamp(u.last_login_at)])
        return out

    table = _run(args, rows)
    print(render_table(table, ["NAME", "ROLE", "STATE", "FAILED", "LAST LOGIN"]) if table else "no users")
    return 0
