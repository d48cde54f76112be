"""`intake imap login`: the one interactive step of OAuth 2.0 with a refresh token (imap.token_source =
"refresh_token"). It runs the device-code login (RFC 8628: the person opens a URL on any machine and enters a
code) and stores the refresh token in the data dir (0600); `intake run` renews it from then on, saving each
rotated one. `--refresh-token-stdin` stores one obtained elsewhere (Gmail's IMAP scope is not offered to the
device flow: make the token with a desktop-app login and pipe it in)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from daemon.cli.common import CliError
from daemon.config import ConfigError, load_config


def register(sub: Any) -> None:
    """Add `imap login` to the `intake` sub-commands."""
    s = sub.add_parser("imap", help="the IMAP mailbox: OAuth 2.0 login")
    groups = s.add_subparsers(dest="imap_command", required=True)
    login = groups.add_parser("login", help="device-code sign-in; stores the refresh token (0600) in the data dir")
    login.add_argument("--refresh-token-stdin", action="store_true",
                       help="store the refresh token read from standard input instead of signing in")
    login.set_defaults(func=cmd_login)


def cmd_login(args: argparse.Namespace) -> int:
    from daemon.sources.imap import load_imap_config
    from daemon.sources.imap.tokens import TokenError, device_login, make_source, save_refresh_token

    config = load_config(args.config)
    imap = load_imap_config(config)
    if imap is None or imap.oauth2 is None or imap.oauth2.source != "refresh_token":
        raise ConfigError("imap: 'intake imap login' needs [imap] auth = \"oauth2\" and token_source = "
                          "\"refresh_token\"")
    oauth2 = imap.oauth2
    try:
        if args.refresh_token_stdin:
            value = sys.stdin.readline().strip()
            if not value or any(c.isspace() for c in value):
                raise CliError("no refresh token on standard input (one line expected)")
            save_refresh_token(oauth2.refresh_token_file, value)
        else:
            device_login(oauth2, lambda line: print(line, flush=True))
        # Prove it: the stored refresh token buys an access token (and a rotated one is saved at once).
        token = make_source(oauth2).token()
    except TokenError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot store the refresh token in {oauth2.refresh_token_file.parent} "
                       f"({exc.__class__.__name__})") from None
    minutes = max(0, int(token.expires_at - make_source(oauth2).clock())) // 60
    print(f"refresh token stored in {oauth2.refresh_token_file} (0600); it buys an access token "
          f"(valid {minutes} min). Run 'intake check' next.")
    return 0
