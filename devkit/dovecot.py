"""A throwaway real Dovecot for the tests and the demo (like devkit/clamd.py's Clamd).

Its own config, maildir, run and state directories in a work dir; plain IMAP (and optionally IMAPS
with a self-signed certificate) on 127.0.0.1 at a free high port; one user with a plain password;
mail processes as `nobody`. Started with `dovecot -F -c CONF`, stopped with SIGTERM, and
restartable on the same port and maildir (for the "IMAP server restart" test).

With `oauth2=True` it also takes OAuth 2.0 bearer tokens (XOAUTH2 and OAUTHBEARER) and checks them offline:
`passdb { driver = oauth2 }` with `introspection_mode = local`, keys under `<workdir>/oauth2-keys/<azp or
default>/<ALG>/<kid or default>` (HS256: the base64 of the secret; RS256: a PEM public key). The password still
works for PLAIN/LOGIN (the second client that APPENDs). `sign_token` makes a token Dovecot accepts (PyJWT).
"""

from __future__ import annotations

import base64
import imaplib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

USER = "intake"
PASSWORD = "demo-secret"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Dovecot:
    workdir: Path
    port: int = 0
    tls_port: int = 0
    tls: bool = False
    user: str = USER
    password: str = PASSWORD
    max_connections: int = 100
    oauth2: bool = False
    # The HS256 secret Dovecot checks tokens with (kid "default"); RS256 keys are added with add_rsa_key.
    oauth2_secret: bytes = field(default_factory=lambda: os.urandom(32))
    proc: subprocess.Popen[bytes] | None = None
    instance: str = field(default_factory=lambda: f"intake-test-{uuid.uuid4().hex[:8]}")

    @property
    def conf(self) -> Path:
        return self.workdir / "dovecot.conf"

    @property
    def maildir(self) -> Path:
        return self.workdir / "mail"

    @property
    def cafile(self) -> Path:
        return self.workdir / "tls" / "cert.pem"

    @property
    def log_file(self) -> Path:
        return self.workdir / "dovecot.log"

    def _write_cert(self) -> None:
        tls = self.workdir / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        if self.cafile.exists():
            return
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(tls / "key.pem"), "-out", str(self.cafile)],
            check=True, capture_output=True, timeout=60,
        )

    @property
    def oauth2_keys(self) -> Path:
        return self.workdir / "oauth2-keys"

    def _write_oauth2(self) -> list[str]:
        """The oauth2 passdb's lines and its args file; the HS256 key under default/HS256/default."""
        hs = self.oauth2_keys / "default" / "HS256"
        hs.mkdir(parents=True, exist_ok=True)
        (hs / "default").write_text(base64.b64encode(self.oauth2_secret).decode())
        args = self.workdir / "oauth2.conf.ext"
        args.write_text("\n".join([
            "introspection_mode = local",
            f"local_validation_key_dict = fs:posix:prefix={self.oauth2_keys}/",
            "username_attribute = email",
            "",
        ]))
        for folder in [self.oauth2_keys, *self.oauth2_keys.rglob("*")]:
            folder.chmod(0o755 if folder.is_dir() else 0o644)  # the auth process runs as another user
        return ["passdb {", "  driver = oauth2", "  mechanisms = xoauth2 oauthbearer", f"  args = {args}", "}"]

    def add_rsa_key(self, public_pem: bytes, kid: str) -> None:
        """Trust an RS256 public key for tokens whose header names `kid` (read when Dovecot starts)."""
        rs = self.oauth2_keys / "default" / "RS256"
        rs.mkdir(parents=True, exist_ok=True)
        rs.chmod(0o755)
        (rs / kid).write_bytes(public_pem)
        (rs / kid).chmod(0o644)

    def sign_token(self, email: str | None = None, lifetime: float = 3600.0, secret: bytes | None = None,
                   **claims: object) -> str:
        """An HS256 access token this Dovecot accepts for `email` (the login) until now + lifetime (PyJWT)."""
        import jwt  # a test dependency: only the tests and the demo sign tokens

        now = int(time.time())
        body = {"sub": email or self.user, "email": email or self.user, "iat": now - 5,
                "exp": now + int(lifetime), **claims}
        return jwt.encode(body, secret or self.oauth2_secret, algorithm="HS256")

    def _traversable(self) -> None:
        """Dovecot's auth and mail processes run as other users: they need +x on every folder above."""
        me = os.getuid()
        for folder in [self.workdir, *self.workdir.parents]:
            st = folder.stat()
            if st.st_uid == me and not st.st_mode & 0o001:
                folder.chmod((st.st_mode & 0o7777) | 0o011)

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._traversable()
        for sub in ("run", "state", "mail"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.maildir, "nobody", "nogroup")
        (self.workdir / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        if not self.port:
            self.port = free_port()
        if self.tls:
            self._write_cert()
            if not self.tls_port:
                self.tls_port = free_port()
        ssl_lines = (
            ["ssl = yes", f"ssl_cert = <{self.cafile}", f"ssl_key = <{self.workdir / 'tls' / 'key.pem'}"]
            if self.tls else ["ssl = no"]
        )
        self.conf.write_text("\n".join([
            "protocols = imap",
            "listen = 127.0.0.1",
            f"base_dir = {self.workdir / 'run'}",
            f"state_dir = {self.workdir / 'state'}",
            f"instance_name = {self.instance}",
            f"log_path = {self.log_file}",
            *ssl_lines,
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login" + (" xoauth2 oauthbearer" if self.oauth2 else ""),
            f"mail_location = maildir:{self.maildir}/%u",
            "first_valid_uid = 1",
            "mail_fsync = never",  # a throwaway server: fast APPENDs matter more than crash safety
            *(self._write_oauth2() if self.oauth2 else []),
            "passdb {",
            "  driver = passwd-file",
            *(["  mechanisms = plain login"] if self.oauth2 else []),
            f"  args = scheme=PLAIN username_format=%u {self.workdir / 'users'}",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = uid=nobody gid=nogroup home={self.maildir}/%u",
            "}",
            "service imap-login {",
            "  inet_listener imap {",
            "    address = 127.0.0.1",
            f"    port = {self.port}",
            "  }",
            "  inet_listener imaps {",
            "    address = 127.0.0.1",
            f"    port = {self.tls_port if self.tls else 0}",
            "  }",
            f"  process_limit = {self.max_connections}",
            "}",
            "service imap {",
            f"  process_limit = {self.max_connections}",
            "}",
            "service pop3-login {",
            "  inet_listener pop3 {",
            "    port = 0",
            "  }",
            "}",
            "protocol imap {",
            f"  mail_max_userip_connections = {self.max_connections}",
            "}",
            "",
        ]))
        return self.conf

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        conf = self.write_config()
        self.proc = subprocess.Popen([binary, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                raise RuntimeError(f"dovecot exited with {self.proc.returncode}: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("dovecot did not greet in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # The whole process group: the master and its login/imap children.
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        # The port is free again once nothing listens: wait for it, so a restart can bind it.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                return
            time.sleep(0.05)

    # -- a second client (stdlib imaplib) -----------------------------------------------------------
    def client(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=60)
        imap.login(self.user, self.password)
        return imap

    def append(self, messages: list[bytes], mailbox: str = "INBOX", date: float | None = None,
               dates: list[float | None] | None = None) -> None:
        """Deliver messages by APPEND (optionally with an INTERNALDATE, seconds since the epoch)."""
        imap = self.client()
        try:
            for i, raw in enumerate(messages):
                when = dates[i] if dates is not None else date
                stamp = imaplib.Time2Internaldate(when) if when is not None else None
                typ, data = imap.append(mailbox, "", stamp, raw)
                if typ != "OK":
                    raise RuntimeError(f"APPEND failed: {data!r}")
        finally:
            imap.logout()

    def append_many(self, messages: list[bytes], mailbox: str = "INBOX", date: float | None = None,
                    per_command: int = 250) -> None:
        """Deliver many messages fast: MULTIAPPEND (RFC 3502) with LITERAL+, a few hundred per command,
        over a plain socket (stdlib imaplib sends one APPEND per round trip)."""
        stamp = (" " + imaplib.Time2Internaldate(date)) if date is not None else ""
        with socket.create_connection(("127.0.0.1", self.port), timeout=120) as sock:
            reader = sock.makefile("rb")
            reader.readline()  # greeting

            def command(tag: bytes, data: bytes) -> None:
                sock.sendall(data)
                while True:
                    line = reader.readline()
                    if not line:
                        raise RuntimeError("connection closed during APPEND")
                    if line.startswith(tag + b" "):
                        if not line.startswith(tag + b" OK"):
                            raise RuntimeError(f"APPEND failed: {line!r}")
                        return

            command(b"L", b"L LOGIN " + _quote(self.user).encode() + b" " + _quote(self.password).encode() + b"\r\n")
            for n, start in enumerate(range(0, len(messages), per_command)):
                tag = b"A%d" % n
                parts = [tag + b" APPEND " + _quote(mailbox).encode()]
                for raw in messages[start : start + per_command]:
                    parts.append(b" ()" + stamp.encode() + b" {%d+}\r\n" % len(raw) + raw)
                command(tag, b"".join(parts) + b"\r\n")
            command(b"Z", b"Z LOGOUT\r\n")

    def count(self, mailbox: str = "INBOX") -> int:
        imap = self.client()
        try:
            typ, data = imap.status(_quote(mailbox), "(MESSAGES)")
            if typ != "OK":
                return 0
            return int(data[0].decode().rsplit("MESSAGES", 1)[1].strip(" )"))
        finally:
            imap.logout()

    def folders(self) -> dict[str, int]:
        """Every mailbox and its message count."""
        imap = self.client()
        try:
            typ, data = imap.list()
            names = []
            for line in data or []:
                text = line.decode() if isinstance(line, bytes) else str(line)
                names.append(text.rsplit(" ", 1)[1].strip('"'))
            out = {}
            for name in names:
                typ, st = imap.status(_quote(name), "(MESSAGES)")
                if typ == "OK":
                    out[name] = int(st[0].decode().rsplit("MESSAGES", 1)[1].strip(" )"))
            return out
        finally:
            imap.logout()

    def fetch_all(self, mailbox: str) -> list[bytes]:
        imap = self.client()
        try:
            imap.select(_quote(mailbox), readonly=True)
            _typ, data = imap.uid("SEARCH", "ALL")
            uids = data[0].split() if data and data[0] else []
            out = []
            for uid in uids:
                _typ, got = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                for item in got:
                    if isinstance(item, tuple):
                        out.append(item[1])
            return out
        finally:
            imap.logout()

    def recreate(self, mailbox: str = "INBOX") -> None:
        """Delete a mailbox and make it again (a new UIDVALIDITY). INBOX cannot be deleted over IMAP, so
        its maildir is removed on disk (what a restore from backup looks like to a client)."""
        if mailbox.upper() == "INBOX":
            box = self.maildir / self.user
            for sub in ("cur", "new", "tmp"):
                shutil.rmtree(box / sub, ignore_errors=True)
            for name in box.glob("dovecot*"):
                if name.is_file():
                    name.unlink()
            return
        imap = self.client()
        try:
            imap.delete(_quote(mailbox))
            imap.create(_quote(mailbox))
        finally:
            imap.logout()


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
