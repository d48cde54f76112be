"""`intake web`: serve the staff's web application (daemon/web/) with uvicorn, on 127.0.0.1:8080 by default,
behind the ministry's reverse proxy that terminates TLS."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli.common import CliError, load_context, open_sessions


def register(sub: Any) -> None:
    """Add `web` to the `intake` sub-commands."""
    s = sub.add_parser("web", help="serve the staff's web application (Japanese), default http://127.0.0.1:8080")
    s.add_argument("--listen", help="address to listen on (default [web] listen, else 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default [web] port, else 8080)")
    s.set_defaults(func=cmd_web)


def cmd_web(args: argparse.Namespace) -> int:
    import dataclasses

    import uvicorn

    from daemon.logs import get_logger
    from daemon.web.app import create_app
    from daemon.web.settings import WebSettings

    config, rules = load_context(args)
    assert rules is not None
    sessions = open_sessions(config)  # refuses an unmigrated database with one line
    settings = WebSettings.from_config(config)
    if args.listen:
        settings = dataclasses.replace(settings, listen=args.listen)
    if args.port is not None:
        if not 0 < args.port < 65536:
            raise CliError("--port: must be 1..65535")
        settings = dataclasses.replace(settings, port=args.port)
    app = create_app(config, rules, settings, sessions)
    get_logger("web").info("web_start", port=settings.port, state="listening")
    # access_log off: our own line per request names the route, never the URL (no search term, no name).
    uvicorn.run(app, host=settings.listen, port=settings.port, access_log=False, log_level="warning",
                proxy_headers=bool(settings.trusted_proxies),
                forwarded_allow_ips=",".join(settings.trusted_proxies) or None, server_header=False)
    return 0
