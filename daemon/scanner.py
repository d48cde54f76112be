"""ClamAV through clamd (an edge: all scanner I/O is here, and no policy).

We use the `clamd` package, the design's choice, for the connection, PING and VERSION, and called
from a worker thread by the async sources. Its INSTREAM sends 1 KiB chunks with socket.send(),
which may write short and then desynchronise the stream; ours sends 256 KiB chunks with sendall().
Any trouble (unreachable, timeout, reset, an ERROR reply, an unparsable reply) raises
ScanUnavailable: the caller holds the message. It is never taken as clean (fail closed, R5).
What a finding means (virus, macro, encryption, limits) is decided in daemon/stages/scan_policy.py.
"""

from __future__ import annotations

import io
import re
import socket
import struct
from dataclasses import dataclass
from urllib.parse import urlparse

import clamd

CHUNK = 256 * 1024
_REPLY = re.compile(r"^(?P<path>[^:]*): (?P<body>.*?) ?(?P<status>FOUND|OK|ERROR)$")


class ScanUnavailable(RuntimeError):
    """clamd could not give a verdict; str() is a short code-like reason without message data."""


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str | None = None


class _InstreamMixin:
    # _init_socket, _close_socket and clamd_socket come from the clamd classes mixed in below.
    clamd_socket: socket.socket

    def scan_bytes(self, data: bytes) -> str:
        self._init_socket()  # type: ignore[attr-defined]
        try:
            self.clamd_socket.sendall(b"zINSTREAM\0")
            view = memoryview(data)
            for start in range(0, len(view), CHUNK):
                chunk = view[start : start + CHUNK]
                self.clamd_socket.sendall(struct.pack("!L", len(chunk)))
                self.clamd_socket.sendall(chunk)
            self.clamd_socket.sendall(struct.pack("!L", 0))
            buf = io.BytesIO()
            while True:
                got = self.clamd_socket.recv(4096)
                if not got:
                    break
                buf.write(got)
                if b"\0" in got:
                    break
            return buf.getvalue().split(b"\0", 1)[0].decode("utf-8", "replace").strip()
        finally:
            self._close_socket()  # type: ignore[attr-defined]


class _Unix(_InstreamMixin, clamd.ClamdUnixSocket):
    pass


class _Tcp(_InstreamMixin, clamd.ClamdNetworkSocket):
    pass


class Scanner:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url
        self.timeout = timeout
        parsed = urlparse(url)
        if parsed.scheme == "unix":
            self._make = lambda: _Unix(path=parsed.path, timeout=timeout)
        elif parsed.scheme == "tcp":
            host, port = parsed.hostname or "127.0.0.1", parsed.port or 3310
            self._make = lambda: _Tcp(host=host, port=port, timeout=timeout)
        else:
            raise ValueError(f"clamd address {url!r}: use unix:///path or tcp://host:port")

    def scan(self, data: bytes) -> ScanResult:
        try:
            reply = self._make().scan_bytes(data)
        except (OSError, clamd.ClamdError) as exc:
            raise ScanUnavailable(f"clamd_unreachable:{exc.__class__.__name__}") from None
        m = _REPLY.match(reply)
        if not m:
            raise ScanUnavailable("clamd_bad_reply" if reply else "clamd_no_reply")
        if m["status"] == "OK":
            return ScanResult(False)
        if m["status"] == "FOUND":
            return ScanResult(True, m["body"].strip())
        raise ScanUnavailable("clamd_error_reply")

    def ping(self) -> bool:
        try:
            return self._make().ping() == "PONG"
        except (OSError, clamd.ClamdError):
            return False

    def version(self) -> str | None:
        """'ClamAV 1.4.6/27000/Tue Nov 24 …' — the part after the last slash is the signatures' date."""
        try:
            return str(self._make().version())
        except (OSError, clamd.ClamdError):
            return None
