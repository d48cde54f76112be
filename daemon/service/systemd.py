"""systemd's side of the service: sd_notify(3) lines (READY=1, STATUS=, WATCHDOG=1, STOPPING=1) and the
watchdog interval. Plain sockets and environment variables: no dependency on libsystemd."""

from __future__ import annotations

import os
import socket


def sd_notify(*fields: str, env: dict[str, str] | None = None) -> bool:
    """Send 'KEY=value' lines to $NOTIFY_SOCKET (sd_notify(3)); a no-op outside systemd."""
    path = (env or os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(path)
            # Never block the event loop: a reader that does not keep up loses a STATUS=, not the daemon.
            sock.send("\n".join(fields).encode(), socket.MSG_DONTWAIT)
        return True
    except OSError:
        return False


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Half of $WATCHDOG_USEC in seconds, when systemd's watchdog is on for this process."""
    env = env or dict(os.environ)
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000
